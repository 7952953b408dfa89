"""LabelIndex on disk (save, load, update under the lock) and what it refuses, in a second: vectors come from a
hashing encoder (tests/support/vectors.py), since what is tested is the folder, not the model. The model-backed
versions are in test_label_index.py and test_reliability.py; these are the ones mutation testing runs
(`make mutation`, benchmarks/results/mutation.md)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fewlabel.indexing.errors import FewlabelError, IndexMismatchError
from fewlabel.indexing.readers import Row
from fewlabel.indexing.store import label_index as li
from fewlabel.indexing.store.label_index import LabelIndex, claim_index_folder, is_index_folder
from tests.support.vectors import HashingEncoder

TEXTS = [("a red apple pie", ("food",)), ("the football match ended", ("sports",)),
         ("apple cake with cream", ("food",)), ("a tennis match in the rain", ("sports", "weather")),
         ("rain and wind all day", ("weather",)), ("bread and butter", ("food",))]


def rows(pairs=TEXTS, start: int = 0) -> list[Row]:
    return [Row(text=t, labels=labels, id=f"r{start + i}", line=i + 2) for i, (t, labels) in enumerate(pairs)]


@pytest.fixture()
def encoder() -> HashingEncoder:
    return HashingEncoder()


@pytest.fixture()
def saved(tmp_path, encoder) -> Path:
    index = LabelIndex.build(rows(), encoder)
    index.tuning = {"k": 3, "m": 1}
    index.extra["fallback"] = {"route": "none"}
    return index.save(tmp_path / "ix")


def meta_of(folder: Path) -> dict:
    return json.loads((folder / "meta.json").read_text())


def rewrite_meta(folder: Path, change) -> None:
    meta = meta_of(folder)
    change(meta)
    (folder / "meta.json").write_text(json.dumps(meta))


def test_save_then_load_gives_the_same_index(saved, encoder):
    meta = meta_of(saved)
    assert meta["format_version"] == li.FORMAT_VERSION and meta["n_rows"] == 6
    assert meta["labels"] == ["food", "sports", "weather"] and meta["multi_label"] is True
    assert meta["faiss"]["factory"] == "Flat" and meta["faiss"]["ntotal"] == 6 and meta["store"] == {"kind": "faiss"}
    assert meta["fallback"] == {"route": "none"} and "method" not in meta
    assert sorted(p.name for p in saved.iterdir()) == ["index.faiss", "meta.json", "rows.jsonl"]
    first = json.loads((saved / "rows.jsonl").read_text().splitlines()[0])
    assert first == {"id": "r0", "labels": ["food"], "text": "a red apple pie"}
    loaded = LabelIndex.load(saved, encoder)
    assert [(r.id, r.text, r.labels, r.line) for r in loaded.rows] == [(r.id, r.text, r.labels, i + 1)
                                                                       for i, r in enumerate(rows())]
    assert loaded.label_names == ["food", "sports", "weather"] and loaded.multi_label is True
    assert loaded.tuning == {"k": 3, "m": 1} and loaded.extra == {"fallback": {"route": "none"}}
    assert loaded.factory == "Flat" and loaded.search_params is None and loaded.method is None
    assert loaded.encoder == meta["encoder"] and loaded.method_files == {}
    sims, ids = loaded.search(encoder.encode(["apple pie"]), 2)
    assert ids[0][0] == 0 and sims[0][0] > sims[0][1]


def test_update_saves_under_the_lock_and_only_on_success(saved, encoder):
    with LabelIndex.update(saved, encoder) as index:
        index.add(rows([("cold snow", ("weather",))], start=10), encoder)
    assert len(LabelIndex.load(saved)) == 7 and meta_of(saved)["tuning"]["stale"] is True
    with pytest.raises(RuntimeError), LabelIndex.update(saved, encoder) as index:
        index.add(rows([("hot sun", ("weather",))], start=20), encoder)
        raise RuntimeError("stop")
    assert len(LabelIndex.load(saved)) == 7  # not saved


def test_update_waits_for_another_writer(saved, encoder):
    told: list[str] = []
    done = threading.Event()

    def second() -> None:
        with LabelIndex.update(saved, waiting=told.append) as index:
            index.add(rows([("warm soup", ("food",))], start=30), encoder)
        done.set()

    with LabelIndex.update(saved, encoder) as index:
        thread = threading.Thread(target=second)
        thread.start()
        deadline = time.monotonic() + 10
        while not told and time.monotonic() < deadline:
            time.sleep(0.02)
        assert told and not done.is_set()
        index.add(rows([("cold snow", ("weather",))], start=10), encoder)
    thread.join(10)
    assert done.is_set() and {r.id for r in LabelIndex.load(saved).rows} >= {"r10", "r30"}  # neither lost


def test_load_refuses_another_encoder(saved):
    with pytest.raises(IndexMismatchError, match="dim: index has 64, encoder has 32"):
        LabelIndex.load(saved, HashingEncoder(dim=32))


def test_load_repairs_a_folder_a_killed_writer_left_aside(saved, tmp_path):
    aside = tmp_path / ".ix.old-999999999"
    saved.rename(aside)
    assert len(LabelIndex.load(saved)) == 6 and not aside.exists()


@pytest.mark.parametrize(("damage", "message"), [
    (lambda f: (f / "meta.json").unlink(), "not a fewlabel index (meta.json is missing)"),
    (lambda f: (f / "rows.jsonl").unlink(), "not a fewlabel index (rows.jsonl is missing)"),
    (lambda f: (f / "meta.json").write_text('{"format_version": 1,\n'), "corrupt JSON at line 2"),
    (lambda f: (f / "meta.json").write_bytes(b"\xff\xfe"), "cannot read"),
    (lambda f: (f / "meta.json").write_text("[1]"), "expected a JSON object, found list"),
    (lambda f: rewrite_meta(f, lambda m: m.update(format_version=2)), "index format 2; this fewlabel reads format 1"),
    (lambda f: (f / "rows.jsonl").write_text('{"id": 1}\n'), "rows.jsonl, line 1: corrupt row"),
    (lambda f: (f / "rows.jsonl").write_text("not json\n"), "rows.jsonl, line 1: corrupt row"),
    (lambda f: rewrite_meta(f, lambda m: m["encoder"].update(dim=65)), "has dimension 64, meta.json says 65"),
    (lambda f: (f / "rows.jsonl").write_text("".join((f / "rows.jsonl").read_text().splitlines(True)[:5])),
     "holds 6 vectors, rows.jsonl has 5 rows"),
    (lambda f: (f / "rows.jsonl").write_text((f / "rows.jsonl").read_text().replace("apple", "Apple")),
     "rows.jsonl does not match the data fingerprint"),
    (lambda f: rewrite_meta(f, lambda m: m.update(labels=["food", "sports"])),
     "rows carry labels missing from meta.json: ['weather']"),
])
def test_load_refuses_a_damaged_folder_naming_the_problem(saved, damage, message):
    damage(saved)
    with pytest.raises(IndexMismatchError, match=re.escape(message)):
        LabelIndex.load(saved)


def test_load_refuses_a_missing_folder(tmp_path):
    with pytest.raises(IndexMismatchError, match="no such index folder"):
        LabelIndex.load(tmp_path / "nothing")


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m.pop("encoder"), "field 'encoder' should be a JSON dict, it is missing"),
    (lambda m: m.update(labels="food"), "field 'labels' should be a JSON list, it is a str"),
    (lambda m: m.update(multi_label=1), "field 'multi_label' should be a JSON bool, it is a int"),
    (lambda m: m.pop("data_fingerprint"), "field 'data_fingerprint' should be a JSON str, it is missing"),
    (lambda m: m.update(faiss=[]), "field 'faiss' should be a JSON dict, it is a list"),
    (lambda m: m["encoder"].update(dim="64"), "field 'encoder.dim' is missing or not a int"),
    (lambda m: m["encoder"].pop("model"), "field 'encoder.model' is missing or not a str"),
    (lambda m: m["faiss"].pop("factory"), "field 'faiss.factory' is missing or not a string"),
])
def test_meta_fields_are_checked_one_clear_error_each(saved, change, message):
    rewrite_meta(saved, change)
    with pytest.raises(IndexMismatchError, match=re.escape(message)):
        LabelIndex.load(saved)


def with_method(saved: Path, encoder, files: dict[str, bytes]) -> LabelIndex:
    index = LabelIndex.load(saved)
    index.method = {"name": "linear", "chosen_by": "user"}
    index.method_files = files
    index.save(saved)
    return index


def test_method_files_round_trip_with_their_sha256(saved, encoder):
    files = {"method.json": b'{"a": 1}', "model/config.json": b"{}"}
    with_method(saved, encoder, files)
    meta = meta_of(saved)
    assert meta["method"] == {"name": "linear", "chosen_by": "user",
                              "files": {n: hashlib.sha256(d).hexdigest() for n, d in sorted(files.items())}}
    assert (saved / "method" / "model" / "config.json").read_bytes() == b"{}"
    loaded = LabelIndex.load(saved)
    assert loaded.method == {"name": "linear", "chosen_by": "user"} and loaded.method_files == files


def test_a_changed_or_missing_method_file_is_refused(saved, encoder):
    with_method(saved, encoder, {"method.json": b'{"a": 1}'})
    (saved / "method" / "method.json").write_bytes(b'{"a": 2}')
    with pytest.raises(IndexMismatchError, match=r"method/method.json was changed after the index was written"):
        LabelIndex.load(saved)
    (saved / "method" / "method.json").unlink()
    with pytest.raises(IndexMismatchError, match=r"the method's file method/method.json is missing or unreadable"):
        LabelIndex.load(saved)


@pytest.mark.parametrize("record", ["linear", {"files": {}}, {"name": 3}, {"name": "nb", "files": []},
                                    {"name": "nb", "files": {"../escape": "0" * 64}},
                                    {"name": "nb", "files": {"a.json": 5}}])
def test_a_malformed_method_record_is_refused(saved, record):
    rewrite_meta(saved, lambda m: m.update(method=record))
    with pytest.raises(IndexMismatchError, match="field 'method' should be|not a plain relative file path"):
        LabelIndex.load(saved)


def test_a_method_file_name_that_escapes_the_folder_is_not_written(saved, encoder):
    index = LabelIndex.load(saved)
    index.method, index.method_files = {"name": "linear"}, {"../x.json": b"1"}
    with pytest.raises(IndexMismatchError, match="is not a plain relative file path"):
        index.save(saved)
    assert not (saved.parent / "x.json").exists() and meta_of(saved).get("method") is None  # old index stands


def test_save_refuses_a_folder_that_is_not_an_index(tmp_path, encoder):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "meta.json").write_text('{"name": "my model"}')
    index = LabelIndex.build(rows(), encoder)
    with pytest.raises(FewlabelError, match="is not a fewlabel index; fewlabel never replaces a folder"):
        index.save(mine)
    with pytest.raises(FewlabelError, match="--index .*is not a fewlabel index"):
        claim_index_folder(mine, option="--index")
    assert sorted(p.name for p in mine.iterdir()) == ["meta.json"]
    assert is_index_folder(mine) is False and is_index_folder(tmp_path / "none") is False


def test_store_record_reads_the_replaced_folders_store(saved, tmp_path):
    assert li._store_record(saved) == {"kind": "faiss"}
    assert li._store_record(tmp_path / "none") is None
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "meta.json").write_text('{"store": "milvus"}')
    assert li._store_record(tmp_path / "odd") is None
    (tmp_path / "odd" / "meta.json").write_text("[]")
    assert li._store_record(tmp_path / "odd") is None


def test_saved_vectors_are_the_encoders(saved, encoder):
    import faiss

    stored = faiss.read_index(str(saved / "index.faiss")).reconstruct_n(0, 6)
    np.testing.assert_allclose(stored, encoder.encode([t for t, _ in TEXTS]), atol=1e-6)


# ---- what mutation testing found unchecked (benchmarks/results/mutation.md) -----------------------------------
def test_the_files_keep_non_ascii_text_readable_and_meta_json_indented(tmp_path, encoder):
    """rows.jsonl and meta.json are files people read and grep: UTF-8 text as it is, not \\u escapes, and
    meta.json indented by two spaces."""
    index = LabelIndex.build(rows([("crème brûlée", ("dessert",)), ("날씨가 맑다", ("날씨",))]), encoder)
    folder = index.save(tmp_path / "ix")
    text = (folder / "rows.jsonl").read_text(encoding="utf-8")
    assert '"text": "crème brûlée"' in text and '"labels": ["날씨"]' in text
    meta = (folder / "meta.json").read_text(encoding="utf-8")
    assert meta == json.dumps(meta_of(folder), ensure_ascii=False, indent=2) and '"날씨"' in meta


def test_search_params_and_nested_method_files_round_trip(tmp_path, encoder):
    index = LabelIndex.build(rows(), encoder, factory="HNSW8", search_params="efSearch=48")
    index.method = {"name": "linear", "chosen_by": "user"}
    index.method_files = {"model/1_Pooling/config.json": b"{}"}  # a model folder's subfolder
    loaded = LabelIndex.load(index.save(tmp_path / "ix"))
    assert loaded.search_params == "efSearch=48" and loaded.factory == "HNSW8"
    assert loaded.method_files == {"model/1_Pooling/config.json": b"{}"}
    assert "method" not in loaded.extra and loaded.extra == {}  # the method record is not an unknown field


def test_inconsistent_folders_name_every_problem_in_one_line(saved):
    rewrite_meta(saved, lambda m: m["encoder"].update(dim=65))
    (saved / "rows.jsonl").write_text("".join((saved / "rows.jsonl").read_text().splitlines(True)[:5]))
    with pytest.raises(IndexMismatchError) as caught:
        LabelIndex.load(saved)
    assert str(caught.value) == (f"{saved}: inconsistent index (index.faiss has dimension 64, meta.json says 65; "
                                 "index.faiss holds 6 vectors, rows.jsonl has 5 rows; rows.jsonl does not match the "
                                 "data fingerprint in meta.json)")


def test_stray_labels_show_the_first_five(saved):
    lines = (saved / "rows.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["labels"] = [f"x{i}" for i in range(7)]
    (saved / "rows.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    from fewlabel.indexing.store.label_index import data_fingerprint

    items = [json.loads(x) for x in (saved / "rows.jsonl").read_text().splitlines()]
    now = [Row(text=x["text"], labels=tuple(x["labels"]), id=str(x["id"]), line=i + 1) for i, x in enumerate(items)]
    rewrite_meta(saved, lambda m: m.update(data_fingerprint=data_fingerprint(now)))  # sound rows, unknown labels
    with pytest.raises(IndexMismatchError) as caught:
        LabelIndex.load(saved)
    assert str(caught.value) == (f"{saved}: rows carry labels missing from meta.json: "
                                 "['x0', 'x1', 'x2', 'x3', 'x4']")


def test_meta_field_errors_name_the_file(saved):
    rewrite_meta(saved, lambda m: m.update(labels="food"))
    with pytest.raises(IndexMismatchError) as caught:
        LabelIndex.load(saved)
    assert str(caught.value) == f"{saved / 'meta.json'}: field 'labels' should be a JSON list, it is a str"


def test_a_store_index_needs_its_store_record_not_a_faiss_one(tmp_path):
    meta = {"encoder": {"dim": 4, "model": "m"}, "store": {"kind": "milvus", "uri": "x.db"}, "labels": [],
            "multi_label": False, "data_fingerprint": "f"}
    li._check_meta_fields(meta, tmp_path / "meta.json")  # no "faiss" field is needed
    with pytest.raises(IndexMismatchError, match="field 'faiss' should be a JSON dict, it is missing"):
        li._check_meta_fields({**meta, "store": {"kind": "faiss"}}, tmp_path / "meta.json")


def test_method_errors_name_the_file_the_reason_and_the_fix(saved, encoder):
    rewrite_meta(saved, lambda m: m.update(method={"name": 3}))
    with pytest.raises(IndexMismatchError) as caught:
        LabelIndex.load(saved)
    assert str(caught.value) == (f"{saved / 'meta.json'}: field 'method' should be a JSON object with a 'name' "
                                 "and 'files'")
    rewrite_meta(saved, lambda m: m.pop("method"))
    with_method(saved, encoder, {"method.json": b'{"a": 1}'})
    (saved / "method" / "method.json").write_bytes(b'{"a": 2}')
    with pytest.raises(IndexMismatchError) as caught:
        LabelIndex.load(saved)
    assert str(caught.value) == (f"{saved}: method/method.json was changed after the index was written (its sha256 "
                                 "does not match meta.json); refusing to use it: rebuild the index")
    (saved / "method" / "method.json").unlink()
    with pytest.raises(IndexMismatchError) as caught:
        LabelIndex.load(saved)
    assert str(caught.value) == (f"{saved}: the method's file method/method.json is missing or unreadable "
                                 "(FileNotFoundError); rebuild the index")


def test_only_a_meta_json_with_format_and_encoder_is_an_index(tmp_path):
    for meta, ours in (({"format_version": 1, "encoder": {}}, True), ({"encoder": {"model": "x"}}, False),
                       ({"format_version": 1}, False), ({}, False), ([1], False)):
        folder = tmp_path / f"f{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / "meta.json").write_text(json.dumps(meta))
        assert is_index_folder(folder) is ours, meta


def test_claim_names_out_unless_told_otherwise(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("mine")
    with pytest.raises(FewlabelError, match=rf"^--out {re.escape(str(mine))}: this folder holds thesis.txt"):
        claim_index_folder(mine)
