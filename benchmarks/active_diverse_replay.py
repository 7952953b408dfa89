"""Re-run only the cheap part of the active benchmark that a change to k-means touches: `diverse` from 0 rows reads
no model (only the pool's and the labelled rows' vectors), so its picks are replayed batch by batch without fitting
anything, and the default method is fitted only at 128 and 256 labels; the test micro-F1 is set beside the one
active.json recorded for the same set, seed and size (picked with FAISS k-means on all threads).

    flock /work/wt/heavy.lock timeout 900 nice -n 5 python -m fewlabel.benchmarks.active_diverse_replay \\
        --data ../shared/data --out benchmarks/results"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from fewlabel.benchmarks import active
from fewlabel.benchmarks.report import markdown_table, write_report


def replay(x: np.ndarray, seed: int) -> list[int]:
    """The picks of active.simulate(set, "diverse", 0, seed), in order (the same pick() call and seeds)."""
    from fewlabel.retrieval.labelling.suggest import pick

    labelled: list[int] = []
    while len(labelled) < active.BUDGET:
        taken = set(labelled)
        free = np.asarray([i for i in range(len(x)) if i not in taken], dtype=np.int64)
        picked, _ = pick(x[free], None, None, n=min(active.BATCH, active.BUDGET - len(labelled)), strategy="diverse",
                         seed=seed * 1000 + len(labelled), n_labelled=len(labelled), n_labels=0,
                         labelled_vectors=x[np.asarray(labelled, dtype=np.int64)] if labelled else None)
        labelled.extend(int(free[i]) for i in picked.rows)
    return labelled


def main() -> None:
    from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path
    from fewlabel.indexing.encoders.encoder import Encoder

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=active.DATA)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--sizes", default="128,256")
    p.add_argument("--kmeans-threads", type=int, default=None,
                   help="FAISS threads for k-means (0: all, as before 2026-12-05; default: the module's setting)")
    p.add_argument("--name", default="active_diverse_replay", help="report name under --out")
    args = p.parse_args()
    if args.kmeans_threads is not None:
        import faiss

        from fewlabel.retrieval.labelling import strategies

        strategies.KMEANS_THREADS = args.kmeans_threads or faiss.omp_get_max_threads()
    recorded = json.loads((args.out / "active.json").read_text())["runs"]
    sizes = [int(s) for s in args.sizes.split(",")]
    cache, encoder = EmbeddingCache(default_cache_path()), Encoder(active.MODEL, device="cpu")
    results: list[dict[str, Any]] = []
    rows: list[list] = []
    for name in ("nsmc", "goemotions", "semeval"):
        s = active.load_set(name, cache, encoder, args.data)
        for seed in range(args.seeds):
            began = time.perf_counter()
            picks = replay(s["pool_x"], seed)
            pick_s = time.perf_counter() - began
            before = recorded.get(f"{name}|0|diverse|{seed}")
            for size in sizes:
                rows_ = np.asarray(picks[:size])
                _, candidate, settings = active.fit_default(s["pool_x"][rows_], [s["pool_texts"][i] for i in rows_],
                                                            s["y"][rows_], s["data"].multi_label, seed)
                now = round(active.micro_f1(candidate, settings, s["test_x"], s["test_texts"], s["y_test"]), 4)
                then = before["scores"][before["sizes"].index(size)] if before else None
                results.append({"set": name, "seed": seed, "size": size, "micro_f1": now, "recorded": then,
                                "pick_seconds": round(pick_s, 2)})
                print(results[-1], flush=True)
    for name in ("nsmc", "goemotions", "semeval"):
        for size in sizes:
            mine = [r for r in results if r["set"] == name and r["size"] == size]
            scores = [r["micro_f1"] for r in mine]
            then = [r["recorded"] for r in mine if r["recorded"] is not None]
            rows.append([name, size, len(mine), f"{np.mean(scores):.3f} ± {np.std(scores):.3f}",
                         f"{np.mean(then):.3f} ± {np.std(then):.3f}" if then else "-",
                         f"{np.mean([r['pick_seconds'] for r in mine]):.1f}"])
    body = ("`diverse` from 0 rows, batches of 16, the active benchmark's sets, seeds and pick() call, picks replayed "
            "with this checkout's k-means; the default method fitted at the sizes shown; test micro-F1, mean ± std "
            "over seeds, beside the value active.json recorded for the same set, seed and size.\n\n"
            + markdown_table(["set", "labels", "seeds", "micro-F1 now", "micro-F1 recorded (active.json)",
                              "pick s (16 batches)"], rows) + "\n")
    write_report(args.out, args.name, "The active benchmark's diverse picks, replayed", body,
                 {"results": results, "kmeans_threads": args.kmeans_threads},
                 data_note="the active benchmark's sets (../shared/data), e5-small")


if __name__ == "__main__":
    main()
