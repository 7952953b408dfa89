"""STS quality and speed on KorSTS (Korean) and STS-B (English) test sets. Writes `sts.md` and `sts.json`.

    python -m fewlabel.benchmarks.sts --data ../shared/data --out benchmarks/results
    python -m fewlabel.benchmarks.sts --train-cross-encoder e5-small:korsts --train-cross-encoder minilm:stsb --epochs 2
    python -m fewlabel.benchmarks.sts --train-cross-encoder e5-small:korsts+stsb   # trained on both train splits

Rows:
1. Cosine of each registry encoder, zero training: mean-pooled, normalised embeddings, cosine mapped to 0-5 by
   `5 * clip(cos, 0, 1)`. Pearson and Spearman do not depend on that map (it is monotone, and linear where
   cosines are positive); the binary F1 (score >= 3) does, which is why `--calibrations linear,isotonic` adds
   rows with the map fitted on the dataset's train split.
2. Optional: heads trained by `finetune/sts.py` on a dataset's train split, best epoch picked on its dev split
   (`--train-cross-encoder BASE:DATASET`, `--train-bi-encoder BASE:DATASET`, repeatable), with the shared
   settings below; training time is reported. Each trained head is scored on every dataset's test split.
   An interrupted training run resumes from its checkpoint
   when the script is run again (the row then says so, and its time covers the resumed part only); a finished
   head trained on the same pairs with the same settings is scored again, not retrained (its recorded training
   time is reported). Trained heads add a training-curve table and `NAME_curves.png` (loss, dev Pearson by epoch).
Every row is scored once on the full test split. Scoring time per 1,000 pairs excludes model loading and
uses no embedding cache (each distinct text is encoded once; a cross-encoder reads every pair twice, once
in each order). `--limit N` keeps the first N pairs of every split, to check the script, not to report."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from fewlabel.benchmarks.report import markdown_table, write_report
from fewlabel.finetune.runs import finished_run
from fewlabel.finetune.settings import RunOptions, TrainSettings, resolve_base
from fewlabel.finetune.sts.trainer import pairs_fingerprint, train_sts_bi_encoder, train_sts_cross_encoder
from fewlabel.indexing.encoders.encoder import Encoder
from fewlabel.indexing.files import fewlabel_home
from fewlabel.indexing.model_folder import STS_BI_KIND, STS_CROSS_KIND
from fewlabel.indexing.sts.metrics import pair_metrics
from fewlabel.indexing.sts.pairs import PairRow, read_pairs
from fewlabel.retrieval.sts.scorer import Calibration, STSScorer

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model here is local: never wait on the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATASETS = {"korsts": ("KorSTS", "korsts/sts-{split}.tsv"), "stsb": ("STS-B (en)", "stsb_en/sts-{split}.csv")}


def load_splits(data: Path, key: str, limit: int | None) -> dict[str, list[PairRow]]:
    _, pattern = DATASETS[key]
    return {split: read_pairs(data / pattern.format(split=split))[:limit] for split in ("train", "dev", "test")}


def timed_predict(scorer: STSScorer, rows: list[PairRow]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    scores = scorer.predict(rows)
    return scores, time.perf_counter() - started


def result_row(dataset: str, method: str, splits: dict, scores: np.ndarray, seconds: float, **extra) -> dict:
    metrics = pair_metrics(splits["test"], scores)
    assert metrics is not None  # the benchmark's test pairs are labelled
    row = {"dataset": dataset, "method": method, "train": extra.pop("train", 0), "test": len(splits["test"]),
           **metrics, "score_seconds": round(seconds, 2),
           "seconds_per_1000_pairs": round(1000 * seconds / max(1, len(splits["test"])), 2), **extra}
    print(row, flush=True)
    return row


def cosine_rows(dataset: str, splits: dict, model: str, calibrations: list[str], args) -> list[dict]:
    encoder = Encoder(model, device=args.device)
    scorer = STSScorer(encoder, batch_size=args.batch_size, show_progress=True)
    scores, seconds = timed_predict(scorer, splits["test"])
    rows = [result_row(dataset, f"cosine {model}", splits, scores, seconds)]
    if calibrations:
        train_sim = scorer.similarity(splits["train"])  # once per model, for every calibration
        test_sim = scorer.similarity(splits["test"])
        for method in calibrations:
            cal = Calibration(method).fit(train_sim, [r.score for r in splits["train"]])
            rows.append(result_row(dataset, f"cosine {model} + {method} map (fit on train)", splits,
                                   cal.predict(test_sim), seconds, train=len(splits["train"]),
                                   calibration=cal.to_dict() if method == "linear" else {"method": method}))
    return rows


def trained_rows(train_key: str, splits: dict, base: str, kind: str, eval_keys: list[str], args) -> list[dict]:
    """Train one head on `train_key` (one dataset, or several joined by '+'), then score it on the test split
    of every dataset in `eval_keys`, so each model is compared on Korean and English alike."""
    parts = train_key.split("+")
    train_pairs = [row for key in parts for row in splits[key]["train"]]
    dev_pairs = [row for key in parts for row in splits[key]["dev"]]
    trained_on = " + ".join(DATASETS[key][0] for key in parts)
    out = Path(args.model_dir) / f"sts-{kind}-{Path(base).name}-{train_key.replace('+', '-')}"
    settings = dict(epochs=args.epochs, lr=args.lr, batch_size=args.train_batch_size, max_length=args.max_length,
                    warmup_ratio=args.warmup_ratio, seed=args.seed, max_steps=args.max_steps, device=args.device,
                    show_progress=True)
    summary = finished_head(out, kind, base, train_pairs, dev_pairs, settings, args)
    if summary is not None:
        print(f"{out}: already trained with these settings and data; scoring it", flush=True)
    else:
        fields = {k: v for k, v in settings.items() if k not in ("device", "show_progress")}
        run = RunOptions(device=args.device, show_progress=True)
        if kind == "cross-encoder":
            frozen = TrainSettings(**fields, freeze_embeddings=args.freeze_embeddings)
            summary = train_sts_cross_encoder(train_pairs, dev_pairs, base, out, frozen, run=run)
        else:
            summary = train_sts_bi_encoder(train_pairs, dev_pairs, base, out, TrainSettings(**fields), run=run)
    scorer = STSScorer(str(out), device=args.device, batch_size=args.batch_size, show_progress=True)
    rows = []
    for key in eval_keys:
        scores, seconds = timed_predict(scorer, splits[key]["test"])
        rows.append(result_row(DATASETS[key][0], f"{kind} from {base}, trained on {trained_on}", splits[key], scores,
                               seconds, train=len(train_pairs), train_seconds=summary["train_seconds"],
                               steps=summary["steps"], dev=summary["dev"], resumed_from=summary["resumed_from"],
                               model_dir=str(out), curve=training_curve(out),
                               settings={k: v for k, v in settings.items() if k not in ("device", "show_progress")}))
    return rows


def finished_head(out: Path, kind: str, base: str, train_pairs: list[PairRow], dev_pairs: list[PairRow],
                  settings: dict, args) -> dict | None:
    """The summary of a head already trained in `out` on these pairs with these settings, else None, so that a
    rerun (say, after the report code changed) scores it again instead of spending hours training it again."""
    wanted_settings = {k: settings[k] for k in ("epochs", "lr", "batch_size", "max_length", "warmup_ratio", "seed",
                                                "max_steps")}
    if kind == "cross-encoder":
        wanted_settings["freeze_embeddings"] = args.freeze_embeddings
    wanted = {"kind": STS_CROSS_KIND if kind == "cross-encoder" else STS_BI_KIND, "base": resolve_base(base)[1]["name"],
              "settings": wanted_settings,
              "data": {"train_pairs": len(train_pairs), "dev_pairs": len(dev_pairs),
                       "train_fingerprint": pairs_fingerprint(train_pairs)}}
    info = finished_run(out, wanted)
    if info is None:
        return None
    return {"out_dir": str(out), **{k: info.get(k) for k in ("dev", "steps", "train_seconds", "resumed_from")}}


def training_curve(folder: Path) -> dict:
    """Training loss and dev Pearson by epoch, from the head's `training_log.jsonl` (the trainer's log)."""
    loss, dev = [], []
    log = folder / "training_log.jsonl"
    if log.is_file():
        for line in log.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if "loss" in entry:
                loss.append([entry["epoch"], entry["loss"]])
            pearson = next((v for k, v in entry.items() if k.startswith("eval_") and k.endswith("_pearson")), None)
            if pearson is not None:
                dev.append([entry["epoch"], pearson])
    return {"loss": loss, "dev_pearson": dev}


def trained_heads(results: list[dict]) -> dict[str, dict]:
    """One entry per trained head (its rows repeat it once per test set): method -> curve and settings."""
    return {r["method"]: r for r in results if r.get("curve")}


def curves_section(results: list[dict], png_name: str) -> str:
    heads = trained_heads(results)
    if not heads:
        return ""
    rows = [[method, f"{r['settings']['lr']:g}", r["settings"]["epochs"],
             ", ".join(f"{p:.3f}" for _, p in r["curve"]["dev_pearson"]) or "-"] for method, r in heads.items()]
    return ("\n\n## Training curves\n\nDev Pearson (one order, as the trainer evaluates it) after each epoch; the "
            "best epoch is the model kept.\n\n"
            + markdown_table(["head", "learning rate", "epochs", "dev Pearson by epoch"], rows)
            + f"\n\n![training curves]({png_name})")


def plot_curves(path: Path, results: list[dict]) -> None:
    from fewlabel.indexing.plots import pyplot

    plt = pyplot()  # Agg, with a Hangul font

    fig, (loss_ax, dev_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for method, r in trained_heads(results).items():
        if r["curve"]["loss"]:
            loss_ax.plot(*zip(*r["curve"]["loss"], strict=True), label=method, linewidth=1)
        if r["curve"]["dev_pearson"]:
            dev_ax.plot(*zip(*r["curve"]["dev_pearson"], strict=True), marker="o", label=method)
    loss_ax.set(title="training loss", xlabel="epoch", ylabel="loss")
    dev_ax.set(title="dev Pearson after each epoch", xlabel="epoch", ylabel="Pearson")
    for ax in (loss_ax, dev_ax):
        ax.grid(alpha=0.3)
    dev_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_runs(values: list[str], option: str) -> list[tuple[str, str]]:
    runs = []
    for value in values:
        base, _, dataset = value.rpartition(":")
        if not base or not all(part in DATASETS for part in dataset.split("+")):
            raise SystemExit(f"{option} {value!r}: expected BASE:DATASET with DATASET in {', '.join(DATASETS)} "
                             "(or several joined by '+')")
        runs.append((base, dataset))
    return runs


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def table(results: list[dict]) -> str:
    lines = ["| data | method | train pairs | test pairs | Pearson | Spearman | binary F1 | training | "
             "scoring / 1,000 pairs |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        training = f"{r['train_seconds']:.0f} s ({r['steps']:,} steps)" if "train_seconds" in r else "-"
        if r.get("resumed_from"):
            training += ", resumed: time of the last part only"
        lines.append(f"| {r['dataset']} | {r['method']} | {r['train']:,} | {r['test']:,} | {fmt(r['pearson'])} | "
                     f"{fmt(r['spearman'])} | {fmt(r['binary_f1'])} | {training} | "
                     f"{r['seconds_per_1000_pairs']:.1f} s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--datasets", default="korsts,stsb")
    parser.add_argument("--models", default="e5-small,minilm", help="encoders for the cosine rows ('' for none)")
    parser.add_argument("--calibrations", default="", help="also fit these maps on train: linear,isotonic")
    parser.add_argument("--batch-size", type=int, default=64, help="scoring batch size")
    parser.add_argument("--device", default=None)
    parser.add_argument("--limit", type=int, default=None, help="first N pairs of every split (checks only)")
    parser.add_argument("--train-cross-encoder", action="append", default=[], metavar="BASE:DATASET")
    parser.add_argument("--train-bi-encoder", action="append", default=[], metavar="BASE:DATASET")
    parser.add_argument("--model-dir", default=str(fewlabel_home() / "benchmark-models"),
                        help="where trained heads are saved (default: $FEWLABEL_HOME/benchmark-models)")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--train-batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--freeze-embeddings", action="store_true",
                        help="cross-encoders: keep the word-embedding matrix fixed (faster on a CPU)")
    parser.add_argument("--name", default="sts", help="report file name (default: sts -> sts.md, sts.json)")
    args = parser.parse_args()

    data = Path(args.data)
    datasets = [d for d in args.datasets.split(",") if d]
    models = [m for m in args.models.split(",") if m]
    calibrations = [c for c in args.calibrations.split(",") if c]
    runs = ([(b, d, "cross-encoder") for b, d in parse_runs(args.train_cross_encoder, "--train-cross-encoder")]
            + [(b, d, "bi-encoder") for b, d in parse_runs(args.train_bi_encoder, "--train-bi-encoder")])
    needed = {*datasets, *(part for _, d, _ in runs for part in d.split("+"))}
    splits = {key: load_splits(data, key, args.limit) for key in needed}

    results: list[dict] = []
    for key in datasets:
        for model in models:
            results.extend(cosine_rows(DATASETS[key][0], splits[key], model, calibrations, args))
    for base, key, kind in runs:
        results.extend(trained_rows(key, splits, base, kind, datasets, args))

    sizes = {DATASETS[k][0]: {s: len(v) for s, v in splits[k].items()} for k in splits}
    limit_note = f" **Limited to the first {args.limit} pairs of every split: a check, not a result.**" \
        if args.limit else ""
    body = (
        "Cosine rows: zero training; mean-pooled, L2-normalised embeddings (e5-small with its `query: ` prefix on "
        "both sides); score = 5 * clip(cos, 0, 1). Pearson/Spearman are against the gold 0-5 scores of the test "
        "split; binary F1 is for score >= 3 on both sides. Trained rows: `finetune/sts.py` on train, best epoch by "
        "dev Pearson, cross-encoders averaged over both sentence orders. Scoring time per 1,000 test pairs "
        "excludes model loading and uses no embedding cache (a calibrated row reuses its cosine row's encoding, so "
        "its time is the same)." + limit_note + "\n\n"
        f"Split sizes: {', '.join(f'{n}: ' + ' / '.join(f'{v:,}' for v in s.values()) for n, s in sizes.items())} "
        "(train / dev / test).\n\n" + table(results)
        + curves_section(results, f"{args.name}_curves.png"))
    if trained_heads(results):
        Path(args.out).mkdir(parents=True, exist_ok=True)  # the plot comes before the report makes the folder
        plot_curves(Path(args.out) / f"{args.name}_curves.png", results)
    write_report(Path(args.out), args.name, "STS: cosine and trained heads on KorSTS and STS-B", body,
                 {"results": results, "limit": args.limit, "sizes": sizes},
                 data_note=f"{data} (korsts, stsb_en)")


if __name__ == "__main__":
    main()
