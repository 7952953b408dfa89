"""A fine-tuned text classifier (body + sequence-classification head) called like every fewlabel labeller:
``predict_proba(texts)`` gives (n, L) probabilities in label order.

It lives in `indexing` rather than next to its trainer in `finetune` because an index folder may store one
(``index build --method finetune``) and `retrieval` (the router), which may not import `finetune`, loads and
calls it. Training stays in :mod:`fewlabel.finetune.classify.transformer`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fewlabel.indexing.hf import quiet_hf

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["TextClassifier", "decide"]


def decide(probs: np.ndarray, multi_label: bool, threshold: float | np.ndarray | None = None) -> np.ndarray:
    """(n, L) booleans from probabilities. Multi-label: every label at or over its threshold (``threshold`` is
    one number for all labels or one per label; 0.5 when None). Single-label: the most probable label, so
    every text gets one, as the kNN majority does. The one decision rule of every method and trained head."""
    probs = np.asarray(probs, dtype=np.float64)
    if multi_label:
        cut = np.broadcast_to(np.asarray(0.5 if threshold is None else threshold, dtype=np.float64), probs.shape[1:])
        return probs >= cut[None, :]
    out = np.zeros(probs.shape, dtype=bool)
    if probs.size:
        out[np.arange(len(probs)), probs.argmax(axis=1)] = True
    return out


@dataclass
class TextClassifier:
    """A fine-tuned body + head: ``predict_proba`` gives (n, L) probabilities in ``labels`` order
    (independent sigmoids for multi-label, a softmax otherwise)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    labels: list[str]
    multi_label: bool
    prefix: str = ""
    max_length: int = 128
    info: dict | None = None

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch

        self.model.eval()
        out = []
        order = np.argsort([len(t) for t in texts])  # similar lengths together: less padding
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start:start + batch_size]
                batch = self.tokenizer([self.prefix + texts[i] for i in idx], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt").to(self.model.device)
                logits = self.model(**batch).logits.float()
                out.append((torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)).cpu().numpy())
        probs = np.concatenate(out) if out else np.zeros((0, len(self.labels)), dtype=np.float32)
        result = np.empty_like(probs)
        result[order] = probs
        return result

    def predict(self, texts: Sequence[str], threshold: float = 0.5, batch_size: int = 64) -> np.ndarray:
        """(n, L) booleans: labels at or over ``threshold`` (multi-label) or the top label (single-label)."""
        return decide(self.predict_proba(texts, batch_size=batch_size), self.multi_label, threshold)

    def save(self, folder: str | Path) -> Path:
        """A folder transformers loads (``id2label`` in ``config.json`` is the label order)."""
        folder = Path(folder)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, multi_label: bool, prefix: str = "", max_length: int = 128,
             device: str = "cpu") -> TextClassifier:
        """A folder written by :meth:`save`; the label order is ``id2label`` of its ``config.json``."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        with quiet_hf():
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
            model = AutoModelForSequenceClassification.from_pretrained(str(folder)).to(device)
        id2label = model.config.id2label
        labels = [id2label[i] for i in range(len(id2label))]
        return cls(model=model, tokenizer=tokenizer, labels=labels, multi_label=multi_label, prefix=prefix,
                   max_length=max_length)
