"""The STS scorer (retrieval/sts/scorer.py) in seconds: the calibrations' values, which folder is which kind of
model, a bi-encoder over the hashing encoder (tests/support/vectors.py) and a cross-encoder that is a tiny
randomly initialised BERT head over minilm's tokenizer, so that a score can be checked against the similarity it
comes from (scale × similarity, both orders averaged) without training. These are the tests mutation testing
runs against the scorer (`make mutation`); test_sts.py has the trained, model-backed ones."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from fewlabel.indexing.errors import InvalidArgumentError, ModelError
from fewlabel.indexing.sts.pairs import MAX_SCORE, PairRow
from fewlabel.retrieval.sts.scorer import (
    BI_ENCODER,
    CROSS_ENCODER,
    Calibration,
    STSScorer,
    model_kind,
    write_scores,
)
from tests.support.tiny_models import tiny_bert
from tests.support.vectors import HashingEncoder

PAIRS = [("a cat sits on the mat", "a cat is sitting on a mat"), ("the stock market fell", "a kitten sleeps"),
         ("rain in the city", "it rains in town")]


# ---- calibration ----------------------------------------------------------------------------------------------
def test_default_calibration_is_five_times_the_clipped_cosine():
    cal = Calibration()
    assert cal.method == "default" and cal.fitted and cal.fit([0.1], [3.0]) is cal and cal.n_fit_ == 0
    np.testing.assert_allclose(cal.predict([-0.5, 0.0, 0.3, 1.0, 1.7]), [0.0, 0.0, 1.5, 5.0, 5.0])
    assert cal.to_dict() == {"method": "default", "n_fit": 0, "map": "5 * clip(cosine, 0, 1)"}
    assert repr(cal) == "Calibration({'method': 'default', 'n_fit': 0, 'map': '5 * clip(cosine, 0, 1)'})"


def test_linear_calibration_fits_least_squares_and_clips():
    cal = Calibration("linear")
    assert not cal.fitted
    with pytest.raises(InvalidArgumentError, match="^linear calibration is not fitted: give labelled pairs"):
        cal.predict([0.5])
    assert cal.fit([0.0, 0.5, 1.0], [1.0, 2.0, 3.0]) is cal
    assert cal.fitted and cal.n_fit_ == 3
    assert cal.coef_ == pytest.approx(2.0) and cal.intercept_ == pytest.approx(1.0)
    np.testing.assert_allclose(cal.predict([0.25, 3.0, -2.0]), [1.5, 5.0, 0.0])
    saved = cal.to_dict()
    assert saved == {"method": "linear", "n_fit": 3, "coef": pytest.approx(2.0), "intercept": pytest.approx(1.0)}
    again = Calibration.from_dict(saved)
    assert again.n_fit_ == 3
    np.testing.assert_allclose(again.predict([0.1, 0.9]), cal.predict([0.1, 0.9]))


def test_isotonic_calibration_is_scikit_learns_fit_kept_as_thresholds():
    from sklearn.isotonic import IsotonicRegression

    x = np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.9])
    y = np.array([0.5, 0.4, 2.0, 3.0, 2.8, 6.0])
    cal = Calibration("isotonic").fit(x, y)
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=MAX_SCORE).fit(x, y)
    queries = np.array([0.0, 0.15, 0.4, 0.55, 0.95, 2.0])
    np.testing.assert_allclose(cal.predict(queries), reference.predict(queries))
    assert cal.predict([2.0])[0] == 5.0  # y_max applies
    saved = cal.to_dict()
    assert saved["method"] == "isotonic" and saved["n_fit"] == 6 and len(saved["x"]) == len(saved["y"]) > 1
    np.testing.assert_allclose(Calibration.from_dict(json.loads(json.dumps(saved))).predict(queries),
                               cal.predict(queries))


@pytest.mark.parametrize(("method", "x", "y", "needle"), [
    ("linear", [0.1, 0.2], [1.0], "calibration: 2 similarities but 1 scores"),
    ("linear", [0.1, float("nan")], [1.0, 2.0], "calibration: similarities and scores must be finite numbers"),
    ("isotonic", [0.1, 0.2], [1.0, float("inf")], "must be finite numbers"),
    ("linear", [0.4], [1.0], r"^linear calibration needs at least 2 labelled pairs with different similarities "
                             r"\(got 1\)$"),
    ("isotonic", [0.4, 0.4, 0.4], [1.0, 2.0, 3.0], r"isotonic calibration needs at least 2 .* \(got 3\)"),
])
def test_calibration_refuses_what_it_cannot_fit(method, x, y, needle):
    with pytest.raises(InvalidArgumentError, match=needle):
        Calibration(method).fit(x, y)


def test_unknown_calibration_and_bad_records_are_refused():
    with pytest.raises(InvalidArgumentError, match="^unknown calibration 'spline'; choose from default, linear, "
                                                   "isotonic$"):
        Calibration("spline")
    for record, kind in (({}, "KeyError"), ({"method": "linear", "n_fit": 2}, "KeyError"),
                         ({"method": "isotonic", "n_fit": 2, "x": [0.1], "y": [1.0, 2.0]}, "ValueError"),
                         ({"method": "isotonic", "n_fit": 2, "x": [], "y": []}, "ValueError"),
                         ({"method": "linear", "n_fit": "many"}, "ValueError")):
        with pytest.raises(InvalidArgumentError, match=rf"^not a calibration record \({kind}: "):
            Calibration.from_dict(record)
    unfitted = Calibration.from_dict({"method": "linear"})
    assert unfitted.n_fit_ == 0 and not unfitted.fitted and unfitted.to_dict() == {"method": "linear", "n_fit": 0}
    assert Calibration("isotonic").to_dict() == {"method": "isotonic", "n_fit": 0}


# ---- which kind of model ----------------------------------------------------------------------------------------
def test_model_kind_reads_the_marker_then_the_config(tmp_path):
    assert model_kind("minilm") == BI_ENCODER and model_kind(tmp_path / "absent") == BI_ENCODER
    folder = tmp_path / "m"
    folder.mkdir()
    assert model_kind(folder) == BI_ENCODER  # neither marker nor config
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
    assert model_kind(folder) == CROSS_ENCODER
    (folder / "fewlabel_model.json").write_text(json.dumps({"kind": "sts-bi-encoder"}))
    assert model_kind(folder) == BI_ENCODER  # the marker decides before the config
    (folder / "fewlabel_model.json").write_text(json.dumps({"kind": "other"}))
    assert model_kind(folder) == CROSS_ENCODER  # a marker that says neither: the config decides
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    assert model_kind(folder) == BI_ENCODER
    (folder / "fewlabel_model.json").write_text(json.dumps({"kind": "sts-cross-encoder"}))
    assert model_kind(folder) == CROSS_ENCODER
    (folder / "fewlabel_model.json").unlink()
    (folder / "config.json").write_text(json.dumps({"architectures": None}))
    assert model_kind(folder) == BI_ENCODER
    (folder / "config.json").write_text("{broken")
    with pytest.raises(ModelError, match=r"config.json: cannot read \("):
        model_kind(folder)
    (folder / "config.json").write_text("[1]")
    with pytest.raises(ModelError, match=r"config.json: expected a JSON object$"):
        model_kind(folder)


# ---- a bi-encoder -----------------------------------------------------------------------------------------------
@pytest.fixture()
def hashing() -> HashingEncoder:
    return HashingEncoder()


def test_a_bi_encoder_scores_five_times_the_clipped_cosine_in_either_order(hashing):
    scorer = STSScorer(hashing)
    assert scorer.kind == BI_ENCODER and scorer.encoder is hashing and scorer.calibration_.method == "default"
    vectors = hashing.encode([t for pair in PAIRS for t in pair]).astype(np.float64)
    cosine = np.einsum("ij,ij->i", vectors[0::2], vectors[1::2])
    np.testing.assert_allclose(scorer.similarity(PAIRS), cosine, rtol=1e-6)
    np.testing.assert_allclose(scorer.predict(PAIRS), 5 * np.clip(cosine, 0, 1), rtol=1e-6)
    np.testing.assert_allclose(scorer.predict([(b, a) for a, b in PAIRS]), scorer.predict(PAIRS), rtol=1e-6)
    rows = [PairRow(id=str(i), sentence1=a, sentence2=b, score=None, binary=None, line=i + 2)
            for i, (a, b) in enumerate(PAIRS)]
    np.testing.assert_allclose(scorer.predict(rows), scorer.predict(PAIRS))
    assert scorer.similarity([]).shape == (0,) and scorer.predict([]).shape == (0,)
    assert scorer.describe() == {"kind": BI_ENCODER, **hashing.describe(normalize=True),
                                 "calibration": {"method": "default", "n_fit": 0, "map": "5 * clip(cosine, 0, 1)"}}


def test_a_bi_encoder_calibration_is_fitted_on_labelled_pairs(hashing):
    rows = [PairRow(id=str(i), sentence1=a, sentence2=b, score=s, binary=None, line=i + 2)
            for i, ((a, b), s) in enumerate(zip(PAIRS, [4.5, 0.5, 3.5], strict=True))]
    scorer = STSScorer(hashing, calibration="linear").fit(rows)
    sim = scorer.similarity(PAIRS)
    expected = Calibration("linear").fit(sim, [4.5, 0.5, 3.5]).predict(sim)
    np.testing.assert_allclose(scorer.predict(PAIRS), expected)
    other = STSScorer(hashing, calibration="linear").fit(PAIRS, [4.5, 0.5, 3.5])
    np.testing.assert_allclose(other.predict(PAIRS), expected)
    given = Calibration("linear").fit([0.0, 1.0], [0.0, 2.0])
    assert STSScorer(hashing, calibration=given).calibration_ is given
    with pytest.raises(InvalidArgumentError, match="^3 pairs but 2 scores$"):
        STSScorer(hashing, calibration="linear").fit(PAIRS, [1.0, 2.0])
    with pytest.raises(InvalidArgumentError, match=r"^calibration needs labelled pairs \(a score on every pair\)$"):
        STSScorer(hashing, calibration="linear").fit(PAIRS)
    with pytest.raises(InvalidArgumentError, match="^STSScorer needs a model name, folder or Encoder, not int$"):
        STSScorer(5)


# ---- a cross-encoder --------------------------------------------------------------------------------------------
def _tiny_cross_encoder(folder, num_labels: int = 1, marker: dict | None = None):
    """A randomly initialised one-layer BERT classifier with minilm's tokenizer: loads and scores in a second."""
    tiny_bert(folder, num_labels=num_labels)
    if marker is not None:
        (folder / "fewlabel_model.json").write_text(json.dumps(marker))
    return folder


@pytest.fixture(scope="module")
def cross_folder(tmp_path_factory):
    marker = {"kind": "sts-cross-encoder", "scale": 4.0, "max_length": 48, "base": "tiny",
              "trained_at": "2026-12-05 10:00 UTC"}
    return _tiny_cross_encoder(tmp_path_factory.mktemp("ce"), marker=marker)


def test_a_cross_encoder_scores_scale_times_its_similarity_averaged_over_both_orders(cross_folder):
    scorer = STSScorer(str(cross_folder), device="cpu")
    assert scorer.kind == CROSS_ENCODER and scorer.scale == 4.0 and scorer.calibration_ is None
    assert scorer.cross_encoder.max_seq_length == 48  # from the marker
    one_way = np.asarray(scorer.cross_encoder.predict(PAIRS), dtype=np.float64)
    other_way = np.asarray(scorer.cross_encoder.predict([(b, a) for a, b in PAIRS]), dtype=np.float64)
    assert not np.allclose(one_way, other_way)  # the orders differ, so the mean below is a real check
    sim = scorer.similarity(PAIRS)
    np.testing.assert_allclose(sim, (one_way + other_way) / 2, rtol=1e-5)
    assert ((sim > 0) & (sim < 1)).all()
    np.testing.assert_allclose(scorer.predict(PAIRS), 4.0 * sim, rtol=1e-6)
    np.testing.assert_allclose(scorer.predict([(b, a) for a, b in PAIRS]), scorer.predict(PAIRS), rtol=1e-5)
    assert scorer.predict([]).shape == (0,)
    described = scorer.describe()
    assert described == {"kind": CROSS_ENCODER, "model": str(cross_folder.resolve()), "scale": 4.0,
                         "both_orders": True, "max_length": 48, "base": "tiny", "trained": "2026-12-05 10:00 UTC"}


def test_a_cross_encoder_score_is_clipped_to_five(cross_folder):
    scorer = STSScorer(str(cross_folder), device="cpu")
    scorer.scale = 1000.0
    assert (scorer.predict(PAIRS) == MAX_SCORE).all()


def test_a_cross_encoder_without_marker_scales_by_five_and_refuses_calibration(tmp_path):
    folder = _tiny_cross_encoder(tmp_path / "plain")
    scorer = STSScorer(str(folder), device="cpu", max_length=32)
    assert scorer.kind == CROSS_ENCODER and scorer.scale == 5.0 and scorer.model_info == {}
    assert scorer.cross_encoder.max_seq_length == 32
    np.testing.assert_allclose(scorer.predict(PAIRS), 5.0 * scorer.similarity(PAIRS), rtol=1e-6)
    with pytest.raises(InvalidArgumentError, match="^a cross-encoder scores 0-5 itself; calibration applies to "
                                                   "bi-encoders only$"):
        scorer.fit(PAIRS, [1.0, 2.0, 3.0])
    with pytest.raises(InvalidArgumentError, match="calibration applies to bi-encoders only"):
        STSScorer(str(folder), calibration="linear")
    assert STSScorer(str(folder), calibration="default").calibration_ is None


def test_a_classifier_with_two_outputs_is_not_an_sts_cross_encoder(tmp_path):
    folder = _tiny_cross_encoder(tmp_path / "two", num_labels=2)
    with pytest.raises(ModelError, match=r"has 2 outputs; an STS cross-encoder has one \(a similarity score\)$"):
        STSScorer(str(folder), device="cpu")


# ---- the output file ----------------------------------------------------------------------------------------------
def test_write_scores_writes_id_and_target_and_its_meta(tmp_path):
    rows = [PairRow(id=f"p{i}", sentence1=a, sentence2=b, score=None, binary=None, line=i + 2)
            for i, (a, b) in enumerate(PAIRS)]
    out = write_scores(rows, [1.23456, 0.0, 5.0], tmp_path / "sub" / "scores.csv", meta={"model": "m"})
    assert out == tmp_path / "sub" / "scores.csv"
    assert list(csv.reader(out.open(encoding="utf-8"))) == [["id", "target"], ["p0", "1.2346"], ["p1", "0.0000"],
                                                            ["p2", "5.0000"]]
    assert json.loads((tmp_path / "sub" / "scores.csv.meta.json").read_text())["model"] == "m"
    bare = write_scores(rows, [1, 2, 3], tmp_path / "bare.csv")
    assert bare.is_file() and not (tmp_path / "bare.csv.meta.json").exists()
    with pytest.raises(InvalidArgumentError, match=r"scores.tsv: STS scores are written as CSV \(id,target\); the "
                                                   r"name must end in .csv$"):
        write_scores(rows, [1, 2, 3], tmp_path / "scores.tsv")
    with pytest.raises(InvalidArgumentError, match="^3 pairs but 2 scores$"):
        write_scores(rows, [1, 2], tmp_path / "short.csv")
    assert not (tmp_path / "short.csv").exists()


# ---- what mutation testing found unchecked (benchmarks/results/mutation.md) -----------------------------------
def test_calibration_takes_columns_and_keeps_isotonic_steps_inside_zero_to_five():
    cal = Calibration("linear").fit([[0.0], [0.5], [1.0]], [[1.0], [2.0], [3.0]])
    assert cal.predict([[0.25], [0.75]]).tolist() == pytest.approx([1.5, 2.5])
    iso = Calibration("isotonic").fit([0.1, 0.4, 0.6, 0.9], [-1.0, 2.0, 3.0, 7.0])  # gold outside 0-5
    assert iso.y_thresholds_.min() >= 0.0 and iso.y_thresholds_.max() <= 5.0
    assert iso.x_thresholds_.dtype == iso.y_thresholds_.dtype == np.float64
    fresh = Calibration("isotonic")
    assert (fresh.coef_, fresh.intercept_, fresh.x_thresholds_, fresh.y_thresholds_) == (None, None, None, None)
    unfitted = Calibration.from_dict({"method": "isotonic"})
    assert unfitted.n_fit_ == 0 and unfitted.x_thresholds_ is None
    with pytest.raises(InvalidArgumentError, match=r"^not a calibration record \(ValueError: x and y thresholds "
                                                   r"differ in length\)$"):
        Calibration.from_dict({"method": "isotonic", "n_fit": 2, "x": [0.1], "y": [1.0, 2.0]})
    with pytest.raises(InvalidArgumentError, match="^calibration: similarities and scores must be finite numbers$"):
        Calibration("linear").fit([0.1, float("nan")], [1.0, 2.0])


def test_a_named_bi_encoder_loads_with_its_settings_and_uses_the_cache(tmp_path):
    from fewlabel.indexing.encoders.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    scorer = STSScorer("minilm", device="cpu", max_length=16, cache=cache)
    assert scorer.kind == BI_ENCODER and scorer.cross_encoder is None and scorer.model_info == {}
    assert scorer.encoder.describe()["model"] == "minilm" and scorer.encoder.describe()["max_length"] == 16
    first = scorer.predict(PAIRS)
    key = EmbeddingCache.key(scorer.encoder.fingerprint(normalize=True), PAIRS[0][0])
    assert key in cache.get_many([key])  # the texts were cached ...
    np.testing.assert_allclose(STSScorer("minilm", device="cpu", max_length=16, cache=cache).predict(PAIRS), first,
                               rtol=1e-6)  # ... and read back
    describe = scorer.describe()
    assert describe["kind"] == BI_ENCODER and describe["model"] == "minilm"


def test_an_object_that_only_encodes_is_not_an_encoder():
    class Half:
        def encode(self, texts):
            return np.zeros((len(texts), 2))

    with pytest.raises(InvalidArgumentError, match="not Half$"):
        STSScorer(Half())


def test_cross_encoder_edges(cross_folder, tmp_path, capfd):
    scorer = STSScorer(str(cross_folder), device="cpu")
    sim = scorer.similarity(PAIRS)
    scorer.scale = 0.1  # scores below 1 stay as they are ...
    np.testing.assert_allclose(scorer.predict(PAIRS), 0.1 * sim, rtol=1e-6)
    scorer.scale = -1.0  # ... and nothing goes below 0
    assert (scorer.predict(PAIRS) == 0.0).all()
    with pytest.raises(InvalidArgumentError, match="^a cross-encoder scores 0-5 itself; calibration applies to "
                                                   "bi-encoders only$"):
        STSScorer(str(cross_folder), calibration="isotonic")
    capfd.readouterr()
    STSScorer(str(cross_folder), device="cpu").predict(PAIRS)
    assert capfd.readouterr().err == ""  # quiet unless asked
    STSScorer(str(cross_folder), device="cpu", show_progress=True).predict(PAIRS)
    shown = capfd.readouterr().err
    assert "Batches" in shown or "it/s" in shown
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
    with pytest.raises(ModelError, match=r"^cannot load cross-encoder '"):
        STSScorer(str(broken), device="cpu")


def test_write_scores_makes_missing_folders(tmp_path):
    rows = [PairRow(id="p0", sentence1="a", sentence2="b", score=None, binary=None, line=2)]
    assert write_scores(rows, [1.0], tmp_path / "a" / "b" / "s.csv").is_file()
