"""The one small search/storage interface `LabelIndex` uses, so that where the vectors live (a FAISS file in the
index folder, or a Milvus collection) is the only thing that differs: the rows, the labels, the vote, the tuning
and the folder's checks stay the same.

A store holds vectors in *row order*: position i is row i of the index's ``rows.jsonl``. It answers
``search(queries, k)`` with (cosine similarities, row positions), the shape FAISS gives, so the kNN labeler votes
on a store exactly as on a FAISS index. Writes happen in two steps because a store may live outside the folder
(Milvus): :meth:`VectorStore.write` puts the store's own files in the new folder before it replaces the old one, and
:meth:`VectorStore.commit` runs after the folder is in place (Milvus applies deletions there, so that the collection
always holds at least the rows the folder names and a crash in between loses nothing)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from fewlabel.indexing.errors import InvalidArgumentError
from fewlabel.indexing.readers import Row

__all__ = ["STORES", "VectorStore", "create_store", "open_store", "release_replaced", "store_kind"]

STORES = ("faiss", "milvus")


@runtime_checkable
class VectorStore(Protocol):
    """Vectors of the index's rows, searched by inner product over unit vectors (= cosine)."""

    kind: str  # "faiss" or "milvus": what meta.json's "store" records
    d: int  # dimension

    @property
    def ntotal(self) -> int: ...

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, k) float32 similarities and (n, k) int64 row positions, best first; position -1 (and the lowest
        float) where fewer than k rows exist."""

    def add(self, vectors: np.ndarray, rows: Sequence[Row]) -> None:
        """Append the vectors of ``rows`` (their positions follow the existing ones)."""

    def remove(self, positions: Sequence[int]) -> None:
        """Drop the rows at ``positions``; the rows after them move up, as in the index's row list."""

    def write(self, folder: Path) -> None:
        """Put the store's own files (if any) in the index folder being written."""

    def commit(self) -> None:
        """The folder now names this store's state: finish what had to wait for it."""

    def describe(self) -> dict:
        """JSON-ready: what meta.json records under "store" (and what loading checks)."""

    def discard(self) -> None:
        """Forget a store that was never saved (a failed build): remove what it created outside the folder."""


def store_kind(meta: dict) -> str:
    """The store a meta.json names; indexes written before stores were pluggable are FAISS."""
    store = meta.get("store")
    kind = store.get("kind", "faiss") if isinstance(store, dict) else "faiss"
    if kind not in STORES:
        raise InvalidArgumentError(f"meta.json names an unknown vector store '{kind}' (known: {', '.join(STORES)})")
    return kind


def create_store(kind: str, vectors: np.ndarray, rows: Sequence[Row], *, factory: str = "Flat",
                 search_params: str | None = None, options: dict | None = None, quiet: bool = True) -> VectorStore:
    """A new store of ``kind`` holding ``vectors`` (the rows' unit vectors, in order). ``factory`` and
    ``search_params`` are FAISS's factory string and search parameters, or Milvus's index type and search
    parameters; ``options`` carries the rest (Milvus: ``uri``, ``collection``). ``quiet`` silences FAISS's native
    training chatter."""
    if kind == "faiss":
        from fewlabel.indexing.store.faiss_store import FaissStore

        return FaissStore.build(vectors, factory, search_params, quiet=quiet)
    if kind == "milvus":
        from fewlabel.indexing.store.milvus_store import MilvusStore

        return MilvusStore.build(vectors, rows, index_type=factory, search_params=search_params, **(options or {}))
    raise InvalidArgumentError(f"unknown vector store '{kind}' (known: {', '.join(STORES)})")


def open_store(meta: dict, folder: Path, rows: Sequence[Row], *, tidy: bool = True, mmap: bool = False) -> VectorStore:
    """The store a saved index folder names, opened and checked against the folder's rows. ``tidy``: the rows
    passed their own checks, so a Milvus collection may drop the rows a killed writer left in it. ``mmap``: a
    FAISS file is memory-mapped, not read (for readers that never search)."""
    if store_kind(meta) == "milvus":
        from fewlabel.indexing.store.milvus_store import MilvusStore

        return MilvusStore.open(meta["store"], rows, folder=folder, tidy=tidy)
    from fewlabel.indexing.store.faiss_store import FaissStore

    return FaissStore.open(folder, meta, mmap=mmap)


def release_replaced(replaced: dict | None, current: dict) -> None:
    """After an index folder was replaced: drop the Milvus collection the old folder used, unless the new one
    uses it too. Each build makes its own collection, so the old one belongs to nothing any more."""
    if not replaced or replaced.get("kind") != "milvus":
        return
    if (replaced.get("uri"), replaced.get("collection")) == (current.get("uri"), current.get("collection")):
        return
    from fewlabel.indexing.store.milvus_store import drop_collection

    drop_collection(replaced)
