"""`fewlabel predict` end to end on large inputs: rows per second and peak memory of the real command. Writes
`predict_100k.md` and `predict_100k.json` (the line `speed.md` links to).

    flock /tmp/fewlabel-heavy.lock nice -n 5 python -m fewlabel.benchmarks.predict_large --data ../shared/data \\
        --out benchmarks/results

Why: `predict` streams its input in chunks (`fewlabel.retrieval.streaming`), so its memory should not grow with the
input; this measures that on the command a user runs, as a child process, with its peak resident memory taken
from the kernel (``wait4``'s ``ru_maxrss``).

1. Input: the first ``--rows`` of the distinct real texts `search_1m` collects from ``--data`` (NSMC reviews,
   GoEmotions comments, STS and NLI sentences, SemEval sentences; shuffled with a fixed seed), as a TSV with ids.
2. Index: the bundled GoEmotions sample (800 rows), ``--model``, ``--backend``, the kNN vote (Flat).
3. Run A: ``fewlabel -q predict`` on those rows with a fresh ``$FEWLABEL_HOME`` (an empty embedding cache: every text
   is encoded, and stored, as on a first run).
4. Run B (``--repeat`` > 1): the same texts repeated ``--repeat`` times with new ids (1M rows by default); their
   vectors come from the cache run A filled, so B measures reading, search, voting and writing, and whether memory
   stays flat as the input grows tenfold. Not an encoding measurement."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from fewlabel.benchmarks.report import markdown_table, write_report
from fewlabel.benchmarks.search_1m import distinct_texts

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S ") + message, flush=True)


def write_input(texts: list[str], path: Path, repeat: int) -> int:
    """A TSV (id, text) of ``texts`` repeated ``repeat`` times, ids unique. Tabs and line breaks inside a text
    become spaces (TSV has no quoting)."""
    clean = [" ".join(t.split()) for t in texts]
    with open(path, "w", encoding="utf-8", newline="") as fh:  # fewlabel reads TSV without quoting: none written
        fh.write("id\ttext\n")
        for copy in range(repeat):
            fh.writelines(f"{copy}-{i}\t{text}\n" for i, text in enumerate(clean))
    return len(clean) * repeat


def run_child(args: list[str], env: dict) -> dict:
    """Run a command; its wall time, exit status and peak resident memory (the kernel's figure for that child)."""
    t0 = time.perf_counter()
    child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = child.communicate()
    # communicate() reaped the child; its rusage is in RUSAGE_CHILDREN, the maximum over all waited children.
    # Each measured command runs in its own helper process below so that maximum is this command's own.
    return {"seconds": time.perf_counter() - t0, "returncode": child.returncode, "stdout": out.strip(),
            "stderr_tail": err.strip()[-400:], "load_average_1min_after": round(os.getloadavg()[0], 2)}


def measured(args: list[str], env: dict) -> dict:
    """``run_child`` in a fresh Python process, so RUSAGE_CHILDREN holds the predict command alone."""
    code = ("import json, resource, sys; from fewlabel.benchmarks.predict_large import run_child; "
            "r = run_child(json.loads(sys.argv[1]), json.loads(sys.argv[2])); "
            "r['peak_rss_mib'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024; print(json.dumps(r))")
    import json

    result = subprocess.run([sys.executable, "-c", code, json.dumps(args), json.dumps(env)], capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/fewlabel-predict-large"))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=10, help="run B's input: the rows repeated this many times")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--name", default="predict_100k")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    home = args.work / "home"  # an empty embedding cache (and a fresh ONNX export); search_1m may read it after
    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, "FEWLABEL_HOME": str(home), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    texts, _ = distinct_texts(args.data)
    texts = texts[:args.rows]
    small = args.work / "input_a.tsv"
    n_a = write_input(texts, small, 1)
    cli = [sys.executable, "-m", "fewlabel.retrieval.cli", "-q"]
    index = args.work / "index"
    log(f"building the index ({args.model}, {args.backend}) …")
    build = subprocess.run([*cli, "index", "build", str(DEMO / "goemotions_ekman_train.tsv"), "--text-col", "text",
                            "--label-col", "labels", "--label-sep", ",", "--model", args.model, "--backend",
                            args.backend, "--method", "knn", "--out", str(index)], env=env, capture_output=True,
                           text=True)
    if build.returncode:
        raise SystemExit(build.stderr)
    predict = [*cli, "predict", str(index), "--text-col", "text", "--id-col", "id", "--backend", args.backend,
               "--chunk-size", str(args.chunk_size)]
    runs = []
    log(f"run A: {n_a:,} rows, empty cache …")
    a = measured([*predict, str(small), "--out", str(args.work / "a.csv"), "--no-resume"], env)
    runs.append({"run": "A", "rows": n_a, "cache": "empty (every text encoded)", **a})
    log(f"  {a}")
    if args.repeat > 1:
        big = args.work / "input_b.tsv"
        n_b = write_input(texts, big, args.repeat)
        log(f"run B: {n_b:,} rows, vectors from the cache …")
        b = measured([*predict, str(big), "--out", str(args.work / "b.csv"), "--no-resume"], env)
        runs.append({"run": "B", "rows": n_b, "cache": "warm (no text encoded)", **b})
        log(f"  {b}")
        big.unlink()
    for run in runs:
        run["rows_per_s"] = round(run["rows"] / run["seconds"], 1)
        run["seconds"] = round(run["seconds"], 1)
        run["peak_rss_mib"] = round(run["peak_rss_mib"])
    table = markdown_table(["run", "rows", "embedding cache", "wall s (with model load)", "rows/s", "peak RSS MiB",
                            "exit", "load average at the end"],
                           [[r["run"], f"{r['rows']:,}", r["cache"], f"{r['seconds']:,.1f}", f"{r['rows_per_s']:,.1f}",
                             f"{r['peak_rss_mib']:,}", r["returncode"], r["load_average_1min_after"]] for r in runs])
    lines = [f"`fewlabel -q predict INDEX INPUT.tsv --backend {args.backend} --chunk-size {args.chunk_size}` as a "
             f"child process; the index holds the bundled GoEmotions sample (800 rows, {args.model}, kNN vote, "
             "Flat). Input: real texts of the shared data (NSMC, GoEmotions, KorSTS, STS-B, KorNLI, KLUE-NLI, "
             "SemEval; shuffled). Peak RSS is the kernel's maximum resident set of the predict process. The machine "
             "has 2 cores and is shared: a 1-minute load average above 2 means other jobs ran beside this one.",
             "", table, ""]
    if len(runs) > 1:
        growth = runs[1]["peak_rss_mib"] - runs[0]["peak_rss_mib"]
        share = growth / max(runs[0]["peak_rss_mib"], 1)
        lines += [f"Run B is run A's texts repeated {args.repeat} times ({runs[1]['rows']:,} rows); their vectors come "
                  "from the embedding cache run A filled, so B's rows/s is reading, searching, voting and writing, "
                  f"not encoding. Peak memory changed by {growth:+,} MiB ({share:+.0%}) "
                  f"for {args.repeat}x the rows. The chunks are read, labelled and written one at a time; what still "
                  "grows with the input is the set of ids seen (a repeated id is refused), which the reader keeps "
                  "while it checks the file."]
    payload = {"model": args.model, "backend": args.backend, "chunk_size": args.chunk_size, "runs": runs}
    sizes = " and ".join(f"{r['rows']:,} rows" for r in runs)
    write_report(args.out, args.name, f"fewlabel predict end to end on {sizes}: rows/s and peak memory",
                 "\n".join(lines), payload, data_note=f"{n_a:,} distinct real texts of {args.data}")
    log(f"wrote {args.out / (args.name + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
