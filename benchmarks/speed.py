"""Speed on CPU: encoder throughput against sentence-transformers, FAISS build and search time at
100,000 vectors, and peak memory. Writes `speed.md` and `speed.json`.

    python -m fewlabel.benchmarks.speed --data ../shared/data --out benchmarks/results

Why: fewlabel encodes with its own `Encoder` (plain transformers + mean pooling) rather than
sentence-transformers, and offers Flat and HNSW indexes; this shows what those choices cost or save
on an ordinary CPU, with the same inputs on both sides so the numbers are comparable.

1. Encoders: `Encoder.encode` vs `SentenceTransformer.encode` on the same model folder, the same
   GoEmotions train texts (the e5 prefix prepended for sentence-transformers, which `Encoder` adds
   itself), the same batch size, both normalising; one warm-up batch each, then one timed run each.
2. Indexes: real e5-small vectors of GoEmotions-ekman and NSMC texts (from the embedding cache, encoded
   on a miss; encoding time is not part of the measurement), the first `--n-vectors` distinct ones as
   the database and the next `--n-queries` as queries; build time, search time at k=10 (median of 3),
   serialised size, and HNSW recall@10 against Flat's exact neighbours.
3. Memory: RSS after loading each encoder and the process's peak RSS at the end."""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fewlabel.benchmarks.knn_quality import goemotions_splits, nsmc_splits
from fewlabel.benchmarks.report import markdown_table, write_report
from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path, encode_with_cache
from fewlabel.indexing.encoders.encoder import Encoder
from fewlabel.indexing.hf import quiet_hf
from fewlabel.indexing.store.faiss_index import make_faiss_index, train_if_needed

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model here is local: never wait on the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FACTORIES = ("Flat", "HNSW32")
K = 10
SEARCH_REPEATS = 3
INDEX_MODEL = "e5-small"  # part 2 always uses e5-small: it is the default and the multilingual model


def log(message: str) -> None:
    """Progress goes to stdout at once, so a long run shows where it is."""
    print(message, flush=True)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """Resident memory now, from /proc; the peak where /proc is missing (not Linux)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mib()


# ---- 1. encoder throughput ----------------------------------------------------------------------
def time_encoder(model: str, texts: list[str], batch_size: int) -> tuple[dict, Encoder]:
    """Sentences per second of ours and of sentence-transformers on identical input, and how far
    their vectors differ (they should agree to ~1e-5: same weights, same pooling)."""
    from sentence_transformers import SentenceTransformer

    rss_before = current_rss_mib()
    encoder = Encoder(model, device="cpu")
    rss_ours = current_rss_mib()
    log(f"[{model}] loaded ours from {encoder.location}; RSS {rss_ours:.0f} MiB")
    with quiet_hf():  # BERT's unused pooler is "missing" for ST too: don't print a report
        st_model = SentenceTransformer(encoder.location, device="cpu")
    rss_both = current_rss_mib()
    log(f"[{model}] loaded SentenceTransformer; RSS {rss_both:.0f} MiB")
    st_texts = [encoder.prefix + t for t in texts]  # Encoder adds the prefix itself; ST must be given it

    encoder.encode(texts[:batch_size], batch_size=batch_size, normalize=True)  # warm-up batch
    st_model.encode(st_texts[:batch_size], batch_size=batch_size, normalize_embeddings=True,
                    show_progress_bar=False)
    started = time.perf_counter()
    ours_vectors = encoder.encode(texts, batch_size=batch_size, normalize=True, show_progress_bar=False)
    ours_seconds = time.perf_counter() - started
    log(f"[{model}] ours: {len(texts)} texts in {ours_seconds:.1f} s ({len(texts) / ours_seconds:.1f} s/s)")
    started = time.perf_counter()
    theirs_vectors = st_model.encode(st_texts, batch_size=batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
    theirs_seconds = time.perf_counter() - started
    log(f"[{model}] SentenceTransformer: {len(texts)} texts in {theirs_seconds:.1f} s "
        f"({len(texts) / theirs_seconds:.1f} s/s)")
    max_diff = float(np.abs(ours_vectors - np.asarray(theirs_vectors, dtype=np.float32)).max())
    log(f"[{model}] max abs difference {max_diff:.2e}")
    del st_model
    gc.collect()
    result = {"model": model, "location": encoder.location, "prefix": encoder.prefix,
              "max_length": encoder.max_length, "n_texts": len(texts), "batch_size": batch_size,
              "ours_seconds": round(ours_seconds, 3), "theirs_seconds": round(theirs_seconds, 3),
              "ours_per_second": round(len(texts) / ours_seconds, 2),
              "theirs_per_second": round(len(texts) / theirs_seconds, 2),
              "ratio_ours_over_theirs": round(theirs_seconds / ours_seconds, 3),
              "max_abs_diff": max_diff,
              "rss_before_load_mib": round(rss_before, 1), "rss_after_loading_ours_mib": round(rss_ours, 1),
              "rss_after_loading_sentence_transformer_mib": round(rss_both, 1)}
    return result, encoder


# ---- 2. index build and search ------------------------------------------------------------------
def corpus_texts(data: Path) -> Iterator[str]:
    """GoEmotions-ekman train, dev, test then NSMC train, dev, test, each distinct non-empty text
    once, in that order (NSMC is read only if GoEmotions runs out)."""
    seen: set[str] = set()
    for loader in (goemotions_splits, nsmc_splits):
        for split in loader(data).values():
            for row in split:
                text = row.text
                if isinstance(text, str) and text.strip() and text not in seen:  # NSMC has empty documents
                    seen.add(text)
                    yield text


def distinct_vectors(encoder: Encoder, data: Path, need: int, cache: EmbeddingCache,
                     batch_size: int) -> np.ndarray:
    """Up to `need` distinct e5 vectors, taking texts in corpus order and only as many as needed
    (so a small run encodes a few thousand texts, not all of them)."""
    texts = corpus_texts(data)
    kept: list[np.ndarray] = []
    seen: set[bytes] = set()
    exhausted = False
    while len(kept) < need and not exhausted:
        chunk = []
        for text in texts:
            chunk.append(text)
            if len(chunk) >= need - len(kept):
                break
        else:
            exhausted = True
        if not chunk:
            break
        vectors = encode_with_cache(encoder, chunk, cache, batch_size=batch_size, show_progress_bar=True)
        for vector in vectors:
            key = vector.tobytes()
            if key not in seen:  # two texts can truncate to the same tokens, hence the same vector
                seen.add(key)
                kept.append(vector)
        log(f"vectors: {len(kept):,} distinct of {need:,} wanted (cache hits {cache.hits:,}, "
            f"misses {cache.misses:,})")
    return np.stack(kept).astype(np.float32) if kept else np.zeros((0, encoder.dim), dtype=np.float32)


def bench_index(factory: str, database: np.ndarray, queries: np.ndarray) -> tuple[dict, np.ndarray]:
    """Build time, median search time for all queries in one call, and serialised size."""
    import faiss

    started = time.perf_counter()
    index = make_faiss_index(database.shape[1], factory)
    train_if_needed(index, database, factory)
    index.add(database)
    build_seconds = time.perf_counter() - started
    log(f"[{factory}] built on {index.ntotal:,} vectors in {build_seconds:.2f} s")
    timings, ids = [], None
    for _ in range(SEARCH_REPEATS):
        started = time.perf_counter()
        _, ids = index.search(queries, K)
        timings.append(time.perf_counter() - started)
    median = statistics.median(timings)
    size_mb = len(faiss.serialize_index(index)) / 1e6
    log(f"[{factory}] search {len(queries):,} queries at k={K}: median {median * 1000:.1f} ms "
        f"(runs {', '.join(f'{t * 1000:.1f}' for t in timings)} ms); size {size_mb:.1f} MB")
    result = {"factory": factory, "vectors": int(index.ntotal), "dim": int(index.d), "queries": len(queries),
              "k": K, "build_seconds": round(build_seconds, 3),
              "search_seconds_runs": [round(t, 5) for t in timings], "search_seconds_median": round(median, 5),
              "ms_per_1000_queries": round(median * 1000 * 1000 / len(queries), 3), "size_mb": round(size_mb, 2)}
    hnsw = getattr(faiss.downcast_index(index), "hnsw", None)
    if hnsw is not None:
        result.update(ef_search=int(hnsw.efSearch), ef_construction=int(hnsw.efConstruction))
    return result, ids


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found top-k ∩ exact top-k| / k (-1 padding never counts)."""
    k = exact.shape[1]
    return float(np.mean([len(set(f[f >= 0]) & set(e[e >= 0])) / k for f, e in zip(found, exact, strict=True)]))


def bench_indexes(encoder: Encoder, data: Path, n_vectors: int, n_queries: int, cache: EmbeddingCache,
                  batch_size: int) -> dict:
    """Part 2: database and queries from real text vectors, then each factory in turn."""
    import faiss

    vectors = distinct_vectors(encoder, data, n_vectors + n_queries, cache, batch_size)
    note = None
    if len(vectors) < n_vectors + n_queries:
        n_queries_used = min(n_queries, len(vectors) // 2)
        n_vectors_used = len(vectors) - n_queries_used
        note = (f"only {len(vectors):,} distinct texts/vectors exist (wanted {n_vectors + n_queries:,}): "
                f"{n_vectors_used:,} database vectors and {n_queries_used:,} queries used")
        log(note)
    else:
        n_vectors_used, n_queries_used = n_vectors, n_queries
    database = np.ascontiguousarray(vectors[:n_vectors_used])
    queries = np.ascontiguousarray(vectors[n_vectors_used:n_vectors_used + n_queries_used])
    results, exact = [], None
    for factory in FACTORIES:
        result, ids = bench_index(factory, database, queries)
        if factory == "Flat":
            exact = ids
        elif exact is not None:
            result["recall_at_10"] = round(recall_at_k(ids, exact), 4)
            log(f"[{factory}] recall@{K} vs Flat {result['recall_at_10']:.4f}")
        results.append(result)
    return {"indexes": results, "n_vectors_requested": n_vectors, "n_queries_requested": n_queries,
            "n_vectors": n_vectors_used, "n_queries": n_queries_used, "shortfall": note,
            "faiss_version": faiss.__version__, "faiss_omp_threads": int(faiss.omp_get_max_threads()),
            "cache_hits": cache.hits, "cache_misses": cache.misses}


# ---- report -------------------------------------------------------------------------------------
def encoder_table(rows: list[dict]) -> str:
    headers = ["model", "ours (sentences/s)", "SentenceTransformer (sentences/s)", "ratio ours/theirs", "max abs diff"]
    return markdown_table(headers, [[r["model"], f"{r['ours_per_second']:.1f}", f"{r['theirs_per_second']:.1f}",
                                     f"{r['ratio_ours_over_theirs']:.2f}", f"{r['max_abs_diff']:.1e}"] for r in rows])


def index_table(rows: list[dict]) -> str:
    headers = ["factory", "vectors", "build (s)", "ms per 1,000 queries (k=10)", "recall@10 vs Flat", "size (MB)"]
    return markdown_table(headers, [
        [r["factory"], f"{r['vectors']:,}", f"{r['build_seconds']:.2f}", f"{r['ms_per_1000_queries']:.1f}",
         f"{r['recall_at_10']:.4f}" if "recall_at_10" in r else "1 (exact)", f"{r['size_mb']:.1f}"] for r in rows])


def memory_table(encoders: list[dict], peak: float) -> str:
    rows: list[list[object]] = []
    for r in encoders:
        ours, theirs = r["rss_after_loading_ours_mib"], r["rss_after_loading_sentence_transformer_mib"]
        rows.append([f"after loading {r['model']} (ours)", f"{ours:.0f}", f"+{ours - r['rss_before_load_mib']:.0f}"])
        rows.append([f"after also loading {r['model']} (SentenceTransformer)", f"{theirs:.0f}",
                     f"+{theirs - ours:.0f}"])
    rows.append(["peak of the whole run (ru_maxrss)", f"{peak:.0f}", ""])
    return markdown_table(["point", "RSS (MiB)", "increase (MiB)"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--n-texts", type=int, default=2000, help="GoEmotions train texts timed per encoder")
    parser.add_argument("--n-vectors", type=int, default=100_000, help="database size for the FAISS indexes")
    parser.add_argument("--n-queries", type=int, default=1000, help="query vectors searched against the database")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", default="minilm,e5-small")
    args = parser.parse_args()
    import faiss
    import torch

    data, models = Path(args.data), [m for m in args.models.split(",") if m]
    log(f"torch threads {torch.get_num_threads()}, faiss OpenMP threads {faiss.omp_get_max_threads()}; "
        f"start RSS {current_rss_mib():.0f} MiB")
    texts = [r.text for r in goemotions_splits(data)["train"][:args.n_texts]]
    encoders, loaded = [], {}
    for model in models:
        result, encoder = time_encoder(model, texts, args.batch_size)
        encoders.append(result)
        if model == INDEX_MODEL:
            loaded[model] = encoder
        del encoder
        gc.collect()
    index_encoder = loaded.get(INDEX_MODEL) or Encoder(INDEX_MODEL, device="cpu")
    cache = EmbeddingCache(default_cache_path())
    index_part = bench_indexes(index_encoder, data, args.n_vectors, args.n_queries, cache, args.batch_size)
    cache.close()
    peak = peak_rss_mib()
    log(f"peak RSS {peak:.0f} MiB")

    threads = (f"torch used {torch.get_num_threads()} threads; FAISS (OpenMP) "
               f"{index_part['faiss_omp_threads']} threads (faiss {index_part['faiss_version']}).")
    hnsw = next((r for r in index_part["indexes"] if "ef_search" in r), None)
    hnsw_note = (f" HNSW32 uses FAISS defaults (efConstruction {hnsw['ef_construction']}, "
                 f"efSearch {hnsw['ef_search']})." if hnsw else "")
    body = (
        "All on CPU. " + threads + "\n\n"
        "## Encoders\n\n"
        f"fewlabel's `Encoder.encode` against `SentenceTransformer(...).encode` loaded from the same model folder, "
        f"on the first {len(texts):,} GoEmotions-ekman train texts, batch size {args.batch_size}, both "
        "L2-normalising (for e5-small the `query: ` prefix is prepended for sentence-transformers, which "
        "`Encoder` adds itself, so both see identical input). One warm-up batch each, then one timed run "
        "each. Ratio > 1 means ours is faster. The max abs difference compares the two outputs "
        "element by element.\n\n" + encoder_table(encoders) + "\n\n"
        "## FAISS indexes\n\n"
        f"{index_part['n_vectors']:,} distinct e5-small vectors (GoEmotions-ekman train+dev+test, then NSMC "
        "10,000 train + 2,000 dev + 50,000 test, in that order) as the database, the next "
        f"{index_part['n_queries']:,} as queries; inner product on unit vectors (cosine). Build = "
        "index_factory + train (if needed) + add. Search = all queries in one call at k=10, median of "
        f"{SEARCH_REPEATS} runs, scaled to 1,000 queries. Recall@10 = mean share of Flat's exact top 10 "
        "that the index also returns. Size = bytes of `faiss.serialize_index` / 10^6." + hnsw_note + "\n"
        + (f"\n**Note:** {index_part['shortfall']}.\n" if index_part["shortfall"] else "")
        + "\n" + index_table(index_part["indexes"]) + "\n\n"
        "## Memory\n\n"
        "Resident set size (VmRSS) of the process after each model load, in the order loaded; it is cumulative "
        "(earlier models, freed memory the allocator keeps, libraries imported on first use), so the increase "
        "column is the better guide to one model's cost. Peak = `resource.getrusage(...).ru_maxrss` at the end, "
        "covering the models, the vectors and the indexes.\n\n"
        + memory_table(encoders, peak))
    payload = {"settings": {"n_texts": len(texts), "batch_size": args.batch_size, "models": models,
                            "index_model": INDEX_MODEL, "k": K, "search_repeats": SEARCH_REPEATS,
                            "torch_threads": torch.get_num_threads()},
               "encoders": encoders, **index_part, "peak_rss_mib": round(peak, 1)}
    path = write_report(Path(args.out), "speed", "Speed: encoders, FAISS indexes, memory (CPU)", body, payload,
                        data_note=f"{data} (goemotions/ekman, nsmc)")
    log(f"wrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
