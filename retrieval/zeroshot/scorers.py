"""Zero-shot labelling: no labelled examples, only label names.

Two scorers with one shape (``scores``, ``select``, ``predict``, ``describe``):

- :class:`NLIZeroShot` (route ``zeroshot-nli``): every candidate label becomes a hypothesis through a
  template ("This example is about {}." / "이 글은 {}에 관한 내용이다."), and an NLI cross-encoder reads
  each (text, hypothesis) pair. Multi-label: per label, the softmax over the entailment and contradiction
  logits only (neutral is ignored), so each label is judged on its own. Single-label: the softmax over the
  labels' entailment logits, so the labels compete. Any NLI checkpoint works (a folder from
  ``fewlabel finetune nli``, a downloaded one, a hub id such as ``facebook/bart-large-mnli``): the entailment
  and contradiction positions are read from the checkpoint's ``id2label``, never assumed.
- :class:`EmbeddingZeroShot` (route ``zeroshot-embed``): the cosine between the text and each label's
  templated description, both embedded by an :class:`~fewlabel.indexing.Encoder`. Single-label: softmax of
  cosine / temperature. Multi-label: the cosine itself, for a threshold. No training, and with the index's
  own encoder the query vectors of a kNN search are reused.

A label may have several names (aliases): ``joy=joy|happiness|delight``. Each name gets its own hypothesis
(or description) and the label's score aggregates them (``max`` by default, or ``mean``). A template
holds ``{}`` or ``{label}`` where the name goes; without one, a name containing Hangul gets the Korean
template and any other name the English one.

Which labels are chosen: ``top_k`` (the k best), ``threshold`` (every label scoring at least T), or both
(the k best among those scoring at least T). Defaults: the single best label when single-label; for
multi-label NLI the labels with entailment-vs-contradiction probability >= 0.5; for multi-label
embeddings, which have no calibrated scale, the single best label unless a (cosine) threshold is given.

Labels and templates live in :mod:`.labels`; the maths, as plain numpy functions, in :mod:`.scoring`."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import softmax as scipy_softmax

from fewlabel.indexing.encoders.cache import EmbeddingCache, encode_with_cache
from fewlabel.indexing.encoders.encoder import Encoder, transformer_folder
from fewlabel.indexing.encoders.registry import DEFAULT_MODEL, REGISTRY, registry_names
from fewlabel.indexing.errors import InvalidArgumentError, ModelError
from fewlabel.indexing.hf import load_cross_encoder
from fewlabel.indexing.model_folder import read_marker
from fewlabel.retrieval.zeroshot.labels import TEMPLATES, LabelSet, check_template, hypotheses, parse_labels
from fewlabel.retrieval.zeroshot.probabilities import (
    AGGREGATES,
    aggregate_by_label,
    multi_label_nli_scores,
    nli_label_indices,
    select_labels,
    single_label_nli_scores,
)

if TYPE_CHECKING:
    from fewlabel.indexing.store.label_index import IndexEncoder

__all__ = ["EMBED", "ROUTE_EMBED", "ROUTE_NLI", "EmbeddingZeroShot", "NLIZeroShot", "load_zero_shot",
           "model_choices", "resolve_nli_model"]

ROUTE_NLI, ROUTE_EMBED = "zeroshot-nli", "zeroshot-embed"
EMBED = "embed"  # the model name that asks for embedding zero-shot instead of an NLI checkpoint
DEFAULT_NLI_THRESHOLD = 0.5
DEFAULT_TEMPERATURE = 0.05
_TEXTS_PER_CHUNK_PAIRS = 4096  # pairs handed to the cross-encoder at once (bounds memory for long inputs)


def _check_selection(top_k: int | None, threshold: float | None, aggregate: str) -> None:
    if top_k is not None and (isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1):
        raise InvalidArgumentError(f"top_k must be an integer >= 1, got {top_k!r}")
    if threshold is not None and not np.isfinite(float(threshold)):
        raise InvalidArgumentError(f"threshold must be a number, got {threshold!r}")
    if aggregate not in AGGREGATES:
        raise InvalidArgumentError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")


class _ZeroShotBase:
    """What both scorers share: the label set, the template and the selection rule."""

    kind = ""
    route = ""
    _default_threshold: float | None = None

    def __init__(self, *, labels, template, multi_label, top_k, threshold, aggregate, batch_size,
                 show_progress) -> None:
        _check_selection(top_k, threshold, aggregate)
        self.labels = parse_labels(labels) if labels is not None else None
        self.template = check_template(template)
        self.multi_label = bool(multi_label)
        self.top_k = None if top_k is None else int(top_k)
        self.threshold = None if threshold is None else float(threshold)
        self.aggregate = aggregate
        self.batch_size = int(batch_size)
        self.show_progress = show_progress

    def _labels(self, labels) -> LabelSet:
        if labels is not None:
            return parse_labels(labels)
        if self.labels is None:
            raise InvalidArgumentError("no candidate labels: pass labels=… to the zero-shot scorer or to this call")
        return self.labels

    def selection(self) -> tuple[int | None, float | None]:
        """The (top_k, threshold) actually applied, defaults filled in."""
        if self.top_k is None and self.threshold is None:
            if self.multi_label and self._default_threshold is not None:
                return None, self._default_threshold
            return 1, None
        return self.top_k, self.threshold

    def select(self, scores: np.ndarray) -> np.ndarray:
        return select_labels(scores, *self.selection())

    def predict(self, texts: Sequence[str], labels=None) -> list[tuple[str, ...]]:
        """Chosen label names per text, in label order."""
        label_set = self._labels(labels)
        chosen = self.select(self.scores(texts, label_set))
        return [tuple(label_set.names[j] for j in np.flatnonzero(row)) for row in chosen]

    def predict_proba(self, texts: Sequence[str], labels=None) -> np.ndarray:
        return self.scores(texts, labels)

    def scores(self, texts: Sequence[str], labels=None) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _describe_common(self) -> dict:
        top_k, threshold = self.selection()
        return {"kind": self.kind, "route": self.route, "multi_label": self.multi_label,
                "template": self.template or {"auto": TEMPLATES}, "aggregate": self.aggregate,
                "top_k": top_k, "threshold": threshold,
                "labels": self.labels.to_dict() if self.labels is not None else None}


# ---- NLI ----------------------------------------------------------------------------------------------------
def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


def resolve_nli_model(model: str | os.PathLike) -> tuple[str, dict, bool]:
    """(location, config as a dict, is_local) of an NLI checkpoint; clear errors for anything else."""
    name = str(model)
    if name in REGISTRY:
        raise ModelError(f"'{name}' is an encoder, not an NLI checkpoint: use the embedding zero-shot "
                         f"(model 'embed' with encoder '{name}') or train an NLI head with "
                         f"`fewlabel finetune nli --base {name}`")
    path = Path(name).expanduser()
    if path.is_dir():
        config_path = transformer_folder(path) / "config.json"
        if not config_path.is_file():
            raise ModelError(f"NLI model folder '{name}' has no config.json: not a transformers model folder")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"{config_path}: cannot read ({exc})") from exc
        return str(path.resolve()), config, True
    if path.exists():
        raise ModelError(f"NLI model '{name}' is a file; expected a model folder or a Hugging Face id")
    if _looks_like_path(name) or not re.match(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$", name):
        raise ModelError(f"NLI model folder '{name}' does not exist (give a folder from `fewlabel finetune nli`, "
                         "a downloaded NLI checkpoint, a Hugging Face id, or 'embed')")
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name).to_dict()
    except Exception as exc:  # OSError, ValueError, HTTP errors …
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"unknown NLI model '{name}': not a local folder, and as a Hugging Face id it cannot be "
                         f"loaded (needs the hub or its local cache): {first}") from exc
    return name, config, False


class NLIZeroShot(_ZeroShotBase):
    """Zero-shot labels from an NLI cross-encoder; see the module docstring for the maths.

        zs = NLIZeroShot("my-nli", labels="sports,politics=politics|government", multi_label=True)
        zs.scores(["The match went to extra time."])      # (1, 2) probabilities
        zs.predict(["The match went to extra time."])     # [("sports",)]

    ``model``: a folder, a hub id, a loaded ``CrossEncoder``, or another NLIZeroShot (its weights are shared)."""

    kind, route = "nli", ROUTE_NLI
    _default_threshold = DEFAULT_NLI_THRESHOLD
    cross_encoder: Any  # a sentence-transformers CrossEncoder, or any object with its predict and num_labels
    location: str
    info: dict

    def __init__(self, model, *, labels=None, template: str | None = None, multi_label: bool = False,
                 top_k: int | None = None, threshold: float | None = None, aggregate: str = "max",
                 batch_size: int = 32, max_length: int | None = None, device: str | None = None,
                 show_progress: bool = False) -> None:
        super().__init__(labels=labels, template=template, multi_label=multi_label, top_k=top_k, threshold=threshold,
                         aggregate=aggregate, batch_size=batch_size, show_progress=show_progress)
        if isinstance(model, NLIZeroShot):  # share an already loaded checkpoint (other labels or settings)
            self.cross_encoder, self.location, self.info = model.cross_encoder, model.location, model.info
        elif hasattr(model, "predict") and hasattr(model, "num_labels"):  # a loaded sentence-transformers CrossEncoder
            self.cross_encoder, self.location, self.info = model, type(model).__name__, {}
        else:
            self.location, config, local = resolve_nli_model(model)
            # checked before the weights load, so a wrong checkpoint fails fast
            nli_label_indices(config.get("id2label") or {}, source=f"NLI model '{model}'")
            self.info = (read_marker(self.location) or {}) if local else {}
            self.cross_encoder = self._load(self.location, local, device, max_length or self.info.get("max_length"))
        self.label_map = nli_label_indices(self.cross_encoder.config.id2label, source=f"NLI model '{self.location}'")
        n_classes = int(self.cross_encoder.num_labels)
        if n_classes < 2 or max(self.label_map.id2label) >= n_classes:
            raise ModelError(f"NLI model '{self.location}' has {n_classes} output(s) but its id2label names "
                             f"{len(self.label_map.id2label)} classes")

    @staticmethod
    def _load(location: str, local: bool, device: str | None, max_length: int | None):
        return load_cross_encoder(location, what="NLI model", device=device, max_length=max_length,
                                  local_files_only=local)

    def logits(self, texts: Sequence[str], hypothesis_texts: Sequence[str]) -> np.ndarray:
        """Raw (n_texts, n_hypotheses, n_classes) logits of every premise x hypothesis pair, scored in
        batches (the cross-encoder sorts each chunk by length), with a progress bar over the texts."""
        import torch
        from tqdm.auto import tqdm

        texts, hyps = list(texts), list(hypothesis_texts)
        n_classes = int(self.cross_encoder.num_labels)
        out = np.zeros((len(texts), len(hyps), n_classes), dtype=np.float32)
        if not texts or not hyps:
            return out
        per_chunk = max(1, _TEXTS_PER_CHUNK_PAIRS // len(hyps))
        with tqdm(total=len(texts), desc="zero-shot (NLI)", unit="text", disable=not self.show_progress) as bar:
            for start in range(0, len(texts), per_chunk):
                chunk = texts[start:start + per_chunk]
                pairs = [(t, h) for t in chunk for h in hyps]
                scores = self.cross_encoder.predict(pairs, batch_size=self.batch_size, show_progress_bar=False,
                                                    activation_fn=torch.nn.Identity(), convert_to_numpy=True)
                out[start:start + len(chunk)] = np.asarray(scores, dtype=np.float32).reshape(len(chunk), len(hyps),
                                                                                             n_classes)
                bar.update(len(chunk))
        return out

    def scores(self, texts: Sequence[str], labels=None) -> np.ndarray:
        """(n, L) label scores: independent probabilities (multi-label) or a distribution (single-label)."""
        label_set = self._labels(labels)
        hyp_texts, groups = hypotheses(label_set, self.template)
        logits = self.logits(texts, hyp_texts)
        if not len(logits):
            return np.zeros((0, len(label_set)), dtype=np.float64)
        if self.multi_label:
            return multi_label_nli_scores(logits, groups, len(label_set), self.label_map.entailment,
                                          self.label_map.contradiction, self.aggregate)
        return single_label_nli_scores(logits, groups, len(label_set), self.label_map.entailment, self.aggregate)

    def describe(self) -> dict:
        return {**self._describe_common(), "model": self.location,
                "entailment": self.label_map.entailment, "contradiction": self.label_map.contradiction,
                "id2label": {str(k): v for k, v in self.label_map.id2label.items()},
                "max_length": self.cross_encoder.max_seq_length, "base": self.info.get("base")}


# ---- embeddings ---------------------------------------------------------------------------------------------
class EmbeddingZeroShot(_ZeroShotBase):
    """Zero-shot labels from the cosine between a text and each label's templated description.

    Single-label scores are ``softmax(cosine / temperature)``; multi-label scores are the cosines, chosen by a
    threshold (or top_k). ``scores(texts, vectors=…)`` reuses query vectors that were already computed by
    the same encoder (normalised, as the kNN index uses them)."""

    kind, route = "embed", ROUTE_EMBED

    def __init__(self, encoder: IndexEncoder | str = DEFAULT_MODEL, *, labels=None, template: str | None = None,
                 multi_label: bool = False, temperature: float = DEFAULT_TEMPERATURE, top_k: int | None = None,
                 threshold: float | None = None, aggregate: str = "max", batch_size: int = 32,
                 cache: EmbeddingCache | None = None, device: str | None = None, show_progress: bool = False) -> None:
        super().__init__(labels=labels, template=template, multi_label=multi_label, top_k=top_k, threshold=threshold,
                         aggregate=aggregate, batch_size=batch_size, show_progress=show_progress)
        if not temperature > 0:
            raise InvalidArgumentError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)
        if isinstance(encoder, (str, os.PathLike)):
            if str(encoder) == EMBED:
                encoder = DEFAULT_MODEL
            encoder = Encoder(str(encoder), device=device)
        if not (hasattr(encoder, "encode") and hasattr(encoder, "describe")):
            raise InvalidArgumentError(f"EmbeddingZeroShot needs an encoder name, folder or Encoder, not "
                                f"{type(encoder).__name__}")
        self.encoder = encoder
        self.cache = cache
        self._label_vectors: dict[tuple, np.ndarray] = {}

    def label_vectors(self, label_set: LabelSet) -> tuple[np.ndarray, np.ndarray]:
        """Normalised vectors of every (label, alias) description and the label index of each."""
        texts, groups = hypotheses(label_set, self.template)
        key = tuple(texts)
        if key not in self._label_vectors:
            self._label_vectors[key] = encode_with_cache(self.encoder, texts, self.cache, batch_size=self.batch_size,
                                                         normalize=True)
        return self._label_vectors[key], groups

    def similarity(self, texts: Sequence[str], labels=None, vectors: np.ndarray | None = None) -> np.ndarray:
        """(n, L) cosine of each text with each label's description (aggregated over aliases)."""
        label_set = self._labels(labels)
        label_vecs, groups = self.label_vectors(label_set)
        if vectors is None:
            vectors = encode_with_cache(self.encoder, list(texts), self.cache, batch_size=self.batch_size,
                                        normalize=True, show_progress_bar=self.show_progress)
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(vectors) != len(texts):
            raise InvalidArgumentError(f"{len(texts)} texts but {len(vectors)} vectors")
        if not len(vectors):
            return np.zeros((0, len(label_set)), dtype=np.float64)
        return aggregate_by_label(vectors @ label_vecs.T, groups, len(label_set), self.aggregate)

    def scores(self, texts: Sequence[str], labels=None, vectors: np.ndarray | None = None) -> np.ndarray:
        sim = self.similarity(texts, labels, vectors)
        if self.multi_label:
            return sim
        return scipy_softmax(np.asarray(sim, dtype=np.float64) / self.temperature, axis=-1) if len(sim) else sim

    def describe(self) -> dict:
        return {**self._describe_common(), "model": EMBED, "encoder": self.encoder.describe(normalize=True),
                "temperature": self.temperature,
                "scores": "cosine" if self.multi_label else "softmax(cosine / temperature)"}


def load_zero_shot(model: str, *, encoder: Encoder | str | None = None, **settings) -> NLIZeroShot | EmbeddingZeroShot:
    """``embed`` (embedding zero-shot with ``encoder``, default e5-small) or an NLI checkpoint (a folder or a
    hub id). ``temperature``, ``cache`` apply to embeddings, ``max_length`` to NLI; the rest to both."""
    if not model or not str(model).strip():
        raise ModelError("no zero-shot model given: use 'embed' or an NLI checkpoint (folder or hub id)")
    if str(model) == EMBED:
        settings.pop("max_length", None)
        return EmbeddingZeroShot(encoder if encoder is not None else DEFAULT_MODEL, **settings)
    settings.pop("temperature", None)
    settings.pop("cache", None)
    return NLIZeroShot(model, **settings)


def model_choices() -> str:
    return f"an NLI folder or Hugging Face id, or '{EMBED}' (encoders: {', '.join(registry_names())})"
