"""Zero-shot labelling and the kNN -> zero-shot fallback: NLI readers, the label-index mapping read from a
checkpoint's id2label, templates and aliases, the multi- vs single-label maths on hand-made logits, embedding
zero-shot, the Predictor's routing on a constructed index, a few-step NLI training run that saves and
reloads, the CLI, and clear errors. Real MiniLM, tiny data."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax

from fewlabel.indexing.errors import DataError, FewlabelError, ModelError
from fewlabel.indexing.nli.data import NLIPair, detect_nli_format, read_nli, read_nli_files
from fewlabel.indexing.readers import Row
from fewlabel.indexing.store.label_index import LabelIndex
from fewlabel.retrieval.cli import build_parser, main
from fewlabel.retrieval.router import (
    FAR,
    NEIGHBOURS,
    NO_INDEX,
    NO_VOTE,
    WEAK,
    Predictor,
    combine_routes,
    predictor_kwargs,
)
from fewlabel.retrieval.zeroshot.labels import (
    TEMPLATES,
    LabelSet,
    hypotheses,
    parse_labels,
    read_labels_file,
    render_template,
)
from fewlabel.retrieval.zeroshot.probabilities import (
    aggregate_by_label,
    multi_label_nli_scores,
    nli_label_indices,
    select_labels,
    single_label_nli_scores,
)
from fewlabel.retrieval.zeroshot.scorers import EmbeddingZeroShot, NLIZeroShot, load_zero_shot

NLI_TRAIN = [
    ("A man is playing a guitar on stage.", "A man is performing music.", "entailment"),
    ("A man is playing a guitar on stage.", "The man is asleep in bed.", "contradiction"),
    ("A man is playing a guitar on stage.", "The man is a famous singer.", "neutral"),
    ("Two dogs run across the park.", "Animals are outside.", "entailment"),
    ("Two dogs run across the park.", "The dogs are sleeping indoors.", "contradiction"),
    ("Two dogs run across the park.", "The dogs are chasing a ball.", "neutral"),
    ("아이들이 운동장에서 축구를 하고 있다.", "아이들이 밖에서 놀고 있다.", "entailment"),
    ("아이들이 운동장에서 축구를 하고 있다.", "아이들이 교실에서 자고 있다.", "contradiction"),
    ("아이들이 운동장에서 축구를 하고 있다.", "아이들은 같은 학교 학생이다.", "neutral"),
    ("The chef is cooking pasta.", "Food is being prepared.", "entailment"),
    ("The chef is cooking pasta.", "The kitchen is empty.", "contradiction"),
    ("The chef is cooking pasta.", "The pasta is for a wedding.", "neutral"),
    ("여자가 책을 읽고 있다.", "여자가 무언가를 읽는다.", "entailment"),
    ("여자가 책을 읽고 있다.", "여자가 달리기를 하고 있다.", "contradiction"),
    ("여자가 책을 읽고 있다.", "그 책은 소설이다.", "neutral"),
    ("A plane is taking off.", "An aircraft is moving.", "entailment"),
]
NLI_DEV = [
    ("A woman is slicing an onion.", "Someone is cutting a vegetable.", "entailment"),
    ("A woman is slicing an onion.", "The woman is swimming.", "contradiction"),
    ("A woman is slicing an onion.", "The onion is for soup.", "neutral"),
    ("남자가 자전거를 타고 있다.", "남자가 움직이고 있다.", "entailment"),
    ("남자가 자전거를 타고 있다.", "남자가 누워 있다.", "contradiction"),
    ("남자가 자전거를 타고 있다.", "남자는 출근하는 중이다.", "neutral"),
]
GLUE = {"entailment": 0, "neutral": 1, "contradiction": 2}

SPORTS = ["The striker scored twice in the football match.", "The tennis final went to five sets.",
          "The team won the basketball championship.", "She ran the marathon in under three hours.",
          "The goalkeeper saved a penalty in extra time.", "Our cricket side lost by six wickets."]
FOOD = ["I baked fresh bread and a chocolate cake.", "This pasta sauce needs more garlic and basil.",
        "We grilled vegetables and steak for dinner.", "The soup was salty but the dumplings were great.",
        "Add sugar and butter, then stir the batter.", "The restaurant serves excellent sushi and ramen."]
MUSIC = ["The orchestra played a symphony by Beethoven.", "He plays guitar in a rock band."]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def klue_json(items) -> str:
    return json.dumps([{"guid": f"klue-{i}", "premise": p, "hypothesis": h, "gold_label": lab}
                       for i, (p, h, lab) in enumerate(items)], ensure_ascii=False, indent=4)


def xnli_tsv(items) -> str:
    return "sentence1\tsentence2\tgold_label\n" + "".join(f"{p}\t{h}\t{lab}\n" for p, h, lab in items)


def mnli_jsonl(items) -> str:
    return "".join(json.dumps({"premise": p, "hypothesis": h, "label": GLUE[lab]}, ensure_ascii=False) + "\n"
                   for p, h, lab in items)


# ---- NLI readers -------------------------------------------------------------------------------------------
def test_nli_readers_three_formats(tmp_path):
    klue = read_nli(write(tmp_path / "k.json", klue_json(NLI_TRAIN[:3])))
    assert klue[0] == NLIPair("klue-0", *NLI_TRAIN[0], line=2) and klue[2].label == "neutral"
    assert klue[1].line == 8  # each object's first line in the indented JSON list
    xnli = read_nli(write(tmp_path / "x.tsv", xnli_tsv(NLI_DEV[3:])))
    assert [p.label for p in xnli] == ["entailment", "contradiction", "neutral"]
    assert xnli[0].id == "0" and xnli[1].line == 3 and xnli[0].premise == "남자가 자전거를 타고 있다."
    mnli = read_nli(write(tmp_path / "m.jsonl", mnli_jsonl(NLI_DEV[:3])))
    assert [p.label for p in mnli] == ["entailment", "contradiction", "neutral"]  # 0/1/2 in the GLUE order
    quoted = read_nli(write(tmp_path / "q.tsv",
                            'sentence1\tsentence2\tgold_label\n"그가 말했다, "왔어"\t말\tNEUTRAL\n'))
    assert quoted[0].premise.startswith('"') and quoted[0].label == "neutral"  # TSV quotes are ordinary characters
    both = read_nli_files([tmp_path / "k.json", tmp_path / "x.tsv"])
    assert len(both) == 6 and both[0].id == "k:klue-0" and both[3].id == "x:0"
    unlabelled = read_nli(write(tmp_path / "u.jsonl", '{"premise": "a", "hypothesis": "b"}\n'))
    assert unlabelled[0].label is None
    assert detect_nli_format("[{}]") == "klue" and detect_nli_format('{"premise": 1}') == "jsonl"


@pytest.mark.parametrize("name, text, line, field, reason", [
    ("a.tsv", "sentence1\tsentence2\tgold_label\np\th\tentailment\np\th\t-\n", 3, "gold_label", "did not agree"),
    ("b.tsv", "sentence1\tsentence2\tgold_label\np\th\tmaybe\n", 2, "gold_label", "unknown label 'maybe'"),
    ("c.tsv", "sentence1\tsentence2\tgold_label\np\th\n", 2, "gold_label", "expected 3 fields"),
    ("d.jsonl", '{"premise": "p", "hypothesis": "h", "label": 0}\n{"premise": "p", "label": 1}\n', 2, "hypothesis",
     "missing key"),
    ("e.jsonl", '{"premise": "p", "hypothesis": "h", "label": 7}\n', 1, "label", "not 0, 1 or 2"),
    ("f.jsonl", '{"premise": " ", "hypothesis": "h", "label": 0}\n', 1, "premise", "empty text"),
    ("g.json", '[\n  {"premise": "p", "hypothesis": "h", "gold_label": "neutral"},\n  {"premise": "p", '
               '"hypothesis": "h"}\n]', 3, "label", "no label but others do"),
])
def test_nli_bad_rows_name_file_line_field(tmp_path, name, text, line, field, reason):
    path = write(tmp_path / name, text)
    with pytest.raises(DataError) as info:
        read_nli(path)
    assert (info.value.line, info.value.field) == (line, field) and reason in str(info.value)
    assert str(path) in str(info.value)


def test_nli_not_an_nli_file(tmp_path):
    with pytest.raises(DataError, match="not an NLI file"):
        read_nli(write(tmp_path / "x.csv", "text,label\nhello,1\n"))


def test_real_nli_files(shared_data):
    klue = read_nli(shared_data / "klue_nli" / "klue-nli-v1.1_dev.json")
    test = read_nli(shared_data / "kornli" / "xnli.test.ko.tsv")
    assert len(klue) == 3000 and len(test) == 5010
    assert {p.label for p in klue} == {"entailment", "neutral", "contradiction"}
    assert klue[0].id == "klue-nli-v1_dev_00000" and test[0].line == 2


# ---- the label-index mapping --------------------------------------------------------------------------------
def test_label_indices_read_from_id2label_in_any_order():
    mapping = nli_label_indices({"0": "CONTRADICTION", "1": "Neutral", "2": "entailment"})  # bart-large-mnli's order
    assert (mapping.entailment, mapping.contradiction, mapping.neutral) == (2, 0, 1)
    mapping = nli_label_indices({0: "neutral", 1: "entails", 2: "Contradicts"})
    assert (mapping.entailment, mapping.contradiction, mapping.neutral) == (1, 2, 0)
    rte = nli_label_indices({0: "not_entailment", 1: "entailment"})  # two-class: not_entailment plays contradiction
    assert (rte.entailment, rte.contradiction, rte.neutral) == (1, 0, None)
    with pytest.raises(ModelError, match="no entailment label"):
        nli_label_indices({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})
    with pytest.raises(ModelError, match="several classes look like entailment"):
        nli_label_indices({0: "entailment", 1: "Entailment", 2: "contradiction"})


# ---- templates and aliases -----------------------------------------------------------------------------------
def test_templates_and_aliases(tmp_path):
    labels = parse_labels("joy=joy|happiness, anger ,기쁨")
    assert labels.names == ("joy", "anger", "기쁨")
    assert labels.aliases == {"joy": ("joy", "happiness"), "anger": ("anger",), "기쁨": ("기쁨",)}
    assert parse_labels({"pos": ["좋음", "긍정"], "neg": "부정"}).aliases == {"pos": ("좋음", "긍정"), "neg": ("부정",)}
    assert render_template(None, "sports") == TEMPLATES["en"].format("sports") == "This example is about sports."
    assert render_template(None, "스포츠") == "이 글은 스포츠에 관한 내용이다."  # Hangul -> the Korean default
    assert render_template("It is {label}!", "joy") == "It is joy!" and render_template("{} 관련", "x") == "x 관련"
    texts, groups = hypotheses(labels, "About {}.")
    assert texts == ["About joy.", "About happiness.", "About anger.", "About 기쁨."]
    assert groups.tolist() == [0, 0, 1, 2]
    file_labels = read_labels_file(write(tmp_path / "labels.txt", "# emotions\njoy=joy|glee\n\n슬픔\n"))
    assert file_labels.to_dict() == {"joy": ["joy", "glee"], "슬픔": ["슬픔"]}
    assert read_labels_file(write(tmp_path / "l.json", '["a", "b"]')).names == ("a", "b")
    for bad in ("This example has no slot.", "{} and {}"):
        with pytest.raises(FewlabelError, match="must contain the label's place once"):
            render_template(bad, "x")
    with pytest.raises(FewlabelError, match="label list is empty"):
        parse_labels(" , ")
    with pytest.raises(FewlabelError, match="listed twice"):
        parse_labels("a,b,a")
    with pytest.raises(FewlabelError, match="aliases after '='"):
        parse_labels("joy=")
    with pytest.raises(DataError, match="line 2"):
        read_labels_file(write(tmp_path / "bad.txt", "joy\nanger=rage|\n"))
    with pytest.raises(DataError, match="label list is empty"):
        read_labels_file(write(tmp_path / "empty.txt", "# nothing\n\n"))


# ---- maths on hand-made logits ----------------------------------------------------------------------------------
def test_multi_vs_single_label_maths():
    # 1 text, 3 hypotheses (labels a, a', b: label 0 has two aliases), classes ordered [contradiction, neutral, entail]
    logits = np.array([[[0.0, 5.0, 2.0], [1.0, 0.0, 1.0], [3.0, -1.0, 0.0]]])
    groups = np.array([0, 0, 1])
    multi = multi_label_nli_scores(logits, groups, 2, entailment=2, contradiction=0)
    sigmoid = 1 / (1 + np.exp(-np.array([2.0 - 0.0, 1.0 - 1.0, 0.0 - 3.0])))
    assert multi[0] == pytest.approx([max(sigmoid[0], sigmoid[1]), sigmoid[2]])  # neutral's 5.0 is ignored
    assert multi_label_nli_scores(logits, groups, 2, 2, 0, how="mean")[0, 0] == pytest.approx(sigmoid[:2].mean())
    # each label on its own: the other hypotheses do not change a label's score
    assert multi_label_nli_scores(logits[:, 2:], np.array([0]), 1, 2, 0)[0, 0] == pytest.approx(sigmoid[2])
    single = single_label_nli_scores(logits, groups, 2, entailment=2)
    assert single[0] == pytest.approx(softmax(np.array([2.0, 0.0]))) and single.sum() == pytest.approx(1.0)
    assert single_label_nli_scores(logits, groups, 2, 2, how="mean")[0] == pytest.approx(softmax(np.array([1.5, 0.0])))
    # no contradiction class: P(entailment) from the softmax over all classes
    assert multi_label_nli_scores(logits, groups, 2, 2, None)[0, 1] == pytest.approx(softmax(logits[0, 2])[2])
    assert aggregate_by_label(np.array([[1.0, 3.0, 2.0]]), groups, 2).tolist() == [[3.0, 2.0]]

    scores = np.array([[0.1, 0.7, 0.6, 0.2], [0.3, 0.3, 0.1, 0.05]])
    assert select_labels(scores, top_k=1).tolist() == [[False, True, False, False], [True, False, False, False]]
    assert select_labels(scores, threshold=0.5).tolist() == [[False, True, True, False], [False] * 4]
    assert select_labels(scores, top_k=1, threshold=0.5).tolist() == [[False, True, False, False], [False] * 4]
    assert select_labels(scores, top_k=2).sum(axis=1).tolist() == [2, 2]
    with pytest.raises(FewlabelError):
        select_labels(scores)


def test_combine_routes_rules():
    knn = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0]], dtype=bool)
    top_sim = np.array([0.9, 0.3, 0.9, 0.9])
    zs = np.array([[0.2, 0.1, 0.7], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.1, 0.5, 0.4]])
    zs_pred = select_labels(zs, top_k=1)
    weak = np.array([False, False, True])
    labels, reason = combine_routes(knn, top_sim, zs, zs_pred, weak, multi_label=False, has_knn=True,
                                    similarity_threshold=0.5, weak_threshold=None)
    assert reason.tolist() == [WEAK, FAR, NO_VOTE, NEIGHBOURS]
    assert labels.tolist() == [[0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 0]]  # weak top-1 replaces the kNN label
    labels, reason = combine_routes(knn, top_sim, zs, zs_pred, weak, multi_label=False, has_knn=True,
                                    similarity_threshold=None, weak_threshold=0.75)
    assert reason.tolist() == [NEIGHBOURS, NEIGHBOURS, NO_VOTE, NEIGHBOURS]  # 0.7 < 0.75: the kNN label stays
    labels, reason = combine_routes(knn, top_sim, zs, zs_pred, weak, multi_label=True, has_knn=True,
                                    similarity_threshold=None, weak_threshold=0.35)
    assert labels.tolist() == [[1, 0, 1], [1, 0, 0], [1, 0, 0], [0, 1, 1]]  # multi-label: weak labels are added
    assert reason.tolist() == [WEAK, NEIGHBOURS, NO_VOTE, WEAK]
    labels, reason = combine_routes(knn, top_sim, zs, zs_pred, weak, multi_label=True, has_knn=False,
                                    similarity_threshold=None, weak_threshold=None)
    assert (reason == NO_INDEX).all() and (labels == zs_pred).all()


# ---- embedding zero-shot --------------------------------------------------------------------------------------
def test_embedding_zero_shot(minilm):
    texts = ["The striker scored a late goal in the football match.", "Knead the dough and bake the bread."]
    zs = EmbeddingZeroShot(minilm, labels="sports=sports|football,cooking")
    scores = zs.scores(texts)
    assert scores.shape == (2, 2) and scores.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert zs.predict(texts) == [("sports",), ("cooking",)]
    sim = zs.similarity(texts)
    assert scores == pytest.approx(softmax(sim / 0.05, axis=-1))
    assert zs.scores(texts, vectors=minilm.encode(texts)) == pytest.approx(scores, abs=1e-5)  # reused vectors
    warm = EmbeddingZeroShot(minilm, labels="sports=sports|football,cooking", temperature=1.0).scores(texts)
    assert warm.max() < scores.max()  # a higher temperature flattens the distribution
    multi = EmbeddingZeroShot(minilm, labels="sports,cooking", multi_label=True, threshold=0.06)
    assert multi.scores(texts) == pytest.approx(multi.similarity(texts)) and multi.describe()["scores"] == "cosine"
    assert multi.predict(texts) == [("sports",), ("cooking",)]
    with pytest.raises(FewlabelError, match="temperature"):
        EmbeddingZeroShot(minilm, temperature=0)
    with pytest.raises(FewlabelError, match="no candidate labels"):
        EmbeddingZeroShot(minilm).scores(texts)


# ---- routing on a constructed index ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_index(minilm):
    rows = [Row(text=t, labels=(lab,), id=f"{lab}{i}", line=i + 1)
            for lab, texts in (("sports", SPORTS), ("food", FOOD), ("music", MUSIC)) for i, t in enumerate(texts)]
    return LabelIndex.build(rows, minilm)


QUERIES = ["The midfielder scored a goal in the football match.",
           "We booked flights and a hotel for our holiday trip to Spain.",
           "Whisk the eggs with sugar and bake the cake for thirty minutes."]


def test_routes_missing_label_and_weak_label(small_index, minilm):
    zs = EmbeddingZeroShot(minilm)
    predictor = Predictor(small_index, minilm, zs, labels="sports,food,music,travel=travel|holiday", min_examples=3,
                          k=3, m=1)
    assert predictor.label_names_ == ["sports", "food", "music", "travel"]
    assert predictor.covered_labels_ == ["sports", "food"] and predictor.weak_labels_ == ["music", "travel"]
    assert predictor.label_counts_ == {"sports": 6, "food": 6, "music": 2, "travel": 0}
    preds = predictor.predict(QUERIES)
    assert [p.labels for p in preds] == [("sports",), ("travel",), ("food",)]
    assert [(p.route, p.reason) for p in preds] == [("knn", "neighbours"), ("zeroshot-embed", "weak-label"),
                                                    ("knn", "neighbours")]
    assert preds[0].scores["sports"] == pytest.approx(1.0)  # kNN vote fraction on the knn route
    assert 0 < preds[1].scores["travel"] <= 1 and np.isfinite(preds[1].top_similarity)


def test_routes_far_query_no_vote_and_no_index(small_index, minilm):
    zs = EmbeddingZeroShot(minilm)
    far = Predictor(small_index, minilm, zs, labels="sports,food,music", min_examples=2, k=3, m=1,
                    similarity_threshold=0.99).predict(QUERIES[:1])
    assert (far[0].route, far[0].reason, far[0].labels) == ("zeroshot-embed", "far", ("sports",))
    near = Predictor(small_index, minilm, zs, min_examples=2, k=3, m=1, similarity_threshold=0.2).predict(QUERIES[:1])
    assert (near[0].route, near[0].reason) == ("knn", "neighbours")
    no_vote = Predictor(small_index, minilm, zs, min_examples=2, k=14, m=14).predict(QUERIES[:1])
    assert (no_vote[0].route, no_vote[0].reason, no_vote[0].labels) == ("zeroshot-embed", "no-vote", ("sports",))
    alone = Predictor(small_index, minilm, None, k=14, m=14).predict(QUERIES[:1])  # plain kNN: no fallback
    assert (alone[0].route, alone[0].reason, alone[0].labels) == ("knn", "no-vote", ())
    empty = Predictor(None, None, EmbeddingZeroShot(minilm), labels="sports,food,travel").predict(QUERIES)
    assert [p.labels for p in empty] == [("sports",), ("travel",), ("food",)]
    assert {(p.route, p.reason) for p in empty} == {("zeroshot-embed", "no-index")}
    assert all(np.isnan(p.top_similarity) for p in empty)


def test_predictor_errors(small_index, minilm):
    with pytest.raises(FewlabelError, match="label list is empty"):
        Predictor(None, None, EmbeddingZeroShot(minilm))
    with pytest.raises(FewlabelError, match="no examples in the index and there is no zero-shot"):
        Predictor(small_index, minilm, None, labels="sports,travel")
    with pytest.raises(FewlabelError, match="multi_label=False"):
        Predictor(small_index, minilm, EmbeddingZeroShot(minilm, multi_label=True))
    with pytest.raises(FewlabelError, match="needs an index, a zero-shot scorer"):
        Predictor(None, None, None)


def test_tune_and_settings_round_trip(small_index, minilm, tmp_path):
    valid = [Row(text=t, labels=(lab,), id=str(i), line=i + 1) for i, (t, lab) in enumerate([
        (QUERIES[0], "sports"), (QUERIES[1], "travel"), (QUERIES[2], "food"),
        ("The crowd cheered as the runner crossed the finish line.", "sports"),
        ("Pack your passport and sunscreen for the beach resort.", "travel")])]
    predictor = Predictor(small_index, minilm, EmbeddingZeroShot(minilm), labels="sports,food,music,travel",
                          min_examples=3, k=3, m=1).tune(valid)
    tuning = predictor.tuning_
    assert tuning["n_valid"] == 5 and tuning["curve"] and tuning["metric"] == "macro"
    assert tuning["score"] == max(point["macro_f1"] for point in tuning["curve"])  # the best point is the one kept
    assert tuning["score"] >= tuning["knn_alone"]["macro_f1"]  # kNN alone can never give "travel"
    settings = json.loads(json.dumps(predictor.settings()))  # JSON-ready
    assert settings["weak_labels"] == ["music", "travel"] and settings["route"] == "zeroshot-embed"
    small_index.extra["fallback"] = settings
    folder = small_index.save(tmp_path / "idx")
    loaded = LabelIndex.load(folder)
    kwargs = predictor_kwargs(loaded.extra["fallback"])
    assert kwargs["similarity_threshold"] == predictor.similarity_threshold and kwargs["min_examples"] == 3
    again = Predictor(loaded, minilm, EmbeddingZeroShot(minilm), k=3, m=1, **kwargs)
    assert again.weak_labels_ == ["music", "travel"]
    assert [p.labels for p in again.predict(QUERIES)] == [p.labels for p in predictor.predict(QUERIES)]
    small_index.extra.pop("fallback")


# ---- a few-step NLI training run ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nli_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("nli")
    train = write(d / "train.json", klue_json(NLI_TRAIN))
    dev = write(d / "dev.tsv", xnli_tsv(NLI_DEV))
    test = write(d / "test.jsonl", mnli_jsonl(NLI_DEV[::-1]))
    out = d / "nli-model"
    code = main(["-q", "finetune", "nli", "--train", str(train), "--dev", str(dev), "--test", str(test), "--base",
                 "minilm", "--out", str(out), "--epochs", "1", "--batch-size", "8", "--max-length", "32",
                 "--max-steps", "2", "--warmup-ratio", "0", "--seed", "0", "--device", "cpu"])
    assert code == 0
    return out


def test_nli_training_saves_and_reloads(nli_dir, capsys):
    marker = json.loads((nli_dir / "fewlabel_model.json").read_text())
    assert marker["kind"] == "nli-cross-encoder" and marker["base"] == "minilm" and marker["steps"] == 2
    assert marker["id2label"] == {"0": "entailment", "1": "neutral", "2": "contradiction"}
    assert marker["data"]["train_pairs"] == 16 and marker["settings"]["max_length"] == 32
    config = json.loads((nli_dir / "config.json").read_text())
    assert config["id2label"] == marker["id2label"]
    scores = json.loads((nli_dir / "scores.json").read_text())
    assert scores["test"]["n"] == 6 and set(scores["test"]["per_class"]) == {"entailment", "neutral", "contradiction"}
    assert 0 <= scores["test"]["accuracy"] <= 1 and len(scores["test"]["confusion"]["matrix"]) == 3
    card = (nli_dir / "README.md").read_text()
    assert "Test (held out" in card and "id2label" in card
    assert not (nli_dir / "checkpoints").exists()

    zs = NLIZeroShot(str(nli_dir), labels="sports,food=food|cooking", device="cpu")
    assert (zs.label_map.entailment, zs.label_map.contradiction) == (0, 2)
    single = zs.scores(QUERIES)
    assert single.shape == (3, 2) and single.sum(axis=1) == pytest.approx([1, 1, 1])
    logits = zs.logits(QUERIES[:1], ["This example is about sports."])
    assert logits.shape == (1, 1, 3)
    zs_multi = NLIZeroShot(str(nli_dir), labels="sports", multi_label=True, device="cpu")
    assert zs_multi.scores(QUERIES[:1])[0, 0] == pytest.approx(1 / (1 + np.exp(logits[0, 0, 2] - logits[0, 0, 0])),
                                                               abs=1e-5)
    routed = Predictor(None, None, zs).predict(QUERIES[:2])
    assert {p.route for p in routed} == {"zeroshot-nli"} and all(len(p.labels) == 1 for p in routed)


def test_nli_checkpoint_with_nonstandard_order(nli_dir, tmp_path):
    folder = tmp_path / "permuted"
    shutil.copytree(nli_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "CONTRADICTION", "1": "Neutral", "2": "entailment"}
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    (folder / "config.json").write_text(json.dumps(config))
    zs = NLIZeroShot(str(folder), labels="sports", multi_label=True, device="cpu")
    assert (zs.label_map.entailment, zs.label_map.contradiction, zs.label_map.neutral) == (2, 0, 1)
    logits = zs.logits(QUERIES[:1], ["This example is about sports."])[0, 0]
    assert zs.scores(QUERIES[:1])[0, 0] == pytest.approx(1 / (1 + np.exp(logits[0] - logits[2])), abs=1e-5)


def test_checkpoint_without_entailment_label(nli_dir, tmp_path):
    folder = tmp_path / "unnamed"
    shutil.copytree(nli_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="no entailment label in its id2label"):
        NLIZeroShot(str(folder))


def test_unknown_models_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        NLIZeroShot(str(tmp_path / "missing" / "model"))
    with pytest.raises(ModelError, match="unknown NLI model 'no-such-org/no-such-nli'"):
        NLIZeroShot("no-such-org/no-such-nli")  # conftest keeps the hub offline: fails fast
    with pytest.raises(ModelError, match="is an encoder, not an NLI checkpoint"):
        NLIZeroShot("minilm")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        NLIZeroShot(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="no zero-shot model"):
        load_zero_shot("")


# ---- CLI ----------------------------------------------------------------------------------------------------
@pytest.fixture()
def texts_csv(tmp_path):
    rows = [("q1", QUERIES[0], "sports"), ("q2", QUERIES[1], "travel"), ("q3", QUERIES[2], "food")]
    with open(tmp_path / "texts.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text", "label"])
        writer.writerows(rows)
    return tmp_path / "texts.csv"


def test_cli_zeroshot_embed_with_gold_labels(texts_csv, tmp_path, capsys):
    out = tmp_path / "zs.csv"
    assert main(["-q", "zeroshot", str(texts_csv), "--labels", "sports,food,travel=travel|holiday", "--model", "embed",
                 "--encoder", "minilm", "--id-col", "id", "--label-col", "label", "--no-cache",
                 "--out", str(out)]) == 0
    table = list(csv.reader(out.open(encoding="utf-8")))
    assert table[0] == ["id", "labels", "route", "reason", "score:sports", "score:food", "score:travel"]
    assert [r[:4] for r in table[1:]] == [["q1", '["sports"]', "zeroshot-embed", "no-index"],
                                          ["q2", '["travel"]', "zeroshot-embed", "no-index"],
                                          ["q3", '["food"]', "zeroshot-embed", "no-index"]]
    meta = json.loads((tmp_path / "zs.csv.meta.json").read_text())
    assert meta["metrics"]["macro_f1"] == 1.0 and meta["routes"] == {"zeroshot-embed": 3}
    assert "macro-F1 1.0000" in capsys.readouterr().out


def test_cli_zeroshot_nli_multi_label_jsonl(nli_dir, texts_csv, tmp_path):
    out = tmp_path / "zs.jsonl"
    assert main(["-q", "zeroshot", str(texts_csv), "--labels", "sports,food", "--model", str(nli_dir),
                 "--multi-label", "--threshold", "0.0", "--template", "It is about {}.", "--device", "cpu",
                 "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3 and all(p["route"] == "zeroshot-nli" for p in lines)
    assert all(p["labels"] == ["sports", "food"] for p in lines)  # threshold 0: every label is kept
    # a threshold between the scores keeps exactly the labels at or above it (multi-label: each label on its own)
    values = sorted({v for p in lines for v in p["scores"].values()})
    assert len(values) >= 2, lines
    middle = (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
    assert main(["-q", "zeroshot", str(texts_csv), "--labels", "sports,food", "--model", str(nli_dir),
                 "--multi-label", "--threshold", repr(middle), "--template", "It is about {}.", "--device", "cpu",
                 "--out", str(out)]) == 0
    cut = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["scores"] for p in cut] == [p["scores"] for p in lines]
    assert [set(p["labels"]) for p in cut] == [{n for n, v in p["scores"].items() if v >= middle} for p in lines]
    assert any(p["labels"] for p in cut) and any(len(p["labels"]) < 2 for p in cut)


def test_cli_predict_with_fallback(small_index, texts_csv, tmp_path, capsys):
    folder = small_index.save(tmp_path / "idx")
    out = tmp_path / "pred.csv"
    assert main(["-q", "predict", str(folder), str(texts_csv), "--id-col", "id", "--fallback", "embed",
                 "--labels", "sports,food,music,travel", "--min-examples", "3", "--k", "3", "--m", "1",
                 "--tune-fallback", str(texts_csv), "--save-fallback", "--no-cache", "--out", str(out)]) == 0
    table = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["route"] for r in table] == ["knn", "zeroshot-embed", "knn"]
    assert [json.loads(r["labels"]) for r in table] == [["sports"], ["travel"], ["food"]]
    assert "top_similarity" in table[0] and "score:travel" in table[0]
    assert "routes: knn 2, zeroshot-embed 1" in capsys.readouterr().out
    stored = json.loads((folder / "meta.json").read_text())["fallback"]
    assert stored["weak_labels"] == ["music", "travel"] and stored["tuning"]["n_valid"] == 3
    plain = tmp_path / "plain.csv"  # without --fallback: the kNN output as before (no route column)
    assert main(["-q", "predict", str(folder), str(texts_csv), "--k", "3", "--m", "1", "--no-cache",
                 "--out", str(plain)]) == 0
    assert "route" not in next(csv.reader(plain.open(encoding="utf-8")))


@pytest.mark.parametrize("argv, message", [
    (["zeroshot", "{texts}", "--labels", " , ", "--out", "{out}"], "label list is empty"),
    (["zeroshot", "{texts}", "--labels", "a,b", "--model", "no-such-org/no-such-nli", "--out", "{out}"],
     "unknown NLI model"),
    (["zeroshot", "{texts}", "--labels", "a,b", "--model", "{missing}", "--out", "{out}"], "does not exist"),
    (["zeroshot", "{texts}", "--labels", "a", "--template", "no slot", "--out", "{out}"], "label's place"),
    (["predict", "{missing}", "{texts}", "--fallback", "nli", "--out", "{out}"], "needs --nli-model"),
])
def test_cli_errors_are_one_line(argv, message, texts_csv, tmp_path, capsys):
    filled = [a.format(texts=texts_csv, out=tmp_path / "o.csv", missing=tmp_path / "missing") for a in argv]
    assert main(["-q", *filled]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fewlabel: error:") and message in err and "\n" not in err


def test_new_commands_have_help():
    parser = build_parser()
    for argv in (["zeroshot", "--help"], ["finetune", "nli", "--help"], ["predict", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 0


def test_label_set_is_validated():
    with pytest.raises(FewlabelError, match="label list is empty"):
        LabelSet(())
    assert LabelSet(("a",)).aliases == {"a": ("a",)}
