"""Both views at once: the linear head's and Naive Bayes' log-odds, blended.

The embedding knows meaning (paraphrases, synonyms), character n-grams know surface forms (names, Korean
morphology, words the encoder never saw). Their errors differ, so a blend beats either where both are
useful. Naive Bayes' log-odds are far larger than a logistic regression's (it counts every n-gram as
independent evidence), so they are first rescaled to the linear head's spread on the tuning rows; then
``z = w * z_linear + (1 - w) * z_nb`` goes through a sigmoid (multi-label, with per-label thresholds) or a
softmax (single-label). C, the weight w and the thresholds are tuned on validation rows."""

from __future__ import annotations

import numpy as np

from fewlabel.retrieval.methods.common import Views, decide, score, sigmoid, softmax, tune_thresholds
from fewlabel.retrieval.methods.linear import C_GRID, LinearHead
from fewlabel.retrieval.methods.nb import NaiveBayesText
from fewlabel.retrieval.methods.registry import LabellingMethod, MethodParts, MethodSpec, register

__all__ = ["EnsembleHead", "WEIGHTS"]

WEIGHTS = (0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9)  # the linear head's share; 0 and 1 are `nb` and `linear`


def _log_odds(proba: np.ndarray, multi_label: bool) -> np.ndarray:
    p = np.clip(proba, 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p) if multi_label else np.log(p)


def _centred(z: np.ndarray, multi_label: bool) -> np.ndarray:
    """Single-label scores only matter relative to each other: centre them per row before measuring spread."""
    z = np.where(np.isfinite(z), z, np.nan)
    if not multi_label:
        z = z - np.nanmean(z, axis=1, keepdims=True)
    return z


class EnsembleHead(LabellingMethod):
    """A weighted blend of :class:`LinearHead` and :class:`NaiveBayesText` log-odds (see the module)."""

    name = "ensemble"

    def __init__(self, c_grid: tuple[float, ...] = C_GRID, weights: tuple[float, ...] = WEIGHTS,
                 linear: LinearHead | None = None, nb: NaiveBayesText | None = None) -> None:
        self.c_grid, self.weights = tuple(c_grid), tuple(weights)
        self.linear, self.nb = linear, nb  # already fitted parts (auto shares them); fitted here otherwise

    def fit_views(self, views: Views, y: np.ndarray, multi_label: bool) -> EnsembleHead:
        self.multi_label_ = bool(multi_label)
        self.linear_ = self.linear if self.linear is not None else LinearHead(self.c_grid).fit_views(
            views, y, multi_label)
        self.nb_ = self.nb if self.nb is not None else NaiveBayesText().fit(views.texts, y, multi_label)
        return self

    def state(self, views: Views) -> dict[str, np.ndarray]:
        lin = self.linear_.state(views)["proba"]  # (n, n_C, L)
        return {"linear": _log_odds(lin, self.multi_label_), "nb": self.nb_.log_odds(views.texts)}

    def _blend(self, state: dict, c_index: int, weight: float, scale: float) -> np.ndarray:
        lin = state["linear"][:, c_index]
        nb = state["nb"]
        if not self.multi_label_:
            nb = nb - np.max(np.where(np.isfinite(nb), nb, -np.inf), axis=1, keepdims=True)
            nb = np.where(np.isfinite(nb), nb, -1e9)
        z = weight * lin + (1 - weight) * scale * nb
        return sigmoid(z) if self.multi_label_ else softmax(z)

    def select(self, state: dict, y: np.ndarray, metric: str) -> dict:
        best = None
        nb_spread = np.nanstd(_centred(state["nb"], self.multi_label_))
        for i, c in enumerate(self.c_grid):
            lin_spread = np.nanstd(_centred(state["linear"][:, i], self.multi_label_))
            scale = float(lin_spread / nb_spread) if nb_spread > 0 and np.isfinite(nb_spread) else 1.0
            for w in self.weights:
                proba = self._blend(state, i, w, scale)
                thresholds = tune_thresholds(proba, y) if self.multi_label_ else None
                value = score(decide(proba, self.multi_label_, thresholds), y, metric)
                if best is None or value > best[0] + 1e-12:
                    best = (value, {"C": c, "weight": w, "nb_scale": scale,
                                    **({"thresholds": [float(t) for t in thresholds]} if thresholds is not None
                                       else {})})
        assert best is not None
        return best[1]

    def proba(self, state: dict, settings: dict) -> np.ndarray:
        return self._blend(state, self.linear_.c_grid.index(settings["C"]), settings["weight"], settings["nb_scale"])

    def decide(self, state: dict, settings: dict) -> np.ndarray:
        return decide(self.proba(state, settings), self.multi_label_, settings.get("thresholds"))

    def keep(self, settings: dict) -> None:
        import copy

        self.linear_ = copy.copy(self.linear_)  # the shared linear candidate keeps all its models
        self.linear_.keep(settings)

    def to_files(self) -> MethodParts:
        linear, nb = self.linear_.to_files(), self.nb_.to_files()
        return MethodParts({"multi_label": self.multi_label_, "linear": linear.settings, "nb": nb.settings},
                           {**linear.arrays, **nb.arrays}, nb.vocabulary)

    @classmethod
    def from_files(cls, parts: MethodParts, labels: list[str] | None = None) -> EnsembleHead:
        settings = parts.settings
        head = cls()
        head.multi_label_ = bool(settings["multi_label"])
        head.linear_ = LinearHead.from_files(MethodParts(settings["linear"], parts.arrays))
        head.nb_ = NaiveBayesText.from_files(MethodParts(settings["nb"], parts.arrays, parts.vocabulary))
        head.c_grid = head.linear_.c_grid
        return head


register(MethodSpec(
    name="ensemble", summary="the linear head and Naive Bayes blended (both views)", rank=30,
    factory=lambda context: EnsembleHead(linear=context.fitted.get("linear"), nb=context.fitted.get("nb")),
    load=EnsembleHead.from_files,
))
