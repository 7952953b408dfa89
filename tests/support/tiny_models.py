"""Tiny randomly initialised BERT folders over minilm's tokenizer (one layer, width 16): they load, score and
train a step in about a second, so the paths that train or load a model (STS heads, resuming, the cross-encoder's
scale) get fast tests. What they check is the plumbing (files, markers, scale, resume), never what a model learns:
that stays with the slow tests on real models."""

from __future__ import annotations

from pathlib import Path


def tiny_bert(folder: Path, *, num_labels: int | None = None, seed: int = 0) -> Path:
    """A BERT folder: a plain encoder (``num_labels`` None) or a sequence classifier with ``num_labels`` outputs.
    Its weights are drawn wide (initializer_range 0.5) so that outputs differ between texts and orders."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    from fewlabel.indexing.encoders.registry import REGISTRY

    tokenizer = AutoTokenizer.from_pretrained(REGISTRY["minilm"].locate())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, initializer_range=0.5,
                        num_labels=num_labels or 1)
    torch.manual_seed(seed)
    model = BertModel(config) if num_labels is None else BertForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)
