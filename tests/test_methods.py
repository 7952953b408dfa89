"""The index's method (`--method auto|knn|linear|nb|ensemble`): auto picks the candidate that is clearly best on
constructed data, cross-validation never scores rows a model or its settings saw, each stored method round-trips
through the folder and refuses a tampered file, and the leaderboard reaches meta.json and `index info`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fewlabel.indexing.errors import IndexMismatchError
from fewlabel.indexing.readers import Row
from fewlabel.retrieval.methods.auto import cv_plan, select_method
from fewlabel.retrieval.methods.common import Views, arrays_from_bytes, arrays_to_bytes
from tests.support.trained_index import check_round_trip_and_tamper

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _word_task(n: int, rng: np.random.Generator) -> tuple[Views, np.ndarray]:
    """The label is whether a text holds one keyword; the vectors are noise, so only n-grams can tell."""
    vocab = [f"w{i}" for i in range(300)]
    texts, labels = [], []
    for i in range(n):
        words = list(rng.choice(vocab, 8))
        label = i % 2
        words.insert(int(rng.integers(0, 8)), "zebra" if label else "yak")
        texts.append(" ".join(words))
        labels.append(label)
    y = np.eye(2, dtype=bool)[labels]
    return Views(_unit(rng.normal(size=(n, 32))), texts), y


def _paraphrase_task(n: int, rng: np.random.Generator) -> tuple[Views, np.ndarray]:
    """The label is where a text's vector lies; every text is a fresh word, so n-grams cannot tell."""
    centres = _unit(rng.normal(size=(3, 32)))
    labels = np.arange(n) % 3
    vectors = _unit(centres[labels] * 3 + rng.normal(size=(n, 32)))
    texts = [f"t{i}x{rng.integers(1e9)}" for i in range(n)]
    return Views(vectors, texts), np.eye(3, dtype=bool)[labels]


def test_auto_picks_naive_bayes_on_a_word_identity_task():
    rng = np.random.default_rng(0)
    train, y = _word_task(120, rng)
    valid, yv = _word_task(60, rng)
    choice = select_method(train, y, multi_label=False, valid=valid, y_valid=yv)
    board = {e["method"]: e["score"] for e in choice.leaderboard}
    assert choice.method == "nb" and board["nb"] == pytest.approx(1.0)
    assert board["knn"] < 0.8 and board["linear"] < 0.8


def test_auto_picks_an_embedding_method_on_a_paraphrase_task():
    rng = np.random.default_rng(1)
    train, y = _paraphrase_task(90, rng)
    choice = select_method(train, y, multi_label=False, folds=3)  # no validation rows: cross-validation
    board = {e["method"]: e["score"] for e in choice.leaderboard}
    assert choice.method in ("knn", "linear"), board
    assert board[choice.method] > 0.9 and board["nb"] < 0.6
    assert choice.protocol["kind"] == "cross-validation" and choice.protocol["folds"] == 3


def test_cross_validation_folds_are_disjoint_and_never_score_what_they_saw():
    rng = np.random.default_rng(2)
    y = np.eye(3, dtype=bool)[rng.integers(0, 3, 60)]
    plan = cv_plan(y, 5, seed=0)
    scored = np.concatenate([s for _, _, s in plan])
    assert sorted(scored) == list(range(60))  # every row scored exactly once
    for fit, tune, score in plan:
        assert not set(fit) & set(score) and not set(tune) & set(score) and not set(fit) & set(tune)
    # labels independent of everything: a leak (a scored row among the fitted ones) would let 1-NN score ~1
    views = Views(_unit(rng.normal(size=(60, 16))), [f"row{i}" for i in range(60)])
    choice = select_method(views, y, multi_label=False, methods=["knn"], max_k=1)
    assert choice.leaderboard[0]["score"] < 0.6


def test_arrays_refuse_objects_both_ways():
    with pytest.raises(TypeError):
        arrays_to_bytes({"x": np.array([{"a": 1}], dtype=object)})
    import io

    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([{"a": 1}], dtype=object))  # what a pickle-carrying file looks like
    with pytest.raises(IndexMismatchError):
        arrays_from_bytes(buffer.getvalue(), "method/arrays.npz")


def _rows(name: str, n: int, label_col: str = "labels", sep: str | None = ",") -> list[Row]:
    from fewlabel.indexing.readers import read_rows

    return read_rows(DEMO / name, text_col="text", label_col=label_col, id_col="id", label_sep=sep)[:n]


@pytest.mark.parametrize("method", ["linear", "nb", "ensemble", "knn"])
def test_each_method_round_trips_and_refuses_a_tampered_file(method, minilm, tmp_path):
    from fewlabel.indexing.store.label_index import LabelIndex
    from fewlabel.retrieval.methods.index_method import build_index
    from fewlabel.retrieval.router import Predictor

    train = _rows("goemotions_ekman_train.tsv", 80)
    valid = _rows("goemotions_ekman_valid.tsv", 40)
    test = [r.text for r in _rows("goemotions_ekman_test.tsv", 20)]
    index = build_index(train, minilm, valid, method=method, max_k=8)
    before = Predictor(index, minilm).predict(test)
    index.save(tmp_path / "ix")
    meta = json.loads((tmp_path / "ix" / "meta.json").read_text())
    assert meta["method"]["name"] == method and meta["method"]["leaderboard"][0]["method"] == method
    after = Predictor.load(tmp_path / "ix", minilm).predict(test)
    assert [p.labels for p in after] == [p.labels for p in before]
    for b, a in zip(before, after, strict=True):
        assert a.scores == pytest.approx(b.scores) and a.route == (method if method != "knn" else "knn")
    if method == "knn":
        assert not (tmp_path / "ix" / "method").exists() and meta["method"]["files"] == {}
        return
    assert set(meta["method"]["files"]) >= {"method.json", "arrays.npz"}
    arrays = tmp_path / "ix" / "method" / "arrays.npz"
    data = bytearray(arrays.read_bytes())
    data[len(data) // 2] ^= 1
    arrays.write_bytes(bytes(data))
    with pytest.raises(IndexMismatchError, match="changed after the index was written"):
        LabelIndex.load(tmp_path / "ix")
    arrays.unlink()
    with pytest.raises(IndexMismatchError, match="missing"):
        LabelIndex.load(tmp_path / "ix")


def test_cli_auto_leaderboard_info_predict_add_and_retune(tmp_path, capsys):
    from fewlabel.retrieval.cli import main

    def tsv(src: str, dst: str, start: int, n: int) -> Path:
        lines = (DEMO / src).read_text(encoding="utf-8").splitlines()
        (tmp_path / dst).write_text("\n".join([lines[0], *lines[1 + start:1 + start + n]]) + "\n", encoding="utf-8")
        return tmp_path / dst

    train, more = tsv("nsmc_train.tsv", "train.tsv", 0, 60), tsv("nsmc_train.tsv", "more.tsv", 60, 20)
    test = tsv("nsmc_test.tsv", "test.tsv", 0, 10)
    common = ["--text-col", "text", "--label-col", "label", "--id-col", "id", "--model", "minilm"]
    ix = tmp_path / "ix"
    assert main(["index", "build", str(train), *common, "--cv-folds", "3", "--max-k", "5", "--out", str(ix)]) == 0
    err = capsys.readouterr().err
    assert "3-fold cross-validation" in err
    meta = json.loads((ix / "meta.json").read_text())
    board = meta["method"]["leaderboard"]
    assert [e["method"] for e in board if e["chosen"]] == [meta["method"]["name"]]
    assert {e["method"] for e in board} == {"knn", "linear", "nb", "ensemble"}
    assert all({"score", "spread", "seconds", "tuned"} <= set(e) for e in board)
    assert board == sorted(board, key=lambda e: -e["score"])
    assert main(["index", "info", str(ix)]) == 0
    out = capsys.readouterr().out
    assert "leaderboard" in out and f"method      {meta['method']['name']}" in out
    assert main(["-q", "predict", str(ix), str(test), "--text-col", "text", "--id-col", "id", "--explain",
                 "--out", str(tmp_path / "p.jsonl")]) == 0
    items = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(items) == 10 and all(i["neighbours"] for i in items)
    # one label per review (NSMC): every method's scores, kNN's vote shares included, share out 1 over the labels
    assert all(sum(i["scores"].values()) == pytest.approx(1.0, abs=1e-3) for i in items), meta["method"]["name"]
    assert main(["index", "add", str(ix), str(more), *common[:-2], "--cv-folds", "3", "--max-k", "5"]) == 0
    assert "choice may be stale" in capsys.readouterr().err
    added = json.loads((ix / "meta.json").read_text())["method"]
    assert added["stale"] is True and added["name"] == meta["method"]["name"] and added["leaderboard"] == board
    assert main(["-q", "index", "add", str(ix), str(tsv("nsmc_train.tsv", "more2.tsv", 80, 6)), *common[:-2],
                 "--cv-folds", "3", "--max-k", "5", "--retune"]) == 0
    retuned = json.loads((ix / "meta.json").read_text())["method"]
    assert "stale" not in retuned and retuned["chosen_by"] == "auto" and len(retuned["leaderboard"]) == 4


def test_trained_candidates_and_bad_budgets_are_refused_before_loading(tmp_path, capsys):
    from fewlabel.retrieval.cli import main

    base = ["index", "build", str(DEMO / "nsmc_train.tsv"), "--text-col", "text", "--label-col", "label",
            "--model", "minilm", "--out", str(tmp_path / "ix")]
    with pytest.raises(SystemExit) as exit_:
        main([*base, "--budget", "-1"])
    assert exit_.value.code == 2 and "minutes >= 0" in capsys.readouterr().err
    assert main([*base, "--method", "setfit"]) == 2  # a trained head without time: refused before it loads
    assert "--budget MINUTES" in capsys.readouterr().err and not (tmp_path / "ix").exists()


@pytest.mark.parametrize("method", ["finetune", pytest.param("setfit", marks=pytest.mark.slow)])
def test_trained_heads_stop_on_time_round_trip_and_refuse_a_tampered_weight(method, minilm, tmp_path):
    """A trained head is fitted within its seconds (the deadline callback, not a step count, ends training),
    predicts the same after save and load as before, and a changed weight file is refused."""
    from fewlabel.finetune.classify.index_heads import index_trainers
    from fewlabel.retrieval.methods.index_method import build_index

    train = _rows("nsmc_train.tsv", 48, label_col="label", sep=None)
    valid = _rows("nsmc_valid.tsv", 24, label_col="label", sep=None)
    test = [r.text for r in _rows("nsmc_test.tsv", 12, label_col="label", sep=None)]
    index = build_index(train, minilm, valid, method=method, max_k=5, budget_minutes=0.2,  # 9 s of training
                        trainers=index_trainers("minilm", max_epochs=200))
    trained = index.method["settings"] == {} and index.method["name"] == method
    assert trained and index.method["leaderboard"][0]["method"] == method
    spec = check_round_trip_and_tamper(index, minilm, test, method, tmp_path / "ix")
    steps = spec["model"]["trained"]["trained_steps"]
    assert 0 < steps < spec["model"]["trained"]["steps"]  # stopped by the clock long before its planned steps


def test_auto_with_a_budget_shares_it_between_the_trained_heads(minilm):
    from fewlabel.retrieval.methods.index_method import trained_plan

    said: list[str] = []
    calls = {"setfit": lambda *a, **k: None, "finetune": lambda *a, **k: None}
    # the same plan on --valid or cross-validated (there auto gives each fold's fit its share)
    plan = trained_plan("auto", calls, 10, ["0", "1"], said.append)
    assert set(plan) == {"setfit", "finetune"} and plan["setfit"][1] == pytest.approx(10 * 60 * 0.75 / 2)
    assert trained_plan("auto", calls, 0, ["0", "1"], said.append) == {}


def test_cross_validation_tunes_each_fold_on_the_other_folds_so_thresholds_are_not_set_on_one_row():
    """10 multi-label rows in 3 clear clusters, 5 folds of 2: tuning a fold's thresholds on half of that fold
    (one row) left the linear head deciding nothing and scoring 0 under cross-validation; tuned on the other
    folds' out-of-fold answers, it scores what a good learner scores. Each draw is scored on all rows at once."""
    rng = np.random.default_rng(3)
    centres = _unit(rng.normal(size=(3, 32)))
    labels = np.arange(10) % 3
    texts = [f"t{i}x{rng.integers(1e9)}" for i in range(10)]
    views = Views(_unit(centres[labels] * 3 + rng.normal(size=(10, 32))), texts)
    choice = select_method(views, np.eye(3, dtype=bool)[labels], multi_label=True, methods=["knn", "linear"],
                           se_factor=0)
    board = {e["method"]: e for e in choice.leaderboard}
    assert board["linear"]["score"] > 0.4 and board["knn"]["score"] > 0.4, board
    assert all(len(e["draws"]) == choice.protocol["repeats"] == 3 for e in board.values())
    assert all(e["score"] == pytest.approx(np.mean(e["draws"]), abs=1e-4) for e in board.values())
    assert all(len(e["scores"]) == 3 * choice.protocol["folds"] for e in board.values())  # a score per fold
