"""Quality of the ONNX backends against torch, and of each int8 recipe tried: STS Pearson (cosine of the two
sentences' vectors against the gold score) on KorSTS test (e5-small) and STS-B test (minilm and e5-small), and
kNN micro-F1 on GoEmotions-ekman (minilm; index on train, k and m tuned on dev, test scored once, as in
knn_quality.py). Writes `onnx_quality.md` and `onnx_quality.json`; speed.py puts the table into speed.md.

    python -m fewlabel.benchmarks.onnx_quality --data ../shared/data --out benchmarks/results

Bounds (issue 15): onnx vectors equal torch's; onnx-int8 loses at most 0.005 Pearson and 0.005 micro-F1."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from fewlabel.benchmarks.int8_recipes import recipe_quantizer
from fewlabel.benchmarks.knn_quality import goemotions_splits
from fewlabel.benchmarks.report import markdown_table, write_report
from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path
from fewlabel.indexing.encoders.encoder import Encoder
from fewlabel.indexing.encoders.onnx_backend import INT8_RECIPE, OnnxRunner, quantize_int8
from fewlabel.indexing.sts.metrics import pair_metrics
from fewlabel.indexing.sts.pairs import read_pairs

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BOUND = 0.005
# Every int8 recipe tried, in order; the one the backend ships (INT8_RECIPE) is marked in the report.
VARIANTS: dict[str, dict] = {
    "dynamic, defaults (all op types, per-tensor)": {"op_types": None, "per_channel": False},
    "MatMul only, per-tensor": {"op_types": ["MatMul"], "per_channel": False},
    "MatMul only, per-channel": {"op_types": ["MatMul"], "per_channel": True},
    "MatMul only, per-channel, FFN output kept fp32": {"op_types": ["MatMul"], "per_channel": True,
                                                       "exclude": [r"layer\.\d+/output/dense/MatMul$"]},
    "fused attention, MatMul + Attention, per-channel": {"op_types": ["MatMul", "Attention"], "per_channel": True,
                                                         "fuse": True},
    "fused attention, MatMul + Attention, per-channel, FFN output kept fp32": {
        "op_types": ["MatMul", "Attention"], "per_channel": True, "fuse": True,
        "exclude": [r"layer\.\d+/output/dense/MatMul$"]},
    # added on 2026-11-30: weight-only int8 (activations stay fp32) and static calibration on the demo texts
    "weight-only int8 MatMulNBits, blocks of 32, fp32 compute": {"kind": "weight-only", "block_size": 32},
    "weight-only int8 MatMulNBits, blocks of 32, int8 compute (accuracy level 4)": {
        "kind": "weight-only", "block_size": 32, "accuracy_level": 4},
    "weight-only 4-bit MatMulNBits, blocks of 32, fp32 compute": {"kind": "weight-only", "block_size": 32,
                                                                  "bits": 4},
    "weight-only 4-bit MatMulNBits, blocks of 32, int8 compute (accuracy level 4)": {
        "kind": "weight-only", "block_size": 32, "bits": 4, "accuracy_level": 4},
    "static QDQ, MinMax calibration on 512 demo texts, per-channel, FFN output kept fp32": {
        "kind": "static", "op_types": ["MatMul"], "per_channel": True, "calibration": "MinMax",
        "exclude": [r"layer\.\d+/output/dense/MatMul$"]},
    "static QDQ, Percentile calibration on 512 demo texts, per-channel, FFN output kept fp32": {
        "kind": "static", "op_types": ["MatMul"], "per_channel": True, "calibration": "Percentile",
        "exclude": [r"layer\.\d+/output/dense/MatMul$"]},
}
VARIANTS = {name: {"reduce_range": False, "exclude": [], "fuse": False, **recipe} for name, recipe in VARIANTS.items()}
STS_SETS = {"KorSTS test": "korsts/sts-test.tsv", "STS-B test": "stsb_en/sts-test.csv"}
STS_RUNS = [("e5-small", "KorSTS test"), ("e5-small", "STS-B test"), ("minilm", "STS-B test")]


def calibration_texts(n: int = 512) -> list[str]:
    """The first ``n`` demo training texts, Korean (NSMC) and English (GoEmotions) taken in turn: the bundled
    text a static recipe calibrates on (never a test set scored here)."""
    import csv

    from fewlabel.retrieval.demo import DEMO_DATA

    def texts(name: str) -> list[str]:
        with open(DEMO_DATA / name, encoding="utf-8", newline="") as fh:
            return [row["text"] for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)]

    korean, english = texts("nsmc_train.tsv"), texts("goemotions_ekman_train.tsv")
    mixed = [t for pair in zip(korean, english, strict=False) for t in pair]
    return mixed[:n]


def with_recipe(encoder: Encoder, recipe: dict) -> Encoder:
    """``encoder`` (an onnx one) switched to the int8 model of ``recipe`` (made once, cached like the shipped
    one). Its cache key is the shipped recipe's, so these runs never use the embedding cache."""
    from fewlabel.indexing.encoders.onnx_backend import export_folder

    fp32 = export_folder(encoder.weights_fingerprint(), "onnx")
    texts = calibration_texts() if recipe.get("kind") == "static" else None
    encoder.model = OnnxRunner(quantize_int8(fp32, encoder.weights_fingerprint(), recipe,
                                             quantizer=recipe_quantizer(texts)))
    encoder.backend = "onnx-int8"
    return encoder


def sts_pearson(encoder: Encoder, rows) -> float:
    a = encoder.encode([r.sentence1 for r in rows], batch_size=32)
    b = encoder.encode([r.sentence2 for r in rows], batch_size=32)
    metrics = pair_metrics(rows, (a * b).sum(axis=1))
    assert metrics is not None  # the STS sets here are labelled
    return float(metrics["pearson"])


def knn_micro_f1(encoder: Encoder, splits: dict, cache: EmbeddingCache | None) -> dict:
    from fewlabel.indexing.store.label_index import LabelIndex
    from fewlabel.retrieval.knn.saved_index import evaluate, tune_index
    from fewlabel.retrieval.router import predict_rows

    index = LabelIndex.build(splits["train"], encoder, cache=cache, batch_size=32)
    tuning = tune_index(index, encoder, splits["dev"], cache=cache, batch_size=32)
    scores = evaluate(predict_rows(index, encoder, splits["test"], cache=cache, batch_size=32), splits["test"],
                      index.label_names)
    return {"micro_f1": float(scores["micro_f1"]), "k": tuning.k, "m": tuning.m}


def encoders(model: str, variants: dict[str, dict]):
    """(label, encoder) for torch, onnx and each int8 recipe of ``model``."""
    yield "torch", Encoder(model, device="cpu", backend="torch")
    yield "onnx", Encoder(model, backend="onnx")
    for name, recipe in variants.items():
        yield f"onnx-int8: {name}", with_recipe(Encoder(model, backend="onnx"), recipe)


def run(data: Path, variants: dict[str, dict], *, knn: bool, knn_variants: int = 2,
        models: tuple[str, ...] = ("e5-small", "minilm"), sts_sets: tuple[str, ...] = tuple(STS_SETS)) -> list[dict]:
    """STS for every backend and recipe; GoEmotions kNN (minutes each) for torch, onnx and the ``knn_variants``
    int8 recipes with the smallest STS loss on minilm."""
    results: list[dict] = []
    sets = {name: read_pairs(data / path) for name, path in STS_SETS.items()}
    cache = EmbeddingCache(default_cache_path())
    splits = goemotions_splits(data) if knn else None
    for model in models:
        kept = {}
        for label, encoder in encoders(model, variants):
            for run_model, set_name in STS_RUNS:
                if run_model != model or set_name not in sts_sets:
                    continue
                started = time.perf_counter()
                value = sts_pearson(encoder, sets[set_name])
                results.append({"model": model, "backend": label, "task": f"{set_name} Pearson", "value": value,
                                "seconds": round(time.perf_counter() - started, 1)})
                print(results[-1], flush=True)
            if knn and model == "minilm":
                kept[label] = encoder  # for kNN below (e5's are dropped: each holds a few hundred MB)
        if not (knn and model == "minilm"):
            continue
        assert splits is not None  # read above whenever knn is on
        losses = {label: max(base["value"] - r["value"] for r in results
                             for base in results if r["backend"] == label and base["backend"] == "torch"
                             and base["model"] == r["model"] and base["task"] == r["task"])
                  for label in kept if label.startswith("onnx-int8")}
        chosen = ["torch", "onnx", *sorted(losses, key=losses.__getitem__)[:knn_variants]]
        for label in chosen:
            started = time.perf_counter()
            # torch and onnx share cache keys (exact vectors); the int8 recipes tried here never touch the cache
            scores = knn_micro_f1(kept[label], splits, cache if label in ("torch", "onnx") else None)
            results.append({"model": model, "backend": label, "task": "GoEmotions-ekman kNN micro-F1",
                            "value": scores["micro_f1"], "k": scores["k"], "m": scores["m"],
                            "seconds": round(time.perf_counter() - started, 1)})
            print(results[-1], flush=True)
    return results


def with_losses(results: list[dict]) -> list[dict]:
    """Each result with its loss against torch on the same model and task, and whether it is within bounds."""
    base = {(r["model"], r["task"]): r["value"] for r in results if r["backend"] == "torch"}
    for r in results:
        r["loss"] = base[(r["model"], r["task"])] - r["value"]
        r["within_bound"] = r["loss"] <= BOUND
    return results


def quality_table(results: list[dict]) -> str:
    shipped = next((name for name, recipe in VARIANTS.items() if recipe == INT8_RECIPE), None)
    rows = []
    for r in results:
        label = r["backend"] + (" (shipped)" if shipped and r["backend"].endswith(shipped) else "")
        rows.append([r["model"], r["task"], label, f"{r['value']:.4f}",
                     "-" if r["backend"] == "torch" else f"{r['loss']:+.4f}",
                     "-" if r["backend"] == "torch" else ("yes" if r["within_bound"] else "**no**"),
                     f"{r['seconds']:.1f}"])
    return markdown_table(["model", "task", "backend", "score", "loss vs torch", f"loss <= {BOUND}",
                           "seconds (whole set)"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--variants", default="all", help="comma-separated variant numbers (1-based) or all")
    parser.add_argument("--no-knn", action="store_true", help="skip GoEmotions kNN (minutes)")
    parser.add_argument("--models", default="e5-small,minilm", help="encoders, comma-separated")
    parser.add_argument("--sts-sets", default=",".join(STS_SETS), help="STS sets, comma-separated")
    parser.add_argument("--name", default="onnx_quality", help="report name (default: onnx_quality)")
    args = parser.parse_args()
    names = list(VARIANTS)
    chosen = names if args.variants == "all" else [names[int(i) - 1] for i in args.variants.split(",")]
    results = with_losses(run(Path(args.data), {n: VARIANTS[n] for n in chosen}, knn=not args.no_knn,
                              models=tuple(m for m in args.models.split(",") if m),
                              sts_sets=tuple(n for n in args.sts_sets.split(",") if n)))
    body = ("Scores of torch, onnx (fp32 export) and each int8 recipe tried, same texts, same batches (32). "
            "STS: cosine of the two sentences' normalised vectors against the gold score, all test pairs. kNN: "
            "GoEmotions-ekman, index on train, k and m tuned on dev by micro-F1, test scored once "
            "(knn_quality.py's method). Seconds: the time to encode the whole set (both sides of every pair), all "
            "runners in one process one after another, so they compare within a run.\n\n" + quality_table(results))
    write_report(Path(args.out), args.name, "ONNX and int8 encoders: quality against torch", body,
                 {"results": results, "variants": {n: VARIANTS[n] for n in chosen}, "shipped": INT8_RECIPE,
                  "bound": BOUND}, data_note=f"{args.data} (korsts, stsb_en, goemotions/ekman)")


if __name__ == "__main__":
    main()
