"""`KNNLabeler`: label new text by a kNN vote over a FAISS index of labelled embeddings.

Embeddings are L2-normalised here (any scale goes in), so the index uses inner product and similarity =
cosine. The estimator follows the scikit-learn contract (settings only in ``__init__``, learned state in
attributes ending in ``_``, ``NotFittedError`` before fit, input checked and converted by scikit-learn's own
``validate_data``) and passes ``sklearn.utils.estimator_checks.check_estimator``, so it can be cloned,
pipelined and dropped into sklearn tooling. The voting rules themselves live in `.voting` and are shared with
`.tuning` and the router.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.preprocessing import MultiLabelBinarizer, normalize
from sklearn.utils.validation import check_is_fitted, validate_data

from fewlabel.indexing.errors import DataError, IndexMismatchError, InvalidArgumentError
from fewlabel.indexing.store.faiss_factory import build_faiss_index
from fewlabel.retrieval.knn.voting import (
    multi_label_predict,
    neighbour_label_tensor,
    single_label_predict,
    vote_counts,
    vote_fractions,
)

__all__ = ["KNNLabeler", "Votes"]

def _check_k_m(k: Any, m: Any) -> None:
    """Raise a readable error for bad (k, m) before any searching happens."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise InvalidArgumentError(f"k (neighbours to consult) must be an integer >= 1, got {k!r}")
    if isinstance(m, bool) or not isinstance(m, numbers.Real) or not 1 <= float(m) <= int(k):
        raise InvalidArgumentError(f"m (votes needed for a label) must satisfy 1 <= m <= k = {k}, got {m!r}")


def _unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero), C-contiguous float32: inner product is then cosine,
    whatever scale the caller's vectors had. Vectors an encoder already normalised are used as they are, so
    their similarities are bit-for-bit those of the label index."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not X.size or np.allclose(np.linalg.norm(X, axis=1), 1.0, rtol=0, atol=1e-5):
        return X
    return np.ascontiguousarray(normalize(X, norm="l2", copy=True), dtype=np.float32)


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


@dataclass(frozen=True)
class Votes:
    """What one search and vote found for each query (see :meth:`KNNLabeler.vote`)."""

    chosen: np.ndarray  # (n, n_labels) bool, in classes_ order
    fractions: np.ndarray  # (n, n_labels) vote fractions
    similarities: np.ndarray  # (n, k) cosine of each neighbour, best first
    ids: np.ndarray  # (n, k) row of each neighbour in the index, -1 where fewer exist


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
        threshold on that sum. Tune (k, m) on validation data with `fewlabel.retrieval.knn.tuning.tune_k_m`.
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
            raise InvalidArgumentError(
                f"factory must be a faiss index_factory string such as 'Flat', got {self.factory!r}"
            )
        arr = _unit_rows(validate_data(self, X, reset=True, dtype=np.float32))
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
    def kneighbors(self, X: Any, n_neighbors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Similarities (n, n_neighbors) float32 and row ids (n, n_neighbors) int64 of the nearest
        indexed vectors, best first, all queries in one ``index_.search`` call (faiss batches and
        parallelises far better than a Python loop). Id -1 marks a missing neighbour."""
        check_is_fitted(self, "index_")
        n = self.k if n_neighbors is None else n_neighbors
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise InvalidArgumentError(f"n_neighbors must be an integer >= 1, got {n!r}")
        arr = _unit_rows(validate_data(self, X, reset=False, dtype=np.float32, ensure_min_samples=0))
        if arr.shape[0] == 0:
            return np.zeros((0, int(n)), dtype=np.float32), np.zeros((0, int(n)), dtype=np.int64)
        sims, ids = self.index_.search(arr, int(n))
        return sims, ids.astype(np.int64, copy=False)

    def vote(self, X: Any) -> Votes:
        """One neighbour search and the vote on it: the chosen labels as an (n, n_labels) indicator in
        ``classes_`` order, the vote fractions, and the neighbours' similarities and row ids. Everything
        ``predict``, ``predict_proba`` and fewlabel's router read comes from here."""
        check_is_fitted(self, "index_")
        _check_k_m(self.k, self.m)
        sims, ids = self.kneighbors(X, self.k)
        neigh = neighbour_label_tensor(self.label_matrix_, ids)
        counts = vote_counts(neigh, sims, int(self.k), bool(self.weighted))
        if self.multi_label:
            chosen = multi_label_predict(counts, self.m)
        else:
            winners = single_label_predict(counts, sims, neigh, self.m)
            chosen = np.zeros(counts.shape, dtype=bool)
            chosen[np.flatnonzero(winners >= 0), winners[winners >= 0]] = True
        fractions = vote_fractions(counts, int(self.k), weighted=bool(self.weighted), sims=sims)
        return Votes(chosen=chosen, fractions=fractions, similarities=sims, ids=ids)

    def predict(self, X: Any) -> np.ndarray:
        """scikit-learn's shapes. Multi-label: an (n, n_labels) boolean indicator in ``classes_`` order (a row may
        be all False: no label reached m votes). Single-label: an (n,) object array of label names, None where
        the winner has fewer than m votes. :meth:`predict_labels` gives the same as label tuples."""
        chosen = self.vote(X).chosen
        if self.multi_label:
            return chosen
        out = np.empty(chosen.shape[0], dtype=object)
        out[:] = [self.classes_[row.argmax()] if row.any() else None for row in chosen]
        return out

    def predict_labels(self, X: Any) -> list[tuple[Any, ...]] | list[Any | None]:
        """The labels by name, for people: multi-label, one tuple per query (empty when no label reaches m
        votes); single-label, one name per query or None."""
        predicted = self.predict(X)
        if not self.multi_label:
            return predicted.tolist()
        names = self.classes_.tolist()
        return [tuple(names[j] for j in np.flatnonzero(row)) for row in predicted]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Vote fractions (n, n_labels) in `classes_` order: votes / k, or for weighted voting the
        share of the neighbours' total similarity. Not calibrated probabilities, but monotone in the
        votes, which is what ranking and threshold plots need."""
        return self.vote(X).fractions

    def explain(self, X: Any, n_neighbors: int | None = None) -> list[list[dict[str, Any]]]:
        """The neighbours behind each prediction: per query a list of
        ``{"row": training row, "similarity": cosine, "labels": [names]}``, best first, so a user
        can see *why* a label was (not) given. Missing neighbours (id -1) are left out."""
        check_is_fitted(self, "index_")
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
