"""`fewlabel adapt`: a few steps on a tiny unlabelled corpus with the real MiniLM, and the folder it writes loads
as an encoder anywhere a model name goes (Encoder, index build)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fewlabel.finetune.adapt.trainer import adapt_encoder, prepare_pool
from fewlabel.finetune.settings import RunOptions, TrainSettings
from fewlabel.indexing.encoders.encoder import Encoder
from fewlabel.indexing.errors import DataError, FewlabelError
from fewlabel.indexing.model_folder import ADAPT_KIND, read_marker
from fewlabel.retrieval.cli import main

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"
FAST = ["--max-steps", "2", "--batch-size", "4", "--max-length", "16", "--device", "cpu"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """40 unlabelled English comments, one a line (plus a duplicate and an empty line to be dropped)."""
    lines = (DEMO / "goemotions_ekman_train.tsv").read_text(encoding="utf-8").splitlines()[1:41]
    texts = [line.split("\t")[1] for line in lines]
    path = tmp_path_factory.mktemp("adapt") / "texts.tsv"
    path.write_text("text\n" + "\n".join([*texts, texts[0]]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def adapted(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("adapted") / "minilm-simcse"
    assert main(["-q", "adapt", str(corpus), "--base", "minilm", "--out", str(out), "--method", "simcse", *FAST]) == 0
    return out


def test_adapted_folder_loads_as_an_encoder(adapted, minilm):
    encoder = Encoder(str(adapted), device="cpu")
    assert encoder.dim == minilm.dim and encoder.prefix == "" and encoder.max_length == minilm.max_length
    vectors = encoder.encode(["what a lovely day", "this is awful"])
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    before = minilm.encode(["what a lovely day", "this is awful"])
    assert not np.allclose(vectors, before, atol=1e-7)  # the weights moved
    assert encoder.fingerprint() != minilm.fingerprint()  # so the embedding cache never mixes them


def test_marker_and_model_card_record_data_steps_and_time(adapted):
    marker = read_marker(adapted)
    assert marker["kind"] == ADAPT_KIND and marker["method"] == "simcse" and marker["steps"] == 2
    assert marker["data"]["texts_read"] == 41 and marker["data"]["duplicates"] == 1
    assert marker["data"]["texts_used"] == 40 and marker["texts_seen"] == 8
    assert marker["train_seconds"] > 0 and marker["cpu_seconds"] > 0 and marker["first_loss"] is not None
    card = (adapted / "README.md").read_text(encoding="utf-8")
    for needle in ("MultipleNegativesRankingLoss", "40 used", "2 steps x batch 4", "wall time", "CPU time"):
        assert needle in card, needle
    settings = json.loads((adapted / "fewlabel_encoder.json").read_text())
    assert settings["pooling"] == "mean" and settings["prefix"] == ""
    assert not (adapted / "checkpoints").exists()


def test_adapted_folder_builds_an_index(adapted, tmp_path):
    train = tmp_path / "train.tsv"
    lines = (DEMO / "goemotions_ekman_train.tsv").read_text(encoding="utf-8").splitlines()
    train.write_text("\n".join(lines[:31]) + "\n", encoding="utf-8")
    out = tmp_path / "index"
    assert main(["-q", "index", "build", str(train), "--label-col", "labels", "--label-sep", ",", "--model",
                 str(adapted), "--no-cache", "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["encoder"]["model"] == str(adapted.resolve())


@pytest.mark.parametrize("method", ["tsdae", "mlm"])
def test_tsdae_and_mlm_run_offline_and_load(method, corpus, tmp_path):
    """TSDAE's decoder comes from the encoder's own config (no download); MLM adds a head the checkpoint lacks."""
    texts = corpus.read_text(encoding="utf-8").splitlines()[1:]
    summary = adapt_encoder(texts, "minilm", tmp_path / method, TrainSettings(max_steps=1, batch_size=4, max_length=16),
                            method=method, run=RunOptions(device="cpu", show_progress=False))
    assert summary["steps"] == 1 and summary["first_loss"] > 1  # a reconstruction loss over the vocabulary
    assert Encoder(summary["out_dir"], device="cpu").encode("hello").shape == (384,)
    marker = read_marker(summary["out_dir"])
    if method == "mlm":
        head = marker["mlm_head"]
        assert head["head_parameters"] > 0 and any("transform" in name for name in head["new_weights"])
        assert "no masked-LM head" in (Path(summary["out_dir"]) / "README.md").read_text(encoding="utf-8")


def test_pool_is_cleaned_and_capped():
    texts, counts = prepare_pool([" a ", "b", "", "a", "c", "d"], max_texts=3, seed=1)
    assert len(texts) == 3 and set(texts) <= {"a", "b", "c", "d"}
    assert counts == {**counts, "texts_read": 6, "empty": 1, "duplicates": 1, "texts_used": 3}
    assert prepare_pool(["a", "b", "c", "d"], max_texts=3, seed=1)[0] == texts  # seeded
    with pytest.raises(DataError, match="at least 2 distinct"):
        prepare_pool(["same", "same", " "])


def test_bad_settings_are_one_line_errors(corpus, tmp_path, capsys):
    with pytest.raises(FewlabelError, match="unknown adaptation method"):
        adapt_encoder(["a", "b"], "minilm", tmp_path / "x", method="bert")
    assert main(["adapt", str(corpus), "--base", "minilm", "--out", str(tmp_path / "y"), "--batch-size", "1",
                 "--max-steps", "1"]) == 2
    assert "simcse needs --batch-size >= 2" in capsys.readouterr().err
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["adapt", str(corpus), "--base", "minilm", "--out", str(foreign), *FAST]) == 2
    assert "never replaces a folder it did not make" in capsys.readouterr().err


def test_adapted_files_follow_the_umask(adapted):
    """safetensors writes model.safetensors 0600 through mkstemp; every output follows the umask (issue 28)."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    for path in adapted.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path
