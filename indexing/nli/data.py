"""Read natural language inference (NLI) pairs into uniform :class:`NLIPair` objects.

Three layouts, recognised from the content (not the extension):

- **KLUE-NLI** JSON: a JSON list of objects with ``premise``, ``hypothesis``, ``gold_label`` (and ``guid``);
- **XNLI / KorNLI** TSV: a header ``sentence1 sentence2 gold_label`` (tab-separated, quotes are ordinary
  characters); a CSV or TSV whose header names ``premise``/``hypothesis`` and ``label``/``gold_label``
  works too;
- **MNLI-style** JSON Lines: one object a line with ``premise``, ``hypothesis`` and ``label`` (or
  ``gold_label``; ``sentence1``/``sentence2`` are accepted for the texts).

Labels are ``entailment``, ``neutral`` or ``contradiction`` (any case), or the integers 0, 1, 2 in the
GLUE-MNLI order (0 entailment, 1 neutral, 2 contradiction). Anything else, including SNLI/MNLI's ``-``
("annotators did not agree"), is a :class:`~fewlabel.indexing.errors.DataError` naming the file, the line and the
field: nothing is dropped silently. Unlabelled files (no label column at all) give ``label=None``.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass

from fewlabel.indexing.errors import DataError
from fewlabel.indexing.readers import iter_records, read_text_file
from fewlabel.indexing.sniff import delimiter_of, first_line, header_fields
from fewlabel.indexing.sts.pairs import _json_lines, _json_list

__all__ = ["NLI_LABELS", "NLI_FORMATS", "NLIPair", "detect_nli_format", "read_nli", "read_nli_files"]

PathLike = str | os.PathLike

#: The three NLI classes in the GLUE-MNLI order (the meaning of integer labels 0, 1, 2).
NLI_LABELS = ("entailment", "neutral", "contradiction")
NLI_FORMATS = ("klue", "table", "jsonl")
_PREMISE_KEYS = ("premise", "sentence1")
_HYPOTHESIS_KEYS = ("hypothesis", "sentence2")
_LABEL_KEYS = ("gold_label", "label")
_ID_KEYS = ("guid", "id", "pairID", "pair_id")


@dataclass(frozen=True)
class NLIPair:
    """One premise / hypothesis pair with its gold class (None when the file is unlabelled)."""

    id: str
    premise: str
    hypothesis: str
    label: str | None  # one of NLI_LABELS
    line: int  # 1-based line where the record starts


def read_nli(path: PathLike, *, fmt: str | None = None) -> list[NLIPair]:
    """Read every pair of a KLUE-NLI JSON, XNLI/KorNLI TSV (or CSV) or MNLI-style JSONL file.

    ``fmt`` (one of ``NLI_FORMATS``) skips detection. Either every row carries a label or none does."""
    content = read_text_file(path)
    if not content.strip():
        raise DataError("empty file: no NLI pairs", path=str(path))
    fmt = fmt or detect_nli_format(content, path)
    if fmt not in NLI_FORMATS:
        raise DataError(f"unknown NLI format '{fmt}'; accepted: {', '.join(NLI_FORMATS)}", path=str(path))
    if fmt == "table":
        rows = _table_rows(content, path)
    else:
        items = _json_list(content, path) if fmt == "klue" else _json_lines(content, path)
        rows = [_json_row(obj, i, line, path) for i, (line, obj) in enumerate(items)]
    if not rows:
        raise DataError("no NLI pairs in the file", path=str(path))
    unlabelled = [r for r in rows if r.label is None]
    if unlabelled and len(unlabelled) < len(rows):
        first = unlabelled[0]
        raise DataError("this row has no label but others do", path=str(path), line=first.line, field="label")
    return rows


def read_nli_files(paths: list[PathLike] | tuple[PathLike, ...]) -> list[NLIPair]:
    """Several files read one after another (ids are prefixed with the file's stem when several files
    are given, so they stay unique)."""
    out: list[NLIPair] = []
    for path in paths:
        rows = read_nli(path)
        if len(paths) > 1:
            stem = os.path.splitext(os.path.basename(str(path)))[0]
            rows = [NLIPair(f"{stem}:{r.id}", r.premise, r.hypothesis, r.label, r.line) for r in rows]
        out.extend(rows)
    return out


def detect_nli_format(content: str, path: PathLike | None = None) -> str:
    """``klue`` (a JSON list), ``jsonl`` (an object a line) or ``table`` (a CSV/TSV header)."""
    start = content.lstrip()
    if start.startswith("["):
        return "klue"
    if start.startswith("{"):
        return "jsonl"
    header = [h.strip().lower() for h in header_fields(first_line(content))]
    if any(h in header for h in _PREMISE_KEYS) and any(h in header for h in _HYPOTHESIS_KEYS):
        return "table"
    raise DataError("not an NLI file: expected a KLUE-NLI JSON list, JSON Lines objects with premise/hypothesis/"
                    "label, or a TSV/CSV header such as 'sentence1 sentence2 gold_label'",
                    path=None if path is None else str(path), line=1)


def parse_nli_label(raw: object, *, path: PathLike, line: int, field: str) -> str | None:
    """A gold label as one of ``NLI_LABELS``; None for a missing/empty one (an unlabelled row)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        raise DataError(f"label must be a class name or 0/1/2, found {raw!r}", path=str(path), line=line,
                        field=field)
    if isinstance(raw, int) or (isinstance(raw, str) and raw.strip().isdigit()):
        value = int(raw)
        if 0 <= value < len(NLI_LABELS):
            return NLI_LABELS[value]
        raise DataError(f"integer label {value} is not 0, 1 or 2 (entailment, neutral, contradiction)",
                        path=str(path), line=line, field=field)
    if isinstance(raw, str):
        name = raw.strip().lower()
        if name in NLI_LABELS:
            return name
        hint = " ('-' marks pairs the annotators did not agree on: remove those rows)" if name == "-" else ""
        raise DataError(f"unknown label '{raw.strip()}'; expected one of {', '.join(NLI_LABELS)}{hint}",
                        path=str(path), line=line, field=field)
    raise DataError(f"label must be a string or an integer, found {type(raw).__name__}", path=str(path), line=line,
                    field=field)


# ---- JSON (KLUE list, JSON Lines) ---------------------------------------------------------------------
def _json_row(obj: object, index: int, line: int, path: PathLike) -> NLIPair:
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, found {type(obj).__name__}", path=str(path), line=line)
    premise_key = next((k for k in _PREMISE_KEYS if k in obj), None)
    hypothesis_key = next((k for k in _HYPOTHESIS_KEYS if k in obj), None)
    if premise_key is None:
        raise DataError("missing key", path=str(path), line=line, field="premise")
    if hypothesis_key is None:
        raise DataError("missing key", path=str(path), line=line, field="hypothesis")
    label_key = next((k for k in _LABEL_KEYS if k in obj), None)
    label = parse_nli_label(obj[label_key], path=path, line=line, field=label_key) if label_key else None
    id_key = next((k for k in _ID_KEYS if k in obj), None)
    raw_id = obj[id_key] if id_key else index
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id).strip():
        raise DataError("id must be a non-empty string or an integer", path=str(path), line=line, field=id_key)
    return _make(str(raw_id).strip(), obj[premise_key], obj[hypothesis_key], label, line, path,
                 (premise_key, hypothesis_key))


# ---- TSV / CSV with a header ----------------------------------------------------------------------------
def _table_rows(content: str, path: PathLike) -> list[NLIPair]:
    tsv = delimiter_of(first_line(content)) == "\t"
    stream = io.StringIO(content, newline="")
    reader = (csv.reader(stream, delimiter="\t", quoting=csv.QUOTE_NONE) if tsv
              else csv.reader(stream, strict=True))
    rows: list[NLIPair] = []
    columns: dict[str, int] | None = None
    label_field = "label"
    header_names: list[str] = []
    names = ("premise", "hypothesis")
    for line, fields in iter_records(reader, path):
        if not fields or not any(f.strip() for f in fields):
            continue
        if columns is None:
            header_names = [f.strip() for f in fields]
            columns, label_field = _columns([f.lower() for f in header_names], path, line)
            names = (fields[columns["premise"]].strip(), fields[columns["hypothesis"]].strip())
            continue
        needed = max(columns.values()) + 1
        if len(fields) < needed:
            missing = header_names[min(pos for pos in columns.values() if pos >= len(fields))]
            raise DataError(f"expected {needed} fields, found {len(fields)}", path=str(path), line=line,
                            field=missing)
        label = None
        if "label" in columns:
            label = parse_nli_label(fields[columns["label"]], path=path, line=line, field=label_field)
        row_id = fields[columns["id"]].strip() if "id" in columns else str(len(rows))
        rows.append(_make(row_id or str(len(rows)), fields[columns["premise"]], fields[columns["hypothesis"]], label,
                          line, path, names))
    return rows


def _columns(header: list[str], path: PathLike, line: int) -> tuple[dict[str, int], str]:
    """Column positions by role (premise, hypothesis, optional label and id) and the label column's name."""
    def find(keys: tuple[str, ...]) -> tuple[int, str] | None:
        for key in keys:
            if key in header:
                return header.index(key), key
        return None

    out: dict[str, int] = {}
    for role, keys in (("premise", _PREMISE_KEYS), ("hypothesis", _HYPOTHESIS_KEYS)):
        found = find(keys)
        if found is None:
            raise DataError(f"no {role} column (one of {', '.join(keys)}); the header has: {', '.join(header)}",
                            path=str(path), line=line, field=role)
        out[role] = found[0]
    label = find(_LABEL_KEYS)
    if label is not None:
        out["label"] = label[0]
    ident = find(("id", "guid", "pairid"))
    if ident is not None:
        out["id"] = ident[0]
    return out, label[1] if label is not None else "label"


def _make(row_id: str, premise: object, hypothesis: object, label: str | None, line: int, path: PathLike,
          fields: tuple[str, str]) -> NLIPair:
    for value, field in ((premise, fields[0]), (hypothesis, fields[1])):
        if not isinstance(value, str):
            raise DataError(f"text must be a string, found {type(value).__name__}", path=str(path), line=line,
                            field=field)
        if not value.strip():
            raise DataError("empty text", path=str(path), line=line, field=field)
    return NLIPair(id=row_id, premise=premise, hypothesis=hypothesis, label=label, line=line)  # type: ignore[arg-type]
