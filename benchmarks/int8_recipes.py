"""The int8 recipes the benchmarks tried beside the shipped one (`onnx_quality.md`, `onnx_quality_more.md`,
`openvino_trial.md`): onnxruntime's weight-only (``MatMulNBits``) and static (QDQ, calibrated) quantizers, and
attention fused first by onnxruntime's transformer optimizer. None of them won on this CPU, so the product
(:mod:`fewlabel.indexing.encoders.onnx_backend`) ships only the dynamic recipe; they live here, with the
``onnx-ir`` package the weight-only quantizer imports (the ``bench`` extra).

    quantize_int8(fp32, weights, recipe, quantizer=recipe_quantizer(calibration_texts))"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fewlabel.indexing.encoders.onnx_backend import excluded_nodes, quantize_dynamic_recipe
from fewlabel.indexing.errors import InvalidArgumentError

__all__ = ["calibration_reader", "fused", "quantize_with_recipe", "recipe_quantizer", "tokenised_batches"]


def recipe_quantizer(calibration_texts: list[str] | None = None) -> Callable[[Path, Path, dict, str], None]:
    """A ``quantizer`` for :func:`~fewlabel.indexing.encoders.onnx_backend.quantize_int8` that knows every kind
    of recipe below (and fuses first when the recipe says ``fuse``)."""

    def quantize(source: Path, out: Path, recipe: dict, model_source: str) -> None:
        if recipe.get("fuse"):
            fused_path = fused(source, model_source, out.parent / "fused.onnx")
            try:
                quantize_with_recipe(fused_path, out, recipe, model_source, calibration_texts)
            finally:
                fused_path.unlink(missing_ok=True)  # the fused fp32 step is not kept
            return
        quantize_with_recipe(source, out, recipe, model_source, calibration_texts)

    return quantize


def quantize_with_recipe(source: Path, out: Path, recipe: dict, model_source: str,
                         calibration_texts: list[str] | None = None) -> None:
    """Write the int8 model of ``source`` to ``out`` by the recipe's kind, each onnxruntime's own quantizer:

    - ``dynamic`` (the shipped kind): int8 weights, activations quantised per batch at run time;
    - ``weight-only``: ``MatMulNBits`` with ``bits``-bit weights (8 unless set) in blocks of ``block_size``,
      activations left in fp32 (``accuracy_level`` 4 lets the kernel quantise them to int8 per block instead);
    - ``static``: QDQ int8 with activation ranges calibrated once on ``calibration_texts`` (``calibration``:
      MinMax, Percentile or Entropy), so nothing is measured at run time."""
    kind = recipe.get("kind", "dynamic")
    if kind == "dynamic":
        quantize_dynamic_recipe(source, out, recipe, model_source)
    elif kind == "weight-only":
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(str(source), bits=int(recipe.get("bits", 8)),
                                         block_size=int(recipe.get("block_size", 32)), is_symmetric=True,
                                         accuracy_level=recipe.get("accuracy_level"),
                                         nodes_to_exclude=excluded_nodes(source, recipe["exclude"]),
                                         op_types_to_quantize=("MatMul",))
        quantizer.process()
        quantizer.model.save_model_to_file(str(out), False)
    elif kind == "static":
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        if not calibration_texts:
            raise InvalidArgumentError("a static int8 recipe needs calibration texts")
        quantize_static(str(source), str(out), calibration_reader(source, model_source, calibration_texts),
                        quant_format=QuantFormat.QDQ, op_types_to_quantize=recipe["op_types"],
                        per_channel=bool(recipe["per_channel"]), reduce_range=bool(recipe["reduce_range"]),
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=excluded_nodes(source, recipe["exclude"]),
                        calibrate_method=getattr(CalibrationMethod, recipe.get("calibration", "MinMax")),
                        extra_options={"DefaultTensorType": 1})
    else:
        raise InvalidArgumentError(f"unknown int8 recipe kind {kind!r}: use dynamic, weight-only or static")


def calibration_reader(source: Path, model_source: str, texts: list[str]):
    """Tokenised batches of 32 of ``texts`` (the tokenizer of ``model_source``), as onnxruntime's static
    quantizer reads them while it records each activation's range."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_source)
    inputs = [i.name for i in ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).get_inputs()]
    batches = tokenised_batches(tokenizer, texts, inputs, batch_size=32, max_length=128)

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(batches)

        def get_next(self):
            return next(self.items, None)

    return Batches()


def tokenised_batches(tokenizer, texts: list[str], inputs: list[str], *, batch_size: int,
                      max_length: int) -> list[dict]:
    """``texts`` tokenised in batches of ``batch_size``, each a feed of the graph's ``inputs`` (int64), as a
    quantizer's calibration pass (or OpenVINO's NNCF) runs them through the exported model."""
    import numpy as np

    batches = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                          return_tensors="np")
        batches.append({name: np.asarray(batch[name], dtype=np.int64) for name in inputs})
    return batches


def fused(path: Path, source: str, out: Path) -> Path:
    """``path`` with BERT's attention, GELU and layer norms fused by onnxruntime's transformer optimizer (the
    head count and width come from the model's config at ``source``)."""
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source)
    model = optimize_model(str(path), model_type="bert", num_heads=int(config.num_attention_heads),
                           hidden_size=int(config.hidden_size))
    model.save_model_to_file(str(out))
    return out
