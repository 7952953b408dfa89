"""Never lose data, round 2 (issue 28): bench's --out, symlinked index folders, interrupted training runs, a
model folder left unfinished, one-label training files and the Ray engine's input checks, through the real
command line (subprocesses where a signal is needed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fewlabel.indexing.errors import ModelError
from fewlabel.indexing.store.label_index import LabelIndex
from fewlabel.retrieval.cli import main

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"
COLUMNS = ["--text-col", "text", "--label-col", "labels", "--label-sep", ","]


def head(dst: Path, start: int, n: int, src: str = "goemotions_ekman_train.tsv") -> Path:
    lines = (DEMO / src).read_text(encoding="utf-8").splitlines()
    dst.write_text("\n".join([lines[0], *lines[1 + start:1 + start + n]]) + "\n", encoding="utf-8")
    return dst


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "error:" in err, err
    for needle in needles:
        assert needle in err, err
    return err


# ---- 1. bench slices --out ------------------------------------------------------------------------------------
def _bench_argv(tmp_path: Path, out: Path, seeds: int = 1) -> list[str]:
    rows = (DEMO / "goemotions_ekman_train.tsv").read_text(encoding="utf-8").splitlines()[1:121]
    single = [(r.split("\t")[1], r.split("\t")[2].split(",")[0]) for r in rows]
    for name, part in (("train", single[:80]), ("dev", single[80:100]), ("test", single[100:])):
        (tmp_path / f"{name}.tsv").write_text("".join(f"{t}\t{lab}\n" for t, lab in part), encoding="utf-8")
    return ["-q", "bench", "slices", str(tmp_path / "train.tsv"), "--dev", str(tmp_path / "dev.tsv"), "--test",
            str(tmp_path / "test.tsv"), "--no-header", "--text-col", "0", "--label-col", "1", "--methods", "nb",
            "--slices", "10,all", "--seeds", str(seeds), "--out", str(out)]


@pytest.mark.parametrize("kind", ["command.txt", "results.json"])
def test_bench_refuses_a_user_folder_that_holds_a_file_of_the_same_name(tmp_path, capsys, kind):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("# my report\n")
    (mine / kind).write_text('{"mine": true}\n' if kind == "results.json" else "my command\n")
    before = snapshot(mine)
    assert main(_bench_argv(tmp_path, mine)) == 2
    one_line(capsys, "--out", "not a bench slices folder")
    assert snapshot(mine) == before


def test_bench_refusing_other_settings_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_bench_argv(tmp_path, out)) == 0
    assert (out / ".fewlabel-bench").is_file()
    before = snapshot(out)
    capsys.readouterr()
    assert main(_bench_argv(tmp_path, out, seeds=2)) == 2  # other settings: refused
    one_line(capsys, "other settings (seeds")
    assert snapshot(out) == before  # command.txt included
    assert main(_bench_argv(tmp_path, out)) == 0  # its own folder: resumes


# ---- 3. a link to an index ------------------------------------------------------------------------------------
def test_index_add_through_a_link_updates_the_real_folder_and_keeps_the_link(tmp_path):
    train, more = head(tmp_path / "train.tsv", 0, 40), head(tmp_path / "more.tsv", 40, 6)
    real = tmp_path / "real_v1"
    assert main(["-q", "index", "build", str(train), *COLUMNS, "--id-col", "id", "--model", "minilm",
                 "--method", "knn", "--no-cache", "--out", str(real)]) == 0
    current = tmp_path / "current"
    current.symlink_to("real_v1")
    assert main(["-q", "index", "add", str(current), str(more), *COLUMNS, "--id-col", "id", "--no-cache"]) == 0
    assert current.is_symlink() and os.readlink(current) == "real_v1"
    assert len(LabelIndex.load(real)) == 46 and len(LabelIndex.load(current)) == 46
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")) \
        == []
    # a prediction written through a link to an earlier prediction replaces the file, not the link
    test = head(tmp_path / "test.tsv", 0, 5, "goemotions_ekman_test.tsv")
    assert main(["-q", "predict", str(current), str(test), "--id-col", "id", "--out",
                 str(tmp_path / "p1.csv")]) == 0
    (tmp_path / "latest.csv").symlink_to("p1.csv")
    assert main(["-q", "predict", str(current), str(test), "--id-col", "id", "--out",
                 str(tmp_path / "latest.csv")]) == 0
    assert (tmp_path / "latest.csv").is_symlink()


# ---- 4. an interrupted training run -----------------------------------------------------------------------------
@pytest.mark.slow
def test_an_interrupted_adapt_leaves_the_finished_folder_whole(tmp_path):
    lines = (DEMO / "goemotions_ekman_train.tsv").read_text(encoding="utf-8").splitlines()[1:201]
    corpus = tmp_path / "texts.tsv"
    corpus.write_text("text\n" + "\n".join(line.split("\t")[1] for line in lines) + "\n", encoding="utf-8")
    out = tmp_path / "adapted"
    fast = ["--batch-size", "4", "--max-length", "16", "--device", "cpu"]
    assert main(["-q", "adapt", str(corpus), "--base", "minilm", "--out", str(out), "--max-steps", "2", *fast]) == 0
    before = snapshot(out)
    proc = subprocess.Popen([sys.executable, "-m", "fewlabel.retrieval.cli", "-q", "adapt", str(corpus), "--base",
                             "minilm", "--out", str(out), "--max-steps", "400", "--seed", "7", *fast],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "checkpoints" / "fewlabel_run.json").is_file():  # training has begun
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (130, -signal.SIGINT), err
    after = {k: v for k, v in snapshot(out).items() if not k.startswith("checkpoints/")}
    assert after == before  # marker, weights, card: the finished model, untouched
    assert json.loads((out / "fewlabel_model.json").read_text())["steps"] == 2
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".adapted.tmp-")]


def test_the_encoder_refuses_an_unfinished_training_folder(tmp_path, capsys):
    """A folder an older fewlabel trained in place and was interrupted in: weights, the run's checkpoints
    record, no marker."""
    from fewlabel.indexing.encoders.encoder import Encoder
    from fewlabel.indexing.encoders.registry import REGISTRY

    model = tmp_path / "half"
    source = REGISTRY["minilm"].locate()
    model.mkdir()
    for p in Path(source).iterdir():
        if p.is_file():
            (model / p.name).symlink_to(p)
    (model / "checkpoints").mkdir()
    (model / "checkpoints" / "fewlabel_run.json").write_text('{"kind": "adapted-encoder"}\n')
    with pytest.raises(ModelError, match="unfinished fewlabel training run"):
        Encoder(str(model), device="cpu")
    train = head(tmp_path / "train.tsv", 0, 20)
    assert main(["index", "build", str(train), *COLUMNS, "--model", str(model), "--out",
                 str(tmp_path / "idx")]) == 2
    one_line(capsys, "unfinished fewlabel training run")
    assert not (tmp_path / "idx").exists()


# ---- 14. stored method arrays that match their sha256 but not their shapes ---------------------------------
def _rewrite_array(index: Path, key: str, change) -> None:
    import hashlib
    import io

    import numpy as np

    path = index / "method" / "arrays.npz"
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays[key] = change(arrays[key])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    meta = json.loads((index / "meta.json").read_text())
    meta["method"]["files"]["arrays.npz"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (index / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(("key", "change", "needle"), [
    ("linear_coef", lambda a: a[:, :-1], "linear_coef"),
    ("linear_intercept", lambda a: a[:-1], "linear_intercept"),
    ("nb_coef", lambda a: a[:, : a.shape[1] // 2], "nb_coef"),
    ("linear_coef", lambda a: a.astype("int64"), "int64"),
    ("linear_coef", lambda a: a * float("nan"), "finite floats"),
])
def test_stored_arrays_are_checked_against_labels_dimension_and_vocabulary(tmp_path, capsys, key, change, needle):
    train = head(tmp_path / "train.tsv", 0, 40)
    index = tmp_path / "idx"
    assert main(["-q", "index", "build", str(train), *COLUMNS, "--model", "minilm", "--method", "ensemble",
                 "--no-cache", "--out", str(index)]) == 0
    _rewrite_array(index, key, change)
    test = head(tmp_path / "test.tsv", 0, 5, "goemotions_ekman_test.tsv")
    capsys.readouterr()
    # without -q: the method is checked before the encoder loads, so no "loading encoder …" line precedes the error
    assert main(["predict", str(index), str(test), "--out", str(tmp_path / "p.csv")]) == 2
    one_line(capsys, needle, "rebuild the index")
    assert not (tmp_path / "p.csv").exists()


# ---- 17. a training file whose rows all carry one label ------------------------------------------------------
@pytest.mark.parametrize("method", ["auto", "linear", "nb", "ensemble", "knn"])
def test_one_label_training_file_is_handled_the_same_by_every_method(tmp_path, capsys, method):
    rows = (DEMO / "goemotions_ekman_train.tsv").read_text(encoding="utf-8").splitlines()[1:21]
    train = tmp_path / "one.tsv"
    train.write_text("text\tlabels\n" + "".join(f"{r.split(chr(9))[1]}\tjoy\n" for r in rows), encoding="utf-8")
    capsys.readouterr()
    assert main(["index", "build", str(train), "--text-col", "text", "--label-col", "labels", "--model", "minilm",
                 "--method", method, "--no-cache", "--out", str(tmp_path / "idx")]) == 2
    one_line(capsys, "one.tsv", "only one label ('joy')")
    assert not (tmp_path / "idx").exists()


# ---- 15, 16. --engine ray reads its input with the local reader, before Ray starts ---------------------------
@pytest.mark.parametrize(("name", "content", "needle"), [
    ("dup.csv", b"id,text\nq1,hello\nq1,again\n", "duplicate id 'q1'"),
    ("latin.csv", b"id,text\nq1,caf\xe9\n", "not valid UTF-8"),
    ("blank.jsonl", b'{"id": "q1", "text": "  "}\n', "empty text"),
])
def test_ray_engine_refuses_bad_input_as_the_local_engine_does_before_ray_starts(tmp_path, capsys, monkeypatch,
                                                                                 name, content, needle):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    import fewlabel.retrieval.engines.ray_batch as ray_batch

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray started for an input the reader refuses")

    monkeypatch.setattr(ray_batch, "_start", no_ray)
    train = head(tmp_path / "train.tsv", 0, 20)
    assert main(["-q", "index", "build", str(train), *COLUMNS, "--model", "minilm", "--method", "knn",
                 "--no-cache", "--out", str(tmp_path / "idx")]) == 0
    (tmp_path / name).write_bytes(content)
    capsys.readouterr()
    assert main(["-q", "predict", str(tmp_path / "idx"), str(tmp_path / name), "--id-col", "id", "--engine", "ray",
                 "--out", str(tmp_path / "p.csv")]) == 2
    one_line(capsys, name, needle)
    assert not (tmp_path / "p.csv").exists()
