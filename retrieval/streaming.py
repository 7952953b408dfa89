"""Label a file of any length in bounded memory, and pick up where an interrupted run stopped.

`fewlabel predict` reads its input one chunk of rows at a time (:func:`~fewlabel.indexing.readers.iter_rows`),
labels the chunk with the router, and appends its lines to ``.OUT.partial`` beside the output. After each chunk
the partial file is flushed to disk and ``.OUT.progress.json`` records how many rows and bytes are done, in that
order; so a run killed at any instant (Ctrl-C, a crash, a lost machine) leaves a record that never claims more
than the partial file holds. Run the same command again and it truncates the partial file to the recorded size
(dropping a half-written chunk), skips the rows already labelled and goes on. Only when every row is written
does the partial file replace OUT, in one rename: OUT is whole or absent (or the previous OUT), as with every
other fewlabel output.

The record carries a key: the input file (path, size, modification time), the index's meta.json, and the
settings that change the output. A rerun with another key starts afresh rather than mixing two runs' rows.

Each chunk goes through the same `Predictor.predict` as a one-shot run, and every per-row decision (the
neighbour search, the vote, the method, the zero-shot route) depends on that row only, so the output equals the
one-shot path's (tests/test_streaming_predict.py compares them byte for byte)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fewlabel.indexing.files import FAULT_ENV, atomic_file, fault_point, folder_lock, resolve_target
from fewlabel.indexing.readers import Row
from fewlabel.retrieval.outputs import csv_header_line, format_predictions, output_format, prediction_header

__all__ = ["DEFAULT_CHUNK_ROWS", "StreamResult", "partial_path", "predict_to_file", "progress_path", "resume_key"]

DEFAULT_CHUNK_ROWS = 10_000
PROGRESS_VERSION = 1


@dataclass
class StreamResult:
    """What a streamed run did: rows written in all (``resumed_from`` of them by an earlier run)."""

    rows: int = 0
    labelled: int = 0
    resumed_from: int = 0
    seconds: float = 0.0
    routes: dict[str, int] = field(default_factory=dict)


def partial_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial")


def progress_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.progress.json")


def resume_key(input_path: str | Path, index_dir: str | Path, settings: dict) -> dict:
    """What must not change between an interrupted run and its resumption: the input file, the index (its
    meta.json, which changes whenever its rows, method or tuning do) and the settings that shape the output."""
    stat = Path(input_path).stat()
    meta = Path(index_dir) / "meta.json"
    return {"version": PROGRESS_VERSION,
            "input": {"path": str(Path(input_path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
            "index": {"path": str(Path(index_dir).resolve()),
                      "meta_sha256": hashlib.sha256(meta.read_bytes()).hexdigest() if meta.is_file() else None},
            "settings": json.loads(json.dumps(settings, default=str, sort_keys=True))}


def _chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _read_progress(path: Path) -> dict | None:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    ok = isinstance(state, dict) and isinstance(state.get("rows"), int) and isinstance(state.get("bytes"), int)
    return state if ok else None


def _write_progress(path: Path, key: dict, size: int, result: StreamResult) -> None:
    record = {"key": key, "rows": result.rows, "bytes": size, "labelled": result.labelled, "routes": result.routes}
    with atomic_file(path) as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def predict_to_file(predictor, rows: Iterable[Row], out: str | Path, *, key: dict,
                    chunk_size: int = DEFAULT_CHUNK_ROWS, explain: bool = False, routes: bool = False,
                    resume: bool = True, total: int | None = None, show_progress: bool = False,
                    log: Callable[[str], None] = lambda message: None, kept: Sequence[str] = ()) -> StreamResult:
    """Label ``rows`` with ``predictor`` (a :class:`~fewlabel.retrieval.router.Predictor`) chunk by chunk into
    ``out`` (.csv or .jsonl, the columns of :func:`~fewlabel.retrieval.outputs.write_predictions`), resuming a
    run of the same ``key`` (see :func:`resume_key`) unless ``resume`` is False. ``total``: rows expected, for
    the progress bar's ETA (an estimate is fine). ``kept``: the input columns the rows carry (``Row.extra``) to
    write after the predictions' own. The caller has checked that ``out`` may be written
    (:func:`~fewlabel.retrieval.outputs.claim_output`)."""
    from tqdm.auto import tqdm

    out = resolve_target(out)  # a link to an earlier output: the real file is replaced, the link stays
    fmt = output_format(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial, progress = partial_path(out), progress_path(out)
    labels = predictor.label_names_
    options: dict[str, Any] = dict(routes=routes, explain=explain, kept=kept)
    result = StreamResult()
    started = time.perf_counter()
    with folder_lock(out, waiting=log):  # a second run on the same OUT waits instead of sharing the partial file
        state = _read_progress(progress) if resume else None
        size = partial.stat().st_size if partial.is_file() else -1
        if state and state.get("key") == key and 0 <= state["bytes"] <= size:
            result.resumed_from, offset = state["rows"], state["bytes"]
            result.rows, result.labelled = state["rows"], int(state.get("labelled") or 0)
            result.routes = dict(state.get("routes") or {})
            log(f"resuming {out}: {result.resumed_from:,} rows were written by an earlier run")
        else:
            if state or size >= 0:
                log(f"starting {out} afresh (an earlier unfinished run had other input, index or settings)"
                    if state and state.get("key") != key and resume else f"starting {out} afresh")
            result.resumed_from, offset = 0, 0
        with open(partial, "r+b" if offset else "wb") as fh:
            fh.truncate(offset)  # a half-written chunk after the last record is dropped here
            fh.seek(offset)
            if not offset:
                if fmt == "csv":
                    fh.write(csv_header_line(prediction_header(labels, **options)).encode())
                fh.flush()
                os.fsync(fh.fileno())
                _write_progress(progress, key, fh.tell(), result)
            bar = tqdm(total=total, initial=result.rows, unit="row", desc="labelling", disable=not show_progress,
                       smoothing=0.05, dynamic_ncols=True)
            try:
                for chunk in _chunks(itertools.islice(rows, result.rows, None), chunk_size):
                    predictions = predictor.predict(chunk, explain=explain)
                    data = format_predictions(predictions, fmt, labels, **options).encode("utf-8")
                    if os.environ.get(FAULT_ENV) == "predict:mid-chunk" and result.rows > result.resumed_from:
                        fh.write(data[:len(data) // 2])  # the tests' half-written chunk, then death
                        fh.flush()
                        fault_point("predict:mid-chunk")
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())  # the rows are on disk before the record says so
                    result.rows += len(chunk)
                    result.labelled += sum(1 for p in predictions if p.labels)
                    for p in predictions:
                        result.routes[p.route] = result.routes.get(p.route, 0) + 1
                    _write_progress(progress, key, fh.tell(), result)
                    fault_point("predict:after-chunk")
                    bar.update(len(chunk))
            except KeyboardInterrupt:
                bar.close()
                log(f"interrupted after {result.rows:,} rows; run the same command again to resume")
                raise
            bar.close()
        if out.exists():
            os.chmod(partial, out.stat().st_mode & 0o7777)  # a replaced output keeps its mode
        os.replace(partial, out)
        progress.unlink(missing_ok=True)
    result.seconds = time.perf_counter() - started
    return result
