"""The labelling loop's pieces: the selection rules on arrays whose answer is known, `check` finding flipped
labels, the pool cache, and `fewlabel suggest` / `check` / `index add` closing the loop on the demo data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fewlabel.indexing.readers import Row
from fewlabel.retrieval.cli import main
from fewlabel.retrieval.labelling.check import conflicting_duplicates, out_of_fold, rank_issues
from fewlabel.retrieval.labelling.pool import pool_vectors
from fewlabel.retrieval.labelling.strategies import (
    auto_strategy,
    diverse,
    diverse_uncertain,
    uncertainty,
    uncertainty_scores,
)
from fewlabel.retrieval.labelling.suggest import candidates
from fewlabel.retrieval.methods.common import Views

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"


def fresh_home(folder: Path) -> Path:
    """A FEWLABEL_HOME with empty caches that shares the current one's models (the rebuilt e5 and its ONNX
    export), so a test sees its own cache misses and hits without rebuilding a model."""
    from fewlabel.indexing.files import fewlabel_home

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("models", "onnx", "weights.json"):
        if (fewlabel_home() / name).exists() and not (folder / name).exists():
            (folder / name).symlink_to(fewlabel_home() / name)
    return folder


def blobs(n_per: int, centres: int, dim: int = 16, seed: int = 0, spread: float = 0.05):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, dim))
    x = np.concatenate([c[j] + spread * rng.normal(size=(n_per, dim)) for j in range(centres)])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(centres), n_per)


def test_uncertainty_scores_single_and_multi_label():
    single = uncertainty_scores(np.array([[0.5, 0.5, 0.0], [0.9, 0.05, 0.05], [0.4, 0.35, 0.25]]), False)
    assert single[0] == pytest.approx(1.0) and single[1] == pytest.approx(0.15) and single[2] == pytest.approx(0.95)
    multi = uncertainty_scores(np.array([[0.5, 0.99], [0.99, 0.01], [0.3, 0.9]]), True,
                               np.array([0.5, 0.5]))
    assert multi[0] == pytest.approx(1.0) and multi[1] < multi[2] < multi[0]
    picked = uncertainty(single, 2)
    assert list(picked.rows) == [0, 2]


def test_diverse_takes_one_typical_text_per_cluster():
    x, cluster = blobs(30, 5)
    picked = diverse(x, 5, seed=0)
    assert sorted(cluster[picked.rows]) == [0, 1, 2, 3, 4]
    # clusters far from the labelled rows come first
    labelled = x[cluster == 2][:3]
    first = diverse(x, 5, seed=0, labelled=labelled)
    assert cluster[first.rows[-1]] == 2


def test_diverse_uncertain_spreads_a_batch_over_clusters():
    x, cluster = blobs(20, 4)  # the 10n = 40 least certain: all of cluster 0, and 20 spread over the others
    scores = np.where(cluster == 0, 0.99, 0.5) + np.random.default_rng(1).uniform(0, 0.01, len(x))
    plain = uncertainty(scores, 4)
    assert set(cluster[plain.rows]) == {0}  # plain uncertainty asks the same question 4 times
    spread = diverse_uncertain(x, scores, 4, seed=0)
    assert len(set(cluster[spread.rows])) >= 3
    assert auto_strategy(0, 2) == "diverse" and auto_strategy(255, 2) == "diverse"  # active.md: the range measured
    assert auto_strategy(256, 2) == "diverse-uncertain" and auto_strategy(300, 100) == "diverse"


def test_candidates_skip_indexed_texts_and_pool_duplicates():
    pool = [Row(t, (), str(i), i + 1) for i, t in enumerate(["a", "b", "a", "c", "d"])]
    assert list(candidates(pool, {"c"})) == [0, 1, 4]


def test_check_finds_flipped_labels_out_of_fold():
    x, cluster = blobs(40, 3, spread=0.3, seed=3)
    y = np.eye(3, dtype=bool)[cluster]
    flipped = np.array([5, 50, 90, 100])
    noisy = y.copy()
    noisy[flipped] = np.roll(y[flipped], 1, axis=1)
    views = Views(x, [f"text {i}" for i in range(len(x))])
    proba, _ = out_of_fold("linear", {"C": 1.0}, views, noisy, False, folds=5)
    order, flagged, quality = rank_issues(noisy, proba, False)
    assert set(order[:4].tolist()) == set(flipped.tolist())
    assert flagged[flipped].sum() >= 3 and flagged.sum() <= 8  # cleanlab flags conservatively; the ranking has all
    assert quality[flipped].max() < np.median(quality)


def test_conflicting_duplicates():
    rows = [Row("same", ("a",), "1", 1), Row("same", ("b",), "2", 2), Row("twice", ("a",), "3", 3),
            Row("twice", ("a",), "4", 4)]
    found = conflicting_duplicates(rows)
    assert [(c.text, c.ids) for c in found] == [("same", ["1", "2"])]


def test_pool_vectors_are_encoded_once(tmp_path):
    calls = []

    def encode(texts):
        calls.append(list(texts))
        return np.eye(len(texts), 4, dtype=np.float32)

    record = {"model": "m", "dim": 4, "location": "/somewhere"}
    first, hit = pool_vectors(record, ["x", "y"], encode, folder=tmp_path)
    again, hit_again = pool_vectors({**record, "location": "/elsewhere"}, ["x", "y"], encode, folder=tmp_path)
    assert (hit, hit_again) == (False, True) and len(calls) == 1 and np.array_equal(first, again)
    pool_vectors({**record, "model": "other"}, ["x", "y"], encode, folder=tmp_path)
    pool_vectors(record, ["y", "x"], encode, folder=tmp_path)
    assert len(calls) == 3  # another encoder, or other texts, are another matrix


def _tsv(dst: Path, lines: list[str]) -> Path:
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dst


@pytest.mark.slow  # five commands, each loading e5-small: about a minute on 2 cores
def test_suggest_check_and_add_close_the_loop(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FEWLABEL_HOME", str(fresh_home(tmp_path / "home")))
    lines = (DEMO / "nsmc_train.tsv").read_text(encoding="utf-8").splitlines()
    seed = _tsv(tmp_path / "seed.tsv", [lines[0], *lines[1:31]])
    pool = _tsv(tmp_path / "pool.tsv", [lines[0], *lines[11:91]])
    index = tmp_path / "index"
    assert main(["-q", "index", "build", str(seed), "--id-col", "id", "--model", "e5-small", "--out", str(index)]) == 0
    out = tmp_path / "to_label.csv"
    assert main(["suggest", str(index), str(pool), "--id-col", "id", "--n", "8", "--out", str(out)]) == 0
    assert "encoded and cached" in capsys.readouterr().err
    with open(out, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and list(rows[0]) == ["id", "text", "label", "guess", "score", "strategy", "reason"]
    seed_texts = {line.split("\t")[1] for line in lines[1:31]}
    assert not {r["text"] for r in rows} & seed_texts
    assert all(r["label"] in ("positive", "negative") and json.loads(r["guess"]) == [r["label"]] for r in rows)
    assert all(r["strategy"] == "auto:diverse" for r in rows)  # 30 rows: still the cold start
    # a second suggest reads the pool's vectors from the cache
    assert main(["suggest", str(index), str(pool), "--id-col", "id", "--n", "8", "--strategy", "uncertainty",
                 "--out", str(out)]) == 0
    assert "from the pool cache" in capsys.readouterr().err
    # the loop closes with index add (the label column holds the reviewed labels)
    assert main(["-q", "index", "add", str(index), str(out)]) == 0
    assert "now holds 38 rows" in capsys.readouterr().out
    # check: ranked suspects with given and suggested labels, and a conflicting duplicate
    dup = _tsv(tmp_path / "dup.tsv", ["id\ttext\tlabel", f"dup1\t{lines[1].split(chr(9))[1]}\tpositive"])
    first_label = lines[1].split("\t")[2]
    if first_label == "positive":
        dup = _tsv(tmp_path / "dup.tsv", ["id\ttext\tlabel", f"dup1\t{lines[1].split(chr(9))[1]}\tnegative"])
    assert main(["-q", "index", "add", str(index), str(dup), "--id-col", "id"]) == 0
    report = tmp_path / "suspects.csv"
    assert main(["check", str(index), "--all", "--out", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "1 duplicate texts with conflicting labels" in printed
    with open(report, encoding="utf-8", newline="") as fh:
        found = list(csv.DictReader(fh))
    ranked = [r for r in found if r["kind"] == "label"]
    assert len(ranked) == 39 and [int(r["rank"]) for r in ranked] == list(range(1, 40))
    assert sum(r["kind"] == "duplicate" for r in found) == 2
    # a file that is not ours is never replaced
    mine = tmp_path / "mine.csv"
    mine.write_text("a,b\n1,2\n", encoding="utf-8")
    assert main(["check", str(index), "--out", str(mine)]) == 2
    assert mine.read_text(encoding="utf-8") == "a,b\n1,2\n"
    assert "not a check report" in capsys.readouterr().err


def test_suggest_refuses_bad_input_before_loading(tmp_path, capsys):
    pool = _tsv(tmp_path / "pool.tsv", ["id\tbody", "1\thello"])
    assert main(["suggest", "-", str(pool), "--out", str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err
    assert "pool.tsv" in err and "text" in err
    assert main(["suggest", "-", str(pool), "--text-col", "body", "--out", str(tmp_path / "s.txt")]) == 2
    assert ".csv" in capsys.readouterr().err


def test_random_and_diverse_score_only_the_rows_they_pick():
    """A rule that does not read the scores asks the model only about its picks (a second `suggest` on a
    100,000-text pool spent most of its time scoring every text with a Naive Bayes part, suggest_speed.md); the
    guesses are the ones scoring the whole pool gives, and uncertainty still scores every candidate."""
    from fewlabel.retrieval.labelling.model import IndexModel
    from fewlabel.retrieval.labelling.suggest import suggest
    from fewlabel.retrieval.methods.linear import LinearHead

    x, y = blobs(40, 3)
    labels = ["a", "b", "c"]
    fitted = LinearHead((1.0,)).fit_views(Views(x[::4], [""] * len(x[::4])), np.eye(3, dtype=bool)[y[::4]], False)
    model = IndexModel("linear", fitted, {"C": 1.0}, labels, False)
    scored: list[int] = []
    real_proba = model.proba

    def counting_proba(views, chunk=20_000):
        scored.append(len(views))
        return real_proba(views, chunk)

    model.proba = counting_proba  # type: ignore[method-assign]
    pool = [Row(f"text {i}", (), f"p{i}", i + 2) for i in range(len(x))]
    whole, decided = real_proba(Views(x, [r.text for r in pool]))

    class Index:  # enough of a LabelIndex for suggest: rows, size, labels (300 rows: past the cold start)
        rows = [Row(f"labelled {i}", ("a",), f"l{i}", i + 2) for i in range(300)]
        label_names = labels
        store = type("Store", (), {"kind": "milvus"})()

        def __len__(self):
            return len(self.rows)

    for strategy in ("random", "diverse"):
        scored.clear()
        picked = suggest(Index(), pool, x, model, n=5, strategy=strategy)
        assert scored == [5], strategy
        for s in picked:
            i = int(s.id[1:])
            assert s.guess == [labels[j] for j in np.flatnonzero(decided[i])]
            assert s.probabilities == {name: round(float(v), 4) for name, v in zip(labels, whole[i], strict=True)}
    scored.clear()
    suggest(Index(), pool, x, model, n=5, strategy="uncertainty")
    assert scored == [len(x)]
    scored.clear()
    suggest(Index(), pool, x, model, n=5, strategy="auto")  # 300 rows, 3 labels: past the cold start
    assert scored == [len(x)]


def test_auto_past_the_cold_start_scores_a_sample_of_a_large_pool(monkeypatch):
    """auto's diverse-uncertain reads only the 10n least certain texts, so on a pool larger than SCORE_SAMPLE it
    scores a seeded sample of that many (a Naive Bayes part made scoring 100,000 texts take 8 s of a 5 s budget,
    suggest_speed.md); --max-scan overrides the sample, and `uncertainty` still scores every text."""
    from fewlabel.retrieval.labelling import suggest as suggest_module
    from fewlabel.retrieval.labelling.model import IndexModel
    from fewlabel.retrieval.methods.linear import LinearHead

    monkeypatch.setattr(suggest_module, "SCORE_SAMPLE", 60)
    x, y = blobs(40, 3)
    labels = ["a", "b", "c"]
    fitted = LinearHead((1.0,)).fit_views(Views(x[::4], [""] * len(x[::4])), np.eye(3, dtype=bool)[y[::4]], False)
    model = IndexModel("linear", fitted, {"C": 1.0}, labels, False)
    scored: list[int] = []
    real_proba = model.proba
    model.proba = lambda views, chunk=20_000: (scored.append(len(views)), real_proba(views, chunk))[1]  # type: ignore[method-assign]
    pool = [Row(f"text {i}", (), f"p{i}", i + 2) for i in range(len(x))]

    class Index:
        rows = [Row(f"labelled {i}", ("a",), f"l{i}", i + 2) for i in range(300)]
        label_names = labels
        store = type("Store", (), {"kind": "milvus"})()

        def __len__(self):
            return len(self.rows)

    picked = suggest_module.suggest(Index(), pool, x, model, n=5, strategy="auto")
    assert scored == [60] and len(picked) == 5 and all(s.strategy == "auto:diverse-uncertain" for s in picked)
    scored.clear()
    suggest_module.suggest(Index(), pool, x, model, n=5, strategy="auto", max_scan=100)
    assert scored == [100]
    scored.clear()
    suggest_module.suggest(Index(), pool, x, model, n=5, strategy="uncertainty")
    assert scored == [len(x)]


def test_kmeans_on_one_thread_gives_the_threads_back(monkeypatch):
    import faiss

    from fewlabel.retrieval.labelling import strategies
    from fewlabel.retrieval.labelling.strategies import kmeans

    monkeypatch.setattr(strategies, "KMEANS_THREADS", 1)

    before = faiss.omp_get_max_threads()
    x, cluster = blobs(30, 4)
    assign, sims = kmeans(x, 4, seed=0)
    assert faiss.omp_get_max_threads() == before
    assert len(set(zip(cluster.tolist(), assign.tolist(), strict=True))) == 4  # each blob is one cluster
    assert sims.min() > 0.9
