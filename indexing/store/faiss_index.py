"""FAISS index creation, written once for the label index and the scikit-learn style `KNNLabeler`: the factory
string is the one knob for the index type, cosine is the inner product of unit vectors, and FAISS's own errors
become one line that says what to change."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from fewlabel.indexing.errors import FewlabelError

__all__ = ["apply_search_params", "build_faiss_index", "check_factory", "make_faiss_index", "train_if_needed"]


def _last_line(exc: BaseException) -> str:
    """FAISS's reason without its C++ location ("Error in … at index_factory.cpp:1228: could not parse …")."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return re.sub(r"^Error in .*? at \S+:\d+: (Error: )?", "", text.splitlines()[-1])


_IVF = re.compile(r"IVF(\d+)")
_PQ = re.compile(r"PQ(\d+)(?:x(\d+))?")
_PROBE_DIM = 3840  # divisible by every usual PQ / OPQ sub-quantizer count: a syntax check that ignores the dimension


def check_factory(factory: str, n_vectors: int, search_params: str | None = None) -> None:
    """Refuse a factory string FAISS cannot parse, search parameters that do not apply to it, or a type that
    cannot be trained on ``n_vectors`` (IVF needs a vector per list; PQ 2**bits per code) — all before any
    model loads or text is encoded. (A dimension a PQ does not divide is only found once the model is known.)"""
    import faiss

    if not isinstance(factory, str) or not factory.strip():
        raise FewlabelError("the FAISS factory is empty; use Flat, HNSW32, IVF256,Flat …")
    try:
        probe = faiss.index_factory(_PROBE_DIM, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise FewlabelError(f"FAISS factory '{factory}' is not valid: {_last_line(exc)}") from exc
    apply_search_params(probe, search_params, factory)
    lists = [int(n) for n in _IVF.findall(factory)]
    if lists and n_vectors < max(lists):
        raise FewlabelError(f"FAISS factory '{factory}' needs at least {max(lists):,} vectors to train its lists "
                            f"(ideally 40x as many), and there are {n_vectors:,}; use fewer lists or Flat")
    codes = [2 ** int(bits or 8) for _, bits in _PQ.findall(factory)]
    if codes and n_vectors < max(codes):
        raise FewlabelError(f"FAISS factory '{factory}' needs at least {max(codes):,} vectors to train its product "
                            f"quantizer, and there are {n_vectors:,}; use fewer bits (e.g. PQ8x4) or Flat")


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
