"""Scoring sentence pairs with an STS cross-encoder, written once for the dev scores of training and for
`fewlabel sts score`: each pair is read in both orders and the two outputs averaged, because a cross-encoder
is not symmetric and similarity is."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["score_both_orders"]


def score_both_orders(cross_encoder, first: Sequence[str], second: Sequence[str], *, batch_size: int = 32,
                show_progress: bool = False) -> np.ndarray:
    """The mean of ``cross_encoder``'s output on (a, b) and on (b, a), per pair, as float64 (its own 0-1 scale)."""
    first, second = list(first), list(second)
    if not first:
        return np.zeros(0, dtype=np.float64)
    pairs = list(zip(first, second, strict=True)) + list(zip(second, first, strict=True))
    out = np.asarray(cross_encoder.predict(pairs, batch_size=batch_size, show_progress_bar=show_progress),
                     dtype=np.float64).reshape(-1)
    return (out[:len(first)] + out[len(first):]) / 2.0
