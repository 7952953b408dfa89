"""What every candidate method shares: the two views of a text, decisions from probabilities, per-label
thresholds, F1 on label matrices, and the plain-array file format.

A candidate is fitted on training rows, then *tuned* on other rows: ``state(views)`` turns query rows into the
arrays its decision needs (probabilities per setting, or neighbour labels for kNN), ``select(state, Y)`` picks
its settings on labelled rows, and ``decide`` / ``proba`` apply them. Splitting it this way lets `auto` tune
on one part of the validation rows and score on another without fitting anything twice."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit, softmax as scipy_softmax

from fewlabel.indexing.errors import IndexMismatchError
from fewlabel.indexing.text_classifier import decide
from fewlabel.retrieval.knn.tuning import f1_from_counts

__all__ = ["THRESHOLDS", "Views", "arrays_from_bytes", "arrays_to_bytes", "decide", "f1_scores", "score",
           "sigmoid", "softmax", "subset", "tune_thresholds"]

THRESHOLDS = np.round(np.linspace(0.05, 0.95, 19), 2)  # the multi-label decision grid, per label


@dataclass(frozen=True)
class Views:
    """The two views of the same rows: unit embeddings (n, D) and the texts (for n-gram models)."""

    vectors: np.ndarray
    texts: list[str]

    def __post_init__(self) -> None:
        if len(self.vectors) != len(self.texts):
            raise ValueError(f"{len(self.vectors)} vectors for {len(self.texts)} texts")

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, rows: np.ndarray) -> Views:
        rows = np.asarray(rows, dtype=np.int64)
        return Views(self.vectors[rows], [self.texts[i] for i in rows])


def sigmoid(z: np.ndarray) -> np.ndarray:
    return expit(np.asarray(z, dtype=np.float64))


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax (scipy's); a column of -inf (a label the training rows lacked) gets probability 0."""
    return scipy_softmax(np.asarray(z, dtype=np.float64), axis=1)


def subset(state: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The rows ``rows`` of a candidate's state (every array's first axis is the query)."""
    return {key: value[rows] for key, value in state.items()}


def f1_scores(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Micro and macro F1 of (n, L) boolean predictions (zero-division 0, as everywhere in fewlabel)."""
    pred, y = np.asarray(pred, dtype=bool), np.asarray(y, dtype=bool)
    micro, macro = f1_from_counts((pred & y).sum(0), (pred & ~y).sum(0), (~pred & y).sum(0))
    return float(micro), float(macro)


def score(pred: np.ndarray, y: np.ndarray, metric: str) -> float:
    micro, macro = f1_scores(pred, y)
    return micro if metric == "micro" else macro


def tune_thresholds(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The decision threshold of each label that maximises that label's F1 on ``(proba, y)``: a label that
    few rows carry needs a lower bar than 0.5, which a head trained on a handful of rows rarely reaches. Ties
    (and labels the rows never carry) go to the threshold nearest 0.5."""
    proba, y = np.asarray(proba, dtype=np.float64), np.asarray(y, dtype=bool)
    pred = proba[:, :, None] >= THRESHOLDS[None, None, :]  # (n, L, T)
    tp = (pred & y[:, :, None]).sum(0)
    fp = (pred & ~y[:, :, None]).sum(0)
    fn = y.sum(0)[:, None] - tp
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)  # (L, T)
    order = np.argsort(np.abs(THRESHOLDS - 0.5), kind="stable")  # nearest 0.5 first, so it wins ties
    best = order[np.argmax(f1[:, order] >= f1.max(axis=1, keepdims=True) - 1e-9, axis=1)]
    return THRESHOLDS[best].astype(np.float64)


def arrays_to_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """One ``.npz`` of plain numeric arrays. Never pickle: an index folder is something people send each
    other, and unpickling a file runs whatever code it names."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array '{name}' holds Python objects; method files keep plain numbers only")
    buffer = io.BytesIO()
    plain: dict[str, Any] = {name: np.asarray(value) for name, value in arrays.items()}
    np.savez(buffer, **plain)  # typed Any: numpy's stub types **kwds like its allow_pickle keyword
    return buffer.getvalue()


def arrays_from_bytes(data: bytes, where: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` written by :func:`arrays_to_bytes`, refusing anything that would need pickle."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError) as exc:
        raise IndexMismatchError(f"{where}: not a plain-array .npz file ({exc})") from exc
