"""The maths of zero-shot scoring, as plain numpy functions so they can be checked on hand-made logits: where
entailment and contradiction sit in a checkpoint's ``id2label``, the multi- and single-label NLI scores,
aggregating a label's aliases, and choosing labels by top-k or threshold."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.special import softmax

from fewlabel.indexing.errors import InvalidArgumentError, ModelError

__all__ = ["AGGREGATES", "NLILabelMap", "aggregate_by_label", "multi_label_nli_scores", "nli_label_indices",
           "select_labels", "single_label_nli_scores"]

AGGREGATES = ("max", "mean")


@dataclass(frozen=True)
class NLILabelMap:
    """Where the classes sit in an NLI checkpoint's output, read from its ``id2label``. ``contradiction``
    is None for a checkpoint without one; ``not_entailment`` of two-class (RTE-style) models fills it."""

    entailment: int
    contradiction: int | None
    neutral: int | None
    id2label: dict[int, str]


def nli_label_indices(id2label: Mapping[int | str, str], *, source: str = "the checkpoint") -> NLILabelMap:
    """Find entailment, contradiction and neutral in ``id2label`` (keys may be strings, as in config.json),
    case-insensitively, by prefix (``ENTAILMENT``, ``entails``, ``Contradiction``…). No order is assumed.
    A checkpoint without an entailment class (e.g. ``LABEL_0..2``) is refused with a clear message."""
    try:
        table = {int(k): str(v) for k, v in dict(id2label or {}).items()}
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{source}: id2label must map class numbers to names, got {id2label!r}") from exc

    def find(test) -> list[int]:
        return sorted(i for i, name in table.items() if test(name.strip().lower().replace("-", "_")))

    entail = find(lambda n: n.startswith("entail"))
    negated = find(lambda n: n.startswith(("not_entail", "non_entail", "not entail", "non entail")))
    contra = find(lambda n: n.startswith("contradict"))
    neutral = find(lambda n: n.startswith("neutral"))
    shown = ", ".join(f"{i}: {n}" for i, n in sorted(table.items())) or "none"
    if not entail:
        raise ModelError(f"{source} has no entailment label in its id2label ({shown}), so it cannot be used for "
                         "NLI zero-shot; an NLI checkpoint names its classes, e.g. entailment / neutral / "
                         "contradiction (train one with `fewlabel finetune nli`)")
    for what, found in (("entailment", entail), ("contradiction", contra), ("neutral", neutral)):
        if len(found) > 1:
            raise ModelError(f"{source}: several classes look like {what} in its id2label ({shown})")
    if not contra and len(negated) == 1:
        contra = negated
    return NLILabelMap(entailment=entail[0], contradiction=contra[0] if contra else None,
                       neutral=neutral[0] if neutral else None, id2label=table)


def aggregate_by_label(values: np.ndarray, groups: np.ndarray, n_labels: int, how: str = "max") -> np.ndarray:
    """(n, H) values of H hypotheses -> (n, L): the max or mean over each label's aliases."""
    if how not in AGGREGATES:
        raise InvalidArgumentError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {how!r}")
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups)
    if values.ndim != 2 or values.shape[1] != groups.shape[0]:
        raise InvalidArgumentError(f"values {values.shape} do not match {groups.shape[0]} hypotheses")
    out = np.empty((values.shape[0], n_labels), dtype=np.float64)
    for j in range(n_labels):
        cols = values[:, groups == j]
        if cols.shape[1] == 0:
            raise InvalidArgumentError(f"label {j} has no hypothesis")
        out[:, j] = cols.max(axis=1) if how == "max" else cols.mean(axis=1)
    return out


def multi_label_nli_scores(logits: np.ndarray, groups: np.ndarray, n_labels: int, entailment: int,
                           contradiction: int | None, how: str = "max") -> np.ndarray:
    """(n, H, C) logits -> (n, L) independent label probabilities: per hypothesis the softmax over
    [contradiction, entailment] logits (= sigmoid of their difference), aggregated over aliases. Without a
    contradiction class, P(entailment) from the softmax over all classes."""
    logits = np.asarray(logits, dtype=np.float64)
    if contradiction is None:
        per_hyp = softmax(np.asarray(logits, dtype=np.float64), axis=-1)[..., entailment]
    else:
        per_hyp = softmax(np.asarray(logits, dtype=np.float64)[..., [contradiction, entailment]], axis=-1)[..., 1]
    return aggregate_by_label(per_hyp, groups, n_labels, how)


def single_label_nli_scores(logits: np.ndarray, groups: np.ndarray, n_labels: int, entailment: int,
                            how: str = "max") -> np.ndarray:
    """(n, H, C) logits -> (n, L) label probabilities summing to 1: each label's entailment logit
    (aggregated over its aliases) through a softmax across the labels."""
    logits = np.asarray(logits, dtype=np.float64)
    return softmax(aggregate_by_label(logits[..., entailment], groups, n_labels, how), axis=-1)


def select_labels(scores: np.ndarray, top_k: int | None = None, threshold: float | None = None) -> np.ndarray:
    """(n, L) bool: the ``top_k`` best labels, those scoring >= ``threshold``, or the top_k best among those
    scoring >= threshold. Ties keep the earlier label (stable)."""
    scores = np.asarray(scores, dtype=np.float64)
    if top_k is None and threshold is None:
        raise InvalidArgumentError("choose labels by top_k, threshold or both")
    chosen = np.ones(scores.shape, dtype=bool)
    if threshold is not None:
        chosen &= scores >= float(threshold)
    if top_k is not None:
        if isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1:
            raise InvalidArgumentError(f"top_k must be an integer >= 1, got {top_k!r}")
        order = np.argsort(-np.where(chosen, scores, -np.inf), axis=1, kind="stable")[:, :int(top_k)]
        keep = np.zeros(scores.shape, dtype=bool)
        np.put_along_axis(keep, order, True, axis=1)
        chosen &= keep
    return chosen
