"""matplotlib for files, with a font that has Hangul: every plot fewlabel writes goes through :func:`pyplot`.

Korean is a headline language here, and matplotlib's own DejaVu Sans has no Hangul, so a Korean label or title
became empty boxes (and six "Glyph … missing from font" warnings per run). :func:`pyplot` registers NanumGothic
from the ``koreanize-matplotlib`` package (a dependency; it bundles the TTF, so this works offline) and puts it
second in ``font.family`` (after DejaVu Sans): matplotlib (>= 3.6) falls back glyph by glyph, so Latin text keeps
DejaVu Sans and Hangul is drawn with NanumGothic. The package is never imported (its import changes global
settings and, on Python >= 3.12, needs the removed ``distutils``): only its font file is used, found through its
import spec."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

__all__ = ["HANGUL_FONT", "hangul_font_path", "pyplot"]

HANGUL_FONT = "NanumGothic"
_FONT_PACKAGE = "koreanize_matplotlib"


def hangul_font_path() -> Path | None:
    """NanumGothic.ttf inside the installed ``koreanize-matplotlib`` (without importing it), or None."""
    spec = importlib.util.find_spec(_FONT_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "fonts" / f"{HANGUL_FONT}.ttf"
        if path.is_file():
            return path
    return None


@cache
def _register_hangul_font() -> bool:
    import matplotlib
    from matplotlib import font_manager

    path = hangul_font_path()
    if path is None:
        return False
    font_manager.fontManager.addfont(str(path))
    # matplotlib resolves a generic family ("sans-serif") to one font, so the fallback list names fonts
    first = next((f for f in matplotlib.rcParams["font.sans-serif"] if f != HANGUL_FONT), "DejaVu Sans")
    matplotlib.rcParams["font.family"] = [first, HANGUL_FONT]
    matplotlib.rcParams["axes.unicode_minus"] = False  # NanumGothic has no U+2212; a hyphen reads the same
    return True


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only, never a window) with the Hangul fallback font."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _register_hangul_font()
    return plt
