"""Label texts with a saved `LabelIndex`: tune (k, m) on validation rows, predict, evaluate.

The glue between `indexing` (vectors and storage) and the kNN vote (`knn`, `voting`, `tuning`),
shared by the CLI, the demo and the benchmarks so all three label text the same way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from indexing.embedding_cache import EmbeddingCache, SupportsEncode
from indexing.errors import DataError, FewlabelError
from indexing.label_index import LabelIndex
from indexing.readers import Row

from .knn import KNNLabeler
from .tuning import KMResult, tune_k_m
from .voting import neighbour_label_tensor

DEFAULT_MAX_K = 20
UNTUNED_K = 15


def label_targets(rows: Sequence[Row], label_names: Sequence[str], source: str) -> np.ndarray:
    """(n, L) booleans for rows' labels; a label the index has never seen is an error naming the
    row, because it could never be predicted and would silently drag every score down."""
    column = {name: j for j, name in enumerate(label_names)}
    y = np.zeros((len(rows), len(label_names)), dtype=bool)
    for i, row in enumerate(rows):
        for label in row.labels:
            if label not in column:
                raise DataError(f"unknown label '{label}' (known labels: {', '.join(label_names)})",
                                path=source, line=row.line, field="label")
            y[i, column[label]] = True
    return y


def tune_index(index: LabelIndex, encoder: SupportsEncode, valid_rows: Sequence[Row], *,
               max_k: int = DEFAULT_MAX_K, metric: str = "micro", source: str = "validation data",
               cache: EmbeddingCache | None = None, batch_size: int = 32,
               show_progress: bool = False) -> KMResult:
    """Choose k and m on validation rows (one neighbour search at max_k) and store them, with the
    whole score grid, in the index's metadata."""
    valid_rows = list(valid_rows)
    if not valid_rows:
        raise DataError("no validation rows", path=source)
    y_true = label_targets(valid_rows, index.label_names, source)
    max_k = max(1, min(max_k, len(index)))
    vectors = index.encode_queries(encoder, [r.text for r in valid_rows], cache=cache,
                                   batch_size=batch_size, show_progress=show_progress)
    sims, ids = index.search(vectors, max_k)
    neigh = neighbour_label_tensor(index.label_matrix(), ids)
    result = tune_k_m(neigh, sims, y_true, max_k=max_k, metric=metric, multi_label=index.multi_label,
                      show_progress=show_progress)
    index.tuning = {**result.to_dict(), "max_k": max_k, "n_valid": len(valid_rows), "source": str(source)}
    return result


def resolve_k_m(index: LabelIndex, k: int | None = None, m: float | None = None) -> tuple[int, float]:
    """The (k, m) to vote with: explicit overrides, else the tuned values, else a default
    (k=15; m=1 for single-label so the majority always answers, k/3 for multi-label)."""
    tuned = index.tuning or {}
    if k is None:
        k = int(tuned.get("k", UNTUNED_K))
    k = max(1, min(int(k), len(index)))
    if m is None:
        if "m" in tuned and tuned.get("k") == k:
            m = tuned["m"]
        else:
            m = 1 if not index.multi_label else max(1, round(k / 3))
    if not 1 <= m <= k:
        raise FewlabelError(f"m must be between 1 and k={k}, got {m}")
    return k, m


def labeler_for(index: LabelIndex, k: int | None = None, m: float | None = None) -> KNNLabeler:
    k, m = resolve_k_m(index, k, m)
    return KNNLabeler.from_index(index.faiss_index, index.label_matrix(), index.label_names, k=k, m=m,
                                 multi_label=index.multi_label)


@dataclass
class Prediction:
    """One labelled text: chosen labels, per-label vote fractions, nearest similarity, and (in
    explain mode) the neighbours behind the vote."""

    id: str
    labels: tuple[str, ...]
    scores: dict[str, float]
    top_similarity: float
    neighbours: list[dict] = field(default_factory=list)


def predict_rows(index: LabelIndex, encoder: SupportsEncode, rows: Sequence[Row], *, k: int | None = None,
                 m: float | None = None, explain: bool = False, cache: EmbeddingCache | None = None,
                 batch_size: int = 32, show_progress: bool = False) -> list[Prediction]:
    rows = list(rows)
    labeler = labeler_for(index, k, m)
    vectors = index.encode_queries(encoder, [r.text for r in rows], cache=cache, batch_size=batch_size,
                                   show_progress=show_progress)
    if not rows:
        return []
    chosen = labeler.predict(vectors)
    proba = labeler.predict_proba(vectors)
    neighbours = labeler.explain(vectors, labeler.k)
    out = []
    for row, labels, p, near in zip(rows, chosen, proba, neighbours, strict=True):
        if not index.multi_label:
            labels = () if labels is None else (labels,)
        if explain:
            for n in near:
                n["id"] = index.rows[n["row"]].id
                n["text"] = index.rows[n["row"]].text
        out.append(Prediction(id=row.id, labels=tuple(labels),
                              scores={name: float(v) for name, v in zip(index.label_names, p, strict=True)},
                              top_similarity=float(near[0]["similarity"]) if near else float("nan"),
                              neighbours=near if explain else []))
    return out


def evaluate(predictions: Sequence[Prediction], gold: Sequence[Row], label_names: Sequence[str]) -> dict:
    """Micro/macro F1 (and accuracy: exact match for multi-label) of predictions against gold rows."""
    y_true = label_targets(gold, label_names, "gold data")
    column = {name: j for j, name in enumerate(label_names)}
    y_pred = np.zeros_like(y_true)
    for i, pred in enumerate(predictions):
        y_pred[i, [column[lab] for lab in pred.labels]] = True
    return {
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "n": len(gold),
    }
