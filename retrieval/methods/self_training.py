"""Self-training on unlabelled texts: the index labels a pool, keeps its most confident answers as
pseudo-labelled rows, and chooses again, for a few rounds (chapter 9's pointer: UDA and UST; this is the
plain, confident and class-balanced self-training that UST refines).

Each round:

1. auto chooses a method on the rows so far (real and pseudo-labelled), from those rows alone
   (:func:`~fewlabel.retrieval.methods.auto.select_method`, cross-validated), and labels the rest of the pool;
2. per label, the pool texts it gives that label with the highest probability join as pseudo-labelled rows,
   at most as many per label as there are real rows per label (class-balanced, so one easy label cannot
   take over), and only those whose probability passes the confidence bar;
3. the confidence bar is chosen once, before the first round, by cross-validation on the real rows: the
   out-of-fold probabilities of the chosen method on the real rows, and the lowest bar (from
   :data:`BARS`) at which its out-of-fold answers are at least :data:`BAR_PRECISION` right.

Whether it helps is measured, not assumed (``benchmarks/results/fewshot.md``): it is off unless asked for
(`index build --unlabelled POOL`). Pseudo-labelled rows are marked in the index (``meta.json``
``pseudo_labelled``), shown by `predict --explain`, and replaced when `index add` brings real labels for the
same texts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fewlabel.retrieval.methods.auto import cv_plan, select_method
from fewlabel.retrieval.methods.common import Views, subset
from fewlabel.retrieval.methods.descriptions import LabelDescriptions
from fewlabel.retrieval.methods.registry import MIN_CV_ROWS, MethodContext, make_candidate

__all__ = ["BARS", "BAR_PRECISION", "ROUNDS", "SelfTraining", "confidence_bar", "self_train"]

ROUNDS = 3
BARS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
BAR_PRECISION = 0.9


@dataclass
class SelfTraining:
    """What :func:`self_train` did: the pool rows it labelled (positions in the pool), their labels, the bar
    and the method of each round."""

    rows: np.ndarray
    labels: np.ndarray
    bar: float
    rounds: list[dict] = field(default_factory=list)


def confidence_bar(train: Views, y: np.ndarray, method: str, multi_label: bool,
                   descriptions: LabelDescriptions | None, seed: int = 0) -> float:
    """The lowest of :data:`BARS` at which ``method``'s out-of-fold answers on the real rows whose top
    probability passes the bar are at least :data:`BAR_PRECISION` right (the highest bar when none is)."""
    if len(train) < MIN_CV_ROWS:
        return BARS[-1]
    top = np.zeros(len(train))
    right = np.zeros(len(train), dtype=bool)
    for fit_rows, tune_rows, score_rows in cv_plan(y, min(5, len(train) // 2), seed):
        candidate = make_candidate(method, MethodContext(descriptions=descriptions)).fit_views(
            train.take(fit_rows), y[fit_rows], multi_label)
        state = candidate.state(train.take(np.concatenate([tune_rows, score_rows])))
        tuned, scored = np.arange(len(tune_rows)), np.arange(len(tune_rows), len(tune_rows) + len(score_rows))
        settings = candidate.select(subset(state, tuned), y[tune_rows], "micro")
        proba = candidate.proba(subset(state, scored), settings)
        pred = candidate.decide(subset(state, scored), settings)
        top[score_rows] = proba.max(axis=1)
        right[score_rows] = (pred == y[score_rows]).all(axis=1)
    for bar in BARS:
        passed = top >= bar
        if passed.any() and right[passed].mean() >= BAR_PRECISION:
            return bar
    return BARS[-1]


def self_train(train: Views, y: np.ndarray, pool: Views, *, multi_label: bool,
               descriptions: LabelDescriptions | None = None, rounds: int = ROUNDS, seed: int = 0,
               log: Callable[[str], None] | None = None) -> tuple[Views, np.ndarray, SelfTraining]:
    """(rows, labels, record): the real rows followed by the pseudo-labelled pool rows (see the module
    docstring). The pool must not hold the training texts (callers drop them)."""
    say = log or (lambda message: None)
    y = np.asarray(y, dtype=bool)
    per_label = max(1, int(round(len(train) / max(1, y.shape[1]))))
    taken = np.zeros(len(pool), dtype=bool)
    chosen_rows: list[np.ndarray] = []
    chosen_labels: list[np.ndarray] = []
    record = SelfTraining(np.arange(0), np.zeros((0, y.shape[1]), dtype=bool), BARS[-1])
    views, labels = train, y
    for round_no in range(rounds):
        choice = select_method(views, labels, multi_label=multi_label, descriptions=descriptions, seed=seed)
        if round_no == 0:
            record.bar = confidence_bar(train, y, choice.method, multi_label, descriptions, seed)
        rest = np.flatnonzero(~taken)
        if not len(rest):
            break
        state = choice.candidate.state(pool.take(rest))
        proba = choice.candidate.proba(state, choice.settings)
        pred = choice.candidate.decide(state, choice.settings)
        confidence = proba.max(axis=1)
        new: list[int] = []
        for j in range(y.shape[1]):
            mine = np.flatnonzero(pred[:, j] & (proba.argmax(axis=1) == j) & (confidence >= record.bar))
            new += [int(i) for i in mine[np.argsort(-confidence[mine], kind="stable")][:per_label]]
        if not new:
            say(f"round {round_no + 1}: no pool text passed the bar {record.bar:g}")
            break
        picked = rest[np.asarray(sorted(set(new)))]
        taken[picked] = True
        chosen_rows.append(picked)
        chosen_labels.append(pred[np.searchsorted(rest, picked)])
        record.rounds.append({"round": round_no + 1, "method": choice.method, "added": int(len(picked))})
        say(f"round {round_no + 1}: {choice.method} pseudo-labelled {len(picked)} pool texts (bar {record.bar:g})")
        record.rows = np.concatenate(chosen_rows)
        record.labels = np.concatenate(chosen_labels)
        views = Views(np.concatenate([train.vectors, pool.vectors[record.rows]]),
                      [*train.texts, *(pool.texts[i] for i in record.rows)])
        labels = np.concatenate([y, record.labels])
    return views, labels, record
