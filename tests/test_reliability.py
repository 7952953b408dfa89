"""Faults and bad input, met where the user meets them: through the `fewlabel` command line, and for kills,
pipes, Ctrl-C and concurrent writers in real subprocesses. Nothing the user owns may be lost, and every mistake
is one line on stderr with exit status 2."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fewlabel.indexing.encoders.cache import EmbeddingCache, encode_with_cache
from fewlabel.indexing.store.label_index import LabelIndex
from fewlabel.retrieval.cli import main

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"
COLUMNS = ["--text-col", "text", "--label-col", "labels", "--label-sep", ","]


def head(src: Path, dst: Path, start: int, n: int, *, keep_ids: bool = True) -> Path:
    lines = src.read_text(encoding="utf-8").splitlines()
    body = lines[1 + start:1 + start + n]
    if not keep_ids:
        body = ["\t".join(line.split("\t")[1:]) for line in body]
    dst.write_text("\n".join([lines[0] if keep_ids else "text\tlabels", *body]) + "\n", encoding="utf-8")
    return dst


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("reliability")
    return {"dir": d,
            "train": head(DEMO / "goemotions_ekman_train.tsv", d / "train.tsv", 0, 60),
            "more_a": head(DEMO / "goemotions_ekman_train.tsv", d / "more_a.tsv", 60, 20),
            "more_b": head(DEMO / "goemotions_ekman_train.tsv", d / "more_b.tsv", 80, 20),
            "test": head(DEMO / "goemotions_ekman_test.tsv", d / "test.tsv", 0, 10)}


@pytest.fixture(scope="module")
def index_dir(data):
    out = data["dir"] / "index"
    assert main(["-q", "index", "build", str(data["train"]), *COLUMNS, "--id-col", "id", "--model", "minilm",
                 "--no-cache", "--out", str(out)]) == 0
    return out


def fewlabel(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """The real console command in a subprocess (for kills, pipes, signals and concurrency)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "fewlabel.retrieval.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=300, **kwargs)


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("fewlabel: error:"), err
    for needle in needles:
        assert needle in err, err
    return err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- 1. --out that is not ours -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["user folder", "folder of the data", "a file", "another tool's meta.json {}",
                                  "another tool's meta.json with a name"])
def test_index_build_never_replaces_what_is_not_an_index(data, tmp_path, capsys, monkeypatch, kind):
    if kind == "user folder":
        out = tmp_path / "mine"
        out.mkdir()
        (out / "thesis.txt").write_text("years of work")
    elif kind.startswith("another tool's meta.json"):  # a JSON object, but not a fewlabel index's meta
        out = tmp_path / "other-tool"
        out.mkdir()
        (out / "meta.json").write_text("{}" if kind.endswith("{}") else '{"name": "my model", "version": 3}')
        (out / "weights.bin").write_bytes(b"years of training")
    elif kind == "folder of the data":
        out = tmp_path / "data"
        out.mkdir()
        shutil.copy(data["train"], out / "train.tsv")
        monkeypatch.chdir(out)
        out = Path(".")
    else:
        out = tmp_path / "notes.txt"
        out.write_text("keep me")
    before = snapshot(out) if out.is_dir() else out.read_bytes()
    code = main(["index", "build", str(data["train"]), *COLUMNS, "--model", "minilm", "--no-cache",
                 "--out", str(out)])
    assert code == 2
    one_line_error(capsys, "--out", "fewlabel never replaces")
    assert (snapshot(out) if out.is_dir() else out.read_bytes()) == before
    assert not [p for p in (out if out.is_dir() else out.parent).iterdir() if p.name.startswith(".")
                and "tmp" in p.name]


def test_an_existing_index_is_replaced(data, index_dir, tmp_path):
    out = tmp_path / "idx"
    shutil.copytree(index_dir, out)
    assert main(["-q", "index", "build", str(data["more_a"]), *COLUMNS, "--id-col", "id", "--model", "minilm",
                 "--no-cache", "--out", str(out)]) == 0
    assert len(LabelIndex.load(out)) == 20


# ---- 2. concurrent writers ---------------------------------------------------------------------------------
def test_two_concurrent_index_adds_lose_no_row(data, index_dir, tmp_path):
    target = tmp_path / "shared-index"
    shutil.copytree(index_dir, target)
    procs = [subprocess.Popen([sys.executable, "-m", "fewlabel.retrieval.cli", "index", "add", str(target),
                               str(data[name]), *COLUMNS, "--id-col", "id", "--no-cache"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("more_a", "more_b")]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    index = LabelIndex.load(target)
    assert len(index) == 100 and len({r.id for r in index.rows}) == 100


# ---- 3. bad batch sizes and a poisoned cache ---------------------------------------------------------------
@pytest.mark.parametrize("value", ["-1", "0", "two"])
def test_batch_size_must_be_positive(data, index_dir, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(index_dir), str(data["test"]), "--batch-size", value, "--out", str(tmp_path / "p.csv")])
    assert exit_info.value.code == 2
    assert "--batch-size" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_cache_never_keeps_or_returns_a_broken_vector(minilm, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    texts = ["a calm morning", "a stormy night"]
    key = EmbeddingCache.key(minilm.fingerprint(True), texts[0])
    cache.put_many([key], np.zeros((1, minilm.dim), dtype=np.float32))  # what a broken run once stored
    vectors = encode_with_cache(minilm, texts, cache)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert np.linalg.norm(cache.get_many([key])[key]) == pytest.approx(1.0, abs=1e-4)  # repaired
    with pytest.raises(Exception, match="batch size"):
        minilm.encode(texts, batch_size=0)


# ---- 4. a kill at every step of a replacement ----------------------------------------------------------------
EXPECTED_ROWS_AFTER_KILL = {"directory:before-replace": 60, "directory:after-exchange": 20,
                            "directory:between-renames": 60}


@pytest.mark.parametrize("step", ["directory:before-replace", "directory:after-exchange",
                                  "directory:between-renames"])
def test_a_killed_build_leaves_a_complete_index(data, index_dir, tmp_path, step):
    out = tmp_path / "idx"
    shutil.copytree(index_dir, out)
    result = fewlabel("-q", "index", "build", str(data["more_a"]), *COLUMNS, "--id-col", "id", "--model", "minilm",
                      "--no-cache", "--out", str(out), env={"FEWLABEL_FAULT": step})
    assert result.returncode == -signal.SIGKILL
    # before the replace and between the two renames the old index (60 rows) stands, or is put back by the next
    # reader; after the exchange the new one (20 rows) does: exactly one of them, never a mix or none
    assert len(LabelIndex.load(out)) == EXPECTED_ROWS_AFTER_KILL[step]
    info = fewlabel("index", "info", str(out))
    assert info.returncode == 0, info.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["idx"]  # cleaned


# ---- 5. a model retrained in place -----------------------------------------------------------------------------
def test_a_retrained_model_folder_is_refused(data, tmp_path, capsys):
    from fewlabel.indexing.encoders.registry import REGISTRY

    model = tmp_path / "my-model"
    shutil.copytree(REGISTRY["minilm"].locate(), model)
    index = tmp_path / "idx"
    assert main(["-q", "index", "build", str(data["train"]), *COLUMNS, "--model", str(model), "--no-cache",
                 "--out", str(index)]) == 0
    weights = next(model.rglob("*.safetensors"))
    raw = bytearray(weights.read_bytes())
    raw[-8:] = bytes(8)  # the last weights change (a retrain in place), the file stays loadable
    weights.write_bytes(bytes(raw))
    assert main(["-q", "predict", str(index), str(data["test"]), "--no-cache", "--out",
                 str(tmp_path / "p.csv")]) == 2
    one_line_error(capsys, "weights of model", "changed since this index was built")


# ---- 6. file modes ---------------------------------------------------------------------------------------------
def test_outputs_keep_their_mode_and_new_ones_follow_the_umask(data, index_dir, tmp_path):
    out = tmp_path / "p.csv"
    args = ["-q", "predict", str(index_dir), str(data["test"]), "--id-col", "id", "--no-cache", "--out", str(out)]
    old_mask = os.umask(0o022)
    try:
        assert main(args) == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        out.chmod(0o640)
        assert main(args) == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o640
        copy = tmp_path / "idx"
        assert main(["-q", "index", "build", str(data["train"]), *COLUMNS, "--model", "minilm", "--no-cache",
                     "--out", str(copy)]) == 0
        assert stat.S_IMODE(copy.stat().st_mode) == 0o755
        assert stat.S_IMODE((copy / "meta.json").stat().st_mode) == 0o644
    finally:
        os.umask(old_mask)


# ---- 7, 9, 11. bad input files ---------------------------------------------------------------------------------
def test_bad_files_are_one_line_naming_file_line_and_field(data, tmp_path, capsys):
    build = ["index", "build", "--text-col", "text", "--label-col", "label", "--model", "minilm", "--no-cache",
             "--out", str(tmp_path / "idx")]
    wide = tmp_path / "wide.csv"
    wide.write_text("text,label\ngood day,joy\nwell, this is bad,sadness\n", encoding="utf-8")
    assert main([*build[:2], str(wide), *build[2:]]) == 2
    one_line_error(capsys, "wide.csv, line 3", "unquoted comma")
    nul = tmp_path / "nul.csv"
    nul.write_text("text,label\nfine,joy\nbro\0ken,joy\n", encoding="utf-8")
    assert main([*build[:2], str(nul), *build[2:]]) == 2
    one_line_error(capsys, "nul.csv, line 3", "NUL")
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    assert main([*build[:2], str(folder), *build[2:]]) == 2
    err = one_line_error(capsys, "folder.csv", "is a folder")
    assert "format" not in err
    assert not (tmp_path / "idx").exists()


def test_long_fields_are_read(tmp_path):
    from fewlabel.indexing.readers import read_rows

    long = tmp_path / "long.csv"
    text = "word " * 40_000  # 200,000 characters: valid, if unusual
    long.write_text(f'text,label\n"{text}",joy\nshort,sad\n', encoding="utf-8")
    rows = read_rows(long, text_col="text", label_col="label")
    assert len(rows) == 2 and len(rows[0].text) == 200_000


def test_unknown_label_names_the_real_column_and_duplicates_name_the_file(data, index_dir, tmp_path, capsys):
    valid = tmp_path / "valid.tsv"
    valid.write_text("id\ttext\tlabels\nv1\tfine\tjoy\nv2\tso bored\tboredom\n", encoding="utf-8")
    assert main(["index", "build", str(data["train"]), *COLUMNS, "--valid", str(valid), "--model", "minilm",
                 "--no-cache", "--out", str(tmp_path / "x")]) == 2
    one_line_error(capsys, "valid.tsv, line 3, field 'labels'", "unknown label 'boredom'")
    copy = tmp_path / "idx"
    shutil.copytree(index_dir, copy)
    assert main(["index", "add", str(copy), str(data["train"]), *COLUMNS, "--id-col", "id", "--no-cache"]) == 2
    one_line_error(capsys, "train.tsv, line 2, field 'id'", "already in the index", "--id-col")


# ---- 8. option values ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("option", "value"), [("--k", "0"), ("--k", "-3"), ("--m", "0"), ("--batch-size", "x")])
def test_bad_predict_options_exit_2(data, index_dir, tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(index_dir), str(data["test"]), option, value, "--out", str(tmp_path / "p.csv")])
    assert exit_info.value.code == 2 and option in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value"), [("--max-k", "-5"), ("--label-sep", "")])
def test_bad_build_options_exit_2(data, tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["index", "build", str(data["train"]), "--text-col", "text", "--label-col", "labels", option, value,
              "--out", str(tmp_path / "i")])
    assert exit_info.value.code == 2 and option in capsys.readouterr().err


def test_a_k_larger_than_the_index_is_said(data, index_dir, tmp_path, capsys):
    assert main(["predict", str(index_dir), str(data["test"]), "--id-col", "id", "--no-cache", "--k", "500",
                 "--out", str(tmp_path / "p.csv")]) == 0
    assert "--k 500 is more than the 60 rows" in capsys.readouterr().err


# ---- 10. user mistakes that used to end in a raw exception ------------------------------------------------------
def test_predict_mistakes_are_caught_before_encoding(data, index_dir, tmp_path, capsys):
    predict = ["predict", str(index_dir), str(data["test"]), "--no-cache"]
    folder = tmp_path / "somewhere"
    folder.mkdir()
    started = time.perf_counter()
    assert main([*predict, "--out", str(folder)]) == 2
    one_line_error(capsys, "output must end in .csv or .jsonl")
    assert main(["-q", *predict, "--out", str(tmp_path / "dir.csv")]) == 0  # (a proper name works)
    capsys.readouterr()
    (tmp_path / "taken.csv").mkdir()
    assert main([*predict, "--out", str(tmp_path / "taken.csv")]) == 2
    one_line_error(capsys, "a folder is there")
    assert main([*predict, "--out", "."]) == 2
    capsys.readouterr()
    assert main([*predict, "--device", "cuda:7", "--out", str(tmp_path / "q.csv")]) == 2
    one_line_error(capsys, "cuda")
    assert time.perf_counter() - started < 60
    with pytest.raises(SystemExit):
        main([*predict, "--device", "bogus", "--out", str(tmp_path / "q.csv")])
    assert "unknown device" in capsys.readouterr().err


def test_a_meta_json_list_is_one_line(index_dir, tmp_path, capsys):
    broken = tmp_path / "idx"
    shutil.copytree(index_dir, broken)
    (broken / "meta.json").write_text("[1, 2]")
    assert main(["index", "info", str(broken)]) == 2
    one_line_error(capsys, "meta.json", "expected a JSON object")


def test_a_closed_pipe_ends_quietly(index_dir):
    pipeline = subprocess.run(f"{sys.executable} -m fewlabel.retrieval.cli index info {index_dir} --json | head -c 1",
                              shell=True, capture_output=True, text=True, timeout=120)
    assert pipeline.stdout == "{" and pipeline.stderr == ""


@pytest.mark.parametrize("after", [0.4, 3.0])
def test_ctrl_c_is_one_line(data, tmp_path, after):
    """Early (parsing, imports) and later (loading, encoding): exit 130 and `fewlabel: interrupted` last."""
    proc = subprocess.Popen([sys.executable, "-m", "fewlabel.retrieval.cli", "index", "build", str(data["train"]),
                             *COLUMNS, "--model", "minilm", "--no-cache", "--out", str(tmp_path / "i")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:  # it was already done before the signal arrived (a very fast machine)
        pytest.skip("the command finished before Ctrl-C")
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "fewlabel: interrupted", err
    assert "Traceback" not in err


def test_quiet_silences_faiss(data, tmp_path):
    result = fewlabel("-q", "index", "build", str(data["train"]), *COLUMNS, "--model", "minilm", "--no-cache",
                      "--factory", "IVF4,PQ8x4", "--out", str(tmp_path / "ivf"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


# ---- 12. the README's own flow ---------------------------------------------------------------------------------
def test_build_then_add_without_ids_numbers_new_rows(data, tmp_path):
    no_ids = head(DEMO / "goemotions_ekman_train.tsv", tmp_path / "train.tsv", 0, 30, keep_ids=False)
    more = head(DEMO / "goemotions_ekman_train.tsv", tmp_path / "more.tsv", 30, 10, keep_ids=False)
    index = tmp_path / "my-index"
    assert main(["-q", "index", "build", str(no_ids), *COLUMNS, "--model", "minilm", "--no-cache",
                 "--out", str(index)]) == 0
    for _ in range(2):
        assert main(["-q", "index", "add", str(index), str(more), *COLUMNS, "--no-cache"]) == 0
    rows = LabelIndex.load(index).rows
    assert len(rows) == 50 and len({r.id for r in rows}) == 50
    assert json.loads((index / "meta.json").read_text())["n_rows"] == 50
