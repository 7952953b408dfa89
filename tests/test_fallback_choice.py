"""Tuning the zero-shot fallback may answer "no fallback" (issue 25, item 8): `predict --fallback … --tune-fallback`
kept the fallback although the index alone scored higher on the validation rows. Here the zero-shot is made
wrong on purpose (each label's aliases describe the other label), so any query it labels is a miss: tuning must
switch the fallback off, predict exactly as plain kNN, say so, and store that choice with --save-fallback.
Real MiniLM on a hand-made index (the texts of tests/test_zeroshot.py)."""

from __future__ import annotations

import csv
import json

import pytest

from fewlabel.indexing.readers import Row
from fewlabel.indexing.store.label_index import LabelIndex
from fewlabel.retrieval.cli import main
from fewlabel.retrieval.router import Predictor, predictor_kwargs
from fewlabel.retrieval.zeroshot.scorers import EmbeddingZeroShot
from tests.test_zeroshot import FOOD, SPORTS

SWAPPED = "sports=cooking a meal|kitchen recipe,food=football match|athletes competing"
VALID = [("The midfielder scored a goal in the football match.", "sports"),
         ("Whisk the eggs with sugar and bake the cake for thirty minutes.", "food"),
         ("The crowd cheered as the runner crossed the finish line.", "sports"),
         ("Fry the onions in olive oil until golden.", "food"),
         ("The boxer won the title fight in the tenth round.", "sports"),
         ("Season the roast chicken with thyme and lemon.", "food")]


@pytest.fixture(scope="module")
def index(minilm):
    rows = [Row(text=t, labels=(lab,), id=f"{lab}{i}", line=i + 1)
            for lab, texts in (("sports", SPORTS), ("food", FOOD)) for i, t in enumerate(texts)]
    return LabelIndex.build(rows, minilm)


def _valid() -> list[Row]:
    return [Row(text=t, labels=(lab,), id=str(i), line=i + 2) for i, (t, lab) in enumerate(VALID)]


def test_tuning_turns_a_losing_fallback_off(index, minilm):
    wrong = EmbeddingZeroShot(minilm, labels=SWAPPED)
    assert [p.labels for p in Predictor(None, None, wrong).predict([t for t, _ in VALID])] == \
        [("food",), ("sports",)] * 3  # the zero-shot alone is wrong on every row
    predictor = Predictor(index, minilm, wrong, k=3, m=1, min_examples=1).tune(_valid())
    tuning = predictor.tuning_
    assert predictor.use_fallback is False and tuning["use_fallback"] is False
    assert tuning["no_fallback_score"] == pytest.approx(1.0) and tuning["score"] == tuning["no_fallback_score"]
    assert tuning["best_fallback_score"] <= tuning["no_fallback_score"]
    queries = [t for t, _ in VALID] + ["A quiet walk by the river at dusk."]
    plain = Predictor(index, minilm, None, k=3, m=1).predict(queries)
    routed = predictor.predict(queries)
    assert [(p.labels, p.route, p.scores) for p in routed] == [(p.labels, p.route, p.scores) for p in plain]
    # the choice survives the stored settings
    again = Predictor(index, minilm, wrong, k=3, m=1, **predictor_kwargs(json.loads(json.dumps(predictor.settings()))))
    assert again.use_fallback is False and [p.labels for p in again.predict(queries)] == [p.labels for p in plain]


def test_a_fallback_that_helps_is_kept(index, minilm):
    """With right label names and a label the index has no example of, the fallback stays (and "no fallback" is
    not even a candidate: only the zero-shot can give that label)."""
    right = EmbeddingZeroShot(minilm, labels="sports,food,travel=travel|holiday")
    valid = [*_valid(), Row(text="We booked flights and a hotel for our holiday trip to Spain.", labels=("travel",),
                            id="t", line=9)]
    predictor = Predictor(index, minilm, right, k=3, m=1, min_examples=1).tune(valid)
    assert predictor.use_fallback is True and predictor.tuning_["no_fallback_score"] is None


def test_cli_says_no_fallback_and_saves_it(index, tmp_path, capsys):
    folder = index.save(tmp_path / "idx")
    texts = tmp_path / "valid.csv"
    with open(texts, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text", "label"])
        writer.writerows([f"v{i}", t, lab] for i, (t, lab) in enumerate(VALID))
    out = tmp_path / "pred.csv"
    assert main(["predict", str(folder), str(texts), "--fallback", "embed", "--labels", SWAPPED, "--min-examples",
                 "1", "--k", "3", "--m", "1", "--tune-fallback", str(texts), "--save-fallback", "--no-cache",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "no fallback" in captured.err and "routes: knn 6" in captured.out
    table = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [json.loads(r["labels"]) for r in table] == [[lab] for _, lab in VALID]
    stored = json.loads((folder / "meta.json").read_text())["fallback"]
    assert stored["use_fallback"] is False
    again = tmp_path / "again.csv"  # the stored choice applies to the next run with the same fallback
    assert main(["-q", "predict", str(folder), str(texts), "--fallback", "embed", "--k", "3", "--m", "1",
                 "--no-cache", "--out", str(again)]) == 0
    assert {r["route"] for r in csv.DictReader(again.open(encoding="utf-8"))} == {"knn"}
