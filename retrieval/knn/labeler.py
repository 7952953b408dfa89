"""`KNNLabeler`: label new text by a kNN vote over a FAISS index of labelled embeddings.

Embeddings are L2-normalised, so the index uses inner product and similarity = cosine. The
estimator follows the scikit-learn contract (settings in ``__init__``, learned state in attributes
ending in ``_``) so it can be cloned, inspected with ``get_params`` and dropped into sklearn tooling;
the voting rules themselves live in `retrieval.voting` and are shared with `retrieval.tuning`.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Sequence
from typing import Any

import faiss
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.preprocessing import MultiLabelBinarizer

from fewlabel.indexing.errors import DataError, FewlabelError, IndexMismatchError
from fewlabel.indexing.store.faiss_index import build_faiss_index
from fewlabel.retrieval.knn.voting import (
    multi_label_predict,
    neighbour_label_tensor,
    single_label_predict,
    vote_counts,
    vote_fractions,
)

__all__ = ["KNNLabeler"]

# How far a vector's norm may be from 1 before we refuse it. Loose enough for float16 encoders,
# tight enough to catch "forgot to normalise" (then inner product is not cosine and weighted votes
# and `explain` similarities are meaningless).
_NORM_TOL = 1e-2


def _check_k_m(k: Any, m: Any) -> None:
    """Raise a readable error for bad (k, m) before any searching happens."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise FewlabelError(f"k (neighbours to consult) must be an integer >= 1, got {k!r}")
    if isinstance(m, bool) or not isinstance(m, numbers.Real) or not 1 <= m <= k:
        raise FewlabelError(f"m (votes needed for a label) must satisfy 1 <= m <= k = {k}, got {m!r}")


def _as_embeddings(X: Any, what: str, dim: int | None = None, allow_empty: bool = False) -> np.ndarray:
    """X as a C-contiguous float32 (n, d) array of unit vectors (what faiss needs), or a DataError."""
    try:
        arr = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} must be a numeric (n, d) array: {exc}", field=what) from exc
    if arr.ndim != 2:
        raise DataError(f"{what} must be 2-D (n, d), got shape {arr.shape}", field=what)
    if arr.shape[0] == 0 and not allow_empty:
        raise DataError(f"{what} is empty: need at least one embedding", field=what)
    if arr.shape[1] == 0:
        raise DataError(f"{what} has 0 dimensions", field=what)
    if dim is not None and arr.shape[1] != dim:
        raise IndexMismatchError(
            f"{what} has dimension {arr.shape[1]} but the index holds {dim}-dimensional vectors "
            "(were they made by a different encoder?)"
        )
    if arr.shape[0]:
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise DataError(f"{what} row {row} contains NaN or infinite values", field=what)
        norms = np.linalg.norm(arr, axis=1)
        bad = np.abs(norms - 1.0) > _NORM_TOL
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{what} row {row} has L2 norm {norms[row]:.4g}; embeddings must be L2-normalised so that "
                "inner product equals cosine similarity",
                field=what,
            )
    return arr


def _label_rows(y: Sequence[Any], multi_label: bool) -> list[tuple[Hashable, ...]]:
    """Normalise y to one tuple of labels per row. A bare string is one label, never its characters."""
    rows: list[tuple[Hashable, ...]] = []
    for i, item in enumerate(y):
        if isinstance(item, (list, tuple, set, frozenset, np.ndarray)):
            row = tuple(item.tolist() if isinstance(item, np.ndarray) else item)
        elif item is None:
            row = ()
        else:
            row = (item,)
        if not multi_label and len(set(row)) != 1:
            raise DataError(
                f"row {i} has {len(set(row))} labels {list(row)!r}; single-label mode needs exactly one "
                "(use multi_label=True for rows with several or no labels)",
                field="labels",
            )
        rows.append(row)
    return rows


class KNNLabeler(BaseEstimator):
    """Predict labels by a vote of the ``k`` nearest labelled neighbours.

    Parameters
    ----------
    k:
        Neighbours consulted per query.
    m:
        Votes a label needs (``1 <= m <= k``). Multi-label: every label with >= m votes is
        predicted (possibly none). Single-label: the majority label, or no label (None) when it has
        fewer than m votes. With ``weighted=True`` votes are summed cosine similarities and m is a
        threshold on that sum. Tune (k, m) on validation data with `retrieval.tuning.tune_k_m`.
    multi_label:
        Whether a text may carry several labels.
    weighted:
        Weight each vote by the neighbour's similarity (clipped at 0) instead of counting it.
    factory:
        `faiss.index_factory` string, e.g. "Flat" (exact) or "HNSW32" (approximate, faster on large
        data). ``None`` only for labelers made with `from_index`, whose index was built elsewhere.

    Attributes (after `fit` or `from_index`)
    ----------------------------------------
    classes_: ndarray of label names, sorted; the column order of `predict_proba`.
    label_matrix_: (n_train, n_labels) bool, the labels of each indexed vector.
    index_: the faiss index (inner product over unit vectors = cosine).
    n_features_in_: embedding dimension.
    """

    def __init__(
        self,
        k: int = 15,
        m: float = 5,
        multi_label: bool = True,
        weighted: bool = False,
        factory: str | None = "Flat",
    ) -> None:
        self.k = k
        self.m = m
        self.multi_label = multi_label
        self.weighted = weighted
        self.factory = factory

    # ------------------------------------------------------------------ building
    def fit(self, X: Any, y: Sequence[Any]) -> KNNLabeler:
        """Index the embeddings X with their labels y and return self.

        y is a list with one entry per row of X: a list/tuple of label names (multi-label; may be
        empty) or a single label name (single-label). kNN has no training beyond indexing; an
        index type that needs training (IVF, PQ) is trained on X itself.
        """
        _check_k_m(self.k, self.m)
        if not isinstance(self.factory, str) or not self.factory.strip():
            raise FewlabelError(
                f"factory must be a faiss index_factory string such as 'Flat', got {self.factory!r}"
            )
        arr = _as_embeddings(X, "X")
        try:
            n_y = len(y)
        except TypeError as exc:
            raise DataError("y must be a list with one entry (label or list of labels) per row of X") from exc
        if n_y != arr.shape[0]:
            raise DataError(f"X has {arr.shape[0]} rows but y has {n_y} entries; they must match", field="y")
        rows = _label_rows(y, bool(self.multi_label))
        binarizer = MultiLabelBinarizer()
        try:
            matrix = binarizer.fit_transform(rows).astype(bool)
        except TypeError as exc:  # mixed label types cannot be sorted
            raise DataError(
                f"labels must be of one sortable type (e.g. all strings): {exc}", field="labels"
            ) from exc
        if matrix.shape[1] == 0:
            raise DataError("y contains no labels at all; nothing to vote for", field="labels")

        index = build_faiss_index(arr, self.factory)

        self.classes_ = binarizer.classes_
        self.label_matrix_ = matrix
        self.index_ = index
        self.n_features_in_ = arr.shape[1]
        return self

    @classmethod
    def from_index(
        cls,
        index: Any,
        label_matrix: np.ndarray,
        classes: Sequence[Any],
        *,
        k: int,
        m: float,
        multi_label: bool,
        weighted: bool = False,
    ) -> KNNLabeler:
        """Wrap an index that is already built (e.g. a saved LabelIndex just loaded) without
        re-adding its vectors: re-encoding or re-adding 40,000 rows just to predict would waste
        minutes. ``label_matrix`` row i holds the labels of vector i; ``classes`` names its columns.
        The returned labeler has ``factory=None`` (the recipe of a loaded index is not known)."""
        labeler = cls(k=k, m=m, multi_label=multi_label, weighted=weighted, factory=None)
        _check_k_m(k, m)
        matrix = np.asarray(label_matrix)
        if matrix.ndim != 2:
            raise IndexMismatchError(
                f"label_matrix must be 2-D (n_vectors, n_labels), got shape {matrix.shape}"
            )
        names = np.empty(len(classes), dtype=object)
        names[:] = [c.item() if isinstance(c, np.generic) else c for c in classes]  # plain str, not np.str_
        if names.shape[0] != matrix.shape[1]:
            raise IndexMismatchError(
                f"{names.shape[0]} class names given for a label matrix with {matrix.shape[1]} columns"
            )
        if int(index.ntotal) != matrix.shape[0]:
            raise IndexMismatchError(
                f"the index holds {int(index.ntotal)} vectors but the label matrix has {matrix.shape[0]} rows"
            )
        if getattr(index, "metric_type", faiss.METRIC_INNER_PRODUCT) != faiss.METRIC_INNER_PRODUCT:
            raise IndexMismatchError(
                "the index must use inner product (METRIC_INNER_PRODUCT) over unit vectors"
            )
        labeler.classes_ = names
        labeler.label_matrix_ = matrix.astype(bool)
        labeler.index_ = index
        labeler.n_features_in_ = int(index.d)
        return labeler

    # ------------------------------------------------------------------ querying
    def _check_fitted(self) -> None:
        if not hasattr(self, "index_"):
            raise FewlabelError("this KNNLabeler is not fitted yet: call fit() or build it with from_index()")

    def kneighbors(self, X: Any, n_neighbors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Similarities (n, n_neighbors) float32 and row ids (n, n_neighbors) int64 of the nearest
        indexed vectors, best first, all queries in one ``index_.search`` call (faiss batches and
        parallelises far better than a Python loop). Id -1 marks a missing neighbour."""
        self._check_fitted()
        n = self.k if n_neighbors is None else n_neighbors
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise FewlabelError(f"n_neighbors must be an integer >= 1, got {n!r}")
        arr = _as_embeddings(X, "X", dim=int(self.index_.d), allow_empty=True)
        if arr.shape[0] == 0:
            return np.zeros((0, int(n)), dtype=np.float32), np.zeros((0, int(n)), dtype=np.int64)
        sims, ids = self.index_.search(arr, int(n))
        return sims, ids.astype(np.int64, copy=False)

    def _votes(self, X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _check_k_m(self.k, self.m)
        sims, ids = self.kneighbors(X, self.k)
        neigh = neighbour_label_tensor(self.label_matrix_, ids)
        counts = vote_counts(neigh, sims, int(self.k), bool(self.weighted))
        return counts, sims, neigh

    def predict(self, X: Any) -> list[tuple[Any, ...]] | list[Any | None]:
        """Multi-label: one tuple of label names per query (empty when no label reaches m votes).
        Single-label: one label name per query, or None when the winner has fewer than m votes."""
        self._check_fitted()
        counts, sims, neigh = self._votes(X)
        names = self.classes_.tolist()
        if self.multi_label:
            chosen = multi_label_predict(counts, self.m)
            return [tuple(names[j] for j in np.flatnonzero(row)) for row in chosen]
        winners = single_label_predict(counts, sims, neigh, self.m)
        return [names[int(j)] if j >= 0 else None for j in winners]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Vote fractions (n, n_labels) in `classes_` order: votes / k, or for weighted voting the
        share of the neighbours' total similarity. Not calibrated probabilities, but monotone in the
        votes, which is what ranking and threshold plots need."""
        self._check_fitted()
        counts, sims, _ = self._votes(X)
        return vote_fractions(counts, int(self.k), weighted=bool(self.weighted), sims=sims)

    def explain(self, X: Any, n_neighbors: int | None = None) -> list[list[dict[str, Any]]]:
        """The neighbours behind each prediction: per query a list of
        ``{"row": training row, "similarity": cosine, "labels": [names]}``, best first, so a user
        can see *why* a label was (not) given. Missing neighbours (id -1) are left out."""
        self._check_fitted()
        sims, ids = self.kneighbors(X, n_neighbors)
        names = self.classes_.tolist()
        out: list[list[dict[str, Any]]] = []
        for sim_row, id_row in zip(sims, ids, strict=True):
            out.append(
                [
                    {
                        "row": int(i),
                        "similarity": float(s),
                        "labels": [names[j] for j in np.flatnonzero(self.label_matrix_[i])],
                    }
                    for s, i in zip(sim_row, id_row, strict=True)
                    if i >= 0
                ]
            )
        return out
