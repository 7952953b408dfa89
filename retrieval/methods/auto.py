"""`auto`: score every candidate on data it was not fitted or tuned on, and keep the best.

Two protocols, one rule (the rows a score is measured on never shaped the model or its settings):

* **with validation rows** every candidate is fitted on the training rows once. Its settings (k and m, C,
  thresholds, blend weight) are chosen on one half of the validation rows and scored on the other, then the
  halves swap: the score is the mean of the two, the spread half their difference. Scoring on the same rows
  the settings were chosen on would favour the candidates with more knobs (kNN tries 210 (k, m) pairs, Naive
  Bayes none). The stored settings are then chosen on all validation rows.
* **without validation rows** ("true few-shot": the choice sees the training rows only) repeated stratified
  k-fold cross-validation on the training rows. For fold f the candidate is fitted on every other fold and its
  state kept for fold f's rows; once every fold has been held out, fold f's settings are tuned on the other
  folds' out-of-fold states and fold f's rows decided with them, exactly as the final model's settings are
  tuned on every row's out-of-fold state. (Fold f's labels did shape the models that gave the other folds
  their states, so they reach fold f's settings at one remove: a k, an m or a threshold, never fold f's own
  predictions; labels drawn at random still score at chance.) A draw's score is the metric over every row's
  decision at once (pooled, not a mean of per-fold F1s: on 2-row folds a per-fold F1 is mostly 0 or 1). The
  folds are drawn :data:`REPEATS_SMALL` times (other seeds) at most :data:`SMALL_N` rows, once otherwise;
  the score is the mean over draws, the spread the standard deviation of the per-fold scores. The final
  model is fitted on all rows, with settings chosen on the out-of-fold states of the first draw.
* **without any rows** (an index of label descriptions alone) the zero-shot candidate, unscored.

With validation rows the best mean score (``metric``: micro or macro F1) wins. Under cross-validation the
winner is the simplest candidate (the lowest ``rank`` in :mod:`fewlabel.retrieval.methods.registry`, which
also lists the candidates: zeroshot, prior, knn, linear, nb, ensemble, then the trained ones) whose score is
within :data:`SE_FACTOR` standard errors of the best (``spread / sqrt(folds)``); a tie goes to the cheaper.

Why this form, measured on true few-shot cells of NSMC, GoEmotions and SemEval at 8-256 rows (5 seeds up to
64 rows, 3 above; ``benchmarks/results/fewshot_rules.md`` applies every rule to the same CV scores):

* Tuning each fold's settings on half of that fold (the earlier protocol) tunes multi-label thresholds on one
  or two rows at 8-16 rows: the linear head and the ensemble then decided nothing and scored 0 under CV while
  scoring 0.40 on the test set. Tuning on the other folds' out-of-fold states cut auto's largest mean regret
  on GoEmotions from 0.073 to 0.029, with no loss elsewhere (the same cells, before and after).
* At 8 rows a single row moves a score by 0.125, and the best mean followed that noise to kNN or the linear
  head on NSMC (regret 0.037 at 8 rows; zero-shot was best). The full one-standard-error rule (Hastie,
  Tibshirani and Friedman, *Elements of Statistical Learning*, 7.10) fixed that but kept the label names too
  long on GoEmotions and SemEval (largest regret 0.036 and 0.057). Half a standard error gave 0.012, 0.022 and
  0.024, the best worst case over the three sets. ``SE_FACTOR`` was chosen on these same cells; left out in
  turn, each set's factor chosen on the other two is also 0.5 or ties with it.
* Shrinking each candidate's score toward the ranking the benchmarks measured (empirical Bayes, each set's
  prior from the other two) was worse: the sets disagree (names beat rows on NSMC and SemEval, rows beat names
  on GoEmotions), so the prior pulled each the wrong way (largest regret 0.064 and 0.127 on NSMC and
  GoEmotions).

``se_factor=0`` is the plain best mean.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fewlabel.indexing.errors import InvalidArgumentError
from fewlabel.retrieval.knn.saved_index import DEFAULT_MAX_K
from fewlabel.retrieval.methods.common import Views, score, subset
from fewlabel.retrieval.methods.descriptions import LabelDescriptions
from fewlabel.retrieval.methods.registry import (
    MIN_CV_ROWS,
    LabellingMethod,
    MethodContext,
    candidate_names,
    get_spec,
    make_candidate,
)

__all__ = ["Choice", "MIN_CV_ROWS", "REPEATS_SMALL", "SE_FACTOR", "SMALL_N", "cv_plan", "select_method"]

_TIE = 1e-9
SMALL_N = 128  # at most this many training rows: the folds are drawn several times
REPEATS_SMALL = 3
SE_FACTOR = 0.5  # under CV: the simplest candidate within this many standard errors of the best (measured above)


@dataclass
class Choice:
    """What :func:`select_method` found: the winner fitted on all training rows, its settings, the
    leaderboard (one entry per candidate, best first) and how the scores were measured."""

    method: str
    candidate: LabellingMethod
    settings: dict
    leaderboard: list[dict]
    protocol: dict
    candidates: dict = field(default_factory=dict)  # every candidate fitted on all rows, with its settings


def _stratified_folds(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """A fold number per row, stratified on every label at once (iterative stratification; single-label rows
    are one-hot, which makes it plain stratification)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    fold = np.zeros(len(y), dtype=np.int64)
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for f, (_, rows) in enumerate(splitter.split(np.zeros((len(y), 1)), y.astype(int))):
        fold[rows] = f
    return fold


def cv_plan(y: np.ndarray, n_folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(fit rows, tune rows, score rows), two per fold: the model is fitted on every fold but f, and fold f is
    split in two label-balanced halves, tuned on one and scored on the other, then swapped. The three parts of
    each entry are disjoint, so nothing a score is measured on reached the model or its settings, and every row
    is scored exactly once. Fitting on k-1 folds (not k-2) keeps the estimate close to what the model fitted
    on all rows will do: at 8-32 rows, a model fitted on half of them looks much worse than it is."""
    y = np.asarray(y, dtype=bool)
    fold = _stratified_folds(y, n_folds, seed)
    rng = np.random.default_rng(seed)
    plan = []
    for f in range(n_folds):
        held = np.flatnonzero(fold == f)
        key = [(tuple(np.flatnonzero(y[i])), rng.random()) for i in held]  # by labels, shuffled within them
        ordered = held[sorted(range(len(held)), key=lambda i: key[i])]
        first, second = np.sort(ordered[0::2]), np.sort(ordered[1::2])
        fit = np.flatnonzero(fold != f)
        plan += [(fit, first, second), (fit, second, first)]
    return plan


def _summary(settings: dict) -> dict:
    """What a candidate tuned, for the leaderboard (thresholds rounded)."""
    return {key: ([round(float(t), 2) for t in value] if key == "thresholds" else
                  round(value, 4) if isinstance(value, float) else value) for key, value in settings.items()}


def select_method(train: Views, y: np.ndarray, *, multi_label: bool, valid: Views | None = None,
                  y_valid: np.ndarray | None = None, methods: Sequence[str] | None = None, metric: str = "micro",
                  folds: int = 5, seed: int = 0, max_k: int = DEFAULT_MAX_K,
                  log: Callable[[str], None] | None = None, trained: dict | None = None,
                  descriptions: LabelDescriptions | None = None, repeats: int | None = None,
                  se_factor: float = SE_FACTOR) -> Choice:
    """Fit, tune and score each of ``methods`` (see the module docstring) and return the best. ``trained``
    maps setfit / finetune to (trainer, seconds, labels): on validation rows they train once; under
    cross-validation they train once per fold of the first draw and once on all rows (k + 1 fits), each fit
    getting 1/(k + 1) of its seconds, and are scored on those folds only (the other draws would train them
    again). ``descriptions``: the labels' embedded descriptions (the zeroshot and prior candidates need them,
    and join the default candidates when given). ``repeats``: how many times the folds are drawn (default:
    :data:`REPEATS_SMALL` up to :data:`SMALL_N` rows, else 1); ``se_factor``: under cross-validation, the
    simplest candidate within this many standard errors of the best wins (0: the best mean)."""
    if metric not in ("micro", "macro"):
        raise InvalidArgumentError(f"metric must be 'micro' or 'macro', got {metric!r}")
    if methods is None:  # the fast candidates, and the trained ones given a trainer and time
        methods = [*candidate_names(descriptions is not None), *(trained or {})]
    methods = list(dict.fromkeys(methods))
    needy = [name for name in methods if get_spec(name).uses_descriptions]
    if needy and descriptions is None:
        raise InvalidArgumentError(f"method '{needy[0]}' needs label descriptions (--label-names or --labels-file)")
    if descriptions is not None and valid is None and len(train) < MIN_CV_ROWS:
        return _unscored(train, y, methods, multi_label, descriptions)
    missing = [name for name in methods if get_spec(name).kind == "trained" and name not in (trained or {})]
    if missing:
        raise InvalidArgumentError(f"scoring '{missing[0]}' trains a model: it needs its trainer and a time budget")
    y = np.asarray(y, dtype=bool)
    say = log or (lambda message: None)
    if valid is not None:
        results = _on_validation(train, y, valid, np.asarray(y_valid, dtype=bool), methods, multi_label, metric,
                                 seed, max_k, say, trained, descriptions)
        protocol = {"kind": "validation", "n_valid": len(valid),
                    "note": "settings chosen on one half of the validation rows, scored on the other, and swapped"}
    else:
        n_folds = min(int(folds), len(train) // 2)
        if n_folds < 3:
            raise InvalidArgumentError(
                f"choosing a method without validation rows needs at least {MIN_CV_ROWS} training "
                                f"rows for cross-validation, there are {len(train)}: give --valid, or a --method")
        repeats = int(repeats) if repeats is not None else REPEATS_SMALL if len(train) <= SMALL_N else 1
        results = _cross_validated(train, y, methods, multi_label, metric, n_folds, seed, max_k, say, descriptions,
                                   max(1, repeats), trained)
        protocol = {"kind": "cross-validation", "folds": n_folds, "repeats": max(1, repeats), "seed": seed,
                    "rule": f"simplest within {se_factor:g} standard errors of the best" if se_factor else "best mean",
                    "note": f"stratified {n_folds}-fold cross-validation on the training rows, drawn {max(1, repeats)} "
                            "time(s) (no validation file): fitted on k-1 folds, each fold decided with settings "
                            "tuned on the other folds' out-of-fold states, scored on all rows at once"
                            + (f"; the simplest candidate within {se_factor:g} standard errors of the best"
                               if se_factor else "")}
    order = sorted(results, key=lambda name: (-results[name]["entry"]["score"], methods.index(name)))
    best = order[0]
    for name in order[1:]:  # a tie (to float noise) goes to the cheaper candidate (the lower registered rank)
        if results[name]["entry"]["score"] >= results[best]["entry"]["score"] - _TIE and \
                get_spec(name).rank < get_spec(best).rank:
            best = name
    if valid is None and se_factor:
        best = _simplest_within(results, best, n_folds, se_factor)
    leaderboard = [{**results[name]["entry"], "chosen": name == best} for name in order]
    return Choice(method=best, candidate=results[best]["candidate"], settings=results[best]["settings"],
                  leaderboard=leaderboard, protocol={**protocol, "metric": metric},
                  candidates={name: (r["candidate"], r["settings"]) for name, r in results.items()})


def _simplest_within(results: dict, best: str, n_folds: int, factor: float = 1.0) -> str:
    """The simplest (lowest-rank) candidate whose mean is at least the best mean minus ``factor`` times its
    standard error (``factor`` 1: the one-standard-error rule)."""
    entry = results[best]["entry"]
    bar = entry["score"] - factor * entry["spread"] / np.sqrt(n_folds) - _TIE
    within = [name for name in results if results[name]["entry"]["score"] >= bar]
    return min(within, key=lambda name: (get_spec(name).rank, -results[name]["entry"]["score"]))


def _unscored(train: Views, y: np.ndarray, methods: list[str], multi_label: bool,
              descriptions: LabelDescriptions) -> Choice:
    """Too few rows to score anything (fewer than :data:`MIN_CV_ROWS`, no validation rows), but label
    descriptions: with no rows the zero-shot candidate, with a few the label prior at its default weight (the
    descriptions, nudged by the rows), fitted and not scored."""
    usable = [name for name in methods if get_spec(name).min_rows == 0]
    if not usable:
        raise InvalidArgumentError(f"{len(train)} labelled rows are too few to score {', '.join(methods)}: add rows, "
                                   "give --valid, or let auto use the label descriptions")
    wanted = "zeroshot" if not len(train) else "prior"
    name = wanted if wanted in usable else min(usable, key=lambda n: get_spec(n).rank)
    candidate = make_candidate(name, MethodContext(descriptions=descriptions)).fit_views(train, y, multi_label)
    settings = candidate.select(candidate.state(train.take(np.arange(0))), y[:0], "micro")
    note = ("no labelled rows: the label descriptions alone, not scored" if not len(train) else
            f"{len(train)} rows, too few to score by cross-validation: the label prior at its default weight, "
            "not scored")
    entry: dict = {"method": name, "score": None, "spread": None, "scores": [], "seconds": 0.0,
             "tuned": _summary(settings), "note": note, "chosen": True}
    return Choice(method=name, candidate=candidate, settings=settings, leaderboard=[entry],
                  protocol={"kind": "none", "note": note, "metric": "micro"}, candidates={name: (candidate, settings)})


def _on_validation(train: Views, y: np.ndarray, valid: Views, y_valid: np.ndarray, methods: list[str],
                   multi_label: bool, metric: str, seed: int, max_k: int, say, trained: dict | None = None,
                   descriptions: LabelDescriptions | None = None) -> dict:
    halves = None
    if len(valid) >= 4:
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

        splitter = MultilabelStratifiedKFold(n_splits=2, shuffle=True, random_state=seed)
        a, b = next(iter(splitter.split(np.zeros((len(valid), 1)), y_valid.astype(int))))
        halves = [(a, b), (b, a)]
    fitted: dict = {}
    results = {}
    for name in methods:
        started = time.perf_counter()
        context = MethodContext(max_k=max_k, fitted=fitted, trained=trained or {}, descriptions=descriptions)
        candidate = make_candidate(name, context).fit_views(train, y, multi_label)
        fitted[name] = candidate
        state = candidate.state(valid)
        scores = []
        for tune_rows, score_rows in halves or []:
            settings = candidate.select(subset(state, tune_rows), y_valid[tune_rows], metric)
            scores.append(score(candidate.decide(subset(state, score_rows), settings), y_valid[score_rows], metric))
        settings = candidate.select(state, y_valid, metric)
        if not scores:  # too few validation rows to split: scored where tuned (optimistic, and said so)
            scores = [score(candidate.decide(state, settings), y_valid, metric)]
        seconds = time.perf_counter() - started
        entry = {"method": name, "score": float(np.mean(scores)), "spread": float(np.std(scores)),
                 "scores": [round(float(s), 4) for s in scores], "seconds": round(seconds, 2),
                 "tuned": _summary(settings)}
        if halves is None:
            entry["note"] = "fewer than 4 validation rows: scored on the rows it was tuned on"
        say(f"{name:<9} {metric}-F1 {entry['score']:.4f} ± {entry['spread']:.4f}  ({seconds:.1f}s)")
        results[name] = {"entry": entry, "candidate": candidate, "settings": settings}
    return results


def _cross_validated(train: Views, y: np.ndarray, methods: list[str], multi_label: bool, metric: str, n_folds: int,
                     seed: int, max_k: int, say, descriptions: LabelDescriptions | None = None,
                     repeats: int = 1, trained: dict | None = None) -> dict:
    """Each draw of the folds: every candidate is fitted on k-1 folds and its state kept for the held-out fold;
    once every fold is held out, each fold's settings are tuned on the other folds' out-of-fold states and its
    rows decided with them. The draw's score is the metric over all rows' decisions at once (pooled), the
    candidate's the mean over draws; its spread is the standard deviation of the per-fold scores."""
    draws = [_stratified_folds(y, n_folds, seed + r) for r in range(repeats)]  # a fold number per row, per draw
    per_fit = {name: (trainer, seconds / (n_folds + 1), labels) for name, (trainer, seconds, labels) in
               (trained or {}).items()}  # k fold fits and the final one share a trained candidate's time
    smallest_fit = min(int((fold != f).sum()) for fold in draws for f in range(n_folds))
    max_k = max(1, min(max_k, smallest_fit))  # one state shape for all
    fold_scores: dict[str, list[float]] = {name: [] for name in methods}
    draw_scores: dict[str, list[float]] = {name: [] for name in methods}
    seconds = dict.fromkeys(methods, 0.0)
    first_states: dict[str, dict] = {}
    for repeat, fold in enumerate(draws):
        folds: dict[str, list[tuple[int, LabellingMethod]]] = {name: [] for name in methods}  # (fold, its model)
        states: dict[str, dict] = {name: {} for name in methods}  # every row's out-of-fold state, this draw
        for f in range(n_folds):
            fit_rows, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            fitted: dict = {}
            fit_views, held_views = train.take(fit_rows), train.take(held)
            for name in methods:
                if repeat and name in per_fit:  # a trained candidate is cross-validated on the first draw only
                    continue
                started = time.perf_counter()
                context = MethodContext(max_k=max_k, fitted=fitted, descriptions=descriptions, trained=per_fit)
                candidate = make_candidate(name, context).fit_views(fit_views, y[fit_rows], multi_label)
                fitted[name] = candidate
                for key, value in candidate.state(held_views).items():
                    store = states[name].setdefault(key, np.zeros((len(train), *value.shape[1:]), dtype=value.dtype))
                    store[held] = value
                folds[name].append((f, candidate))
                seconds[name] += time.perf_counter() - started
        for name in methods:
            if not folds[name]:
                continue
            started = time.perf_counter()
            decided = np.zeros(y.shape, dtype=bool)
            for f, candidate in folds[name]:
                held, others = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
                settings = candidate.select(subset(states[name], others), y[others], metric)
                decided[held] = candidate.decide(subset(states[name], held), settings)
                fold_scores[name].append(score(decided[held], y[held], metric))
            draw_scores[name].append(score(decided, y, metric))
            first_states.setdefault(name, states[name])
            seconds[name] += time.perf_counter() - started
    results = {}
    fitted = {}
    for name in methods:
        started = time.perf_counter()
        context = MethodContext(max_k=max_k, fitted=fitted, descriptions=descriptions, trained=per_fit)
        candidate = make_candidate(name, context).fit_views(train, y, multi_label)
        fitted[name] = candidate
        settings = candidate.select(first_states[name], y, metric)  # every row's state is out of fold
        seconds[name] += time.perf_counter() - started
        entry = {"method": name, "score": float(np.mean(draw_scores[name])),
                 "spread": float(np.std(fold_scores[name])),
                 "scores": [round(float(s), 4) for s in fold_scores[name]],
                 "draws": [round(float(s), 4) for s in draw_scores[name]], "seconds": round(seconds[name], 2),
                 "tuned": _summary(settings)}
        say(f"{name:<9} {metric}-F1 {entry['score']:.4f} ± {entry['spread']:.4f}  ({seconds[name]:.1f}s)")
        results[name] = {"entry": entry, "candidate": candidate, "settings": settings}
    return results
