"""Predict relations with a folder from ``fewlabel finetune re`` and write the competition's submission file.

The submission (KLUE-RE competition form) is a CSV with ``id,pred_label,probs``: ``probs`` is a list of
probabilities in the label order of the model (for KLUE, ``relation_list.json``'s 30 relations), written as a
JSON list, summing to 1; ``pred_label`` is the label with the highest probability."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

import numpy as np

from fewlabel.indexing.errors import DataError, InvalidArgumentError, ModelError
from fewlabel.indexing.files import atomic_file
from fewlabel.indexing.hf import load_cross_encoder
from fewlabel.indexing.model_folder import MARKER_FILE, RE_KIND, read_marker
from fewlabel.indexing.readers import read_text_file
from fewlabel.indexing.relation.data import RelationRow
from fewlabel.indexing.relation.render import render_rows

__all__ = ["RelationClassifier", "normalise_probs", "read_submission", "write_submission"]

SUBMISSION_COLUMNS = ("id", "pred_label", "probs")


def normalise_probs(probs: np.ndarray) -> np.ndarray:
    """Rows of non-negative finite scores scaled to sum to 1 (float64); an all-zero row becomes uniform."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise DataError(f"probs must be a 2-D (rows, labels) array, got shape {probs.shape}")
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise DataError("probs must be finite and non-negative")
    sums = probs.sum(axis=1, keepdims=True)
    uniform = np.full_like(probs, 1.0 / max(1, probs.shape[1]))
    return np.where(sums > 0, probs / np.where(sums > 0, sums, 1.0), uniform)


def write_submission(ids: Sequence[str], probs: np.ndarray, labels: Sequence[str], path: str | Path) -> Path:
    """Write ``id,pred_label,probs`` atomically; ``probs`` rows are normalised to sum to 1 first."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise InvalidArgumentError(f"{path}: a submission is a CSV file; the name must end in .csv")
    probs = normalise_probs(probs)
    labels = list(labels)
    if probs.shape != (len(ids), len(labels)):
        raise DataError(f"probs must be ({len(ids)} rows, {len(labels)} labels), got {probs.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as fh:
        writer = csv.writer(fh)
        writer.writerow(SUBMISSION_COLUMNS)
        for row_id, row in zip(ids, probs, strict=True):
            writer.writerow([row_id, labels[int(np.argmax(row))], json.dumps([float(p) for p in row])])
    return path


class _At(TypedDict):
    """Where a submission record is: the keyword arguments of `DataError`."""

    path: str
    line: int


def read_submission(path: str | Path, labels: Sequence[str] | None = None) -> tuple[list[str], list[str], np.ndarray]:
    """Read a submission back: ids, predicted labels and the (n, n_labels) probabilities. With ``labels`` the
    predicted labels and the width of ``probs`` are checked against the label list."""
    content = read_text_file(path)
    reader = csv.reader(content.splitlines())
    header = next(reader, None)
    if header is None or [h.strip() for h in header[:3]] != list(SUBMISSION_COLUMNS):
        raise DataError("a submission starts with the header id,pred_label,probs", path=str(path), line=1)
    ids, predicted, rows = [], [], []
    for number, fields in enumerate(reader, start=2):
        if not fields:
            continue
        where: _At = {"path": str(path), "line": number}
        if len(fields) < 3:
            raise DataError(f"expected 3 fields, found {len(fields)}", **where)
        try:
            row = json.loads(fields[2])
        except json.JSONDecodeError as exc:
            raise DataError(f"probs is not a JSON list ({exc.msg})", field="probs", **where) from exc
        if not isinstance(row, list) or not all(isinstance(p, (int, float)) for p in row):
            raise DataError("probs must be a list of numbers", field="probs", **where)
        if labels is not None and len(row) != len(labels):
            raise DataError(f"probs has {len(row)} numbers but the label list has {len(labels)}", field="probs",
                            **where)
        if labels is not None and fields[1] not in labels:
            raise DataError(f"unknown label '{fields[1]}'", field="pred_label", **where)
        ids.append(fields[0])
        predicted.append(fields[1])
        rows.append(row)
    if not ids:
        raise DataError("no rows in the submission", path=str(path))
    width = {len(r) for r in rows}
    if len(width) != 1:
        raise DataError("rows of probs have different lengths", path=str(path), field="probs")
    return ids, predicted, np.asarray(rows, dtype=np.float64)


class RelationClassifier:
    """A relation classifier folder from ``fewlabel finetune re``, ready to predict.

    It renders rows exactly as in training (the folder's ``marker``, ``type_language`` and separator) and
    returns probabilities in the folder's label order."""

    def __init__(self, model_dir: str | os.PathLike, *, device: str | None = None, batch_size: int = 32,
                 max_length: int | None = None) -> None:
        folder = Path(model_dir).expanduser()
        info = self.read_info(model_dir)
        self.folder, self.info = folder.resolve(), info
        self.labels: list[str] = list(info["labels"])
        self.marker, self.type_language = info["marker"], info.get("type_language", "auto")
        self.no_relation = info.get("no_relation")
        self.batch_size = batch_size
        self.model = self._load(device, max_length or info.get("max_length"))
        self.sep = info.get("sep") or self.model.tokenizer.sep_token or "[SEP]"
        id2label = {int(k): v for k, v in self.model.config.id2label.items()}
        if [id2label.get(i) for i in range(len(self.labels))] != self.labels:
            raise ModelError(f"'{model_dir}': config.json's id2label does not match the label list in {MARKER_FILE}")

    @staticmethod
    def read_info(model_dir: str | os.PathLike) -> dict:
        """The marker record of a finished relation classifier folder; anything else is one clear error (cheap:
        nothing loads)."""
        info = read_marker(Path(model_dir).expanduser())
        if info is None:
            raise ModelError(f"'{model_dir}' is not a finished relation classifier folder (no {MARKER_FILE}; train "
                             "one with `fewlabel finetune re`)")
        if info.get("kind") != RE_KIND:
            raise ModelError(f"'{model_dir}' holds a {info.get('kind')!r} model, not a relation classifier")
        return info

    def _load(self, device: str | None, max_length: int | None):
        if not self._needs_pooling_module():
            return load_cross_encoder(self.folder, what="relation classifier", device=device, max_length=max_length)
        from fewlabel.indexing.relation.pooling import legacy_module_names

        with legacy_module_names():
            return load_cross_encoder(self.folder, what="relation classifier", device=device, max_length=max_length,
                                      trust_remote_code=True)

    def _needs_pooling_module(self) -> bool:
        """An entity-start folder names fewlabel's own pooling module in ``modules.json``; sentence-transformers
        imports a module from outside its namespace only with ``trust_remote_code``. It is granted for that
        one class only: a folder naming any other outside module is refused."""
        if self.info.get("pooling", "cls") != "entity-start":
            return False
        try:
            entries = json.loads((self.folder / "modules.json").read_text(encoding="utf-8"))
            types = {entry["type"] for entry in entries}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"'{self.folder}': modules.json is missing or unreadable ({exc})") from exc
        from fewlabel.indexing.relation.pooling import LEGACY_POOLING_CLASSES, POOLING_CLASS

        outside = {t for t in types if not t.startswith("sentence_transformers.")} - {POOLING_CLASS,
                                                                                      *LEGACY_POOLING_CLASSES}
        if outside:
            raise ModelError(f"'{self.folder}': modules.json names modules fewlabel does not provide: "
                             f"{', '.join(sorted(outside))}")
        return True

    def pairs(self, rows: Sequence[RelationRow]) -> list[tuple[str, str]]:
        return [r.pair() for r in render_rows(rows, self.marker, sep=self.sep, type_language=self.type_language)]

    def predict_proba(self, rows: Sequence[RelationRow], show_progress: bool = False) -> np.ndarray:
        """(n, n_labels) probabilities (softmax of the logits) in ``labels`` order."""
        pairs = self.pairs(rows)
        if not pairs:
            return np.zeros((0, len(self.labels)))
        logits = np.asarray(self.model.predict([list(p) for p in pairs], batch_size=self.batch_size,
                                               show_progress_bar=show_progress, convert_to_numpy=True),
                            dtype=np.float64).reshape(len(pairs), -1)
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)

    def predict(self, rows: Sequence[RelationRow]) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(rows).argmax(axis=1)]

    def describe(self) -> dict:
        return {"model": str(self.folder), "kind": RE_KIND, "base": self.info.get("base"), "marker": self.marker,
                "type_language": self.type_language, "pooling": self.info.get("pooling", "cls"),
                "labels": len(self.labels), "no_relation": self.no_relation}
