"""The encoder's ONNX backends: the transformer plus mean pooling exported once with torch's ONNX exporter,
optionally int8-quantised with onnxruntime's quantizer, and run by onnxruntime.

Why these tools and not optimum: ``optimum-onnx`` 0.1 needs transformers < 4.58 and ``optimum-intel`` 2.2
needs transformers < 5.6, while sentence-transformers 6 needs transformers >= 5; installing optimum would
downgrade transformers and break sentence-transformers. ``torch.onnx.export`` (the TorchScript exporter,
``dynamo=False``; the dynamo exporter fails on this model) and ``onnxruntime.quantization`` are maintained
and need nothing else.

The export is made once per weights fingerprint (:func:`~fewlabel.indexing.encoders.encoder.location_weights`)
and kept under ``$FEWLABEL_HOME/onnx/``, written atomically like the e5 rebuild, so a model retrained in place
gets a new export and a killed export leaves nothing half-written."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from fewlabel.indexing.errors import IndexMismatchError, InvalidArgumentError, ModelError, first_line
from fewlabel.indexing.files import atomic_directory, fewlabel_home, folder_lock

BACKENDS = ("torch", "onnx", "onnx-int8")
EXPORT_VERSION = 1  # bump when the exported graph changes, so old exports are made again
OPSET = 17
MODEL_FILE = "model.onnx"
# The int8 recipe (benchmarks/results/onnx_quality.md has every variant tried; this one lost the least): dynamic
# quantisation of the MatMul weights, per output channel, activations quantised per batch at run time; each
# layer's FFN output projection stays fp32 (its input, after GELU, has the widest range: int8 hurt most there),
# and so do the embedding tables (Gather), so no token's vector is rounded.
# `exclude` holds regular expressions over the exported graph's node names. `fuse` False: the benchmarks' fused
# variants (fewlabel.benchmarks.int8_recipes) did not pay.
INT8_RECIPE = {"op_types": ["MatMul"], "per_channel": True, "reduce_range": False,
               "exclude": [r"layer\.\d+/output/dense/MatMul$"], "fuse": False}


def check_backend(backend: str) -> str:
    """The backend name, or a FewlabelError listing the three."""
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"unknown encoder backend {backend!r}: use {', '.join(BACKENDS)}")
    return backend


def same_vectors(a: str, b: str) -> bool:
    """Whether two backends give the same vectors: torch and onnx do (cosine >= 0.9999, tested); int8 vectors
    only match int8 ones."""
    return (a == "onnx-int8") == (b == "onnx-int8")


def recipe_id(recipe: dict | None = None) -> str:
    """A short name of an int8 recipe, recorded by an int8 index so a later recipe's vectors are refused."""
    return hashlib.sha256(json.dumps(recipe or INT8_RECIPE, sort_keys=True).encode()).hexdigest()[:8]


def backend_mismatch(recorded: dict, theirs: dict) -> list[str]:
    """Why an encoder described by ``theirs`` cannot search an index whose meta.json encoder is ``recorded``
    (empty when it can). An index from before backends existed was made by torch."""
    made, used = recorded.get("backend", "torch"), theirs.get("backend", "torch")
    if not same_vectors(made, used):
        return [f"backend: the index holds {made} vectors, the encoder makes {used} ones (int8 vectors are only "
                f"comparable with int8 ones; use --backend {made}, or rebuild the index)"]
    if made == "onnx-int8" and recorded.get("int8_recipe") != theirs.get("int8_recipe"):
        return [f"backend: the index's int8 recipe {recorded.get('int8_recipe')} differs from this fewlabel's "
                f"{theirs.get('int8_recipe')}; rebuild the index"]
    return []


def backend_for_index(recorded: dict, requested: str | None) -> str | None:
    """The backend to search an index with: ``requested`` when its vectors match the index's (refused before
    any model loads when they do not); else int8 for an int8 index, and the default for a torch or onnx one
    (or exact onnx when the default is int8)."""
    from fewlabel.indexing.encoders.registry import DEFAULT_BACKEND

    made = recorded.get("backend", "torch")
    if requested is not None:
        check_backend(requested)
        reasons = backend_mismatch({"backend": made}, {"backend": requested})
        if reasons:
            raise IndexMismatchError("encoder does not match the index (" + reasons[0] + ")")
        return requested
    if made == "onnx-int8":
        return made
    return "onnx" if DEFAULT_BACKEND == "onnx-int8" else None


def export_folder(weights: str, backend: str, recipe: dict | None = None) -> Path:
    """Where the export of weights ``weights`` for ``backend`` lives (int8: one folder per recipe)."""
    safe = weights if all(c.isalnum() for c in weights) else hashlib.sha256(weights.encode()).hexdigest()[:20]
    name = f"{safe}-e{EXPORT_VERSION}"
    if backend == "onnx-int8":
        name += "-int8-" + recipe_id(recipe)
    return fewlabel_home() / "onnx" / name


def _pooled_module(model):
    """The transformer called with keyword inputs (a transformers-5 BertModel refuses positional ones: its
    forward's argument order changed), mean-pooled over the attention mask inside the graph."""
    import torch

    from fewlabel.indexing.encoders.pooling import mean_pool

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
            return mean_pool(hidden, attention_mask)

    return Pooled().eval()


def export_fp32(source: str, weights: str, *, show_progress: bool = True) -> Path:
    """The fp32 export of the model at ``source``, made on first use."""
    target = export_folder(weights, "onnx")
    if (target / MODEL_FILE).is_file():
        return target
    with folder_lock(target):
        if (target / MODEL_FILE).is_file():  # another process made it while we waited
            return target
        import torch
        from transformers import AutoModel, AutoTokenizer

        from fewlabel.indexing.hf import quiet_hf

        if show_progress and not os.environ.get("FEWLABEL_QUIET"):  # `fewlabel -q` sets it
            print(f"fewlabel: exporting {source} to ONNX in {target} (once)", file=sys.stderr)
        with quiet_hf():
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModel.from_pretrained(source, attn_implementation="eager").eval()
        sample = tokenizer(["a short text", "a somewhat longer text to give the batch some padding"],
                           padding=True, return_tensors="pt")
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
        axes = {n: {0: "batch", 1: "tokens"} for n in names}
        with atomic_directory(target) as tmp, torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's tracer warnings are about code paths it checked
            try:
                torch.onnx.export(_pooled_module(model), (), str(tmp / MODEL_FILE),
                                  kwargs={n: sample[n] for n in names}, input_names=names,
                                  output_names=["sentence_embedding"],
                                  dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
                                  opset_version=OPSET, dynamo=False)
            except Exception as exc:  # the exporter raises many kinds; one line says which model failed
                raise ModelError(f"cannot export model '{source}' to ONNX: {first_line(exc)}") from exc
            (tmp / "fewlabel_onnx.json").write_text(json.dumps(
                {"source": source, "weights": weights, "inputs": names, "opset": OPSET,
                 "export_version": EXPORT_VERSION}, indent=2))
    return target


def quantize_int8(fp32: Path, weights: str, recipe: dict | None = None, *, show_progress: bool = True,
                  quantizer: Callable[[Path, Path, dict, str], None] | None = None) -> Path:
    """The int8 model made from the fp32 export ``fp32`` by onnxruntime's dynamic quantizer with ``recipe``
    (op types, per-channel or not, reduced range, node names kept in fp32), made once and kept like the export.
    ``quantizer(source, out, recipe, model_source)`` replaces the dynamic quantizer: the benchmarks try other
    kinds of recipe this way (`fewlabel.benchmarks.int8_recipes`), and the product ships only the dynamic one."""
    recipe = recipe or INT8_RECIPE
    quantize = quantizer or quantize_dynamic_recipe
    target = export_folder(weights, "onnx-int8", recipe)
    if (target / MODEL_FILE).is_file():
        return target
    with folder_lock(target):
        if (target / MODEL_FILE).is_file():
            return target
        if show_progress:
            print(f"fewlabel: quantising the ONNX export to int8 in {target} (once)", file=sys.stderr)
        root = logging.getLogger()  # the quantizer logs a pre-processing hint on the root logger
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            with atomic_directory(target) as tmp:
                info = json.loads((fp32 / "fewlabel_onnx.json").read_text())
                quantize(fp32 / MODEL_FILE, tmp / MODEL_FILE, recipe, info["source"])
                (tmp / "fewlabel_onnx.json").write_text(json.dumps({**info, "int8": recipe}, indent=2))
        finally:
            root.setLevel(level)
    return target


def quantize_dynamic_recipe(source: Path, out: Path, recipe: dict, model_source: str = "") -> None:
    """onnxruntime's dynamic quantisation of ``source`` into ``out``: int8 weights, activations quantised per
    batch at run time (the shipped kind; see :data:`INT8_RECIPE`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8,
                     op_types_to_quantize=recipe["op_types"], per_channel=bool(recipe["per_channel"]),
                     reduce_range=bool(recipe["reduce_range"]),
                     nodes_to_exclude=excluded_nodes(source, recipe["exclude"]),
                     extra_options={"DefaultTensorType": 1})  # FLOAT, for fused ops' outputs


def excluded_nodes(path: Path, patterns: list[str]) -> list[str]:
    """Names of the graph's nodes that match any of ``patterns`` (kept in fp32)."""
    if not patterns:
        return []
    import re

    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [node.name for node in graph.node if any(re.search(p, node.name) for p in patterns)]


def ensure_export(source: str, weights: str, backend: str, *, recipe: dict | None = None,
                  show_progress: bool = True) -> Path:
    """The folder holding ``model.onnx`` for ``backend`` (``onnx`` or ``onnx-int8``), exporting it if needed."""
    fp32 = export_fp32(source, weights, show_progress=show_progress)
    if backend == "onnx":
        return fp32
    return quantize_int8(fp32, weights, recipe, show_progress=show_progress)


class OnnxRunner:
    """One onnxruntime session over an exported encoder: tokenised numpy batches in, pooled vectors out."""

    def __init__(self, folder: Path, *, threads: int | None = None, spin: bool = True) -> None:
        """``threads``: onnxruntime's intra-op threads (None: its default, one per physical core); ``spin=False``
        lets them sleep between calls instead of spinning (a server needs those cores for HTTP between batches)."""
        self.folder = folder
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError("the onnx backends need onnxruntime (a dependency of fewlabel): pip install onnxruntime "
                             "onnx, or use --backend torch") from exc
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a damaged file: onnxruntime's own error, in one line
            raise ModelError(f"cannot open the ONNX export {folder / MODEL_FILE}: {first_line(exc)} "
                             f"(delete {folder} to export again)") from exc
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch: dict):
        """The pooled (not normalised) float32 vectors of one tokenised batch."""
        import numpy as np

        feed = {name: np.asarray(batch[name], dtype=np.int64) for name in self.inputs}
        return self.session.run(None, feed)[0]
