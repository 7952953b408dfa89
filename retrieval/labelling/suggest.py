"""`fewlabel suggest`: the pool texts worth labelling next, with the index's guess, its score and the reason.

    picked = suggest(index, pool_rows, pool_vectors, model, n=50, strategy="auto")

Texts the index already holds (exactly the same string) are never suggested, and a text the pool holds twice is
suggested once. With no index yet (0 labelled rows) there is no model to be uncertain with: every strategy but
random picks diverse representatives."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fewlabel.indexing.errors import InvalidArgumentError
from fewlabel.indexing.readers import Row
from fewlabel.retrieval.labelling.strategies import (
    SCORE_SAMPLE,
    STRATEGIES,
    Picked,
    auto_strategy,
    diverse,
    diverse_uncertain,
    random_pick,
    uncertainty,
    uncertainty_scores,
)
from fewlabel.retrieval.methods.common import Views

__all__ = ["SUGGEST_COLUMNS", "Suggestion", "candidates", "pick", "suggest"]

SUGGEST_COLUMNS = ("id", "text", "label", "guess", "score", "strategy", "reason")


@dataclass
class Suggestion:
    """One text to label: ``guess`` is the index's labels for it (empty with no model), ``score`` the
    probability the model gives its guess (single-label: the top label; multi-label: the least sure of the
    chosen labels), ``strategy`` the rule that picked it and ``reason`` why."""

    id: str
    text: str
    guess: list[str]
    score: float | None
    strategy: str
    reason: str
    probabilities: dict[str, float] | None = None

    def as_dict(self) -> dict:
        return {"id": self.id, "text": self.text, "guess": self.guess, "score": self.score,
                "strategy": self.strategy, "reason": self.reason, "probabilities": self.probabilities}


def candidates(pool: Sequence[Row], known_texts: set[str]) -> np.ndarray:
    """Positions of the pool rows that may be suggested: not in the index, first copy of each text."""
    seen: set[str] = set(known_texts)
    keep = []
    for i, row in enumerate(pool):
        if row.text not in seen:
            seen.add(row.text)
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def suggest(index, pool: Sequence[Row], vectors: np.ndarray, model=None, *, n: int = 50, strategy: str = "auto",
            seed: int = 0, max_scan: int | None = None) -> list[Suggestion]:
    """Pick ``n`` rows of ``pool`` (``vectors``: their unit vectors, row for row) to label next. ``index`` may be
    None (nothing labelled yet); ``model`` is the index's :class:`~.model.IndexModel` (None: no guesses).
    ``max_scan``: score at most this many candidates (a seeded random sample) when the pool is larger, to bound
    the time of a method that reads texts (Naive Bayes) on a huge pool."""
    if strategy not in STRATEGIES:
        raise InvalidArgumentError(f"unknown strategy '{strategy}'; choose from {', '.join(STRATEGIES)}")
    if n < 1:
        raise InvalidArgumentError(f"--n must be at least 1, got {n}")
    if len(vectors) != len(pool):
        raise InvalidArgumentError(f"{len(vectors)} vectors for {len(pool)} pool rows")
    known = {r.text for r in index.rows} if index is not None else set()
    rows = candidates(pool, known)
    n_labelled = len(index) if index is not None else 0
    n_labels = len(index.label_names) if index is not None else 0
    if max_scan is None and model is not None and strategy == "auto" and needs_scores(strategy, n_labelled, n_labels):
        max_scan = SCORE_SAMPLE  # auto past the cold start reads the 10n least certain of a sample (see SCORE_SAMPLE)
    if max_scan is not None and len(rows) > max_scan:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_scan, replace=False))
    if not len(rows):
        return []
    n = min(n, len(rows))
    x = np.asarray(vectors[rows], dtype=np.float32)
    proba = decided = None
    if model is not None and needs_scores(strategy, n_labelled, n_labels):
        proba, decided = model.proba(Views(x, [pool[i].text for i in rows]))
    labelled = None
    if index is not None and strategy in ("auto", "diverse", "uncertainty"):
        from fewlabel.retrieval.methods.index_method import index_vectors

        labelled = _index_vectors(index, index_vectors)
    picked, note = pick(x, proba, model, n=n, strategy=strategy, seed=seed, n_labelled=n_labelled,
                        n_labels=n_labels, labelled_vectors=labelled)
    if model is not None and proba is None and len(picked.rows):
        # a rule that does not read the scores (random, diverse): only the picked rows need the model's guess, so
        # a second suggest on a 100,000-text pool does not score every text (a Naive Bayes part reads them all)
        chosen = [int(rows[i]) for i in picked.rows]
        some_proba, some_decided = model.proba(Views(x[picked.rows], [pool[i].text for i in chosen]))
        proba = np.zeros((len(x), some_proba.shape[1]), dtype=some_proba.dtype)
        decided = np.zeros((len(x), some_decided.shape[1]), dtype=bool)
        proba[picked.rows], decided[picked.rows] = some_proba, some_decided
    return _rows_out(pool, rows, picked, proba, decided, model, strategy, note)


def needs_scores(strategy: str, n_labelled: int, n_labels: int) -> bool:
    """Whether the rule reads the model's probabilities of every candidate (uncertainty, and auto once past the
    cold start) or only needs the guesses of the rows it picks (random, diverse)."""
    if strategy == "uncertainty":
        return True
    return strategy == "auto" and auto_strategy(n_labelled, n_labels) != "diverse"


def pick(x: np.ndarray, proba: np.ndarray | None, model, *, n: int, strategy: str, seed: int, n_labelled: int,
         n_labels: int, labelled_vectors: np.ndarray | None = None) -> tuple[Picked, str]:
    """The rule itself on arrays (what the benchmark's simulated annotator calls too): ``x`` the candidates'
    vectors, ``proba`` the model's probabilities for them (None: no model yet). Returns (picks, a note)."""
    rule, note = strategy, ""
    if strategy == "auto":
        rule = auto_strategy(n_labelled, n_labels) if proba is not None else "diverse"
    elif strategy == "uncertainty" and proba is None:
        rule, note = "diverse", " (no labelled rows yet: diverse representatives instead of uncertainty)"
    if rule == "random":
        return random_pick(len(x), n, seed), note
    if rule == "diverse":
        return diverse(x, n, seed, labelled_vectors), note
    assert proba is not None  # every rule left (uncertainty, or auto's picks) comes with a model
    scores = uncertainty_scores(proba, model.multi_label, model.thresholds)
    return (uncertainty(scores, n) if rule == "uncertainty" else diverse_uncertain(x, scores, n, seed)), note


def _index_vectors(index, index_vectors) -> np.ndarray | None:
    """The index's vectors when they can be read back without encoding (an exact FAISS index), else None."""
    if index.store.kind == "faiss" and index.factory == "Flat":
        return index_vectors(index, None)
    return None


def _rows_out(pool: Sequence[Row], rows: np.ndarray, picked: Picked, proba, decided, model, strategy: str,
              note: str) -> list[Suggestion]:
    out = []
    for position, reason in zip(picked.rows, picked.reasons, strict=True):
        row = pool[int(rows[position])]
        guess, score, probabilities = [], None, None
        if proba is not None:
            p, chosen = proba[position], decided[position]
            guess = [model.labels[j] for j in np.flatnonzero(chosen)]
            score = round(float(p[chosen].min() if chosen.any() else p.max()), 4)
            probabilities = {name: round(float(v), 4) for name, v in zip(model.labels, p, strict=True)}
        label = strategy if strategy == picked.strategy else f"{strategy}:{picked.strategy}"
        out.append(Suggestion(row.id, row.text, guess, score, label, reason + note, probabilities))
    return out
