"""Few-shot relations by nearest neighbours over entity-marked sentence embeddings, and N-way K-shot episodes.

A relation row is rendered with entity markers (:mod:`fewlabel.indexing.relation.render`, ``typed`` by default) and
the marked sentence is embedded by the mean-pooled :class:`~fewlabel.indexing.Encoder`. :class:`RelationKNN` then
labels a query from the K labelled examples per class it was given:

- ``method="knn"``: the ``k`` most similar examples vote, each with its cosine similarity; probabilities are
  the softmax over classes of (summed votes / temperature);
- ``method="prototype"``: each class is the normalised mean of its examples (a prototypical network without
  training), and a query's probabilities are the softmax of its cosine to each prototype / temperature.

Both are plain numpy over unit vectors, so an episode costs one matrix product. :func:`sample_episodes` draws
N-way K-shot episodes (N classes, K support and Q query rows each, disjoint), and :func:`run_episodes` reports
the mean accuracy over episodes with a 95% interval. Encoding happens once for all rows; episodes only index
into the matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fewlabel.indexing.errors import DataError, InvalidArgumentError
from fewlabel.indexing.relation.data import RelationRow
from fewlabel.indexing.relation.render import render_rows

__all__ = ["Episode", "RelationKNN", "embed_relations", "relation_texts", "run_episodes", "sample_episodes"]

METHODS = ("knn", "prototype")


def relation_texts(rows: Sequence[RelationRow], marker: str = "typed", type_language: str = "auto") -> list[str]:
    """The entity-marked sentences that are embedded (the baseline rendering carries no markers: refused)."""
    if marker == "baseline":
        raise InvalidArgumentError("few-shot relations embed entity-marked sentences: use --marker typed or entity")
    return [r.text for r in render_rows(rows, marker, type_language=type_language)]


def embed_relations(encoder, rows: Sequence[RelationRow], *, marker: str = "typed", type_language: str = "auto",
                    batch_size: int = 32, cache=None, show_progress: bool = False) -> np.ndarray:
    """Unit vectors (n, dim) of the marked sentences, through the embedding cache when one is given."""
    from fewlabel.indexing.encoders.cache import encode_with_cache

    return encode_with_cache(encoder, relation_texts(rows, marker, type_language), cache, batch_size=batch_size,
                             show_progress_bar=show_progress)


class RelationKNN:
    """Label relations from a few examples per class (scikit-learn style: settings in ``__init__``, ``fit``
    returns self, learned state ends in ``_``).

    ``k`` neighbours vote (``method="knn"``) or classes are compared by prototype (``method="prototype"``);
    ``temperature`` scales the softmax that turns votes or cosines into probabilities."""

    def __init__(self, k: int = 5, method: str = "knn", temperature: float = 0.05) -> None:
        self.k = k
        self.method = method
        self.temperature = temperature

    def fit(self, X, y: Sequence[str], labels: Sequence[str] | None = None) -> RelationKNN:
        """Store the support vectors X (unit rows) and their labels y. ``labels`` fixes the class order of
        ``predict_proba`` (e.g. the 30 KLUE relations); classes without examples get probability 0."""
        if self.method not in METHODS:
            raise InvalidArgumentError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise InvalidArgumentError(f"k must be an integer >= 1, got {self.k!r}")
        if not self.temperature > 0:
            raise InvalidArgumentError(f"temperature must be > 0, got {self.temperature!r}")
        X = _unit_rows(X, "X")
        y = list(y)
        if len(y) != X.shape[0]:
            raise DataError(f"X has {X.shape[0]} rows but y has {len(y)} labels")
        if not y:
            raise DataError("no support examples")
        classes = list(labels) if labels is not None else sorted(set(y))
        index = {c: i for i, c in enumerate(classes)}
        unknown = next((c for c in y if c not in index), None)
        if unknown is not None:
            raise DataError(f"support label '{unknown}' is not in the label list")
        self.classes_ = classes
        self.X_ = X
        self.y_ = np.asarray([index[c] for c in y], dtype=np.int64)
        present = np.zeros(len(classes), dtype=bool)
        present[self.y_] = True
        self.present_ = present
        if self.method == "prototype":
            protos = np.zeros((len(classes), X.shape[1]), dtype=np.float32)
            np.add.at(protos, self.y_, X)
            norms = np.linalg.norm(protos, axis=1, keepdims=True)
            self.prototypes_ = np.where(norms > 0, protos / np.where(norms > 0, norms, 1), 0)
        return self

    def scores(self, X) -> np.ndarray:
        """(n, n_classes) class scores before the softmax: summed neighbour cosines, or cosine to each
        prototype; -inf for classes without examples."""
        if not hasattr(self, "X_"):
            raise InvalidArgumentError("this RelationKNN is not fitted yet: call fit()")
        Q = _unit_rows(X, "X", dim=self.X_.shape[1])
        out = np.full((Q.shape[0], len(self.classes_)), -np.inf)
        if self.method == "prototype":
            sims = Q @ self.prototypes_.T
            out[:, self.present_] = sims[:, self.present_]
            return out
        sims = Q @ self.X_.T
        k = min(self.k, self.X_.shape[0])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        votes = np.zeros((Q.shape[0], len(self.classes_)))
        rows = np.repeat(np.arange(Q.shape[0]), k)
        np.add.at(votes, (rows, self.y_[top].ravel()), np.take_along_axis(sims, top, axis=1).ravel())
        out[:, self.present_] = votes[:, self.present_]
        return out

    def predict_proba(self, X) -> np.ndarray:
        """Softmax over classes of scores / temperature (classes without examples: 0); rows sum to 1."""
        z = self.scores(X) / self.temperature
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X) -> list[str]:
        return [self.classes_[i] for i in self.predict_proba(X).argmax(axis=1)]


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot task: row indices of the support and query sets and the classes drawn."""

    classes: tuple[str, ...]
    support: tuple[int, ...]
    query: tuple[int, ...]


def sample_episodes(labels: Sequence[str], *, n_way: int, k_shot: int, n_query: int = 5, episodes: int = 100,
                    seed: int = 0, exclude: Sequence[str] = ()) -> list[Episode]:
    """Draw ``episodes`` N-way K-shot tasks from rows with these labels. Classes need ``k_shot + n_query`` rows
    to be drawn; ``exclude`` leaves classes out (e.g. no_relation, whose rows share no relation)."""
    if min(n_way, k_shot, n_query, episodes) < 1:
        raise InvalidArgumentError("n_way, k_shot, n_query and episodes must all be >= 1")
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        if label not in exclude:
            by_class.setdefault(label, []).append(i)
    eligible = sorted(c for c, idx in by_class.items() if len(idx) >= k_shot + n_query)
    if len(eligible) < n_way:
        raise DataError(f"{n_way}-way {k_shot}-shot episodes with {n_query} queries per class need {n_way} classes "
                        f"with at least {k_shot + n_query} rows; only {len(eligible)} have that many")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(episodes):
        classes = [eligible[i] for i in sorted(rng.choice(len(eligible), size=n_way, replace=False))]
        support, query = [], []
        for c in classes:
            drawn = rng.choice(by_class[c], size=k_shot + n_query, replace=False)
            support += [int(i) for i in drawn[:k_shot]]
            query += [int(i) for i in drawn[k_shot:]]
        out.append(Episode(tuple(classes), tuple(support), tuple(query)))
    return out


def run_episodes(vectors: np.ndarray, labels: Sequence[str], episodes: Sequence[Episode], *, k: int = 5,
                 method: str = "knn", temperature: float = 0.05) -> dict:
    """Mean accuracy over episodes with a 95% normal interval (1.96 standard errors)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    labels = list(labels)
    accuracies = []
    for ep in episodes:
        model = RelationKNN(k=k, method=method, temperature=temperature)
        model.fit(vectors[list(ep.support)], [labels[i] for i in ep.support], labels=list(ep.classes))
        predicted = model.predict(vectors[list(ep.query)])
        accuracies.append(float(np.mean([p == labels[i] for p, i in zip(predicted, ep.query, strict=True)])))
    acc = np.asarray(accuracies)
    half = 1.96 * acc.std(ddof=1) / np.sqrt(len(acc)) if len(acc) > 1 else 0.0
    return {"accuracy": float(acc.mean()) if len(acc) else 0.0, "ci95": float(half), "episodes": len(acc),
            "method": method, "k": k}


def _unit_rows(X, what: str, dim: int | None = None) -> np.ndarray:
    arr = np.asarray(X, dtype=np.float32)
    if arr.ndim != 2:
        raise DataError(f"{what} must be a 2-D (n, dim) array, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise DataError(f"{what} has dimension {arr.shape[1]} but the support vectors have {dim}")
    if arr.size and not np.isfinite(arr).all():
        raise DataError(f"{what} holds NaN or infinite values")
    norms = np.linalg.norm(arr, axis=1)
    if arr.shape[0] and (np.abs(norms - 1) > 1e-2).any():
        raise DataError(f"{what} rows must be L2-normalised (cosine = inner product)")
    return arr
