"""`fewlabel predict` in chunks: the streaming reader reads what `read_rows` reads (and refuses what it refuses, with
the same message), the chunked output equals the one-shot one, and a run killed after a chunk, or in the middle of
writing one, resumes to the same file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fewlabel.indexing.errors import DataError
from fewlabel.indexing.readers import count_lines, iter_rows, read_rows
from fewlabel.indexing.store.label_index import LabelIndex
from fewlabel.retrieval.cli import main
from fewlabel.retrieval.outputs import write_predictions
from fewlabel.retrieval.router import predict_rows
from fewlabel.retrieval.streaming import partial_path, progress_path

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"
COLUMNS = ["--text-col", "text", "--label-col", "labels", "--label-sep", ","]
TEST = DEMO / "goemotions_ekman_test.tsv"  # 300 rows


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("stream") / "idx"
    assert main(["-q", "index", "build", str(DEMO / "goemotions_ekman_train.tsv"), *COLUMNS, "--model", "minilm",
                 "--method", "knn", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def one_shot(index_dir, tmp_path_factory):
    """The one-shot path: every row read, labelled and written in one go (through the embedding cache, like the
    CLI runs below, so both see the same vectors)."""
    from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path

    index = LabelIndex.load(index_dir)
    rows = read_rows(TEST, text_col="text", id_col="id")
    predictions = predict_rows(index, None, rows, cache=EmbeddingCache(default_cache_path()))
    folder = tmp_path_factory.mktemp("one-shot")
    return {fmt: write_predictions(predictions, folder / f"p.{fmt}", index.label_names) for fmt in ("csv", "jsonl")}


def fewlabel(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fewlabel.retrieval.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


# ---- the streaming reader ------------------------------------------------------------------------------------
GOOD = {
    "quoted.csv": 'id,text\r\n1,"a text, with a comma"\r\n2,"two\nlines"\r\n\r\n3,plain\r\n',
    "bom.tsv": "\ufeffid\ttext\n1\tfirst\n2\tsecond",
    "rows.jsonl": '{"id": 1, "text": "one \\u2028 sep"}\n\n{"id": "2", "text": "two"}\r\n',
}
BAD = {
    "late-bad.csv": "id,text\n1,fine\n2,\n",  # empty text on line 3
    "dup.tsv": "id\ttext\n1\ta\n1\tb\n",
    "nul.csv": "id,text\n1,a\n2,b\0c\n",
    "json.jsonl": '{"id": 1, "text": "a"}\n{"id": 2, "text": \n',
    "missing.csv": "id,body\n1,a\n",
    "empty.csv": "id,text\n",
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_iter_rows_reads_what_read_rows_reads(name, tmp_path):
    path = tmp_path / name
    path.write_bytes(GOOD[name].encode("utf-8"))
    assert list(iter_rows(path, text_col="text", id_col="id")) == read_rows(path, text_col="text", id_col="id")
    assert count_lines(path) >= len(read_rows(path, text_col="text", id_col="id"))


@pytest.mark.parametrize("name", sorted(BAD))
def test_iter_rows_refuses_what_read_rows_refuses(name, tmp_path):
    path = tmp_path / name
    path.write_bytes(BAD[name].encode("utf-8"))
    with pytest.raises(DataError) as whole:
        read_rows(path, text_col="text", id_col="id")
    with pytest.raises(DataError) as streamed:
        list(iter_rows(path, text_col="text", id_col="id"))
    assert str(streamed.value) == str(whole.value)


def test_iter_rows_names_the_line_of_a_byte_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"id,text\n" + b"".join(b"%d,row %d\n" % (i, i) for i in range(5000)) + b"5000,caf\xe9\n")
    with pytest.raises(DataError, match="line 5002.*not valid UTF-8"):
        list(iter_rows(path, text_col="text", id_col="id"))


# ---- chunks equal the one-shot path -------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_chunked_output_equals_the_one_shot_output(index_dir, one_shot, tmp_path, fmt):
    out = tmp_path / f"p.{fmt}"
    assert main(["-q", "predict", str(index_dir), str(TEST), "--text-col", "text", "--id-col", "id",
                 "--chunk-size", "7", "--out", str(out)]) == 0
    assert out.read_bytes() == one_shot[fmt].read_bytes()
    assert not partial_path(out).exists() and not progress_path(out).exists()


def test_explain_in_chunks_names_the_same_neighbours(index_dir, tmp_path):
    """Without the cache, chunks batch the encoder differently: the neighbours are the same and their
    similarities agree to float precision (the written vote fractions and similarities are identical)."""
    runs = {}
    for size in ("7", "1000"):
        out = tmp_path / f"p{size}.jsonl"
        assert main(["-q", "predict", str(index_dir), str(TEST), "--text-col", "text", "--explain", "--no-cache",
                     "--chunk-size", size, "--out", str(out)]) == 0
        runs[size] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(runs["7"]) == 300
    for a, b in zip(runs["7"], runs["1000"], strict=True):
        assert (a["id"], a["labels"], a["scores"]) == (b["id"], b["labels"], b["scores"])
        assert abs(a["top_similarity"] - b["top_similarity"]) < 1e-5
        assert [n["row"] for n in a["neighbours"]] == [n["row"] for n in b["neighbours"]]
        assert all(abs(x["similarity"] - y["similarity"]) < 1e-5 for x, y in zip(a["neighbours"], b["neighbours"],
                                                                                strict=True))


# ---- interruption and resumption ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["predict:after-chunk", "predict:mid-chunk"])
def test_a_killed_run_resumes_to_the_same_file(index_dir, one_shot, tmp_path, capsys, fault):
    out = tmp_path / "p.csv"
    args = ["predict", str(index_dir), str(TEST), "--text-col", "text", "--id-col", "id", "--chunk-size", "100",
            "--out", str(out)]
    killed = fewlabel(*args, env={"FEWLABEL_FAULT": fault})
    assert killed.returncode == -9, killed.stderr
    assert not out.exists()  # OUT appears whole or not at all
    record = json.loads(progress_path(out).read_text(encoding="utf-8"))
    assert record["rows"] == 100 and partial_path(out).stat().st_size >= record["bytes"]
    if fault == "predict:mid-chunk":  # half of the second chunk is in the partial file, past the record
        assert partial_path(out).stat().st_size > record["bytes"]
    assert main(args) == 0  # the resumption in-process: only the kill needs a process of its own
    resumed = capsys.readouterr()
    assert "resuming" in resumed.err and "100 rows were written by an earlier run" in resumed.err
    assert "labelled 298 of 300 texts" in resumed.out
    assert out.read_bytes() == one_shot["csv"].read_bytes()
    assert not partial_path(out).exists() and not progress_path(out).exists()


def test_a_changed_input_or_no_resume_starts_afresh(index_dir, one_shot, tmp_path, capsys):
    data = tmp_path / "in.tsv"
    data.write_bytes(TEST.read_bytes())
    out = tmp_path / "p.csv"
    args = ["predict", str(index_dir), str(data), "--text-col", "text", "--id-col", "id", "--chunk-size", "100",
            "--out", str(out)]
    assert fewlabel(*args, env={"FEWLABEL_FAULT": "predict:after-chunk"}).returncode == -9
    os.utime(data, ns=(1, 1))  # the input changed (as far as its record can tell)
    capsys.readouterr()
    assert main(args) == 0  # the runs that are not killed run in-process (each child pays torch's import)
    again = capsys.readouterr().err
    assert "afresh" in again and "resuming" not in again
    assert out.read_bytes() == one_shot["csv"].read_bytes()
    assert fewlabel(*args, env={"FEWLABEL_FAULT": "predict:after-chunk"}).returncode == -9
    capsys.readouterr()
    assert main([*args, "--no-resume"]) == 0
    assert "resuming" not in capsys.readouterr().err
    assert out.read_bytes() == one_shot["csv"].read_bytes()


def test_a_bad_row_late_in_the_input_is_refused_before_the_model_loads(index_dir, tmp_path):
    lines = TEST.read_text(encoding="utf-8").splitlines()
    data = tmp_path / "bad.tsv"
    data.write_text("\n".join([*lines[:250], "999\t\tjoy", *lines[250:]]) + "\n", encoding="utf-8")
    result = fewlabel("predict", str(index_dir), str(data), "--text-col", "text", "--id-col", "id", "--out",
                      str(tmp_path / "p.csv"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "line 251" in result.stderr and "empty text" in result.stderr
    assert not list(tmp_path.glob("*p.csv*"))


def test_a_users_file_at_out_is_never_touched(index_dir, tmp_path, capsys):
    out = tmp_path / "notes.csv"
    out.write_text("my,own\nnotes,here\n")
    assert main(["predict", str(index_dir), str(TEST), "--text-col", "text", "--out", str(out)]) == 2
    assert "fewlabel never replaces" in capsys.readouterr().err
    assert out.read_text() == "my,own\nnotes,here\n" and not partial_path(out).exists()


def test_stream_options_apply_to_the_local_engine(index_dir, tmp_path, capsys):
    assert main(["predict", str(index_dir), str(TEST), "--text-col", "text", "--engine", "ray", "--chunk-size", "5",
                 "--out", str(tmp_path / "p.csv")]) == 2
    assert "--chunk-size applies to --engine local" in capsys.readouterr().err
