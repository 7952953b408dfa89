"""The Milvus store on Milvus Lite (embedded, no server): `index build --store milvus` labels exactly as the FAISS
path does, `index add` and row removal keep the folder and the collection in step, a rebuild drops the collection it
replaces, and rows a killed writer left in the collection are removed on the next open."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install 'fewlabel[milvus]')")
pytest.importorskip("milvus_lite", reason="the milvus extra is not installed (pip install 'fewlabel[milvus]')")

from fewlabel.indexing.store.label_index import LabelIndex  # noqa: E402
from fewlabel.retrieval.cli import main  # noqa: E402
from tests.support.demo import COMMON, DEMO, slice_tsv  # noqa: E402
from tests.support.server import running_server  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("milvus")
    files = {"train": slice_tsv(DEMO / "goemotions_ekman_train.tsv", d / "train.tsv", 0, 80),
             "valid": slice_tsv(DEMO / "goemotions_ekman_valid.tsv", d / "valid.tsv", 0, 40),
             "test": slice_tsv(DEMO / "goemotions_ekman_test.tsv", d / "test.tsv", 0, 60),
             "more": slice_tsv(DEMO / "goemotions_ekman_train.tsv", d / "more.tsv", 300, 10)}
    db = d / "labels.db"
    for store, out in (("faiss", d / "faiss-index"), ("milvus", d / "milvus-index")):
        extra = ["--store", "milvus", "--milvus-uri", str(db)] if store == "milvus" else []
        assert main(["-q", "index", "build", str(files["train"]), *COMMON, "--valid", str(files["valid"]),
                     "--model", "minilm", "--no-cache", "--max-k", "10", "--out", str(out), *extra]) == 0
    return {**files, "dir": d, "db": db, "faiss": d / "faiss-index", "milvus": d / "milvus-index"}


def client(db: Path):
    from fewlabel.indexing.store.milvus_store import _client

    return _client(str(db.resolve()))


def test_meta_records_the_store_and_the_collection(built):
    meta = json.loads((built["milvus"] / "meta.json").read_text())
    assert meta["store"]["kind"] == "milvus" and meta["store"]["uri"] == str(built["db"].resolve())
    assert meta["store"]["index_type"] == "FLAT" and "faiss" not in meta
    assert not (built["milvus"] / "index.faiss").exists()
    assert client(built["db"]).has_collection(meta["store"]["collection"])
    assert json.loads((built["faiss"] / "meta.json").read_text())["store"] == {"kind": "faiss"}
    assert main(["index", "info", str(built["milvus"])]) == 0


def test_labels_agree_with_faiss(built):
    outs = {}
    for store in ("faiss", "milvus"):
        outs[store] = built["dir"] / f"{store}.csv"
        assert main(["-q", "predict", str(built[store]), str(built["test"]), "--id-col", "id", "--no-cache",
                     "--out", str(outs[store])]) == 0
    assert outs["faiss"].read_text() == outs["milvus"].read_text()  # FLAT: the same labels, scores and similarity
    faiss_index, milvus_index = LabelIndex.load(built["faiss"]), LabelIndex.load(built["milvus"])
    queries = np.random.default_rng(0).normal(size=(5, 384)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    (fs, fi), (ms, mi) = faiss_index.search(queries, 7), milvus_index.search(queries, 7)
    assert (fi == mi).all() and np.allclose(fs, ms, atol=1e-5)


def test_add_remove_and_rebuild_keep_folder_and_collection_in_step(built, tmp_path):
    folder = tmp_path / "copy"
    assert main(["-q", "index", "build", str(built["train"]), *COMMON, "--model", "minilm", "--no-cache",
                 "--out", str(folder), "--store", "milvus", "--milvus-uri", str(built["db"])]) == 0
    collection = json.loads((folder / "meta.json").read_text())["store"]["collection"]
    assert main(["-q", "index", "add", str(folder), str(built["more"]), *COMMON, "--no-cache"]) == 0
    index = LabelIndex.load(folder)
    assert len(index) == 90 and index.store.count() == 90
    gone = index.rows[5].id
    with LabelIndex.update(folder) as index:
        assert index.remove([gone]) == 1
    index = LabelIndex.load(folder)
    assert len(index) == 89 and index.store.count() == 89 and gone not in {r.id for r in index.rows}
    stored = index.store.client.query(collection, filter=f'pk == "{index.rows[7].id}"', output_fields=["vector"])
    _, ids = index.search(np.asarray(stored[0]["vector"], dtype=np.float32)[None, :], 1)
    assert ids[0, 0] == 7  # positions follow the folder's row order after the removal
    assert main(["-q", "index", "build", str(built["train"]), *COMMON, "--model", "minilm", "--no-cache",
                 "--out", str(folder), "--store", "milvus", "--milvus-uri", str(built["db"])]) == 0
    assert not client(built["db"]).has_collection(collection)  # the replaced index's collection is dropped


def test_rows_left_by_a_killed_writer_are_removed_on_open(built, tmp_path):
    folder = tmp_path / "strays"
    assert main(["-q", "index", "build", str(built["train"]), *COMMON, "--model", "minilm", "--no-cache",
                 "--out", str(folder), "--store", "milvus", "--milvus-uri", str(built["db"])]) == 0
    index = LabelIndex.load(folder)
    vector = np.ones((1, 384), dtype=np.float32) / np.sqrt(384)
    index.store.add(vector, [index.rows[0].__class__(text="stray", labels=("joy",), id="stray-1", line=1)])
    assert index.store.count() == 81  # upserted, but the folder was never saved
    reopened = LabelIndex.load(folder)
    assert reopened.store.count() == 80 and len(reopened) == 80


def test_milvus_mistakes_are_one_line(built, tmp_path, capsys):
    train = str(built["train"])
    for extra, message in ((["--store", "milvus"], "needs --milvus-uri"),
                           (["--milvus-uri", str(built["db"])], "applies to --store milvus"),
                           (["--store", "milvus", "--milvus-uri", str(tmp_path / "x.sqlite")], "must end in .db"),
                           (["--store", "milvus", "--milvus-uri", str(built["db"]), "--milvus-collection", "9bad"],
                            "letters, digits and underscores")):
        assert main(["index", "build", train, *COMMON, "--model", "minilm", "--out", str(tmp_path / "i"), *extra]) == 2
        assert message in capsys.readouterr().err
    collection = json.loads((built["milvus"] / "meta.json").read_text())["store"]["collection"]
    assert main(["-q", "index", "build", train, *COMMON, "--model", "minilm", "--no-cache", "--out",
                 str(tmp_path / "i"), "--store", "milvus", "--milvus-uri", str(built["db"]),
                 "--milvus-collection", collection]) == 2
    assert "already exists" in capsys.readouterr().err and not (tmp_path / "i").exists()


@pytest.mark.slow  # four processes that each load the encoder: about a minute
def test_serve_on_a_milvus_lite_index_and_the_one_process_rule(built, tmp_path):
    """`fewlabel serve` works unchanged on a Milvus index (live add and delete reach the collection); while it holds
    the Milvus Lite file, another process is refused in one line, and so is serve --workers 2."""
    import os
    import subprocess
    import sys

    httpx = pytest.importorskip("httpx", reason="the serve extra is not installed (pip install 'fewlabel[serve]')")
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'fewlabel[serve]')")
    db, folder = tmp_path / "served.db", tmp_path / "served-index"
    build = [sys.executable, "-m", "fewlabel.retrieval.cli", "-q", "index", "build", str(built["train"]), *COMMON,
             "--model", "minilm", "--no-cache", "--out", str(folder), "--store", "milvus", "--milvus-uri", str(db)]
    subprocess.run(build, check=True, timeout=300)  # in a child: this process must not hold the file
    two = subprocess.run([sys.executable, "-m", "fewlabel.retrieval.cli", "serve", str(folder), "--workers", "2"],
                         capture_output=True, text=True, timeout=120)
    assert two.returncode == 2 and "Milvus Lite" in two.stderr
    env = {k: v for k, v in os.environ.items() if k != "FEWLABEL_TOKEN"}  # no auth (an empty token is refused)
    with running_server([str(folder), "--no-cache"], tmp_path / "server.log", env=env, timeout_s=120,
                        stop_timeout_s=30) as (_, base):
        with httpx.Client(base_url=base, timeout=60) as client:
            assert client.get("/info").json()["store"]["kind"] == "milvus"
            text = "zxqv wobble flarn: the quokka jubilation"
            assert client.post("/examples", json={"rows": [{"id": "m-1", "text": text, "labels": ["wonder"]}]}
                               ).status_code == 201
            top = client.post("/classify", json={"texts": [text], "k": 1, "explain": True}).json()["predictions"][0]
            assert top["labels"] == ["wonder"] and top["neighbours"][0]["id"] == "m-1"
            busy = subprocess.run([sys.executable, "-m", "fewlabel.retrieval.cli", "predict", str(folder),
                                   str(built["test"]), "--id-col", "id", "--out", str(tmp_path / "p.csv")],
                                  capture_output=True, text=True, timeout=120)
            assert busy.returncode == 2 and "Milvus Lite lets one process" in busy.stderr
            assert len(busy.stderr.strip().splitlines()) == 1
            assert client.delete("/examples/m-1").json()["n_rows"] == 80
    reopened = subprocess.run([sys.executable, "-c", "from fewlabel.indexing.store.label_index import LabelIndex; "
                               f"i = LabelIndex.load({str(folder)!r}); print(len(i), i.store.count())"],
                              capture_output=True, text=True, timeout=120, check=True)
    assert reopened.stdout.split() == ["80", "80"]
