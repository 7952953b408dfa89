"""Choose (k, m) for kNN voting on validation data, as `find_best_k` in chapter 9 of "Natural
Language Processing with Transformers" does, but from a single neighbour search.

The book re-runs the nearest-neighbour search for every k and re-votes for every m. Here the caller
searches once at ``max_k`` and passes the neighbours' labels and similarities; the votes for k are
the votes for k-1 plus neighbour k (a running, i.e. cumulative, sum over the neighbour axis), and
all m for one k are scored together from per-label histograms of the vote counts. That makes the
full grid (max_k * (max_k + 1) / 2 settings) cost about max_k passes over the data.

**This module never sees test data.** `tune_k_m` scores only the arrays it is given; pass the
neighbours of *validation* queries (searched in the training index). Choosing (k, m) on the test
set and then reporting test scores would overstate how well the labeler works.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fewlabel.indexing.errors import DataError, InvalidArgumentError
from fewlabel.retrieval.knn.voting import neighbour_weights, single_label_choice

__all__ = ["KMResult", "tune_k_m", "f1_from_counts"]

# Scores closer than this are treated as equal, so the documented tie-break (smaller k, larger m)
# decides rather than float noise in the last bit of a macro average.
_SCORE_TOL = 1e-12


@dataclass
class KMResult:
    """Best (k, m), its validation score, which metric was optimised ("micro" or "macro" F1) and
    the full grid: one row per (k, m) with "k", "m", "micro_f1", "macro_f1" (+ "accuracy" for
    single-label), ordered by k then m, ready for a heat map or a table in a report."""

    k: int
    m: int
    score: float
    metric: str
    grid: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (saved next to an index so a later run reuses the tuning)."""
        return asdict(self)


def f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Micro and macro F1 from per-label counts shaped (..., L), with zero-division = 0 like
    ``sklearn.metrics.f1_score(..., zero_division=0)`` on label-indicator arrays: a label with no
    true and no predicted positives scores 0 and still counts in the macro mean. Vectorised so a
    whole column of m values is scored at once instead of calling sklearn per (k, m)."""
    tp = np.asarray(tp, dtype=np.float64)
    fp = np.asarray(fp, dtype=np.float64)
    fn = np.asarray(fn, dtype=np.float64)
    denom = 2 * tp + fp + fn
    per_label = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1.0), 0.0)
    macro = per_label.mean(axis=-1) if per_label.shape[-1] else np.zeros(per_label.shape[:-1])
    tp_s, denom_s = tp.sum(axis=-1), denom.sum(axis=-1)
    micro = np.where(denom_s > 0, 2 * tp_s / np.where(denom_s > 0, denom_s, 1.0), 0.0)
    return micro, macro


def _at_least(values: np.ndarray, groups: np.ndarray, n_groups: int, k: int) -> np.ndarray:
    """``out[g, m-1]`` = how many items of group g have floor(value) >= m, for m = 1..k.

    For integer m, ``value >= m`` iff ``floor(value) >= m``, so this equals thresholding with
    ``votes >= m`` exactly (the rule used at prediction time), for plain and weighted votes alike.
    """
    bins = np.clip(np.floor(values), 0, k).astype(np.int64)
    hist = np.bincount(groups * (k + 1) + bins, minlength=n_groups * (k + 1)).reshape(n_groups, k + 1)
    at_least = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]  # at_least[g, b] = #items with bin >= b
    return at_least[:, 1:]


def tune_k_m(
    neigh: np.ndarray,
    sims: np.ndarray,
    y_true: np.ndarray,
    *,
    max_k: int,
    metric: str = "micro",  # "micro" or "macro", checked below (callers pass what a user typed)
    multi_label: bool = True,
    weighted: bool = False,
    show_progress: bool = False,
) -> KMResult:
    """Score every k in 1..max_k and every m in 1..k on validation data; return the best.

    Parameters
    ----------
    neigh, sims:
        Labels (n_q, >= max_k, L) bool and similarities (n_q, >= max_k) of the validation queries'
        nearest training neighbours, best first, from ONE search at max_k (see
        `fewlabel.retrieval.knn.voting.neighbour_label_tensor`). Only validation data belongs here, never test
        data: the function cannot tell, so the caller must keep the test set out.
    y_true:
        (n_q, L) bool true labels in the same column order. Single-label: one-hot rows (an all-zero
        row means "no label" is the right answer).
    metric:
        Which F1 average picks the winner; both are reported in the grid.
    multi_label:
        Multi-label: a label is predicted when its votes >= m. Single-label: the majority label
        (ties broken as in `fewlabel.retrieval.knn.voting.single_label_choice`) when its votes >= m, else no
        label, which counts as a false negative for the query's true label; rows then also carry
        "accuracy" (an abstention is wrong unless the query truly has no label).
    weighted:
        Votes are summed clipped similarities. m is still swept over the integer grid 1..k, but it
        is then compared against the similarity-weighted vote, so with cosines well below 1 only
        small m can be reached, and those are the sensible ones.
    show_progress:
        tqdm bar over k.

    Ties in score go to the smaller k, then the larger m: a smaller k is cheaper to search and
    relies on the closest (most relevant) neighbours, and a larger m asks for more agreement, so
    it predicts a label less readily, the conservative choice when the validation set cannot tell
    the settings apart. (In multi-label voting with unit vectors a tie across m at the smallest
    winning k cannot happen, because (k-1, m) then makes the same predictions; there the m rule is
    a deterministic fallback. In single-label voting it does decide, e.g. between m=1 and m=2.)
    The grid scores are exactly those of the `fewlabel.retrieval.knn.voting` predictions at each (k, m).
    """
    neigh = np.asarray(neigh)
    sims = np.asarray(sims)
    y = np.asarray(y_true)
    if metric not in ("micro", "macro"):
        raise InvalidArgumentError(f"metric must be 'micro' or 'macro', got {metric!r}")
    if neigh.ndim != 3:
        raise InvalidArgumentError(
            f"neighbour labels must be 3-D (n_queries, max_k, n_labels), got shape {neigh.shape}"
        )
    n_q, searched, n_labels = neigh.shape
    if sims.shape != (n_q, searched):
        raise InvalidArgumentError(f"similarities have shape {sims.shape}, expected {(n_q, searched)}")
    if y.shape != (n_q, n_labels):
        raise DataError(
            f"y_true has shape {y.shape}, expected {(n_q, n_labels)} (n_queries, n_labels)", field="labels"
        )
    if isinstance(max_k, bool) or not isinstance(max_k, (int, np.integer)) or not 1 <= max_k <= searched:
        raise InvalidArgumentError(
            f"max_k must be an integer between 1 and {searched} (neighbours searched), got {max_k!r}"
        )
    if n_q == 0:
        raise DataError("no validation queries to tune (k, m) on", field="labels")
    if n_labels == 0:
        raise DataError("no labels to tune (k, m) for", field="labels")
    neigh = neigh.astype(bool, copy=False)
    y = y.astype(bool, copy=False)
    if not multi_label and (y.sum(axis=1) > 1).any():
        bad = int(np.flatnonzero(y.sum(axis=1) > 1)[0])
        raise DataError(
            f"validation row {bad} has several true labels; single-label tuning needs at most one",
            field="labels",
        )

    max_k = int(max_k)
    w = neighbour_weights(sims, weighted)
    positives = y.sum(axis=0).astype(np.int64)  # (L,) true positives available per label
    label_ids = np.broadcast_to(np.arange(n_labels), (n_q, n_labels))
    true_idx = np.where(y.any(axis=1), y.argmax(axis=1), -1)

    counts = np.zeros((n_q, n_labels), dtype=np.float64)
    grid: list[dict[str, Any]] = []
    best: tuple[float, int, int] | None = None  # (score, k, m)
    for k in tqdm(range(1, max_k + 1), desc="tuning k", unit="k", disable=not show_progress):
        counts += np.where(neigh[:, k - 1], w[:, k - 1, None], 0.0)  # same order as voting.vote_counts

        if multi_label:
            # tp[l, m-1]: queries truly labelled l with >= m votes for l; pred: all with >= m votes.
            tp = _at_least(counts[y], label_ids[y], n_labels, k)
            pred = _at_least(counts.ravel(), label_ids.ravel(), n_labels, k)
            accuracy = None
        else:
            choice, top = single_label_choice(counts, sims[:, :k], neigh[:, :k])
            hit = choice == true_idx
            tp = _at_least(top[hit], choice[hit], n_labels, k)
            pred = _at_least(top, choice, n_labels, k)
            # correct = right label with >= m votes, or abstaining (< m votes) on a query with no label
            none_rows = true_idx < 0
            abstain_ok = (
                none_rows.sum() - _at_least(top[none_rows], np.zeros(int(none_rows.sum()), np.int64), 1, k)[0]
            )
            accuracy = (tp.sum(axis=0) + abstain_ok) / n_q

        tp = tp.T  # (k, L): row m-1
        fp = pred.T - tp
        fn = positives[None, :] - tp
        micro, macro = f1_from_counts(tp, fp, fn)
        chosen = micro if metric == "micro" else macro
        for m in range(1, k + 1):
            row: dict[str, Any] = {
                "k": k,
                "m": m,
                "micro_f1": float(micro[m - 1]),
                "macro_f1": float(macro[m - 1]),
            }
            if accuracy is not None:
                row["accuracy"] = float(accuracy[m - 1])
            grid.append(row)
        for m in range(k, 0, -1):  # larger m first, so among equal scores within k the larger m wins
            score = float(chosen[m - 1])
            if best is None or score > best[0] + _SCORE_TOL:
                best = (score, k, m)

    assert best is not None  # max_k >= 1 guarantees at least one setting
    return KMResult(k=best[1], m=best[2], score=best[0], metric=metric, grid=grid)
