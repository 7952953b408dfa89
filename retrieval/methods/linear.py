"""A logistic-regression head on the frozen embeddings: the cheapest trained head, and often better than a
neighbour vote once there are a few hundred labelled rows, because every row shapes one decision boundary
instead of only the k nearest voting.

Multi-label: one binary LogisticRegression per label (one-vs-rest), with a decision threshold per label
tuned on validation rows; single-label: one multinomial LogisticRegression (the most probable label wins).
The regularisation strength C is chosen on validation rows from :data:`C_GRID`: one model per C is fitted on
the training rows, and the choice is made by comparing their validation predictions."""

from __future__ import annotations

from typing import Any

import numpy as np

from fewlabel.retrieval.methods.common import Views, decide, score, sigmoid, softmax, tune_thresholds
from fewlabel.retrieval.methods.registry import LabellingMethod, MethodParts, MethodSpec, register

__all__ = ["C_GRID", "LinearHead", "fit_logistic", "linear_proba", "one_vs_rest_arrays", "single_label_arrays"]

C_GRID = (0.1, 1.0, 10.0, 100.0)


def fit_logistic(x: np.ndarray, y: np.ndarray, multi_label: bool, c: float) -> tuple[np.ndarray, np.ndarray]:
    """(coef (L, D), intercept (L,)) of a logistic regression at C=``c``: per label (multi-label; a label no
    row carries, or every row does, gets a constant) or multinomial (single-label; a label the rows lack gets
    -inf and is never chosen; two classes are written as two rows so that softmax equals the sigmoid)."""
    from sklearn.linear_model import LogisticRegression

    n_labels, dim = y.shape[1], x.shape[1]
    if multi_label:
        constant = [bool(y[:, j].all()) if y[:, j].all() or not y[:, j].any() else None for j in range(n_labels)]
        # liblinear: one small binary problem per label, 2-4x faster than lbfgs here (auto cross-validates
        # every label x C x fold, which made a 64-row GoEmotions build take minutes)
        models = [None if constant[j] is not None else
                  LogisticRegression(C=c, max_iter=1000, solver="liblinear").fit(x, y[:, j].astype(int))
                  for j in range(n_labels)]
        return one_vs_rest_arrays(models, constant, dim)
    target = y.argmax(1)
    present = np.unique(target)
    model = LogisticRegression(C=c, max_iter=1000).fit(x, target) if len(present) > 1 else None
    return single_label_arrays(model, present, n_labels, dim)


def single_label_arrays(model, present: np.ndarray, n_labels: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(coef (L, D), intercept (L,)) of a fitted single-label sklearn ``LogisticRegression`` over the classes
    ``present`` (integer label columns; ``model`` is None when only one class was present), such that
    :func:`linear_proba` gives its ``predict_proba`` in all L columns: a label the rows lacked gets -inf and
    is never chosen; two classes are written as two rows so that softmax equals sklearn's sigmoid."""
    coef, intercept = np.zeros((n_labels, dim)), np.full(n_labels, -np.inf)
    present = np.asarray(present, dtype=np.int64)
    if model is None or len(present) == 1:
        intercept[present[0]] = 0.0
        return coef, intercept
    if len(present) == 2:  # sklearn keeps one row for two classes: P(second) = sigmoid(w.x + b)
        coef[present[1]], intercept[present[1]] = model.coef_[0], model.intercept_[0]
        intercept[present[0]] = 0.0
    else:
        coef[present], intercept[present] = model.coef_, model.intercept_
    return coef, intercept


def one_vs_rest_arrays(estimators: list, constants: list[bool | None], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(coef, intercept) of one binary ``LogisticRegression`` per label (multi-label); a label whose rows were
    all one value has no model (``constants[j]`` True: always; False: never) and gets a constant."""
    n_labels = len(estimators)
    coef, intercept = np.zeros((n_labels, dim)), np.zeros(n_labels)
    for j, (model, constant) in enumerate(zip(estimators, constants, strict=True)):
        if constant is not None:
            intercept[j] = 50.0 if constant else -50.0
        else:
            coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
    return coef, intercept


def linear_proba(x: np.ndarray, coef: np.ndarray, intercept: np.ndarray, multi_label: bool) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64) @ coef.T + intercept[None, :]
    return sigmoid(z) if multi_label else softmax(z)


class LinearHead(LabellingMethod):
    """Logistic regression on the embeddings; C (and, multi-label, per-label thresholds) tuned on
    validation rows."""

    name = "linear"

    def __init__(self, c_grid: tuple[float, ...] = C_GRID) -> None:
        self.c_grid = tuple(c_grid)

    def fit_views(self, views: Views, y: np.ndarray, multi_label: bool) -> LinearHead:
        y = np.asarray(y, dtype=bool)
        self.multi_label_ = bool(multi_label)
        self.models_ = {c: fit_logistic(views.vectors, y, multi_label, c) for c in self.c_grid}
        return self

    def state(self, views: Views) -> dict[str, np.ndarray]:
        """Probabilities of every C's model: (n, n_C, L)."""
        return {"proba": np.stack([linear_proba(views.vectors, *self.models_[c], self.multi_label_)
                                   for c in self.c_grid], axis=1)}

    def select(self, state: dict, y: np.ndarray, metric: str) -> dict:
        best = None
        for i, c in enumerate(self.c_grid):
            proba = state["proba"][:, i]
            thresholds = tune_thresholds(proba, y) if self.multi_label_ else None
            value = score(decide(proba, self.multi_label_, thresholds), y, metric)
            if best is None or value > best[0] + 1e-12:
                best = (value, c, thresholds)
        assert best is not None
        out: dict[str, Any] = {"C": best[1]}
        if best[2] is not None:
            out["thresholds"] = [float(t) for t in best[2]]
        return out

    def _column(self, settings: dict) -> int:
        return self.c_grid.index(settings["C"])

    def proba(self, state: dict, settings: dict) -> np.ndarray:
        return state["proba"][:, self._column(settings)]

    def decide(self, state: dict, settings: dict) -> np.ndarray:
        return decide(self.proba(state, settings), self.multi_label_, settings.get("thresholds"))

    def keep(self, settings: dict) -> None:
        """Drop every model but the chosen one (what the index stores)."""
        self.models_ = {settings["C"]: self.models_[settings["C"]]}
        self.c_grid = (settings["C"],)

    def to_files(self) -> MethodParts:
        (c, (coef, intercept)), = self.models_.items()
        return MethodParts({"C": c, "multi_label": self.multi_label_},
                           {"linear_coef": coef, "linear_intercept": intercept})

    @classmethod
    def from_files(cls, parts: MethodParts, labels: list[str] | None = None) -> LinearHead:
        settings, arrays = parts.settings, parts.arrays
        head = cls((float(settings["C"]),))
        head.multi_label_ = bool(settings["multi_label"])
        head.models_ = {float(settings["C"]): (arrays["linear_coef"], arrays["linear_intercept"])}
        return head


register(MethodSpec(
    name="linear", summary="logistic regression on the embeddings", rank=10,
    factory=lambda context: LinearHead(), load=LinearHead.from_files,
))
