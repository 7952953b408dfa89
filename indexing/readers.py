"""Read users' labelled text files (CSV, TSV, JSON Lines) into uniform :class:`Row` objects.

Every fewlabel command goes through here, so this is the one place where bad input is
caught. Each problem becomes a :class:`~fewlabel.indexing.errors.DataError` that names the file, the
1-based physical line and the field, because a user with a 40,000-row file needs to know
*where* to look, not just *what* went wrong. Nothing is silently dropped or repaired except
blank lines and surrounding whitespace around labels.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypedDict

import numpy as np

from fewlabel.indexing.errors import DataError
from fewlabel.indexing.sniff import FORMATS, detect_format, type_name

__all__ = ["FORMATS", "Row", "count_lines", "detect_format", "has_column", "iter_rows", "label_matrix", "read_rows",
           "read_texts", "split_label_cell"]

PathLike = str | os.PathLike

_FORMAT_NAMES = ("csv", "tsv", "jsonl")
_FIELD_LIMIT = 1 << 30  # characters in one CSV field (the csv module's default, 131,072, refuses real long texts)

# JSON strings cannot hold raw CR/LF, so splitting on them is safe; str.splitlines() is not,
# because it also splits on U+2028, U+0085 and friends, which may appear inside JSON strings.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Row:
    """One labelled (or unlabelled) example, with where it came from for later error messages."""

    text: str
    labels: tuple[str, ...]  # () when no label column was requested (or allowed to be empty)
    id: str  # from id_col when given, else the 0-based data row number as a string
    line: int  # 1-based physical line where the record starts (a CSV/TSV header is line 1)
    # the ``keep_cols`` columns as read (strings from CSV/TSV, any JSON value from JSONL), carried to the output
    extra: dict[str, object] = field(default_factory=dict, hash=False)


def label_matrix(items: Sequence[Row | Sequence[str]], names: Sequence[str],
                 source: str = "data", field: str = "label") -> np.ndarray:
    """(n, L) booleans: ``out[i, j]`` is whether item i carries label ``names[j]``. ``items`` are :class:`Row`
    objects or plain label lists. A label missing from ``names`` is an error naming the row (a Row's own line,
    else its 1-based position in ``source``), because it could never be predicted and would silently drag every
    score down. The one place a label matrix is built: indexes, tuning, evaluation, trainers and benchmarks."""
    column = {name: j for j, name in enumerate(names)}
    out = np.zeros((len(items), len(names)), dtype=bool)
    for i, item in enumerate(items):
        labels = item.labels if isinstance(item, Row) else item
        for label in labels:
            j = column.get(label)
            if j is None:
                line = item.line if isinstance(item, Row) else i + 1
                raise DataError(f"unknown label '{label}' (known labels: {', '.join(names)})", path=source,
                                line=line, field=field)
            out[i, j] = True
    return out


# --------------------------------------------------------------------------------------------
# Format detection and label parsing
# --------------------------------------------------------------------------------------------


def split_label_cell(raw: object, *, label_sep: str | None, path: PathLike | None, line: int | None,
                 field: str | None) -> tuple[str, ...]:
    """Turn one raw label cell into a tuple of clean, unique labels.

    Accepts a JSON list (from JSONL), a string holding a JSON list (``'["a", "b"]'``), a
    string split on ``label_sep``, a single string label or an int. Labels are stripped and
    de-duplicated in order. Raises :class:`DataError` when there is no label at all, because
    an unlabelled example in a training file is almost always a mistake.
    """
    labels = _split_labels(raw, label_sep=label_sep, path=path, line=line, field=field)
    if not labels:
        raise DataError("no label", path=_str_or_none(path), line=line, field=field)
    return labels


def _split_labels(raw: object, *, label_sep: str | None, path: PathLike | None, line: int | None,
                  field: str | None) -> tuple[str, ...]:
    """Like :func:`split_label_cell` but returns ``()`` for an empty cell instead of raising.

    Kept separate so :func:`read_rows` can honour ``allow_empty_labels`` while malformed
    labels (bad JSON, an empty item between separators) still raise.
    """
    where: _Where = {"path": _str_or_none(path), "line": line, "field": field}
    if raw is None:
        return ()
    if isinstance(raw, list):
        items = raw
    elif isinstance(raw, bool):
        raise DataError(f"a label must be a string or an integer, found {raw!r}", **where)
    elif isinstance(raw, int):
        items = [raw]
    elif isinstance(raw, str):
        items = _split_label_string(raw, label_sep=label_sep, where=where)
    else:
        raise DataError(f"labels must be a string or a list, found {type(raw).__name__}", **where)
    return _clean_label_items(items, where=where)


class _Where(TypedDict):
    """Where a label cell is: the keyword arguments of `DataError`."""

    path: str | None
    line: int | None
    field: str | None


def _split_label_string(raw: str, *, label_sep: str | None, where: _Where) -> list:
    """Split one label string: JSON list if it looks like one, else on ``label_sep``."""
    stripped = raw.strip()
    if not stripped:
        return []
    if stripped.startswith("["):
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DataError(f"labels look like a JSON list but are not valid JSON ({exc.msg})",
                            **where) from exc
        if not isinstance(parsed, list):
            raise DataError("labels look like a JSON list but are not one", **where)
        return parsed
    if label_sep:
        return stripped.split(label_sep)
    return [stripped]


def _clean_label_items(items: list, *, where: _Where) -> tuple[str, ...]:
    """Stringify, strip and de-duplicate label items; an empty item is an error, not skipped,
    because it usually means a wrong separator or a stray one that the user should see."""
    seen: dict[str, None] = {}
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise DataError(f"a label must be a string or an integer, found {item!r}", **where)
        label = str(item).strip()
        if not label:
            raise DataError("empty label in the label list", **where)
        seen.setdefault(label, None)
    return tuple(seen)


# --------------------------------------------------------------------------------------------
# Public readers
# --------------------------------------------------------------------------------------------


def read_rows(path: PathLike, *, text_col: str, label_col: str | None = None, id_col: str | None = None,
              label_sep: str | None = None, fmt: str | None = None, header: bool = True,
              allow_empty_labels: bool = False, keep_cols: Sequence[str] = ()) -> list[Row]:
    """Read every data row of a CSV, TSV or JSONL file, validating as it goes.

    ``fmt`` overrides the extension. With ``header=False`` (CSV/TSV only) columns are 0-based
    positions written as strings (``text_col="0"``). With ``allow_empty_labels`` a missing or
    empty label gives ``labels=()`` instead of an error (for partly labelled files). ``keep_cols`` are read
    into each ``Row.extra`` as they are (they must exist like any requested column).
    Raises :class:`DataError` on the first problem, naming file, line and field.
    """
    _check_file(path)
    fmt = _resolve_format(path, fmt)
    content = read_text_file(path)
    rows = list(_rows(content, path=path, fmt=fmt, header=header, text_col=text_col, label_col=label_col,
                      id_col=id_col, label_sep=label_sep, allow_empty_labels=allow_empty_labels,
                      keep_cols=keep_cols))
    if not rows:
        raise DataError("no rows: the file has no data rows", path=str(path))
    return rows


def _rows(source, *, path: PathLike, fmt: str, header: bool, text_col: str, label_col: str | None,
          id_col: str | None, label_sep: str | None, allow_empty_labels: bool,
          keep_cols: Sequence[str] = ()) -> Iterator[Row]:
    """Rows from ``source`` (the whole text, or its checked lines one at a time): the one record-to-row path that
    :func:`read_rows` and :func:`iter_rows` share, so both give the same rows and the same errors."""
    wanted = list(dict.fromkeys([c for c in (text_col, label_col, id_col) if c is not None] + list(keep_cols)))
    if fmt == "jsonl":
        records = _jsonl_records(source, path=path, wanted=wanted, optional={label_col})
    else:
        records = _delimited_records(source, path=path, fmt=fmt, wanted=wanted, header=header)
    first_line_of_id: dict[str, int] = {}
    for index, (line, values) in enumerate(records):
        row = _make_row(values, index=index, line=line, path=path, text_col=text_col, label_col=label_col,
                        id_col=id_col, label_sep=label_sep, allow_empty_labels=allow_empty_labels)
        if keep_cols:
            row.extra.update((col, values[col]) for col in keep_cols)
        if id_col is not None:
            _check_unique_id(row, first_line_of_id, path=path, id_col=id_col)
        yield row


def read_texts(path: PathLike, *, text_col: str, id_col: str | None = None, fmt: str | None = None,
               header: bool = True, keep_cols: Sequence[str] = ()) -> list[Row]:
    """Read texts without labels (prediction inputs); every ``Row.labels`` is ``()``."""
    return read_rows(path, text_col=text_col, id_col=id_col, fmt=fmt, header=header, keep_cols=keep_cols)


def iter_rows(path: PathLike, *, text_col: str, label_col: str | None = None, id_col: str | None = None,
              label_sep: str | None = None, fmt: str | None = None, header: bool = True,
              allow_empty_labels: bool = False, keep_cols: Sequence[str] = ()) -> Iterator[Row]:
    """The rows of :func:`read_rows`, one at a time from the open file, with the same checks and messages: memory
    stays bounded by one record, however long the file (``fewlabel predict`` on millions of rows). The only
    state kept is the set of ids already seen when ``id_col`` is given (a repeated id is still an error).
    A byte that is not UTF-8 is reported with its line, as :func:`read_rows` does."""
    _check_file(path)
    fmt = _resolve_format(path, fmt)
    count = 0
    with open(path, encoding="utf-8-sig", newline="") as fh:
        for row in _rows(_checked_lines(fh, path), path=path, fmt=fmt, header=header, text_col=text_col,
                         label_col=label_col, id_col=id_col, label_sep=label_sep,
                         allow_empty_labels=allow_empty_labels, keep_cols=keep_cols):
            count += 1
            yield row
    if not count:
        raise DataError("no rows: the file has no data rows", path=str(path))


def has_column(path: PathLike, column: str, *, fmt: str | None = None) -> bool:
    """Whether a CSV/TSV file's header, or a JSON Lines file's first record, has ``column``: how prediction
    commands find an ``id`` column to key their output by without being told. Reads the first record only; a file
    that cannot be read says False here and is reported by the reader that follows."""
    try:
        fmt = _resolve_format(path, fmt)
        with open(path, encoding="utf-8-sig", newline="") as fh:
            if fmt == "jsonl":
                first = next((line for line in fh if line.strip()), "")
                record = json.loads(first) if first else None
                return isinstance(record, dict) and column in record
            for _, fields in iter_records(_make_reader(fh, fmt), path):
                if fields:
                    return column in [name.strip() for name in fields]
    except (OSError, UnicodeDecodeError, ValueError, DataError):
        pass
    return False


def _checked_lines(fh: io.TextIOBase, path: PathLike) -> Iterator[str]:
    """The file's lines, line endings kept (what `csv` needs for quoted fields that span lines). A NUL byte is
    refused on its line; bytes that are not UTF-8 are handed to :func:`read_text_file`, which names their line
    exactly (the decoder only knows the position inside its read-ahead buffer)."""
    try:
        for number, line in enumerate(fh, start=1):
            if "\0" in line:
                raise DataError("holds a NUL byte (\\0): not a text file, or damaged", path=str(path), line=number)
            yield line
    except UnicodeDecodeError:
        read_text_file(path)  # raises the DataError naming the line
        raise


def count_lines(path: PathLike) -> int:
    """Physical lines of a file, counted in binary blocks (a second per gigabyte or so): the total a progress bar
    shows before the rows are parsed. It overcounts records by the header and by quoted fields that span lines."""
    total, last = 0, b"\n"
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            total += block.count(b"\n")
            last = block[-1:]
    return total + (last != b"\n")


# --------------------------------------------------------------------------------------------
# File loading
# --------------------------------------------------------------------------------------------


def _resolve_format(path: PathLike, fmt: str | None) -> str:
    """An explicit ``fmt`` wins over the extension, but must still be one we can read."""
    if fmt is None:
        return detect_format(path)
    if fmt.lower() not in _FORMAT_NAMES:
        raise DataError(f"unknown format '{fmt}'; accepted: {', '.join(_FORMAT_NAMES)}", path=str(path))
    return fmt.lower()


def read_text_file(path: PathLike) -> str:
    """Read the whole file as UTF-8 (BOM tolerated), turning I/O and decoding failures into
    DataErrors with the file name and, for bad bytes, the line they are on."""
    p = _check_file(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read file ({exc.strerror or exc})", path=str(path)) from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        hint = "the file is UTF-16; " if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise DataError(f"not valid UTF-8 ({hint}save it as UTF-8)", path=str(path), line=line) from exc
    nul = text.find("\0")
    if nul >= 0:  # text never holds NUL: binary data, or a file cut and pasted from one
        raise DataError("holds a NUL byte (\\0): not a text file, or damaged", path=str(path),
                        line=text.count("\n", 0, nul) + 1)
    return text


def _check_file(path: PathLike) -> Path:
    """The path must name an existing regular file (a folder or a missing file is said as such)."""
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", path=str(path))
    if p.is_dir():
        raise DataError("is a folder; give the data file inside it", path=str(path))
    if not p.is_file():
        raise DataError("not a regular file", path=str(path))
    return p


# --------------------------------------------------------------------------------------------
# Record sources: each yields (start line, {column: raw value}) for the requested columns
# --------------------------------------------------------------------------------------------


def _delimited_records(content: str | Iterable[str], *, path: PathLike, fmt: str, wanted: list[str],
                       header: bool) -> Iterator[tuple[int, dict[str, object]]]:
    """Yield CSV/TSV records with the line each one *starts* on (quoted CSV fields may span
    several physical lines, so ``reader.line_num`` after a read is the record's last line)."""
    positions: dict[str, int] | None = None if header else _positions_from_numbers(wanted, path)
    width: int | None = None  # the header's field count: a longer record has an unquoted separator in a field
    records = iter_records(_make_reader(content, fmt), path,
                           error=lambda exc, line: _csv_error(exc, path=path, fmt=fmt, line=line))
    for line, fields in records:
        if not fields:  # blank line
            continue
        if positions is None:
            positions = _positions_from_header(fields, wanted, path=path, line=line)
            width = len(fields)
            continue
        if width is not None and len(fields) > width:
            separator = "tab" if fmt == "tsv" else "comma"
            raise DataError(f"{len(fields)} fields but the header has {width}: a field holds an unquoted {separator} "
                            f"(quote it), or the row has a stray separator", path=str(path), line=line)
        yield line, _pick_fields(fields, positions, path=path, line=line)


class CSVRecords(Protocol):
    """What `iter_records` needs of a `csv.reader`: its records and the count of physical lines read so far."""

    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...

    def __next__(self) -> list[str]: ...


def iter_records(reader: CSVRecords, path: PathLike, *,
                 error: Callable[[csv.Error, int], Exception] | None = None) -> Iterator[tuple[int, list[str]]]:
    """Yield (line the record *starts* on, fields) for every record of a `csv.reader`, blank ones included.

    Quoted fields may span several physical lines, so `reader.line_num` after a read is the record's last
    line; every reader of delimited files needs the start line for its error messages. A malformed record
    raises `error(exc, line)`, by default a DataError naming the file and the line."""
    lines_read = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line = lines_read + 1
            raise (error(exc, line) if error else
                   DataError(f"malformed CSV record starting here: {exc}", path=str(path), line=line)) from exc
        line, lines_read = lines_read + 1, reader.line_num
        yield line, fields


def _make_reader(content: str | Iterable[str], fmt: str) -> CSVRecords:
    """CSV is read strictly so an unclosed quote is reported instead of swallowing the rest of
    the file; TSV ignores quotes entirely because real TSV corpora (STS-B) contain stray ones. ``content`` is the
    whole text, or its lines with their endings (:func:`iter_rows`)."""
    stream = io.StringIO(content, newline="") if isinstance(content, str) else content
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))  # long texts are valid; an unclosed quote
    if fmt == "tsv":                                                   # is caught as "never closed" at the end
        return csv.reader(stream, delimiter="\t", quoting=csv.QUOTE_NONE)
    return csv.reader(stream, strict=True)


def _csv_error(exc: csv.Error, *, path: PathLike, fmt: str, line: int) -> DataError:
    """Explain the csv module's terse errors in terms a user can act on."""
    message = str(exc)
    if "unexpected end of data" in message:
        message += "; a quoted field starting in this record is never closed"
    elif "field larger than field limit" in message:
        message += f"; a field over {_FIELD_LIMIT:,} characters, probably an unclosed quote starting in this record"
    return DataError(f"malformed {fmt.upper()} record starting here: {message}", path=str(path), line=line)


def _positions_from_numbers(wanted: list[str], path: PathLike) -> dict[str, int]:
    """Without a header, columns are addressed by 0-based position written as a string."""
    positions: dict[str, int] = {}
    for col in wanted:
        if not (col.strip().isascii() and col.strip().isdigit()):
            raise DataError("with header=False, columns are 0-based positions such as '0' or '1'",
                            path=str(path), field=col)
        positions[col] = int(col)
    return positions


def _positions_from_header(header_fields: list[str], wanted: list[str], *, path: PathLike,
                           line: int) -> dict[str, int]:
    """Map requested column names to positions; unknown or ambiguous names are errors that
    list the columns the file actually has, since a typo is the usual cause."""
    names = [name.strip() for name in header_fields]
    positions: dict[str, int] = {}
    for col in wanted:
        matches = [i for i, name in enumerate(names) if name == col.strip()]
        if not matches:
            available = ", ".join(repr(n) for n in names)
            raise DataError(f"no such column; available columns: {available}",
                            path=str(path), line=line, field=col)
        if len(matches) > 1:
            raise DataError(f"column name appears {len(matches)} times in the header",
                            path=str(path), line=line, field=col)
        positions[col] = matches[0]
    return positions


def _pick_fields(fields: list[str], positions: dict[str, int], *, path: PathLike,
                 line: int) -> dict[str, object]:
    """Take the requested columns from one record; extra trailing fields are ignored."""
    needed = max(positions.values()) + 1
    if len(fields) < needed:
        short = next(col for col, pos in positions.items() if pos >= len(fields))
        raise DataError(f"expected {needed} fields, found {len(fields)}", path=str(path), line=line,
                        field=short)
    return {col: fields[pos] for col, pos in positions.items()}


def _jsonl_records(content: str | Iterable[str], *, path: PathLike, wanted: list[str],
                   optional: set[str | None]) -> Iterator[tuple[int, dict[str, object]]]:
    """Yield one record per non-blank JSON Lines line. ``optional`` keys (the label column)
    may be missing; they come back as None so the label rules decide what that means. ``content`` is the whole
    text, or its lines with their endings (:func:`iter_rows`)."""
    lines = _LINE_BREAK.split(content) if isinstance(content, str) else (line.rstrip("\r\n") for line in content)
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        obj = _parse_json_line(text, path=path, line=number)
        values: dict[str, object] = {}
        for col in wanted:
            if col not in obj and col not in optional:
                raise DataError("missing key", path=str(path), line=number, field=col)
            values[col] = obj.get(col)
        yield number, values


def _parse_json_line(text: str, *, path: PathLike, line: int) -> Mapping[str, object]:
    """Parse one JSONL line, which must be a JSON object."""
    array_hint = ""
    if line == 1 and text.lstrip().startswith("["):
        array_hint = "; this looks like a JSON array file, but JSON Lines (one object per line) is expected"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg} at column {exc.colno}){array_hint}", path=str(path),
                        line=line) from exc
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, found {type_name(obj)}{array_hint}", path=str(path),
                        line=line)
    return obj


# --------------------------------------------------------------------------------------------
# Row building and checks
# --------------------------------------------------------------------------------------------


def _make_row(values: dict[str, object], *, index: int, line: int, path: PathLike, text_col: str,
              label_col: str | None, id_col: str | None, label_sep: str | None,
              allow_empty_labels: bool) -> Row:
    """Validate one record's text, labels and id and build the Row."""
    text = _check_text(values[text_col], path=path, line=line, field=text_col)
    labels: tuple[str, ...] = ()
    if label_col is not None:
        labels = _split_labels(values[label_col], label_sep=label_sep, path=path, line=line, field=label_col)
        if not labels and not allow_empty_labels:
            raise DataError("no label", path=str(path), line=line, field=label_col)
    row_id = str(index) if id_col is None else _check_id(values[id_col], path=path, line=line, field=id_col)
    return Row(text=text, labels=labels, id=row_id, line=line)


def _check_text(raw: object, *, path: PathLike, line: int, field: str) -> str:
    """Text must be a non-blank string; it is returned unchanged (no stripping) so what the
    encoder sees is exactly what the user wrote."""
    if not isinstance(raw, str):
        raise DataError(f"text must be a string, found {type_name(raw)}", path=str(path), line=line,
                        field=field)
    if not raw.strip():
        raise DataError("empty text", path=str(path), line=line, field=field)
    return raw


def _check_id(raw: object, *, path: PathLike, line: int, field: str) -> str:
    """Ids may be strings or integers (JSONL); they are stripped and must not be empty."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise DataError(f"id must be a string or an integer, found {type_name(raw)}", path=str(path),
                        line=line, field=field)
    row_id = str(raw).strip()
    if not row_id:
        raise DataError("empty id", path=str(path), line=line, field=field)
    return row_id


def _check_unique_id(row: Row, first_line_of_id: dict[str, int], *, path: PathLike, id_col: str) -> None:
    """Ids key predictions and index entries, so a repeated id would silently overwrite one."""
    first = first_line_of_id.setdefault(row.id, row.line)
    if first != row.line:
        raise DataError(f"duplicate id '{row.id}' (first seen on line {first})", path=str(path),
                        line=row.line, field=id_col)




def _str_or_none(path: PathLike | None) -> str | None:
    return None if path is None else str(path)
