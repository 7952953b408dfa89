"""Which unlabelled texts to label next: the selection rules, in plain numpy and FAISS.

Written here rather than taken from small-text (the active-learning library for text): its strategies are
bound to its own dataset and classifier wrappers, its last release is 1.4.1 (August 2024), and the pieces the
loop needs are a margin, k-means and a few lines of bookkeeping on arrays fewlabel already has.

Every rule returns positions into the candidate rows with a score (higher: picked earlier) and a reason."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["COLD_START_PER_LABEL", "COLD_START_ROWS", "SCORE_SAMPLE", "STRATEGIES", "Picked", "auto_strategy",
           "diverse", "diverse_uncertain", "kmeans", "random_pick", "uncertainty", "uncertainty_scores"]

STRATEGIES = ("auto", "uncertainty", "diverse", "random")
#: auto's rule (see :func:`auto_strategy` and benchmarks/results/active.md): diverse representatives while the
#: index holds fewer than COLD_START_ROWS rows or fewer than COLD_START_PER_LABEL rows per label; after that the
#: most uncertain texts, spread over k-means clusters so that one batch does not ask the same question 16 times.
#: COLD_START_ROWS was 32 until the simulated annotator ran (2026-12-05): from 0 rows to 256, diverse beat the
#: switch to diverse-uncertain at 32 rows on all three sets (test micro-F1 at 256 labels, 3 seeds: NSMC 0.766
#: against 0.755, GoEmotions 0.546 against 0.537, SemEval 0.324 against 0.278), and random on all three too. So
#: auto stays diverse through the whole range measured; past 256 rows nothing was measured and it switches.
COLD_START_ROWS = 256
COLD_START_PER_LABEL = 4
DIVERSE_SAMPLE = 20_000
#: auto past the cold start scores a seeded sample of this many candidates of a larger pool (the rule reads only
#: the 10n least certain of them): a Naive Bayes part (nb, ensemble) counts the character n-grams of every text
#: it scores, about 8 s for 100,000 texts here, more than the 5 s a second `suggest` may take (issue 24).
#: ``--max-scan`` overrides it; `--strategy uncertainty` still scores every text unless told otherwise.
SCORE_SAMPLE = 10_000
#: FAISS threads for :func:`kmeans`; 0 keeps FAISS's own count (the default). Beside other jobs on this 2-core
#: machine (load about 5), FAISS's OpenMP threads made the 20,000 x 50 k-means of a 100,000-text pool take 5.5 s
#: against 1.0 s on one thread (2026-12-05, suggest_speed.md); on a quiet machine both stay under 5 s. One thread
#: rounds differently, which changes diverse picks after a few batches, and whether that leaves the active
#: benchmark's scores as they were was not measured in the same run yet: so the default stays FAISS's own.
KMEANS_THREADS = 0
CANDIDATES_PER_PICK = 10  # diverse_uncertain: the 10n most uncertain texts are clustered into n groups


@dataclass
class Picked:
    """Positions into the candidate rows, best first, with a score per pick and why it was picked."""

    rows: np.ndarray
    scores: np.ndarray
    reasons: list[str]
    strategy: str


def auto_strategy(n_rows: int, n_labels: int) -> str:
    """The rule `--strategy auto` follows: ``diverse`` while the index holds fewer than 256 rows (or 4 per
    label), else ``diverse-uncertain``. Under 256 rows a model's margins said more about its few rows than about
    the data: uncertainty lost to diverse representatives on every set of benchmarks/results/active.md."""
    if n_rows < max(COLD_START_ROWS, COLD_START_PER_LABEL * max(1, n_labels)):
        return "diverse"
    return "diverse-uncertain"


def uncertainty_scores(proba: np.ndarray, multi_label: bool, thresholds: np.ndarray | None = None) -> np.ndarray:
    """1 - margin, in [0, 1]: single-label, the margin between the two most probable labels; multi-label, the
    distance of the label closest to its decision threshold (0.5 untuned), scaled to [0, 1]."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape[1] == 1:
        multi_label = True
    if multi_label:
        cut = np.full(proba.shape[1], 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        span = np.where(proba >= cut, 1.0 - cut, cut)  # the farthest a probability can be from the cut, that side
        closeness = np.abs(proba - cut) / np.maximum(span, 1e-9)
        return 1.0 - closeness.min(axis=1)
    top2 = -np.sort(-proba, axis=1)[:, :2]
    return 1.0 - (top2[:, 0] - top2[:, 1])


def random_pick(n_candidates: int, n: int, seed: int) -> Picked:
    rows = np.random.default_rng(seed).permutation(n_candidates)[:n]
    return Picked(rows, np.zeros(len(rows)), ["random draw"] * len(rows), "random")


def uncertainty(scores: np.ndarray, n: int) -> Picked:
    """The n texts the model is least sure of (ties: pool order)."""
    rows = np.argsort(-scores, kind="stable")[:n]
    return Picked(rows, scores[rows], [f"uncertain: margin {1 - scores[i]:.3f}" for i in rows], "uncertainty")


def kmeans(vectors: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(cluster of each row, cosine similarity to its centroid): spherical k-means by FAISS, trained on at most
    256 rows per cluster (FAISS's own sample), the best of 3 starts (one start can leave two centroids in one
    cluster), every row assigned."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    k = max(1, min(int(k), len(x)))
    if k == len(x):
        return np.arange(len(x)), np.ones(len(x), dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=20, nredo=3, seed=int(seed) + 1, spherical=True, verbose=False,
                      min_points_per_centroid=1)
    threads = faiss.omp_get_max_threads()
    if KMEANS_THREADS:
        faiss.omp_set_num_threads(KMEANS_THREADS)
    try:
        km.train(x)
        sims, assign = km.index.search(x, 1)
    finally:
        faiss.omp_set_num_threads(threads)
    return assign[:, 0].astype(np.int64), sims[:, 0]


def diverse(vectors: np.ndarray, n: int, seed: int, labelled: np.ndarray | None = None) -> Picked:
    """Diverse representatives: k-means with n clusters over the candidates, and from each cluster the text
    nearest its centroid (a typical text, not an outlier). Clusters far from every labelled row come first.
    A pool over :data:`DIVERSE_SAMPLE` texts is clustered on a seeded sample of that many (k-means over 100,000
    vectors took most of a 5 s budget; a sample of 20,000 holds every cluster of a 50-text batch many times)."""
    if len(vectors) > DIVERSE_SAMPLE:
        sample = np.sort(np.random.default_rng(seed).choice(len(vectors), size=DIVERSE_SAMPLE, replace=False))
        picked = diverse(vectors[sample], n, seed, labelled)
        picked.rows = sample[picked.rows]
        return picked
    cluster, sims = kmeans(vectors, n, seed)
    best: dict[int, int] = {}
    for i in np.argsort(-sims, kind="stable"):
        best.setdefault(int(cluster[i]), int(i))
    rows = np.array(sorted(best.values()), dtype=np.int64)
    sizes = np.bincount(cluster, minlength=int(cluster.max()) + 1)
    if labelled is not None and len(labelled):
        nearest = (np.asarray(vectors[rows], dtype=np.float32) @ np.asarray(labelled, dtype=np.float32).T).max(1)
    else:
        nearest = np.zeros(len(rows))
    order = np.lexsort((-sizes[cluster[rows]], nearest))  # least covered first, then the bigger cluster
    rows, nearest = rows[order], nearest[order]
    scores = 1.0 - nearest
    reasons = [f"representative of a cluster of {sizes[cluster[i]]} texts"
               + (f"; nearest labelled text at similarity {s:.2f}" if labelled is not None and len(labelled) else "")
               for i, s in zip(rows, nearest, strict=True)]
    return Picked(rows[:n], scores[:n], reasons[:n], "diverse")


def diverse_uncertain(vectors: np.ndarray, scores: np.ndarray, n: int, seed: int) -> Picked:
    """The most uncertain texts, spread out (Zhdanov 2019, "diverse mini-batch active learning"): the 10n least
    certain are clustered into n groups by k-means, and each group gives its least certain text."""
    pool = np.argsort(-scores, kind="stable")[:max(n, CANDIDATES_PER_PICK * n)]
    cluster, _ = kmeans(vectors[pool], n, seed)
    best: dict[int, int] = {}
    for j in range(len(pool)):  # pool is sorted most uncertain first
        best.setdefault(int(cluster[j]), j)
    chosen = pool[sorted(best.values())]
    if len(chosen) < n:  # fewer clusters than asked (duplicates): fill with the next most uncertain
        rest = [i for i in pool if i not in set(chosen.tolist())]
        chosen = np.concatenate([chosen, np.array(rest[:n - len(chosen)], dtype=np.int64)])
    chosen = chosen[np.argsort(-scores[chosen], kind="stable")]
    return Picked(chosen, scores[chosen], [f"uncertain: margin {1 - scores[i]:.3f}; one of {len(pool)} least certain, "
                                           "one per cluster" for i in chosen], "diverse-uncertain")
