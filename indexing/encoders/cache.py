"""A disk cache of sentence vectors keyed by (encoder fingerprint, text hash).

Why: tuning k and m, rebuilding an index with another FAISS type, or adding rows to an index all
meet texts the same model has already encoded; on a CPU encoding is the slow part, so it is done
once. SQLite (standard library) gives a single file that tolerates interrupted writes."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from fewlabel.indexing.files import fewlabel_home


class SupportsEncode(Protocol):
    dim: int

    def fingerprint(self, normalize: bool = True) -> str: ...

    def encode(self, texts: list[str], batch_size: int = 32, normalize: bool = True,
               show_progress_bar: bool = False) -> np.ndarray: ...


def default_cache_path() -> Path:
    return fewlabel_home() / "cache" / "embeddings.sqlite"


class EmbeddingCache:
    """Vectors by key in one SQLite file; `None` as the path keeps them in memory only."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path) if self.path else ":memory:")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
        self.hits = self.misses = 0

    @staticmethod
    def key(model_fingerprint: str, text: str) -> str:
        return hashlib.sha256(f"{model_fingerprint}\0{text}".encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 900):  # SQLite's bound-parameter limit
            chunk = list(keys[start:start + 900])
            marks = ",".join("?" * len(chunk))
            for key, blob in self._db.execute(f"SELECT key, vec FROM vectors WHERE key IN ({marks})", chunk):
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        rows = [(k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in zip(keys, vectors, strict=True)]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO vectors (key, vec) VALUES (?, ?)", rows)

    def close(self) -> None:
        self._db.close()


def encode_with_cache(encoder: SupportsEncode, texts: Sequence[str], cache: EmbeddingCache | None, *,
                      batch_size: int = 32, normalize: bool = True,
                      show_progress_bar: bool = False) -> np.ndarray:
    """`encoder.encode(texts)`, but only texts the cache has not seen with this encoder are encoded
    (each distinct text once); the new vectors are stored for next time."""
    texts = list(texts)
    if cache is None:
        return encoder.encode(texts, batch_size=batch_size, normalize=normalize,
                              show_progress_bar=show_progress_bar)
    fingerprint = encoder.fingerprint(normalize)
    keys = [EmbeddingCache.key(fingerprint, t) for t in texts]
    found = {key: vec for key, vec in cache.get_many(list(dict.fromkeys(keys))).items()
             if usable_vector(vec, encoder.dim, normalize)}  # a damaged entry is encoded again
    missing = list(dict.fromkeys(k for k in keys if k not in found))
    cache.hits += len(texts) - sum(1 for k in keys if k in missing)
    cache.misses += len(missing)
    if missing:
        text_of = dict(zip(keys, texts, strict=True))
        fresh = encoder.encode([text_of[k] for k in missing], batch_size=batch_size, normalize=normalize,
                               show_progress_bar=show_progress_bar)
        good = [i for i, vec in enumerate(fresh) if usable_vector(vec, encoder.dim, normalize)]
        cache.put_many([missing[i] for i in good], fresh[good])  # only sound vectors are ever stored
        found.update(zip(missing, fresh, strict=True))
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    for row, key in enumerate(keys):
        out[row] = found[key]
    return out


def usable_vector(vec: np.ndarray, dim: int, normalize: bool) -> bool:
    """A vector fit to cache or to reuse: the encoder's dimension, finite, and of unit length when normalised
    (an all-zero vector from a broken run would otherwise poison every later run that reads it)."""
    if vec.shape != (dim,) or not np.isfinite(vec).all():
        return False
    return not normalize or abs(float(np.linalg.norm(vec)) - 1.0) < 1e-3
