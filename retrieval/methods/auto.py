"""`auto`: score every candidate on data it was not fitted or tuned on, and keep the best.

Two protocols, one rule (the rows a score is measured on never shaped the model or its settings):

* **with validation rows** every candidate is fitted on the training rows once. Its settings (k and m, C,
  thresholds, blend weight) are chosen on one half of the validation rows and scored on the other, then the
  halves swap: the score is the mean of the two, the spread half their difference. Scoring on the same rows
  the settings were chosen on would favour the candidates with more knobs (kNN tries 210 (k, m) pairs, Naive
  Bayes none). The stored settings are then chosen on all validation rows.
* **without validation rows** ("true few-shot": the choice sees the training rows only) repeated stratified
  k-fold cross-validation on the training rows: for fold f the candidate is fitted on every other fold, and
  fold f is split in two label-balanced halves, tuned on one and scored on the other, then swapped; the folds
  are drawn :data:`REPEATS_SMALL` times (with other
  seeds) when there are at most :data:`SMALL_N` rows, once otherwise. The score is the mean over all folds,
  the spread their standard deviation. The final model is fitted on all rows, with settings chosen on the
  pooled out-of-fold states of every row (of the first repeat).
* **without any rows** (an index of label descriptions alone) the zero-shot candidate, unscored.

The best mean score (``metric``: micro or macro F1) wins; a tie goes to the cheaper candidate (the lower
``rank`` in :mod:`fewlabel.retrieval.methods.registry`, which also lists the candidates).

Why the best mean and not the one-standard-error rule (Hastie, Tibshirani and Friedman, *Elements of
Statistical Learning*, 7.10: the simplest candidate within one standard error of the best). Both were built
and measured on true few-shot cells (``benchmarks/results/fewshot.md``, three seeds at 8-128 rows): on NSMC
the rule was as good or better up to 64 rows (regret 0.000 against 0.019 at 32), but on GoEmotions, where the
rows beat the label names from 16 rows on, it kept the names and lost 0.04-0.16 micro-F1 (regret 0.118
against 0.003 at 16 rows). What made the small-N estimate trustworthy enough to follow was fitting on k-1
folds instead of k-2 (a model fitted on half of 8 rows looks far worse than the one fitted on all 8) and
drawing the folds three times. ``one_se=True`` keeps the rule available."""

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

__all__ = ["Choice", "MIN_CV_ROWS", "REPEATS_SMALL", "SMALL_N", "cv_plan", "select_method"]

_TIE = 1e-9
SMALL_N = 128  # at most this many training rows: the folds are drawn several times
REPEATS_SMALL = 3


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
                  one_se: bool = False) -> Choice:
    """Fit, tune and score each of ``methods`` (see the module docstring) and return the best. ``trained``
    maps setfit / finetune to (trainer, seconds, labels): on validation rows they train once; under
    cross-validation they train once per fold of the first draw and once on all rows (k + 1 fits), each fit
    getting 1/(k + 1) of its seconds, and are scored on those folds only (the other draws would train them
    again). ``descriptions``: the labels' embedded descriptions (the zeroshot and prior candidates need them,
    and join the default candidates when given). ``repeats``: how many times the folds are drawn (default:
    :data:`REPEATS_SMALL` up to :data:`SMALL_N` rows, else 1); ``one_se`` True applies the one-standard-error
    rule under cross-validation (off by default: measured below)."""
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
                    "rule": "one standard error" if one_se else "best mean",
                    "note": f"stratified {n_folds}-fold cross-validation on the training rows, drawn {max(1, repeats)} "
                            "time(s) (no validation file): fitted on k-1 folds, tuned on half the other, scored "
                            "on the rest"
                            + ("; the simplest candidate within one standard error of the best" if one_se else "")}
    order = sorted(results, key=lambda name: (-results[name]["entry"]["score"], methods.index(name)))
    best = order[0]
    for name in order[1:]:  # a tie (to float noise) goes to the cheaper candidate (the lower registered rank)
        if results[name]["entry"]["score"] >= results[best]["entry"]["score"] - _TIE and \
                get_spec(name).rank < get_spec(best).rank:
            best = name
    if valid is None and one_se:
        best = _one_standard_error(results, best, n_folds)
    leaderboard = [{**results[name]["entry"], "chosen": name == best} for name in order]
    return Choice(method=best, candidate=results[best]["candidate"], settings=results[best]["settings"],
                  leaderboard=leaderboard, protocol={**protocol, "metric": metric},
                  candidates={name: (r["candidate"], r["settings"]) for name, r in results.items()})


def _one_standard_error(results: dict, best: str, n_folds: int) -> str:
    """The simplest (lowest-rank) candidate whose mean is at least the best mean minus its standard error."""
    entry = results[best]["entry"]
    bar = entry["score"] - entry["spread"] / np.sqrt(n_folds) - _TIE
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
    plans = [cv_plan(y, n_folds, seed + r) for r in range(repeats)]
    per_fit = {name: (trainer, seconds / (n_folds + 1), labels) for name, (trainer, seconds, labels) in
               (trained or {}).items()}  # k fold fits and the final one share a trained candidate's time
    max_k = max(1, min(max_k, min(len(fit) for plan in plans for fit, _, _ in plan)))  # one state shape for all
    scores: dict[str, list[float]] = {name: [] for name in methods}
    seconds = dict.fromkeys(methods, 0.0)
    pooled: dict[str, dict] = {name: {} for name in methods}
    for repeat, plan in enumerate(plans):
        for start in range(0, len(plan), 2):  # the two entries of a fold share its fitted models
            fit_rows, first, second = plan[start]
            held = np.concatenate([first, second])
            where = {int(row): i for i, row in enumerate(held)}
            fitted: dict = {}
            fit_views = train.take(fit_rows)
            for name in methods:
                if repeat and name in per_fit:  # a trained candidate is cross-validated on the first draw only
                    continue
                started = time.perf_counter()
                context = MethodContext(max_k=max_k, fitted=fitted, descriptions=descriptions, trained=per_fit)
                candidate = make_candidate(name, context).fit_views(fit_views, y[fit_rows], multi_label)
                fitted[name] = candidate
                state = candidate.state(train.take(held))
                for _, tune_rows, score_rows in plan[start:start + 2]:
                    tune_part = np.asarray([where[int(r)] for r in tune_rows], dtype=np.int64)
                    score_part = np.asarray([where[int(r)] for r in score_rows], dtype=np.int64)
                    settings = candidate.select(subset(state, tune_part), y[tune_rows], metric)
                    scores[name].append(score(candidate.decide(subset(state, score_part), settings),
                                              y[score_rows], metric))
                if repeat == 0:  # out-of-fold states: every row is held out exactly once a repeat
                    for key, value in state.items():
                        store = pooled[name].setdefault(key, np.zeros((len(train), *value.shape[1:]),
                                                                      dtype=value.dtype))
                        store[held] = value
                seconds[name] += time.perf_counter() - started
    results = {}
    fitted = {}
    for name in methods:
        started = time.perf_counter()
        context = MethodContext(max_k=max_k, fitted=fitted, descriptions=descriptions, trained=per_fit)
        candidate = make_candidate(name, context).fit_views(train, y, multi_label)
        fitted[name] = candidate
        settings = candidate.select(pooled[name], y, metric)  # every row's state is out of fold
        seconds[name] += time.perf_counter() - started
        entry = {"method": name, "score": float(np.mean(scores[name])), "spread": float(np.std(scores[name])),
                 "scores": [round(float(s), 4) for s in scores[name]], "seconds": round(seconds[name], 2),
                 "tuned": _summary(settings)}
        say(f"{name:<9} {metric}-F1 {entry['score']:.4f} ± {entry['spread']:.4f}  ({seconds[name]:.1f}s)")
        results[name] = {"entry": entry, "candidate": candidate, "settings": settings}
    return results
