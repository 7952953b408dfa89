"""STS: pair readers (KorSTS, STS-B, KLUE-STS, competition CSV), the cosine -> 0-5 calibration, symmetric
scoring with a bi-encoder and a cross-encoder, the id,target output, a few-step cross-encoder training
run reloaded through `STSScorer`, and `fewlabel sts score` end to end. Real MiniLM, tiny slices."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fewlabel.indexing.errors import DataError, FewlabelError
from fewlabel.indexing.sts.metrics import pair_metrics, sts_metrics
from fewlabel.indexing.sts.pairs import PairRow, detect_pair_format, read_pairs
from fewlabel.retrieval.cli import build_parser, main
from fewlabel.retrieval.sts.scorer import BI_ENCODER, CROSS_ENCODER, Calibration, STSScorer, model_kind, write_scores
from tests.support.data import require_shared


def meta_of(out: Path) -> Path:
    return out.with_name(out.name + ".meta.json")


KORSTS_HEADER = "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2"

# English pairs with gold scores (STS-B style), enough for a few training steps and a tiny dev set.
EN_PAIRS = [
    ("A plane is taking off.", "An air plane is taking off.", 5.0),
    ("A man is playing a large flute.", "A man is playing a flute.", 3.8),
    ("A man is spreading cheese on a pizza.", "A man is spreading cheese on an uncooked pizza.", 3.8),
    ("Three men are playing chess.", "Two men are playing chess.", 2.6),
    ("A man is playing the cello.", "A man seated is playing the cello.", 4.25),
    ("Some men are fighting.", "Two men are fighting.", 4.25),
    ("A man is smoking.", "A man is skating.", 0.5),
    ("The man is playing the piano.", "The man is playing the guitar.", 1.6),
    ("A man is playing on a guitar and singing.", "A woman is playing an acoustic guitar and singing.", 2.2),
    ("A person is throwing a cat on to the ceiling.", "A person throws a cat on the ceiling.", 5.0),
    ("The man hit the other man with a stick.", "The man spanked the other man with a stick.", 4.2),
    ("A woman picks up and holds a baby kangaroo.", "A woman picks up and holds a baby kangaroo in her arms.", 4.6),
    ("A man is playing a flute.", "A man is playing a keyboard.", 1.5),
    ("A person is folding a piece of paper.", "Someone is folding a piece of paper.", 4.8),
    ("A man is running on the road.", "A panda dog is running on the road.", 1.6),
    ("A dog is trying to get bacon off his back.", "A dog is trying to eat the bacon on its back.", 3.2),
    ("The polar bear is sliding on the snow.", "A polar bear is sliding across the snow.", 5.0),
    ("A woman is writing.", "A woman is swimming.", 0.5),
    ("A cat is rubbing against baby's face.", "A cat is rubbing against a baby.", 3.8),
    ("The man is riding a horse.", "A man is riding on a horse.", 5.0),
    ("A man pours oil into a pot.", "A man pours wine in a pot.", 3.2),
    ("A man is playing a guitar.", "A girl is playing a guitar.", 2.8),
    ("A panda is sliding down a slide.", "A panda slides down a slide.", 5.0),
    ("A woman is eating something.", "A woman is eating meat.", 2.4),
]


def pair_rows(items) -> list[PairRow]:
    return [PairRow(id=str(i), sentence1=a, sentence2=b, score=s, binary=int(s >= 3), line=i + 1)
            for i, (a, b, s) in enumerate(items)]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---- readers -----------------------------------------------------------------------------------------
def test_korsts_reader(tmp_path):
    f = write(tmp_path / "k.tsv", "\n".join([
        KORSTS_HEADER,
        "main-captions\tMSRvid\t2012test\t0001\t5.000\t비행기가 이륙하고 있다.\t비행기가 이륙하고 있다.",
        "",
        "main-news\theadlines\t2015\t0001\t2.4\t\"따옴표\" 문장\t다른 문장"]) + "\n")
    rows = read_pairs(f)
    assert [r.id for r in rows] == ["0", "1"]  # KorSTS ids repeat across genres: the row number is the id
    assert rows[0] == PairRow("0", "비행기가 이륙하고 있다.", "비행기가 이륙하고 있다.", 5.0, 1, 2)
    assert rows[1].score == 2.4 and rows[1].binary == 0 and rows[1].line == 4
    assert rows[1].sentence1 == '"따옴표" 문장'  # quotes are plain characters


@pytest.mark.parametrize("row, field, reason", [
    ("g\tf\ty\t1\tabc\t문장\t문장", "score", "not a number"),
    ("g\tf\ty\t1\t5.5\t문장\t문장", "score", "outside 0-5"),
    ("g\tf\ty\t1\t-0.1\t문장\t문장", "score", "outside 0-5"),
    ("g\tf\ty\t1\t3\t \t문장", "sentence1", "empty sentence"),
    ("g\tf\ty\t1\t3\t문장", "sentence2", "expected 7"),
])
def test_korsts_bad_rows(tmp_path, row, field, reason):
    f = write(tmp_path / "bad.tsv", f"{KORSTS_HEADER}\ng\tf\ty\t0\t1.0\t좋은 문장\t좋은 문장\n{row}\n")
    with pytest.raises(DataError) as err:
        read_pairs(f)
    assert (err.value.path, err.value.line, err.value.field) == (str(f), 3, field)
    assert reason in str(err.value) and str(f) in str(err.value) and "line 3" in str(err.value)


def test_stsb_reader_extra_fields_and_quotes(tmp_path):
    f = write(tmp_path / "sts-test.csv",
              "main-forums\tanswer-answer\t2016\t0008\t3\tI said \"no. \tHe said no.\tsource a\tsource b\n"
              "main-captions\tMSRvid\t2012test\t0004\t3.800\tA man plays.\tA man is playing.\n")
    assert detect_pair_format(f.read_text()) == "stsb"
    rows = read_pairs(f)
    assert [(r.id, r.sentence1, r.score, r.binary, r.line) for r in rows] == [
        ("0", 'I said "no.', 3.0, 1, 1), ("1", "A man plays.", 3.8, 1, 2)]


def test_stsb_bad_score(tmp_path):
    f = write(tmp_path / "s.csv", "g\tf\ty\t1\t4\tok\tok\ng\tf\ty\t2\t7\tok\tok\n")
    with pytest.raises(DataError, match=r"line 2, field 'score': score '7' is outside 0-5"):
        read_pairs(f)


KLUE = """[
  {"guid": "klue-sts-v1_dev_00000", "source": "airbnb-rtt",
   "sentence1": "무엇보다도 호스트분들이 너무 친절하셨습니다.",
   "sentence2": "무엇보다도, 호스트들은 매우 친절했습니다.",
   "labels": {"label": 4.9, "real-label": 4.857142857142857, "binary-label": 1}},
  {"guid": "klue-sts-v1_dev_00001", "source": "policy-sampled",
   "sentence1": "주요 관광지 모두 걸어서 이동가능합니다.",
   "sentence2": "위치는 피렌체 중심가까지 걸어서 이동 가능합니다.",
   "labels": {"label": 1.4, "real-label": 1.428571428571429, "binary-label": 0}}
]"""


def test_klue_reader(tmp_path):
    rows = read_pairs(write(tmp_path / "klue.json", KLUE))
    assert [(r.id, r.score, r.binary, r.line) for r in rows] == [
        ("klue-sts-v1_dev_00000", 4.9, 1, 2), ("klue-sts-v1_dev_00001", 1.4, 0, 6)]


@pytest.mark.parametrize("old, new, field, line", [
    ('"label": 1.4,', '"label": 7.0,', "labels.label", 6),
    ('"label": 1.4,', '"label": "high",', "labels.label", 6),
    ('"sentence2": "위치는', '"sentence3": "위치는', "sentence2", 6),
    ('"sentence1": "무엇보다도 호스트분들이 너무 친절하셨습니다."', '"sentence1": ""', "sentence1", 2),
    ('"binary-label": 0', '"binary-label": 2', "labels.binary-label", 6),
])
def test_klue_bad_items(tmp_path, old, new, field, line):
    f = write(tmp_path / "klue.json", KLUE.replace(old, new, 1))
    with pytest.raises(DataError) as err:
        read_pairs(f)
    assert (err.value.line, err.value.field) == (line, field)


def test_klue_invalid_json_names_line(tmp_path):
    f = write(tmp_path / "klue.json", KLUE.replace('"source": "policy-sampled",', '"source": "policy-sampled"'))
    with pytest.raises(DataError, match="klue.json, line 7: invalid JSON"):  # where the missing comma bites
        read_pairs(f)


def test_competition_csv(tmp_path):
    labelled = read_pairs(write(tmp_path / "train.csv", "id,sentence1,sentence2,label,binary-label\n"
                                                        "a-1,\"첫 문장, 쉼표\",둘째 문장,3.2,1\n"
                                                        "a-2,셋째,넷째,0.4,0\n"))
    assert [(r.id, r.sentence1, r.score, r.binary, r.line) for r in labelled] == [
        ("a-1", "첫 문장, 쉼표", 3.2, 1, 2), ("a-2", "셋째", 0.4, 0, 3)]
    derived = read_pairs(write(tmp_path / "d.csv", "id,sentence1,sentence2,label\nx,a,b,3.0\ny,c,d,2.99\n"))
    assert [r.binary for r in derived] == [1, 0]  # binary is 1 when label >= 3
    unlabelled = read_pairs(write(tmp_path / "test.csv", "id,sentence1,sentence2\nt1,a,b\nt2,c,d\n"))
    assert [(r.id, r.score, r.binary) for r in unlabelled] == [("t1", None, None), ("t2", None, None)]


@pytest.mark.parametrize("body, line, field, reason", [
    ("x,a,b,1\ny,c,,2\n", 3, "sentence2", "empty sentence"),
    ("x,a,b,1\ny,c,d,five\n", 3, "label", "not a number"),
    ("x,a,b,1\ny,c,d,5.01\n", 3, "label", "outside 0-5"),
    ("x,a,b,1\ny,c,d,\n", 3, "label", "other rows have one"),
    ("x,a,b,1\nx,c,d,2\n", 3, "id", "duplicate id"),
])
def test_competition_bad_rows(tmp_path, body, line, field, reason):
    f = write(tmp_path / "bad.csv", "id,sentence1,sentence2,label\n" + body)
    with pytest.raises(DataError) as err:
        read_pairs(f)
    assert (err.value.line, err.value.field) == (line, field) and reason in str(err.value)


def test_unknown_layout(tmp_path):
    with pytest.raises(DataError, match="cannot tell the pair format"):
        read_pairs(write(tmp_path / "x.csv", "text,label\nhello,1\n"))
    with pytest.raises(DataError, match="file not found"):
        read_pairs(tmp_path / "missing.tsv")


def test_real_files_first_rows():
    korsts = require_shared("korsts", "sts-test.tsv")
    stsb = require_shared("stsb_en", "sts-test.csv")
    k, s = read_pairs(korsts), read_pairs(stsb)
    assert len(k) == len(s) == 1379
    assert (k[0].sentence1, k[0].score, k[0].line) == ("한 소녀가 머리를 스타일링하고 있다.", 2.5, 2)
    assert (s[0].sentence1, s[0].score, s[0].line) == ("A girl is styling her hair.", 2.5, 1)
    assert all(r.score is not None and 0 <= r.score <= 5 for r in k + s)


# ---- calibration and metrics ---------------------------------------------------------------------------
def test_default_map_and_clipping():
    cal = Calibration()
    assert cal.predict([-0.3, 0.0, 0.5, 1.0, 1.2]).tolist() == [0.0, 0.0, 2.5, 5.0, 5.0]


def test_linear_calibration():
    cal = Calibration("linear").fit([0.0, 0.5, 1.0], [1.0, 2.0, 3.0])
    assert cal.coef_ == pytest.approx(2.0) and cal.intercept_ == pytest.approx(1.0)
    assert cal.predict([0.25, 3.0, -1.0]) == pytest.approx([1.5, 5.0, 0.0])  # 7 and -1 are clipped


def test_isotonic_calibration_matches_sklearn():
    from sklearn.isotonic import IsotonicRegression

    x, y = [0.1, 0.2, 0.3, 0.4, 0.6], [1.0, 3.0, 2.0, 4.0, 4.5]
    cal = Calibration("isotonic").fit(x, y)
    grid = np.linspace(-0.5, 1.5, 41)
    expected = IsotonicRegression(out_of_bounds="clip").fit(x, y).predict(grid)
    assert cal.predict(grid) == pytest.approx(np.clip(expected, 0, 5))
    assert cal.predict([0.2, 0.3]) == pytest.approx([2.5, 2.5])  # the violating pair is pooled
    assert cal.predict([0.0, 9.0]) == pytest.approx([1.0, 4.5])  # clipped to the fitted range


@pytest.mark.parametrize("method", ["default", "linear", "isotonic"])
def test_calibration_dict_round_trip(method):
    cal = Calibration(method).fit([0.2, 0.4, 0.7, 0.9], [0.5, 2.0, 3.5, 4.9])
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    grid = np.linspace(-1, 2, 31)
    assert again.method == method and again.predict(grid).tolist() == cal.predict(grid).tolist()


def test_calibration_errors():
    with pytest.raises(FewlabelError, match="unknown calibration"):
        Calibration("cubic")
    with pytest.raises(FewlabelError, match="not fitted"):
        Calibration("linear").predict([0.5])
    with pytest.raises(FewlabelError, match="at least 2"):
        Calibration("isotonic").fit([0.5], [3.0])
    with pytest.raises(FewlabelError, match="not a calibration record"):
        Calibration.from_dict({"method": "linear", "n_fit": 3})


def test_metrics():
    m = sts_metrics([1.0, 2.0, 3.5, 4.0], [0.5, 2.5, 3.0, 5.0])
    assert m["pearson"] == pytest.approx(np.corrcoef([1, 2, 3.5, 4], [0.5, 2.5, 3, 5])[0, 1])
    assert m["spearman"] == pytest.approx(1.0)
    assert m["binary_f1"] == pytest.approx(1.0) and m["n"] == 4
    # gold binary 1,1,0,0; predicted binary 1,0,1,0 -> precision 1/2, recall 1/2
    assert sts_metrics([4, 1, 4, 1], [3, 4, 2, 1])["binary_f1"] == pytest.approx(0.5)
    assert sts_metrics([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])["pearson"] is None  # constant prediction
    assert pair_metrics(pair_rows([("a", "b", 1.0)]), [1.0])["n"] == 1
    assert pair_metrics([PairRow("0", "a", "b", None, None, 1)], [1.0]) is None


# ---- scoring ---------------------------------------------------------------------------------------------
class CountingEncoder:
    """The real MiniLM, counting the texts it is asked to encode."""

    def __init__(self, encoder) -> None:
        self.encoder, self.seen = encoder, []
        self.dim = encoder.dim

    def encode(self, texts, **kwargs):
        self.seen.extend(texts)
        return self.encoder.encode(texts, **kwargs)

    def describe(self, normalize=True):
        return self.encoder.describe(normalize)

    def fingerprint(self, normalize=True):
        return self.encoder.fingerprint(normalize)


def test_bi_encoder_symmetric_deduplicated_in_range(minilm):
    counting = CountingEncoder(minilm)
    scorer = STSScorer(counting)
    pairs = [("A man is playing a flute.", "A man plays the flute."),
             ("A man plays the flute.", "A man is playing a flute."),
             ("A man is playing a flute.", "A dog runs in the park.")]
    scores = scorer.predict(pairs)
    assert scores[0] == scores[1]  # cosine is symmetric, and each text is encoded once
    assert sorted(counting.seen) == sorted(set(counting.seen)) and len(counting.seen) == 3
    assert ((scores >= 0) & (scores <= 5)).all() and scores[0] > scores[2]
    assert scorer.kind == BI_ENCODER and scorer.describe()["calibration"]["method"] == "default"


def test_bi_encoder_calibration_fit(minilm):
    rows = pair_rows(EN_PAIRS[:12])
    scorer = STSScorer(minilm, calibration="linear").fit(rows)
    scores = scorer.predict(rows)
    assert ((scores >= 0) & (scores <= 5)).all()
    assert pair_metrics(rows, scores)["pearson"] > 0.5
    with pytest.raises(FewlabelError, match="labelled pairs"):
        STSScorer(minilm, calibration="linear").fit([("a", "b"), ("c", "d")])


def test_write_scores_format(tmp_path):
    rows = pair_rows(EN_PAIRS[:3])
    out = write_scores(rows, np.array([4.98765, 0.0, 5.0]), tmp_path / "sub" / "scores.csv", {"model": "x"})
    with open(out, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert table == [["id", "target"], ["0", "4.9877"], ["1", "0.0000"], ["2", "5.0000"]]
    assert json.loads(meta_of(out).read_text()) == {"model": "x"}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary files left
    with pytest.raises(FewlabelError, match="must end in .csv"):
        write_scores(rows, [1.0, 2.0, 3.0], tmp_path / "scores.json")


# ---- a few-step cross-encoder training run --------------------------------------------------------------
@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory):
    from fewlabel.finetune.settings import RunOptions, TrainSettings
    from fewlabel.finetune.sts.trainer import train_sts_cross_encoder

    out = tmp_path_factory.mktemp("sts") / "ce"
    rows = pair_rows(EN_PAIRS)
    settings = TrainSettings(epochs=1, lr=5e-5, batch_size=8, max_length=32, warmup_ratio=0.0, seed=0, max_steps=2)
    summary = train_sts_cross_encoder(rows[:16], rows[16:], "minilm", out, settings,
                                      run=RunOptions(device="cpu", show_progress=False))
    return out, summary


def test_cross_encoder_training_saves_and_reloads(cross_encoder_dir):
    out, summary = cross_encoder_dir
    assert summary["steps"] == 2 and summary["resumed_from"] is None
    assert summary["dev"]["n"] == len(EN_PAIRS) - 16
    marker = json.loads((out / "fewlabel_model.json").read_text())
    assert marker["kind"] == "sts-cross-encoder" and marker["scale"] == 5.0 and marker["base"] == "minilm"
    assert marker["settings"]["max_length"] == 32 and marker["both_orders"] is True
    assert "Dev scores" in (out / "README.md").read_text()
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert any("eval_sts-dev_pearson" in entry for entry in log)
    assert not (out / "checkpoints").exists()  # removed after a successful run
    assert model_kind(out) == CROSS_ENCODER

    scorer = STSScorer(str(out), device="cpu")
    pairs = [("A man is playing a flute.", "A man plays the flute."),
             ("A man plays the flute.", "A man is playing a flute."),
             ("A woman is writing.", "A cat is sleeping.")]
    scores = scorer.predict(pairs)
    assert scorer.kind == CROSS_ENCODER and scorer.scale == 5.0
    assert scores[0] == pytest.approx(scores[1], abs=1e-5)  # both orders averaged
    similarity = scorer.similarity(pairs)  # the model's own 0-1 output
    assert ((similarity > 0) & (similarity < 1)).all()
    np.testing.assert_allclose(scores, 5.0 * similarity, rtol=1e-6)  # the value, not only the range
    with pytest.raises(FewlabelError, match="bi-encoders only"):
        STSScorer(str(out), calibration="linear")


def test_benchmark_reuses_a_finished_head_only_for_the_same_settings_and_data(cross_encoder_dir, tmp_path):
    """A rerun of `benchmarks.sts` scores a finished head again instead of retraining it; any change in the
    settings, the data or the base must train again."""
    from argparse import Namespace

    from fewlabel.benchmarks.sts import finished_head, training_curve

    out, summary = cross_encoder_dir
    rows = pair_rows(EN_PAIRS)
    settings = dict(epochs=1, lr=5e-5, batch_size=8, max_length=32, warmup_ratio=0.0, seed=0, max_steps=2)
    args = Namespace(freeze_embeddings=False)
    reused = finished_head(out, "cross-encoder", "minilm", rows[:16], rows[16:], settings, args)
    assert reused is not None and reused["steps"] == summary["steps"] == 2
    assert reused["train_seconds"] == pytest.approx(summary["train_seconds"])
    assert finished_head(out, "cross-encoder", "minilm", rows[:16], rows[16:], {**settings, "lr": 2e-5}, args) is None
    assert finished_head(out, "cross-encoder", "minilm", rows[:15], rows[16:], settings, args) is None
    assert finished_head(out, "cross-encoder", "e5-small", rows[:16], rows[16:], settings, args) is None
    assert finished_head(out, "bi-encoder", "minilm", rows[:16], rows[16:], settings, args) is None
    assert finished_head(out, "cross-encoder", "minilm", rows[:16], rows[16:], settings,
                         Namespace(freeze_embeddings=True)) is None

    curve = training_curve(out)
    assert len(curve["loss"]) == 2 and len(curve["dev_pearson"]) == 1  # logged every step; one evaluation
    assert all(-1 <= pearson <= 1 for _, pearson in curve["dev_pearson"])
    assert training_curve(tmp_path) == {"loss": [], "dev_pearson": []}  # no log: an empty curve, not an error


def test_finished_run_ignores_unfinished_and_damaged_folders(tmp_path):
    from fewlabel.finetune.runs import finished_run
    from fewlabel.indexing.model_folder import MARKER_FILE

    assert finished_run(tmp_path, {"kind": "sts-cross-encoder"}) is None  # no marker: unfinished
    (tmp_path / MARKER_FILE).write_text('{"kind": "sts-cross-encoder", "settings": {"lr": 2e-05, "seed": 1}}')
    assert finished_run(tmp_path, {"kind": "sts-cross-encoder", "settings": {"lr": 2e-5}})["settings"]["seed"] == 1
    assert finished_run(tmp_path, {"kind": "sts-cross-encoder", "settings": {"lr": 3e-5}}) is None
    assert finished_run(tmp_path, {"settings": {"epochs": 1}}) is None  # a setting the record lacks is no match
    (tmp_path / MARKER_FILE).write_text('{"kind": "sts-cr')
    assert finished_run(tmp_path, {"kind": "sts-cross-encoder"}) is None


def test_a_trained_cross_encoder_scores_a_paraphrase_above_an_unrelated_pair(tmp_path):
    """Values, not only the range: after a short real training (every pair, a few epochs; the two-step fixture
    above has not learnt yet) a paraphrase scores above an unrelated pair, and each score is scale x similarity."""
    from fewlabel.finetune.settings import RunOptions, TrainSettings
    from fewlabel.finetune.sts.trainer import train_sts_cross_encoder

    rows = pair_rows(EN_PAIRS)
    out = tmp_path / "ce"
    train_sts_cross_encoder(rows, rows[16:], "minilm", out,
                            TrainSettings(epochs=6, lr=1e-4, batch_size=8, max_length=32, warmup_ratio=0.0, seed=0),
                            run=RunOptions(device="cpu", show_progress=False))
    scorer = STSScorer(str(out), device="cpu")
    pairs = [("A man is playing a flute.", "A man plays the flute."), ("A woman is writing.", "A cat is sleeping."),
             ("The man is riding a horse.", "A man rides a horse."), ("A panda slides down a slide.",
                                                                     "Some men are fighting.")]
    scores = scorer.predict(pairs)
    np.testing.assert_allclose(scores, np.clip(scorer.scale * scorer.similarity(pairs), 0, 5), rtol=1e-6)
    assert scores[0] > scores[1] and scores[2] > scores[3], scores


def test_binary_objective_loss_terms(cross_encoder_dir):
    import torch
    from sentence_transformers import CrossEncoder

    from fewlabel.finetune.sts.trainer import sts_binary_aux_loss

    model = CrossEncoder(str(cross_encoder_dir[0]), device="cpu")
    loss = sts_binary_aux_loss(model, weight=0.5)
    terms = loss([["A cat sits.", "A man sings."], ["A cat is sitting.", "A dog runs."]],
                 [torch.tensor([0.9, 1.0]), torch.tensor([0.1, 0.0])])
    assert set(terms) == {"score", "binary"} and all(torch.isfinite(t) and t > 0 for t in terms.values())
    terms["score"].backward()  # differentiable through the one output


def test_cli_scores_with_cross_encoder(cross_encoder_dir, tmp_path, capsys):
    out_dir, _ = cross_encoder_dir
    pairs = write(tmp_path / "test.csv", "id,sentence1,sentence2\nq1,A man is playing a flute.,A man plays a flute.\n"
                                         "q2,A woman is writing.,A cat is sleeping.\n")
    out = tmp_path / "scores.csv"
    assert main(["-q", "sts", "score", str(pairs), "--model", str(out_dir), "--out", str(out)]) == 0
    table = list(csv.reader(out.open(encoding="utf-8")))
    assert table[0] == ["id", "target"] and [r[0] for r in table[1:]] == ["q1", "q2"]
    assert all(0 <= float(r[1]) <= 5 for r in table[1:])
    meta = json.loads(meta_of(out).read_text())
    assert meta["model"]["kind"] == CROSS_ENCODER and meta["metrics"] is None and meta["calibration"] is None
    assert "Pearson" not in capsys.readouterr().out  # unlabelled input: no metrics


# ---- the CLI with a bi-encoder -----------------------------------------------------------------------------
def test_cli_sts_score_labelled(tmp_path, capsys):
    lines = ["id,sentence1,sentence2,label"] + [f"p{i},\"{a}\",\"{b}\",{s}" for i, (a, b, s) in enumerate(EN_PAIRS)]
    pairs = write(tmp_path / "pairs.csv", "\n".join(lines) + "\n")
    out = tmp_path / "scores.csv"
    code = main(["-q", "sts", "score", str(pairs), "--model", "minilm", "--out", str(out), "--no-cache",
                 "--calibrate-on", str(pairs), "--calibration", "isotonic"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Pearson" in printed and "Spearman" in printed and "binary F1" in printed
    table = list(csv.reader(out.open(encoding="utf-8")))
    assert table[0] == ["id", "target"] and len(table) == len(EN_PAIRS) + 1
    assert all(0 <= float(v) <= 5 for _, v in table[1:])
    meta = json.loads(meta_of(out).read_text())
    assert meta["calibration"]["method"] == "isotonic" and meta["metrics"]["n"] == len(EN_PAIRS)
    assert Calibration.from_dict(meta["calibration"]).predict([0.5]).shape == (1,)


def test_cli_sts_score_bad_file_is_one_line(tmp_path, capsys):
    bad = write(tmp_path / "bad.tsv", f"{KORSTS_HEADER}\ng\tf\ty\t1\t3\t문장\t문장\ng\tf\ty\t2\tsix\t문장\t문장\n")
    code = main(["-q", "sts", "score", str(bad), "--model", "minilm", "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err == f"fewlabel: error: {bad}, line 3, field 'score': score is not a number: 'six'"
    assert not (tmp_path / "o.csv").exists()


def test_cli_sts_score_option_errors(tmp_path, capsys):
    pairs = write(tmp_path / "p.csv", "id,sentence1,sentence2\n1,a,b\n")
    assert main(["sts", "score", str(pairs), "--out", str(tmp_path / "o.csv"), "--calibration", "linear"]) == 2
    assert "--calibrate-on" in capsys.readouterr().err
    assert main(["sts", "score", str(pairs), "--out", str(tmp_path / "o.txt")]) == 2
    assert "must end in .csv" in capsys.readouterr().err
    assert main(["sts", "score", str(pairs), "--model", "minilm", "--out", str(tmp_path / "o.csv"),
                 "--calibrate-on", str(pairs)]) == 2
    assert "need scores" in capsys.readouterr().err


def test_sts_commands_have_help(capsys):
    parser = build_parser()
    for argv in (["sts", "--help"], ["sts", "score", "--help"], ["finetune", "--help"], ["finetune", "sts", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 0
    assert "--calibrate-on" in capsys.readouterr().out


def test_cli_finetune_refuses_unlabelled(tmp_path, capsys):
    pairs = write(tmp_path / "p.csv", "id,sentence1,sentence2\n1,a,b\n")
    code = main(["finetune", "sts", "--train", str(pairs), "--dev", str(pairs), "--base", "minilm",
                 "--out", str(tmp_path / "m")])
    assert code == 2 and "--train pairs need scores" in capsys.readouterr().err


# ---- the bi-encoder option and resuming: one or two steps on minilm, 3-4 s each here, so part of `make test` ----
# (issue 29: they were slow-only; measured 3.8 s and 3.0 s on 2026-12-05, the shared 2-core machine)
def test_bi_encoder_training_loads_as_encoder(tmp_path):
    from fewlabel.finetune.settings import RunOptions, TrainSettings
    from fewlabel.finetune.sts.trainer import train_sts_bi_encoder
    from fewlabel.indexing.encoders.encoder import Encoder

    rows = pair_rows(EN_PAIRS)
    out = tmp_path / "bi"
    summary = train_sts_bi_encoder(rows[:8], rows[16:], "minilm", out,
                                   TrainSettings(epochs=1, batch_size=4, max_length=32, max_steps=1),
                                   run=RunOptions(device="cpu", show_progress=False))
    assert summary["steps"] == 1 and summary["dev"]["pearson"] is not None
    settings = json.loads((out / "fewlabel_encoder.json").read_text())
    assert settings == {**settings, "prefix": "", "max_length": 256, "pooling": "mean"}  # the base's settings
    assert Encoder(str(out), device="cpu").prefix == ""
    assert model_kind(out) == BI_ENCODER
    scores = STSScorer(str(out), device="cpu").predict([("A cat sits.", "A dog runs."), ("A dog runs.", "A cat sits.")])
    assert scores[0] == pytest.approx(scores[1]) and 0 <= scores[0] <= 5


def test_cross_encoder_resumes_from_checkpoint(tmp_path):
    from fewlabel.finetune.settings import RunOptions, TrainSettings
    from fewlabel.finetune.sts.trainer import train_sts_cross_encoder

    rows = pair_rows(EN_PAIRS)
    out = tmp_path / "ce"
    run = RunOptions(device="cpu", show_progress=False)

    def steps(n: int) -> TrainSettings:
        return TrainSettings(epochs=2, batch_size=16, max_length=32, max_steps=n)

    first = train_sts_cross_encoder(rows[:16], rows[16:], "minilm", out, steps(1), both_orders=False,
                                    run=RunOptions(device="cpu", show_progress=False, keep_checkpoints=True))
    assert first["steps"] == 1 and (out / "checkpoints" / "checkpoint-1").is_dir()
    with pytest.raises(FewlabelError, match="different run"):  # other data: refuse to resume its checkpoints
        train_sts_cross_encoder(rows[:15], rows[16:], "minilm", out, steps(2), both_orders=False, run=run)
    second = train_sts_cross_encoder(rows[:16], rows[16:], "minilm", out, steps(2), both_orders=False, run=run)
    assert second["resumed_from"].endswith("checkpoint-1") and second["steps"] == 2
    assert (out / "fewlabel_model.json").is_file()
