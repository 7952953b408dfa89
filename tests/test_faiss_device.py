"""Where FAISS searches (--faiss-device auto|cpu|cuda) and how `index info` opens an index (memory-mapped).

The GPU path itself runs only where faiss-gpu sees a CUDA device (test_gpu_search_matches_cpu); everywhere else
the wiring is checked with FAISS's GPU cloner stood in by a CPU clone that counts its calls, and the refusal of
cuda without a GPU is checked through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fewlabel.indexing.errors import FewlabelError
from fewlabel.indexing.readers import Row
from fewlabel.indexing.store.faiss_factory import faiss_gpus, read_faiss_index, resolve_faiss_device
from fewlabel.indexing.store.faiss_store import FaissStore
from fewlabel.retrieval.cli import main

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"
no_gpu = faiss_gpus() == 0


def unit_vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def fake_gpu(monkeypatch):
    """FAISS that claims one GPU and "copies" an index to it as a CPU clone; HNSW is refused, as on a GPU."""
    import faiss

    copies = []

    def to_gpus(index, co=None, ngpu=-1):
        if isinstance(faiss.downcast_index(index), faiss.IndexHNSW):
            raise RuntimeError("Error in faiss::Index* faiss::gpu::ToGpuCloner::clone_Index at x.cpp:1: "
                               "This index type is not implemented on GPU.")
        copy = faiss.clone_index(index)
        copies.append(copy)
        return copy

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", to_gpus)
    monkeypatch.setattr(faiss, "GpuMultipleClonerOptions", lambda: type("Options", (), {})(), raising=False)
    return copies


@pytest.mark.skipif(not no_gpu, reason="FAISS sees a GPU here")
def test_cuda_without_a_gpu_is_one_line_exit_2(tmp_path, capsys):
    code = main(["predict", str(tmp_path / "no-index"), str(DEMO / "nsmc_test.tsv"), "--out",
                 str(tmp_path / "p.csv"), "--faiss-device", "cuda"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "--faiss-device cuda" in err and "no GPU" in err, err
    assert not (tmp_path / "p.csv").exists()
    with pytest.raises(FewlabelError, match="sees no GPU"):
        resolve_faiss_device("cuda")
    assert resolve_faiss_device("auto") == "cpu" and resolve_faiss_device("cpu") == "cpu"


def test_auto_searches_a_gpu_copy_and_keeps_the_cpu_index(fake_gpu, tmp_path):
    import faiss

    vectors = unit_vectors(300)
    store = FaissStore.build(vectors, "IVF8,Flat", "nprobe=8")
    assert store.use_device("auto") == "cuda" and len(fake_gpu) == 1
    sims, ids = store.search(vectors[:5], 3)
    assert list(ids[:, 0]) == [0, 1, 2, 3, 4]
    store.add(unit_vectors(10, seed=1), [Row(text="t", labels=("a",), id=str(i), line=i) for i in range(10)])
    assert store.search(unit_vectors(10, seed=1)[:1], 1)[1][0, 0] == 300  # the copy was made again, with the row
    assert len(fake_gpu) == 2 and fake_gpu[-1].ntotal == 310
    store.remove([0])
    store.search(vectors[:1], 1)
    assert len(fake_gpu) == 3 and fake_gpu[-1].ntotal == 309
    store.write(tmp_path)  # the file is the CPU index
    assert isinstance(faiss.downcast_index(faiss.read_index(str(tmp_path / "index.faiss"))), faiss.IndexIVFFlat)
    assert store.use_device("cpu") == "cpu"
    store.search(vectors[:1], 1)
    assert len(fake_gpu) == 3


def test_hnsw_stays_on_the_cpu_with_auto_and_is_refused_with_cuda(fake_gpu):
    store = FaissStore.build(unit_vectors(200), "HNSW16")
    assert store.use_device("auto") == "cpu"
    assert store.search(unit_vectors(200)[:2], 1)[1][:, 0].tolist() == [0, 1]
    with pytest.raises(FewlabelError, match="cannot be searched on the GPU.*--faiss-device cpu"):
        store.use_device("cuda")


def test_predict_on_the_gpu_copy_labels_as_on_the_cpu(fake_gpu, tmp_path, capsys):
    columns = ["--text-col", "text", "--label-col", "labels", "--label-sep", ","]
    index = tmp_path / "idx"
    assert main(["-q", "index", "build", str(DEMO / "goemotions_ekman_train.tsv"), *columns, "--model", "minilm",
                 "--method", "knn", "--faiss-device", "cpu", "--out", str(index)]) == 0
    assert not fake_gpu
    for device in ("cuda", "cpu"):
        assert main(["-q", "predict", str(index), str(DEMO / "goemotions_ekman_test.tsv"), "--text-col", "text",
                     "--faiss-device", device, "--out", str(tmp_path / f"{device}.csv")]) == 0
    assert len(fake_gpu) == 1
    assert (tmp_path / "cuda.csv").read_bytes() == (tmp_path / "cpu.csv").read_bytes()


@pytest.mark.skipif(no_gpu, reason="needs faiss-gpu and a CUDA device (not run on the machine that wrote this)")
@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat"])
def test_gpu_search_matches_cpu(factory, tmp_path):
    import faiss

    vectors = unit_vectors(2000, dim=64)
    cpu = FaissStore.build(vectors, factory, "nprobe=16" if "IVF" in factory else None)
    gpu = FaissStore.build(vectors, factory, "nprobe=16" if "IVF" in factory else None)
    assert gpu.use_device("cuda") == "cuda"
    queries = unit_vectors(50, dim=64, seed=3)
    (s_cpu, i_cpu), (s_gpu, i_gpu) = cpu.search(queries, 10), gpu.search(queries, 10)
    assert (i_cpu[:, 0] == i_gpu[:, 0]).mean() >= 0.98 and np.allclose(s_cpu, s_gpu, atol=1e-4)
    gpu.write(tmp_path)
    assert "Gpu" not in type(faiss.read_index(str(tmp_path / "index.faiss"))).__name__


# ---- index info: the vectors stay on disk ----------------------------------------------------------------------
def _mapped(path: Path) -> bool:
    """Whether this process has ``path`` memory-mapped (its vectors stay in the file, paged in on demand).
    Asked of /proc/self/maps rather than measured as resident memory: freed memory that the allocator keeps
    makes RSS growth an unreliable witness."""
    return str(path) in Path("/proc/self/maps").read_text()


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat"])
def test_mmap_read_leaves_the_vectors_on_disk(factory, tmp_path):
    import shutil

    import faiss

    vectors = unit_vectors(60_000, dim=384)  # 88 MiB of vectors
    index = FaissStore.build(vectors, factory).index
    faiss.write_index(index, str(tmp_path / "index.faiss"))
    shutil.copy(tmp_path / "index.faiss", tmp_path / "read.faiss")
    del index, vectors
    mapped = read_faiss_index(tmp_path / "index.faiss", mmap=True)
    assert mapped.ntotal == 60_000 and mapped.d == 384
    assert _mapped(tmp_path / "index.faiss")  # the vectors are read from the file, not copied into memory
    read = read_faiss_index(tmp_path / "read.faiss")
    assert not _mapped(tmp_path / "read.faiss")  # a plain read copies them (the witness can tell both apart)
    query = unit_vectors(3, dim=384, seed=9)
    assert (mapped.search(query, 5)[1] == read.search(query, 5)[1]).all()  # a mapped index still searches


def test_index_info_opens_the_index_memory_mapped(tmp_path, monkeypatch, capsys):
    import faiss

    columns = ["--text-col", "text", "--label-col", "labels", "--label-sep", ","]
    index = tmp_path / "idx"
    assert main(["-q", "index", "build", str(DEMO / "goemotions_ekman_train.tsv"), *columns, "--model", "minilm",
                 "--method", "knn", "--factory", "HNSW16", "--out", str(index)]) == 0
    flags = []
    real = faiss.read_index
    monkeypatch.setattr(faiss, "read_index", lambda path, flag=0: flags.append(flag) or real(path, flag))
    assert main(["index", "info", str(index)]) == 0
    assert flags == [faiss.IO_FLAG_MMAP_IFC]
    assert "HNSW16, 800 vectors" in capsys.readouterr().out
