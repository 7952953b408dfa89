"""Domain adaptation and augmentation at each training-slice size: does adapting the encoder to unlabelled
in-domain text help kNN most when labels are few (the book's figure)? And does EDA augmentation help Naive Bayes
and kNN? Writes ``adapt.md`` / ``adapt.json`` and, per data set, a full slice report in ``adapt-<data set>/``.

    python -m fewlabel.benchmarks.adapt --datasets nsmc,goemotions --work /tmp/adapt-models

For each data set:

1. the encoder is adapted (:func:`fewlabel.finetune.adapt.trainer.adapt_encoder`) on the training file's texts
   *without their labels* (a seeded sample of ``--adapt-texts``), capped at ``--adapt-steps`` steps; a folder
   already adapted with the same settings is reused;
2. the slice benchmark (:mod:`fewlabel.benchmarks.slices`) runs Naive Bayes and kNN with the base encoder, each
   with and without augmentation, and kNN with the adapted encoder, on the same nested slices and seeds, with dev
   used only for tuning k and m, and test scored once per unit. Each unit's CPU time (all threads) is recorded.

The per-data-set settings (files, columns, encoder) are fixed below; the caps are options and are stated in the
report."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fewlabel.benchmarks.report import command_line, markdown_table, write_report
from fewlabel.benchmarks.slices.data import load_splits
from fewlabel.benchmarks.slices.methods import AugmentedMethod, IndexMethod, KNNMethod, NaiveBayesMethod
from fewlabel.benchmarks.slices.report import summarise, write_slice_report
from fewlabel.benchmarks.slices.runner import run_benchmark
from fewlabel.benchmarks.slices.sampling import parse_slices
from fewlabel.finetune.adapt.trainer import adapt_encoder, prepare_pool
from fewlabel.finetune.runs import finished_run
from fewlabel.finetune.settings import RunOptions, TrainSettings, resolve_base
from fewlabel.indexing.augment import Augmenter
from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path
from fewlabel.indexing.model_folder import ADAPT_KIND
from fewlabel.indexing.readers import read_texts

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class DataSet:
    title: str
    train: str
    dev: str | None
    test: str
    text_col: str
    label_col: str
    encoder: str
    multi_label: bool = False
    header: bool = True
    label_sep: str | None = None
    label_names: str | None = None


DATASETS = {
    "nsmc": DataSet("NSMC (Korean movie reviews, binary)", "nsmc/rebuilt_ratings_train.txt", None,
                    "nsmc/rebuilt_ratings_test.txt", "document", "label", "e5-small"),
    "goemotions": DataSet("GoEmotions-ekman (English, 7 labels, multi-label)", "goemotions/ekman/train.tsv",
                          "goemotions/ekman/dev.tsv", "goemotions/ekman/test.tsv", "0", "1", "minilm",
                          multi_label=True, header=False, label_sep=",", label_names="goemotions/ekman/labels.txt"),
}


def adapted_encoder(key: str, spec: DataSet, args: argparse.Namespace, data: Path) -> tuple[Path, dict]:
    """The adapted encoder's folder (trained now, or reused when finished with the same settings) and its record."""
    texts = [r.text for r in read_texts(data / spec.train, text_col=spec.text_col, header=spec.header)]
    pool, counts = prepare_pool(texts, max_texts=args.adapt_texts, seed=args.seed)
    method = method_for(key, args.method)
    out = Path(args.work) / f"{key}-{spec.encoder}-{method}"
    settings = dict(method=method, epochs=1, lr=args.adapt_lr, batch_size=args.adapt_batch,
                    max_length=args.adapt_max_length, seed=args.seed, max_steps=args.adapt_steps,
                    freeze_embeddings=args.freeze_embeddings and spec.encoder == "e5-small")
    wanted = {"kind": ADAPT_KIND, "method": method, "base": resolve_base(spec.encoder)[1]["name"],
              "data": {"fingerprint": counts["fingerprint"]},
              "settings": {k: v for k, v in settings.items() if k != "method"}}
    info = finished_run(out, wanted)
    if info is None:
        print(f"[{key}] adapting {spec.encoder} ({method}, {args.adapt_steps} steps) -> {out}", flush=True)
        fields = {k: v for k, v in settings.items() if k != "method"}
        adapt_encoder(pool, spec.encoder, out, TrainSettings(**fields), method=method,
                      run=RunOptions(show_progress=False), source=f"{spec.train} (texts only)")
        info = finished_run(out, wanted)
        assert info is not None, "the adapted folder does not record the settings it was asked for"
    else:
        print(f"[{key}] reusing {out} (adapted with the same settings)", flush=True)
    return out, info


def method_for(key: str, spec: str) -> str:
    """``--method``: one method for every data set (``simcse``), or one per data set
    (``nsmc:simcse,goemotions:tsdae``)."""
    if ":" not in spec:
        return spec
    chosen = dict(part.split(":", 1) for part in spec.split(","))
    if key not in chosen:
        raise SystemExit(f"--method names no method for {key}")
    return chosen[key]


def adapted_name(encoder: str, method: str, labeller: str = "knn") -> str:
    return f"{labeller}:{encoder}-{method}"


def run_dataset(key: str, args: argparse.Namespace, data: Path, cache: EmbeddingCache) -> dict:
    spec = DATASETS[key]
    folder, info = adapted_encoder(key, spec, args, data)
    splits = load_splits(str(data / spec.train), dev=str(data / spec.dev) if spec.dev else None,
                         test=str(data / spec.test), text_col=spec.text_col, label_col=spec.label_col,
                         multi_label=spec.multi_label, label_sep=spec.label_sep, header=spec.header,
                         label_names=str(data / spec.label_names) if spec.label_names else None,
                         max_train=args.max_train, dev_sample=args.dev_sample, test_sample=args.test_sample)
    augmenter = Augmenter(args.augment, copies=args.augment_copies, p=args.augment_p, seed=args.seed)
    nb, base = NaiveBayesMethod(), KNNMethod(spec.encoder)
    adapted = KNNMethod(str(folder))
    adapted.name = adapted_name(spec.encoder, method_for(key, args.method))  # not the folder's long path
    linear_base, linear_adapted = IndexMethod("linear", spec.encoder), IndexMethod("linear", str(folder))
    linear_adapted.name = adapted_name(spec.encoder, method_for(key, args.method), "linear")
    methods = [nb, AugmentedMethod(nb, augmenter), base, AugmentedMethod(base, augmenter), adapted, linear_base,
               linear_adapted]
    slices = parse_slices(args.slices)
    out = Path(args.out) / f"adapt-{key}"
    config = {"dataset": key, "encoder": spec.encoder, "adapted": {k: info.get(k) for k in (
              "method", "steps", "settings", "data")}, "augment": augmenter.describe(), "slices": args.slices,
              "seeds": args.seeds, "max_train": args.max_train, "dev_sample": args.dev_sample,
              "test_sample": args.test_sample, "sizes": splits.sizes()}
    state = run_benchmark(splits, methods, slices, list(range(args.seeds)), out, config,
                          task_settings={"batch_size": args.batch_size, "cache": cache}, show_progress=False,
                          log=lambda m: print(f"[{key}] {m}", flush=True))
    write_slice_report(out, state, title=f"Adaptation and augmentation: {spec.title}",
                       data_note=f"{spec.train}, dev {spec.dev or '(held out of train)'}, test {spec.test}; "
                                 f"{len(splits.train):,} / {len(splits.dev):,} / {len(splits.test):,} rows",
                       notes=splits.notes, budget_note=f"adapted encoder: {folder.name}", command=command_line())
    return {"key": key, "spec": spec.__dict__, "adapted": _adapt_record(info), "state": state,
            "augment": augmenter.name,
            "notes": splits.notes, "sizes": splits.sizes()}


def _adapt_record(info: dict) -> dict:
    keys = ("method", "base", "objective", "steps", "texts_seen", "train_seconds", "cpu_seconds", "first_loss",
            "last_loss", "settings", "data", "trained_at")
    return {k: info.get(k) for k in keys}


# ---- the report ----------------------------------------------------------------------------------------------
def _mean_cpu(state: dict, method: str, slice_name) -> float | None:
    values = [r.get("cpu_seconds") for r in state["results"] if r["method"] == method and r["slice"] == slice_name]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _fmt(stats: tuple | None) -> str:
    if stats is None:
        return "-"
    mean, std, n = stats
    return f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"


def _delta(a: tuple | None, b: tuple | None) -> str:
    return "-" if a is None or b is None else f"{b[0] - a[0]:+.3f}"


def _slices(summary: dict) -> list:
    names = {s for by in summary.values() for s in by}
    return sorted(names, key=lambda s: (s == "all", s if isinstance(s, int) else 0))


def comparison(summary: dict, state: dict, first: str, second: str, metric: str) -> tuple[str, list[float]]:
    """A table of ``first`` against ``second`` at each slice (mean ± std over seeds, the difference, CPU seconds
    per unit), and the list of differences."""
    rows, deltas = [], []
    sizes = {s: int(round(summary[first][s]["rows"])) for s in summary[first]}
    for s in _slices({first: summary[first]}):
        a, b = summary[first].get(s, {}).get(metric), summary[second].get(s, {}).get(metric)
        if a and b:
            deltas.append(b[0] - a[0])
        cpu_a, cpu_b = _mean_cpu(state, first, s), _mean_cpu(state, second, s)
        rows.append([f"{s} ({sizes[s]:,})", _fmt(a), _fmt(b), f"**{_delta(a, b)}**",
                     "-" if cpu_a is None else f"{cpu_a:.1f}", "-" if cpu_b is None else f"{cpu_b:.1f}"])
    headers = ["slice (rows)", f"`{first}`", f"`{second}`", "difference", f"CPU s `{first}`", f"CPU s `{second}`"]
    return markdown_table(headers, rows), deltas


def dataset_section(result: dict) -> str:
    state, spec, adapted = result["state"], result["spec"], result["adapted"]
    summary = summarise(state)
    enc = spec["encoder"]
    knn_adapted = adapted_name(enc, adapted["method"])
    augmented = result["augment"]
    s = adapted["settings"]
    lines = [f"## {spec['title']}", "",
             f"Train `{spec['train']}`, test `{spec['test']}`; pool / dev / test rows: {result['sizes']['train']:,} / "
             f"{result['sizes']['dev']:,} / {result['sizes']['test']:,}. " + " ".join(n + "." for n in result["notes"])
             + (f" Floor: the best constant answer on dev, '{state['majority']['label']}' for every text, scores "
                f"micro-F1 {state['majority']['micro_f1']:.3f} / macro-F1 {state['majority']['macro_f1']:.3f}."
                if state.get("majority") else ""),
             "", "**Adaptation.** " + (
                 f"`{adapted['base']}` adapted with {adapted['objective']}: {adapted['steps']} steps of "
                 f"{s['batch_size']} texts (max {s['max_length']} tokens, lr {s['lr']:g}"
                 + (", word embeddings frozen" if s.get("freeze_embeddings") else "") + f") = "
                 f"{adapted['texts_seen']:,} texts seen, from a pool of {adapted['data']['texts_used']:,} distinct "
                 f"training texts without labels. {adapted['train_seconds']:,.0f} s wall, "
                 f"{adapted['cpu_seconds']:,.0f} s CPU. Loss {adapted['first_loss']:.4g} (first step) -> "
                 f"{adapted['last_loss']:.4g} (last logged)."), ""]
    for metric, label in (("micro", "micro-F1"), ("macro", "macro-F1")):
        table, deltas = comparison(summary, state, f"knn:{enc}", knn_adapted, metric)
        lines += [f"**kNN, base against adapted encoder ({label}, mean ± std over seeds; CPU s = mean CPU time of "
                  "one unit: index, tuning and test).**", "", table, "",
                  _finding(deltas, "the adapted encoder", label, _slices({enc: summary[f"knn:{enc}"]})), ""]
    linear_adapted = adapted_name(enc, adapted["method"], "linear")
    if f"linear:{enc}" in summary and linear_adapted in summary:
        table, deltas = comparison(summary, state, f"linear:{enc}", linear_adapted, "micro")
        lines += ["**Linear (logistic regression on the embeddings, `fewlabel.retrieval.methods`), base against "
                  "adapted encoder (micro-F1).**", "", table, "",
                  _finding(deltas, "the adapted encoder", "micro-F1", _slices({enc: summary[f"linear:{enc}"]})), ""]
    for plain in ("nb", f"knn:{enc}"):
        table, deltas = comparison(summary, state, plain, f"{plain}+{augmented}", "micro")
        lines += [f"**`{plain}` with and without {augmented} augmentation (micro-F1).**", "", table, "",
                  _finding(deltas, f"{augmented} augmentation", "micro-F1", _slices({plain: summary[plain]})), ""]
    lines += [f"Full tables (macro-F1 too, wall times, plots): `adapt-{result['key']}/report.md`.", ""]
    return "\n".join(lines)


def _finding(deltas: list[float], what: str, metric: str, slices: list) -> str:
    if not deltas:
        return "(no finished units)"
    best = int(np.argmax(deltas))
    worst = int(np.argmin(deltas))
    small = [d for s, d in zip(slices, deltas, strict=False) if isinstance(s, int) and s <= 32]
    large = [d for s, d in zip(slices, deltas, strict=False) if not (isinstance(s, int) and s <= 32)]
    return (f"Measured: {what} changed {metric} by {min(deltas):+.3f} to {max(deltas):+.3f} (largest gain at "
            f"slice {slices[best]}, largest loss or smallest gain at {slices[worst]}); mean change "
            f"{np.mean(small):+.3f} at slices up to 32 rows and {np.mean(large):+.3f} above." if small and large
            else f"Measured: {what} changed {metric} by {min(deltas):+.3f} to {max(deltas):+.3f}.")


def write_adapt_report(results: list[dict], args: argparse.Namespace) -> Path:
    caps = (f"Caps (2-core CPU budget): adaptation {args.adapt_steps} steps of batch {args.adapt_batch}, max length "
            f"{args.adapt_max_length} tokens, pool sampled to at most {args.adapt_texts:,} texts; training pool for "
            f"'all' capped at {args.max_train:,} rows; dev sampled to {args.dev_sample:,} rows (tuning only); test "
            f"sampled to {args.test_sample:,} rows; {args.seeds} seed(s) (slice draws). Augmentation: {args.augment}, "
            f"up to {args.augment_copies} copies per row, p={args.augment_p}, words (eojeol for Korean), seed "
            f"{args.seed}. CPU s is the process's CPU time (both cores) per unit; the first "
            "unit of each kNN method also loads its encoder and encodes the dev and test texts, later units find "
            "them in the embedding cache.")
    body = "\n\n".join([caps] + ([args.note] if args.note else []) + [dataset_section(r) for r in results])
    payload = {"datasets": [{k: v for k, v in r.items() if k != "state"} | {"summary": _jsonable(summarise(r["state"]))}
                            for r in results]}
    return write_report(Path(args.out), "adapt", "Domain adaptation and augmentation at each slice size", body, payload,
                        data_note=", ".join(f"{DATASETS[r['key']].title}: {DATASETS[r['key']].train}" for r in results),
                        command=command_line())


def _jsonable(summary: dict) -> dict:
    return json.loads(json.dumps({m: {str(s): v for s, v in by.items()} for m, by in summary.items()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--work", required=True, help="folder for the adapted encoders (not committed)")
    parser.add_argument("--datasets", default="nsmc,goemotions")
    parser.add_argument("--method", default="nsmc:simcse,goemotions:tsdae",
                        help="simcse, tsdae or mlm, or one per data set as KEY:METHOD,… (default: %(default)s)")
    parser.add_argument("--adapt-steps", type=int, default=150)
    parser.add_argument("--adapt-batch", type=int, default=16)
    parser.add_argument("--adapt-max-length", type=int, default=48)
    parser.add_argument("--adapt-lr", type=float, default=3e-5)
    parser.add_argument("--adapt-texts", type=int, default=20_000)
    parser.add_argument("--freeze-embeddings", action="store_true", help="for e5-small (its 96M-weight matrix)")
    parser.add_argument("--slices", default="8,16,32,64,128,256,all")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-train", type=int, default=4000)
    parser.add_argument("--dev-sample", type=int, default=500)
    parser.add_argument("--test-sample", type=int, default=1000)
    parser.add_argument("--augment", default="eda")
    parser.add_argument("--augment-copies", type=int, default=4)
    parser.add_argument("--augment-p", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch-size", type=int, default=64, help="encoder batch")
    parser.add_argument("--note", default=None, help="a paragraph for the report (how the run was made)")
    args = parser.parse_args()
    data, cache = Path(args.data), EmbeddingCache(default_cache_path())
    results = [run_dataset(key.strip(), args, data, cache) for key in args.datasets.split(",") if key.strip()]
    print(f"wrote {write_adapt_report(results, args)}")


if __name__ == "__main__":
    main()
