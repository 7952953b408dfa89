"""How fewlabel tells what a text file holds, written once for every reader (labelled rows, STS pairs, NLI
pairs, relations).

Two questions, two rules:

* **the format of a labelled-rows file** comes from its extension (:func:`detect_format`): a one-column CSV
  looks like a TSV, so guessing from content would be wrong for exactly the files users make by hand, and the
  user can always name the format;
* **the delimiter of a task file's header** (KorSTS, KorNLI, KLUE-RE CSV, a user's pairs table) comes from
  that header line (:func:`delimiter_of`): a tab when the line holds more tabs than commas, else a comma.
  Competition files arrive with every extension (.tsv, .txt, .csv, none), but their header names never hold
  a comma or a tab, so the count is what tells."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from fewlabel.indexing.errors import DataError

__all__ = ["FORMATS", "delimiter_of", "detect_format", "first_line", "header_fields", "type_name"]

PathLike = str | os.PathLike

#: File extension -> format. ``.txt`` is TSV because corpora such as NSMC ship TSV as .txt;
#: ``.json`` is read as JSON Lines because that is what labelled-data tools export.
FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def detect_format(path: PathLike) -> str:
    """Pick ``"csv"``, ``"tsv"`` or ``"jsonl"`` from the file extension.

    Guessing from content is unreliable (a one-column CSV looks like a TSV), so an unknown
    extension is an error that tells the user which extensions work or to pass a format.
    """
    suffix = Path(path).suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    accepted = ", ".join(FORMATS)
    raise DataError(f"cannot tell the format from the extension '{suffix or '(none)'}': name the file with one of "
                    f"{accepted}", path=str(path))


def first_line(content: str) -> str:
    """The first non-blank line of ``content``, without its line ending."""
    return next((line.rstrip("\r\n") for line in io.StringIO(content, newline="") if line.strip()), "")


def delimiter_of(header: str) -> str:
    """A tab when the header line holds more tabs than commas, else a comma (see the module docstring)."""
    return "\t" if header.count("\t") > header.count(",") else ","


def header_fields(header: str) -> list[str]:
    """The column names of a header line, split by :func:`delimiter_of` (quotes honoured)."""
    return next(csv.reader([header], delimiter=delimiter_of(header)), [])


def type_name(value: object) -> str:
    """A JSON value's type as a user reads it in an error: ``null``, ``str``, ``list``, …"""
    return "null" if value is None else type(value).__name__
