"""Fast checks of kNN voting, (k, m) tuning and `KNNLabeler`, on hand-made neighbour sets and
hand-built unit vectors (no encoders, no downloads)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import f1_score
from sklearn.utils.estimator_checks import check_estimator

from fewlabel.indexing.errors import DataError, FewlabelError, IndexMismatchError
from fewlabel.retrieval.knn.estimator import KNNLabeler
from fewlabel.retrieval.knn.tuning import KMResult, tune_k_m
from fewlabel.retrieval.knn.voting import (
    multi_label_predict,
    neighbour_label_tensor,
    single_label_predict,
    vote_counts,
    vote_fractions,
)

# ---------------------------------------------------------------------------- helpers


def _neigh(rows: list[list[set[int]]], n_labels: int) -> np.ndarray:
    """(n_q, k, L) bool from per-query lists of neighbour label sets."""
    out = np.zeros((len(rows), len(rows[0]), n_labels), dtype=bool)
    for q, row in enumerate(rows):
        for j, labels in enumerate(row):
            out[q, j, sorted(labels)] = True
    return out


def _clusters(seed: int = 0, per_cluster: int = 20, dim: int = 16, noise: float = 0.15):
    """Unit vectors scattered around three orthogonal centres; returns (X, cluster ids, centres)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim, dtype=np.float32)[:3]
    cluster = np.repeat(np.arange(3), per_cluster)
    X = centres[cluster] + noise * rng.standard_normal((cluster.size, dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), cluster, centres


def _unit(X: np.ndarray) -> np.ndarray:
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


MULTI = {0: ("a",), 1: ("b",), 2: ("a", "c")}
SINGLE = {0: "a", 1: "b", 2: "c"}


# ---------------------------------------------------------------------------- voting rules


def test_neighbour_label_tensor_ignores_missing_neighbours() -> None:
    labels = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)
    ids = np.array([[2, 0, -1], [1, -1, -1]])
    neigh = neighbour_label_tensor(labels, ids)
    assert neigh.shape == (2, 3, 2)
    np.testing.assert_array_equal(neigh[0], [[1, 1], [1, 0], [0, 0]])
    # -1 must not borrow the labels of the last training row
    np.testing.assert_array_equal(neigh[1], [[0, 1], [0, 0], [0, 0]])
    with pytest.raises(FewlabelError):
        neighbour_label_tensor(labels, np.array([[3]]))


def test_multi_label_m_threshold() -> None:
    # labels 0,1,2; query 0: label 0 from 3 neighbours, label 1 from 2, label 2 from 1
    neigh = _neigh([[{0, 1}, {0}, {0, 1, 2}, set()]], 3)
    sims = np.array([[0.9, 0.8, 0.7, 0.6]])
    counts = vote_counts(neigh, sims, k=4, weighted=False)
    np.testing.assert_array_equal(counts, [[3, 2, 1]])
    np.testing.assert_array_equal(multi_label_predict(counts, 2), [[True, True, False]])
    np.testing.assert_array_equal(multi_label_predict(counts, 3), [[True, False, False]])
    np.testing.assert_array_equal(multi_label_predict(counts, 4), [[False, False, False]])
    # only the first k (best) neighbours vote
    np.testing.assert_array_equal(vote_counts(neigh, sims, k=2, weighted=False), [[2, 1, 0]])
    with pytest.raises(FewlabelError):
        vote_counts(neigh, sims, k=5, weighted=False)
    with pytest.raises(FewlabelError):
        multi_label_predict(counts, 0)


def test_missing_neighbours_vote_for_nothing() -> None:
    labels = np.array([[1, 0], [0, 1]], dtype=bool)
    ids = np.array([[0, 1, -1, -1]])
    sims = np.array([[0.9, 0.5, -3.4028235e38, -3.4028235e38]], dtype=np.float32)
    neigh = neighbour_label_tensor(labels, ids)
    np.testing.assert_array_equal(vote_counts(neigh, sims, 4, weighted=False), [[1, 1]])
    np.testing.assert_allclose(vote_counts(neigh, sims, 4, weighted=True), [[0.9, 0.5]], rtol=1e-6)
    # fractions keep k in the denominator, weighted ones the (clipped) similarity total
    np.testing.assert_allclose(vote_fractions(vote_counts(neigh, sims, 4, False), 4), [[0.25, 0.25]])
    frac = vote_fractions(vote_counts(neigh, sims, 4, True), 4, weighted=True, sims=sims)
    np.testing.assert_allclose(frac, [[0.9 / 1.4, 0.5 / 1.4]], rtol=1e-6)


def test_weighted_votes_clip_negative_similarities() -> None:
    neigh = _neigh([[{0}, {1}, {1}, {0}]], 2)
    sims = np.array([[0.5, 0.25, 0.25, -0.5]])
    counts = vote_counts(neigh, sims, 4, weighted=True)
    np.testing.assert_allclose(counts, [[0.5, 0.5]])  # the -0.5 neighbour adds nothing, not -0.5
    # m compares against the weighted vote: 0.5 < 1, so nothing reaches m=1
    assert not multi_label_predict(counts, 1).any()
    assert multi_label_predict(counts, 0.5).all()
    np.testing.assert_allclose(vote_fractions(counts, 4, weighted=True, sims=sims), [[0.5, 0.5]])
    # a query with no positive support gets zeros, not NaN
    zero = vote_fractions(np.zeros((1, 2)), 2, weighted=True, sims=np.array([[-0.1, -0.2]]))
    np.testing.assert_array_equal(zero, [[0.0, 0.0]])
    with pytest.raises(FewlabelError):
        vote_fractions(counts, 4, weighted=True)


def test_single_label_majority_and_abstention() -> None:
    neigh = _neigh([[{1}, {0}, {1}, {2}, {1}], [{0}, {1}, {2}, {0}, {1}]], 3)
    sims = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]] * 2)
    counts = vote_counts(neigh, sims, 5, weighted=False)
    np.testing.assert_array_equal(single_label_predict(counts, sims, neigh, 3), [1, -1])  # q1 best has 2 < 3
    np.testing.assert_array_equal(single_label_predict(counts, sims, neigh, 2), [1, 0])  # 0 vs 1 tie -> sims


def test_single_label_tie_breaks() -> None:
    # 2 votes each; label 1's voters are closer in total (0.5+0.5 > 0.75+0.125)
    neigh = _neigh([[{0}, {1}, {1}, {0}]], 2)
    sims = np.array([[0.75, 0.5, 0.5, 0.125]])
    counts = vote_counts(neigh, sims, 4, weighted=False)
    np.testing.assert_array_equal(single_label_predict(counts, sims, neigh, 1), [1])
    # equal votes and equal summed similarity -> the nearest voter's label
    sims_eq = np.array([[0.75, 0.5, 0.25, 0.5]])
    np.testing.assert_array_equal(single_label_predict(counts, sims_eq, neigh, 1), [0])
    neigh_rev = _neigh([[{1}, {0}, {0}, {1}]], 2)
    np.testing.assert_array_equal(single_label_predict(counts, sims_eq, neigh_rev, 1), [1])
    # weighted single-label: m against the weighted vote
    wcounts = vote_counts(neigh, sims, 4, weighted=True)
    np.testing.assert_array_equal(single_label_predict(wcounts, sims, neigh, 1), [1])
    np.testing.assert_array_equal(single_label_predict(wcounts, sims, neigh, 1.5), [-1])


# ---------------------------------------------------------------------------- tuning


def _book_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two labels; every query has one true label t and the other label o. Half the queries see
    neighbours [t, o, t, o, o], half [o, t, t, o, o]. Reasoning per (k, m):
    k=1 is wrong for half; k=2 gives t:1 o:1 (m=1 predicts both, m=2 none); k=3 gives t:2 o:1, so
    m=2 predicts exactly {t}: perfect; k=4 ties 2:2; k=5 favours o. The unique best is (3, 2)."""
    rows, truth = [], []
    for q in range(8):
        t, o = q % 2, 1 - q % 2
        rows.append([{t}, {o}, {t}, {o}, {o}] if q < 4 else [{o}, {t}, {t}, {o}, {o}])
        truth.append([t == 0, t == 1])
    sims = np.tile(np.linspace(0.9, 0.5, 5), (8, 1))
    return _neigh(rows, 2), sims, np.array(truth)


def test_tune_finds_reasoned_best() -> None:
    neigh, sims, y = _book_case()
    for metric in ("micro", "macro"):
        result = tune_k_m(neigh, sims, y, max_k=5, metric=metric)
        assert (result.k, result.m) == (3, 2)
        assert result.score == pytest.approx(1.0)
        assert result.metric == metric
    perfect = [(r["k"], r["m"]) for r in result.grid if r["micro_f1"] == pytest.approx(1.0)]
    assert perfect == [(3, 2)]
    assert len(result.grid) == 5 * 6 // 2
    json.dumps(result.to_dict())  # plain types only
    assert isinstance(result, KMResult)


def test_tune_single_label_reasoned_best() -> None:
    neigh, sims, y = _book_case()
    result = tune_k_m(neigh, sims, y, max_k=5, multi_label=False)
    # single-label: k=1 is right for half; k=3 majority is always t (2 vs 1) -> accuracy 1 with m<=2;
    # m=1 and m=2 tie at k=3, larger m wins. k=2 ties 1:1 and the closer voter is wrong for half.
    assert (result.k, result.m) == (3, 2)
    row = next(r for r in result.grid if (r["k"], r["m"]) == (3, 2))
    assert row["accuracy"] == pytest.approx(1.0)


def _random_case(seed: int, n_q: int = 40, max_k: int = 6, n_labels: int = 4, single: bool = False):
    rng = np.random.default_rng(seed)
    neigh = rng.random((n_q, max_k, n_labels)) < 0.35
    sims = -np.sort(-rng.uniform(-0.2, 1.0, (n_q, max_k)), axis=1)
    if single:
        lab = rng.integers(0, n_labels, (n_q, max_k))
        neigh = np.eye(n_labels, dtype=bool)[lab]
        neigh[rng.random((n_q, max_k)) < 0.1] = False  # some missing neighbours
        y = np.eye(n_labels, dtype=bool)[rng.integers(0, n_labels, n_q)]
        y[:3] = False  # a few queries whose right answer is "no label"
    else:
        y = rng.random((n_q, n_labels)) < 0.4
    return neigh, sims, y


def _best_by_rule(grid: list[dict], key: str) -> tuple[int, int]:
    top = max(r[key] for r in grid)
    tied = [r for r in grid if r[key] >= top - 1e-12]
    k = min(r["k"] for r in tied)
    return k, max(r["m"] for r in tied if r["k"] == k)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tune_multi_label_matches_sklearn_brute_force(seed: int, weighted: bool) -> None:
    neigh, sims, y = _random_case(seed)
    result = tune_k_m(neigh, sims, y, max_k=6, weighted=weighted, metric="macro")
    rows = {(r["k"], r["m"]): r for r in result.grid}
    assert len(rows) == 21
    for k in range(1, 7):
        counts = vote_counts(neigh, sims, k, weighted)  # the book's way: re-vote for every (k, m)
        for m in range(1, k + 1):
            pred = multi_label_predict(counts, m)
            for avg in ("micro", "macro"):
                expected = f1_score(y, pred, average=avg, zero_division=0)
                assert rows[(k, m)][f"{avg}_f1"] == pytest.approx(expected, abs=1e-12), (k, m, avg)
    assert (result.k, result.m) == _best_by_rule(result.grid, "macro_f1")
    assert result.score == rows[(result.k, result.m)]["macro_f1"]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", [3, 4])
def test_tune_single_label_matches_sklearn_brute_force(seed: int, weighted: bool) -> None:
    neigh, sims, y = _random_case(seed, single=True)
    result = tune_k_m(neigh, sims, y, max_k=6, multi_label=False, weighted=weighted)
    rows = {(r["k"], r["m"]): r for r in result.grid}
    true_idx = np.where(y.any(axis=1), y.argmax(axis=1), -1)
    for k in range(1, 7):
        counts = vote_counts(neigh, sims, k, weighted)
        for m in range(1, k + 1):
            pred = single_label_predict(counts, sims[:, :k], neigh[:, :k], m)
            onehot = np.zeros_like(y)
            onehot[pred >= 0, pred[pred >= 0]] = True  # "no label" = all-zero row = false negative
            for avg in ("micro", "macro"):
                expected = f1_score(y, onehot, average=avg, zero_division=0)
                assert rows[(k, m)][f"{avg}_f1"] == pytest.approx(expected, abs=1e-12), (k, m, avg)
            assert rows[(k, m)]["accuracy"] == pytest.approx(np.mean(pred == true_idx), abs=1e-12)
    assert (result.k, result.m) == _best_by_rule(result.grid, "micro_f1")


def test_tune_tie_prefers_smaller_k_then_larger_m() -> None:
    # every neighbour is right: all (k, m) are perfect -> smallest k (1, with its only m)
    neigh = _neigh([[{0}, {0}, {0}], [{1}, {1}, {1}]], 2)
    sims = np.full((2, 3), 0.9)
    y = np.array([[True, False], [False, True]])
    result = tune_k_m(neigh, sims, y, max_k=3)
    assert (result.k, result.m) == (1, 1)
    # weighted, similarity 3 (artificial): k=1 has only a 0.5 vote for the wrong label (nothing
    # predicted), k=2 gives t=3.0, o=0.5, so m=1 and m=2 are both perfect -> the larger m
    neigh = _neigh([[{1}, {0}]], 2)
    sims = np.array([[0.5, 3.0]])
    result = tune_k_m(neigh, sims, np.array([[True, False]]), max_k=2, weighted=True)
    assert (result.k, result.m) == (2, 2)


def test_tune_validates_inputs() -> None:
    neigh, sims, y = _book_case()
    with pytest.raises(FewlabelError):
        tune_k_m(neigh, sims, y, max_k=6)  # more than searched
    with pytest.raises(FewlabelError):
        tune_k_m(neigh, sims, y, max_k=3, metric="weighted")  # type: ignore[arg-type]
    with pytest.raises(DataError):
        tune_k_m(neigh, sims, y[:, :1], max_k=3)
    with pytest.raises(DataError):
        tune_k_m(neigh, sims, np.ones_like(y), max_k=3, multi_label=False)


def test_tune_progress_bar_runs(capsys) -> None:
    neigh, sims, y = _book_case()
    capsys.readouterr()
    assert tune_k_m(neigh, sims, y, max_k=5, show_progress=True).k == 3
    err = capsys.readouterr().err  # not a terminal, yet asked for: the bar is shown, named and counted in k
    assert re.search(r"(^|\r)tuning k: 100%\|[^|]*\| 5/5 \[[^]]*(\?k/s|[\d.]+k/s|[\d.]+s/k)\]", err), err


# ---------------------------------------------------------------------------- KNNLabeler


def test_labeler_round_trip_multi_label() -> None:
    X, cluster, centres = _clusters()
    y = [MULTI[c] for c in cluster]
    labeler = KNNLabeler(k=5, m=3).fit(X, y)
    assert labeler.classes_.tolist() == ["a", "b", "c"]
    assert labeler.label_matrix_.shape == (60, 3) and labeler.label_matrix_.dtype == bool
    assert labeler.index_.ntotal == 60

    Q, q_cluster, _ = _clusters(seed=1, per_cluster=4)
    assert labeler.predict_labels(Q) == [MULTI[c] for c in q_cluster]

    proba = labeler.predict_proba(Q)
    assert proba.shape == (12, 3)
    expected = np.array([[c in MULTI[k] for c in "abc"] for k in q_cluster], dtype=float)
    np.testing.assert_allclose(proba, expected)

    sims, ids = labeler.kneighbors(Q[:2], n_neighbors=3)
    assert sims.shape == ids.shape == (2, 3)
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # best first

    expl = labeler.explain(Q[:2], n_neighbors=3)
    assert len(expl) == 2 and len(expl[0]) == 3
    first = expl[0][0]
    assert set(first) == {"row", "similarity", "labels"}
    assert first["row"] == int(ids[0, 0]) and first["similarity"] == pytest.approx(float(sims[0, 0]))
    assert first["labels"] == list(MULTI[int(cluster[first["row"]])])
    json.dumps(expl)  # plain Python types

    # a query between clusters gets fewer (possibly no) labels rather than a guess
    far = _unit(np.ones((1, X.shape[1]), dtype=np.float32))
    assert isinstance(labeler.predict_labels(far)[0], tuple)
    assert labeler.predict_labels(np.zeros((0, X.shape[1]), dtype=np.float32)) == []


def test_labeler_single_label_and_abstention() -> None:
    X, cluster, centres = _clusters()
    labeler = KNNLabeler(k=5, m=3, multi_label=False).fit(X, [SINGLE[c] for c in cluster])
    Q, q_cluster, _ = _clusters(seed=2, per_cluster=3)
    assert labeler.predict_labels(Q) == [SINGLE[c] for c in q_cluster]
    # halfway between clusters a and b (3 points each): the 6 nearest split 3:3, below m=4 -> None
    X3, cluster3, _ = _clusters(per_cluster=3)
    strict = KNNLabeler(k=6, m=4, multi_label=False).fit(X3, [SINGLE[c] for c in cluster3])
    mid = _unit((centres[0] + centres[1])[None, :])
    assert strict.predict_labels(mid) == [None]
    assert KNNLabeler(k=6, m=3, multi_label=False).fit(X3, [SINGLE[c] for c in cluster3]).predict_labels(mid) != [
        None
    ]
    with pytest.raises(DataError):
        KNNLabeler(multi_label=False).fit(X[:2], [("a", "b"), ("a",)])


def test_labeler_weighted_proba_sums_to_one_for_single_label() -> None:
    X, cluster, _ = _clusters()
    labeler = KNNLabeler(k=5, m=1, multi_label=False, weighted=True).fit(X, [SINGLE[c] for c in cluster])
    Q, q_cluster, _ = _clusters(seed=3, per_cluster=2)
    np.testing.assert_allclose(labeler.predict_proba(Q).sum(axis=1), 1.0)
    assert labeler.predict_labels(Q) == [SINGLE[c] for c in q_cluster]


def test_from_index_gives_same_predictions() -> None:
    X, cluster, _ = _clusters()
    y = [MULTI[c] for c in cluster]
    fitted = KNNLabeler(k=5, m=3).fit(X, y)
    wrapped = KNNLabeler.from_index(
        fitted.index_, fitted.label_matrix_, list(fitted.classes_), k=5, m=3, multi_label=True
    )
    assert wrapped.index_.ntotal == 60  # nothing re-added
    assert wrapped.factory is None
    Q, _, _ = _clusters(seed=4, per_cluster=5)
    assert wrapped.predict_labels(Q) == fitted.predict_labels(Q)
    np.testing.assert_array_equal(wrapped.predict_proba(Q), fitted.predict_proba(Q))
    with pytest.raises(IndexMismatchError):
        KNNLabeler.from_index(
            fitted.index_, fitted.label_matrix_[:10], ["a", "b", "c"], k=5, m=3, multi_label=True
        )
    with pytest.raises(IndexMismatchError):
        KNNLabeler.from_index(fitted.index_, fitted.label_matrix_, ["a", "b"], k=5, m=3, multi_label=True)
    with pytest.raises(FewlabelError):
        KNNLabeler.from_index(
            fitted.index_, fitted.label_matrix_, ["a", "b", "c"], k=5, m=6, multi_label=True
        )


def test_hnsw_factory_works() -> None:
    X, cluster, _ = _clusters()
    y = [MULTI[c] for c in cluster]
    labeler = KNNLabeler(k=5, m=3, factory="HNSW32").fit(X, y)
    Q, q_cluster, _ = _clusters(seed=5, per_cluster=4)
    assert labeler.predict_labels(Q) == [MULTI[c] for c in q_cluster]


def test_fewer_vectors_than_k() -> None:
    X, cluster, _ = _clusters(per_cluster=1)  # 3 vectors, k=5 -> faiss pads with -1
    labeler = KNNLabeler(k=5, m=1).fit(X, [MULTI[c] for c in cluster])
    expl = labeler.explain(X[:1])
    assert len(expl[0]) == 3
    assert labeler.predict_labels(X[:1]) == [("a", "b", "c")]  # each of the 3 real neighbours votes once
    np.testing.assert_allclose(labeler.predict_proba(X[:1]), [[2 / 5, 1 / 5, 1 / 5]])


@pytest.mark.parametrize(("k", "m"), [(0, 1), (3, 0), (3, 4), (2.5, 1), (True, 1), (3, None)])
def test_bad_k_m_raise(k: object, m: object) -> None:
    X, cluster, _ = _clusters(per_cluster=3)
    with pytest.raises(FewlabelError):
        KNNLabeler(k=k, m=m).fit(X, [MULTI[c] for c in cluster])  # type: ignore[arg-type]


def test_bad_inputs_raise() -> None:
    X, cluster, _ = _clusters(per_cluster=3)
    y = [MULTI[c] for c in cluster]
    with pytest.raises(ValueError, match="0 sample"):
        KNNLabeler().fit(X[:0], [])
    with pytest.raises(DataError):
        KNNLabeler(k=3, m=1).fit(X, y[:-1])
    with pytest.raises(ValueError, match="2D array"):
        KNNLabeler(k=3, m=1).fit(X[0], y[:1])
    with pytest.raises(FewlabelError):
        KNNLabeler(k=3, m=1, factory="NoSuchIndex").fit(X, y)
    with pytest.raises(NotFittedError):
        KNNLabeler().predict(X)
    fitted = KNNLabeler(k=3, m=1).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        fitted.predict_labels(_unit(np.ones((1, 8), dtype=np.float32)))


def test_sklearn_estimator_contract() -> None:
    labeler = KNNLabeler(k=7, m=2, weighted=True, factory="HNSW32")
    assert labeler.get_params() == {
        "k": 7,
        "m": 2,
        "multi_label": True,
        "weighted": True,
        "factory": "HNSW32",
    }
    X, cluster, _ = _clusters(per_cluster=3)
    fitted = labeler.fit(X, [MULTI[c] for c in cluster])
    assert fitted is labeler
    copy = clone(labeler)
    assert copy.get_params() == labeler.get_params() and not hasattr(copy, "index_")


def test_vectors_of_any_scale_are_normalised() -> None:
    """Cosine needs unit vectors: the labeler normalises what it is given instead of refusing it."""
    X, cluster, _ = _clusters()
    y = [MULTI[c] for c in cluster]
    unit = KNNLabeler(k=5, m=3).fit(X, y)
    scaled = KNNLabeler(k=5, m=3).fit(X * 7.5, y)
    Q, _, _ = _clusters(seed=6, per_cluster=4)
    assert scaled.predict_labels(Q * 0.1) == unit.predict_labels(Q)
    np.testing.assert_allclose(scaled.kneighbors(Q * 3)[0], unit.kneighbors(Q)[0], atol=1e-6)


def test_predict_has_scikit_learn_shapes() -> None:
    X, cluster, _ = _clusters()
    multi = KNNLabeler(k=5, m=3).fit(X, [MULTI[c] for c in cluster])
    Q, q_cluster, _ = _clusters(seed=7, per_cluster=2)
    indicator = multi.predict(Q)
    assert indicator.dtype == bool and indicator.shape == (len(Q), 3)
    assert [tuple(multi.classes_[row]) for row in indicator] == [MULTI[c] for c in q_cluster]
    single = KNNLabeler(k=5, m=3, multi_label=False).fit(X, [SINGLE[c] for c in cluster])
    assert single.predict(Q).shape == (len(Q),) and single.predict(Q).tolist() == [SINGLE[c] for c in q_cluster]


#: check_estimator's checks that KNNLabeler does not pass, with the reason. Empty: it passes all of them.
KNOWN_FAILING_CHECKS: dict[str, str] = {}


def test_scikit_learn_check_estimator() -> None:
    """scikit-learn's own estimator test suite, run on the default labeler."""
    results = check_estimator(KNNLabeler(), on_fail=None)
    failed = {r["check_name"]: str(r["exception"]).splitlines()[0] for r in results if r["status"] == "failed"}
    assert set(failed) == set(KNOWN_FAILING_CHECKS), failed
    assert len(results) >= 40  # the suite really ran


def test_every_voting_check_names_what_is_wrong() -> None:
    """Each refusal in voting.py with its own message (mutation testing found them checked only by type)."""
    from fewlabel.retrieval.knn.voting import single_label_choice

    labels = np.array([[1, 0], [0, 1]], dtype=bool)
    cases = [
        (lambda: neighbour_label_tensor(labels[0], np.array([[0]])),
         r"^label_matrix must be 2-D \(n_train, n_labels\), got shape \(2,\)$"),
        (lambda: neighbour_label_tensor(labels, np.array([0, 1])),
         r"^neighbour_ids must be 2-D \(n_queries, k\), got shape \(2,\)$"),
        (lambda: neighbour_label_tensor(labels, np.array([[0.0, 1.0]])),
         r"^neighbour_ids must be integers, got dtype float64$"),
        (lambda: neighbour_label_tensor(labels, np.array([[0, 2]])),
         r"^neighbour id 2 is out of range for a label matrix with 2 rows; the index and its labels do not "
         r"belong together$"),
        (lambda: vote_counts(np.zeros((1, 2)), np.zeros((1, 2)), 1, False),
         r"^neighbour labels must be 3-D \(n_queries, k, n_labels\), got shape \(1, 2\)$"),
        (lambda: vote_counts(np.zeros((1, 2, 3)), np.zeros((1, 3)), 1, False),
         r"^similarities have shape \(1, 3\) but neighbour labels have \(1, 2\) \(n_queries, k\)$"),
        (lambda: vote_counts(np.zeros((1, 2, 3)), np.zeros((1, 2)), 0, False),
         r"^k must be an integer between 1 and 2 \(neighbours searched\), got 0$"),
        (lambda: vote_counts(np.zeros((1, 2, 2)), np.zeros((1, 2)), True, False), r"got True$"),
        (lambda: vote_counts(np.zeros((1, 2, 2)), np.zeros((1, 2)), 1.0, False), r"got 1\.0$"),
        (lambda: multi_label_predict(np.zeros((1, 2)), -1),
         r"^m \(votes needed for a label\) must be a positive number, got -1$"),
        (lambda: multi_label_predict(np.zeros((1, 2)), True), r"got True$"),
        (lambda: multi_label_predict(np.zeros((1, 2)), "2"), r"got '2'$"),
        (lambda: single_label_choice(np.zeros((1, 3)), np.zeros((1, 2)), np.zeros((1, 2, 2))),
         r"^counts have shape \(1, 3\), expected \(1, 2\) \(n_queries, n_labels\)$"),
        (lambda: vote_fractions(np.zeros((1, 2)), 0), r"^k must be a positive integer, got 0$"),
        (lambda: vote_fractions(np.zeros((1, 2)), False), r"got False$"),
        (lambda: vote_fractions(np.zeros((1, 2)), 2, weighted=True),
         r"^weighted vote fractions need the neighbour similarities \(sims\)$"),
    ]
    for call, message in cases:
        with pytest.raises(FewlabelError, match=message):
            call()
    # the edges that are accepted
    assert multi_label_predict(np.array([[0.5, 0.25]]), np.float32(0.5)).tolist() == [[True, False]]
    assert vote_counts(np.ones((1, 2, 2)), np.ones((1, 2)), np.int64(2), False).tolist() == [[2.0, 2.0]]
    assert vote_fractions(np.array([[1.0, 2.0]]), np.int32(2)).tolist() == [[0.5, 1.0]]
    empty = single_label_choice(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2, 2)))
    assert empty[0].shape == (0,) and empty[1].shape == (0,)
    no_labels = single_label_choice(np.zeros((2, 0)), np.zeros((2, 1)), np.zeros((2, 1, 0)))
    assert no_labels[0].tolist() == [-1, -1] and no_labels[1].tolist() == [0.0, 0.0]
    assert neighbour_label_tensor(np.zeros((0, 2), dtype=bool), np.array([[-1]])).tolist() == [[[False, False]]]
    unweighted = neighbour_weights_of(np.array([[0.5, -0.5]]))
    assert unweighted.tolist() == [[1.0, 1.0]] and unweighted.dtype == np.float64


def neighbour_weights_of(sims: np.ndarray) -> np.ndarray:
    from fewlabel.retrieval.knn.voting import neighbour_weights

    return neighbour_weights(sims, False)


def test_every_tuning_check_names_what_is_wrong() -> None:
    neigh, sims, y = _book_case()
    n_q, searched, n_labels = neigh.shape
    cases = [
        (dict(metric="weighted"), FewlabelError, r"^metric must be 'micro' or 'macro', got 'weighted'$"),
        (dict(neigh=neigh[0]), FewlabelError,
         r"^neighbour labels must be 3-D \(n_queries, max_k, n_labels\), got shape \(\d+, \d+\)$"),
        (dict(sims=sims[:, :-1]), FewlabelError,
         rf"^similarities have shape \({n_q}, {searched - 1}\), expected \({n_q}, {searched}\)$"),
        (dict(y=y[:, :1]), DataError, rf"y_true has shape \({n_q}, 1\), expected \({n_q}, {n_labels}\) "
                                      r"\(n_queries, n_labels\)"),
        (dict(max_k=searched + 1), FewlabelError,
         rf"^max_k must be an integer between 1 and {searched} \(neighbours searched\), got {searched + 1}$"),
        (dict(max_k=0), FewlabelError, r"got 0$"),
        (dict(max_k=True), FewlabelError, r"got True$"),
        (dict(max_k=2.0), FewlabelError, r"got 2\.0$"),
        (dict(neigh=neigh[:0], sims=sims[:0], y=y[:0]), DataError,
         r"^field 'labels': no validation queries to tune \(k, m\) on$"),
        (dict(neigh=neigh[:, :, :0], y=y[:, :0]), DataError, r"^field 'labels': no labels to tune \(k, m\) for$"),
        (dict(y=np.ones_like(y), multi_label=False), DataError,
         r"validation row 0 has several true labels; single-label tuning needs at most one"),
    ]
    for change, kind, message in cases:
        args = {"neigh": neigh, "sims": sims, "y": y, "max_k": 3, **change}
        with pytest.raises(kind, match=message) as caught:
            tune_k_m(args.pop("neigh"), args.pop("sims"), args.pop("y"), **args)
        if kind is DataError:
            assert caught.value.field == "labels"
    assert tune_k_m(neigh, sims, y, max_k=np.int64(3)).k <= 3  # a numpy integer is a whole number too


def test_f1_from_counts_follows_scikit_learns_zero_division_rule() -> None:
    from fewlabel.retrieval.knn.tuning import f1_from_counts

    micro, macro = f1_from_counts(np.array([2, 0, 0]), np.array([1, 0, 2]), np.array([1, 0, 0]))
    assert micro == pytest.approx(4 / 8) and macro == pytest.approx((4 / 6 + 0 + 0) / 3)
    micro, macro = f1_from_counts(np.zeros((2, 0)), np.zeros((2, 0)), np.zeros((2, 0)))
    assert micro.tolist() == [0.0, 0.0] and macro.tolist() == [0.0, 0.0]


def test_weights_clip_what_is_not_a_real_similarity_to_zero() -> None:
    from fewlabel.retrieval.knn.voting import neighbour_weights

    sims = np.array([[np.nan, np.inf, -np.inf, 0.5, -0.25]], dtype=np.float32)
    weights = neighbour_weights(sims, True)
    assert weights.dtype == np.float64 and weights.tolist() == [[0.0, 0.0, 0.0, 0.5, 0.0]]


def test_single_label_choice_rules_at_their_edges() -> None:
    from fewlabel.retrieval.knn.voting import single_label_choice

    # one label: it is the answer, with its votes
    labels, best = single_label_choice(np.array([[2.0]]), np.array([[0.9, 0.8]]), _neigh([[{0}, {0}]], 1))
    assert labels.tolist() == [0] and best.tolist() == [2.0]
    # equal votes and equal support: the label of the nearest voter wins, not the lowest index
    labels, _ = single_label_choice(np.array([[1.0, 1.0]]), np.array([[0.5, 0.5]]), _neigh([[{1}, {0}]], 2))
    assert labels.tolist() == [1]
    # a label with no votes never wins over the one that has them, however late its voter comes
    labels, best = single_label_choice(np.array([[0.0, 1.0]]), np.array([[0.9, 0.8, 0.7]]),
                                       _neigh([[set(), set(), {1}]], 2))
    assert labels.tolist() == [1] and best.tolist() == [1.0]
    # float ties are ties within 1e-9 of the larger value: at 3.0, a gap of 2e-9 ties (votes and support) ...
    labels, _ = single_label_choice(np.array([[3.0, 3.0 - 2e-9]]), np.array([[3.0 - 2e-9, 3.0]]),
                                    _neigh([[{1}, {0}]], 2))
    assert labels.tolist() == [1]  # tied twice, so the nearest voter's label
    # ... and at 1.5 a gap of 1.8e-9 does not (the tolerance is relative, at least 1e-9)
    labels, _ = single_label_choice(np.array([[1.5, 1.5 - 1.8e-9]]), np.array([[1.0, 1.0]]), _neigh([[{1}, {0}]], 2))
    assert labels.tolist() == [0]
    labels, _ = single_label_choice(np.array([[1.0, 1.0]]), np.array([[1.5 - 1.8e-9, 1.5]]), _neigh([[{1}, {0}]], 2))
    assert labels.tolist() == [0]


def test_weighted_fractions_divide_by_a_total_below_one_too() -> None:
    sims = np.array([[0.3, 0.2]])
    counts = vote_counts(_neigh([[{0}, {1}]], 2), sims, 2, True)
    np.testing.assert_allclose(vote_fractions(counts, 2, weighted=True, sims=sims), [[0.6, 0.4]])


def test_tuning_edges_one_k_quiet_by_default_and_the_first_bad_row(capsys) -> None:
    neigh, sims, y = _book_case()
    one = tune_k_m(neigh, sims, y, max_k=1)
    assert (one.k, one.m) == (1, 1) and len(one.grid) == 1
    capsys.readouterr()
    tune_k_m(neigh, sims, y, max_k=3)
    assert capsys.readouterr().err == ""  # no progress bar unless asked for
    single = np.zeros_like(y)
    single[:, 0] = True
    single[1, 1] = True  # row 0 has one label, row 1 two
    with pytest.raises(DataError, match=r"validation row 1 has several true labels"):
        tune_k_m(neigh, sims, single, max_k=3, multi_label=False)


def test_f1_from_counts_of_no_labels_is_a_plain_zero() -> None:
    from fewlabel.retrieval.knn.tuning import f1_from_counts

    micro, macro = f1_from_counts(np.zeros(0), np.zeros(0), np.zeros(0))
    assert micro.shape == () and macro.shape == () and float(micro) == 0.0 and float(macro) == 0.0


def test_f1_from_counts_of_narrow_integer_counts_does_not_overflow() -> None:
    from fewlabel.retrieval.knn.tuning import f1_from_counts

    # 2 * 200 does not fit a uint8: the counts must be widened before they are doubled
    tp, fp, fn = (np.array([v], dtype=np.uint8) for v in (200, 1, 0))
    micro, macro = f1_from_counts(tp, fp, fn)
    assert float(micro) == pytest.approx(400 / 401) and float(macro) == pytest.approx(400 / 401)
