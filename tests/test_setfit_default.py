"""SetFit by default at small N (issue 23): `index build` without `--budget` cross-validates SetFit beside the fast
candidates up to 64 rows, within its time bound; `--budget 0` (or `$FEWLABEL_BUDGET=0`, which the rest of the
suite runs under) leaves it out. The end-to-end runs train a tiny random BERT body (tests/support/tiny_models.py),
so they check the protocol (who is scored, on which folds, within which time), not what SetFit learns: that is
`benchmarks/results/setfit_times.md`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.tiny_models import tiny_bert

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"


@pytest.fixture(scope="module")
def body(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny") / "body")


@pytest.fixture()
def training_file(tmp_path) -> Path:
    """12 rows of the bundled NSMC sample (6 per label, so every one of 3 folds holds both)."""
    lines = (DEMO / "nsmc_train.tsv").read_text(encoding="utf-8").splitlines()
    head, rows = lines[0], lines[1:]
    picked = [r for r in rows if r.endswith("\tpositive")][:6] + [r for r in rows if r.endswith("\tnegative")][:6]
    path = tmp_path / "train.tsv"
    path.write_text("\n".join([head, *picked]) + "\n", encoding="utf-8")
    return path


def _build(main, training_file: Path, body: Path, out: Path, *extra: str) -> dict:
    code = main(["-q", "index", "build", str(training_file), "--text-col", "text", "--label-col", "label",
                 "--model", str(body), "--max-k", "5", "--cv-folds", "3", "--out", str(out), *extra])
    assert code == 0
    return json.loads((out / "meta.json").read_text())["method"]


def test_setfit_is_cross_validated_by_default_at_small_n_and_budget_0_leaves_it_out(body, training_file, tmp_path,
                                                                                     monkeypatch):
    import fewlabel.retrieval.cli.finetune as cli_finetune
    from fewlabel.retrieval.cli import main
    from fewlabel.retrieval.methods.index_method import SETFIT_MINUTES

    given: list[float] = []  # the seconds each SetFit fit was given (the real trainer runs with them)
    real = cli_finetune.index_trainers_for

    def recording(*args, **kwargs):
        trainers = real(*args, **kwargs)
        setfit = trainers["setfit"]

        def timed(*a, seconds: float, **k):
            given.append(seconds)
            return setfit(*a, seconds=seconds, **k)

        return {**trainers, "setfit": timed}

    monkeypatch.setattr(cli_finetune, "index_trainers_for", recording)
    monkeypatch.delenv("FEWLABEL_BUDGET", raising=False)
    method = _build(main, training_file, body, tmp_path / "default")
    board = {entry["method"]: entry for entry in method["leaderboard"]}
    assert "setfit" in board and method["budget_minutes"] is None and method["protocol"]["kind"] == "cross-validation"
    # SetFit is scored on the first draw of the folds only (3 folds, a score each), the fast candidates on all
    # 3 draws (12 rows <= SMALL_N); it trains 3 + 1 times, each for 1/4 of its bound
    assert len(board["setfit"]["scores"]) == 3 and len(board["knn"]["scores"]) == 3 * 3
    assert len(board["setfit"]["draws"]) == 1 and len(board["knn"]["draws"]) == 3
    assert given == pytest.approx([SETFIT_MINUTES * 60 / 4] * 4)
    assert all(0.0 <= e["score"] <= 1.0 for e in board.values())
    given.clear()
    off = _build(main, training_file, body, tmp_path / "off", "--budget", "0")
    assert "setfit" not in {entry["method"] for entry in off["leaderboard"]} and off["budget_minutes"] == 0.0
    assert not given


def test_the_default_plan_has_setfit_alone_up_to_the_row_limit(monkeypatch):
    from fewlabel.retrieval.methods.index_method import SETFIT_MINUTES, SETFIT_ROWS, trained_plan

    monkeypatch.delenv("FEWLABEL_BUDGET", raising=False)
    said: list[str] = []
    trainers = {"setfit": object(), "finetune": object()}
    plan = trained_plan("auto", trainers, None, ["a", "b"], said.append, n_rows=SETFIT_ROWS)
    assert list(plan) == ["setfit"] and plan["setfit"][1] == pytest.approx(SETFIT_MINUTES * 60)
    assert "--budget 0" in said[-1]
    assert trained_plan("auto", trainers, None, ["a", "b"], said.append, n_rows=SETFIT_ROWS + 1) == {}
    assert trained_plan("auto", trainers, None, ["a", "b"], said.append, n_rows=5) == {}  # too few to score
    assert trained_plan("auto", trainers, 0.0, ["a", "b"], said.append, n_rows=8) == {}
    assert trained_plan("knn", trainers, None, ["a", "b"], said.append, n_rows=8) == {}
    monkeypatch.setenv("FEWLABEL_BUDGET", "0")
    assert trained_plan("auto", trainers, None, ["a", "b"], said.append, n_rows=8) == {}
    monkeypatch.setenv("FEWLABEL_BUDGET", "4")  # a set budget: both trained candidates, sharing it, at any size
    plan = trained_plan("auto", trainers, None, ["a", "b"], said.append, n_rows=1000)
    assert set(plan) == {"setfit", "finetune"} and plan["setfit"][1] == pytest.approx(4 * 60 * 0.75 / 2)


def test_a_bad_budget_variable_is_one_line_and_exit_2(training_file, tmp_path, monkeypatch, capsys):
    from fewlabel.retrieval.cli import main

    monkeypatch.setenv("FEWLABEL_BUDGET", "soon")
    code = main(["index", "build", str(training_file), "--text-col", "text", "--label-col", "label", "--model",
                 "minilm", "--out", str(tmp_path / "ix")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "FEWLABEL_BUDGET" in err[0] and "'soon'" in err[0]
    assert not (tmp_path / "ix").exists()


def test_setfit_time_limit_counts_from_the_call_so_a_spent_budget_trains_one_step(body):
    """An index's SetFit budget is wall time: loading the body spends it too. A limit already spent when training
    begins still trains one step (the deadline is checked after each step), never the whole epoch."""
    from fewlabel.finetune.classify.setfit import train_setfit

    texts = ["좋은 영화", "최고의 연기", "지루한 영화", "최악의 각본"]
    rows = [("pos",), ("pos",), ("neg",), ("neg",)]
    spent = train_setfit(texts, rows, ["pos", "neg"], str(body), multi_label=False, num_iterations=4,
                         batch_size=2, time_limit_s=1e-6)
    whole = train_setfit(texts, rows, ["pos", "neg"], str(body), multi_label=False, num_iterations=4, batch_size=2)
    assert spent.info["trained_steps"] == 1
    assert whole.info["trained_steps"] == whole.info["steps"] > 1
