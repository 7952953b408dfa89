"""Slow checks (`make test-slow`): kNN with the default encoder must beat the Naive Bayes baseline on
the bundled GoEmotions sample, as chapter 9 finds for small training sets."""

from __future__ import annotations

from pathlib import Path

import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.naive_bayes import MultinomialNB
from sklearn.preprocessing import MultiLabelBinarizer

from fewlabel.indexing.readers import read_rows
from fewlabel.indexing.store.label_index import LabelIndex
from fewlabel.retrieval.knn.saved_index import evaluate, tune_index
from fewlabel.retrieval.router import predict_rows

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"


@pytest.mark.slow
def test_e5_knn_beats_naive_bayes_on_goemotions_sample(e5):
    def rows(split):
        return read_rows(DEMO / f"goemotions_ekman_{split}.tsv", text_col="text", label_col="labels",
                         id_col="id", label_sep=",")

    train, valid, test = rows("train"), rows("valid"), rows("test")
    index = LabelIndex.build(train, e5)
    tune_index(index, e5, valid)
    knn = evaluate(predict_rows(index, e5, test), test, index.label_names)

    mlb = MultiLabelBinarizer(classes=index.label_names)
    vec = CountVectorizer()
    nb = OneVsRestClassifier(MultinomialNB()).fit(vec.fit_transform([r.text for r in train]),
                                                  mlb.fit_transform([r.labels for r in train]))
    nb_pred = nb.predict(vec.transform([r.text for r in test]))
    nb_micro = f1_score(mlb.transform([r.labels for r in test]), nb_pred, average="micro", zero_division=0)
    assert knn["micro_f1"] > nb_micro + 0.05, (knn, nb_micro)
