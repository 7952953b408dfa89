"""`prior`: the labels' descriptions as a prior that the labelled rows overrule as they come.

Each label c gets a score for a text x that blends two cosines:

    s_c(x) = a_c · cos(x, description_c) + (1 - a_c) · cos(x, centroid_c),   a_c = λ / (λ + n_c)

where ``description_c`` is the label's embedded description (its best alias), ``centroid_c`` the mean of its
``n_c`` labelled rows' vectors, and λ the prior's weight counted in rows: the description is worth λ
examples. With no rows (n_c = 0, or λ = ∞) this is exactly the embedding zero-shot; with many rows the
prior fades and it is the nearest-centroid (prototype) classifier. Single-label: the best score wins and
``softmax(s / T)`` gives probabilities; multi-label: the best label plus every label whose probability passes
a per-label threshold tuned on labelled rows.

Why this form. A conjugate prior is the textbook way to say "believe the name until the data say otherwise":
the weight of the name shrinks as 1/n_c by itself, so one knob (λ) covers 0 rows to hundreds, and that knob is
cheap and stable to choose from few rows (tuned over :data:`LAMBDAS`; ties, frequent on a handful of rows, go
to :data:`DEFAULT_LAMBDA`). Blending probabilities of a separate head (a logistic regression fitted on 8 rows)
has two fitted parts and a weight to tune on the same few rows. Neither SetFit nor sentence-transformers
combines label names with labelled rows this way; SetFit's heads start from the rows alone."""

from __future__ import annotations

from typing import Any

import numpy as np

from fewlabel.indexing.errors import InvalidArgumentError
from fewlabel.retrieval.methods.common import Views, score, softmax, tune_thresholds
from fewlabel.retrieval.methods.descriptions import LabelDescriptions
from fewlabel.retrieval.methods.registry import (
    LabellingMethod,
    MethodContext,
    MethodParts,
    MethodSpec,
    register,
)

__all__ = ["DEFAULT_LAMBDA", "LAMBDAS", "TEMPERATURE", "LabelPrior"]

LAMBDAS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0, float("inf"))  # the prior's weight, in rows
DEFAULT_LAMBDA = 4.0
TEMPERATURE = 0.05  # as the embedding zero-shot's softmax


def _plain(lam: float) -> float | str:
    """λ as JSON can hold it: infinity is the string "inf" (JSON has no Infinity)."""
    return "inf" if np.isinf(lam) else lam


class LabelPrior(LabellingMethod):
    """Description prior plus label centroids (see the module docstring)."""

    name = "prior"

    def __init__(self, descriptions: LabelDescriptions | None, lambdas: tuple[float, ...] = LAMBDAS,
                 default: float = DEFAULT_LAMBDA) -> None:
        if descriptions is None:
            raise InvalidArgumentError(f"method '{self.name}' needs label descriptions: build the index with "
                                       "--label-names or --labels-file")
        self.descriptions = descriptions
        self.lambdas = tuple(float(x) for x in lambdas)
        self.default = float(default) if float(default) in self.lambdas else self.lambdas[0]

    # ---- fitting ----------------------------------------------------------------------------------------
    def fit_views(self, views: Views, y: np.ndarray, multi_label: bool) -> LabelPrior:
        y = np.asarray(y, dtype=bool).reshape(len(views), len(self.descriptions.labels))
        self.multi_label_ = bool(multi_label)
        self.counts_ = y.sum(axis=0).astype(np.float64)
        sums = y.T.astype(np.float64) @ np.asarray(views.vectors, dtype=np.float64) if len(views) else \
            np.zeros((y.shape[1], self.descriptions.vectors.shape[1]))
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        self.centroids_ = np.where(norms > 0, sums / np.where(norms > 0, norms, 1.0), 0.0)
        return self

    def state(self, views: Views) -> dict[str, np.ndarray]:
        vectors = np.asarray(views.vectors, dtype=np.float64)
        return {"zs": self.descriptions.similarity(vectors), "proto": vectors @ self.centroids_.T}

    # ---- deciding ---------------------------------------------------------------------------------------
    def weights(self, lam: float) -> np.ndarray:
        """a_c per label: the share of the description in the label's score."""
        if np.isinf(lam):
            return np.ones_like(self.counts_)
        return np.where(self.counts_ > 0, lam / np.maximum(lam + self.counts_, 1e-12), 1.0)

    def scores(self, state: dict, lam: float) -> np.ndarray:
        a = self.weights(lam)[None, :]
        return a * state["zs"] + (1.0 - a) * state["proto"]

    def proba(self, state: dict, settings: dict) -> np.ndarray:
        return softmax(self.scores(state, float(settings["lambda"])) / TEMPERATURE)

    def decide(self, state: dict, settings: dict) -> np.ndarray:
        proba = self.proba(state, settings)
        out = np.zeros(proba.shape, dtype=bool)
        if len(proba):
            out[np.arange(len(proba)), proba.argmax(axis=1)] = True  # every text gets its best label
        if self.multi_label_ and settings.get("thresholds") is not None:
            out |= proba >= np.asarray(settings["thresholds"], dtype=np.float64)[None, :]
        return out

    def select(self, state: dict, y: np.ndarray, metric: str) -> dict:
        """λ (and, multi-label, thresholds) best on the labelled rows; ties go to the default λ, then the
        larger (more prior)."""
        y = np.asarray(y, dtype=bool)
        if not len(y):
            return {"lambda": _plain(self.default)}
        tried = []
        for lam in self.lambdas:
            settings: dict[str, Any] = {"lambda": _plain(lam)}
            if self.multi_label_:
                settings["thresholds"] = [float(t) for t in tune_thresholds(self.proba(state, settings), y)]
            tried.append((score(self.decide(state, settings), y, metric), settings))
        top = max(value for value, _ in tried)
        near = [settings for value, settings in tried if value >= top - 1e-9]
        return min(near, key=lambda s: (float(s["lambda"]) != self.default, -float(s["lambda"])))

    # ---- storing ----------------------------------------------------------------------------------------
    def keep(self, settings: dict) -> None:
        self.lambdas = (float(settings["lambda"]),)

    def to_files(self) -> MethodParts:
        return MethodParts({"multi_label": self.multi_label_, "labels": self.descriptions.labels,
                            "description_groups": [int(g) for g in self.descriptions.groups],
                            "counts": [float(c) for c in self.counts_], "lambdas": [_plain(x) for x in self.lambdas]},
                           {"description_vectors": np.asarray(self.descriptions.vectors, dtype=np.float32),
                            "centroids": np.asarray(self.centroids_, dtype=np.float32)})

    @classmethod
    def from_files(cls, parts: MethodParts, labels: list[str] | None = None) -> LabelPrior:
        settings, arrays = parts.settings, parts.arrays
        described = LabelDescriptions(arrays["description_vectors"],
                                      np.asarray(settings["description_groups"], dtype=np.int64),
                                      list(settings["labels"]))
        method = cls(described, tuple(float(x) for x in settings["lambdas"]))
        method.multi_label_ = bool(settings["multi_label"])
        method.counts_ = np.asarray(settings["counts"], dtype=np.float64)
        method.centroids_ = np.asarray(arrays["centroids"], dtype=np.float64)
        return method


def _make(context: MethodContext) -> LabelPrior:
    return LabelPrior(context.descriptions)


register(MethodSpec(
    name="prior", summary="label descriptions as a prior worth λ rows, blended with each label's centroid "
                          "(zero-shot at 0 rows, nearest centroid at many)",
    factory=_make, load=LabelPrior.from_files, rank=-10, uses_descriptions=True, min_rows=0, bench="index",
))
