"""FAISS index creation, written once for the label index and the scikit-learn style `KNNLabeler`: the factory
string is the one knob for the index type, cosine is the inner product of unit vectors, and FAISS's own errors
become one line that says what to change."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from fewlabel.indexing.errors import FewlabelError

__all__ = ["apply_search_params", "build_faiss_index", "make_faiss_index", "train_if_needed"]


def _last_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


def make_faiss_index(dim: int, factory: str):
    """An inner-product FAISS index of the given factory type (inner product on unit vectors is
    cosine). Types that learn (IVF, PQ) need enough vectors; say how many instead of crashing."""
    import faiss

    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise FewlabelError(f"FAISS factory '{factory}' is not valid for dimension {dim}: "
                            f"{_last_line(exc)}") from exc


def apply_search_params(index, search_params: str | None, factory: str) -> None:
    """Set FAISS search-time parameters such as ``efSearch=128`` (HNSW: more candidates, higher recall) or
    ``nprobe=16`` (IVF: more lists visited), in ``faiss.ParameterSpace`` syntax; comma-separated for several.
    FAISS writes them into ``index.faiss``; meta.json records them too and loading applies them again."""
    if not search_params:
        return
    import faiss

    try:
        faiss.ParameterSpace().set_index_parameters(index, search_params)
    except RuntimeError as exc:
        raise FewlabelError(f"FAISS search parameters '{search_params}' do not apply to a '{factory}' index: "
                            f"{_last_line(exc)}") from exc


@contextmanager
def native_stderr_silenced(silence: bool = True) -> Iterator[None]:
    """Send what C++ code prints on stderr (FAISS's clustering warnings: 32 lines for ``IVF256,PQ32`` on 300
    rows) to /dev/null inside the block, for ``-q``; Python's own stderr is flushed first and restored after."""
    if not silence:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def train_if_needed(index, vectors: np.ndarray, factory: str, *, quiet: bool = False) -> None:
    """Train an index type that learns (IVF, PQ) on the vectors it will hold; ``quiet`` hides FAISS's own
    warnings (too few training points), which the message below replaces when training fails."""
    if index.is_trained:
        return
    try:
        with native_stderr_silenced(quiet):
            index.train(vectors)
    except RuntimeError as exc:
        raise FewlabelError(f"FAISS index '{factory}' could not be trained on {len(vectors)} vectors "
                            f"(IVF needs at least as many vectors as lists, ideally 40x): "
                            f"{_last_line(exc)}") from exc


def build_faiss_index(vectors: np.ndarray, factory: str = "Flat", search_params: str | None = None, *,
                      quiet: bool = False):
    """A searchable index holding ``vectors`` (unit rows, float32): made, trained when the type learns, filled."""
    index = make_faiss_index(vectors.shape[1], factory)
    apply_search_params(index, search_params, factory)
    train_if_needed(index, vectors, factory, quiet=quiet)
    index.add(vectors)
    return index
