"""Label descriptions as vectors: what the zero-shot and label-prior methods compare texts with.

An index may describe its labels in words (`index build --label-names 'pos=긍정적인 리뷰|좋은 영화,neg=…'`).
Each description is put in the zero-shot template ("This example is about {}." / "이 글은 {}에 관한 내용이다.",
or the index's own) and embedded by the index's encoder, so descriptions and rows live in one space; a label's
similarity to a text is the best over its descriptions (aliases), as in `fewlabel zeroshot --model embed`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fewlabel.indexing.encoders.cache import EmbeddingCache, encode_with_cache
from fewlabel.retrieval.zeroshot.labels import LabelSet, check_template, hypotheses, parse_labels
from fewlabel.retrieval.zeroshot.probabilities import aggregate_by_label

if TYPE_CHECKING:
    from fewlabel.indexing.store.label_index import IndexEncoder

__all__ = ["LabelDescriptions", "describe_labels", "embed_descriptions"]


@dataclass(frozen=True)
class LabelDescriptions:
    """Unit vectors of every (label, description) pair, the label column of each, and the label names."""

    vectors: np.ndarray  # (A, D)
    groups: np.ndarray  # (A,) label column of each description
    labels: list[str]

    def similarity(self, vectors: np.ndarray) -> np.ndarray:
        """(n, L) cosine of each (unit) query vector with each label: its best description."""
        if not len(vectors):
            return np.zeros((0, len(self.labels)), dtype=np.float64)
        sims = np.asarray(vectors, dtype=np.float64) @ np.asarray(self.vectors, dtype=np.float64).T
        return aggregate_by_label(sims, self.groups, len(self.labels), "max")


def describe_labels(labels: LabelSet | str | Sequence[str] | Mapping[str, str | Sequence[str]],
                    template: str | None = None) -> dict:
    """The descriptions an index keeps (``LabelIndex.build(…, descriptions=…)``, `build_index`) from the
    zero-shot syntax: ``"pos=긍정적인 리뷰|좋은 영화,neg=부정적인 리뷰"``, a list, or ``{label: [texts]}``.

        index = build_index(rows, encoder, descriptions=describe_labels("pos=good film,neg=bad film"))"""
    label_set = parse_labels(labels)
    return {"labels": {name: list(label_set.aliases[name]) for name in label_set.names},
            "template": check_template(template)}


def embed_descriptions(described: Mapping[str, Sequence[str]], template: str | None, encoder: IndexEncoder,
                       cache: EmbeddingCache | None = None) -> LabelDescriptions:
    """Embed ``{label: [description, …]}`` (label order kept) with ``template`` (None: by script)."""
    label_set = LabelSet(tuple(described), {name: tuple(texts) for name, texts in described.items()})
    texts, groups = hypotheses(label_set, template)
    vectors = encode_with_cache(encoder, texts, cache, normalize=True)
    return LabelDescriptions(np.asarray(vectors, dtype=np.float32), np.asarray(groups), list(label_set.names))
