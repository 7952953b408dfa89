"""kNN label voting rules, in pure numpy (no faiss), so they can be unit-tested on hand-made
neighbour sets and shared, bit for bit, by prediction (`fewlabel.retrieval.knn.estimator`) and by (k, m) tuning
(`fewlabel.retrieval.knn.tuning`).

The rule follows chapter 9 of "Natural Language Processing with Transformers" (`find_best_k`):
look up the k nearest labelled neighbours of a query and predict a label when at least m of them
carry it. Shapes used throughout:

* ``neigh``  (n_q, k, L) bool: label ``l`` is carried by the ``j``-th nearest neighbour of query ``q``;
* ``sims``   (n_q, k) float: cosine similarity (inner product of unit vectors) of that neighbour,
  sorted best-first as FAISS returns them;
* ``counts`` (n_q, L) float: votes per label.
"""

from __future__ import annotations

import numpy as np

from fewlabel.indexing.errors import InvalidArgumentError

__all__ = [
    "neighbour_label_tensor",
    "neighbour_weights",
    "vote_counts",
    "multi_label_predict",
    "single_label_choice",
    "single_label_predict",
    "vote_fractions",
]

# Relative tolerance when deciding that two (possibly similarity-weighted) vote totals tie. Integer
# counts are compared exactly anyway; this only absorbs float rounding in weighted sums.
_TIE_RTOL = 1e-9


def neighbour_label_tensor(label_matrix: np.ndarray, neighbour_ids: np.ndarray) -> np.ndarray:
    """Gather the labels of every neighbour: ``out[q, j] = label_matrix[neighbour_ids[q, j]]``.

    FAISS pads results with id -1 when the index holds fewer than k vectors (or an approximate
    index finds fewer); such slots get an all-False row, so they vote for nothing instead of
    silently borrowing the labels of the last training row (``label_matrix[-1]``).
    """
    labels = np.asarray(label_matrix, dtype=bool)
    ids = np.asarray(neighbour_ids)
    if labels.ndim != 2:
        raise InvalidArgumentError(f"label_matrix must be 2-D (n_train, n_labels), got shape {labels.shape}")
    if ids.ndim != 2:
        raise InvalidArgumentError(f"neighbour_ids must be 2-D (n_queries, k), got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise InvalidArgumentError(f"neighbour_ids must be integers, got dtype {ids.dtype}")
    n_train, n_labels = labels.shape
    if ids.size and int(ids.max()) >= n_train:
        raise InvalidArgumentError(
            f"neighbour id {int(ids.max())} is out of range for a label matrix with {n_train} rows; "
            "the index and its labels do not belong together"
        )
    valid = ids >= 0
    out = np.zeros(ids.shape + (n_labels,), dtype=bool)
    if n_train and valid.any():
        out[valid] = labels[ids[valid]]
    return out


def neighbour_weights(sims: np.ndarray, weighted: bool) -> np.ndarray:
    """Per-neighbour vote weight, float64 (n_q, k): 1 for plain counting, or the similarity clipped
    at 0 for weighted voting (a dissimilar neighbour should not cast a *negative* vote; FAISS
    also reports -3.4e38 for missing neighbours, which clipping turns into 0)."""
    s = np.asarray(sims, dtype=np.float64)
    if not weighted:
        return np.ones_like(s)
    return np.clip(np.nan_to_num(s, nan=0.0, neginf=0.0, posinf=0.0), 0.0, None)


def _check_neigh_sims(neigh: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    neigh = np.asarray(neigh, dtype=bool)
    sims = np.asarray(sims)
    if neigh.ndim != 3:
        raise InvalidArgumentError(f"neighbour labels must be 3-D (n_queries, k, n_labels), got shape {neigh.shape}")
    if sims.shape != neigh.shape[:2]:
        raise InvalidArgumentError(
            f"similarities have shape {sims.shape} but neighbour labels have {neigh.shape[:2]} (n_queries, k)"
        )
    return neigh, sims


def vote_counts(neigh: np.ndarray, sims: np.ndarray, k: int, weighted: bool) -> np.ndarray:
    """Votes per label from the first ``k`` neighbours (neighbours are sorted best-first).

    Plain votes count neighbours; weighted votes sum their clipped similarities, so a near-duplicate
    counts more than a distant neighbour. The sum runs neighbour by neighbour in order, exactly as
    the running (cumulative) sum in `fewlabel.retrieval.knn.tuning.tune_k_m` does, so a (k, m) chosen by tuning
    reproduces bit for bit at prediction time even for weighted float sums.
    """
    neigh, sims = _check_neigh_sims(neigh, sims)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= neigh.shape[1]:
        raise InvalidArgumentError(
            f"k must be an integer between 1 and {neigh.shape[1]} (neighbours searched), got {k!r}"
        )
    w = neighbour_weights(sims, weighted)
    counts = np.zeros((neigh.shape[0], neigh.shape[2]), dtype=np.float64)
    for j in range(int(k)):
        counts += np.where(neigh[:, j], w[:, j, None], 0.0)
    return counts


def _check_m(m: float) -> float:
    if isinstance(m, bool) or not isinstance(m, (int, float, np.integer, np.floating)) or not m > 0:
        raise InvalidArgumentError(f"m (votes needed for a label) must be a positive number, got {m!r}")
    return float(m)


def multi_label_predict(counts: np.ndarray, m: float) -> np.ndarray:
    """Predict every label with at least ``m`` votes (the book's rule), as (n_q, L) bool.

    With weighted votes ``counts`` holds summed similarities, so ``m`` is then a threshold on the
    similarity-weighted count: m=2 needs e.g. three neighbours at cosine 0.67, not just two
    neighbours. Smaller m are sensible there; `tune_k_m` picks it on validation data.
    """
    m = _check_m(m)
    return np.asarray(counts, dtype=np.float64) >= m


def single_label_choice(
    counts: np.ndarray, sims: np.ndarray, neigh: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The winning label of each query and its votes, before the ``m`` threshold is applied.

    Split out from `single_label_predict` because the winner does not depend on m: tuning computes
    it once per k and then sweeps m cheaply. Ties on votes are broken by the summed similarity of
    each tied label's voters (closer support wins), then by the label of the nearest voter (the
    plain 1-NN answer); a remaining tie (one neighbour carrying several tied labels) goes to the
    lowest class index, so the result is deterministic. ``sims``/``neigh`` must be the same first-k
    slice the counts were taken from. Returns (labels (n_q,) int, best_votes (n_q,) float); a query
    whose best label has 0 votes still gets some index here, which any m > 0 turns into -1.
    """
    counts = np.asarray(counts, dtype=np.float64)
    neigh, sims = _check_neigh_sims(neigh, sims)
    n_q, k, n_labels = neigh.shape
    if counts.shape != (n_q, n_labels):
        raise InvalidArgumentError(
            f"counts have shape {counts.shape}, expected {(n_q, n_labels)} (n_queries, n_labels)"
        )
    if n_labels == 0 or n_q == 0:
        return np.full(n_q, -1, dtype=np.int64), np.zeros(n_q, dtype=np.float64)

    best = counts.max(axis=1)
    tied = counts >= best[:, None] - _TIE_RTOL * np.maximum(1.0, np.abs(best[:, None]))

    s = np.asarray(sims, dtype=np.float64)
    s = np.nan_to_num(s, nan=0.0, neginf=0.0, posinf=0.0)  # missing neighbours carry no labels anyway
    support = np.where(neigh, s[:, :, None], 0.0).sum(axis=1)  # (n_q, L) summed similarity of voters
    support = np.where(tied, support, -np.inf)
    top = support.max(axis=1)
    tied &= support >= top[:, None] - _TIE_RTOL * np.maximum(1.0, np.abs(top[:, None]))

    first_voter = np.where(neigh, np.arange(k)[None, :, None], k).min(axis=1)  # (n_q, L)
    labels = np.where(tied, first_voter, k + 1).argmin(axis=1).astype(np.int64)
    return labels, best


def single_label_predict(counts: np.ndarray, sims: np.ndarray, neigh: np.ndarray, m: float) -> np.ndarray:
    """One label per query (majority vote), or -1 ("no label") when the winner has fewer than m votes.

    Abstaining below m is what makes m useful in the single-label case too: a query whose
    neighbourhood is split gets no label rather than a coin flip. See `single_label_choice` for the
    tie-breaking rules. With weighted votes m is compared against the similarity-weighted count.
    """
    m = _check_m(m)
    labels, best = single_label_choice(counts, sims, neigh)
    return np.where(best >= m, labels, -1)


def vote_fractions(
    counts: np.ndarray, k: int, *, weighted: bool = False, sims: np.ndarray | None = None
) -> np.ndarray:
    """Vote share per label, the ``predict_proba`` values, (n_q, L) float in [0, 1].

    Plain votes: counts / k (missing neighbours count in the denominator, so a label backed by
    1 of 15 slots is not reported as certain just because the index is tiny). Weighted votes:
    counts / sum of the first k clipped similarities; a query whose neighbours all have similarity
    <= 0 has no support at all and gets all zeros instead of a division by zero.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgumentError(f"k must be a positive integer, got {k!r}")
    if not weighted:
        return counts / float(k)
    if sims is None:
        raise InvalidArgumentError("weighted vote fractions need the neighbour similarities (sims)")
    w = neighbour_weights(np.asarray(sims)[:, : int(k)], True)
    total = np.zeros(w.shape[0], dtype=np.float64)
    for j in range(w.shape[1]):  # same summation order as vote_counts, so fractions of 1.0 are exact
        total += w[:, j]
    safe = np.where(total > 0, total, 1.0)
    return np.where(total[:, None] > 0, counts / safe[:, None], 0.0)
