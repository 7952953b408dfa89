"""The kNN vote as a candidate of `auto`: the same search, vote and (k, m) tuning as the index's own
(`fewlabel.retrieval.knn`), over the rows a fold or the training file gives. It stores nothing of its own: when
it wins, the index keeps its vectors and the tuned k and m in ``meta.json["tuning"]``, as it always has."""

from __future__ import annotations

import numpy as np

from fewlabel.retrieval.knn.saved_index import DEFAULT_MAX_K
from fewlabel.retrieval.knn.tuning import tune_k_m
from fewlabel.retrieval.knn.voting import (
    multi_label_predict,
    neighbour_label_tensor,
    single_label_predict,
    vote_counts,
    vote_fractions,
)
from fewlabel.retrieval.methods.common import Views
from fewlabel.retrieval.methods.registry import LabellingMethod, MethodParts, MethodSpec, register

__all__ = ["KNNCandidate"]


class KNNCandidate(LabellingMethod):
    """Neighbours searched once at ``max_k``; k in 1..max_k and m in 1..k chosen on tuning rows."""

    name = "knn"

    def __init__(self, max_k: int = DEFAULT_MAX_K) -> None:
        self.max_k = max_k

    def fit_views(self, views: Views, y: np.ndarray, multi_label: bool) -> KNNCandidate:
        from fewlabel.indexing.store.faiss_factory import build_faiss_index

        self.multi_label_ = bool(multi_label)
        self.y_ = np.asarray(y, dtype=bool)
        self.max_k_ = max(1, min(int(self.max_k), len(views)))
        self.index_ = build_faiss_index(np.ascontiguousarray(views.vectors, dtype=np.float32), quiet=True)
        return self

    def state(self, views: Views) -> dict[str, np.ndarray]:
        sims, ids = self.index_.search(np.ascontiguousarray(views.vectors, dtype=np.float32), self.max_k_)
        return {"neigh": neighbour_label_tensor(self.y_, ids), "sims": sims}

    def select(self, state: dict, y: np.ndarray, metric: str) -> dict:
        result = tune_k_m(state["neigh"], state["sims"], y, max_k=self.max_k_, metric=metric,
                          multi_label=self.multi_label_)
        self.last_result_ = result  # the whole grid, for the index's meta.json
        return {"k": result.k, "m": result.m}

    def decide(self, state: dict, settings: dict) -> np.ndarray:
        k, m = settings["k"], settings["m"]
        counts = vote_counts(state["neigh"], state["sims"], k, False)
        if self.multi_label_:
            return multi_label_predict(counts, m)
        choice = single_label_predict(counts, state["sims"][:, :k], state["neigh"][:, :k], m)
        out = np.zeros(counts.shape, dtype=bool)
        rows = np.flatnonzero(choice >= 0)
        out[rows, choice[rows]] = True
        return out

    def proba(self, state: dict, settings: dict) -> np.ndarray:
        return vote_fractions(vote_counts(state["neigh"], state["sims"], settings["k"], False), settings["k"])

    def to_files(self) -> MethodParts:
        """Nothing: the index's own vectors and ``meta.json["tuning"]`` (k, m) are kNN's whole state."""
        return MethodParts(settings={})


register(MethodSpec(
    name="knn", summary="the neighbour vote, k and m tuned", rank=0, bench="own",
    factory=lambda context: KNNCandidate(context.max_k),
))
