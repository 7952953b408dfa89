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

from fewlabel.indexing.errors import InvalidArgumentError, SetupError

__all__ = ["FAISS_DEVICES", "apply_search_params", "build_faiss_index", "check_factory", "faiss_gpus", "gpu_copy",
           "make_faiss_index", "read_faiss_index", "resolve_faiss_device", "train_if_needed"]

FAISS_DEVICES = ("auto", "cpu", "cuda")


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
        raise InvalidArgumentError("the FAISS factory is empty; use Flat, HNSW32, IVF256,Flat …")
    try:
        probe = faiss.index_factory(_PROBE_DIM, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise InvalidArgumentError(f"FAISS factory '{factory}' is not valid: {_last_line(exc)}") from exc
    apply_search_params(probe, search_params, factory)
    lists = [int(n) for n in _IVF.findall(factory)]
    if lists and n_vectors < max(lists):
        raise InvalidArgumentError(
            f"FAISS factory '{factory}' needs at least {max(lists):,} vectors to train its lists "
                            f"(ideally 40x as many), and there are {n_vectors:,}; use fewer lists or Flat")
    codes = [2 ** int(bits or 8) for _, bits in _PQ.findall(factory)]
    if codes and n_vectors < max(codes):
        raise InvalidArgumentError(
            f"FAISS factory '{factory}' needs at least {max(codes):,} vectors to train its product "
                            f"quantizer, and there are {n_vectors:,}; use fewer bits (e.g. PQ8x4) or Flat")


def make_faiss_index(dim: int, factory: str):
    """An inner-product FAISS index of the given factory type (inner product on unit vectors is
    cosine). Types that learn (IVF, PQ) need enough vectors; say how many instead of crashing."""
    import faiss

    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise InvalidArgumentError(f"FAISS factory '{factory}' is not valid for dimension {dim}: "
                            f"{_last_line(exc)}") from exc


def apply_search_params(index, search_params: str | None, factory: str) -> None:
    """Set FAISS search-time parameters such as ``efSearch=128`` (HNSW: more candidates, higher recall) or
    ``nprobe=16`` (IVF: more lists visited), in ``faiss.ParameterSpace`` syntax; comma-separated for several.
    FAISS writes them into ``index.faiss``; meta.json records them too and loading applies them again."""
    if not search_params:
        return
    import faiss

    try:
        # FAISS's SWIG stubs list only the (index, name, float) overload; the string form is the documented one
        faiss.ParameterSpace().set_index_parameters(index, search_params)  # type: ignore[arg-type]
    except RuntimeError as exc:
        raise InvalidArgumentError(f"FAISS search parameters '{search_params}' do not apply to a '{factory}' index: "
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
        raise InvalidArgumentError(f"FAISS index '{factory}' could not be trained on {len(vectors)} vectors "
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


# ---- reading, and searching on a GPU ----------------------------------------------------------------------------
def read_faiss_index(path, *, mmap: bool = False):
    """Read ``index.faiss``. ``mmap``: map the file instead of reading it, so the vectors stay on disk until
    something touches them (`index info` never does: opening a million-vector index costs next to nothing)."""
    import faiss

    # IO_FLAG_MMAP_IFC maps the codes of flat, HNSW and IVF indexes alike (IO_FLAG_MMAP maps only IVF lists)
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)


def faiss_gpus() -> int:
    """CUDA devices this FAISS can use: 0 with faiss-cpu, or with faiss-gpu on a machine without a GPU."""
    import faiss

    try:
        return int(faiss.get_num_gpus())
    except (AttributeError, RuntimeError):
        return 0


def resolve_faiss_device(device: str | None) -> str:
    """``cpu`` or ``cuda`` for ``--faiss-device auto|cpu|cuda``: auto is cuda when FAISS sees a GPU. Asking for
    cuda where FAISS has none is refused (one line, before any model loads), never quietly run on the CPU."""
    device = (device or "auto").lower()
    if device not in FAISS_DEVICES:
        raise InvalidArgumentError(f"--faiss-device must be one of {', '.join(FAISS_DEVICES)}, got {device!r}")
    if device == "cpu":
        return "cpu"
    gpus = faiss_gpus()
    if device == "cuda" and not gpus:
        raise SetupError("--faiss-device cuda: this FAISS sees no GPU (faiss-cpu is installed, or no CUDA device "
                            "is visible); install the gpu extra on a CUDA machine, or use --faiss-device cpu")
    return "cuda" if gpus else "cpu"


def gpu_copy(index, factory: str, *, strict: bool):
    """A copy of the CPU ``index`` on every visible GPU (sharded when there are several), for search only: the
    index on disk stays a CPU index, and adding or removing rows happens on the CPU copy. FAISS has GPU
    versions of Flat, IVF-Flat, IVF-PQ and IVF-SQ but not of HNSW; for such a type ``strict`` (cuda asked for by
    name) refuses, otherwise (auto) None is returned and search stays on the CPU. IVF's nprobe travels with
    the copy."""
    import faiss

    try:
        options = faiss.GpuMultipleClonerOptions()
        options.shard = True  # several GPUs each hold a part (one GPU: a plain GPU index)
        return faiss.index_cpu_to_all_gpus(index, co=options)
    except (RuntimeError, AttributeError) as exc:
        if strict:
            raise InvalidArgumentError(
                f"a FAISS '{factory}' index cannot be searched on the GPU ({_last_line(exc)}); use "
                                "--faiss-device cpu, or a type FAISS has on GPUs (Flat, IVF…,Flat, IVF…,PQ…)") from exc
        return None
