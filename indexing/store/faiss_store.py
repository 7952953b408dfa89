"""The FAISS implementation of the vector store: one FAISS index, saved as ``index.faiss`` in the index folder.

Row positions are FAISS's sequential ids. Removing rows keeps them sequential: a flat index compacts itself
(``remove_ids`` shifts the later vectors up); other types (HNSW, IVF) cannot, so they are rebuilt from their own
stored vectors with the same factory (exact for HNSW and IVF-Flat; IVF-PQ keeps its compressed approximations)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fewlabel.indexing.errors import FewlabelError, IndexMismatchError
from fewlabel.indexing.readers import Row
from fewlabel.indexing.store.faiss_index import apply_search_params, build_faiss_index

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

    @classmethod
    def build(cls, vectors: np.ndarray, factory: str = "Flat", search_params: str | None = None, *,
              quiet: bool = True) -> FaissStore:
        return cls(build_faiss_index(vectors, factory, search_params, quiet=quiet), factory, search_params)

    @classmethod
    def open(cls, folder: Path, meta: dict) -> FaissStore:
        import faiss

        path = Path(folder) / INDEX_FILE
        if not path.is_file():
            raise IndexMismatchError(f"{folder}: not a fewlabel index ({INDEX_FILE} is missing)")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise IndexMismatchError(f"{path}: corrupt FAISS index") from exc
        settings = meta.get("faiss") or {}
        store = cls(index, settings.get("factory", "Flat"), settings.get("search_params"))
        apply_search_params(index, store.search_params, store.factory)
        return store

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims, ids = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), int(k))
        return sims, ids.astype(np.int64, copy=False)

    def add(self, vectors: np.ndarray, rows: Sequence[Row]) -> None:
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def remove(self, positions: Sequence[int]) -> None:
        import faiss

        drop = sorted({int(p) for p in positions})
        if not drop:
            return
        if isinstance(self.index, faiss.IndexFlat):
            self.index.remove_ids(np.asarray(drop, dtype=np.int64))  # compacts: later ids shift down
            return
        vectors = self.vectors()
        keep = np.setdiff1d(np.arange(len(vectors)), drop)
        if not len(keep):
            raise FewlabelError("cannot remove every row of an index")
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
            raise FewlabelError(f"a FAISS '{self.factory}' index cannot give its vectors back, so rows cannot be "
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
                "search_params": self.search_params}
