"""The bundled demo data (retrieval/demo_data) as the CLI tests read it: where it is, the columns of its
multi-label GoEmotions files, and small slices of a file for fast index builds."""

from __future__ import annotations

from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "retrieval" / "demo_data"
# the GoEmotions-ekman demo files: comma-separated label names in `labels`, an `id` column
COMMON = ["--text-col", "text", "--label-col", "labels", "--label-sep", ",", "--id-col", "id"]


def slice_tsv(src: Path, dst: Path, start: int, n: int) -> Path:
    """Write the header of ``src`` and its data rows ``start`` to ``start + n`` to ``dst``."""
    lines = src.read_text(encoding="utf-8").splitlines()
    dst.write_text("\n".join([lines[0], *lines[1 + start:1 + start + n]]) + "\n", encoding="utf-8")
    return dst
