"""The stored form of a method (retrieval/methods/store.py) in a second: linear, nb and ensemble fitted on vectors
from the hashing encoder (tests/support/vectors.py), stored in an index folder, read back, and every way a stored
method can fail to hold together refused with one named error. These are the tests mutation testing runs against
the method store (`make mutation`, benchmarks/results/mutation.md); test_methods.py has the model-backed ones."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from fewlabel.indexing.errors import IndexMismatchError
from fewlabel.indexing.readers import Row
from fewlabel.indexing.store.label_index import LabelIndex
from fewlabel.retrieval.methods import store
from fewlabel.retrieval.methods.index_method import build_index
from fewlabel.retrieval.methods.store import METHOD_FORMAT, check_arrays, load_method, method_record
from tests.support.vectors import HashingEncoder

TOPICS = {
    "food": ["apple pie with cream", "bread and butter", "a bowl of soup", "cheese on toast", "rice and beans",
             "chocolate cake slice", "pasta with tomato", "fresh fruit salad", "a cup of tea", "grilled fish"],
    "sports": ["the football match ended", "a tennis final", "he ran a marathon", "the team scored a goal",
               "basketball playoffs tonight", "the cyclist won the race", "a swimming record", "the boxer won",
               "golf on sunday", "the rugby scrum"],
    "weather": ["rain all day long", "a storm with thunder", "snow in the hills", "sunny and warm today",
                "strong wind tonight", "fog over the river", "a cold frosty morning", "hail and sleet",
                "heavy clouds and drizzle", "a heat wave"],
}
QUERIES = ["apple cake and tea", "the football team won", "thunder and rain"]


def rows() -> list[Row]:
    return [Row(text=t, labels=(label,), id=f"{label}{i}", line=i + 2)
            for label, texts in TOPICS.items() for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def encoder() -> HashingEncoder:
    return HashingEncoder()


@pytest.fixture(scope="module", params=["linear", "nb", "ensemble"])
def built(request, encoder, tmp_path_factory) -> tuple[str, LabelIndex]:
    """(method name, the index as built in memory: method files set, not yet saved)."""
    return request.param, build_index(rows(), encoder, method=request.param, folds=3)


def fresh(built_index: LabelIndex, tmp_path) -> LabelIndex:
    """A saved and reloaded copy (LabelIndex checks the method files' sha256 on load)."""
    return LabelIndex.load(built_index.save(tmp_path / "ix"))


def test_a_stored_method_reads_back_and_labels_as_before_it_was_saved(built, encoder, tmp_path):
    name, index = built
    before = load_method(index)
    loaded = fresh(index, tmp_path)
    after = load_method(loaded)
    assert after is not None and before is not None
    assert after.name == name and after.labels == ["food", "sports", "weather"] and after.multi_label is False
    assert after.settings == index.method["settings"] == before.settings
    vectors = encoder.encode(QUERIES)
    proba_before, chosen_before = before.predict(vectors, QUERIES)
    proba, chosen = after.predict(vectors, QUERIES)
    assert proba.shape == chosen.shape == (3, 3) and chosen.dtype == bool
    np.testing.assert_array_equal(proba, proba_before)
    np.testing.assert_array_equal(chosen, chosen_before)
    # and it learnt something: each query's own topic has the highest probability
    assert proba.argmax(axis=1).tolist() == [0, 1, 2]


def test_the_method_files_say_what_they_hold(built):
    name, index = built
    spec = json.loads(index.method_files["method.json"])
    assert spec["method"] == name and spec["format"] == METHOD_FORMAT == 1
    assert spec["labels"] == index.label_names and spec["settings"] == index.method["settings"]
    with np.load(io.BytesIO(index.method_files["arrays.npz"]), allow_pickle=False) as npz:
        keys = set(npz.files)
    wanted = {"linear": {"linear_coef", "linear_intercept"}, "nb": {"nb_coef", "nb_intercept"}}
    wanted["ensemble"] = wanted["linear"] | wanted["nb"]
    assert keys == wanted[name]
    assert ("vocabulary.json" in index.method_files) == (name != "linear")
    assert not [p for p in index.method_files if p.startswith("model/")]


def test_method_record_keeps_every_field():
    record = method_record("nb", chosen_by="auto", settings={"alpha": 1.0}, labels=("a", "b"),
                           data_fingerprint="f1", leaderboard=[{"method": "nb"}], protocol={"folds": 3},
                           seconds=1.5, budget_minutes=2.0)
    assert record == {"name": "nb", "format": METHOD_FORMAT, "chosen_by": "auto", "settings": {"alpha": 1.0},
                      "labels": ["a", "b"], "data_fingerprint": "f1", "leaderboard": [{"method": "nb"}],
                      "protocol": {"folds": 3}, "seconds": 1.5, "budget_minutes": 2.0}
    bare = method_record("linear", chosen_by="user", settings={}, labels=["x"], data_fingerprint="f")
    assert bare["leaderboard"] == [] and bare["protocol"] is None and bare["seconds"] is None
    assert bare["budget_minutes"] == 0.0


def test_knn_has_no_files_and_loads_as_the_vote(encoder):
    index = build_index(rows(), encoder, method="knn", folds=3)
    assert index.method["name"] == "knn" and index.method_files == {}
    assert load_method(index) is None
    index.method = None
    assert load_method(index) is None


class _Index:
    """What load_method reads of an index: its method record, its files and its encoder's dimension."""

    def __init__(self, built_index: LabelIndex) -> None:
        self.method = json.loads(json.dumps(built_index.method))
        self.method_files = dict(built_index.method_files)
        self.encoder = dict(built_index.encoder)


def _with_arrays(index: _Index, change) -> _Index:
    with np.load(io.BytesIO(index.method_files["arrays.npz"]), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    index.method_files["arrays.npz"] = buffer.getvalue()
    return index


def _spec(index: _Index, change) -> _Index:
    spec = json.loads(index.method_files["method.json"])
    change(spec)
    index.method_files["method.json"] = json.dumps(spec).encode()
    return index


@pytest.fixture(scope="module")
def ensemble(encoder) -> LabelIndex:
    return build_index(rows(), encoder, method="ensemble", folds=3)


@pytest.mark.parametrize(("change", "needle"), [
    (lambda a: a.update(linear_coef=a["linear_coef"][:, :-1]), "array 'linear_coef' is float64 (3, 63), expected "
                                                                "finite floats of shape (3, 64) (3 labels, encoder "
                                                                "dimension 64); rebuild the index"),
    (lambda a: a.update(linear_coef=a["linear_coef"][:-1]), "'linear_coef' is float64 (2, 64)"),
    (lambda a: a.update(linear_coef=a["linear_coef"][None]), "'linear_coef' is float64 (1, 3, 64)"),
    (lambda a: a.update(linear_intercept=a["linear_intercept"][:-1]), "'linear_intercept' is float64 (2,), "
                                                                      "expected finite floats of shape (3,)"),
    (lambda a: a.update(nb_coef=a["nb_coef"][:, :5]), ", expected finite floats of shape (3, "),
    (lambda a: a.update(nb_intercept=a["nb_intercept"][:1]), "'nb_intercept' is float64 (1,)"),
    (lambda a: a.update(linear_coef=a["linear_coef"].astype(np.int64)), "'linear_coef' is int64 (3, 64)"),
    (lambda a: a.update(linear_coef=a["linear_coef"] * np.inf), "'linear_coef' is float64 (3, 64)"),
    (lambda a: a["nb_coef"].__setitem__((0, 0), np.nan), "'nb_coef' is float64"),
    (lambda a: a.pop("nb_intercept"), "array 'nb_intercept' is missing; rebuild the index"),
    (lambda a: a.pop("linear_coef"), "array 'linear_coef' is missing"),
])
def test_arrays_that_match_their_sha256_but_not_each_other_are_refused(ensemble, change, needle):
    index = _with_arrays(_Index(ensemble), change)
    with pytest.raises(IndexMismatchError) as caught:
        load_method(index)
    assert str(caught.value).startswith("the index's method/ folder/arrays.npz: ")
    assert needle in str(caught.value)


def test_the_nb_message_names_the_vocabulary_size(ensemble):
    size = len(json.loads(ensemble.method_files["vocabulary.json"]))
    index = _with_arrays(_Index(ensemble), lambda a: a.update(nb_coef=a["nb_coef"][:, :5]))
    with pytest.raises(IndexMismatchError, match=rf"\(3, 5\), expected finite floats of shape \(3, {size}\) "
                                                 rf"\(3 labels, encoder dimension 64, {size} vocabulary entries\)"):
        load_method(index)


@pytest.mark.parametrize("vocabulary", [None, {"a": 1}, ["a", 2], "abc"])
def test_a_vocabulary_missing_or_not_strings_is_refused(ensemble, vocabulary):
    index = _Index(ensemble)
    if vocabulary is None:
        del index.method_files["vocabulary.json"]
    else:
        index.method_files["vocabulary.json"] = json.dumps(vocabulary).encode()
    with pytest.raises(IndexMismatchError, match="vocabulary is missing or not a list of strings; rebuild"):
        load_method(index)


def test_check_arrays_accepts_coherent_arrays_and_any_width_where_the_shape_says_so():
    good = {"linear_coef": np.zeros((2, 4)), "linear_intercept": np.zeros(2)}
    check_arrays("linear", good, n_labels=2, dim=4, vocabulary=None, where="w")
    check_arrays("knn", {}, n_labels=2, dim=4, vocabulary=None, where="w")  # nothing stored, nothing to check
    head = {"head_coef": np.zeros((2, 7), dtype=np.float32), "head_intercept": np.zeros(2, dtype=np.float32)}
    check_arrays("setfit", head, n_labels=2, dim=4, vocabulary=None, where="w")  # a SetFit body's own width
    with pytest.raises(IndexMismatchError, match=r"'head_coef' is float32 \(3, 7\), expected finite floats of "
                                                 r"shape \(2, 7\)"):
        check_arrays("setfit", {**head, "head_coef": np.zeros((3, 7), dtype=np.float32)}, n_labels=2, dim=4,
                     vocabulary=None, where="w")
    with pytest.raises(IndexMismatchError, match=r"'head_coef' is float32 \(14,\), expected finite floats of "
                                                 r"shape \(2, -1\)"):
        check_arrays("setfit", {**head, "head_coef": np.zeros(14, dtype=np.float32)}, n_labels=2, dim=4,
                     vocabulary=None, where="w")
    nb = {"nb_coef": np.zeros((2, 3)), "nb_intercept": np.zeros(2)}
    check_arrays("nb", nb, n_labels=2, dim=4, vocabulary=["a", "b", "c"], where="w")
    with pytest.raises(IndexMismatchError, match=r"^w: array 'nb_coef' is float64 \(2, 3\), expected finite floats "
                                                 r"of shape \(2, 2\) \(2 labels, encoder dimension 4, 2 vocabulary "
                                                 r"entries\); rebuild the index$"):
        check_arrays("nb", nb, n_labels=2, dim=4, vocabulary=["a", "b"], where="w")


def test_another_format_is_refused_by_number(ensemble):
    index = _spec(_Index(ensemble), lambda s: s.update(format=2))
    with pytest.raises(IndexMismatchError, match=r"^the index's method/ folder: method format 2; this fewlabel "
                                                 r"reads format 1 \(rebuild the index\)$"):
        load_method(index)
    with pytest.raises(IndexMismatchError, match="method format None"):
        load_method(_spec(_Index(ensemble), lambda s: s.pop("format")))


def test_a_method_this_fewlabel_does_not_know_is_refused(ensemble):
    index = _Index(ensemble)
    index.method["name"] = "magic"
    with pytest.raises(IndexMismatchError, match=r"^the index's method/ folder: method 'magic' is not one this "
                                                 r"fewlabel can use \(it knows knn, zeroshot, prior, linear, nb, "
                                                 r"ensemble"):
        load_method(index)


@pytest.mark.parametrize(("change", "kind"), [
    (lambda f: f.__setitem__("method.json", json.dumps({"format": 1}).encode()), "KeyError"),
    (lambda f: f.__setitem__("method.json", b"[1, 2]"), "AttributeError"),  # sha256 updated: not an object
    (lambda f: f.pop("method.json"), "KeyError"),
    (lambda f: f.pop("arrays.npz"), "KeyError"),
    (lambda f: f.__setitem__("vocabulary.json", b"{not json"), "JSONDecodeError"),
])
def test_incomplete_or_malformed_files_are_one_named_error(ensemble, change, kind):
    index = _Index(ensemble)
    change(index.method_files)
    with pytest.raises(IndexMismatchError, match=r"^the index's method/ folder: incomplete or malformed method "
                                                 rf"files \({kind}: "):
        load_method(index)


def test_stored_names_and_settings_file_name_are_the_documented_ones():
    assert (store.SETTINGS_FILE, store.ARRAYS_FILE, store.VOCABULARY_FILE, store.MODEL_DIR) == \
        ("method.json", "arrays.npz", "vocabulary.json", "model")


# ---- what mutation testing found unchecked (benchmarks/results/mutation.md) -----------------------------------
def test_the_method_files_are_readable_json(encoder):
    """method.json (one-space indent) and vocabulary.json keep non-ASCII labels and n-grams as they are."""
    extra = [Row(text="café crème brûlée", labels=("café",), id="c1", line=40),
             Row(text="crème brûlée au café", labels=("café",), id="c2", line=41)]
    index = build_index(rows() + extra, encoder, method="ensemble", folds=3)
    spec = json.loads(index.method_files["method.json"])
    assert index.method_files["method.json"] == json.dumps(spec, ensure_ascii=False, indent=1).encode()
    assert list(spec)[:3] == ["method", "format", "labels"] and "café" in spec["labels"]
    vocabulary = json.loads(index.method_files["vocabulary.json"])
    assert index.method_files["vocabulary.json"] == json.dumps(vocabulary, ensure_ascii=False).encode()
    assert any("é" in term for term in vocabulary)


def test_a_multi_label_method_reads_back_as_multi_label(encoder, tmp_path):
    both = [Row(text=f"{a} in {b}", labels=(la, lb), id=f"m{i}", line=50 + i)
            for i, (a, la, b, lb) in enumerate([("apple pie", "food", "the rain", "weather"),
                                                ("a football match", "sports", "the snow", "weather")])]
    index = build_index(rows() + both, encoder, method="linear", folds=3)
    assert index.multi_label is True
    stored = load_method(fresh(index, tmp_path))
    assert stored is not None and stored.multi_label is True


def test_arrays_that_are_not_an_npz_are_refused_naming_the_file(ensemble):
    index = _Index(ensemble)
    index.method_files["arrays.npz"] = b"not an npz"
    with pytest.raises(IndexMismatchError, match=r"^the index's method/ folder/arrays.npz: not a plain-array .npz "):
        load_method(index)
