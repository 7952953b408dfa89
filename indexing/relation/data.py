"""Read relation-extraction data into uniform :class:`RelationRow` objects: a sentence, a subject and an
object entity (word, character offsets, type) and the relation label.

Four layouts, recognised from the content (not the extension):

- **KLUE-RE** JSON: a JSON list (or JSON Lines) of objects with ``guid``, ``sentence``,
  ``subject_entity`` / ``object_entity`` = ``{"word", "start_idx", "end_idx", "type"}`` (``end_idx``
  inclusive) and ``label`` (a relation name, or its index in the label list as the Hugging Face copy has it);
- the **competition CSV**: columns ``id, sentence, subject_entity, object_entity, label[, source]`` where each
  entity is the string form of a Python dict (``"{'word': '비틀즈', 'start_idx': 24, ...}"``); it is parsed
  with :func:`ast.literal_eval`, which accepts literals only and never runs code;
- **SemEval-2010 Task 8** JSON Lines: ``id, sentence, relation[, comment]`` with the entities tagged in the
  sentence as ``<e1>…</e1>`` and ``<e2>…</e2>``;
- the **SemEval-2010 official text** files (``TRAIN_FILE.TXT``, ``TEST_FILE_FULL.TXT``): blocks of
  ``ID<TAB>"sentence"``, the relation, ``Comment: …`` and a blank line.

SemEval rows become the same rows as KLUE's: the tags are removed, ``<e1>`` is the subject and ``<e2>`` the
object (so a label such as ``Cause-Effect(e2,e1)`` keeps its meaning), and entity types are unknown (None).

Offsets are character (code point) positions in the sentence, so multibyte Hangul counts one per syllable.
Every entity's offsets are checked against its word: a mismatch is a :class:`~fewlabel.indexing.errors.DataError`
naming the file, the line and the field, as is every other problem. Labels are checked against the label
list when one is given; an unlabelled file (no or empty labels everywhere) gives ``label=None``.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from fewlabel.indexing.errors import DataError
from fewlabel.indexing.readers import iter_records, read_text_file
from fewlabel.indexing.sniff import delimiter_of, first_line, header_fields, type_name
from fewlabel.indexing.sts.pairs import _json_lines, _json_list

__all__ = ["Entity", "KLUE_NO_RELATION", "RELATION_FORMATS", "RelationRow", "SEMEVAL_LABELS", "SEMEVAL_OTHER",
           "SEMEVAL_RELATIONS", "detect_relation_format", "infer_labels", "label_counts", "no_relation_label",
           "parse_tagged_sentence", "read_relation_labels", "read_relations", "write_klue_json"]

PathLike = str | os.PathLike

RELATION_FORMATS = ("klue", "klue-csv", "semeval", "semeval-txt")
KLUE_NO_RELATION = "no_relation"
SEMEVAL_OTHER = "Other"
#: The 9 undirected SemEval-2010 Task 8 relations (the official scorer's order).
SEMEVAL_RELATIONS = ("Cause-Effect", "Component-Whole", "Content-Container", "Entity-Destination", "Entity-Origin",
                     "Instrument-Agency", "Member-Collection", "Message-Topic", "Product-Producer")
#: All 19 directed SemEval labels: Other first (like KLUE's no_relation), then each relation both ways.
SEMEVAL_LABELS = (SEMEVAL_OTHER, *(f"{r}({d})" for r in SEMEVAL_RELATIONS for d in ("e1,e2", "e2,e1")))

_ID_KEYS = ("guid", "id")
_TAG = re.compile(r"</?e[12]>")
_SEMEVAL_TXT_FIRST = re.compile(r'^\s*(\d+)\t"(.*)"\s*$')


@dataclass(frozen=True)
class Entity:
    """One entity mention. ``start`` and ``end`` are 0-based character positions of its first and last
    character in the sentence, ``end`` inclusive as in KLUE's ``end_idx``: ``sentence[start:end + 1] == word``
    (or ``sentence[entity.stop_slice]``)."""

    word: str
    start: int
    end: int  # inclusive
    type: str | None = None  # KLUE: PER, ORG, LOC, DAT, POH, NOH; None when unknown (SemEval)

    @property
    def stop(self) -> int:
        """One past the last character (the usual Python slice end)."""
        return self.end + 1

    @property
    def stop_slice(self) -> slice:
        return slice(self.start, self.end + 1)

    def to_klue(self) -> dict:
        return {"word": self.word, "start_idx": self.start, "end_idx": self.end, "type": self.type}


@dataclass(frozen=True)
class RelationRow:
    """One sentence with its subject and object entities and the relation between them."""

    id: str
    sentence: str
    subject: Entity
    object: Entity
    label: str | None  # None when the file is unlabelled
    line: int  # 1-based line where the record starts


# --------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------


def read_relations(path: PathLike, *, labels: Sequence[str] | None = None, fmt: str | None = None,
                   keep_labels: bool = True) -> list[RelationRow]:
    """Read every row of a KLUE-RE JSON, competition CSV or SemEval-2010 file (see the module docstring).

    ``labels`` (the label list, e.g. from :func:`read_relation_labels`) makes every label be checked against it,
    and lets integer labels be read as positions in it. SemEval labels are always checked against the 19 official
    ones. ``keep_labels=False`` reads every label as None (a prediction input whose label column holds a
    placeholder, as the competition's test file does). ``fmt`` (one of ``RELATION_FORMATS``) skips detection."""
    content = read_text_file(path)
    if not content.strip():
        raise DataError("empty file: no relation rows", path=str(path))
    fmt = fmt or detect_relation_format(content, path)
    if fmt not in RELATION_FORMATS:
        raise DataError(f"unknown relation format '{fmt}'; accepted: {', '.join(RELATION_FORMATS)}", path=str(path))
    label_list = list(labels) if labels is not None else None
    if fmt in ("semeval", "semeval-txt") and label_list is None:
        label_list = list(SEMEVAL_LABELS)
    if fmt == "klue":
        items = _json_list(content, path) if content.lstrip().startswith("[") else _json_lines(content, path)
        rows = [_klue_row(obj, i, line, path, label_list, keep_labels) for i, (line, obj) in enumerate(items)]
    elif fmt == "klue-csv":
        rows = _csv_rows(content, path, label_list, keep_labels)
    elif fmt == "semeval":
        rows = [_semeval_json_row(obj, i, line, path, label_list, keep_labels)
                for i, (line, obj) in enumerate(_json_lines(content, path))]
    else:
        rows = _semeval_txt_rows(content, path, label_list, keep_labels)
    if not rows:
        raise DataError("no relation rows in the file", path=str(path))
    _check_consistent(rows, path)
    return rows


def detect_relation_format(content: str, path: PathLike | None = None) -> str:
    """``klue`` (a JSON list, or JSON Lines with ``subject_entity``), ``semeval`` (JSON Lines with a tagged
    sentence), ``semeval-txt`` (the official text files) or ``klue-csv`` (a header naming ``subject_entity``)."""
    where = None if path is None else str(path)
    start = content.lstrip()
    if start.startswith("["):
        return "klue"
    first = first_line(content)
    if start.startswith("{"):
        try:
            obj = json.loads(first)
        except json.JSONDecodeError as exc:
            raise DataError(f"the first line is not a JSON object ({exc.msg})", path=where, line=1) from exc
        if isinstance(obj, dict) and "subject_entity" in obj:
            return "klue"
        if isinstance(obj, dict) and isinstance(obj.get("sentence"), str) and _TAG.search(obj["sentence"]):
            return "semeval"
        raise DataError("JSON Lines rows must be KLUE-RE objects (subject_entity, object_entity) or SemEval rows "
                        "(a sentence with <e1>…</e1> <e2>…</e2> tags)", path=where, line=1)
    if _SEMEVAL_TXT_FIRST.match(first):
        return "semeval-txt"
    names = {h.strip().lower() for h in header_fields(first)}
    if {"subject_entity", "object_entity", "sentence"} <= names:
        return "klue-csv"
    raise DataError("not a relation file: expected a KLUE-RE JSON list, JSON Lines, a CSV with sentence, "
                    "subject_entity and object_entity columns, or SemEval-2010 rows (ID<TAB>\"sentence with "
                    "<e1>…</e1> <e2>…</e2>\")", path=where, line=1)


def read_relation_labels(path: PathLike) -> list[str]:
    """The label list, in order: KLUE's ``relation_list.json`` (``{"relations": [...]}``), a JSON list, or a text
    file with one label a line. The order is the order of the ``probs`` column of a submission."""
    content = read_text_file(path)
    where = str(path)
    if content.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(content)
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc.msg})", path=where, line=exc.lineno) from exc
        if isinstance(data, dict):
            if "relations" not in data:
                raise DataError("a label file object needs a 'relations' list", path=where, field="relations")
            data = data["relations"]
        if not isinstance(data, list):
            raise DataError("the label list must be a JSON list of names", path=where)
        names = data
    else:
        names = [line.strip() for line in content.splitlines() if line.strip()]
    if not names:
        raise DataError("the label list is empty", path=where)
    bad = next((n for n in names if not isinstance(n, str) or not n.strip()), None)
    if bad is not None:
        raise DataError(f"every label must be a non-empty string, found {bad!r}", path=where)
    names = [n.strip() for n in names]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(f"labels appear twice: {', '.join(dupes)}", path=where)
    return names


def no_relation_label(labels: Sequence[str]) -> str | None:
    """The "no relation" class of a label list: KLUE's ``no_relation`` or SemEval's ``Other`` (None if neither)."""
    for name in (KLUE_NO_RELATION, SEMEVAL_OTHER):
        if name in labels:
            return name
    return None


def parse_tagged_sentence(tagged: str) -> tuple[str, Entity, Entity]:
    """Remove SemEval's ``<e1>…</e1>`` and ``<e2>…</e2>`` tags and return the clean sentence with both entities
    at their offsets in it. Each tag must appear exactly once, opened before it is closed, around a non-empty
    word; e1 and e2 may not overlap. Raises ValueError with the reason (callers add file and line)."""
    found = [(m.start(), m.end(), m.group()) for m in _TAG.finditer(tagged)]
    names = [tag for _, _, tag in found]
    for tag in ("<e1>", "</e1>", "<e2>", "</e2>"):
        if names.count(tag) != 1:
            raise ValueError(f"expected one {tag} tag, found {names.count(tag)}")
    order = {tag: i for i, tag in enumerate(names)}
    for n in ("1", "2"):
        if order[f"<e{n}>"] > order[f"</e{n}>"]:
            raise ValueError(f"</e{n}> comes before <e{n}>")
        if order[f"</e{n}>"] - order[f"<e{n}>"] != 1:
            raise ValueError("e1 and e2 overlap")
    clean_parts: list[str] = []
    opened: dict[str, int] = {}
    spans: dict[str, tuple[int, int]] = {}
    pos = length = 0
    for start, end, tag in found:
        clean_parts.append(tagged[pos:start])
        length += start - pos
        pos = end
        name = tag.strip("</>")
        if tag.startswith("</"):
            spans[name] = (opened[name], length)
        else:
            opened[name] = length
    clean_parts.append(tagged[pos:])
    clean = "".join(clean_parts)
    entities = []
    for name in ("e1", "e2"):
        s, e = spans[name]
        word = clean[s:e]
        if not word.strip():
            raise ValueError(f"<{name}> tags hold no word")
        entities.append(Entity(word=word, start=s, end=e - 1, type=None))
    return clean, entities[0], entities[1]


class _At(TypedDict):
    """Where a record starts: the keyword arguments that every check below and `DataError` take."""

    path: str
    line: int


class _AtField(_At):
    field: str


# --------------------------------------------------------------------------------------------------------------
# KLUE-RE JSON and the competition CSV
# --------------------------------------------------------------------------------------------------------------


def _klue_row(obj: object, index: int, line: int, path: PathLike, labels: list[str] | None,
              keep_labels: bool) -> RelationRow:
    where: _At = {"path": str(path), "line": line}
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, found {type_name(obj)}", **where)
    for key in ("sentence", "subject_entity", "object_entity"):
        if key not in obj:
            raise DataError("missing key", field=key, **where)
    id_key = next((k for k in _ID_KEYS if k in obj), None)
    row_id = _check_id(obj[id_key] if id_key else index, field=id_key or "guid", **where)
    sentence = _check_sentence(obj["sentence"], **where)
    subject = _entity(obj["subject_entity"], sentence, field="subject_entity", **where)
    obj_entity = _entity(obj["object_entity"], sentence, field="object_entity", **where)
    label = _label(obj.get("label"), labels, **where) if keep_labels else None
    return RelationRow(row_id, sentence, subject, obj_entity, label, line)


def _csv_rows(content: str, path: PathLike, labels: list[str] | None, keep_labels: bool) -> list[RelationRow]:
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter_of(first_line(content)), strict=True)
    columns: dict[str, int] | None = None
    rows: list[RelationRow] = []
    for line, fields in iter_records(reader, path):
        if not fields or not any(f.strip() for f in fields):
            continue
        if columns is None:
            columns = {name.strip().lower(): i for i, name in enumerate(fields)}
            continue
        rows.append(_csv_row(fields, columns, len(rows), line, path, labels, keep_labels))
    return rows


def _csv_row(fields: list[str], columns: dict[str, int], index: int, line: int, path: PathLike,
             labels: list[str] | None, keep_labels: bool) -> RelationRow:
    where: _At = {"path": str(path), "line": line}

    def cell(name: str) -> str | None:
        if name not in columns:
            return None
        if columns[name] >= len(fields):
            raise DataError(f"expected {columns[name] + 1} fields, found {len(fields)}", field=name, **where)
        return fields[columns[name]]

    raw_id = cell("id") if "id" in columns else cell("guid")
    row_id = _check_id(raw_id if raw_id is not None else index, field="id", **where)
    sentence = _check_sentence(cell("sentence"), **where)
    subject = _entity(cell("subject_entity"), sentence, field="subject_entity", **where)
    obj_entity = _entity(cell("object_entity"), sentence, field="object_entity", **where)
    label = _label(cell("label"), labels, **where) if keep_labels else None
    return RelationRow(row_id, sentence, subject, obj_entity, label, line)


def _entity(raw: object, sentence: str, *, field: str, path: str, line: int) -> Entity:
    """An entity from a dict, or from the string form of one (the competition CSV), checked against the sentence."""
    where: _AtField = {"path": path, "line": line, "field": field}
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            raise DataError("empty entity", **where)
        try:
            raw = ast.literal_eval(text)  # literals only: a string here can never run code
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise DataError(f"not a dict literal such as {{'word': ..., 'start_idx': ..., 'end_idx': ..., "
                            f"'type': ...}} ({type(exc).__name__})", **where) from None
    if not isinstance(raw, dict):
        raise DataError(f"an entity must be an object with word, start_idx, end_idx, type; found {type_name(raw)}",
                        **where)
    for key in ("word", "start_idx", "end_idx"):
        if key not in raw:
            raise DataError(f"missing key '{key}'", **where)
    word, start, end, etype = raw["word"], raw["start_idx"], raw["end_idx"], raw.get("type")
    if not isinstance(word, str) or not word:
        raise DataError(f"word must be a non-empty string, found {word!r}", **where)
    for name, value in (("start_idx", start), ("end_idx", end)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataError(f"{name} must be an integer, found {value!r}", **where)
    if etype is not None and (not isinstance(etype, str) or not etype.strip()):
        raise DataError(f"type must be a string such as PER or ORG, found {etype!r}", **where)
    if not 0 <= start <= end < len(sentence):
        raise DataError(f"offsets {start}-{end} (end inclusive) are outside the sentence of {len(sentence)} "
                        f"characters", **where)
    found = sentence[start:end + 1]
    if found != word:
        raise DataError(f"offsets {start}-{end} (end inclusive) give {found!r} but the word is {word!r}", **where)
    return Entity(word=word, start=start, end=end, type=etype.strip() if etype else None)


# --------------------------------------------------------------------------------------------------------------
# SemEval-2010 Task 8
# --------------------------------------------------------------------------------------------------------------


def _semeval_json_row(obj: object, index: int, line: int, path: PathLike, labels: list[str] | None,
                      keep_labels: bool) -> RelationRow:
    where: _At = {"path": str(path), "line": line}
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, found {type_name(obj)}", **where)
    if "sentence" not in obj:
        raise DataError("missing key", field="sentence", **where)
    row_id = _check_id(obj.get("id", index), field="id", **where)
    raw_label = obj.get("relation", obj.get("label"))
    return _semeval_row(row_id, obj["sentence"], raw_label, line, path, labels, keep_labels)


def _semeval_txt_rows(content: str, path: PathLike, labels: list[str] | None, keep_labels: bool) -> list[RelationRow]:
    rows: list[RelationRow] = []
    lines = content.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        start_line = i + 1
        match = _SEMEVAL_TXT_FIRST.match(lines[i])
        if not match:
            raise DataError('expected ID<TAB>"sentence"', path=str(path), line=start_line)
        i += 1
        raw_label = None
        while i < len(lines) and lines[i].strip():
            text = lines[i].strip()
            if not text.startswith("Comment") and raw_label is None:
                raw_label = text
            i += 1
        rows.append(_semeval_row(match.group(1), match.group(2), raw_label, start_line, path, labels, keep_labels))
    return rows


def _semeval_row(row_id: str, tagged: object, raw_label: object, line: int, path: PathLike,
                 labels: list[str] | None, keep_labels: bool) -> RelationRow:
    where: _At = {"path": str(path), "line": line}
    if not isinstance(tagged, str):
        raise DataError(f"sentence must be a string, found {type_name(tagged)}", field="sentence", **where)
    try:
        sentence, e1, e2 = parse_tagged_sentence(tagged)
    except ValueError as exc:
        raise DataError(f"bad entity tags: {exc}", field="sentence", **where) from None
    _check_sentence(sentence, **where)
    label = _label(raw_label, labels, field="relation", **where) if keep_labels else None
    return RelationRow(row_id, sentence, e1, e2, label, line)


# --------------------------------------------------------------------------------------------------------------
# Shared checks
# --------------------------------------------------------------------------------------------------------------


def _label(raw: object, labels: list[str] | None, *, path: str, line: int, field: str = "label") -> str | None:
    """A label name; None when missing or empty. Integers (or digit strings) are positions in ``labels``."""
    where: _AtField = {"path": path, "line": line, "field": field}
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise DataError(f"a label must be a relation name or an integer, found {raw!r}", **where)
    text = str(raw).strip()
    if labels is not None and text in labels:
        return text
    if isinstance(raw, int) or text.isdigit():
        if labels is None:
            raise DataError(f"integer label {text} needs the label list (--labels) to be read", **where)
        value = int(text)
        if not 0 <= value < len(labels):
            raise DataError(f"integer label {value} is outside 0-{len(labels) - 1} (the label list has {len(labels)} "
                            "names); for a prediction input with placeholder labels, ignore its labels", **where)
        return labels[value]
    if labels is not None:
        shown = ", ".join(labels[:5]) + (" …" if len(labels) > 5 else "")
        raise DataError(f"unknown label '{text}' (not in the label list of {len(labels)}: {shown})", **where)
    return text


def _check_id(raw: object, *, field: str, path: str, line: int) -> str:
    if isinstance(raw, bool) or not isinstance(raw, (str, int)) or not str(raw).strip():
        raise DataError("id must be a non-empty string or an integer", path=path, line=line, field=field)
    return str(raw).strip()


def _check_sentence(raw: object, *, path: str, line: int) -> str:
    """The sentence is kept exactly as written: offsets count from its first character."""
    if not isinstance(raw, str):
        raise DataError(f"sentence must be a string, found {type_name(raw)}", path=path, line=line, field="sentence")
    if not raw.strip():
        raise DataError("empty sentence", path=path, line=line, field="sentence")
    return raw


def _check_consistent(rows: list[RelationRow], path: PathLike) -> None:
    """All rows labelled or none, and ids unique (they key the submission)."""
    unlabelled = [r for r in rows if r.label is None]
    if unlabelled and len(unlabelled) < len(rows):
        raise DataError("this row has no label but others do", path=str(path), line=unlabelled[0].line,
                        field="label")
    first_seen: dict[str, RelationRow] = {}
    for row in rows:
        first = first_seen.setdefault(row.id, row)
        if first is not row:
            raise DataError(f"duplicate id '{row.id}' (first seen on line {first.line})", path=str(path),
                            line=row.line, field="id")


def label_counts(rows: Sequence[RelationRow]) -> dict[str, int]:
    """How many rows carry each label, most frequent first."""
    counts: dict[str, int] = {}
    for row in rows:
        if row.label is not None:
            counts[row.label] = counts.get(row.label, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def infer_labels(rows: Sequence[RelationRow]) -> list[str]:
    """A label list from the data when none is given: the no-relation class first (if present), then sorted."""
    names = sorted({r.label for r in rows if r.label is not None})
    none = no_relation_label(names)
    return ([none] if none else []) + [n for n in names if n != none]


def write_klue_json(rows: Sequence[RelationRow], path: PathLike) -> Path:
    """Rows as a KLUE-RE JSON list (handy for converting SemEval data or writing fixtures)."""
    items = [{"guid": r.id, "sentence": r.sentence, "subject_entity": r.subject.to_klue(),
              "object_entity": r.object.to_klue(), "label": r.label} for r in rows]
    out = Path(path)
    out.write_text(json.dumps(items, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return out
