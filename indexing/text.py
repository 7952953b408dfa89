"""Script detection, written once: Korean text gets Korean templates, character n-grams and Korean entity-type
words; everything else is treated as space-separated (English)."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Hangul Jamo, Compatibility Jamo, Jamo Extended-A, Syllables, Jamo Extended-B
HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7a3\ud7b0-\ud7ff]")


def has_hangul(text: str) -> bool:
    """Whether ``text`` holds at least one Hangul letter or syllable."""
    return bool(HANGUL.search(text))


def hangul_share(texts: Iterable[str]) -> float:
    """The share of ``texts`` that hold Hangul (0 for no texts)."""
    flags = [has_hangul(t) for t in texts]
    return sum(flags) / len(flags) if flags else 0.0
