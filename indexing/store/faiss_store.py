"""The FAISS implementation of the vector store: one FAISS index, saved as ``index.faiss`` in the index folder.

Row positions are FAISS's sequential ids. Removing rows keeps them sequential: a flat index compacts itself
(``remove_ids`` shifts the later vectors up); other types (HNSW, IVF) cannot, so they are rebuilt from their own
stored vectors with the same factory (exact for HNSW and IVF-Flat; IVF-PQ keeps its compressed approximations)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fewlabel.indexing.errors import IndexMismatchError, InvalidArgumentError
from fewlabel.indexing.readers import Row
from fewlabel.indexing.store.faiss_factory import (
    apply_search_params,
    build_faiss_index,
    gpu_copy,
    read_faiss_index,
    resolve_faiss_device,
)

__all__ = ["INDEX_FILE", "FaissStore"]

INDEX_FILE = "index.faiss"


class FaissStore:
    """A FAISS index behind the :class:`~fewlabel.indexing.store.vector_store.VectorStore` interface."""

    kind = "faiss"

    def __init__(self, index, factory: str, search_params: str | None = None) -> None:
        self.index = index
        self.factory = factory
        self.search_params = search_params or None
        self.d = int(index.d)
        self.metric_type = index.metric_type  # KNNLabeler.from_index checks inner product
        self.device = "cpu"  # where search runs: use_device("cuda") searches a GPU copy
        self._strict_device = False
        self._gpu_index = None  # the GPU copy, made at the first search and dropped when the rows change

    @classmethod
    def build(cls, vectors: np.ndarray, factory: str = "Flat", search_params: str | None = None, *,
              quiet: bool = True) -> FaissStore:
        return cls(build_faiss_index(vectors, factory, search_params, quiet=quiet), factory, search_params)

    @classmethod
    def open(cls, folder: Path, meta: dict, *, mmap: bool = False) -> FaissStore:
        """``mmap``: map ``index.faiss`` rather than read it (see
        :func:`~fewlabel.indexing.store.faiss_factory.read_faiss_index`): for readers that never search."""
        path = Path(folder) / INDEX_FILE
        if not path.is_file():
            raise IndexMismatchError(f"{folder}: not a fewlabel index ({INDEX_FILE} is missing)")
        try:
            index = read_faiss_index(path, mmap=mmap)
        except RuntimeError as exc:
            raise IndexMismatchError(f"{path}: corrupt FAISS index") from exc
        settings = meta.get("faiss") or {}
        store = cls(index, settings.get("factory", "Flat"), settings.get("search_params"))
        apply_search_params(index, store.search_params, store.factory)
        return store

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def use_device(self, device: str | None) -> str:
        """Search on ``auto``, ``cpu`` or ``cuda`` (see
        :func:`~fewlabel.indexing.store.faiss_factory.resolve_faiss_device`); returns where search will run. cuda by
        name refuses an index type FAISS cannot put on a GPU (HNSW) here, before any model loads; auto keeps such
        a type on the CPU."""
        self.device = resolve_faiss_device(device)
        self._strict_device = (device or "auto").lower() == "cuda"
        self._gpu_index = None
        if self.device == "cuda":
            self._gpu_index = gpu_copy(self.index, self.factory, strict=self._strict_device)
            if self._gpu_index is None:
                self.device = "cpu"
        return self.device

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        index = self.index
        if self.device == "cuda":
            if self._gpu_index is None:  # the rows changed since the last copy
                self._gpu_index = gpu_copy(self.index, self.factory, strict=self._strict_device)
            index = self._gpu_index if self._gpu_index is not None else self.index
        sims, ids = index.search(np.ascontiguousarray(vectors, dtype=np.float32), int(k))
        return sims, ids.astype(np.int64, copy=False)

    def add(self, vectors: np.ndarray, rows: Sequence[Row]) -> None:
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self._gpu_index = None

    def remove(self, positions: Sequence[int]) -> None:
        import faiss

        drop = sorted({int(p) for p in positions})
        if not drop:
            return
        self._gpu_index = None
        if isinstance(self.index, faiss.IndexFlat):
            # compacts: later ids shift down. FAISS's stubs list only the IDSelector overload; its Python wrapper
            # takes an int64 array too
            self.index.remove_ids(np.asarray(drop, dtype=np.int64))  # type: ignore[arg-type]
            return
        vectors = self.vectors()
        keep = np.setdiff1d(np.arange(len(vectors)), drop)
        if not len(keep):
            raise InvalidArgumentError("cannot remove every row of an index")
        self.index = build_faiss_index(np.ascontiguousarray(vectors[keep]), self.factory, self.search_params,
                                       quiet=True)

    def vectors(self) -> np.ndarray:
        """Every stored vector in row order (IVF types need a direct map to give them back)."""
        import faiss

        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is not None:
            ivf.make_direct_map()
        try:
            return self.index.reconstruct_n(0, self.ntotal)
        except RuntimeError as exc:
            raise InvalidArgumentError(
                f"a FAISS '{self.factory}' index cannot give its vectors back, so rows cannot be "
                                "removed from it; rebuild the index without them") from exc

    def write(self, folder: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(Path(folder) / INDEX_FILE))

    def commit(self) -> None:
        """Nothing lives outside the folder."""

    def discard(self) -> None:
        """Nothing lives outside the folder."""

    def describe(self) -> dict:
        return {"kind": self.kind, "factory": self.factory, "metric": "inner_product", "ntotal": self.ntotal,
                "search_params": self.search_params, "device": self.device}
