"""How long a second `fewlabel suggest` takes on a 100,000-text pool whose vectors are cached (issue 24: under
5 s here). Writes `suggest_speed.md` and `suggest_speed.json`.

    flock /work/wt/heavy.lock nice -n 5 python -m fewlabel.benchmarks.suggest_speed --data ../shared/data \\
        --out benchmarks/results

The pool is ``--rows`` distinct real texts of the shared data (the predict_100k order), the index holds
``--index-rows`` NSMC training rows (the default encoder, method chosen by `index build`'s auto). What a second
`suggest` does is read the pool file, hash its texts into the pool-cache key, map the cached matrix, load the
index, score the pool with the index's method and pick: it never encodes. Encoding 100,000 texts for the first
run takes about half an hour on this 2-core machine (predict_100k.md run A), longer than a slot of the shared
heavy-job lock, so the pool cache is filled here instead: ``--encode`` texts of the pool are really encoded and
the rest of the matrix repeats them with a little Gaussian noise (unit length again). The second run's work does
not depend on where the vectors came from (FAISS k-means runs a fixed number of iterations; the method's scoring
is a matrix product or a search), so its time is the time of a real second run.

Each strategy runs ``--repeats`` times as the child process a user runs; wall time (start to exit, Python and
imports included) and the child's CPU time are reported."""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fewlabel.benchmarks.predict_large import write_input
from fewlabel.benchmarks.report import cpu_flags, markdown_table, write_report
from fewlabel.benchmarks.search_1m import distinct_texts


def index_sample(data: Path, rows: int, path: Path) -> None:
    """``rows`` NSMC training rows, balanced enough for a first index (the file is shuffled by its makers)."""
    with open(data / "nsmc" / "rebuilt_ratings_train.txt", encoding="utf-8") as fh, \
            open(path, "w", encoding="utf-8", newline="") as out:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        out.write("id\ttext\tlabel\n")
        for _, row in zip(range(rows), reader, strict=False):
            out.write(f"nsmc-{row['id']}\t{' '.join(row['document'].split())}\t{row['label']}\n")


def plant_pool(index_dir: Path, pool: Path, encode: int, seed: int) -> dict:
    """Write the pool cache file a first `suggest` would write: ``encode`` texts encoded for real by the index's
    encoder, the rest of the matrix their noisy copies."""
    from fewlabel.indexing.encoders.encoder import Encoder
    from fewlabel.indexing.readers import read_texts
    from fewlabel.indexing.store.label_index import LabelIndex
    from fewlabel.retrieval.labelling.pool import pool_cache_dir, pool_key

    index = LabelIndex.load(str(index_dir))
    texts = [r.text for r in read_texts(str(pool), text_col="text", id_col="id", header=True)]
    record = index.encoder
    encoder = Encoder(record["model"], backend=record.get("backend"))
    began = time.perf_counter()
    real = encoder.encode(texts[:encode], batch_size=32)
    encode_s = time.perf_counter() - began
    rng = np.random.default_rng(seed)
    copies = real[np.arange(len(texts)) % len(real)] + rng.normal(0, 0.02, (len(texts), real.shape[1]))
    copies[:len(real)] = real
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    path = pool_cache_dir() / f"{pool_key(record, texts)}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, copies.astype(np.float32), allow_pickle=False)
    return {"path": str(path), "encoded": len(real), "encode_s": round(encode_s, 1),
            "encoded_texts_per_s": round(len(real) / encode_s, 1), "bytes": path.stat().st_size}


def timed_child(args: list[str], env: dict) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"suggest failed: {done.stderr.strip()[-500:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "stdout": done.stdout.strip(),
            "stderr": done.stderr.strip()[-300:], "load_average": round(os.getloadavg()[0], 2)}


def timed_runs(cli: list[str], index: Path, pool: Path, work: Path, env: dict, args, runs: list[dict],
               code: str = "this checkout") -> None:
    scans = [None] + ([args.max_scan] if args.max_scan else [])
    for strategy, scan, repeat in ((s, m, r) for s in args.strategies.split(",") for m in scans
                                   for r in range(args.repeats)):
        out = work / f"{strategy}-{scan}-{repeat}-{len(runs)}.csv"
        extra = ["--max-scan", str(scan)] if scan else []
        r = timed_child([*cli, "-q", "suggest", str(index), str(pool), "--n", "50", "--strategy", strategy,
                         *extra, "--out", str(out)], env)
        with open(out, encoding="utf-8") as fh:
            r["suggested"] = sum(1 for _ in csv.reader(fh)) - 1
        r.update(strategy=strategy, repeat=repeat, max_scan=scan, code=code)
        runs.append(r)
        print(r, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--index-rows", type=int, default=256)
    parser.add_argument("--model", default="e5-small")
    parser.add_argument("--encode", type=int, default=2000, help="pool texts really encoded (the rest: copies)")
    parser.add_argument("--strategies", default="auto,diverse,uncertainty,random")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-scan", type=int, default=None,
                        help="also time each strategy with `suggest --max-scan N` (a sample of N pool texts scored)")
    parser.add_argument("--method", default="auto", help="`index build --method` (auto: what build chooses)")
    parser.add_argument("--baseline-python", default=None,
                        help="also time the same commands with this interpreter (another checkout's venv: the code "
                             "before a change), interleaved run by run with this checkout's")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    load_start = os.getloadavg()
    texts = distinct_texts(args.data)[0][:args.rows]
    cli = [sys.executable, "-m", "fewlabel.retrieval.cli"]
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = dict(os.environ)  # the user's cache: the encoder's ONNX export is there; the planted file is removed
        pool, labelled, index = work / "pool.tsv", work / "labelled.tsv", work / "index"
        write_input(texts, pool, 1)
        index_sample(args.data, args.index_rows, labelled)
        subprocess.run([*cli, "-q", "index", "build", str(labelled), "--id-col", "id", "--model", args.model,
                        "--method", args.method, "--out", str(index)], check=True, env=env, capture_output=True)
        planted = plant_pool(index, pool, args.encode, seed=0)
        print("planted", planted, flush=True)
        try:
            codes = [("this checkout", cli)]
            if args.baseline_python:
                codes.insert(0, ("baseline", [args.baseline_python, "-m", "fewlabel.retrieval.cli"]))
            for _ in range(args.repeats):  # interleaved, so both codes see the same machine load
                for code, command in codes:
                    args_once = argparse.Namespace(**{**vars(args), "repeats": 1})
                    timed_runs(command, index, pool, work, env, args_once, runs, code)
        finally:
            Path(planted["path"]).unlink(missing_ok=True)  # the file this script wrote, nothing else
    load_end = os.getloadavg()
    method = next((r["stdout"].split("method ", 1)[1].split(")", 1)[0] for r in runs if "method " in r["stdout"]),
                  "?")
    rows = []
    for code, strategy, scan in dict.fromkeys((r["code"], r["strategy"], r.get("max_scan")) for r in runs):
        mine = [r for r in runs if r["code"] == code and r["strategy"] == strategy and r.get("max_scan") == scan]
        walls = [r["wall_s"] for r in mine]
        rows.append([code, strategy, f"{scan:,}" if scan else "every text", len(mine), f"{np.median(walls):.2f}",
                     f"{min(walls):.2f}", f"{max(walls):.2f}",
                     f"{np.median([r['cpu_s'] for r in mine]):.2f}", mine[0]["suggested"],
                     "yes" if np.median(walls) < 5 else "**no**"])
    body = (f"`fewlabel -q suggest INDEX POOL.tsv --n 50 --strategy S --out OUT.csv` as a child process, the pool's "
            f"vectors already in the pool cache (a second run). Pool: {len(texts):,} distinct real texts of the "
            f"shared data (the predict_100k order). Index: {args.index_rows} NSMC training rows, {args.model} (onnx, "
            f"the CPU default), method {method} (`index build --method {args.method}`). "
            f"The pool cache was filled by this script: "
            f"{planted['encoded']:,} pool texts encoded for real ({planted['encoded_texts_per_s']} texts/s), the "
            f"rest their noisy copies, {planted['bytes'] / 2**20:.0f} MiB on disk (see the script's docstring for "
            "why that times a real second run). Wall: start to exit, Python start and imports included; CPU: the "
            "child's user + system time.\n\n"
            + markdown_table(["code", "strategy", "--max-scan", "runs", "median wall s", "min s", "max s",
                              "median CPU s", "suggested", "under 5 s"], rows)
            + f"\n\nCPU flags: {cpu_flags()}. Load average (1, 5, 15 min) at the start "
              f"{tuple(round(x, 2) for x in load_start)}, at the end {tuple(round(x, 2) for x in load_end)}; each "
              "run's 1-minute load is in suggest_speed.json.\n" + (f"\n{args.note}\n" if args.note else ""))
    write_report(args.out, "suggest_speed", "A second fewlabel suggest on a 100,000-text pool", body,
                 {"runs": runs, "planted": {k: v for k, v in planted.items() if k != "path"},
                  "baseline_python": args.baseline_python, "pool_rows": len(texts),
                  "index_rows": args.index_rows, "model": args.model, "method": method,
                  "load_average_start": load_start, "load_average_end": load_end, "cpu_flags": cpu_flags()},
                 data_note=f"pool: {len(texts):,} distinct real texts of ../shared/data; index: {args.index_rows} "
                           "rows of NSMC train")


if __name__ == "__main__":
    main()
