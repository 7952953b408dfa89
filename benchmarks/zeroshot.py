"""Zero-shot labelling and the kNN -> zero-shot fallback. Writes `zeroshot.md`, `zeroshot.json` and `zeroshot.png`.

    python -m fewlabel.benchmarks.zeroshot --data ../shared/data --out benchmarks/results
    python -m fewlabel.benchmarks.zeroshot --limit 12 --base minilm --encoder minilm --max-steps 2 --out /tmp/zs-check

1. **NLI head.** A 3-way cross-encoder trained by `finetune/nli.py` from `--base` on KLUE-NLI dev + KorNLI
   (XNLI-ko) dev, less a seeded 5% hold-out that picks the best epoch; scored once on XNLI-ko test: accuracy,
   per-class F1, training time. A model folder already in `--nli-dir` made from the same base and data is
   reused (its recorded scores and training time are reported).
2. **Zero-shot** on GoEmotions-ekman test (English, multi-label, 7 labels) and an NSMC test sample (Korean,
   positive/negative; labels named 긍정/부정 in the template `--nsmc-template`), with the NLI head and with
   the embedding zero-shot (`--encoder`). Micro/macro-F1 of the top-1 label, F1 against the threshold
   (curves), and for GoEmotions the threshold chosen on a dev sample and applied to test. Texts per second
   exclude model loading.
3. **The fallback's worth.** GoEmotions-ekman train indexed with every example of `--drop-labels` removed, k
   and m tuned on dev (the dropped labels stripped). kNN alone cannot give those labels; the `Predictor`
   with each fallback (all 7 labels declared, min_examples 5, similarity threshold tuned on a dev sample)
   scores them by zero-shot. Macro-F1 on test, with the dropped labels' own F1.

`--limit N` keeps the first N rows of every split (and N training pairs), to check the script, not to report."""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from fewlabel.benchmarks.knn_quality import goemotions_splits
from fewlabel.benchmarks.report import markdown_table, write_report
from fewlabel.finetune.nli.trainer import nli_fingerprint, train_nli_cross_encoder
from fewlabel.finetune.settings import RunOptions, TrainSettings
from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path
from fewlabel.indexing.encoders.encoder import Encoder
from fewlabel.indexing.files import fewlabel_home
from fewlabel.indexing.nli.data import NLIPair, read_nli
from fewlabel.indexing.readers import Row, label_matrix
from fewlabel.indexing.store.label_index import LabelIndex
from fewlabel.retrieval.knn.saved_index import evaluate, tune_index
from fewlabel.retrieval.router import Predictor, predict_rows, summarise_routes
from fewlabel.retrieval.zeroshot.labels import LabelSet, parse_labels
from fewlabel.retrieval.zeroshot.probabilities import select_labels
from fewlabel.retrieval.zeroshot.scorers import EmbeddingZeroShot, NLIZeroShot

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model here is local: never wait on the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

NSMC_LABELS = {"negative": ["부정"], "positive": ["긍정"]}
NSMC_TEMPLATE = "이 영화 리뷰는 {}적이다."
THRESHOLDS = [round(t, 2) for t in np.linspace(0.05, 0.95, 19)]


# ---- data ------------------------------------------------------------------------------------------------
def nli_data(data: Path, limit: int | None, seed: int) -> dict[str, list[NLIPair]]:
    pool = read_nli(data / "klue_nli" / "klue-nli-v1.1_dev.json") + read_nli(data / "kornli" / "xnli.dev.ko.tsv")
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    n_dev = max(3, len(pool) // 20)
    dev, train = [pool[i] for i in order[:n_dev]], [pool[i] for i in order[n_dev:]]
    test = read_nli(data / "kornli" / "xnli.test.ko.tsv")
    if limit:
        train, dev, test = train[:limit], dev[:max(3, limit // 4)], test[:limit]
    return {"train": train, "dev": dev, "test": test}


def nsmc_sample(data: Path, n: int, seed: int) -> list[Row]:
    df = pd.read_csv(data / "nsmc" / "rebuilt_ratings_test.txt", sep="\t", quoting=3, dtype=str)
    df = df.sample(n=min(n, len(df)), random_state=seed)
    name = {"0": "negative", "1": "positive"}
    return [Row(text=t, labels=(name[lab],), id=str(i), line=0) for i, t, lab in zip(df.id, df.document, df.label,
                                                                                     strict=True)]


# ---- 1. the NLI head ------------------------------------------------------------------------------------
def nli_head(splits: dict[str, list[NLIPair]], args) -> dict:
    out = Path(args.nli_dir)
    marker = out / "fewlabel_model.json"
    if marker.is_file() and not args.retrain:
        info = json.loads(marker.read_text())
        same = (info.get("base") == args.base
                and info["data"].get("train_fingerprint") == nli_fingerprint(splits["train"])
                and (info.get("test") or {}).get("n") == len(splits["test"]))
        if same:
            print(f"reusing the NLI head in {out}", flush=True)
            return {"model_dir": str(out), "reused": True, "dev": info["dev"], "test": info["test"],
                    "train_seconds": info["train_seconds"], "steps": info["steps"], "settings": info["settings"],
                    "train_pairs": len(splits["train"]), "dev_pairs": len(splits["dev"])}
    settings = TrainSettings(epochs=args.epochs, lr=args.lr, batch_size=args.train_batch_size,
                             max_length=args.max_length, seed=args.seed, max_steps=args.max_steps)
    summary = train_nli_cross_encoder(splits["train"], splits["dev"], args.base, out, settings,
                                      test_pairs=splits["test"], run=RunOptions(device=args.device),
                                      sources={"train": "klue_nli dev + kornli xnli.dev.ko (less a 5% dev hold-out)",
                                               "dev": "5% seeded hold-out of the training pool",
                                               "test": "kornli/xnli.test.ko.tsv"})
    info = json.loads(marker.read_text())
    return {"model_dir": str(out), "reused": False, "dev": summary["dev"], "test": summary["test"],
            "train_seconds": summary["train_seconds"], "steps": summary["steps"], "settings": info["settings"],
            "train_pairs": len(splits["train"]), "dev_pairs": len(splits["dev"])}


# ---- 2. zero-shot -----------------------------------------------------------------------------------------
class MemoZeroShot:
    """Remembers an NLI scorer's scores per (text, label set), so sections 2 and 3 score each text once."""

    def __init__(self, inner: NLIZeroShot) -> None:
        self.inner = inner
        self.memo: dict[tuple, np.ndarray] = {}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def scores(self, texts, labels=None):
        label_set = self.inner._labels(labels)
        key = json.dumps(label_set.to_dict(), ensure_ascii=False)
        missing = list(dict.fromkeys(t for t in texts if (key, t) not in self.memo))
        if missing:
            for text, row in zip(missing, self.inner.scores(missing, label_set), strict=True):
                self.memo[(key, text)] = row
        return np.stack([self.memo[(key, t)] for t in texts]) if texts else np.zeros((0, len(label_set)))


def f1s(y: np.ndarray, pred: np.ndarray) -> dict:
    return {"micro_f1": float(f1_score(y, pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0))}


def curve(y: np.ndarray, scores: np.ndarray, thresholds: list[float]) -> list[dict]:
    return [{"threshold": float(t), **f1s(y, select_labels(scores, threshold=t))} for t in thresholds]


def zero_shot_rows(dataset: str, rows: list[Row], dev: list[Row] | None, labels: LabelSet, scorers: dict) -> list[dict]:
    y = label_matrix(rows, labels.names, dataset)
    results = []
    for method, scorer in scorers.items():
        started = time.perf_counter()
        scores = scorer.scores([r.text for r in rows], labels)
        seconds = time.perf_counter() - started
        cosine = method == "embed" and scorer.multi_label
        grid = ([round(float(t), 4) for t in np.quantile(scores, np.linspace(0.05, 0.95, 19))] if cosine
                else THRESHOLDS)
        row = {"dataset": dataset, "method": method, "n": len(rows), "top1": f1s(y, select_labels(scores, top_k=1)),
               "curve": curve(y, scores, grid), "seconds": round(seconds, 2),
               "texts_per_second": round(len(rows) / seconds, 1) if seconds > 0 else None,
               "scores_are": "cosine" if cosine else ("P(entail vs contradict)" if scorer.multi_label and
                                                      method == "nli" else "softmax over labels"),
               "template": scorer.template or "auto (English / Korean by the label name)"}
        if dev:
            dev_scores = scorer.scores([r.text for r in dev], labels)
            dev_curve = curve(label_matrix(dev, labels.names, "dev"), dev_scores, grid)
            best = max(dev_curve, key=lambda c: c["macro_f1"])
            row["dev_threshold"] = best["threshold"]
            row["at_dev_threshold"] = f1s(y, select_labels(scores, threshold=best["threshold"]))
        print({k: v for k, v in row.items() if k != "curve"}, flush=True)
        results.append(row)
    return results


# ---- 3. the fallback's worth ---------------------------------------------------------------------------------
def fallback_rows(splits: dict[str, list[Row]], dev_sample: list[Row], names: list[str], drop: list[str],
                  encoder: Encoder, scorers: dict, cache: EmbeddingCache, args) -> dict:
    train = [r for r in splits["train"] if not set(r.labels) & set(drop)]
    started = time.perf_counter()
    index = LabelIndex.build(train, encoder, multi_label=True, cache=cache, batch_size=args.batch_size,
                             show_progress=True)
    known = set(index.label_names)
    tune_rows = [Row(r.text, tuple(lab for lab in r.labels if lab in known), r.id, r.line) for r in splits["dev"]]
    tune_rows = [r for r in tune_rows if r.labels]
    if tune_rows:
        tune_index(index, encoder, tune_rows, metric="micro", cache=cache, batch_size=args.batch_size,
                   show_progress=True)
    build_seconds = time.perf_counter() - started
    test = splits["test"]
    out: dict[str, Any] = {"dropped": drop, "index_rows": len(index), "removed_rows": len(splits["train"]) - len(train),
           "k": (index.tuning or {}).get("k"), "m": (index.tuning or {}).get("m"),
           "build_and_tune_seconds": round(build_seconds, 1), "rows": []}

    def record(method: str, predictions, seconds: float, extra: dict) -> None:
        scores = evaluate(predictions, test, names)
        y = label_matrix(test, names, "test")
        pred = np.zeros_like(y)
        for i, p in enumerate(predictions):
            pred[i, [names.index(lab) for lab in p.labels]] = True
        per_label = f1_score(y, pred, average=None, zero_division=0)
        row = {"method": method, **scores, "dropped_f1": {lab: float(per_label[names.index(lab)]) for lab in drop},
               "seconds": round(seconds, 1), **extra}
        print(row, flush=True)
        out["rows"].append(row)

    started = time.perf_counter()
    predictions = predict_rows(index, encoder, test, cache=cache, batch_size=args.batch_size, show_progress=True)
    record("kNN alone", predictions, time.perf_counter() - started, {})
    for method, scorer in scorers.items():
        predictor = Predictor(index, encoder, scorer, labels=names, min_examples=5, cache=cache,
                              batch_size=args.batch_size, show_progress=True)
        started = time.perf_counter()
        predictor.tune(dev_sample, source="GoEmotions dev sample")
        tune_seconds = time.perf_counter() - started
        assert predictor.tuning_ is not None  # tune() records it
        started = time.perf_counter()
        predictions = predictor.predict(test)
        routes = summarise_routes(predictions)
        record(f"kNN + {method} fallback", predictions, time.perf_counter() - started,
               {"similarity_threshold": predictor.similarity_threshold, "weak_threshold": predictor.weak_threshold,
                "weak_labels": predictor.weak_labels_, "routes": routes, "tune_seconds": round(tune_seconds, 1),
                "dev_score": predictor.tuning_["score"], "dev_knn_alone": predictor.tuning_["knn_alone"]})
    return out


# ---- report --------------------------------------------------------------------------------------------------
def fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def fmt1(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def plot(path: Path, head: dict | None, zs: list[dict], fallback: dict | None) -> None:
    from fewlabel.indexing.plots import pyplot

    plt = pyplot()  # Agg, with a Hangul font

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    for ax, dataset in zip(axes[0], ("GoEmotions-ekman test", "NSMC test sample"), strict=True):
        for r in (r for r in zs if r["dataset"] == dataset):
            xs = [c["threshold"] for c in r["curve"]]
            for metric, style in (("macro_f1", "-"), ("micro_f1", "--")):
                ax.plot(xs, [c[metric] for c in r["curve"]], style, marker=".",
                        label=f"{r['method']} ({r['scores_are']}) {metric.split('_')[0]}; "
                              f"top-1 {r['top1'][metric]:.2f}")
        ax.set_xlabel("threshold: a label is given when its score >= threshold")
        ax.set_ylabel("F1")
        ax.set_title(f"{dataset}: F1 vs threshold")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
    ax = axes[1][0]
    if fallback:
        rows = fallback["rows"]
        ax.bar([r["method"] for r in rows], [r["macro_f1"] for r in rows], color=["grey", "tab:blue", "tab:orange"])
        for i, r in enumerate(rows):
            ax.text(i, r["macro_f1"] + 0.01, f"{r['macro_f1']:.3f}", ha="center")
        ax.set_title(f"GoEmotions-ekman test macro-F1, index without {', '.join(fallback['dropped'])}")
        ax.set_ylim(0, 1)
    ax = axes[1][1]
    if head and head.get("test"):
        classes = list(head["test"]["per_class"])
        ax.bar(classes, [head["test"]["per_class"][c]["f1"] for c in classes], color="tab:green")
        ax.set_title(f"NLI head on XNLI-ko test: accuracy {head['test']['accuracy']:.3f}")
        ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def body(head: dict | None, zs: list[dict], fallback: dict | None, args) -> str:
    parts = []
    if head:
        t = head["test"]
        parts += ["## NLI head (XNLI-ko test)", "",
                  f"Base `{args.base}`, trained on {head['train_pairs']:,} pairs (KLUE-NLI dev + XNLI-ko dev, less "
                  f"{head['dev_pairs']:,} held out to pick the epoch), {head['steps']:,} steps in "
                  f"{head['train_seconds']:.0f} s" + (" (reused folder; its recorded time)" if head["reused"] else "")
                  + f". Settings: {head['settings']}.", "",
                  markdown_table(["class", "precision", "recall", "F1", "support"],
                                 [[c, fmt(v["precision"]), fmt(v["recall"]), fmt(v["f1"]), f"{v['support']:,}"]
                                  for c, v in t["per_class"].items()]),
                  "", f"Accuracy **{t['accuracy']:.3f}**, macro-F1 {t['macro_f1']:.3f} on {t['n']:,} pairs.", ""]
    if zs:
        def zs_row(r: dict) -> list:
            there = r.get("at_dev_threshold")
            return [r["dataset"], r["method"], r["scores_are"], f"{r['n']:,}", fmt(r["top1"]["micro_f1"]),
                    fmt(r["top1"]["macro_f1"]), fmt(r.get("dev_threshold")),
                    f"{fmt(there['micro_f1'])} / {fmt(there['macro_f1'])}" if there else "-",
                    fmt1(r["texts_per_second"])]

        parts += ["## Zero-shot", "",
                  markdown_table(["data", "method", "scores", "texts", "top-1 micro-F1", "top-1 macro-F1",
                                  "dev-picked threshold", "micro / macro-F1 there", "texts / s"],
                                 [zs_row(r) for r in zs]),
                  "", "F1 against the threshold (every label scoring at least T), test set:", ""]
        for r in zs:
            parts += [f"- {r['dataset']}, {r['method']}: " + ", ".join(
                f"{c['threshold']:g} → {c['macro_f1']:.3f}" for c in r["curve"][::3]) + " (macro-F1)"]
        parts.append("")
    if fallback:
        parts += ["## The fallback's worth (GoEmotions-ekman)", "",
                  f"Index: train without any example of {', '.join(fallback['dropped'])} "
                  f"({fallback['removed_rows']:,} rows removed, {fallback['index_rows']:,} indexed), "
                  f"k={fallback['k']}, m={fallback['m']} tuned on dev. All 7 labels declared; the fallback's "
                  "thresholds tuned on a dev sample.", "",
                  markdown_table(["method", "micro-F1", "macro-F1"] + [f"F1 {lab}" for lab in fallback["dropped"]]
                                 + ["similarity threshold", "routes on test", "time"],
                                 [[r["method"], fmt(r["micro_f1"]), fmt(r["macro_f1"])]
                                  + [fmt(r["dropped_f1"][lab]) for lab in fallback["dropped"]]
                                  + [fmt(r.get("similarity_threshold")),
                                     ", ".join(f"{k} {v:,}" for k, v in r.get("routes", {}).items()) or "knn",
                                     f"{r['seconds']:.0f} s"] for r in fallback["rows"]]), ""]
    parts.append("![zero-shot](zeroshot.png)")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--base", default="e5-small", help="base of the NLI head")
    parser.add_argument("--encoder", default="e5-small", help="encoder of the embedding zero-shot and of the index")
    parser.add_argument("--nli-dir", default=None, help="NLI head folder (default: $FEWLABEL_HOME/models/nli-BASE)")
    parser.add_argument("--retrain", action="store_true", help="train the NLI head even if --nli-dir holds one")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--train-batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--nsmc-sample", type=int, default=1000)
    parser.add_argument("--nsmc-template", default=NSMC_TEMPLATE)
    parser.add_argument("--dev-sample", type=int, default=1000, help="GoEmotions dev rows to tune thresholds on")
    parser.add_argument("--drop-labels", default="fear,surprise")
    parser.add_argument("--sections", default="head,zeroshot,fallback")
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N rows of every split: a check, not a report")
    args = parser.parse_args()
    args.nli_dir = args.nli_dir or str(fewlabel_home() / "models" / f"nli-{Path(args.base).name}")
    data, sections = Path(args.data), set(args.sections.split(","))
    cache = EmbeddingCache(default_cache_path())

    head = nli_head(nli_data(data, args.limit, args.seed), args) if "head" in sections else None
    go = goemotions_splits(data)
    if args.limit:
        go = {k: v[:args.limit] for k, v in go.items()}
    names = (data / "goemotions" / "ekman" / "labels.txt").read_text().split()
    dev_sample = random.Random(args.seed).sample(go["dev"], min(args.dev_sample, len(go["dev"])))
    encoder = Encoder(args.encoder, device=args.device)
    nli_model = NLIZeroShot(args.nli_dir, device=args.device, batch_size=args.batch_size, show_progress=True)
    multi = {"nli": MemoZeroShot(NLIZeroShot(nli_model, multi_label=True, batch_size=args.batch_size,
                                             show_progress=True)),
             "embed": EmbeddingZeroShot(encoder, multi_label=True, cache=cache, batch_size=args.batch_size,
                                        show_progress=True)}
    single = {"nli": NLIZeroShot(nli_model, template=args.nsmc_template, batch_size=args.batch_size,
                                 show_progress=True),
              "embed": EmbeddingZeroShot(encoder, template=args.nsmc_template, cache=cache, batch_size=args.batch_size,
                                         show_progress=True)}
    zs: list[dict] = []
    if "zeroshot" in sections:
        zs += zero_shot_rows("GoEmotions-ekman test", go["test"], dev_sample, parse_labels(names), multi)
        nsmc = nsmc_sample(data, args.limit or args.nsmc_sample, args.seed)
        zs += zero_shot_rows("NSMC test sample", nsmc, None, parse_labels(NSMC_LABELS), single)
    drop = [lab for lab in args.drop_labels.split(",") if lab]
    fallback = fallback_rows(go, dev_sample, names, drop, encoder, multi, cache, args) if "fallback" in sections \
        else None

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(out / "zeroshot.png", head, zs, fallback)
    note = ("../shared/data: klue_nli dev + kornli xnli dev (NLI training), kornli xnli test (NLI test), "
            f"goemotions/ekman, nsmc test sample of {args.limit or args.nsmc_sample} (seed {args.seed})"
            + (f"; LIMITED to {args.limit} rows per split: a check, not a result" if args.limit else ""))
    write_report(out, "zeroshot", "Zero-shot labelling and the kNN fallback", body(head, zs, fallback, args),
                 {"nli_head": head, "zero_shot": zs, "fallback": fallback,
                  "settings": {k: v for k, v in vars(args).items()}}, data_note=note)
    print(f"wrote {out / 'zeroshot.md'}, zeroshot.json, zeroshot.png")


if __name__ == "__main__":
    main()
