"""`Encoder`: texts in, mean-pooled (optionally L2-normalised) sentence vectors out.

One entry point shaped like sentence-transformers' `encode`, over a plain transformers model, so
the same code serves the bundled models, a user's local folder and any Hugging Face id. Mean
pooling is taken over the attention mask only (padding never counts), batches are sorted by
length to waste little padding, and results come back in input order."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from fewlabel.indexing.encoders.pooling import mean_pool
from fewlabel.indexing.encoders.registry import DEFAULT_BACKEND, DEFAULT_MODEL, REGISTRY, registry_names
from fewlabel.indexing.errors import InvalidArgumentError, ModelError, first_line
from fewlabel.indexing.hf import pick_device, quiet_hf
from fewlabel.indexing.model_folder import refuse_unfinished

POOLING = "mean"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def transformer_folder(folder: Path) -> Path:
    """The sub-folder holding the transformer weights of a sentence-transformers folder (often the
    folder itself, sometimes `0_Transformer/`)."""
    modules = folder / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_text()):
            if module.get("type", "").endswith("models.Transformer"):
                return folder / module.get("path", "")
    return folder


def folder_settings(folder: Path) -> dict:
    """Encoder settings a folder carries: fewlabel's own file first, then sentence-transformers'."""
    own = folder / "fewlabel_encoder.json"
    if own.is_file():
        return json.loads(own.read_text())
    settings: dict = {}
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        max_len = json.loads(st_config.read_text()).get("max_seq_length")
        if max_len:
            settings["max_length"] = int(max_len)
    return settings


WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".onnx"}


def weights_digest(folder: Path) -> str:
    """sha256 over the names and contents of the weight files in ``folder``, remembered per (path, size,
    mtime) in ``$FEWLABEL_HOME/weights.json`` so an unchanged model is hashed once."""
    from fewlabel.indexing.files import fewlabel_home

    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    state = json.dumps([[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files])
    memo_path = fewlabel_home() / "weights.json"
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    key = hashlib.sha256(state.encode()).hexdigest()
    if isinstance(memo, dict) and isinstance(memo.get(key), str):
        return memo[key]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    value = digest.hexdigest()[:20]
    memo = {**(memo if isinstance(memo, dict) else {}), key: value}
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_name(f".weights.json.{os.getpid()}")
        tmp.write_text(json.dumps(memo), encoding="utf-8")
        tmp.replace(memo_path)
    except OSError:
        pass  # a read-only home only costs a re-hash next time
    return value


def location_weights(location: str) -> str:
    """A content hash of the weight files of a model folder (``hub:ID`` for a hub model). An index records it, so
    a model folder retrained in place after the index was built is refused instead of silently giving wrong
    labels. Hashing a few hundred MB takes about a second, so the result is kept per file state."""
    folder = Path(location)
    return weights_digest(transformer_folder(folder)) if folder.is_dir() else f"hub:{location}"


def model_weights(model: str) -> str:
    """:func:`location_weights` of a model name (registry name, folder or hub id) without loading it."""
    name = str(model)
    if name in REGISTRY:
        return location_weights(str(REGISTRY[name].locate()))
    return location_weights(Encoder._local_or_hub(name))


def resolve_backend(backend: str | None, device: str | None) -> tuple[str, str]:
    """(backend, device). None means :data:`DEFAULT_BACKEND` on the CPU and torch on a GPU (where torch is the
    fast one); the ONNX backends run on the CPU, so asking for them with a GPU device is refused."""
    from fewlabel.indexing.encoders.onnx_backend import check_backend

    if backend is not None:
        check_backend(backend)
    if backend in (None, "torch"):
        picked = pick_device(device)
        return (backend or (DEFAULT_BACKEND if picked == "cpu" else "torch")), picked
    if device and pick_device(device) != "cpu":
        raise InvalidArgumentError(f"backend {backend!r} runs on the CPU; use --backend torch for device {device!r}")
    return backend, "cpu"


class Encoder:
    """Mean-pooled transformer encoder.

    `model` is a registry name (`e5-small`, `minilm`), a local folder (a transformers or
    sentence-transformers folder) or a Hugging Face id (needs the hub). `prefix` and `max_length`
    default to the registry's or the folder's settings.

    `backend` runs the same weights with torch, with onnxruntime on an ONNX export (`onnx`: the same vectors,
    faster on a CPU) or on its int8 quantisation (`onnx-int8`: fastest, vectors of a slightly different
    encoder). None picks :data:`DEFAULT_BACKEND` on the CPU and torch on a GPU; the ONNX backends run on the CPU."""

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str | None = None,
                 max_length: int | None = None, prefix: str | None = None, backend: str | None = None) -> None:
        self.model_name = str(model)
        settings: dict = {}
        if self.model_name in REGISTRY:
            spec = REGISTRY[self.model_name]
            location: str = str(spec.locate())
            settings = {"prefix": spec.prefix, "max_length": spec.max_length}
        else:
            location = self._local_or_hub(self.model_name)
            if Path(location).is_dir():
                settings = folder_settings(Path(location))
                self.model_name = location  # absolute, so an index built here loads from any folder
        self.location = location
        self.prefix = prefix if prefix is not None else settings.get("prefix", "")
        self.backend, self.device = resolve_backend(backend, device)
        self._weights: str | None = None
        self.tokenizer, self.model, config = self._load(location)
        model_max = int(getattr(config, "max_position_embeddings", 512) or 512)
        self.max_length = int(max_length or settings.get("max_length") or min(model_max, 512))
        self.dim = int(config.hidden_size)

    @staticmethod
    def check_name(model: str) -> None:
        """Refuse a model name that can never load (a missing folder, a file, a folder with no config.json)
        without loading anything, so a typo costs nothing."""
        if str(model) not in REGISTRY:
            Encoder._local_or_hub(str(model))

    @staticmethod
    def _local_or_hub(model: str) -> str:
        path = Path(model).expanduser()
        if path.is_dir():
            if not (transformer_folder(path) / "config.json").is_file():
                raise ModelError(f"model folder '{model}' has no config.json: not a transformers or "
                                 "sentence-transformers model folder")
            refuse_unfinished(path, model)
            return str(path.resolve())
        if path.exists():
            raise ModelError(f"model '{model}' is a file; expected a model folder, a registry name "
                             f"({', '.join(registry_names())}) or a Hugging Face id")
        looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model
        if looks_like_path or not _HUB_ID.match(model):
            raise ModelError(f"model folder '{model}' does not exist (registry names: "
                             f"{', '.join(registry_names())})")
        return model

    def _load(self, location: str):
        """Tokenizer, model and config. The ONNX backends load no torch model: an onnxruntime session over the
        export (made on first use, see onnx_backend) stands in its place."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        folder = transformer_folder(Path(location)) if Path(location).is_dir() else None
        source = str(folder) if folder else location
        with quiet_hf():  # an encoder never uses BERT's pooler: don't warn it is missing; no sub-second load bar
            try:
                tokenizer = AutoTokenizer.from_pretrained(source)
                if self.backend == "torch":
                    model = AutoModel.from_pretrained(source).to(self.device).eval()
                    return tokenizer, model, model.config
                config = AutoConfig.from_pretrained(source)
            except Exception as exc:  # transformers raises OSError, ValueError, HTTP errors…
                where = "local folder" if folder else "Hugging Face id (needs the hub or its local cache)"
                raise ModelError(f"cannot load model '{self.model_name}' as a {where}: {first_line(exc)}") from exc
        from fewlabel.indexing.encoders.onnx_backend import OnnxRunner, ensure_export

        return tokenizer, OnnxRunner(ensure_export(source, self.weights_fingerprint(), self.backend)), config

    def describe(self, normalize: bool = True) -> dict:
        """What an index must record to be searched with the same vectors later."""
        from fewlabel.indexing.encoders.onnx_backend import recipe_id

        return {"model": self.model_name, "location": self.location, "prefix": self.prefix,
                "pooling": POOLING, "normalize": normalize, "dim": self.dim, "max_length": self.max_length,
                "backend": self.backend, **({"int8_recipe": recipe_id()} if self.backend == "onnx-int8" else {})}

    def fingerprint(self, normalize: bool = True) -> str:
        """Identity of the vectors this encoder makes: settings plus the weights' files, so an
        embedding cache never mixes two models (or a model before and after fine-tuning).

        torch and onnx share one key (their vectors agree to cosine >= 0.9999, so either may reuse the other's);
        onnx-int8 vectors are those of a different encoder and get their own key, recipe included."""
        parts = {k: v for k, v in self.describe(normalize).items() if k not in ("location", "backend", "int8_recipe")}
        if self.backend == "onnx-int8":
            parts["backend"] = [self.backend, self.describe(normalize)["int8_recipe"]]
        folder = Path(self.location)
        if folder.is_dir():
            weights = transformer_folder(folder)
            parts["files"] = sorted(
                (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weights.iterdir()
                if p.suffix in {".safetensors", ".bin", ".json"} and p.is_file())
        else:
            parts["hub"] = self.location
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def weights_fingerprint(self) -> str:
        """Identity of the weights themselves (see :func:`location_weights`)."""
        if self._weights is None:
            self._weights = location_weights(self.location)
        return self._weights

    def encode(self, texts: list[str] | str, batch_size: int = 32, normalize: bool = True,
               show_progress_bar: bool = False) -> np.ndarray:
        """Embed `texts` as a float32 array (n, dim), rows in input order.

        Texts are sorted by length so each batch pads little; the prefix is added here so callers
        never forget it."""
        from tqdm.auto import tqdm

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgumentError(f"batch size must be an integer >= 1, got {batch_size!r}")
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        if not items:
            return out
        order = np.argsort([-len(t) for t in items], kind="stable")
        starts = range(0, len(items), batch_size)
        # no bar object at all without the bar: tqdm takes a process-wide lock even when disabled, on every
        # request a server encodes
        for start in tqdm(starts, desc="encoding", unit="batch") if show_progress_bar else starts:
            idx = order[start:start + batch_size]
            out[idx] = self._encode_batch([self.prefix + items[i] for i in idx], normalize)
        return out[0] if single else out

    def _encode_batch(self, texts: list[str], normalize: bool) -> np.ndarray:
        """Pooled (and normalised) vectors of one batch, by the torch model or the ONNX session."""
        if self.backend != "torch":
            batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="np")
            pooled = np.asarray(self.model(batch), dtype=np.float32)
            if normalize:  # as torch.nn.functional.normalize: divide by max(norm, 1e-12)
                pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            return pooled
        import torch

        with torch.inference_mode():
            batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt").to(self.device)
            vectors = mean_pool(self.model(**batch).last_hidden_state, batch["attention_mask"])
            if normalize:
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
            return vectors.float().cpu().numpy()
