"""A small deterministic encoder for tests of what is stored, not of what a model learnt: character n-gram
counts hashed into 64 columns by scikit-learn's HashingVectorizer, L2-normalised. It loads in no time, so the
index-folder tests (and their mutation runs) need no model; texts that share n-grams get close vectors, so a
search still finds the row it should."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer


class HashingEncoder:
    """Implements fewlabel's SupportsEncode (dim, fingerprint, encode) and describe(), like Encoder."""

    def __init__(self, dim: int = 64, model: str = "hashing-ngrams") -> None:
        self.dim, self.model_name = dim, model
        self._vectorizer = HashingVectorizer(n_features=dim, analyzer="char_wb", ngram_range=(2, 3),
                                             alternate_sign=False, norm=None)

    def describe(self, normalize: bool = True) -> dict:
        return {"model": self.model_name, "location": None, "prefix": "", "pooling": "ngram-hash",
                "normalize": normalize, "dim": self.dim, "max_length": None, "backend": "torch"}

    def fingerprint(self, normalize: bool = True) -> str:
        return f"{self.model_name}-{self.dim}-{normalize}"

    def encode(self, texts: list[str], batch_size: int = 32, normalize: bool = True,
               show_progress_bar: bool = False) -> np.ndarray:
        vectors = self._vectorizer.transform(list(texts)).toarray().astype(np.float32) + 1e-3
        if normalize:
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors
