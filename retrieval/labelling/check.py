"""`fewlabel check`: labelled rows whose label looks wrong, and duplicate texts with conflicting labels.

Each row is scored by a model that never saw it: the index's method is refitted on k-1 folds of the index
(stratified on every label) and gives the held-out fold its probabilities, with the settings the index stores
(they were chosen on every row, a small optimism about the settings, never about the row itself). Those
out-of-fold probabilities go to cleanlab's ``find_label_issues`` (confident learning); its flagged rows come
first, in its order (lowest self-confidence first), and the rest follow by the same score, so a caller who
wants the top k gets a full ranking."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from fewlabel.indexing.errors import InvalidArgumentError
from fewlabel.retrieval.labelling.model import FOLDABLE, knn_settings, method_name
from fewlabel.retrieval.methods.common import Views

__all__ = ["CHECK_COLUMNS", "CheckResult", "Conflict", "Suspect", "check_index", "conflicting_duplicates",
           "out_of_fold", "rank_issues"]

CHECK_COLUMNS = ("rank", "id", "text", "given", "suggested", "confidence", "quality", "flagged", "kind")
MIN_ROWS = 10


@dataclass
class Suspect:
    """A labelled row whose label looks wrong: ``given`` its labels, ``suggested`` what the out-of-fold model
    says, ``confidence`` that model's probability of its suggestion, ``quality`` cleanlab's label quality
    (the probability of the given label; lower is more suspect), ``flagged`` whether cleanlab flagged it."""

    rank: int
    id: str
    text: str
    given: list[str]
    suggested: list[str]
    confidence: float
    quality: float
    flagged: bool

    def as_dict(self) -> dict:
        return {"rank": self.rank, "id": self.id, "text": self.text, "given": self.given,
                "suggested": self.suggested, "confidence": self.confidence, "quality": self.quality,
                "flagged": self.flagged}


@dataclass
class Conflict:
    """One text held by several rows whose labels differ."""

    text: str
    ids: list[str]
    labels: list[list[str]]

    def as_dict(self) -> dict:
        return {"text": self.text, "ids": self.ids, "labels": self.labels}


@dataclass
class CheckResult:
    suspects: list[Suspect]  # cleanlab's flagged rows (all rows ranked when asked with ``everything``)
    conflicts: list[Conflict]
    method: str
    folds: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"method": self.method, "folds": self.folds, "notes": self.notes,
                "suspects": [s.as_dict() for s in self.suspects], "conflicts": [c.as_dict() for c in self.conflicts]}


def _folds(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    fold = np.zeros(len(y), dtype=np.int64)
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for f, (_, rows) in enumerate(splitter.split(np.zeros((len(y), 1)), y.astype(int))):
        fold[rows] = f
    return fold


def out_of_fold(name: str, settings: dict, views: Views, y: np.ndarray, multi_label: bool, *, folds: int = 5,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n, L), decisions (n, L)) of each row from the method ``name`` fitted on the other folds."""
    from fewlabel.retrieval.methods.auto import make_candidate
    from fewlabel.retrieval.methods.knn import KNNCandidate
    from fewlabel.retrieval.methods.registry import MethodContext

    fold = _folds(y, folds, seed)
    proba = np.zeros(y.shape, dtype=np.float64)
    chosen = np.zeros(y.shape, dtype=bool)
    for f in range(folds):
        held, fit = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        if not len(held):
            continue
        max_k = int(settings.get("k", 20)) if name == "knn" else 20
        candidate = make_candidate(name, MethodContext(max_k=max_k)).fit_views(views.take(fit), y[fit], multi_label)
        these = dict(settings)
        if name == "knn":
            assert isinstance(candidate, KNNCandidate)  # the "knn" factory makes one
            these["k"] = min(int(settings["k"]), candidate.max_k_)
            these["m"] = min(float(settings["m"]), these["k"])
        state = candidate.state(views.take(held))
        proba[held] = candidate.proba(state, these)
        chosen[held] = candidate.decide(state, these)
    return proba, chosen


def rank_issues(y: np.ndarray, proba: np.ndarray, multi_label: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(every row ranked most suspect first, flagged by cleanlab (bool per row), label quality per row)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    proba = np.clip(np.asarray(proba, dtype=np.float64), 1e-6, 1 - 1e-6)
    if multi_label:
        from cleanlab.multilabel_classification.rank import get_label_quality_scores as multilabel_quality

        labels = [list(np.flatnonzero(row)) for row in y]
        flagged_rows = find_label_issues(labels, proba, multi_label=True, return_indices_ranked_by="self_confidence")
        quality = multilabel_quality(labels, proba)
    else:
        proba = proba / proba.sum(axis=1, keepdims=True)
        labels = y.argmax(1)
        flagged_rows = find_label_issues(labels, proba, return_indices_ranked_by="self_confidence")
        quality = get_label_quality_scores(labels, proba, method="self_confidence")
    flagged = np.zeros(len(y), dtype=bool)
    flagged[flagged_rows] = True
    rest = [i for i in np.argsort(quality, kind="stable") if not flagged[i]]
    order = np.concatenate([np.asarray(flagged_rows, dtype=np.int64), np.asarray(rest, dtype=np.int64)])
    return order, flagged, np.asarray(quality, dtype=np.float64)


def conflicting_duplicates(rows) -> list[Conflict]:
    """Texts held by several rows with different label sets (exact string match)."""
    groups: dict[str, list] = defaultdict(list)
    for row in rows:
        groups[row.text].append(row)
    out = []
    for text, members in groups.items():
        if len({tuple(sorted(r.labels)) for r in members}) > 1:
            out.append(Conflict(text, [r.id for r in members], [sorted(r.labels) for r in members]))
    return out


def check_index(index, vectors: np.ndarray, *, folds: int = 5, seed: int = 0, everything: bool = False) -> CheckResult:
    """Suspected label errors of ``index`` (``vectors``: its rows' vectors) and its conflicting duplicates.
    ``everything``: every row in the ranking, not only cleanlab's flagged ones."""
    rows = list(index.rows)
    notes: list[str] = []
    conflicts = conflicting_duplicates(rows)
    if len(rows) < MIN_ROWS:
        raise InvalidArgumentError(
            f"check needs at least {MIN_ROWS} labelled rows to refit the method on folds; the index "
                            f"holds {len(rows)}")
    y = index.label_matrix()
    name = method_name(index)
    settings = dict((index.method or {}).get("settings") or {})
    if name not in FOLDABLE:
        notes.append(f"the index's method is {name} (a trained model): refitting it per fold would train it {folds} "
                     "times, so the folds use the linear head on the same vectors")
        name, settings = "linear", {"C": 1.0}
    if name == "knn":
        settings = knn_settings(index)
    n_folds = max(2, min(int(folds), len(rows) // 5))
    if n_folds != folds:
        notes.append(f"{n_folds} folds for {len(rows)} rows")
    views = Views(np.asarray(vectors, dtype=np.float32), [r.text for r in rows])
    proba, chosen = out_of_fold(name, settings, views, y, index.multi_label, folds=n_folds, seed=seed)
    order, flagged, quality = rank_issues(y, proba, index.multi_label)
    labels = list(index.label_names)
    suspects = []
    for rank, i in enumerate(order if everything else order[flagged[order]], start=1):
        suggested = [labels[j] for j in np.flatnonzero(chosen[i])] or [labels[int(proba[i].argmax())]]
        confidence = float(min(proba[i, labels.index(s)] for s in suggested))
        suspects.append(Suspect(rank, rows[i].id, rows[i].text, sorted(rows[i].labels), suggested,
                                round(confidence, 4), round(float(quality[i]), 4), bool(flagged[i])))
    return CheckResult(suspects, conflicts, name, n_folds, notes)
