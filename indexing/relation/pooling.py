"""Entity-start pooling for relation classifiers: the vector of the first token, the subject's opening marker
and the object's opening marker, concatenated (Baldini Soares et al., 2019, "entity start"; Zhou and Chen,
2021, use the same for typed markers).

A relation is a property of the *pair* of mentions, and the opening markers are where the encoder has looked
at each mention with its context; the [CLS] vector alone has to learn to carry both. The pooling is a
sentence-transformers ``Module``, so a relation classifier built with it is an ordinary modular
``CrossEncoder``: ``Transformer`` (token vectors) -> :class:`EntityStartPooling` -> ``Dense`` (labels,
``module_output_name="scores"``), trained by ``CrossEncoderTrainer`` and saved and loaded by
sentence-transformers itself.

The markers are found by token id: the first token in the sequence whose id is in the subject's (object's)
id set. The rendering puts the marked sentence first, so the first ``@`` (``[E1]``) is the subject's opening
marker unless the sentence itself holds that character before the mention; a marker cut off by truncation
falls back to the first token's vector. It lives in ``indexing`` because both training (``finetune``) and
prediction (``retrieval``) load it."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from sentence_transformers.base.modules.module import Module
from torch import Tensor

__all__ = ["EntityStartPooling", "POOLING_CLASS", "LEGACY_POOLING_CLASSES", "legacy_module_names",
           "marker_token_ids"]


class EntityStartPooling(Module):
    """``token_embeddings`` -> ``sentence_embedding`` = [first token; subject start; object start]."""

    config_keys: list[str] = ["subject_token_ids", "object_token_ids", "embedding_dimension", "include_first"]

    def __init__(self, subject_token_ids: Sequence[int], object_token_ids: Sequence[int], embedding_dimension: int,
                 include_first: bool = True) -> None:
        super().__init__()
        if not subject_token_ids or not object_token_ids:
            raise ValueError("entity-start pooling needs the token ids of both opening markers")
        self.subject_token_ids = [int(i) for i in subject_token_ids]
        self.object_token_ids = [int(i) for i in object_token_ids]
        self.embedding_dimension = int(embedding_dimension)
        self.include_first = bool(include_first)

    def forward(self, features: dict[str, Tensor], **kwargs) -> dict[str, Tensor]:
        tokens, ids = features["token_embeddings"], features["input_ids"]
        rows = torch.arange(tokens.shape[0], device=tokens.device)

        def first_of(token_ids: list[int]) -> Tensor:
            hit = torch.isin(ids, torch.tensor(token_ids, device=ids.device))
            return tokens[rows, hit.int().argmax(dim=1)]  # no hit: argmax is 0, the first token

        parts = ([tokens[:, 0]] if self.include_first else []) + [first_of(self.subject_token_ids),
                                                                  first_of(self.object_token_ids)]
        features["sentence_embedding"] = torch.cat(parts, dim=-1)
        return features

    def get_sentence_embedding_dimension(self) -> int:
        return self.embedding_dimension * (3 if self.include_first else 2)

    def get_embedding_dimension(self) -> int:
        return self.get_sentence_embedding_dimension()

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)

    @classmethod
    def load(cls, model_name_or_path: str = "", subfolder: str = "", token: bool | str | None = None,
             cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False,
             init_defaults: dict[str, Any] | None = None, **kwargs) -> EntityStartPooling:
        # init_defaults (the base class's signature) is not used: the saved config holds every key this module needs
        config = cls.load_config(model_name_or_path=model_name_or_path, subfolder=subfolder, token=token,
                                 cache_folder=cache_folder, revision=revision, local_files_only=local_files_only)
        return cls(**{key: value for key, value in config.items() if key in cls.config_keys})


def marker_token_ids(tokenizer, marker_text: str) -> list[int]:
    """Every id a tokenizer gives an opening marker (``@``, ``#``, ``[E1]``): alone, after a space and after a
    word, since SentencePiece tokenizers spell a word-initial ``@`` as ``▁@``. Only single-token spellings
    count; a marker the tokenizer splits cannot be pooled and is an error."""
    found: set[int] = set()
    for text in (marker_text, f" {marker_text} ", f"a {marker_text} b"):
        for token in tokenizer.tokenize(text):
            if token.replace("▁", "").replace("Ġ", "") == marker_text:
                found.add(int(tokenizer.convert_tokens_to_ids(token)))
    if not found:
        raise ValueError(f"the tokenizer has no single token for the marker {marker_text!r}")
    return sorted(found)


#: The ``modules.json`` type of an entity-start folder saved by this version.
POOLING_CLASS = f"{EntityStartPooling.__module__}.{EntityStartPooling.__qualname__}"
#: Types that folders saved before fewlabel became one namespace (``fewlabel.indexing``) recorded.
LEGACY_POOLING_CLASSES = ("indexing.entity_pooling.EntityStartPooling",)


@contextmanager
def legacy_module_names() -> Iterator[None]:
    """While loading, let an old folder's ``modules.json`` type (``indexing.entity_pooling.EntityStartPooling``)
    resolve to this module. sentence-transformers imports a module type by its dotted path, which finds an entry
    of ``sys.modules`` without importing its parent package, so no bare ``indexing`` package is ever loaded; the
    entry is removed again afterwards."""
    added = []
    for dotted in LEGACY_POOLING_CLASSES:
        module_name = dotted.rpartition(".")[0]
        if module_name not in sys.modules:
            sys.modules[module_name] = sys.modules[__name__]
            added.append(module_name)
    try:
        yield
    finally:
        for module_name in added:
            sys.modules.pop(module_name, None)
