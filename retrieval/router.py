"""`Predictor`: kNN over a label index, with the zero-shot fallback (the design card's "NLI zero-shot
fallback"), and every prediction saying which route produced it.

The routes, decided per query:

1. **no index** (``index=None``, or no label in the index has ``min_examples`` examples): pure zero-shot over
   the declared labels. Route ``zeroshot-nli`` / ``zeroshot-embed``, reason ``no-index``.
2. **far**: the best neighbour's cosine similarity is under ``similarity_threshold`` (tuned on validation data
   by :meth:`Predictor.tune`; None = never): zero-shot over all labels, reason ``far``.
3. **no vote**: the kNN vote gives no label (no label reaches m votes): zero-shot over all labels, reason
   ``no-vote``.
4. **neighbours**: the kNN labels, route ``knn``, reason ``neighbours``. The kNN votes only on *covered*
   labels, those with at least ``min_examples`` examples in the index. *Weak* labels (declared with
   ``labels=…`` but with fewer examples, or none) are scored by the zero-shot instead: multi-label, a weak
   label the zero-shot gives (score >= ``weak_threshold``, or by its own rule when that is None) is added to
   the kNN labels (route ``knn+zeroshot-…``, reason ``weak-label``); single-label, when the zero-shot's best
   label over all labels is weak (and scores >= ``weak_threshold``), it replaces the kNN label (route
   ``zeroshot-…``, reason ``weak-label``).

Without a zero-shot scorer the Predictor is plain kNN (every label the index knows votes, route ``knn``).

**The index's method.** When the index stores a method other than the kNN vote (``index build --method``,
chosen by `auto` or named; see `fewlabel.retrieval.methods`), step 4 uses it instead of the vote: its
per-label probabilities are the scores, its decisions the labels, and the route is its name (``linear``,
``nb``, ``ensemble``). The neighbour search still runs, for ``top_similarity`` (the "far" rule) and the
neighbours of ``explain``. Explicit ``k``/``m`` mean the kNN vote.

``tune(valid_rows)`` searches ``similarity_threshold`` (quantiles of the validation queries' best-neighbour
similarity, plus "never") and, when there are weak labels, ``weak_threshold`` (quantiles of their zero-shot
scores, plus the zero-shot's own rule), maximising the macro-F1 (or micro) of the combined output on the
validation rows. ``settings()`` is a JSON-ready dict that can go into the index's ``meta.json``
(``index.extra["fallback"]``); :func:`predictor_kwargs` turns it back into constructor arguments.

Scores in a prediction: kNN vote fractions for covered labels on the ``knn`` route, zero-shot scores for
weak labels and on the zero-shot routes; ``route`` says which."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fewlabel.indexing.encoders.cache import EmbeddingCache
from fewlabel.indexing.errors import InvalidArgumentError
from fewlabel.indexing.readers import Row, label_matrix
from fewlabel.indexing.store.label_index import IndexEncoder, LabelIndex
from fewlabel.retrieval.knn.estimator import KNNLabeler
from fewlabel.retrieval.knn.saved_index import resolve_k_m
from fewlabel.retrieval.knn.tuning import f1_from_counts
from fewlabel.retrieval.methods.store import StoredMethod, load_method
from fewlabel.retrieval.outputs import ROUTE_KNN, Prediction
from fewlabel.retrieval.zeroshot.labels import LabelSet, parse_labels
from fewlabel.retrieval.zeroshot.scorers import EmbeddingZeroShot

__all__ = ["DEFAULT_MIN_EXAMPLES", "REASONS", "ROUTE_KNN", "Predictor", "combine_routes", "predict_rows",
           "predictor_kwargs", "summarise_routes"]

DEFAULT_MIN_EXAMPLES = 5
NEIGHBOURS, FAR, NO_VOTE, NO_INDEX, WEAK = range(5)
REASONS = ("neighbours", "far", "no-vote", "no-index", "weak-label")
SETTINGS_VERSION = 1
_SCORE_TOL = 1e-12


def combine_routes(knn_pred: np.ndarray, top_sim: np.ndarray, zs_scores: np.ndarray, zs_pred: np.ndarray,
                   weak: np.ndarray, *, multi_label: bool, has_knn: bool, similarity_threshold: float | None,
                   weak_threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The routing rules on arrays (all (n, L) over the Predictor's labels, ``weak`` (L,) bool): returns the
    chosen labels (n, L) bool and a reason code per query (index into ``REASONS``). Zero-shot arrays are only
    read where a query needs them, so they may hold NaN elsewhere."""
    n = knn_pred.shape[0]
    reason = np.full(n, NEIGHBOURS, dtype=np.int64)
    if not has_knn:
        reason[:] = NO_INDEX
    else:
        if similarity_threshold is not None:
            reason[np.asarray(top_sim) < similarity_threshold] = FAR
        reason[(reason == NEIGHBOURS) & ~knn_pred.any(axis=1)] = NO_VOTE
    labels = np.where((reason != NEIGHBOURS)[:, None], zs_pred, knn_pred)
    near = reason == NEIGHBOURS
    if weak.any() and near.any():
        if multi_label:
            given = zs_pred if weak_threshold is None else np.nan_to_num(zs_scores, nan=-np.inf) >= weak_threshold
            add = given & weak[None, :] & near[:, None]
            labels = labels | add
            reason[add.any(axis=1)] = WEAK
        else:
            scores = np.nan_to_num(zs_scores, nan=-np.inf)
            top = scores.argmax(axis=1)
            top_score = scores[np.arange(n), top]
            ok = zs_pred[np.arange(n), top] if weak_threshold is None else top_score >= weak_threshold
            switch = near & weak[top] & ok
            labels[switch] = False
            labels[np.flatnonzero(switch), top[switch]] = True
            reason[switch] = WEAK
    return labels, reason


class Predictor:
    """kNN over ``index`` with a zero-shot fallback (see the module docstring).

        zs = NLIZeroShot("my-nli", multi_label=index.multi_label)       # or EmbeddingZeroShot(encoder)
        predictor = Predictor(index, encoder, zs, labels=["joy", "fear", "anger"]).tune(valid_rows)
        predictor.predict(rows)            # Prediction(…, route="knn" | "zeroshot-nli" | …)
        index.extra["fallback"] = predictor.settings(); index.save(folder)

    ``labels`` declares the labels wanted (names or ``{label: [aliases]}``, the same forms as the zero-shot
    scorers take; default: the zero-shot scorer's ``labels``); labels the index knows are added. ``index=None``
    is pure zero-shot over ``labels``; ``encoder=None`` loads the encoder the index names. The short path:

        Predictor.load("my-index").predict(["a new text"])   # plain kNN, the index's own encoder"""

    @classmethod
    def load(cls, folder: str | Path, encoder: IndexEncoder | None = None, zero_shot=None, **kwargs) -> Predictor:
        """A Predictor over the index saved in ``folder``; its stored fallback settings apply when a zero-shot
        scorer is given."""
        index = LabelIndex.load(folder, encoder)
        if zero_shot is not None:
            kwargs = {**predictor_kwargs(index.extra.get("fallback")), **kwargs}
        return cls(index, encoder, zero_shot, **kwargs)

    def __init__(self, index: LabelIndex | None, encoder: IndexEncoder | None = None, zero_shot=None, *,
                 labels=None, min_examples: int = DEFAULT_MIN_EXAMPLES, similarity_threshold: float | None = None,
                 weak_threshold: float | None = None, k: int | None = None, m: float | None = None,
                 cache: EmbeddingCache | None = None, batch_size: int = 32, show_progress: bool = False,
                 method: StoredMethod | None = None, use_fallback: bool = True) -> None:
        if isinstance(min_examples, bool) or not isinstance(min_examples, int) or min_examples < 1:
            raise InvalidArgumentError(f"min_examples must be an integer >= 1, got {min_examples!r}")
        if index is None and zero_shot is None:
            raise InvalidArgumentError("a Predictor needs an index, a zero-shot scorer, or both")
        if index is not None and encoder is None:
            encoder = index.load_encoder()  # the one meta.json names (and checked against it)
        self.index, self.encoder, self.zero_shot = index, encoder, zero_shot
        # False when tuning found the index alone better than any fallback setting: predict() is then plain kNN
        self.use_fallback = bool(use_fallback) or zero_shot is None
        self._given_k_m = (k, m)
        self._plain: Predictor | None = None
        self.min_examples = min_examples
        self.similarity_threshold = None if similarity_threshold is None else float(similarity_threshold)
        self.weak_threshold = None if weak_threshold is None else float(weak_threshold)
        self.cache, self.batch_size, self.show_progress = cache, batch_size, show_progress
        self.tuning_: dict | None = None

        declared = parse_labels(labels) if labels is not None else None
        index_names = list(index.label_names) if index is not None else []
        if declared is None and zero_shot is not None:
            declared = zero_shot.labels  # the zero-shot scorer's own candidate labels, when it has some
        if declared is None and not index_names:
            raise InvalidArgumentError("the label list is empty: pure zero-shot (no index) needs the candidate labels")
        names = list(declared.names) if declared is not None else []
        names += [name for name in index_names if name not in names]
        aliases = {n: (declared.aliases[n] if declared is not None and n in declared.aliases else (n,)) for n in names}
        self.labels_ = LabelSet(tuple(names), aliases)
        self.label_names_ = list(names)

        counts = dict.fromkeys(names, 0)
        if index is not None:
            for name, count in zip(index.label_names, index.label_matrix().sum(axis=0), strict=True):
                counts[name] = int(count)
        self.label_counts_ = counts
        # the index's own method labels unless k or m were given (they ask for the vote)
        # (``method``: the one a caller already loaded from ``index``, e.g. to refuse a bad one before the encoder)
        if index is None or k is not None or m is not None:
            self.method_ = None
        else:
            self.method_ = method if method is not None else load_method(index)
        # a method that reads label descriptions (zeroshot, prior) covers every label it was fitted with, rows or not
        described = set(self.method_.labels) if self.method_ is not None and self.method_.uses_descriptions else set()
        if zero_shot is None:
            covered = [n for n in names if counts[n] > 0 or n in described]
        else:
            covered = [n for n in names if counts[n] >= min_examples or n in described]
        self.covered_labels_ = covered
        self.weak_labels_ = [n for n in names if n not in covered] if zero_shot is not None else []
        if zero_shot is None and len(covered) < len(names):
            missing = [n for n in names if n not in covered]
            raise InvalidArgumentError(f"label(s) {', '.join(missing)} have no examples in the index and there is no "
                                "zero-shot fallback to score them")

        self.multi_label = bool(index.multi_label) if index is not None else bool(zero_shot.multi_label)
        if zero_shot is not None and bool(zero_shot.multi_label) != self.multi_label:
            mode = "multi-label" if self.multi_label else "single-label"
            raise InvalidArgumentError(f"the index is {mode} but the zero-shot scorer is not: create it with "
                                f"multi_label={self.multi_label}")
        self.k: int | None
        self.m: float | None
        if index is not None:
            self.k, self.m = resolve_k_m(index, k, m)
        else:
            self.k, self.m = None, None

    # ---- routing ------------------------------------------------------------------------------------------
    @property
    def has_knn(self) -> bool:
        return self.index is not None and bool(self.covered_labels_)

    @property
    def route(self) -> str:
        return self.zero_shot.route if self.zero_shot is not None else ROUTE_KNN

    @property
    def labelling_route(self) -> str:
        """The route of labels from the index: ``knn``, or the stored method's name."""
        return self.method_.name if self.method_ is not None else ROUTE_KNN

    def _labeler(self, names: Sequence[str]) -> KNNLabeler:
        """A kNN labeler over the index's vectors that votes on ``names`` only (nothing is re-added)."""
        assert self.index is not None and self.k is not None and self.m is not None  # set together with the index
        column = {name: j for j, name in enumerate(self.index.label_names)}
        matrix = self.index.label_matrix()[:, [column[name] for name in names]]
        return KNNLabeler.from_index(self.index.store, matrix, list(names), k=self.k, m=self.m,
                                     multi_label=self.multi_label)

    def _knn(self, texts: list[str]) -> dict:
        """One neighbour search: kNN labels and vote fractions over the Predictor's labels (covered columns
        only), the best similarity, and the neighbours (for explain)."""
        n, n_labels = len(texts), len(self.label_names_)
        out: dict[str, Any] = {"pred": np.zeros((n, n_labels), dtype=bool), "fractions": np.zeros((n, n_labels)),
               "top_sim": np.full(n, np.nan), "sims": None, "ids": None, "vectors": None}
        if self.index is None or not n:
            return out
        assert self.encoder is not None and self.k is not None  # load and __init__ give an index its encoder, k, m
        vectors = self.index.encode_queries(self.encoder, texts, cache=self.cache, batch_size=self.batch_size,
                                            show_progress=self.show_progress)
        if self.covered_labels_ and self.method_ is not None:
            sims, ids = self.index.search(vectors, self.k)  # evidence and top_similarity, whatever labels
            proba, chosen = self.method_.predict(vectors, texts)
            column = {name: j for j, name in enumerate(self.method_.labels)}
            for name in self.covered_labels_:
                if name in column:  # a label added to the index after the method was fitted has no column
                    out["pred"][:, self.label_names_.index(name)] = chosen[:, column[name]]
                    out["fractions"][:, self.label_names_.index(name)] = proba[:, column[name]]
            unseen = [name for name in self.covered_labels_ if name not in column]
            if unseen:
                self._vote_unseen(out, vectors, unseen)
        elif self.covered_labels_:
            votes = self._labeler(self.covered_labels_).vote(vectors)
            sims, ids = votes.similarities, votes.ids
            where = [self.label_names_.index(name) for name in self.covered_labels_]
            out["pred"][:, where] = votes.chosen
            out["fractions"][:, where] = votes.fractions
        else:
            sims, ids = self.index.search(vectors, self.k)
        out.update(vectors=vectors, sims=sims, ids=ids, top_sim=np.where(ids[:, 0] >= 0, sims[:, 0], np.nan))
        return out

    def _vote_unseen(self, out: dict, vectors: np.ndarray, unseen: list[str]) -> None:
        """Labels added to the index after its method was fitted (live examples, rows added without a refit)
        are never lost: the kNN vote over all the index's labels decides them. Multi-label: they join the
        method's labels where the vote chooses them. Single-label: where the vote's winner is such a label, it
        replaces the method's answer (the method cannot know it)."""
        votes = self._labeler(self.covered_labels_).vote(vectors)
        where = {name: self.label_names_.index(name) for name in self.covered_labels_}
        for name in unseen:
            j = self.covered_labels_.index(name)
            out["fractions"][:, where[name]] = votes.fractions[:, j]
            if self.multi_label:
                out["pred"][:, where[name]] = votes.chosen[:, j]
        if not self.multi_label:
            unseen_columns = [self.covered_labels_.index(name) for name in unseen]
            for i in np.flatnonzero(votes.chosen[:, unseen_columns].any(axis=1)):
                winner = self.covered_labels_[int(votes.chosen[i].argmax())]
                out["pred"][i] = False
                out["pred"][i, where[winner]] = True

    def _needs_zero_shot(self, knn: dict) -> np.ndarray:
        n = len(knn["top_sim"])
        if self.zero_shot is None:
            return np.zeros(n, dtype=bool)
        if not self.has_knn or self.weak_labels_:
            return np.ones(n, dtype=bool)
        need = ~knn["pred"].any(axis=1)
        if self.similarity_threshold is not None:
            need |= knn["top_sim"] < self.similarity_threshold
        return need

    def _zero_shot_scores(self, texts: list[str], rows: np.ndarray, vectors: np.ndarray | None) -> np.ndarray:
        """(n, L) zero-shot scores for the queries in ``rows`` (NaN elsewhere)."""
        scores = np.full((len(texts), len(self.label_names_)), np.nan)
        if self.zero_shot is None or not rows.any():
            return scores
        chosen = [texts[i] for i in np.flatnonzero(rows)]
        if isinstance(self.zero_shot, EmbeddingZeroShot) and vectors is not None and self._same_encoder():
            scores[rows] = self.zero_shot.scores(chosen, self.labels_, vectors=vectors[rows])
        else:
            scores[rows] = self.zero_shot.scores(chosen, self.labels_)
        return scores

    def _same_encoder(self) -> bool:
        if self.encoder is None:
            return False
        try:
            return self.zero_shot.encoder.describe(normalize=True) == self.encoder.describe(normalize=True)
        except AttributeError:
            return False

    def _zero_shot_pred(self, scores: np.ndarray) -> np.ndarray:
        pred = np.zeros(scores.shape, dtype=bool)
        done = ~np.isnan(scores).any(axis=1)
        if self.zero_shot is not None and done.any():
            pred[done] = self.zero_shot.select(scores[done])
        return pred

    def _route(self, texts: list[str]) -> dict:
        knn = self._knn(texts)
        need = self._needs_zero_shot(knn)
        zs_scores = self._zero_shot_scores(texts, need, knn["vectors"])
        zs_pred = self._zero_shot_pred(zs_scores)
        weak = np.array([n in self.weak_labels_ for n in self.label_names_], dtype=bool)
        return {**knn, "zs_scores": zs_scores, "zs_pred": zs_pred, "weak": weak}

    def _combine(self, state: dict, similarity_threshold: float | None, weak_threshold: float | None):
        if self.zero_shot is None:  # plain kNN: nothing to fall back on, so no query is routed away
            pred = state["pred"]
            return pred, np.where(pred.any(axis=1), NEIGHBOURS, NO_VOTE)
        return combine_routes(state["pred"], state["top_sim"], state["zs_scores"], state["zs_pred"], state["weak"],
                              multi_label=self.multi_label, has_knn=self.has_knn,
                              similarity_threshold=similarity_threshold, weak_threshold=weak_threshold)

    # ---- public API ---------------------------------------------------------------------------------------
    def predict(self, rows: Sequence[Row] | Sequence[str], *, explain: bool = False) -> list[Prediction]:
        """One :class:`Prediction` per row (or text), in order."""
        if not self.use_fallback:
            return self._without_fallback().predict(rows, explain=explain)
        items = _as_rows(rows)
        texts = [r.text for r in items]
        state = self._route(texts)
        labels, reasons = self._combine(state, self.similarity_threshold, self.weak_threshold)
        out = []
        for i, row in enumerate(items):
            reason = int(reasons[i])
            if reason == NEIGHBOURS or self.zero_shot is None:
                route = self.labelling_route
            elif reason == WEAK and self.multi_label:
                route = f"{self.labelling_route}+{self.zero_shot.route}"
            else:
                route = self.zero_shot.route
            on_knn = reason == NEIGHBOURS or (reason == WEAK and self.multi_label)
            scores = {}
            for j, name in enumerate(self.label_names_):
                from_knn = on_knn and name not in self.weak_labels_
                value = state["fractions"][i, j] if from_knn else state["zs_scores"][i, j]
                scores[name] = 0.0 if math.isnan(value) else float(value)
            out.append(Prediction(id=row.id, labels=tuple(n for n, on in zip(self.label_names_, labels[i],
                                                                                   strict=True) if on),
                                        scores=scores, top_similarity=float(state["top_sim"][i]),
                                        neighbours=self._neighbours(state, i) if explain else [],
                                        route=route, reason=REASONS[reason], kept=dict(row.extra)))
        return out

    def _neighbours(self, state: dict, i: int) -> list[dict]:
        if state["ids"] is None:
            return []
        out = []
        assert self.index is not None  # neighbour ids come from the index
        pseudo = self.index.pseudo_ids()
        for sim, row_no in zip(state["sims"][i], state["ids"][i], strict=True):
            if row_no < 0:
                continue
            row = self.index.rows[int(row_no)]
            out.append({"row": int(row_no), "similarity": float(sim), "labels": list(row.labels), "id": row.id,
                        "text": row.text, **({"pseudo": True} if row.id in pseudo else {})})
        return out

    def tune(self, valid_rows: Sequence[Row], *, metric: str = "macro", source: str = "validation data",
             label_field: str = "label") -> Predictor:
        """Choose ``similarity_threshold`` (and ``weak_threshold`` when there are weak labels) on labelled
        validation rows, maximising the combined output's macro- (or micro-) F1. Ties go to the setting that
        sends fewer queries to the zero-shot. Returns self; the search is recorded in ``tuning_``."""
        if metric not in ("micro", "macro"):
            raise InvalidArgumentError(f"metric must be 'micro' or 'macro', got {metric!r}")
        valid_rows = list(valid_rows)
        if not valid_rows:
            raise InvalidArgumentError("no validation rows to tune the fallback on")
        if self.zero_shot is None:
            raise InvalidArgumentError("nothing to tune: this Predictor has no zero-shot fallback")
        y = label_matrix(valid_rows, self.label_names_, source, label_field)
        texts = [r.text for r in valid_rows]
        knn = self._knn(texts)
        zs_scores = self._zero_shot_scores(texts, np.ones(len(texts), dtype=bool), knn["vectors"])
        state = {**knn, "zs_scores": zs_scores, "zs_pred": self._zero_shot_pred(zs_scores),
                 "weak": np.array([n in self.weak_labels_ for n in self.label_names_], dtype=bool)}

        sim_grid: list[float | None] = [None]
        if self.has_knn:
            finite = knn["top_sim"][np.isfinite(knn["top_sim"])]
            sim_grid += sorted({float(v) for v in np.quantile(finite, np.linspace(0.05, 0.95, 19))}) if len(finite) \
                else []
        weak_grid: list[float | None] = [None]
        if state["weak"].any() and self.has_knn:
            values = zs_scores[:, state["weak"]].ravel()
            weak_grid += sorted({float(v) for v in np.quantile(values, np.linspace(0.1, 0.9, 9))})

        def score(labels: np.ndarray) -> tuple[float, float]:
            tp = (labels & y).sum(axis=0)
            micro, macro = f1_from_counts(tp, (labels & ~y).sum(axis=0), (~labels & y).sum(axis=0))
            return float(micro), float(macro)

        grid, best = [], None
        for s in sim_grid:
            for w in weak_grid:
                labels, reasons = self._combine(state, s, w)
                micro, macro = score(labels)
                share = float(np.mean(reasons != NEIGHBOURS))
                grid.append({"similarity_threshold": s, "weak_threshold": w, "micro_f1": micro, "macro_f1": macro,
                             "zero_shot_share": share})
                value = macro if metric == "macro" else micro
                if best is None or value > best[0] + _SCORE_TOL:
                    best = (value, s, w, share)
        assert best is not None
        self.similarity_threshold, self.weak_threshold = best[1], best[2]
        alone = self._knn_alone(knn, y) if self.index is not None else None
        # "no fallback" is a candidate too, and wins ties (fewest queries sent to zero-shot: none)
        without = self._no_fallback_score(valid_rows, y, metric)
        self.use_fallback = without is None or best[0] > without + _SCORE_TOL
        self.tuning_ = {"metric": metric, "score": best[0] if self.use_fallback else without,
                        "zero_shot_share": best[3] if self.use_fallback else 0.0, "n_valid": len(valid_rows),
                        "source": str(source), "knn_alone": alone, "use_fallback": self.use_fallback,
                        "best_fallback_score": best[0], "no_fallback_score": without,
                        "curve": [g for g in grid if g["weak_threshold"] == best[2]], "grid_size": len(grid)}
        return self

    def _without_fallback(self) -> Predictor:
        """The same index, encoder, k and m with no zero-shot scorer: what ``predict`` without ``--fallback``
        labels by."""
        if self._plain is None:
            k, m = self._given_k_m
            self._plain = Predictor(self.index, self.encoder, None, k=k, m=m, cache=self.cache,
                                    batch_size=self.batch_size, show_progress=self.show_progress)
        self._plain.show_progress = self.show_progress
        return self._plain

    def _no_fallback_score(self, valid_rows: list[Row], y: np.ndarray, metric: str) -> float | None:
        """The validation score of the index alone (no zero-shot at all), over the same labels; None when some
        label has no example in the index, so that only the zero-shot could ever give it."""
        if self.index is None or any(self.label_counts_.get(n, 0) == 0 for n in self.label_names_):
            return None
        predictions = self._without_fallback().predict(valid_rows)
        labels = np.array([[n in p.labels for n in self.label_names_] for p in predictions], dtype=bool)
        tp = (labels & y).sum(axis=0)
        micro, macro = f1_from_counts(tp, (labels & ~y).sum(axis=0), (~labels & y).sum(axis=0))
        return float(macro if metric == "macro" else micro)

    def _knn_alone(self, knn: dict, y: np.ndarray) -> dict:
        """Micro/macro-F1 of the plain kNN vote (every index label votes, no fallback) on the same rows."""
        assert self.index is not None  # tuning the fallback needs the index
        chosen = self._labeler(self.index.label_names).vote(knn["vectors"]).chosen
        labels = np.zeros_like(y)
        labels[:, [self.label_names_.index(n) for n in self.index.label_names]] = chosen
        tp = (labels & y).sum(axis=0)
        micro, macro = f1_from_counts(tp, (labels & ~y).sum(axis=0), (~labels & y).sum(axis=0))
        return {"micro_f1": float(micro), "macro_f1": float(macro)}

    def settings(self) -> dict:
        """What this Predictor routes by, JSON-ready (for ``index.extra["fallback"]`` or a report)."""
        return {"version": SETTINGS_VERSION, "fallback": self.zero_shot.kind if self.zero_shot else "none",
                "route": self.route, "zero_shot": self.zero_shot.describe() if self.zero_shot else None,
                "labels": self.labels_.to_dict(), "label_counts": self.label_counts_,
                "min_examples": self.min_examples, "covered_labels": self.covered_labels_,
                "weak_labels": self.weak_labels_, "similarity_threshold": self.similarity_threshold,
                "weak_threshold": self.weak_threshold, "k": self.k, "m": self.m, "multi_label": self.multi_label,
                "use_fallback": self.use_fallback, "tuning": self.tuning_}


def predict_rows(index: LabelIndex, encoder: IndexEncoder | None, rows: Sequence[Row] | Sequence[str], *,
                 k: int | None = None, m: float | None = None, explain: bool = False,
                 cache: EmbeddingCache | None = None, batch_size: int = 32,
                 show_progress: bool = False) -> list[Prediction]:
    """Plain kNN over ``index``: the router with no zero-shot scorer (every label the index knows votes, route
    ``knn``). ``encoder=None`` loads the one the index names."""
    return Predictor(index, encoder, None, k=k, m=m, cache=cache, batch_size=batch_size,
                     show_progress=show_progress).predict(rows, explain=explain)


def predictor_kwargs(settings: dict | None) -> dict:
    """Constructor arguments stored by :meth:`Predictor.settings` (thresholds, min_examples, labels)."""
    if not settings:
        return {}
    out = {key: settings[key] for key in ("similarity_threshold", "weak_threshold", "min_examples", "use_fallback")
           if key in settings}
    if settings.get("labels"):
        out["labels"] = settings["labels"]
    return out


def _as_rows(rows: Sequence[Row] | Sequence[str]) -> list[Row]:
    out = []
    for i, row in enumerate(rows):
        out.append(row if isinstance(row, Row) else Row(text=str(row), labels=(), id=str(i), line=i + 1))
    return out


def summarise_routes(predictions: Sequence[Prediction]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in predictions:
        counts[p.route] = counts.get(p.route, 0) + 1
    return counts
