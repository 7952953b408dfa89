"""Read sentence-pair files (semantic textual similarity) into uniform :class:`PairRow` objects.

Four layouts are recognised from the content, not the extension (STS-B ships tab-separated text as
``.csv``):

- **KorSTS** TSV: header ``genre filename year id score sentence1 sentence2``;
- **STS-B** (English) TSV: the same 7 columns with no header; some rows carry extra trailing fields,
  which are ignored; quotes are ordinary characters;
- **KLUE-STS** JSON: a JSON list of objects with ``guid``, ``sentence1``, ``sentence2`` and
  ``labels: {"label", "real-label", "binary-label"}`` (JSON Lines with the same objects also work);
- the **competition** table: a CSV (or TSV) header with ``sentence1`` and ``sentence2``, optionally
  ``id``, ``label`` (or ``score``) and ``binary-label``.

Scores are 0-5. ``binary`` is the file's binary label when it has one, else 1 when the score is at
least 3 (the KLUE rule). Unlabelled files give ``score=None`` and ``binary=None``. Every problem is a
:class:`~fewlabel.indexing.errors.DataError` naming the file, the 1-based line and the field.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass

from fewlabel.indexing.errors import DataError
from fewlabel.indexing.readers import iter_records, read_text_file
from fewlabel.indexing.sniff import delimiter_of, first_line, header_fields, type_name

__all__ = ["BINARY_THRESHOLD", "MAX_SCORE", "PAIR_FORMATS", "PairRow", "detect_pair_format", "read_pairs"]

PathLike = str | os.PathLike

MAX_SCORE = 5.0
BINARY_THRESHOLD = 3.0  # KLUE-STS: a pair is "similar" (binary 1) when its score is at least 3
STS_COLUMNS = ("genre", "filename", "year", "id", "score", "sentence1", "sentence2")
PAIR_FORMATS = ("korsts", "stsb", "klue", "jsonl", "table")
_LABEL_NAMES = ("label", "score")
_BINARY_NAMES = ("binary-label", "binary_label", "binary")


@dataclass(frozen=True)
class PairRow:
    """One sentence pair, with its gold score when the file has one and where it came from."""

    id: str  # the file's id (KLUE guid, competition id) or the 0-based data row number
    sentence1: str
    sentence2: str
    score: float | None  # 0-5, None when unlabelled
    binary: int | None  # 0/1, None when unlabelled
    line: int  # 1-based line where the record starts


def read_pairs(path: PathLike, *, fmt: str | None = None) -> list[PairRow]:
    """Read every pair of a KorSTS, STS-B, KLUE-STS or competition file (see the module docstring).

    ``fmt`` (one of ``PAIR_FORMATS``) skips detection. Either every row is labelled or none is:
    a file with labels on some rows only is an error naming the first row without one."""
    content = read_text_file(path)
    fmt = fmt or detect_pair_format(content, path)
    if fmt not in PAIR_FORMATS:
        raise DataError(f"unknown pair format '{fmt}'; accepted: {', '.join(PAIR_FORMATS)}", path=str(path))
    if fmt in ("korsts", "stsb"):
        rows = _sts_rows(content, path, header=fmt == "korsts")
    elif fmt == "klue":
        rows = [_json_row(obj, i, line, path) for i, (line, obj) in enumerate(_json_list(content, path))]
    elif fmt == "jsonl":
        rows = [_json_row(obj, i, line, path) for i, (line, obj) in enumerate(_json_lines(content, path))]
    else:
        rows = _table_rows(content, path)
    if not rows:
        raise DataError("no rows: the file has no sentence pairs", path=str(path))
    _check_labelled_consistently(rows, path)
    _check_unique_ids(rows, path)
    return rows


def detect_pair_format(content: str, path: PathLike | None = None) -> str:
    """Tell the layout from the first non-blank line (see the module docstring)."""
    first = first_line(content)
    stripped = first.lstrip()
    if stripped.startswith("["):
        return "klue"
    if stripped.startswith("{"):
        return "jsonl"
    fields = first.rstrip("\r").split("\t")
    if tuple(f.strip().lower() for f in fields[:7]) == STS_COLUMNS:
        return "korsts"
    if len(fields) >= 7 and _is_number(fields[4]):
        return "stsb"
    names = {name.strip().lower() for name in header_fields(first)}
    if {"sentence1", "sentence2"} <= names:
        return "table"
    raise DataError("cannot tell the pair format: expected a KorSTS header (genre filename year id score "
                    "sentence1 sentence2), STS-B rows (7 tab-separated fields, score in the 5th), a JSON list "
                    "(KLUE-STS) or a CSV/TSV header with sentence1 and sentence2",
                    path=None if path is None else str(path), line=1)


# --------------------------------------------------------------------------------------------
# KorSTS and STS-B: tab-separated, no quoting, the first 7 fields
# --------------------------------------------------------------------------------------------


def _sts_rows(content: str, path: PathLike, *, header: bool) -> list[PairRow]:
    rows: list[PairRow] = []
    seen_header = not header
    for number, raw in enumerate(content.split("\n"), start=1):
        text = raw.rstrip("\r")
        if not text.strip():
            continue
        if not seen_header:
            seen_header = True
            continue
        fields = text.split("\t")
        if len(fields) < len(STS_COLUMNS):
            raise DataError(f"expected {len(STS_COLUMNS)} tab-separated fields, found {len(fields)}",
                            path=str(path), line=number, field=STS_COLUMNS[len(fields)])
        record = dict(zip(STS_COLUMNS, fields[:7], strict=True))
        score = _score(record["score"], path=path, line=number, field="score", required=True)
        rows.append(_make(str(len(rows)), record["sentence1"], record["sentence2"], score, None,
                          number, path))
    return rows


# --------------------------------------------------------------------------------------------
# KLUE-STS JSON list and JSON Lines
# --------------------------------------------------------------------------------------------


def _json_list(content: str, path: PathLike) -> list[tuple[int, object]]:
    """Walk a top-level JSON list item by item so each item keeps the line it starts on."""
    decoder = json.JSONDecoder()
    lines = _LineCounter(content)
    pos, n = _skip_ws(content, 0), len(content)
    if pos >= n or content[pos] != "[":
        raise DataError("expected a JSON list of pair objects", path=str(path), line=lines.at(pos))
    pos = _skip_ws(content, pos + 1)
    items: list[tuple[int, object]] = []
    if pos < n and content[pos] == "]":
        return items
    while True:
        line = lines.at(pos)
        try:
            obj, pos = decoder.raw_decode(content, pos)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg})", path=str(path), line=exc.lineno) from exc
        items.append((line, obj))
        pos = _skip_ws(content, pos)
        if pos < n and content[pos] == ",":
            pos = _skip_ws(content, pos + 1)
            continue
        if pos < n and content[pos] == "]":
            if _skip_ws(content, pos + 1) < n:
                raise DataError("unexpected text after the JSON list", path=str(path),
                                line=lines.at(_skip_ws(content, pos + 1)))
            return items
        raise DataError("invalid JSON (expected ',' or ']' after an item)", path=str(path), line=lines.at(pos))


def _json_lines(content: str, path: PathLike) -> list[tuple[int, object]]:
    items = []
    for number, text in enumerate(content.split("\n"), start=1):
        if not text.strip():
            continue
        try:
            items.append((number, json.loads(text)))
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg})", path=str(path), line=number) from exc
    return items


def _json_row(obj: object, index: int, line: int, path: PathLike) -> PairRow:
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, found {type(obj).__name__}", path=str(path), line=line)
    raw_id = obj.get("guid", obj.get("id", index))
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise DataError("id must be a string or an integer", path=str(path), line=line, field="guid")
    for key in ("sentence1", "sentence2"):
        if key not in obj:
            raise DataError("missing key", path=str(path), line=line, field=key)
    labels = obj.get("labels")
    score = binary = None
    if labels is not None:
        if not isinstance(labels, dict):
            raise DataError("labels must be an object such as {\"label\": 3.2, \"binary-label\": 1}",
                            path=str(path), line=line, field="labels")
        if "label" not in labels:
            raise DataError("missing key", path=str(path), line=line, field="labels.label")
        score = _score(labels["label"], path=path, line=line, field="labels.label", required=True)
        if "binary-label" in labels:
            binary = _binary(labels["binary-label"], path=path, line=line, field="labels.binary-label")
    else:
        label_key = next((k for k in _LABEL_NAMES if k in obj), None)
        if label_key is not None:
            score = _score(obj[label_key], path=path, line=line, field=label_key, required=False)
        binary_key = next((k for k in _BINARY_NAMES if k in obj), None)
        if binary_key is not None and obj[binary_key] not in (None, ""):
            binary = _binary(obj[binary_key], path=path, line=line, field=binary_key)
    return _make(str(raw_id).strip(), obj["sentence1"], obj["sentence2"], score, binary, line, path)


# --------------------------------------------------------------------------------------------
# Competition table: CSV/TSV with a header naming sentence1 and sentence2
# --------------------------------------------------------------------------------------------


def _table_rows(content: str, path: PathLike) -> list[PairRow]:
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter_of(first_line(content)), strict=True)
    columns: dict[str, int] | None = None
    rows: list[PairRow] = []
    for line, fields in iter_records(reader, path):
        if not fields or not any(f.strip() for f in fields):
            continue
        if columns is None:
            columns = _table_columns(fields, path, line)
            continue
        rows.append(_table_row(fields, columns, len(rows), line, path))
    return rows


def _table_columns(header: list[str], path: PathLike, line: int) -> dict[str, int]:
    names = [name.strip().lower() for name in header]
    columns: dict[str, int] = {}
    for role, candidates in {"id": ("id", "guid"), "sentence1": ("sentence1",), "sentence2": ("sentence2",),
                             "label": _LABEL_NAMES, "binary": _BINARY_NAMES}.items():
        found = [i for i, name in enumerate(names) if name in candidates]
        if len(found) > 1:
            raise DataError(f"{len(found)} columns could be the {role} column", path=str(path), line=line,
                            field=header[found[1]])
        if found:
            columns[role] = found[0]
    for required in ("sentence1", "sentence2"):
        if required not in columns:
            raise DataError(f"no such column; available columns: {', '.join(repr(h) for h in header)}",
                            path=str(path), line=line, field=required)
    return columns


def _table_row(fields: list[str], columns: dict[str, int], index: int, line: int, path: PathLike) -> PairRow:
    def cell(role: str) -> str | None:
        if role not in columns:
            return None
        pos = columns[role]
        if pos >= len(fields):
            raise DataError(f"expected at least {pos + 1} fields, found {len(fields)}", path=str(path),
                            line=line, field=role if role != "binary" else "binary-label")
        return fields[pos]

    raw_id = cell("id")
    row_id = str(index) if raw_id is None else raw_id.strip()
    if not row_id:
        raise DataError("empty id", path=str(path), line=line, field="id")
    s1, s2 = cell("sentence1"), cell("sentence2")
    raw_score, raw_binary = cell("label"), cell("binary")
    score = _score(raw_score, path=path, line=line, field="label", required=False)
    binary = None if raw_binary is None or not raw_binary.strip() else _binary(
        raw_binary, path=path, line=line, field="binary-label")
    return _make(row_id, s1, s2, score, binary, line, path)


# --------------------------------------------------------------------------------------------
# Field checks shared by every layout
# --------------------------------------------------------------------------------------------


def _make(row_id: str, s1: object, s2: object, score: float | None, binary: int | None, line: int,
          path: PathLike) -> PairRow:
    sentences = []
    for field, value in (("sentence1", s1), ("sentence2", s2)):
        if not isinstance(value, str):
            raise DataError(f"a sentence must be a string, found {type_name(value)}", path=str(path),
                            line=line, field=field)
        if not value.strip():
            raise DataError("empty sentence", path=str(path), line=line, field=field)
        sentences.append(value.strip())
    if binary is None and score is not None:
        binary = int(score >= BINARY_THRESHOLD)
    return PairRow(id=row_id, sentence1=sentences[0], sentence2=sentences[1], score=score, binary=binary,
                   line=line)


def _score(raw: object, *, path: PathLike, line: int, field: str, required: bool) -> float | None:
    """A 0-5 score from a number or a numeric string; empty is None unless ``required``."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if required:
            raise DataError("empty score", path=str(path), line=line, field=field)
        return None
    if isinstance(raw, bool):
        raise DataError(f"score must be a number, found {raw!r}", path=str(path), line=line, field=field)
    try:
        value = float(raw.strip() if isinstance(raw, str) else raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"score is not a number: {raw!r}", path=str(path), line=line, field=field) from None
    if not math.isfinite(value) or not 0.0 <= value <= MAX_SCORE:
        raise DataError(f"score {raw!r} is outside 0-{MAX_SCORE:g}", path=str(path), line=line, field=field)
    return value


def _binary(raw: object, *, path: PathLike, line: int, field: str) -> int:
    text = str(raw).strip() if not isinstance(raw, bool) else ""
    if text in ("0", "1", "0.0", "1.0"):
        return int(float(text))
    raise DataError(f"binary label must be 0 or 1, found {raw!r}", path=str(path), line=line, field=field)


def _check_labelled_consistently(rows: list[PairRow], path: PathLike) -> None:
    """All rows labelled or none: metrics over a half-labelled file would silently skip rows."""
    labelled = [r.score is not None for r in rows]
    if any(labelled) and not all(labelled):
        missing = rows[labelled.index(False)]
        raise DataError("no score, while other rows have one (label every row or none)", path=str(path),
                        line=missing.line, field="label")


def _check_unique_ids(rows: list[PairRow], path: PathLike) -> None:
    first_line: dict[str, int] = {}
    for row in rows:
        first = first_line.setdefault(row.id, row.line)
        if first != row.line:
            raise DataError(f"duplicate id '{row.id}' (first seen on line {first})", path=str(path),
                            line=row.line, field="id")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _skip_ws(content: str, pos: int) -> int:
    while pos < len(content) and content[pos] in " \t\r\n":
        pos += 1
    return pos


class _LineCounter:
    """1-based line of a position, counted incrementally (positions only move forward)."""

    def __init__(self, content: str) -> None:
        self.content, self.pos, self.line = content, 0, 1

    def at(self, pos: int) -> int:
        if pos < self.pos:
            return self.content.count("\n", 0, pos) + 1
        self.line += self.content.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


