"""The vectors of an unlabelled pool, cached as one matrix per (encoder, pool).

The embedding cache (`fewlabel.indexing.encoders.cache`) already spares re-encoding, but reading 100,000
vectors back from SQLite one key at a time, after loading the encoder to learn its fingerprint, takes longer
than the 5 s a second `suggest` may take. So the pool's matrix is also kept whole, as a ``.npy`` file named by
the index's encoder record (model, weights, prefix, backend: what makes two vectors comparable) and the
pool's texts: a second `suggest` on the same pool maps that file and never loads the encoder."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from fewlabel.indexing.files import atomic_file, fewlabel_home

__all__ = ["pool_cache_dir", "pool_key", "pool_vectors"]


def pool_cache_dir() -> Path:
    return fewlabel_home() / "cache" / "pools"


def pool_key(encoder_record: dict, texts: Sequence[str]) -> str:
    """Names the matrix: the encoder record without where the model lies on disk, and every text in order."""
    digest = hashlib.sha256(json.dumps({k: v for k, v in encoder_record.items() if k != "location"},
                                       sort_keys=True, default=str).encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def pool_vectors(encoder_record: dict, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray], *,
                 cache: bool = True, folder: Path | None = None) -> tuple[np.ndarray, bool]:
    """(vectors (n, D) float32, read from the pool cache). ``encode`` (only called on a miss) encodes texts
    with the index's encoder, through the embedding cache; ``cache`` False neither reads nor writes the file."""
    texts = list(texts)
    path = (folder or pool_cache_dir()) / f"{pool_key(encoder_record, texts)}.npy"
    if cache and path.is_file():
        try:
            vectors = np.load(path, mmap_mode="r", allow_pickle=False)
            if vectors.shape == (len(texts), int(encoder_record.get("dim", vectors.shape[1]))):
                return vectors, True
        except (OSError, ValueError):
            pass  # a damaged file is rebuilt below
    vectors = np.ascontiguousarray(encode(texts), dtype=np.float32)
    if cache:
        with atomic_file(path) as fh:  # written whole or not at all; atomic_file opens text, so write bytes
            fh.flush()
            np.save(fh.buffer, vectors, allow_pickle=False)
    return vectors, False
