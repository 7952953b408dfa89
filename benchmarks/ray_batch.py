"""Rows per second of `fewlabel predict` with the local engine against `--engine ray` (1 and 2 actors) on this
machine. Writes `ray_batch.md` and `ray_batch.json`.

    python -m fewlabel.benchmarks.ray_batch --data ../shared/data --out benchmarks/results

Every run is the whole command in a fresh process (model loads, and for Ray its start and the actors' start,
included), with --no-cache so every text is encoded; the outputs are compared with the local engine's."""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fewlabel.benchmarks.knn_quality import goemotions_splits
from fewlabel.benchmarks.report import markdown_table, write_report


def write_tsv(rows, path: Path, labels: bool) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("id\ttext" + ("\tlabels" if labels else "") + "\n")
        for r in rows:
            text = r.text.replace("\t", " ").replace("\n", " ")
            fh.write(f"{r.id}\t{text}" + (f"\t{','.join(r.labels)}" if labels else "") + "\n")
    return path


def run(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fewlabel.retrieval.cli", "-q", *argv], check=True, timeout=1800)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--workers", default="1,2", help="Ray actor counts to run, comma-separated")
    parser.add_argument("--note", default="", help="a sentence for the report (e.g. what else ran)")
    args = parser.parse_args()
    splits = goemotions_splits(args.data)
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train = write_tsv(splits["train"][: args.train_rows], work / "train.tsv", labels=True)
        texts = write_tsv(splits["test"][: args.rows], work / "input.tsv", labels=False)
        run(["index", "build", str(train), "--id-col", "id", "--label-col", "labels", "--label-sep", ",",
             "--model", args.model, "--out", str(work / "index")])  # the cache may serve the index's rows
        base = ["predict", str(work / "index"), str(texts), "--id-col", "id", "--no-cache"]
        engines = [("local", [])] + [(f"ray, {n} actor{'s' if n != '1' else ''}",
                                      ["--engine", "ray", "--num-workers", n]) for n in args.workers.split(",")]
        for name, extra in engines:
            out = work / f"{len(results)}.csv"
            seconds = run([*base, *extra, "--out", str(out)])
            mine, local = (list(csv.reader(open(path, encoding="utf-8"))) for path in (out, work / "0.csv"))
            differing = [(a, b) for a, b in zip(mine, local, strict=True) if a != b]
            results.append({"engine": name, "seconds": round(seconds, 1), "rows_per_s": round(args.rows / seconds, 1),
                            "output_identical_to_local": not differing,
                            "rows_differing": len(differing),
                            "rows_with_other_labels": sum(1 for a, b in differing if a[:2] != b[:2]),
                            "differences": [{"ray": a, "local": b} for a, b in differing[:5]]})
            print(results[-1], flush=True)
    rows = [[r["engine"], r["seconds"], r["rows_per_s"],
             "yes" if r["output_identical_to_local"] else f"no: {r['rows_differing']} rows differ, "
             f"{r['rows_with_other_labels']} of them in id or labels"] for r in results]
    body = (f"{args.rows} texts labelled with an index of {args.train_rows} rows ({args.model}, Flat), whole "
            "command in a fresh process, --no-cache.\n\n"
            + markdown_table(["engine", "wall s", "rows/s", "output identical to local"], rows)
            + "\n\nThe actors encode other batches than the local engine, so a vector can differ in its last float "
              "bits, and a written similarity or probability can then round the other way at 4 decimals (kNN vote "
              "fractions are exact); the JSON record lists the first differing rows.\n"
            + "\n\nOn 2 cores Ray is expected to be slower: it starts its own processes (a few seconds), every actor "
              "loads the index and the encoder again, an actor gets at most half a CPU so that reading keeps one "
              "free, and the local engine already uses both cores for one encoder. Ray pays off across machines: "
              "see the cluster recipe in the README (\"Scaling out\").\n" + (f"\n{args.note}\n" if args.note else ""))
    write_report(args.out, "ray_batch", "Batch labelling: local engine against Ray", body,
                 {"results": results, "rows": args.rows, "train_rows": args.train_rows, "model": args.model},
                 data_note=f"GoEmotions-ekman from {args.data}/goemotions/ekman: first {args.train_rows} train rows "
                           f"indexed, first {args.rows} test texts labelled")


if __name__ == "__main__":
    main()
