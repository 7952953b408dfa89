"""`fewlabel predict` end to end against the encoder's own throughput on the same texts, in the same run. Writes
`predict_speed.md` and `predict_speed.json`.

    flock /work/wt/heavy.lock nice -n 5 python -m fewlabel.benchmarks.predict_speed --data ../shared/data \\
        --out benchmarks/results

Why: issue 27 asks predict's rows/s to come within 85% of the encoder's. The encoder's figure is
``Encoder.encode(texts, batch_size=32)`` in this process (texts sorted by length, as predict sorts each chunk);
predict's is the real command as a child process with ``--no-cache`` (every text encoded, nothing stored), run
twice: on ``--rows`` texts and on 20 of them, so that the fixed cost (Python start, model load, index load) can be
taken off: (rows - 20) / (wall - wall of 20), the per-row rate, compared like for like. Both are reported."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fewlabel.benchmarks.predict_large import write_input
from fewlabel.benchmarks.report import cpu_flags, markdown_table, write_report
from fewlabel.benchmarks.search_1m import distinct_texts

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"


def timed(args: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--chunk-sizes", default="10000,1000")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    texts = distinct_texts(args.data)[0][:args.rows]
    load_start = os.getloadavg()
    from fewlabel.indexing.encoders.encoder import Encoder

    encoder = Encoder(args.model, backend=args.backend)
    encoder.encode(texts[:64])  # warm-up
    clean = [" ".join(t.split()) for t in texts]  # what predict reads back from the TSV
    began = time.perf_counter()
    encoder.encode(clean, batch_size=32)
    encoder_s = time.perf_counter() - began
    encoder_rate = len(clean) / encoder_s
    print(f"encoder: {encoder_rate:.1f} texts/s", flush=True)
    del encoder
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        big, small = work / "input.tsv", work / "small.tsv"
        write_input(texts, big, 1)
        write_input(texts[:20], small, 1)
        cli = [sys.executable, "-m", "fewlabel.retrieval.cli", "-q"]
        index = work / "index"
        subprocess.run([*cli, "index", "build", str(DEMO / "goemotions_ekman_train.tsv"), "--text-col", "text",
                        "--label-col", "labels", "--label-sep", ",", "--model", args.model, "--backend",
                        args.backend, "--method", "knn", "--out", str(index)], check=True, capture_output=True)
        for chunk in (int(c) for c in args.chunk_sizes.split(",")):
            predict = [*cli, "predict", str(index), "--text-col", "text", "--id-col", "id", "--backend",
                       args.backend, "--no-cache", "--no-resume", "--chunk-size", str(chunk)]
            fixed = timed([*predict, str(small), "--out", str(work / "small.csv")])
            total = timed([*predict, str(big), "--out", str(work / f"out-{chunk}.csv")])
            net = (len(texts) - 20) / max(total - fixed, 1e-9)  # the 20 rows' own work goes too
            runs.append({"chunk_size": chunk, "rows": len(texts), "wall_s": round(total, 1),
                         "fixed_s": round(fixed, 1), "rows_per_s_gross": round(len(texts) / total, 1),
                         "rows_per_s_net": round(net, 1), "ratio_net": round(net / encoder_rate, 3),
                         "ratio_gross": round(len(texts) / total / encoder_rate, 3)})
            print(runs[-1], flush=True)
    load_end = os.getloadavg()
    table = markdown_table(["chunk size", "rows", "wall s", "fixed s (20 rows)", "rows/s (wall)",
                            "rows/s (fixed cost taken off)", "encoder texts/s", "ratio (net)", "ratio (wall)"],
                           [[r["chunk_size"], f"{r['rows']:,}", r["wall_s"], r["fixed_s"], r["rows_per_s_gross"],
                             r["rows_per_s_net"], round(encoder_rate, 1), f"{r['ratio_net']:.2f}",
                             f"{r['ratio_gross']:.2f}"] for r in runs])
    body = (f"`fewlabel -q predict INDEX INPUT.tsv --backend {args.backend} --no-cache --chunk-size N` as a child "
            f"process, on {len(texts):,} real texts of the shared data (shuffled, as predict_100k), index of the "
            f"bundled GoEmotions sample ({args.model}, kNN vote, Flat). Encoder: `Encoder.encode` on the same texts "
            f"in batches of 32 in this process: {encoder_rate:.1f} texts/s. 'fixed' is the same command on 20 of "
            "the rows (start, model and index load); 'net' is the other rows over the time they added, "
            "(rows - 20) / (wall - fixed).\n\n" + table
            + f"\n\nCPU flags: {cpu_flags()}. Load average (1, 5, 15 min) at the start "
              f"{tuple(round(x, 2) for x in load_start)}, at the end "
              f"{tuple(round(x, 2) for x in load_end)}.\n" + (f"\n{args.note}\n" if args.note else ""))
    write_report(args.out, "predict_speed", "fewlabel predict against the encoder's own throughput", body,
                 {"runs": runs, "encoder_texts_per_s": round(encoder_rate, 1), "model": args.model,
                  "backend": args.backend, "load_average_start": load_start, "load_average_end": load_end},
                 data_note=f"{len(texts):,} distinct real texts of ../shared/data (the predict_100k order)")


if __name__ == "__main__":
    main()
