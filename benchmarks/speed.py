"""Encoder speed on the CPU: plain sentence-transformers against fewlabel's torch, onnx and onnx-int8 backends, for
minilm and e5-small, in one run on the same texts; the quality of each backend (from onnx_quality.json); and
cross-encoder pairs per second. Writes `speed.md` and `speed.json`.

    python -m fewlabel.benchmarks.onnx_quality --data ../shared/data --out benchmarks/results   # quality first
    python -m fewlabel.benchmarks.speed --data ../shared/data --out benchmarks/results

Why: encoding is most of the time of every command (index build, predict, zero-shot, the slices benchmark), and
issue 15 asks for the ONNX backends to reach 1.8x (onnx, exact vectors) and 3x (onnx-int8, e5-small) of plain
sentence-transformers on the same machine in the same run.

Method: three text sets (short Korean: NSMC reviews; short English: GoEmotions comments; long English: eight
consecutive GoEmotions comments joined into one text, truncated at the model's maximum length). Every runner gets
the same texts, batch size 32, normalised output; sentence-transformers is given the e5 `query: ` prefix that
fewlabel adds itself. One warm-up batch per runner, then `--repeats` rounds in which every runner encodes the set
once, in turn (so a load change on the shared machine hits all runners alike); the median round is reported. The
ratio is each runner's speed over plain sentence-transformers' in the same run."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fewlabel.benchmarks.knn_quality import goemotions_splits
from fewlabel.benchmarks.report import markdown_table, write_report
from fewlabel.indexing.encoders.encoder import Encoder
from fewlabel.indexing.hf import quiet_hf

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model here is local: never wait on the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BATCH = 32
TARGETS = {"fewlabel onnx": 1.8, "fewlabel onnx-int8": 3.0}  # e5-small, over plain sentence-transformers


METHOD = __doc__.split("Method: ", 1)[1].strip()


def log(message: str) -> None:
    print(message, flush=True)


def text_sets(data: Path, n_short: int, n_long: int) -> dict[str, list[str]]:
    """The three sets, read from the shared data in file order (no sampling: the same texts every run)."""
    import pandas as pd

    nsmc = pd.read_csv(data / "nsmc" / "rebuilt_ratings_test.txt", sep="\t", quoting=3, dtype=str)
    korean = [t for t in nsmc.document if isinstance(t, str) and t.strip()][:n_short]
    english = [r.text for r in goemotions_splits(data)["train"]]
    long = [" ".join(english[i:i + 8]) for i in range(n_short, n_short + 8 * n_long, 8)]
    return {"short Korean (NSMC)": korean, "short English (GoEmotions)": english[:n_short],
            "long English (8 GoEmotions comments joined)": long}


def runners(model: str) -> dict[str, Callable[[list[str]], np.ndarray]]:
    """Each runner as texts -> normalised vectors."""
    from sentence_transformers import SentenceTransformer

    encoders = {backend: Encoder(model, device="cpu", backend=backend) for backend in ("torch", "onnx", "onnx-int8")}
    torch_encoder = encoders["torch"]
    with quiet_hf():
        st = SentenceTransformer(torch_encoder.location, device="cpu")
    st.max_seq_length = torch_encoder.max_length  # the same truncation on both sides
    prefix = torch_encoder.prefix

    def plain(texts: list[str]) -> np.ndarray:
        return st.encode([prefix + t for t in texts], batch_size=BATCH, normalize_embeddings=True,
                         convert_to_numpy=True, show_progress_bar=False)

    out: dict[str, Callable[[list[str]], np.ndarray]] = {"sentence-transformers": plain}
    for backend, encoder in encoders.items():
        out[f"fewlabel {backend}"] = (lambda e: lambda texts: e.encode(texts, batch_size=BATCH))(encoder)
    return out


def time_model(model: str, sets: dict[str, list[str]], repeats: int,
               run: dict[str, Callable[[list[str]], np.ndarray]] | None = None) -> list[dict]:
    """Every runner of ``run`` (default: :func:`runners`; the first one is the base of the ratios) on every set,
    in rounds, one after another (see Method)."""
    run = run or runners(model)
    base_name = next(iter(run))
    results = []
    for set_name, texts in sets.items():
        vectors = {name: fn(texts[:BATCH]) for name, fn in run.items()}  # warm-up (and sessions' first run)
        seconds: dict[str, list[float]] = {name: [] for name in run}
        for _ in range(repeats):
            for name, fn in run.items():
                started = time.perf_counter()
                vectors[name] = fn(texts)
                seconds[name].append(time.perf_counter() - started)
        base = statistics.median(seconds[base_name])
        reference = vectors[base_name]
        for name in run:
            median = statistics.median(seconds[name])
            cos = (vectors[name] * reference).sum(axis=1)
            results.append({"model": model, "texts": set_name, "n": len(texts), "runner": name,
                            "seconds": [round(s, 3) for s in seconds[name]], "median_seconds": round(median, 3),
                            "per_second": round(len(texts) / median, 1), "ratio": round(base / median, 2),
                            "min_cosine_to_st": round(float(cos.min()), 6)})
            log(f"[{model}] {set_name}: {name} {results[-1]['per_second']} texts/s, x{results[-1]['ratio']}, "
                f"min cosine {results[-1]['min_cosine_to_st']}")
    return results


def cross_encoder_speed(sets: dict[str, list[str]], repeats: int) -> list[dict]:
    """Pairs per second of a sentence-transformers CrossEncoder on minilm's body (a fresh one-output head: the
    same work as a trained STS head of that size), torch only (see README "Fast inference")."""
    from sentence_transformers import CrossEncoder

    from fewlabel.indexing.encoders.registry import REGISTRY

    english = sets["short English (GoEmotions)"]
    pairs = list(zip(english[0::2], english[1::2], strict=False))
    with quiet_hf():
        head = CrossEncoder(str(REGISTRY["minilm"].locate()), num_labels=1, device="cpu", max_length=256)
    head.predict(pairs[:BATCH], batch_size=BATCH, show_progress_bar=False)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        head.predict(pairs, batch_size=BATCH, show_progress_bar=False)
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    log(f"cross-encoder torch: {len(pairs) / median:.1f} pairs/s")
    return [{"model": "minilm body, 1-output head", "backend": "torch", "pairs": len(pairs),
             "seconds": [round(s, 3) for s in seconds], "pairs_per_second": round(len(pairs) / median, 1)}]


def speed_table(results: list[dict]) -> str:
    rows = [[r["model"], r["texts"], f"{r['n']:,}", r["runner"], f"{r['per_second']:.1f}", f"{r['ratio']:.2f}x",
             f"{r['min_cosine_to_st']:.4f}"] for r in results]
    return markdown_table(["model", "texts", "n", "runner", "texts/s (median)", "vs sentence-transformers",
                           "min cosine to sentence-transformers"], rows)


def targets_section(results: list[dict]) -> str:
    lines = []
    for runner, target in TARGETS.items():
        ratios = [r["ratio"] for r in results if r["model"] == "e5-small" and r["runner"] == runner]
        if ratios:
            low, high = min(ratios), max(ratios)
            reached = "reached" if low >= target else ("reached on some sets" if high >= target else "not reached")
            lines.append(f"- {runner} on e5-small: {low:.2f}x to {high:.2f}x over plain sentence-transformers "
                         f"across the three sets; target {target}x: **{reached}**.")
    return "\n".join(lines)


def quality_section(out: Path) -> str:
    path = out / "onnx_quality.json"
    if not path.is_file():
        return "Not measured in this run: run `python -m fewlabel.benchmarks.onnx_quality` first."
    from fewlabel.benchmarks.onnx_quality import quality_table

    record = json.loads(path.read_text())
    return (f"From `onnx_quality.md` ({record['date']}; command `{record['command']}`). Loss = torch's score minus "
            f"the backend's; the bound is {record['bound']}.\n\n" + quality_table(record["results"]))


def predict_section(out: Path) -> str:
    """The rows/s and peak memory of `fewlabel predict` from predict_100k.json (its own benchmark: it runs the
    command as a child process for half an hour)."""
    path = out / "predict_100k.json"
    if not path.is_file():
        return "Not measured yet: run `python -m fewlabel.benchmarks.predict_large` first."
    record = json.loads(path.read_text())
    runs = record["runs"]
    return (f"From `predict_100k.md` ({record['date']}; command `{record['command']}`): `fewlabel predict` with "
            f"{record['model']} on the {record['backend']} backend, chunks of {record['chunk_size']:,} rows.\n\n"
            + markdown_table(["rows", "embedding cache", "rows/s", "peak RSS MiB"],
                             [[f"{r['rows']:,}", r["cache"], f"{r['rows_per_s']:,.1f}", f"{r['peak_rss_mib']:,}"]
                              for r in runs]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--n-short", type=int, default=512, help="texts in each short set")
    parser.add_argument("--n-long", type=int, default=96, help="texts in the long set")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="minilm,e5-small")
    parser.add_argument("--load-note", default="", help="what else ran on the machine during timing")
    args = parser.parse_args()
    import onnxruntime
    import torch

    data, out = Path(args.data), Path(args.out)
    sets = text_sets(data, args.n_short, args.n_long)
    load_before = os.getloadavg()
    results = [r for model in args.models.split(",") for r in time_model(model, sets, args.repeats)]
    cross = cross_encoder_speed(sets, args.repeats)
    load_after = os.getloadavg()
    body = (
        f"All on the CPU: torch {torch.__version__} with {torch.get_num_threads()} threads, onnxruntime "
        f"{onnxruntime.__version__} with its default thread count (the physical cores). Load average (1, 5, 15 min) "
        f"{', '.join(f'{x:.1f}' for x in load_before)} at the start and {', '.join(f'{x:.1f}' for x in load_after)} "
        f"at the end{': ' + args.load_note if args.load_note else ''}. The ratios within this run are what count; "
        "the absolute numbers move with the load.\n\n"
        "## Encoders\n\n" + METHOD[0].upper() + METHOD[1:] + "\n\n" + speed_table(results) + "\n\n"
        "Targets (issue 15):\n\n" + targets_section(results) + "\n\n"
        "## Quality of the backends\n\n" + quality_section(out) + "\n\n"
        "## Cross-encoder heads\n\n"
        "The STS, NLI and relation heads are sentence-transformers `CrossEncoder`s. Their ONNX backend needs "
        "optimum (`optimum-onnx` pins transformers < 4.58), which would downgrade transformers 5 and break "
        "sentence-transformers 6 here, so the heads run on torch only; `--backend onnx` is refused for them.\n\n"
        + markdown_table(["model", "backend", "pairs", "pairs/s (median)"],
                         [[c["model"], c["backend"], f"{c['pairs']:,}", f"{c['pairs_per_second']:.1f}"]
                          for c in cross]) + "\n\n"
        "## predict end to end\n\n" + predict_section(out) + "\n")
    payload = {"settings": {"batch_size": BATCH, "repeats": args.repeats, "n_short": args.n_short,
                            "n_long": args.n_long, "torch_threads": torch.get_num_threads(),
                            "onnxruntime": onnxruntime.__version__, "load_before": load_before,
                            "load_after": load_after, "load_note": args.load_note},
               "encoders": results, "cross_encoders": cross}
    path = write_report(out, "speed", "Speed: encoder backends against sentence-transformers (CPU)", body, payload,
                        data_note=f"{data} (nsmc test, goemotions/ekman train)")
    log(f"wrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    main()
