"""Naive Bayes on word or character n-gram counts: the book's baseline, and a real candidate for the index.

One implementation for the CLI's ``--method nb`` and for `fewlabel bench slices`' ``nb`` baseline (the
benchmark imports it), so the baseline the benchmarks report is the method a user gets. ``analyzer="auto"``
uses character 1-3-grams (``char_wb``) when most training texts are Korean, since whitespace words split
Korean badly (a particle glued to every noun), and words otherwise.

Multi-label: one binary MultinomialNB per label (one-vs-rest); single-label: one multi-class MultinomialNB.
The fitted state is plain arrays (vocabulary as JSON, log-probabilities as floats), and prediction is the
same arithmetic scikit-learn does (``X @ feature_log_prob.T + class_log_prior``), so a loaded model predicts
exactly what the fitted one did, without pickle."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fewlabel.indexing.text import hangul_share
from fewlabel.retrieval.methods.common import Views, decide, sigmoid, softmax
from fewlabel.retrieval.methods.registry import LabellingMethod, MethodParts, MethodSpec, register

__all__ = ["NaiveBayesText", "choose_analyzer"]


def choose_analyzer(texts: Sequence[str], analyzer: str = "auto") -> str:
    """``char_wb`` for mostly-Korean text, ``word`` otherwise (or ``analyzer`` when it is not "auto")."""
    if analyzer != "auto":
        return analyzer
    return "char_wb" if hangul_share(texts) > 0.5 else "word"


def _vectorizer(analyzer: str, vocabulary: Sequence[str] | None = None):
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(analyzer=analyzer, ngram_range=(1, 3) if analyzer == "char_wb" else (1, 1),
                           vocabulary=list(vocabulary) if vocabulary is not None else None)


class NaiveBayesText(LabellingMethod):
    """CountVectorizer + MultinomialNB over ``n_labels`` label columns. Nothing is tuned."""

    name = "nb"

    def __init__(self, analyzer: str = "auto") -> None:
        self.analyzer = analyzer

    # ---- fitting --------------------------------------------------------------------------------------------
    def fit(self, texts: Sequence[str], y: np.ndarray, multi_label: bool) -> NaiveBayesText:
        """``y``: (n, L) bool label matrix. A label no training text carries (or every text does) gets a
        constant probability, as scikit-learn's one-vs-rest does."""
        from sklearn.naive_bayes import MultinomialNB

        texts = list(texts)
        y = np.asarray(y, dtype=bool)
        self.analyzer_ = choose_analyzer(texts, self.analyzer)
        vectorizer = _vectorizer(self.analyzer_)
        x = vectorizer.fit_transform(texts)
        self.vocabulary_ = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
        self.multi_label_, self.n_labels_ = bool(multi_label), y.shape[1]
        n_features = x.shape[1]
        if multi_label:  # per label: log-odds weights w and bias b of "carries it" against "does not"
            w, b = np.zeros((y.shape[1], n_features)), np.zeros(y.shape[1])
            for j in range(y.shape[1]):
                column = y[:, j]
                if column.all() or not column.any():
                    b[j] = 50.0 if column.all() else -50.0  # constant, as OneVsRestClassifier's stand-in
                    continue
                nb = MultinomialNB().fit(x, column.astype(int))
                w[j] = nb.feature_log_prob_[1] - nb.feature_log_prob_[0]
                b[j] = nb.class_log_prior_[1] - nb.class_log_prior_[0]
            self.coef_, self.intercept_ = w, b
        else:  # one row per label; labels the slice lacks get -inf prior, never chosen
            nb = MultinomialNB().fit(x, y.argmax(1))
            coef = np.zeros((y.shape[1], n_features))
            intercept = np.full(y.shape[1], -np.inf)
            coef[nb.classes_] = nb.feature_log_prob_
            intercept[nb.classes_] = nb.class_log_prior_
            self.coef_, self.intercept_ = coef, intercept
        self._vectorizer = vectorizer
        return self

    # ---- predicting -----------------------------------------------------------------------------------------
    def log_odds(self, texts: Sequence[str]) -> np.ndarray:
        """Multi-label: per-label log-odds (n, L); single-label: the joint log-likelihood per label (n, L)."""
        x = self._vectorizer.transform(list(texts))
        return np.asarray(x @ self.coef_.T) + self.intercept_[None, :]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        z = self.log_odds(texts)
        return sigmoid(z) if self.multi_label_ else softmax(z)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """(n, L) bool: multi-label, the labels whose binary model says yes (log-odds > 0, as MultinomialNB's
        predict); single-label, the most probable label."""
        z = self.log_odds(texts)
        return z > 0 if self.multi_label_ else decide(z, multi_label=False)

    # ---- the candidate contract (see fewlabel.retrieval.methods.common) --------------------------------------
    def fit_views(self, views: Views, y: np.ndarray, multi_label: bool) -> NaiveBayesText:
        return self.fit(views.texts, y, multi_label)

    def state(self, views: Views) -> dict[str, np.ndarray]:
        return {"proba": self.predict_proba(views.texts), "odds": self.log_odds(views.texts)}

    def select(self, state: dict, y: np.ndarray, metric: str) -> dict:
        return {}  # the baseline: nothing to tune

    def decide(self, state: dict, settings: dict) -> np.ndarray:
        odds = state["odds"]
        return odds > 0 if self.multi_label_ else decide(odds, multi_label=False)

    def proba(self, state: dict, settings: dict) -> np.ndarray:
        return state["proba"]

    # ---- plain-array state ----------------------------------------------------------------------------------
    def to_files(self) -> MethodParts:
        """JSON settings, arrays, and the vocabulary in column order."""
        return MethodParts({"analyzer": self.analyzer_, "multi_label": self.multi_label_, "n_labels": self.n_labels_},
                           {"nb_coef": self.coef_, "nb_intercept": self.intercept_}, list(self.vocabulary_))

    @classmethod
    def from_files(cls, parts: MethodParts, labels: list[str] | None = None) -> NaiveBayesText:
        settings, arrays, vocabulary = parts.settings, parts.arrays, parts.vocabulary
        if vocabulary is None:
            raise KeyError("vocabulary.json")
        model = cls(settings["analyzer"])
        model.analyzer_, model.multi_label_ = settings["analyzer"], bool(settings["multi_label"])
        model.n_labels_ = int(settings["n_labels"])
        model.coef_, model.intercept_ = arrays["nb_coef"], arrays["nb_intercept"]
        model.vocabulary_ = list(vocabulary)
        model._vectorizer = _vectorizer(model.analyzer_, model.vocabulary_)
        return model


register(MethodSpec(
    name="nb", summary="word or character n-gram Naive Bayes (the book's baseline)", rank=20, bench="own",
    factory=lambda context: NaiveBayesText(), load=NaiveBayesText.from_files,
))
