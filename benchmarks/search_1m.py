"""One machine, one million vectors: FAISS index types compared on 2 CPU cores. Writes `search_1m.md` and
`search_1m.json`.

    flock /tmp/fewlabel-heavy.lock nice -n 5 python -m fewlabel.benchmarks.search_1m encode \\
        --data ../shared/data --budget-min 35          # encodes real texts into $FEWLABEL_HOME/search_1m/ (resumes)
    flock /tmp/fewlabel-heavy.lock nice -n 5 python -m fewlabel.benchmarks.search_1m run \\
        --data ../shared/data --out benchmarks/results

Why: the README's advice on `--factory` and `--search-params` has to rest on a measured trade-off at the size
where it matters (Flat search over a million vectors takes seconds per 1,000 queries here).

1. Texts: every distinct text of every set under ``--data`` (NSMC reviews, GoEmotions comments, KorSTS and STS-B
   sentences, KorNLI and KLUE-NLI premises and hypotheses, SemEval sentences without their entity tags), shuffled
   with a fixed seed. ``--n-queries`` of them are held out as queries (never in the base).
2. Vectors: the texts are encoded with ``--model`` in chunks saved as ``.npy`` under
   ``$FEWLABEL_HOME/search_1m/`` (resumable, never committed), until all are encoded or ``--budget-min``
   minutes of encoding have passed this run.
3. Base of ``--n-base`` vectors: every encoded real base vector, then, when there are fewer, synthetic ones:
   ``normalise(a·u + (1-a)·v + noise)`` for two random real base vectors u, v, a ~ U(0.2, 0.8) and Gaussian
   noise of ``--noise`` per coordinate. They stand for texts "between" two real ones; the report says how many
   there are.
4. Each factory is built (timed, FAISS on ``--threads`` threads), its memory measured as the bytes FAISS
   serialises, and searched with k=10 for every search-parameter setting of its sweep: time per 1,000 queries
   (median of 3 runs over all queries) and recall@10 against Flat's exact neighbours."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import time
from pathlib import Path

import numpy as np

from fewlabel.benchmarks.report import markdown_table, write_report

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

K = 10
SEED = 15
CHUNK = 10_000  # texts per saved .npy chunk
_TAG = re.compile(r"</?e[12]>")


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S ") + message, flush=True)


# ---- 1. texts -------------------------------------------------------------------------------------------------
def _tsv(path: Path, columns: list[int], *, header: bool) -> list[str]:
    out = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        if header:
            next(reader, None)
        for fields in reader:
            out += [fields[c] for c in columns if c < len(fields)]
    return out


def text_sources(data: Path) -> dict[str, list[str]]:
    """Every text of every set under ``data``, by set (duplicates and blanks are removed later)."""
    sources: dict[str, list[str]] = {}
    sources["nsmc"] = [t for name in ("rebuilt_ratings_train.txt", "rebuilt_ratings_test.txt")
                       for t in _tsv(data / "nsmc" / name, [1], header=True)]
    sources["goemotions"] = [t for split in ("train", "dev", "test")
                             for t in _tsv(data / "goemotions" / "original" / f"{split}.tsv", [0], header=False)]
    sources["korsts"] = [t for split in ("train", "dev", "test")
                         for t in _tsv(data / "korsts" / f"sts-{split}.tsv", [5, 6], header=True)]
    sources["stsb_en"] = [t for split in ("train", "dev", "test")
                          for t in _tsv(data / "stsb_en" / f"sts-{split}.csv", [5, 6], header=False)]
    sources["kornli"] = [t for split in ("dev", "test")
                         for t in _tsv(data / "kornli" / f"xnli.{split}.ko.tsv", [0, 1], header=True)]
    klue = json.loads((data / "klue_nli" / "klue-nli-v1.1_dev.json").read_text(encoding="utf-8"))
    sources["klue_nli"] = [item[key] for item in klue for key in ("premise", "hypothesis")]
    sources["semeval"] = [_TAG.sub("", json.loads(line)["sentence"]) for split in ("train", "test")
                          for line in (data / "semeval2010_task8" / f"{split}.jsonl").read_text(
                              encoding="utf-8").splitlines() if line.strip()]
    return sources


def distinct_texts(data: Path) -> tuple[list[str], dict]:
    """Distinct non-blank texts (whitespace runs made one space), in a fixed shuffled order, and how many each set
    gave."""
    seen: dict[str, None] = {}
    counts = {}
    for name, texts in text_sources(data).items():
        before = len(seen)
        for text in texts:
            text = " ".join(text.split())  # one space between words: a TSV line can hold every text as it is
            if text:
                seen.setdefault(text, None)
        counts[name] = {"texts": len(texts), "new_distinct": len(seen) - before}
    texts = sorted(seen)
    order = np.random.default_rng(SEED).permutation(len(texts))
    return [texts[i] for i in order], counts


# ---- 2. vectors -----------------------------------------------------------------------------------------------
def cache_dir(model: str, texts: list[str]) -> Path:
    from fewlabel.indexing.files import fewlabel_home

    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
    return fewlabel_home() / "search_1m" / f"{model}-{digest}"


def encode_chunks(texts: list[str], model: str, budget_min: float, batch_size: int, backend: str = "onnx",
                  cache_path: Path | None = None) -> dict:
    """Encode ``texts`` chunk by chunk into ``cache_dir``; stops after ``budget_min`` minutes. Each chunk is
    written to a temporary name and renamed, so a killed run leaves only whole chunks. ``cache_path``: an
    embedding cache (``embeddings.sqlite``) to take vectors from, such as the one `predict_large` fills with
    the same texts, so no text is encoded twice."""
    import torch

    from fewlabel.indexing.encoders.cache import EmbeddingCache, encode_with_cache
    from fewlabel.indexing.encoders.encoder import Encoder

    torch.set_num_threads(2)
    folder = cache_dir(model, texts)
    folder.mkdir(parents=True, exist_ok=True)
    encoder = Encoder(model, device="cpu", backend=backend)
    (folder / "encoder.json").write_text(json.dumps({**encoder.describe(), "backend": backend}), encoding="utf-8")
    started = time.perf_counter()
    encoded_now, from_cache, seconds = 0, 0, 0.0
    for number, start in enumerate(range(0, len(texts), CHUNK)):
        path = folder / f"chunk_{number:04d}.npy"
        if path.exists():
            continue
        if budget_min > 0 and time.perf_counter() - started > budget_min * 60:
            log(f"budget of {budget_min} min spent")
            break
        t0 = time.perf_counter()
        cache = EmbeddingCache(cache_path) if cache_path else None
        if budget_min <= 0 and not _all_cached(encoder, texts[start:start + CHUNK], cache):
            log("budget 0: only chunks whose vectors are all in the cache")
            break
        vectors = encode_with_cache(encoder, texts[start:start + CHUNK], cache, batch_size=batch_size)
        if cache is not None:
            from_cache += cache.hits
            cache.close()
        seconds += time.perf_counter() - t0
        encoded_now += len(vectors)  # counted with the cache hits: texts/s is of vectors made ready
        tmp = folder / f".chunk_{number:04d}.tmp.npy"
        np.save(tmp, vectors.astype(np.float32))
        os.replace(tmp, path)
        log(f"chunk {number} ({start + len(vectors):,}/{len(texts):,}): {encoded_now / seconds:.0f} texts/s")
    stats = {"encoded_this_run": encoded_now, "from_cache": from_cache, "seconds_this_run": round(seconds, 1),
             "texts_per_s": round(encoded_now / seconds, 1) if seconds else None}
    runs_path = folder / "runs.json"
    runs = json.loads(runs_path.read_text()) if runs_path.exists() else []
    runs.append({**stats, "date": time.strftime("%Y-%m-%d %H:%M")})
    runs_path.write_text(json.dumps(runs, indent=1))
    return stats


def _all_cached(encoder, texts: list[str], cache) -> bool:
    from fewlabel.indexing.encoders.cache import EmbeddingCache

    if cache is None:
        return False
    fingerprint = encoder.fingerprint(True)
    keys = list(dict.fromkeys(EmbeddingCache.key(fingerprint, t) for t in texts))
    return len(cache.get_many(keys)) == len(keys)


def load_encoded(texts: list[str], model: str) -> np.ndarray:
    """The vectors of the leading texts encoded so far (whole chunks, in order)."""
    folder = cache_dir(model, texts)
    parts = []
    for number in range(0, (len(texts) + CHUNK - 1) // CHUNK):
        path = folder / f"chunk_{number:04d}.npy"
        if not path.exists():
            break
        parts.append(np.load(path))
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def synthetic(real: np.ndarray, n: int, noise: float, seed: int = SEED) -> np.ndarray:
    """``n`` unit vectors made from the real ones: normalise(a·u + (1-a)·v + noise), u and v two different random
    real vectors and a ~ U(0.2, 0.8). Built in blocks to keep memory low."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        first = rng.integers(0, len(real), m)
        u, v = real[first], real[(first + rng.integers(1, len(real), m)) % len(real)]  # two different vectors
        a = rng.uniform(0.2, 0.8, (m, 1)).astype(np.float32)
        mix = a * u + (1 - a) * v + rng.normal(0, noise, (m, real.shape[1])).astype(np.float32)
        out[start:start + m] = mix / np.linalg.norm(mix, axis=1, keepdims=True)
    return out


# ---- 3-4. the benchmark ------------------------------------------------------------------------------------------
#: factory -> (search parameter, values swept); Flat is the exact reference
# in the order they run (a report is written after each): the likeliest to meet the target first
SWEEPS: dict[str, tuple[str | None, list]] = {
    "Flat": (None, [None]),
    "HNSW32": ("efSearch", [16, 32, 64, 128, 160, 192, 224, 256]),
    "IVF1024,Flat": ("nprobe", [4, 8, 16, 32, 64]),
    "IVF1024,SQ8": ("nprobe", [8, 16, 32, 64]),
    "IVF1024,PQ48np": ("nprobe", [8, 16, 32, 64]),  # np: no polysemous training (minutes, unused by search)
    "IVF4096,Flat": ("nprobe", [16, 32, 64, 128]),  # k-means on up to 1M points: the longest build, last
    # a richer graph: FAISS's efConstruction default (40) capped HNSW32's recall near 0.95 (run with --only)
    "HNSW32|efConstruction=80": ("efSearch", [96, 128, 192, 256]),
}
QUICK: dict[str, tuple[str | None, list]] = {
    "Flat": (None, [None]), "HNSW32": ("efSearch", [16, 64]), "IVF64,Flat": ("nprobe", [4, 16]),
    "IVF64,PQ48np": ("nprobe", [16])}
RECALL_TARGET, SECONDS_TARGET = 0.95, 1.0


def timed_search(index, queries: np.ndarray, repeats: int = 3) -> tuple[float, np.ndarray]:
    """Median seconds of ``repeats`` searches of every query at once (k=10), and the ids found."""
    times, ids = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, ids = index.search(queries, K)
        times.append(time.perf_counter() - t0)
    assert ids is not None, "repeats must be at least 1"
    return float(np.median(times)), ids


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def index_bytes(index, folder: Path) -> int:
    """What the index takes: the bytes FAISS writes for it (vectors or codes, lists, graph)."""
    import faiss

    path = folder / ".size-probe.faiss"
    faiss.write_index(index, str(path))
    size = path.stat().st_size
    path.unlink()
    return size


def ivf_imbalance(index) -> float | None:
    """How uneven an IVF index's lists are (FAISS's imbalance factor: 1.0 when every list holds as many vectors;
    the search cost of nprobe lists grows with it). None for other types."""
    import faiss

    try:
        invlists = faiss.extract_index_ivf(index).invlists
        assert invlists is not None  # an IVF index always has its lists
        return round(float(invlists.imbalance_factor()), 2)
    except RuntimeError:
        return None


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args: argparse.Namespace, texts: list[str], counts: dict) -> int:
    import faiss

    from fewlabel.indexing.store.faiss_factory import apply_search_params, build_faiss_index

    faiss.omp_set_num_threads(args.threads)
    encoded = load_encoded(texts, args.model)
    if len(encoded) <= args.n_queries:
        raise SystemExit("encode first: python -m fewlabel.benchmarks.search_1m encode")
    queries = np.ascontiguousarray(encoded[:args.n_queries])
    real = encoded[args.n_queries:args.n_queries + args.n_base]
    n_synthetic = args.n_base - len(real)
    base = np.empty((args.n_base, encoded.shape[1]), dtype=np.float32)
    base[:len(real)] = real
    if n_synthetic:
        base[len(real):] = synthetic(real, n_synthetic, args.noise)
    del encoded
    log(f"base: {len(real):,} real + {n_synthetic:,} synthetic vectors; {len(queries):,} held-out real queries")
    folder = cache_dir(args.model, texts)
    try:
        backend = json.loads((folder / "encoder.json").read_text())["backend"]
    except (OSError, KeyError, ValueError):
        backend = "unknown"
    sweeps = QUICK if args.quick else SWEEPS
    if args.only:
        sweeps = {name: sweeps[name] for name in args.only.split(";")}
    results, truth, loads = [], None, [os.getloadavg()[0]]
    for name, (param, values) in {"Flat": SWEEPS["Flat"], **sweeps}.items():
        factory, _, build_params = name.partition("|")  # "HNSW32|efConstruction=80": set before vectors are added
        if factory == "Flat" and truth is not None:
            continue
        t0 = time.perf_counter()
        index = build_faiss_index(base, factory, build_params or None)
        build_s = time.perf_counter() - t0
        size = index_bytes(index, folder)
        imbalance = ivf_imbalance(index)
        log(f"{factory}: built in {build_s:.1f} s, {size / 2**20:,.0f} MiB, list imbalance {imbalance}")
        for value in values:
            params = ",".join(p for p in (build_params, f"{param}={value}" if param else "") if p) or None
            apply_search_params(index, params, factory)
            seconds, found = timed_search(index, queries)
            if truth is None:
                truth = found
            recall = recall_at_k(found, truth)
            per_1000 = seconds * 1000 / len(queries)
            results.append({"factory": factory, "search_params": params, "build_s": round(build_s, 1),
                            "bytes": size, "ivf_imbalance": imbalance, "s_per_1000_queries": round(per_1000, 4),
                            "recall_at_10": round(recall, 4),
                            "meets_target": bool(recall >= RECALL_TARGET and per_1000 < SECONDS_TARGET)})
            log(f"  {params or '-'}: {per_1000:.3f} s / 1,000 queries, recall@10 {recall:.4f}")
            loads.append(os.getloadavg()[0])
        del index
        payload = {"n_base": args.n_base, "n_real_base": len(real), "n_synthetic": n_synthetic,
                   "n_queries": len(queries), "distinct_texts": len(texts), "sources": counts, "model": args.model,
                   "backend": backend, "threads": args.threads, "noise": args.noise, "k": K, "results": results,
                   "peak_rss_mib": round(peak_rss_mib()), "faiss": faiss.__version__,
                   "finished": name == list(sweeps)[-1],
                   "load_average_1min": {"min": round(min(loads), 2), "max": round(max(loads), 2)}}
        title = "One machine, one million vectors: FAISS index types on 2 CPU cores"
        write_report(args.out, args.name, title, body(payload), payload, data_note=data_note(payload))
        log(f"wrote {args.out / (args.name + '.md')} (after {factory})")
    return 0


def data_note(p: dict) -> str:
    return (f"{p['distinct_texts']:,} distinct real texts of ../shared/data encoded with {p['model']}; base "
            f"{p['n_real_base']:,} real + {p['n_synthetic']:,} synthetic vectors, {p['n_queries']:,} held-out real "
            "queries")


def best_choice(results: list[dict]) -> dict | None:
    """The cheapest setting that meets the target: least memory, then fastest."""
    meeting = [r for r in results if r["meets_target"] and r["factory"] != "Flat"]
    return min(meeting, key=lambda r: (r["bytes"], r["s_per_1000_queries"])) if meeting else None


def body(p: dict) -> str:
    rows = [[r["factory"], r["search_params"] or "-", f"{r['build_s']:.1f}", f"{r['bytes'] / 2**20:,.0f}",
             "-" if r.get("ivf_imbalance") is None else f"{r['ivf_imbalance']:.2f}",
             f"{r['s_per_1000_queries']:.3f}", f"{r['recall_at_10']:.4f}", "yes" if r["meets_target"] else ""]
            for r in p["results"]]
    table = markdown_table(["factory", "search params", "build s", "memory MiB", "IVF list imbalance",
                            "s / 1,000 queries", "recall@10", "meets target"], rows)
    best = best_choice(p["results"])
    sources = ", ".join(f"{name} {c['new_distinct']:,}" for name, c in p["sources"].items())
    lines = [f"Base: **{p['n_base']:,} vectors**, of which **{p['n_real_base']:,} are real texts** and "
             f"{p['n_synthetic']:,} are synthetic. The shared data holds {p['distinct_texts']:,} distinct texts "
             f"(new distinct texts per set, in this order: {sources}); {p['n_queries']:,} of them, drawn at random, "
             "are the queries and are not in the base.",
             "",
             f"Synthetic vectors: normalise(a·u + (1-a)·v + noise) for two random real base vectors u and v, a drawn "
             f"from U(0.2, 0.8), Gaussian noise with standard deviation {p['noise']} per coordinate. They stand for "
             "texts between two real ones; neighbours among them are not neighbours among real texts, so read the "
             "recall as that of this mixture.",
             "",
             f"Encoder: {p['model']} ({p['backend']} backend; onnx gives the same vectors as torch), unit vectors, "
             "inner product. FAISS "
             f"{p['faiss']} on {p['threads']} threads; k = {p['k']}; each time is the median of 3 searches of all "
             "queries in one call (batched), per 1,000 queries. Memory is the size FAISS writes for the index. "
             "Recall@10 is against Flat's exact neighbours. IVF list imbalance is FAISS's imbalance factor (1.00: "
             "every list equally long); a query's cost grows with it, since the crowded lists are the ones most often "
             "probed.",
             "",
             table,
             ""]
    if best:
        lines += [f"**Target (recall@10 >= {RECALL_TARGET} at under {SECONDS_TARGET:g} s per 1,000 queries): met** "
                  f"by `{best['factory']}` with `{best['search_params']}` ({best['recall_at_10']:.4f}, "
                  f"{best['s_per_1000_queries']:.3f} s, {best['bytes'] / 2**20:,.0f} MiB), the least memory among "
                  "the settings that meet it. To build it:",
                  "",
                  f"    fewlabel index build DATA … --factory '{best['factory']}' --search-params "
                  f"'{best['search_params']}' --out DIR",
                  "",
                  "meta.json keeps the search parameters and every load applies them again."]
    else:
        lines += [f"**Target (recall@10 >= {RECALL_TARGET} at under {SECONDS_TARGET:g} s per 1,000 queries): not "
                  "met** by any setting tried here."]
    lines += ["", f"Peak resident memory of the benchmark process: {p['peak_rss_mib']:,} MiB.", "",
              f"Shared machine: the 1-minute load average ranged from {p['load_average_1min']['min']} to "
              f"{p['load_average_1min']['max']} on 2 cores while this ran (above 2 means other jobs ran too, so the "
              "times are slower than on an idle machine)."]
    if not p["finished"]:
        lines += ["", "**Partial report**: the run stopped before every factory was measured."]
    return "\n".join(lines)


# ---- command line ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["encode", "run"], help="encode: vectors into the cache; run: the benchmark")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backend", default="onnx", help="encoder backend (onnx: the same vectors as torch, faster)")
    parser.add_argument("--budget-min", type=float, default=35.0, help="minutes of encoding in this run")
    parser.add_argument("--cache", type=Path, default=None,
                        help="encode: an embeddings.sqlite to take vectors from (e.g. predict_large's)")
    parser.add_argument("--n-base", type=int, default=1_000_000)
    parser.add_argument("--n-queries", type=int, default=1_000)
    parser.add_argument("--noise", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a small sweep (for a smoke run)")
    parser.add_argument("--only", default=None, help="factories to run, separated by ';' (Flat always runs)")
    parser.add_argument("--name", default="search_1m", help="report name (default: search_1m)")
    args = parser.parse_args(argv)
    texts, counts = distinct_texts(args.data)
    log(f"{len(texts):,} distinct texts: {counts}")
    if args.step == "encode":
        log(json.dumps(encode_chunks(texts, args.model, args.budget_min, args.batch_size, args.backend, args.cache)))
        return 0
    return run(args, texts, counts)


if __name__ == "__main__":
    raise SystemExit(main())
