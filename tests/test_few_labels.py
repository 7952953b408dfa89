"""Few labels (issue 23): label descriptions live in the index, an index of descriptions alone predicts, the
label prior is zero-shot at 0 rows and moves to the rows' answer as rows come, auto under cross-validation sees
only the training rows and prefers the simpler candidate within a fraction of a standard error. Real MiniLM,
bundled GoEmotions sample."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fewlabel.retrieval.cli import main

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"
EKMAN = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
COMMON = ["--text-col", "text", "--label-col", "labels", "--label-sep", ",", "--id-col", "id"]


def _rows(name: str, n: int, start: int = 0):
    from fewlabel.indexing.readers import read_rows

    return read_rows(DEMO / name, text_col="text", label_col="labels", id_col="id", label_sep=",")[start:start + n]


def _single(rows):
    """The rows with exactly one label (single-label data from the multi-label sample)."""
    return [r for r in rows if len(r.labels) == 1]


@pytest.fixture(scope="module")
def described(minilm):
    from fewlabel.retrieval.methods.descriptions import embed_descriptions

    return embed_descriptions({name: [name] for name in EKMAN}, None, minilm)


@pytest.fixture(scope="module")
def pool(minilm):
    """Single-label training rows and test rows of the sample, with their vectors and label matrices."""
    from fewlabel.indexing.readers import label_matrix
    from fewlabel.retrieval.methods.common import Views

    train, test = _single(_rows("goemotions_ekman_train.tsv", 600)), _single(_rows("goemotions_ekman_test.tsv", 300))

    def views(rows):
        return Views(minilm.encode([r.text for r in rows], normalize=True), [r.text for r in rows])

    return {"train": views(train), "y": label_matrix(train, EKMAN, "train"),
            "test": views(test), "y_test": label_matrix(test, EKMAN, "test")}


def test_an_index_of_label_descriptions_alone_predicts(tmp_path, capsys):
    out = tmp_path / "names"
    code = main(["-q", "index", "build", "--label-names", "sport=sport|football|tennis,cooking=cooking|a recipe",
                 "--model", "minilm", "--no-cache", "--out", str(out)])
    assert code == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["n_rows"] == 0 and meta["labels"] == ["cooking", "sport"]
    assert meta["method"]["name"] == "zeroshot"
    assert meta["label_descriptions"]["labels"]["sport"] == ["sport", "football", "tennis"]
    texts = tmp_path / "texts.csv"
    texts.write_text("text\nThe striker scored twice in the second half.\nSimmer the onions in butter for ten "
                     "minutes and then add the flour.\n", encoding="utf-8")
    assert main(["-q", "predict", str(out), str(texts), "--out", str(tmp_path / "p.csv"), "--no-cache"]) == 0
    with open(tmp_path / "p.csv", encoding="utf-8") as fh:
        labels = [json.loads(row["labels"]) for row in csv.DictReader(fh)]
    assert labels == [["sport"], ["cooking"]]
    capsys.readouterr()
    assert main(["index", "info", str(out)]) == 0
    assert "described   sport=sport|football|tennis, cooking=cooking|a recipe" in capsys.readouterr().out


def test_descriptions_round_trip_through_save_load_and_index_add(tmp_path):
    from fewlabel.indexing.store.label_index import LabelIndex
    from fewlabel.retrieval.router import Predictor

    train = tmp_path / "train.tsv"
    lines = (DEMO / "goemotions_ekman_train.tsv").read_text(encoding="utf-8").splitlines()
    train.write_text("\n".join(lines[:41]) + "\n", encoding="utf-8")
    more = tmp_path / "more.tsv"
    more.write_text("\n".join([lines[0], *lines[41:51]]) + "\n", encoding="utf-8")
    out = tmp_path / "ix"
    names = "joy=joy|happiness,anger=anger|rage"
    assert main(["-q", "index", "build", str(train), *COMMON, "--model", "minilm", "--no-cache",
                 "--label-names", names, "--label-template", "Someone feels {}.", "--out", str(out)]) == 0
    before = LabelIndex.load(out)
    assert before.descriptions == {"labels": {"joy": ["joy", "happiness"], "anger": ["anger", "rage"]},
                                   "template": "Someone feels {}."}
    assert before.described_labels()["fear"] == ["fear"]  # a label without a description: its own name
    record = before.method
    assert record is not None and {e["method"] for e in record["leaderboard"]} >= {"zeroshot", "prior", "knn"}
    assert main(["-q", "index", "add", str(out), str(more), *COMMON, "--no-cache"]) == 0
    after = LabelIndex.load(out)
    assert after.descriptions == before.descriptions and len(after) == len(before) + 10
    predictions = Predictor.load(out).predict(["I am so happy for you!"])
    assert predictions[0].labels  # the refitted method loads and labels


def test_the_prior_is_zero_shot_at_zero_rows_and_moves_to_the_rows(pool, described):
    from fewlabel.retrieval.methods.common import f1_scores
    from fewlabel.retrieval.methods.prior import LabelPrior
    from fewlabel.retrieval.methods.zeroshot import ZeroShotCandidate

    train, y, test = pool["train"], pool["y"], pool["test"]
    zs = ZeroShotCandidate(described).fit_views(train.take(np.arange(0)), y[:0], False)
    zs_pred = zs.decide(zs.state(test), {"lambda": "inf"})
    empty = LabelPrior(described).fit_views(train.take(np.arange(0)), y[:0], False)
    settings = {"lambda": 4.0}
    np.testing.assert_allclose(empty.proba(empty.state(test), settings), zs.proba(zs.state(test), {"lambda": "inf"}))

    def agreement(n: int) -> tuple[float, float]:
        """(share of test texts where the prior agrees with zero-shot, with the rows' own centroids)."""
        prior = LabelPrior(described).fit_views(train.take(np.arange(n)), y[:n], False)
        pred = prior.decide(prior.state(test), settings)
        rows_only = prior.decide(prior.state(test), {"lambda": 0.0})  # λ = 0: the centroids alone
        return float((pred == zs_pred).all(1).mean()), float((pred == rows_only).all(1).mean())

    shares = [agreement(n) for n in (8, 40, len(train))]
    assert shares[0][0] > shares[2][0]  # away from zero-shot as rows come
    assert shares[0][1] < shares[1][1] < shares[2][1] and shares[2][1] > 0.9  # toward the rows' own answer
    many = LabelPrior(described).fit_views(train, y, False)
    chosen = many.select(many.state(test), pool["y_test"], "micro")
    assert f1_scores(many.decide(many.state(test), chosen), pool["y_test"])[0] > \
        f1_scores(zs_pred, pool["y_test"])[0]  # with hundreds of rows, the rows beat the names


def test_auto_under_cross_validation_sees_only_the_training_rows(pool, described, monkeypatch):
    from fewlabel.retrieval.methods import prior as prior_module
    from fewlabel.retrieval.methods.auto import select_method

    seen: set[str] = set()
    state = prior_module.LabelPrior.state

    def spying_state(self, views):
        seen.update(views.texts)
        return state(self, views)

    monkeypatch.setattr(prior_module.LabelPrior, "state", spying_state)
    rows = np.arange(24)
    train = pool["train"].take(rows)
    choice = select_method(train, pool["y"][rows], multi_label=False, descriptions=described, seed=0)
    assert seen and seen <= set(train.texts)  # every text the choice looked at is a training row
    assert not seen & set(pool["test"].texts)
    assert choice.protocol["kind"] == "cross-validation" and choice.protocol["repeats"] == 3
    assert {e["method"] for e in choice.leaderboard} == {"zeroshot", "prior", "knn", "linear", "nb", "ensemble"}
    assert all(len(e["scores"]) == 3 * choice.protocol["folds"] for e in choice.leaderboard)  # a score per fold


def test_the_optional_simplest_within_rule_prefers_the_simpler_candidate():
    from fewlabel.retrieval.methods.auto import _simplest_within

    def entry(score, spread):
        return {"entry": {"score": score, "spread": spread}}

    # linear is best by 0.02, but fold scores spread 0.1 over 4 folds: SE 0.05, so zeroshot (rank -20) wins
    noisy = {"zeroshot": entry(0.70, 0.0), "knn": entry(0.69, 0.1), "linear": entry(0.72, 0.1)}
    assert _simplest_within(noisy, "linear", 4) == "zeroshot"
    # a clear win (best minus its SE still above the others) stands
    clear = {"zeroshot": entry(0.60, 0.0), "knn": entry(0.65, 0.02), "linear": entry(0.80, 0.02)}
    assert _simplest_within(clear, "linear", 4) == "linear"


def test_bad_label_names_are_one_line_before_any_model_loads(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["-q", "index", "build", "--label-names", "joy=,anger", "--model", "minilm", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "label 'joy'" in err[0]
    assert main(["-q", "index", "build", "--model", "minilm", "--out", str(out)]) == 2
    assert "--label-names" in capsys.readouterr().err
    assert main(["-q", "index", "build", "--label-names", "a,b", "--label-template", "no place", "--model", "minilm",
                 "--out", str(out)]) == 2
    assert "template" in capsys.readouterr().err
    assert not out.exists()


def test_pseudo_labelled_rows_round_trip_and_give_way_to_real_labels(minilm, tmp_path):
    from fewlabel.indexing.readers import Row
    from fewlabel.indexing.store.label_index import LabelIndex

    index = LabelIndex.build(_rows("goemotions_ekman_train.tsv", 20), minilm)
    guessed = [Row(text="What a lovely surprise, thank you!", labels=("joy",), id="pseudo-0", line=0),
               Row(text="This is disgusting.", labels=("anger",), id="pseudo-1", line=0)]
    index.add(guessed, minilm)
    index.mark_pseudo(["pseudo-0", "pseudo-1"], source="pool.csv", bar=0.9)
    index.save(tmp_path / "ix")
    loaded = LabelIndex.load(tmp_path / "ix")
    assert loaded.pseudo_ids() == {"pseudo-0", "pseudo-1"} and loaded.pseudo["source"] == "pool.csv"
    loaded.add([Row(text="This is disgusting.", labels=("disgust",), id="real-1", line=2)], minilm)
    assert loaded.replaced_pseudo_ == 1 and loaded.pseudo_ids() == {"pseudo-0"}
    assert [r.labels for r in loaded.rows if r.text == "This is disgusting."] == [("disgust",)]
    assert len(loaded) == 22 and loaded.store.ntotal == 22  # 20 + 2 guessed - 1 replaced + 1 real
    loaded.remove(["pseudo-0"])
    assert loaded.pseudo is None


@pytest.mark.slow  # self-training runs auto's cross-validation four times: about 100 s on 2 busy cores
def test_pseudo_labels_are_marked_explained_and_replaced_by_real_labels(tmp_path, capsys):
    from fewlabel.indexing.store.label_index import LabelIndex

    lines = (DEMO / "goemotions_ekman_train.tsv").read_text(encoding="utf-8").splitlines()
    train, pool = tmp_path / "train.tsv", tmp_path / "pool.tsv"
    train.write_text("\n".join(lines[:61]) + "\n", encoding="utf-8")
    pool.write_text("\n".join(["id\ttext", *("\t".join(line.split("\t")[:2]) for line in lines[100:400])]) + "\n",
                    encoding="utf-8")
    out = tmp_path / "ix"
    assert main(["-q", "index", "build", str(train), *COMMON, "--model", "minilm", "--label-names", "joy=joy|happiness",
                 "--unlabelled", str(pool), "--out", str(out)]) == 0
    index = LabelIndex.load(out)
    pseudo = index.pseudo_ids()
    assert pseudo and len(index) == 60 + len(pseudo)
    pool_texts = {line.split("\t")[1] for line in lines[100:400]}
    marked = [r for r in index.rows if r.id in pseudo]
    assert {r.text for r in marked} <= pool_texts and all(r.labels for r in marked)
    first = marked[0]
    # predict --explain marks a pseudo-labelled neighbour
    query = tmp_path / "q.csv"
    query.write_text("text\n" + first.text.replace(",", " ").replace('"', "") + "\n", encoding="utf-8")
    assert main(["-q", "predict", str(out), str(query), "--explain", "--out", str(tmp_path / "p.jsonl"),
                 "--k", "3", "--m", "1"]) == 0
    neighbours = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])["neighbours"]
    assert any(n.get("pseudo") for n in neighbours if n["id"] == first.id)
    assert all("pseudo" not in n for n in neighbours if n["id"] not in pseudo)
    # real labels for the same text replace the pseudo-labelled row
    real = "sadness" if first.labels != ("sadness",) else "fear"
    more = tmp_path / "more.tsv"
    more.write_text(f"id\ttext\tlabels\nreal1\t{first.text}\t{real}\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["index", "add", str(out), str(more), *COMMON, "--no-cache"]) == 0
    assert "1 pseudo-labelled rows replaced" in capsys.readouterr().out
    after = LabelIndex.load(out)
    assert first.id not in after.pseudo_ids() and first.id not in {r.id for r in after.rows}
    assert [r.labels for r in after.rows if r.text == first.text] == [(real,)]
    assert len(after) == len(index)
