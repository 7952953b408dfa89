"""Relation extraction: the KLUE-RE readers (JSON and competition CSV) and SemEval-2010 conversion on a
Korean fixture with entities at known offsets, the three input renderings (markers around the right
characters, multibyte offsets intact), the metrics against hand-computed values, the submission writer, the
few-shot kNN and episodes, and one few-step training run that saves, reloads and predicts. Real MiniLM,
tiny data."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from fewlabel.indexing.errors import DataError, FewlabelError
from fewlabel.indexing.relation.data import (
    SEMEVAL_LABELS,
    Entity,
    RelationRow,
    detect_relation_format,
    infer_labels,
    parse_tagged_sentence,
    read_relation_labels,
    read_relations,
)
from fewlabel.indexing.relation.metrics import auprc, micro_f1_without, relation_metrics, semeval_official, undirected
from fewlabel.indexing.relation.render import ENTITY_MARKERS, render, type_word
from fewlabel.indexing.text import has_hangul
from fewlabel.retrieval.cli import main
from fewlabel.retrieval.relation.classifier import normalise_probs, read_submission, write_submission
from fewlabel.retrieval.relation.fewshot import RelationKNN, embed_relations, run_episodes, sample_episodes

FIXTURES = Path(__file__).parent / "fixtures" / "klue_re"
KLUE_JSON, KLUE_CSV, LABEL_FILE = FIXTURES / "train.json", FIXTURES / "train.csv", FIXTURES / "relation_list.json"
LABELS = read_relation_labels(LABEL_FILE)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def klue_items() -> list[dict]:
    return json.loads(KLUE_JSON.read_text(encoding="utf-8"))


# ---- readers ---------------------------------------------------------------------------------------------
def test_label_list_is_klue_order():
    assert len(LABELS) == 30 and LABELS[0] == "no_relation" and LABELS[1] == "org:dissolved"
    assert LABELS[-1] == "per:title" and LABELS.index("per:place_of_birth") == 14


def test_klue_json_and_csv_give_the_same_rows():
    from_json = read_relations(KLUE_JSON, labels=LABELS)
    from_csv = read_relations(KLUE_CSV, labels=LABELS)
    assert len(from_json) == len(from_csv) == 12
    assert detect_relation_format(KLUE_JSON.read_text(encoding="utf-8")) == "klue"
    assert detect_relation_format(KLUE_CSV.read_text(encoding="utf-8")) == "klue-csv"
    for a, b in zip(from_json, from_csv, strict=True):
        assert (a.sentence, a.subject, a.object, a.label) == (b.sentence, b.subject, b.object, b.label)
    first = from_json[0]
    assert first.id == "klue-re-fixture-00" and from_csv[0].id == "0" and first.line == 2 and from_csv[0].line == 2
    assert first.subject == Entity("이순신", 0, 2, "PER") and first.object == Entity("1545년", 5, 9, "DAT")
    assert first.label == "per:date_of_birth"
    assert from_json[1].object == Entity("서울", 11, 12, "LOC")
    assert from_json[2].object == Entity("이병철", 6, 8, "PER") and from_json[2].subject.start == 15  # object first
    emoji = from_json[10]
    assert emoji.sentence.startswith("🎵 ") and emoji.subject == Entity("아이유", 2, 4, "PER")  # the emoji is 1 char
    for row in from_json:
        assert row.sentence[row.subject.start:row.subject.end + 1] == row.subject.word
        assert row.sentence[row.object.stop_slice] == row.object.word


def test_integer_labels_and_placeholder_labels(tmp_path):
    items = klue_items()[:2]
    items[0]["label"], items[1]["label"] = 0, 14  # the Hugging Face copy stores indices
    path = write(tmp_path / "hf.json", json.dumps(items, ensure_ascii=False))
    assert [r.label for r in read_relations(path, labels=LABELS)] == ["no_relation", "per:place_of_birth"]
    with pytest.raises(DataError, match="needs the label list"):
        read_relations(path)
    items[0]["label"] = items[1]["label"] = 100  # the competition test file's placeholder
    path = write(tmp_path / "test.json", json.dumps(items, ensure_ascii=False))
    with pytest.raises(DataError, match="outside 0-29"):
        read_relations(path, labels=LABELS)
    assert [r.label for r in read_relations(path, labels=LABELS, keep_labels=False)] == [None, None]


def test_offset_mismatch_is_a_clear_error(tmp_path):
    items = klue_items()
    items[3]["object_entity"]["start_idx"] += 1  # '기도 수원시' is not '경기도 수원시'
    path = write(tmp_path / "bad.json", json.dumps(items, ensure_ascii=False, indent=1))
    item_starts = [n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if line == " {"]
    with pytest.raises(DataError) as info:
        read_relations(path)
    err = info.value
    assert err.field == "object_entity" and err.path == str(path) and err.line == item_starts[3]
    assert "give '기도 수원시" in str(err) and "'경기도 수원시'" in str(err)
    items = klue_items()
    items[0]["subject_entity"]["end_idx"] = 99
    with pytest.raises(DataError, match="outside the sentence"):
        read_relations(write(tmp_path / "far.json", json.dumps(items, ensure_ascii=False)))


def test_csv_entities_are_parsed_as_literals_only(tmp_path):
    lines = KLUE_CSV.read_text(encoding="utf-8").splitlines()
    row = next(csv.reader([lines[1]]))
    row[2] = "__import__('os').getcwd()"
    with open(tmp_path / "evil.csv", "w", encoding="utf-8", newline="") as fh:
        fh.write(lines[0] + "\n")
        csv.writer(fh).writerow(row)
    with pytest.raises(DataError) as info:
        read_relations(tmp_path / "evil.csv")
    assert info.value.field == "subject_entity" and info.value.line == 2 and "dict literal" in str(info.value)
    row[2] = "['이순신', 0, 2]"
    with open(tmp_path / "list.csv", "w", encoding="utf-8", newline="") as fh:
        fh.write(lines[0] + "\n")
        csv.writer(fh).writerow(row)
    with pytest.raises(DataError, match="found list"):
        read_relations(tmp_path / "list.csv")


def test_unknown_label_duplicate_id_and_partial_labels(tmp_path):
    items = klue_items()[:3]
    items[1]["label"] = "per:favourite_food"
    with pytest.raises(DataError, match="unknown label 'per:favourite_food'"):
        read_relations(write(tmp_path / "a.json", json.dumps(items, ensure_ascii=False)), labels=LABELS)
    items = klue_items()[:3]
    items[2]["guid"] = items[0]["guid"]
    with pytest.raises(DataError, match="duplicate id"):
        read_relations(write(tmp_path / "b.json", json.dumps(items, ensure_ascii=False)))
    items = klue_items()[:3]
    items[1]["label"] = ""
    with pytest.raises(DataError, match="no label but others do"):
        read_relations(write(tmp_path / "c.json", json.dumps(items, ensure_ascii=False)))


def test_semeval_tags_become_rows(tmp_path):
    clean, e1, e2 = parse_tagged_sentence("The <e1>child</e1> was put into the <e2>cradle</e2>.")
    assert clean == "The child was put into the cradle."
    assert (e1, e2) == (Entity("child", 4, 8, None), Entity("cradle", 27, 32, None))
    for bad, reason in (("The <e1>child</e1> sat.", "one <e2>"), ("<e1>a <e2>b</e1> c</e2>", "overlap"),
                        ("</e1>a<e1> <e2>b</e2>", "before"), ("<e1></e1> <e2>b</e2>", "no word")):
        with pytest.raises(ValueError, match=reason):
            parse_tagged_sentence(bad)
    jsonl = write(tmp_path / "se.jsonl", "\n".join(json.dumps(o) for o in [
        {"id": 1, "sentence": "The <e1>author</e1> uses a <e2>disassembler</e2>.",
         "relation": "Instrument-Agency(e2,e1)", "comment": ""},
        {"id": 2, "sentence": "A <e1>cup</e1> of <e2>tea</e2>.", "relation": "Other", "comment": ""}]) + "\n")
    txt = write(tmp_path / "TRAIN_FILE.TXT", '1\t"The <e1>author</e1> uses a <e2>disassembler</e2>."\n'
                'Instrument-Agency(e2,e1)\nComment:\n\n2\t"A <e1>cup</e1> of <e2>tea</e2>."\nOther\nComment:\n\n')
    a, b = read_relations(jsonl), read_relations(txt)
    assert [(r.id, r.sentence, r.subject, r.object, r.label) for r in a] == \
        [(r.id, r.sentence, r.subject, r.object, r.label) for r in b]
    assert a[0].subject == Entity("author", 4, 9, None) and a[0].object.word == "disassembler"
    assert (b[0].line, b[1].line) == (1, 5)
    bad = write(tmp_path / "bad.jsonl", json.dumps({"id": 3, "sentence": "<e1>a</e1> <e2>b</e2>",
                                                    "relation": "Cause-Effect"}) + "\n")
    with pytest.raises(DataError, match="unknown label 'Cause-Effect'"):
        read_relations(bad)
    assert infer_labels(a) == ["Other", "Instrument-Agency(e2,e1)"]


def test_semeval_shared_test_set(shared_data):
    rows = read_relations(shared_data / "semeval2010_task8" / "test.jsonl")
    assert len(rows) == 2717 and {r.label for r in rows} <= set(SEMEVAL_LABELS)
    assert all(r.sentence[r.subject.stop_slice] == r.subject.word and r.subject.type is None for r in rows)


# ---- renderings ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def klue_rows() -> list[RelationRow]:
    return read_relations(KLUE_JSON, labels=LABELS)


def test_typed_markers_in_korean(klue_rows):
    r = render(klue_rows[0], "typed")
    assert r.text == "@ * 사람 * 이순신 @은 # ^ 날짜 ^ 1545년 # 서울 건천동에서 태어났다."
    assert r.query == "@ * 사람 * 이순신 @ # ^ 날짜 ^ 1545년 #" and r.pair() == (r.text, r.query)
    assert (r.subject_marker, r.subject_span, r.object_marker, r.object_span) == (0, (9, 12), 16, (25, 30))
    r = render(klue_rows[2], "typed")  # the object comes first
    assert r.text == "1969년 # ^ 사람 ^ 이병철 #이 설립한 @ * 단체 * 삼성전자 @는 전자 회사이다."
    assert r.text[r.object_marker:r.object_span[0]] == "# ^ 사람 ^ " and r.text[slice(*r.object_span)] == "이병철"


def test_markers_land_around_the_words(klue_rows):
    for row in klue_rows:
        for marker in ("entity", "typed"):
            r = render(row, marker)
            assert r.text[slice(*r.subject_span)] == row.subject.word
            assert r.text[slice(*r.object_span)] == row.object.word
            opening = "[E1] " if marker == "entity" else f"@ * {type_word(row.subject.type, row.sentence)} * "
            assert r.text[r.subject_marker:r.subject_span[0]] == opening
            closing = " [/E2]" if marker == "entity" else " #"
            assert r.text[r.object_span[1]:r.object_span[1] + len(closing)] == closing
        unmarked = render(row, "entity").text
        for piece in ("[E1] ", " [/E1]", "[E2] ", " [/E2]"):
            unmarked = unmarked.replace(piece, "")
        assert unmarked == row.sentence  # only the markers were added
    emoji = render(klue_rows[10], "typed")
    assert emoji.text.startswith("🎵 @ * 사람 * 아이유 @는") and emoji.text[slice(*emoji.subject_span)] == "아이유"


def test_baseline_entity_and_type_words(klue_rows):
    r = render(klue_rows[2], "baseline")
    assert r.pair() == ("삼성전자[SEP]이병철", "1969년 이병철이 설립한 삼성전자는 전자 회사이다.")
    assert render(klue_rows[2], "baseline", sep="</s>").pair()[0] == "삼성전자</s>이병철"
    assert r.text[slice(*r.subject_span)] == "삼성전자" and r.subject_marker is None
    r = render(klue_rows[2], "entity")
    assert r.text == "1969년 [E2] 이병철 [/E2]이 설립한 [E1] 삼성전자 [/E1]는 전자 회사이다."
    assert set(ENTITY_MARKERS) <= set(r.text.split()) | set(r.query.split())
    english = RelationRow("e", "Barack Obama was born in Honolulu.", Entity("Barack Obama", 0, 11, "PER"),
                          Entity("Honolulu", 25, 32, "LOC"), "per:place_of_birth", 1)
    assert render(english, "typed").text == "@ * person * Barack Obama @ was born in # ^ location ^ Honolulu #."
    assert render(klue_rows[0], "typed", type_language="code").text.startswith("@ * PER * 이순신 @")
    assert render(klue_rows[0], "typed", type_language="en").text.startswith("@ * person * 이순신 @")
    assert [type_word(t, "한국어") for t in ("PER", "ORG", "LOC", "DAT", "POH", "NOH")] == \
        ["사람", "단체", "장소", "날짜", "기타", "수량"]
    assert type_word("XYZ", "abc") == "XYZ" and type_word(None, "abc") is None
    assert has_hangul("abc 가") and not has_hangul("abc")
    semeval = RelationRow("s", "The child in the cradle.", Entity("child", 4, 8), Entity("cradle", 17, 22), None, 1)
    assert render(semeval, "typed").text == "The @ child @ in the # cradle #."
    with pytest.raises(FewlabelError, match="unknown input rendering"):
        render(semeval, "fancy")


def test_overlapping_mentions_stay_balanced():
    row = RelationRow("o", "ab cd", Entity("ab cd", 0, 4, "PER"), Entity("cd", 3, 4, "PER"), None, 1)
    r = render(row, "entity")
    assert r.text == "[E1] ab [E2] cd [/E2] [/E1]" and r.text[slice(*r.object_span)] == "cd"


# ---- metrics ---------------------------------------------------------------------------------------------
def test_micro_f1_without_no_relation_by_hand():
    gold = ["A", "C", "no", "no", "A"]  # C is never predicted
    pred = ["A", "no", "A", "no", "B"]
    # correct relation predictions: 1; relation predictions: 3 (A, A, B); gold relations: 3 (A, C, A)
    assert micro_f1_without(gold, pred, "no") == pytest.approx(1 / 3)
    from sklearn.metrics import f1_score

    assert micro_f1_without(gold, pred, "no") == pytest.approx(
        f1_score(gold, pred, labels=["A", "B", "C"], average="micro"))
    assert micro_f1_without(["no", "no"], ["no", "no"], "no") == 0.0  # no relation to find: nothing earned
    assert micro_f1_without([0, 3, 3], [0, 3, 0], 0) == pytest.approx(2 / 3)  # indices work too: P 1, R 1/2
    with pytest.raises(DataError, match="2 gold labels but 1"):
        micro_f1_without(["a", "b"], ["a"], "no")


def test_auprc_by_hand():
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.4, 0.2, 0.4], [0.2, 0.1, 0.7]])
    gold = [0, 1, 0, 1]  # class 2 has no gold example: left out
    # class 0, scores .8 .6 .4 .2 for gold 1 0 1 0: curve (r, p) = (0, 1) (.5, 1) (.5, .5) (1, 2/3), area
    # 0.5 * 1 + 0.5 * (0.5 + 2/3) / 2 = 19/24. class 1, scores .1 .3 .2 .1 for gold 0 1 0 1 (a tie at .1):
    # (0, 1) (.5, 1) (.5, .5) (1, .5), area 0.5 + 0.5 * 0.5 = 3/4
    mean, per_class = auprc(probs, gold, per_class=True)
    assert per_class == pytest.approx({0: 19 / 24, 1: 3 / 4})
    assert mean == pytest.approx((19 / 24 + 3 / 4) / 2)
    gold = [0, 1, 0, 2]
    assert auprc(probs, gold, per_class=True)[1][2] == pytest.approx(1.0)


def test_semeval_official_macro_f1_by_hand():
    gold = ["Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Component-Whole(e1,e2)", "Other", "Cause-Effect(e1,e2)",
            "Message-Topic(e1,e2)"]
    pred = ["Cause-Effect(e1,e2)", "Cause-Effect(e1,e2)", "Other", "Component-Whole(e2,e1)",
            "Member-Collection(e1,e2)", "Other"]
    scores = semeval_official(gold, pred)
    ce, cw, mt = (scores["per_relation"][k] for k in ("Cause-Effect", "Component-Whole", "Message-Topic"))
    # Cause-Effect: 1 right; predicted 2 (one with the wrong direction); gold 3 -> P 1/2, R 1/3, F1 0.4
    assert (ce["correct"], ce["predicted"], ce["gold"], ce["wrong_direction"]) == (1, 2, 3, 1)
    assert ce["f1"] == pytest.approx(0.4)
    # Component-Whole: predicted once (for an Other row), never right; Message-Topic: never predicted
    assert (cw["f1"], cw["predicted"], mt["f1"], mt["predicted"]) == (0.0, 1, 0.0, 0)
    # Member-Collection is only predicted, never gold: the scorer averages over gold relations only (3 here)
    assert scores["relations"] == 3 and "Member-Collection" not in scores["per_relation"]
    assert scores["macro_f1"] == pytest.approx(0.4 / 3)
    # micro over the same relations: correct 1, predicted 2 + 1 + 0, gold 3 + 1 + 1 -> P 1/3, R 1/5
    assert scores["micro_f1"] == pytest.approx(2 * (1 / 3) * (1 / 5) / (1 / 3 + 1 / 5))
    perfect = [f"{r.split('(')[0]}(e2,e1)" for r in SEMEVAL_LABELS[1::2]]
    assert semeval_official(perfect, perfect)["macro_f1"] == 1.0 and len(perfect) == 9
    flipped = [p.replace("(e2,e1)", "(e1,e2)") for p in perfect]
    assert semeval_official(perfect, flipped)["macro_f1"] == 0.0  # the direction must be right
    assert undirected("Entity-Origin(e2,e1)") == "Entity-Origin" and undirected("Other") == "Other"


def test_relation_metrics_combines_them():
    labels = list(SEMEVAL_LABELS)
    gold = ["Other", "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)"]
    probs = np.full((3, 19), 0.01)
    for i, name in enumerate(["Other", "Cause-Effect(e1,e2)", "Cause-Effect(e1,e2)"]):
        probs[i, labels.index(name)] = 0.9
    scores = relation_metrics(gold, probs, labels, "Other")
    assert scores["micro_f1"] == pytest.approx(0.5) and scores["accuracy"] == pytest.approx(2 / 3)
    assert scores["semeval_macro_f1"] == pytest.approx(2 * 0.5 * 0.5 / 1.0)  # P 1/2, R 1/2 for Cause-Effect
    assert scores["auprc_classes"] == 3
    with pytest.raises(DataError, match="not in the label list"):
        relation_metrics(["nope"], probs[:1], labels, "Other")


# ---- submission ------------------------------------------------------------------------------------------
def test_submission_has_30_ordered_probabilities(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.random((4, 30)) * 3  # not normalised: the writer normalises
    scores[2, LABELS.index("per:title")] = 50
    path = write_submission(["a", "b", "c", "d"], scores, LABELS, tmp_path / "submission.csv")
    with open(path, encoding="utf-8", newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["id", "pred_label", "probs"] and [r[0] for r in table[1:]] == ["a", "b", "c", "d"]
    for (_, label, cell), row in zip(table[1:], scores, strict=True):
        probs = json.loads(cell)
        assert len(probs) == 30 and math.isclose(sum(probs), 1.0, abs_tol=1e-9)
        assert label == LABELS[int(np.argmax(probs))] == LABELS[int(np.argmax(row))]
        assert np.allclose(probs, row / row.sum())  # the order is the label list's
    assert table[3][1] == "per:title"
    ids, predicted, probs = read_submission(path, LABELS)
    assert ids == ["a", "b", "c", "d"] and probs.shape == (4, 30) and predicted[2] == "per:title"
    assert np.allclose(normalise_probs(np.zeros((1, 3))), 1 / 3)
    with pytest.raises(FewlabelError, match="must end in .csv"):
        write_submission(["a"], scores[:1], LABELS, tmp_path / "s.json")
    with pytest.raises(DataError, match="non-negative"):
        write_submission(["a"], -scores[:1], LABELS, tmp_path / "s.csv")


# ---- few-shot kNN ----------------------------------------------------------------------------------------
def unit(*rows) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_relation_knn_and_prototypes():
    X = unit([1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.1, 0.9, 0])
    y = ["a", "a", "b", "b"]
    for method in ("knn", "prototype"):
        knn = RelationKNN(k=2, method=method).fit(X, y, labels=["a", "b", "c"])
        probs = knn.predict_proba(unit([1, 0.05, 0], [0, 1, 0.1]))
        assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1) and (probs[:, 2] == 0).all()
        assert knn.predict(unit([1, 0.05, 0], [0, 1, 0.1])) == ["a", "b"]
    knn = RelationKNN(k=1).fit(X, y)  # one neighbour: only its class gets a vote (its cosine)
    assert knn.scores(unit([1, 0, 0]))[0] == pytest.approx([1.0, 0.0], abs=1e-6)
    proto = RelationKNN(method="prototype").fit(X, y)
    means = unit(X[:2].mean(axis=0), X[2:].mean(axis=0))
    assert proto.scores(unit([1, 0, 0]))[0] == pytest.approx(means[:, 0], abs=1e-6)
    with pytest.raises(DataError, match="L2-normalised"):
        knn.predict(np.array([[2.0, 0, 0]]))
    with pytest.raises(FewlabelError, match="method"):
        RelationKNN(method="svm").fit(X, y)


def test_episodes_are_disjoint_and_reproducible():
    labels = [c for c in "abcd" for _ in range(6)] + ["no_relation"] * 10
    episodes = sample_episodes(labels, n_way=3, k_shot=2, n_query=3, episodes=20, seed=1, exclude=["no_relation"])
    assert episodes == sample_episodes(labels, n_way=3, k_shot=2, n_query=3, episodes=20, seed=1,
                                       exclude=["no_relation"])
    for ep in episodes:
        assert len(ep.classes) == 3 and len(ep.support) == 6 and len(ep.query) == 9
        assert not set(ep.support) & set(ep.query) and "no_relation" not in ep.classes
        assert sorted(labels[i] for i in ep.support) == sorted(list(ep.classes) * 2)
    vectors = np.eye(4, dtype=np.float32)[["abcd".index(c) if c in "abcd" else 0 for c in labels]]
    result = run_episodes(vectors, labels, episodes, k=2)
    assert result["accuracy"] == 1.0 and result["episodes"] == 20
    with pytest.raises(DataError, match="only 4 have"):
        sample_episodes(labels, n_way=5, k_shot=1, n_query=1, exclude=["no_relation"])


def test_marked_sentences_embed_and_knn_cli(minilm, klue_rows, tmp_path, capsys):
    vectors = embed_relations(minilm, klue_rows[:3], marker="typed")
    assert vectors.shape == (3, minilm.dim) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    out = tmp_path / "knn.csv"
    code = main(["-q", "re", "knn", str(KLUE_JSON), str(KLUE_CSV), "--labels", str(LABEL_FILE), "--model", "minilm",
                 "--k", "1", "--out", str(out), "--no-cache", "--device", "cpu"])
    assert code == 0
    ids, predicted, probs = read_submission(out, LABELS)
    assert ids == [str(i) for i in range(12)] and predicted == [r.label for r in klue_rows]  # each finds itself
    assert "micro-F1 (without no_relation) 100.00" in capsys.readouterr().out
    assert json.loads(Path(str(out) + ".meta.json").read_text())["metrics"]["n"] == 12


# ---- training: a few steps, saved and reloaded -----------------------------------------------------------
class _FixedModel:
    """Stands in for a CrossEncoder: fixed logits, so the loss can be checked by hand."""

    def __init__(self, logits):
        import torch

        self.device = torch.device("cpu")
        self.logits = torch.tensor(logits, dtype=torch.float)

    def preprocess(self, pairs, prompt=None, task=None):
        return {"n": len(pairs)}

    def __call__(self, features):
        return {"scores": self.logits}


def test_losses_by_hand(klue_rows):
    import torch

    from fewlabel.finetune.relation.trainer import class_weights, relation_loss

    logits = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    model, labels = _FixedModel(logits), torch.tensor([0, 2])
    inputs = [["a", "b"], ["c", "d"]]
    p = torch.softmax(torch.tensor(logits), dim=1)
    p_true = torch.stack([p[0, 0], p[1, 2]])
    ce = relation_loss(model)(inputs, labels)
    assert ce.item() == pytest.approx((-torch.log(p_true)).mean().item(), rel=1e-5)
    focal = relation_loss(model, focal_gamma=2.0)(inputs, labels)
    assert focal.item() == pytest.approx(((1 - p_true) ** 2 * -torch.log(p_true)).mean().item(), rel=1e-5)
    weighted = relation_loss(model, weight=[1.0, 1.0, 3.0])(inputs, labels)
    assert weighted.item() == pytest.approx(((-torch.log(p_true)) * torch.tensor([1.0, 3.0])).sum().item() / 4,
                                            rel=1e-5)
    smooth = relation_loss(model, label_smoothing=0.3)(inputs, labels)
    assert smooth.item() > ce.item()
    rows = klue_rows[:3] + klue_rows[:1]  # per:date_of_birth twice, two other classes once: n=4, 3 present
    w = class_weights(rows, LABELS)
    assert w[LABELS.index("per:date_of_birth")] == pytest.approx(4 / (3 * 2))
    assert w[LABELS.index("per:place_of_birth")] == pytest.approx(4 / 3) and w[0] == 1.0


@pytest.fixture(scope="module")
def re_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("re") / "re-model"
    code = main(["-q", "finetune", "re", "--train", str(KLUE_JSON), "--dev", str(KLUE_CSV), "--labels",
                 str(LABEL_FILE), "--base", "minilm", "--marker", "typed", "--loss", "focal", "--label-smoothing",
                 "0.1", "--out", str(out), "--epochs", "1", "--batch-size", "6", "--max-length", "32", "--max-steps",
                 "2", "--warmup-ratio", "0", "--seed", "0", "--device", "cpu"])
    assert code == 0
    return out


def test_training_saves_and_reloads(re_dir, klue_rows, tmp_path, capsys):
    from fewlabel.retrieval.relation.classifier import RelationClassifier

    marker = json.loads((re_dir / "fewlabel_model.json").read_text())
    assert marker["kind"] == "re-cross-encoder" and marker["labels"] == LABELS and marker["marker"] == "typed"
    assert marker["steps"] == 2 and marker["base"] == "minilm" and marker["no_relation"] == "no_relation"
    assert marker["loss"] == "focal" and marker["label_smoothing"] == 0.1 and marker["settings"]["max_length"] == 32
    assert marker["sep"] == "[SEP]" and marker["data"]["train_rows"] == 12 and marker["dev_per_epoch"]
    config = json.loads((re_dir / "config.json").read_text())
    assert config["id2label"] == marker["id2label"] and config["id2label"]["29"] == "per:title"
    scores = json.loads((re_dir / "scores.json").read_text())["dev"]
    assert scores["n"] == 12
    assert "micro-F1" in (re_dir / "README.md").read_text() and not (re_dir / "checkpoints").exists()

    classifier = RelationClassifier(re_dir, device="cpu")
    probs = classifier.predict_proba(klue_rows)
    assert probs.shape == (12, 30) and np.allclose(probs.sum(axis=1), 1)
    again = RelationClassifier(re_dir, device="cpu").predict_proba(klue_rows[:2])
    assert np.allclose(again, probs[:2], atol=1e-5)  # the same model comes back
    # the saved dev scores are the saved model's: recomputed from its probabilities on the dev file
    dev_rows = read_relations(KLUE_CSV, labels=LABELS)
    expected = relation_metrics([r.label for r in dev_rows], classifier.predict_proba(dev_rows), LABELS,
                                "no_relation")
    assert scores["micro_f1"] == pytest.approx(expected["micro_f1"], abs=1e-4)
    assert scores["auprc"] == pytest.approx(expected["auprc"], abs=1e-2)

    out = tmp_path / "submission.csv"
    capsys.readouterr()
    assert main(["-q", "re", "predict", str(re_dir), str(KLUE_CSV), "--out", str(out), "--device", "cpu"]) == 0
    assert "micro-F1 (without no_relation)" in capsys.readouterr().out
    ids, predicted, written = read_submission(out, LABELS)
    assert ids == [str(i) for i in range(12)] and np.allclose(written, probs, atol=1e-5)
    assert main(["-q", "re", "evaluate", str(KLUE_CSV), str(out), "--labels", str(LABEL_FILE)]) == 0
    assert "AUPRC" in capsys.readouterr().out


def test_entity_markers_become_tokens():
    from sentence_transformers.cross_encoder import CrossEncoder

    from fewlabel.finetune.relation.trainer import add_entity_tokens
    from fewlabel.finetune.settings import resolve_base

    model = CrossEncoder(resolve_base("minilm")[0], num_labels=3, local_files_only=True, device="cpu")
    before = model.tokenizer.tokenize("[E1] 김연아 [/E1]")
    add_entity_tokens(model[0])
    after = model.tokenizer.tokenize("[E1] 김연아 [/E1]")
    assert after[0] == "[E1]" and after[-1] == "[/E1]" and len(after) < len(before)
    assert model[0].model.get_input_embeddings().weight.shape[0] == len(model.tokenizer)


def test_entity_start_pooling_reads_the_opening_markers():
    import torch

    from fewlabel.indexing.relation.pooling import EntityStartPooling, marker_token_ids

    tokens = torch.arange(2 * 6 * 2, dtype=torch.float).view(2, 6, 2)  # every position a different vector
    ids = torch.tensor([[101, 9, 5, 9, 7, 102], [101, 9, 9, 9, 9, 102]])  # row 2: markers truncated away
    out = EntityStartPooling([5], [7, 8], embedding_dimension=2)({"token_embeddings": tokens, "input_ids": ids})
    vectors = out["sentence_embedding"]
    assert vectors.shape == (2, 6)
    assert torch.equal(vectors[0], torch.cat([tokens[0, 0], tokens[0, 2], tokens[0, 4]]))
    assert torch.equal(vectors[1], torch.cat([tokens[1, 0], tokens[1, 0], tokens[1, 0]]))  # falls back to [CLS]

    from transformers import AutoTokenizer

    from fewlabel.finetune.settings import resolve_base

    tokenizer = AutoTokenizer.from_pretrained(resolve_base("minilm")[0], local_files_only=True)
    at = marker_token_ids(tokenizer, "@")
    assert [tokenizer.convert_ids_to_tokens(i) for i in at] == ["@"]
    with pytest.raises(ValueError, match="no single token"):
        marker_token_ids(tokenizer, "[E1]")  # not added yet: BERT splits it


def test_entity_start_training_saves_reloads_and_guards_its_module(klue_rows, tmp_path, capsys):
    from fewlabel.indexing.errors import ModelError
    from fewlabel.retrieval.relation.classifier import RelationClassifier

    out = tmp_path / "re-entity-start"
    args = ["-q", "finetune", "re", "--train", str(KLUE_JSON), "--dev", str(KLUE_CSV), "--labels", str(LABEL_FILE),
            "--base", "minilm", "--out", str(out), "--epochs", "1", "--batch-size", "6", "--max-length", "48",
            "--max-steps", "2", "--seed", "0", "--device", "cpu", "--pooling", "entity-start"]
    assert main([*args, "--marker", "baseline"]) == 2
    assert "entity-start pooling needs entity markers" in capsys.readouterr().err
    assert main([*args, "--marker", "entity"]) == 0
    marker = json.loads((out / "fewlabel_model.json").read_text())
    assert marker["pooling"] == "entity-start" and marker["steps"] == 2
    types = [m["type"] for m in json.loads((out / "modules.json").read_text())]
    assert types[1] == "fewlabel.indexing.relation.pooling.EntityStartPooling" and types[2].endswith("Dense")
    assert "entity-start" in (out / "README.md").read_text()

    classifier = RelationClassifier(out, device="cpu")
    probs = classifier.predict_proba(klue_rows)
    assert probs.shape == (12, 30) and np.allclose(probs.sum(axis=1), 1)
    assert classifier.describe()["pooling"] == "entity-start"
    pooling = classifier.model[1]
    assert pooling.subject_token_ids == [classifier.model.tokenizer.convert_tokens_to_ids("[E1]")]

    # a folder saved before fewlabel became one namespace names the module by its old path: it still loads,
    # and the alias is gone afterwards (no bare `indexing` module stays behind)
    modules = json.loads((out / "modules.json").read_text())
    modules[1]["type"] = "indexing.entity_pooling.EntityStartPooling"
    (out / "modules.json").write_text(json.dumps(modules))
    legacy = RelationClassifier(out, device="cpu")
    assert np.allclose(legacy.predict_proba(klue_rows), probs, atol=1e-6)
    assert "indexing.entity_pooling" not in sys.modules and "indexing" not in sys.modules

    modules[1]["type"] = "somewhere.else.Pooling"
    (out / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelError, match="somewhere.else.Pooling"):
        RelationClassifier(out, device="cpu")


def test_frozen_word_embeddings_stay_as_the_base_had_them(klue_rows, tmp_path):
    from safetensors.torch import load_file

    from fewlabel.finetune.relation.trainer import RelationOptions, train_re_classifier
    from fewlabel.finetune.settings import RunOptions, TrainSettings, resolve_base

    out = tmp_path / "frozen"
    run = RunOptions(device="cpu", show_progress=False)
    frozen = TrainSettings(freeze_embeddings=True, epochs=1, batch_size=6, max_length=32, max_steps=2, lr=1e-3,
                           warmup_ratio=0)
    train_re_classifier(klue_rows, klue_rows, LABELS, "minilm", out, frozen, RelationOptions(marker="typed"), run=run)
    base = load_file(str(next(Path(resolve_base("minilm")[0]).glob("*.safetensors"))))
    tuned = load_file(str(out / "model.safetensors"))
    key = next(k for k in base if k.endswith("word_embeddings.weight"))
    tuned_key = next(k for k in tuned if k.endswith("word_embeddings.weight"))
    assert (base[key] == tuned[tuned_key]).all()
    layer = next(k for k in base if k.endswith("layer.0.attention.self.query.weight"))
    assert not (base[layer] == tuned[next(k for k in tuned if k.endswith(layer.split("encoder.")[-1]))]).all()
    assert json.loads((out / "fewlabel_model.json").read_text())["settings"]["freeze_embeddings"] is True
    with pytest.raises(FewlabelError, match="new .* marker tokens"):
        train_re_classifier(klue_rows, klue_rows, LABELS, "minilm", tmp_path / "x",
                            TrainSettings(freeze_embeddings=True, max_steps=1), RelationOptions(marker="entity"),
                            run=run)


def test_cli_errors(tmp_path, capsys):
    assert main(["re", "predict", str(tmp_path), str(KLUE_CSV), "--out", str(tmp_path / "s.csv")]) == 2
    assert "not a finished relation classifier folder" in capsys.readouterr().err
    items = klue_items()
    items[0]["object_entity"]["word"] = "1546년"
    bad = write(tmp_path / "bad.json", json.dumps(items, ensure_ascii=False))
    assert main(["finetune", "re", "--train", str(bad), "--dev", str(KLUE_CSV), "--base", "minilm", "--out",
                 str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "object_entity" in err and "'1546년'" in err
