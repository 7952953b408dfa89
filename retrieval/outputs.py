"""What a prediction is, and every way fewlabel writes predictions: CSV or JSONL, plus the ``OUT.meta.json``
record beside an output. Written once for `predict` (kNN, with or without the zero-shot fallback), `zeroshot`,
the demo and the relation commands.

Files are written atomically: the file appears whole or not at all, and an existing file is only replaced once
the new one is complete."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fewlabel.indexing.errors import InvalidArgumentError
from fewlabel.indexing.files import atomic_file, first_line_of, refuse_foreign

__all__ = ["Prediction", "claim_output", "csv_header_line", "format_predictions", "kept_names", "output_format",
           "prediction_header", "write_meta", "write_predictions"]

ROUTE_KNN = "knn"


@dataclass
class Prediction:
    """One labelled text: the chosen labels, a score per label (kNN vote fraction or zero-shot score, as
    ``route`` says), the nearest example's similarity, the neighbours behind the vote (explain mode), and the
    route that produced it (``knn`` or the index's method: ``linear``, ``nb``, ``ensemble``; ``zeroshot-nli``,
    ``zeroshot-embed``, ``knn+zeroshot-…``) with its reason."""

    id: str
    labels: tuple[str, ...]
    scores: dict[str, float]
    top_similarity: float
    neighbours: list[dict] = field(default_factory=list)
    route: str = ROUTE_KNN
    reason: str = "neighbours"
    kept: dict[str, object] = field(default_factory=dict)  # the input columns carried over (--keep-cols)


def output_format(path: Path) -> str:
    """``csv`` or ``jsonl`` from the output's name; anything else is refused before any work is done."""
    suffix = Path(path).suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise InvalidArgumentError(f"{path}: output must end in .csv or .jsonl")


#: The first columns of each kind of output fewlabel writes: how an existing file is recognised as ours.
OUTPUT_COLUMNS = {"predictions": ("id", "labels"), "scores": ("id", "target"),
                  "submission": ("id", "pred_label", "probs")}


def _ours(path: Path, kind: str) -> bool:
    line = first_line_of(path)
    columns = OUTPUT_COLUMNS[kind]
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        try:
            item = json.loads(line)
        except ValueError:
            return False
        return isinstance(item, dict) and all(c in item for c in columns)
    return tuple(next(csv.reader([line]), [])[:len(columns)]) == columns


def _is_meta(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False


def claim_output(path: str | Path, kind: str, *, meta: bool = False) -> Path:
    """Check, before any work, that ``path`` may receive a ``kind`` output (``predictions``, ``scores``,
    ``submission``): nothing there, an empty file, or an earlier fewlabel output of that kind; with ``meta``, the
    same for ``OUT.meta.json``. A user's file or folder is never replaced."""
    path = Path(path)
    what = {"predictions": "a predictions file", "scores": "an STS scores file (id,target)",
            "submission": "a submission (id,pred_label,probs)"}[kind]
    refuse_foreign(path, folder=False, what=what, ours=lambda p: _ours(p, kind))
    if meta:
        refuse_foreign(meta_path(path), folder=False, what="fewlabel's record of an output", ours=_is_meta)
    return path


def meta_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".meta.json")


def _similarity(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


def _own_columns(label_names: Sequence[str], *, routes: bool, similarity: bool, explain: bool) -> list[str]:
    header = ["id", "labels", *(["route", "reason"] if routes else []), *[f"score:{n}" for n in label_names]]
    header += ["top_similarity"] if similarity else []
    return [*header, "neighbours"] if explain else header


def kept_names(kept: Sequence[str], own: Sequence[str]) -> list[str]:
    """Output names of the carried input columns: their own name, or ``input:<name>`` where that is one of the
    output's own columns (an input's ``labels`` or ``id`` beside the predicted ones)."""
    return [f"input:{name}" if name in own or name.startswith("input:") else name for name in kept]


def prediction_header(label_names: Sequence[str], *, routes: bool = False, similarity: bool = True,
                      explain: bool = False, kept: Sequence[str] = ()) -> list[str]:
    """The CSV columns of :func:`write_predictions` (JSONL writes the same keys, without a header line): the
    predictions' own, then the ``kept`` input columns (last, so that an output is still recognised by its first
    columns, ``id,labels``)."""
    own = _own_columns(label_names, routes=routes, similarity=similarity, explain=explain)
    return [*own, *kept_names(kept, own)]


def _cell(value: object) -> str:
    """A kept input value as a CSV cell: strings as they were, anything else (JSONL numbers, lists) as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def format_predictions(predictions: Sequence[Prediction], fmt: str, label_names: Sequence[str], *,
                       routes: bool = False, similarity: bool = True, explain: bool = False,
                       kept: Sequence[str] = ()) -> str:
    """The lines of ``predictions`` in ``fmt`` (csv or jsonl), without the CSV header: what
    :func:`write_predictions` writes, and what ``fewlabel predict`` appends chunk by chunk. ``kept``: the input
    columns each prediction carries (``Prediction.kept``), written last under :func:`kept_names`."""
    own = _own_columns(label_names, routes=routes, similarity=similarity, explain=explain)
    names = kept_names(kept, [*own, "scores"] if fmt == "jsonl" else own)  # JSONL keeps the scores in one object
    buffer = io.StringIO(newline="")
    if fmt == "jsonl":
        for p in predictions:
            item: dict = {"id": p.id, "labels": list(p.labels)}
            if routes:
                item.update(route=p.route, reason=p.reason)
            item["scores"] = {name: round(p.scores[name], 6) for name in label_names}
            if similarity:
                item["top_similarity"] = _similarity(p.top_similarity)
            if explain:
                item["neighbours"] = p.neighbours
            item.update((name, p.kept[col]) for name, col in zip(names, kept, strict=True))
            buffer.write(json.dumps(item, ensure_ascii=False) + "\n")
        return buffer.getvalue()
    writer = csv.writer(buffer)
    for p in predictions:
        line = [p.id, json.dumps(list(p.labels), ensure_ascii=False), *([p.route, p.reason] if routes else []),
                *[f"{p.scores[name]:.4f}" for name in label_names]]
        if similarity:
            line.append("" if math.isnan(p.top_similarity) else f"{p.top_similarity:.4f}")
        if explain:
            line.append(json.dumps(p.neighbours, ensure_ascii=False))
        line += [_cell(p.kept[col]) for col in kept]
        writer.writerow(line)
    return buffer.getvalue()


def csv_header_line(columns: Sequence[str]) -> str:
    """One CSV line (the header), quoted as the rows are."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerow(columns)
    return buffer.getvalue()


def write_predictions(predictions: Sequence[Prediction], path: str | Path, label_names: Sequence[str], *,
                      routes: bool = False, similarity: bool = True, kept: Sequence[str] = ()) -> Path:
    """CSV ``id, labels (JSON list) [, route, reason], score:<label>…, top_similarity [, neighbours]`` or the
    same keys in JSONL (``scores`` as one object). ``routes`` adds the route columns (the zero-shot fallback and
    pure zero-shot); ``similarity=False`` leaves ``top_similarity`` out (pure zero-shot has no neighbours).
    ``neighbours`` appears when any prediction carries them (explain mode). ``kept``: input columns carried
    over from each prediction's ``kept`` (``--keep-cols``), written last."""
    path = Path(path)
    fmt = output_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    explain = any(p.neighbours for p in predictions)
    options: dict[str, Any] = dict(routes=routes, similarity=similarity, explain=explain, kept=kept)
    with atomic_file(path) as fh:
        if fmt == "csv":
            fh.write(csv_header_line(prediction_header(label_names, **options)))
        fh.write(format_predictions(predictions, fmt, label_names, **options))
    return path


def write_meta(out: str | Path, meta: dict) -> Path:
    """``OUT.meta.json`` beside an output (what made it: input, model, settings, metrics), atomically."""
    path = meta_path(out)
    with atomic_file(path) as fh:
        fh.write(json.dumps(meta, ensure_ascii=False, indent=2, default=str) + "\n")
    return path
