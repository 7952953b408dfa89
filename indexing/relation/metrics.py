"""Relation-extraction metrics, all in one place (the trainer, the predictor and the benchmark share them).

Scale: every function returns fractions in [0, 1]. KLUE and the SemEval scorer publish the same numbers
times 100 (KLUE's ``micro_f1 * 100``, the scorer's percentages).

- :func:`micro_f1_without` is KLUE-RE's first metric: micro-averaged F1 over every relation *except* the
  no-relation class (``no_relation``; SemEval's ``Other``), i.e. scikit-learn's ``f1_score(average="micro",
  labels=all but no_relation)``. A correct no_relation prediction earns nothing; predicting no_relation for a
  real relation costs recall; predicting a relation for a no_relation pair costs precision.
- :func:`auprc` is KLUE-RE's second metric: for each class one-vs-rest, ``auc(recall, precision)`` of
  scikit-learn's ``precision_recall_curve`` over that class's probability, then the mean over classes. KLUE's
  code averages over all 30 classes, every one of which occurs in its dev set; here a class with no gold
  example is left out of the mean (its curve is undefined: scikit-learn warns and returns a meaningless 0.5, older
  versions NaN), and ``auprc_per_class`` says which classes were scored. On data where every class occurs this
  is exactly KLUE's number.
- :func:`semeval_official` is SemEval-2010 Task 8's official score, re-implemented from the official scorer
  (``semeval2010_task8_scorer-v1.2.pl``, evaluation (iii), "(9+1)-way with directionality taken into account"):
  for each of the 9 undirected relations R that occur in the gold labels,
  ``P = (predictions exactly right with gold type R) / (predictions of type R, either direction)``,
  ``R = (same correct count) / (gold rows of type R)``, F1 from P and R; the official score is the mean F1 over
  those relations, Other excluded. A prediction of the right type but the wrong direction counts as predicted
  (it lowers P) and is not correct (it lowers R).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import Literal, overload

import numpy as np

from fewlabel.indexing.errors import DataError

__all__ = ["auprc", "micro_f1_without", "relation_metrics", "semeval_official", "undirected"]

_DIRECTION = re.compile(r"\((e[12]),(e[12])\)$")


def micro_f1_without(gold: Sequence, predicted: Sequence, no_relation) -> float:
    """Micro-F1 over all classes except ``no_relation`` (KLUE-RE's micro-F1; names or indices both work)."""
    gold, predicted = list(gold), list(predicted)
    _same_length(gold, predicted)
    correct = sum(1 for g, p in zip(gold, predicted, strict=True) if g == p and g != no_relation)
    n_predicted = sum(1 for p in predicted if p != no_relation)
    n_gold = sum(1 for g in gold if g != no_relation)
    if correct == 0:
        return 0.0
    precision, recall = correct / n_predicted, correct / n_gold
    return 2 * precision * recall / (precision + recall)


@overload
def auprc(probs: np.ndarray, gold: Sequence[int] | np.ndarray, *, per_class: Literal[False] = False) -> float: ...


@overload
def auprc(probs: np.ndarray, gold: Sequence[int] | np.ndarray, *,
          per_class: Literal[True]) -> tuple[float, dict[int, float]]: ...


def auprc(probs: np.ndarray, gold: Sequence[int] | np.ndarray, *,
          per_class: bool = False) -> float | tuple[float, dict[int, float]]:
    """Mean over classes of the area under the one-vs-rest precision-recall curve (KLUE-RE's AUPRC).

    ``probs`` is (n, n_classes) and ``gold`` holds class indices. Classes without a gold example are left out
    of the mean (see the module docstring). With ``per_class`` also returns ``{class index: area}``."""
    from sklearn.metrics import auc, precision_recall_curve

    probs = np.asarray(probs, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.int64)
    if probs.ndim != 2 or probs.shape[0] != gold.shape[0]:
        raise DataError(f"probs must be (n, n_classes) with n = {gold.shape[0]} gold labels, got {probs.shape}")
    if gold.size and (gold.min() < 0 or gold.max() >= probs.shape[1]):
        raise DataError(f"gold class indices must be in 0-{probs.shape[1] - 1}")
    areas: dict[int, float] = {}
    for c in range(probs.shape[1]):
        target = gold == c
        if not target.any():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            precision, recall, _ = precision_recall_curve(target.astype(int), probs[:, c])
        areas[c] = float(auc(recall, precision))
    mean = float(np.mean(list(areas.values()))) if areas else 0.0
    return (mean, areas) if per_class else mean


def undirected(label: str) -> str:
    """``Cause-Effect(e2,e1)`` -> ``Cause-Effect``; ``Other`` stays ``Other``."""
    return _DIRECTION.sub("", label)


def semeval_official(gold: Sequence[str], predicted: Sequence[str], *, other: str = "Other") -> dict:
    """SemEval-2010 Task 8's official macro-F1 (see the module docstring), with per-relation P, R, F1 and the
    counts behind them, plus the micro-averaged figures over the same relations."""
    gold, predicted = list(gold), list(predicted)
    _same_length(gold, predicted)
    types = sorted({undirected(g) for g in gold} - {other})
    per_relation: dict[str, dict] = {}
    for relation in types:
        correct = sum(1 for g, p in zip(gold, predicted, strict=True) if g == p and undirected(g) == relation)
        n_predicted = sum(1 for p in predicted if undirected(p) == relation)
        n_gold = sum(1 for g in gold if undirected(g) == relation)
        wrong_direction = sum(1 for g, p in zip(gold, predicted, strict=True)
                              if g != p and undirected(g) == undirected(p) == relation)
        precision = correct / n_predicted if n_predicted else 0.0
        recall = correct / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_relation[relation] = {"precision": precision, "recall": recall, "f1": f1, "correct": correct,
                                  "predicted": n_predicted, "gold": n_gold, "wrong_direction": wrong_direction}
    correct = sum(v["correct"] for v in per_relation.values())
    n_predicted = sum(v["predicted"] for v in per_relation.values())
    n_gold = sum(v["gold"] for v in per_relation.values())
    micro_p = correct / n_predicted if n_predicted else 0.0
    micro_r = correct / n_gold if n_gold else 0.0
    return {"macro_f1": float(np.mean([v["f1"] for v in per_relation.values()])) if per_relation else 0.0,
            "macro_precision": float(np.mean([v["precision"] for v in per_relation.values()])) if per_relation else 0.0,
            "macro_recall": float(np.mean([v["recall"] for v in per_relation.values()])) if per_relation else 0.0,
            "micro_f1": 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r else 0.0,
            "relations": len(per_relation), "per_relation": per_relation}


def relation_metrics(gold: Sequence[str], probs: np.ndarray, labels: Sequence[str],
                     no_relation: str | None) -> dict:
    """Every metric for one labelled set: KLUE's micro-F1 (without ``no_relation``) and AUPRC, accuracy, and for
    SemEval label sets the official macro-F1. ``probs`` is (n, len(labels)) in ``labels`` order; the prediction
    is its argmax."""
    labels = list(labels)
    index = {name: i for i, name in enumerate(labels)}
    unknown = next((g for g in gold if g not in index), None)
    if unknown is not None:
        raise DataError(f"gold label '{unknown}' is not in the label list")
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (len(gold), len(labels)):
        raise DataError(f"probs must be ({len(gold)}, {len(labels)}), got {probs.shape}")
    predicted = [labels[i] for i in probs.argmax(axis=1)]
    gold_idx = [index[g] for g in gold]
    area, areas = auprc(probs, gold_idx, per_class=True)
    out: dict[str, object] = {"n": len(gold), "micro_f1": micro_f1_without(gold, predicted, no_relation), "auprc": area,
           "auprc_classes": len(areas),
           "accuracy": float(np.mean([g == p for g, p in zip(gold, predicted, strict=True)])) if gold else 0.0,
           "no_relation": no_relation}
    if no_relation == "Other" and all(_DIRECTION.search(n) or n == "Other" for n in labels):
        official = semeval_official(gold, predicted)
        out["semeval_macro_f1"] = official["macro_f1"]
        out["semeval_per_relation"] = {k: round(v["f1"], 6) for k, v in official["per_relation"].items()}
    return out


def _same_length(gold: list, predicted: list) -> None:
    if len(gold) != len(predicted):
        raise DataError(f"{len(gold)} gold labels but {len(predicted)} predictions")
