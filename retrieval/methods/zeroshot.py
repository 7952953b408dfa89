"""`zeroshot`: the embedding zero-shot as a candidate that needs no labelled rows.

A text gets the label whose description its vector is nearest to (cosine, best alias), as `fewlabel zeroshot
--model embed` does with the index's own encoder. It is the label prior (:mod:`.prior`) with the prior's
weight fixed at infinity, so the rows never move it; with rows, multi-label indexes still tune a threshold per
label on them. Auto scores it like any candidate, so an index with a handful of rows keeps the names'
answer when the rows cannot beat it, and an index with no rows at all labels with it."""

from __future__ import annotations

from fewlabel.retrieval.methods.prior import LabelPrior
from fewlabel.retrieval.methods.registry import MethodContext, MethodSpec, register

__all__ = ["ZeroShotCandidate"]

INFINITE = float("inf")


class ZeroShotCandidate(LabelPrior):
    """The description similarity alone (λ = ∞)."""

    name = "zeroshot"

    def __init__(self, descriptions, lambdas: tuple[float, ...] = (INFINITE,), default: float = INFINITE) -> None:
        super().__init__(descriptions, (INFINITE,), INFINITE)


def _make(context: MethodContext) -> ZeroShotCandidate:
    return ZeroShotCandidate(context.descriptions)


register(MethodSpec(
    name="zeroshot", summary="the nearest label description (embedding zero-shot; needs no rows)",
    factory=_make, load=ZeroShotCandidate.from_files, rank=-20, uses_descriptions=True, min_rows=0, bench="index",
))
