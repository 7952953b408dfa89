"""A saved `LabelIndex` and the kNN vote: tune (k, m) on validation rows, choose the (k, m) to vote with, and
evaluate predictions against gold rows.

Shared by the CLI, the demo and the benchmarks so all three tune the same way; predicting goes through the
router (`fewlabel.retrieval.router`), with or without a zero-shot fallback."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fewlabel.indexing.encoders.cache import EmbeddingCache
from fewlabel.indexing.errors import DataError, InvalidArgumentError
from fewlabel.indexing.readers import Row, label_matrix
from fewlabel.indexing.store.label_index import IndexEncoder, LabelIndex
from fewlabel.retrieval.knn.tuning import KMResult, tune_k_m
from fewlabel.retrieval.knn.voting import neighbour_label_tensor

DEFAULT_MAX_K = 20
UNTUNED_K = 15


def tune_index(index: LabelIndex, encoder: IndexEncoder, valid_rows: Sequence[Row], *,
               max_k: int = DEFAULT_MAX_K, metric: str = "micro", source: str = "validation data",
               label_field: str = "label",
               cache: EmbeddingCache | None = None, batch_size: int = 32,
               show_progress: bool = False) -> KMResult:
    """Choose k and m on validation rows (one neighbour search at max_k) and store them, with the
    whole score grid, in the index's metadata."""
    valid_rows = list(valid_rows)
    if not valid_rows:
        raise DataError("no validation rows", path=source)
    y_true = label_matrix(valid_rows, index.label_names, source, label_field)
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
        raise InvalidArgumentError(f"m must be between 1 and k={k}, got {m}")
    return k, m


def evaluate(predictions: Sequence, gold: Sequence[Row], label_names: Sequence[str]) -> dict:
    """Micro/macro F1 (and accuracy: exact match for multi-label) of predictions against gold rows."""
    from sklearn.metrics import accuracy_score, f1_score  # here, not at import: `--help` lists the methods

    y_true = label_matrix(gold, label_names, "gold data")
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
