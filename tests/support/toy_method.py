"""A toy labelling method, written the way a new method is added to fewlabel: this one file, whose last lines
register it. Nearest centroid on the embeddings (a label's score is the cosine to the mean of its rows), with
nothing tuned, and its centroids stored as plain arrays."""

from __future__ import annotations

import numpy as np

from fewlabel.retrieval.methods.common import Views, decide, softmax
from fewlabel.retrieval.methods.registry import LabellingMethod, MethodParts, MethodSpec, register

NAME = "toycentroid"


class ToyCentroid(LabellingMethod):
    name = NAME

    def fit_views(self, views: Views, y: np.ndarray, multi_label: bool) -> ToyCentroid:
        y = np.asarray(y, dtype=bool)
        self.multi_label_ = bool(multi_label)
        sums = y.T.astype(np.float64) @ np.asarray(views.vectors, dtype=np.float64)
        self.centroids_ = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        return self

    def state(self, views: Views) -> dict[str, np.ndarray]:
        return {"proba": softmax(10.0 * np.asarray(views.vectors, dtype=np.float64) @ self.centroids_.T)}

    def select(self, state: dict[str, np.ndarray], y: np.ndarray, metric: str) -> dict:
        return {}

    def proba(self, state: dict[str, np.ndarray], settings: dict) -> np.ndarray:
        return state["proba"]

    def decide(self, state: dict[str, np.ndarray], settings: dict) -> np.ndarray:
        return decide(state["proba"], self.multi_label_, None)

    def to_files(self) -> MethodParts:
        return MethodParts({"multi_label": self.multi_label_}, {"centroids": self.centroids_})

    @classmethod
    def from_files(cls, parts: MethodParts, labels: list[str]) -> ToyCentroid:
        method = cls()
        method.multi_label_ = bool(parts.settings["multi_label"])
        method.centroids_ = parts.arrays["centroids"]
        return method


SPEC = register(MethodSpec(name=NAME, summary="toy nearest centroid (a test's method)", rank=5,
                           factory=lambda context: ToyCentroid(), load=ToyCentroid.from_files))
