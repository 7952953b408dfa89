"""STS metrics, written once for training (dev scores of `finetune sts`) and scoring (`sts score`, the
benchmark): Pearson and Spearman against gold 0-5 scores, and F1 of the binary label (score >= 3)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from fewlabel.indexing.errors import InvalidArgumentError
from fewlabel.indexing.sts.pairs import BINARY_THRESHOLD, PairRow

__all__ = ["pair_metrics", "sts_metrics"]


def sts_metrics(predicted: Sequence[float] | np.ndarray, gold: Sequence[float] | np.ndarray,
                gold_binary: Sequence[int] | np.ndarray | None = None) -> dict:
    """Pearson and Spearman of predicted vs gold scores, and F1 of the binary label at threshold 3
    (``gold_binary`` when given, else gold >= 3; predicted binary is predicted >= 3). A correlation
    that is undefined (constant input) is None."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import f1_score

    pred = np.asarray(predicted, dtype=np.float64).reshape(-1)
    true = np.asarray(gold, dtype=np.float64).reshape(-1)
    if pred.shape != true.shape:
        raise InvalidArgumentError(f"{pred.size} predictions but {true.size} gold scores")
    binary = (true >= BINARY_THRESHOLD).astype(int) if gold_binary is None else np.asarray(gold_binary, dtype=int)
    out: dict = {"n": int(pred.size), "pearson": None, "spearman": None, "binary_f1": None}
    if pred.size >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns on constant input and returns nan
            out["pearson"] = _finite(pearsonr(true, pred)[0])
            out["spearman"] = _finite(spearmanr(true, pred)[0])
    if pred.size:
        out["binary_f1"] = float(f1_score(binary, (pred >= BINARY_THRESHOLD).astype(int), zero_division=0))
    return out


def pair_metrics(rows: Sequence[PairRow], predicted: Sequence[float] | np.ndarray) -> dict | None:
    """:func:`sts_metrics` against the rows' own labels; None when the rows are unlabelled."""
    gold = [r.score for r in rows if r.score is not None]
    binary = [r.binary for r in rows if r.binary is not None]  # the reader sets binary wherever score is set
    if not rows or len(gold) < len(rows):
        return None
    return sts_metrics(predicted, gold, binary)


def _finite(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
