"""A new method is one file plus its registration: the toy method of tests/support/toy_method.py, registered
by importing it, is seen by auto, stored and loaded by the index, offered by `index build --method` with its
help, and benchmarked by `bench slices`, with no other edit anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fewlabel.retrieval.methods import registry

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"


@pytest.fixture
def toy():
    from tests.support import toy_method

    registry.register(toy_method.SPEC, replace=True)
    yield toy_method
    registry.unregister(toy_method.NAME)


def _rows(name: str, n: int):
    from fewlabel.indexing.readers import read_rows

    return read_rows(DEMO / name, text_col="text", label_col="labels", id_col="id", label_sep=",")[:n]


def test_builtin_methods_follow_the_protocol_and_store_only_what_they_load():
    specs = {s.name: s for s in registry.registered()}
    assert list(specs) == ["zeroshot", "prior", "knn", "linear", "nb", "ensemble", "setfit", "finetune"]
    assert registry.candidate_names() == ("knn", "linear", "nb", "ensemble")  # no label descriptions
    assert registry.candidate_names(descriptions=True) == ("zeroshot", "prior", "knn", "linear", "nb", "ensemble")
    assert registry.trained_names() == ("setfit", "finetune")
    assert specs["knn"].load is None and all(specs[n].load is not None for n in registry.stored_names())
    for name in ("knn", "linear", "nb", "ensemble"):
        assert isinstance(registry.make_candidate(name), registry.LabellingMethod)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.MethodSpec(name="knn", summary="x", factory=specs["linear"].factory))
    from fewlabel.indexing.errors import FewlabelError

    with pytest.raises(FewlabelError, match="needs a trainer"):
        registry.make_candidate("setfit")
    with pytest.raises(FewlabelError, match="needs label descriptions"):
        registry.make_candidate("prior")


def test_a_registered_method_reaches_auto_the_store_the_help_and_the_bench(toy, minilm, tmp_path):
    from fewlabel.benchmarks.slices.methods import IndexMethod, Task, make_methods, method_names
    from fewlabel.retrieval.cli import build_parser
    from fewlabel.retrieval.methods.index_method import build_index
    from fewlabel.retrieval.router import Predictor

    # auto scores it, between knn (rank 0) and linear (rank 10)
    assert registry.candidate_names() == ("knn", toy.NAME, "linear", "nb", "ensemble")
    train, valid = _rows("goemotions_ekman_train.tsv", 60), _rows("goemotions_ekman_valid.tsv", 30)
    test = [r.text for r in _rows("goemotions_ekman_test.tsv", 15)]
    index = build_index(train, minilm, valid, method="auto", max_k=8)
    assert toy.NAME in {e["method"] for e in index.method["leaderboard"]}

    # the store round trip of the method itself
    index = build_index(train, minilm, valid, method=toy.NAME, max_k=8)
    before = Predictor(index, minilm).predict(test)
    index.save(tmp_path / "ix")
    meta = json.loads((tmp_path / "ix" / "meta.json").read_text())
    assert meta["method"]["name"] == toy.NAME and "arrays.npz" in meta["method"]["files"]
    after = Predictor.load(tmp_path / "ix", minilm).predict(test)
    assert [p.labels for p in after] == [p.labels for p in before]
    assert all(p.route == toy.NAME for p in after)
    centroids = index.method_files["arrays.npz"]
    assert np.load(__import__("io").BytesIO(centroids))["centroids"].shape == (len(index.label_names), minilm.dim)

    # --method offers it, with its help
    build = build_parser()._subparsers._group_actions[0].choices["index"]
    build = build._subparsers._group_actions[0].choices["build"]
    method = next(a for a in build._actions if "--method" in a.option_strings)
    assert toy.NAME in method.choices and "toy nearest centroid" in method.help

    # bench slices runs it through the index's contract, and auto there sees it too
    assert toy.NAME in method_names()
    (bench,) = make_methods([toy.NAME], encoders=["minilm"], bodies=[])
    assert isinstance(bench, IndexMethod)
    bench._encoder = minilm
    info = bench.fit(train, valid, Task(labels=index.label_names, multi_label=index.multi_label))
    assert info["chosen"] == toy.NAME
    assert bench.predict(test).shape == (len(test), len(index.label_names))
