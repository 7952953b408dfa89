"""The index's method as a probability model over texts: what `suggest` measures uncertainty with and what
`check` refits fold by fold. Uses the method contract as it is (``make_candidate(name)`` and a candidate's
``fit_views / state / select / proba / decide``; ``load_method`` for the stored one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fewlabel.retrieval.methods.common import Views

__all__ = ["IndexModel", "index_model", "method_name"]

FOLDABLE = ("knn", "linear", "nb", "ensemble")  # refitted per fold by `check`; trained heads fall back to linear


def method_name(index) -> str:
    return str((index.method or {}).get("name") or "knn")


class FittedCandidate(Protocol):
    """What :class:`IndexModel` uses of its candidate: a fitted LabellingMethod, or :class:`_Reordered`."""

    def state(self, views: Views) -> dict[str, np.ndarray]: ...

    def proba(self, state: dict[str, np.ndarray], settings: dict[str, Any]) -> np.ndarray: ...

    def decide(self, state: dict[str, np.ndarray], settings: dict[str, Any]) -> np.ndarray: ...


@dataclass
class IndexModel:
    """A fitted candidate with its settings, and the label columns of its probabilities."""

    name: str
    candidate: FittedCandidate
    settings: dict
    labels: list[str]
    multi_label: bool

    def proba(self, views: Views, chunk: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (n, L), decided (n, L) bool) in the index's label order, in chunks (bounded memory)."""
        probs, picks = [], []
        for start in range(0, len(views), chunk):
            state = self.candidate.state(views.take(np.arange(start, min(len(views), start + chunk))))
            probs.append(np.asarray(self.candidate.proba(state, self.settings), dtype=np.float64))
            picks.append(np.asarray(self.candidate.decide(state, self.settings), dtype=bool))
        if not probs:
            n = len(self.labels)
            return np.zeros((0, n)), np.zeros((0, n), dtype=bool)
        return np.concatenate(probs), np.concatenate(picks)

    @property
    def thresholds(self) -> np.ndarray | None:
        found = self.settings.get("thresholds")
        return None if found is None else np.asarray(found, dtype=np.float64)


def knn_settings(index) -> dict:
    from fewlabel.retrieval.knn.saved_index import resolve_k_m

    k, m = resolve_k_m(index)
    return {"k": int(k), "m": m}


def index_model(index, vectors: np.ndarray) -> IndexModel:
    """The method the index labels with: its stored files (linear, nb, ensemble, setfit, finetune) or, for the
    kNN vote, a :class:`KNNCandidate` over the index's own vectors with its tuned k and m."""
    from fewlabel.retrieval.methods.knn import KNNCandidate
    from fewlabel.retrieval.methods.store import load_method

    stored = load_method(index)
    if stored is not None:
        order = [stored.labels.index(name) for name in index.label_names]
        return IndexModel(stored.name, _Reordered(stored.candidate, order), stored.settings, list(index.label_names),
                          index.multi_label)
    settings = knn_settings(index)
    views = Views(np.asarray(vectors, dtype=np.float32), [r.text for r in index.rows])
    candidate = KNNCandidate(settings["k"]).fit_views(views, index.label_matrix(), index.multi_label)
    return IndexModel("knn", candidate, settings, list(index.label_names), index.multi_label)


class _Reordered:
    """A stored candidate whose label columns come in the index's order (they are the same list in practice)."""

    def __init__(self, candidate, order: list[int]) -> None:
        self.candidate, self.order = candidate, order

    def state(self, views: Views) -> dict:
        return self.candidate.state(views)

    def proba(self, state: dict, settings: dict) -> np.ndarray:
        return np.asarray(self.candidate.proba(state, settings))[:, self.order]

    def decide(self, state: dict, settings: dict) -> np.ndarray:
        return np.asarray(self.candidate.decide(state, settings))[:, self.order]
