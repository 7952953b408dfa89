"""LabelIndex on the real MiniLM: round trip, refusal of mismatches and corrupt folders, atomic
saves, adding rows, FAISS types, and the embedding cache."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fewlabel.indexing.encoders.cache import EmbeddingCache, encode_with_cache
from fewlabel.indexing.errors import DataError, FewlabelError, IndexMismatchError
from fewlabel.indexing.readers import Row
from fewlabel.indexing.store.label_index import LabelIndex

ROWS = [
    Row("I love this film, it is wonderful", ("positive",), "a", 2),
    Row("What a great and happy day", ("positive", "joy"), "b", 3),
    Row("This movie was terrible and boring", ("negative",), "c", 4),
    Row("I hate waiting in the rain", ("negative", "anger"), "d", 5),
    Row("The plot was dull, the acting awful", ("negative",), "e", 6),
    Row("Such a delightful, charming story", ("positive", "joy"), "f", 7),
]


@pytest.fixture(scope="module")
def index(minilm) -> LabelIndex:
    return LabelIndex.build(ROWS, minilm)


def test_build_decides_multi_label_and_names(index):
    assert index.multi_label is True
    assert index.label_names == ["anger", "joy", "negative", "positive"]
    assert index.label_matrix().sum(axis=1).tolist() == [1, 2, 1, 2, 1, 2]


def test_round_trip_keeps_vectors_rows_and_meta(index, minilm, tmp_path):
    index.tuning = {"k": 3, "m": 2, "score": 0.5, "metric": "micro", "grid": [], "n_valid": 6}
    folder = index.save(tmp_path / "idx")
    assert sorted(p.name for p in folder.iterdir()) == ["index.faiss", "meta.json", "rows.jsonl"]
    loaded = LabelIndex.load(folder)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["encoder"]["model"] == "minilm" and meta["encoder"]["pooling"] == "mean"
    assert meta["tuning"]["k"] == 3 and meta["format_version"] == 1 and meta["data_fingerprint"]
    assert [r.id for r in loaded.rows] == [r.id for r in ROWS]
    query = minilm.encode(["I adore this wonderful movie"])
    np.testing.assert_array_equal(loaded.search(query, 3)[1], index.search(query, 3)[1])
    assert loaded.search(query, 1)[1][0, 0] in (0, 5)  # a positive row is nearest


def test_encoder_mismatch_is_refused_with_the_difference(index, e5, minilm, tmp_path):
    folder = index.save(tmp_path / "idx")
    with pytest.raises(IndexMismatchError, match="model: index has 'minilm', encoder has 'e5-small'"):
        LabelIndex.load(folder, encoder=e5)
    assert len(LabelIndex.load(folder, encoder=minilm)) == len(ROWS)
    with pytest.raises(IndexMismatchError, match="encoder does not match"):
        index.encode_queries(e5, ["a query"])


def test_dimension_and_count_mismatch_refused(index, tmp_path):
    folder = index.save(tmp_path / "idx")
    meta = json.loads((folder / "meta.json").read_text())
    meta["encoder"]["dim"] = 768
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IndexMismatchError, match="dimension 384, meta.json says 768"):
        LabelIndex.load(folder)
    index.save(folder)
    with open(folder / "rows.jsonl", "a") as fh:
        fh.write(json.dumps({"id": "z", "labels": ["joy"], "text": "extra"}) + "\n")
    with pytest.raises(IndexMismatchError, match="holds 6 vectors, rows.jsonl has 7 rows"):
        LabelIndex.load(folder)


def test_corrupt_or_foreign_folders_refused(index, tmp_path):
    folder = index.save(tmp_path / "idx")
    (folder / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexMismatchError, match="corrupt FAISS index"):
        LabelIndex.load(folder)
    with pytest.raises(IndexMismatchError, match="no such index folder"):
        LabelIndex.load(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    with pytest.raises(IndexMismatchError, match="meta.json is missing"):
        LabelIndex.load(tmp_path / "other")
    good = index.save(tmp_path / "idx2")
    meta = json.loads((good / "meta.json").read_text())
    meta["format_version"] = 99
    (good / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IndexMismatchError, match="format 99"):
        LabelIndex.load(good)


def test_interrupted_save_leaves_old_index_intact(index, tmp_path, monkeypatch):
    import faiss

    folder = index.save(tmp_path / "idx")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", crash)
    with pytest.raises(OSError, match="disk full"):
        index.save(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temporary folder left behind
    monkeypatch.undo()
    assert len(LabelIndex.load(folder)) == len(ROWS)


def test_add_rows_updates_labels_and_marks_tuning_stale(minilm, tmp_path):
    index = LabelIndex.build(ROWS[:4], minilm)
    index.tuning = {"k": 2, "m": 1}
    added = index.add(ROWS[4:] + [Row("A frightening, scary night", ("fear",), "g", 9)], minilm)
    assert added == 3 and len(index) == 7 and "fear" in index.label_names
    assert index.tuning["stale"] is True
    with pytest.raises(DataError, match="id 'a' is already in the index"):
        index.add([Row("again", ("joy",), "a", 12)], minilm)
    reloaded = LabelIndex.load(index.save(tmp_path / "idx"))
    assert reloaded.faiss_index.ntotal == 7


@pytest.mark.parametrize("factory", ["HNSW32", "IVF2,Flat"])
def test_other_faiss_types_through_the_factory_string(minilm, factory, tmp_path):
    index = LabelIndex.build(ROWS, minilm, factory=factory)
    loaded = LabelIndex.load(index.save(tmp_path / "idx"))
    assert loaded.factory == factory and loaded.faiss_index.ntotal == len(ROWS)


def test_search_params_are_kept_with_the_index_and_checked(minilm, tmp_path):
    import faiss

    index = LabelIndex.build(ROWS, minilm, factory="HNSW32", search_params="efSearch=64")
    assert faiss.downcast_index(index.faiss_index).hnsw.efSearch == 64
    folder = index.save(tmp_path / "idx")
    assert json.loads((folder / "meta.json").read_text())["faiss"]["search_params"] == "efSearch=64"
    loaded = LabelIndex.load(folder)
    assert loaded.search_params == "efSearch=64" and faiss.downcast_index(loaded.faiss_index).hnsw.efSearch == 64
    assert faiss.downcast_index(LabelIndex.build(ROWS, minilm, factory="HNSW32").faiss_index).hnsw.efSearch == 16
    with pytest.raises(FewlabelError, match="'nprobe=4' do not apply to a 'HNSW32' index"):
        LabelIndex.build(ROWS, minilm, factory="HNSW32", search_params="nprobe=4")


def test_untrainable_factory_is_a_clear_error(minilm):
    with pytest.raises(FewlabelError, match="IVF1024,Flat' could not be trained on 6 vectors"):
        LabelIndex.build(ROWS, minilm, factory="IVF1024,Flat")
    with pytest.raises(FewlabelError, match="not valid"):
        LabelIndex.build(ROWS, minilm, factory="NoSuchIndex")


def test_rows_without_labels_refused(minilm):
    with pytest.raises(DataError, match="line 3.*no label"):
        LabelIndex.build([ROWS[0], Row("x", (), "q", 3)], minilm)


def test_embedding_cache_skips_known_texts(minilm, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    texts = [r.text for r in ROWS]
    first = encode_with_cache(minilm, texts + texts[:2], cache)
    assert cache.misses == len(texts)  # duplicates encoded once
    cache.close()
    reopened = EmbeddingCache(tmp_path / "cache.sqlite")
    second = encode_with_cache(minilm, texts, reopened)
    assert reopened.misses == 0 and reopened.hits == len(texts)
    np.testing.assert_allclose(second, first[:len(texts)], atol=1e-6)
    np.testing.assert_allclose(second, minilm.encode(texts), atol=1e-5)


def test_cache_keys_differ_between_models(minilm, e5, tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    encode_with_cache(minilm, ["same text"], cache)
    encode_with_cache(e5, ["same text"], cache)
    assert cache.misses == 2
    shutil.rmtree(tmp_path, ignore_errors=True)
