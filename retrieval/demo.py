"""`fewlabel demo`: the main job end to end on the samples bundled in `demo_data/`.

For each sample it builds an index from the training rows, lets `auto` choose the index's method on the
validation rows (kNN vote, linear head, Naive Bayes or ensemble; the leaderboard is printed), labels the
held-out rows, prints a few predictions beside the truth, and prints the scores. It goes
through the same functions as `fewlabel index build` and `fewlabel predict`."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path
from fewlabel.indexing.encoders.encoder import Encoder
from fewlabel.indexing.readers import read_rows
from fewlabel.indexing.store.label_index import LabelIndex
from fewlabel.retrieval.knn.saved_index import evaluate
from fewlabel.retrieval.methods.index_method import fit_method
from fewlabel.retrieval.outputs import write_predictions
from fewlabel.retrieval.router import Predictor

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"


@dataclass(frozen=True)
class DemoSet:
    name: str
    prefix: str
    label_col: str
    label_sep: str | None
    description: str
    label_names: str | None = None  # descriptions for the "label names at work" step (docs/few-labels.md)
    template: str | None = None


DEMO_SETS = {
    "goemotions": DemoSet("goemotions", "goemotions_ekman", "labels", ",",
                          "GoEmotions-ekman sample (English Reddit comments, 7 emotions, multi-label)"),
    "nsmc": DemoSet("nsmc", "nsmc", "label", None, "NSMC sample (Korean movie reviews, positive/negative)",
                    label_names="positive=긍정,negative=부정", template="이 영화 리뷰는 {}적이다."),
}


def shorten(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def run_one(demo: DemoSet, encoder: Encoder, out: Path, args: argparse.Namespace,
            cache: EmbeddingCache | None) -> dict:
    def rows(split: str):  # the held-out texts are carried into the predictions file beside their labels
        return read_rows(DEMO_DATA / f"{demo.prefix}_{split}.tsv", text_col="text", label_col=demo.label_col,
                         id_col="id", label_sep=demo.label_sep, keep_cols=("text",) if split == "test" else ())

    train, valid, test = rows("train"), rows("valid"), rows("test")
    progress = not args.quiet
    print(f"\n== {demo.description}\n   train {len(train)}, validation {len(valid)}, held out {len(test)}")
    started = time.perf_counter()
    index = LabelIndex.build(train, encoder, cache=cache, batch_size=args.batch_size, show_progress=progress)
    method = fit_method(index, encoder, valid, method="auto", cache=cache, batch_size=args.batch_size,
                        show_progress=progress, source="validation rows")
    index.save(out / f"{demo.name}-index")
    predictions = Predictor(index, encoder, cache=cache, batch_size=args.batch_size,
                            show_progress=progress).predict(test)
    write_predictions(predictions, out / f"{demo.name}-predictions.csv", index.label_names, kept=["text"])
    scores = evaluate(predictions, test, index.label_names)
    seconds = time.perf_counter() - started
    tuning = index.tuning
    assert tuning is not None  # build_index tunes k and m on the validation rows
    print(f"   method chosen on validation by auto: {method['name']} (leaderboard, micro-F1 on held-out halves of "
          "the validation rows):")
    for entry in method["leaderboard"]:
        tuned = ", ".join(f"{k}={v}" for k, v in entry["tuned"].items() if k != "thresholds")
        print(f"   {'*' if entry['chosen'] else ' '} {entry['method']:<9} {entry['score']:.3f} ± {entry['spread']:.3f}"
              f"  {entry['seconds']:5.1f}s  {tuned}")
    print(f"   {'predicted':<22} {'true':<22} text")
    for pred, gold in list(zip(predictions, test, strict=True))[:args.show]:
        mark = "✓" if set(pred.labels) == set(gold.labels) else "✗"
        print(f" {mark} {','.join(pred.labels) or '(none)':<22} {','.join(gold.labels):<22} {shorten(gold.text)}")
    print(f"   held-out scores: micro-F1 {scores['micro_f1']:.3f}  macro-F1 {scores['macro_f1']:.3f}  "
          f"exact match {scores['accuracy']:.3f}  (n={scores['n']}, {seconds:.0f}s)")
    result = {"dataset": demo.name, "method": method["name"], "leaderboard": method["leaderboard"], "k": tuning["k"],
              "m": tuning["m"], **scores, "seconds": round(seconds, 1)}
    if demo.label_names:
        result["label_names"] = label_names_at_work(demo, train, test, encoder, cache, args)
    return result


def label_names_at_work(demo: DemoSet, train, test, encoder: Encoder, cache: EmbeddingCache | None,
                        args: argparse.Namespace) -> dict:
    """The label descriptions alone (an index with 0 rows), then with 8 rows (4 a label) and no validation
    file: auto chooses from the 8 rows alone."""
    from fewlabel.retrieval.methods.descriptions import describe_labels

    assert demo.label_names is not None
    descriptions = describe_labels(demo.label_names, demo.template)
    labels = sorted({label for row in train for label in row.labels})
    eight = [row for label in labels for row in [r for r in train if r.labels == (label,)][:4]]
    print(f"   label names at work ({demo.label_names}, template {demo.template!r}), no validation file:")
    out = {}
    for name, rows in (("names only, 0 rows", []), (f"names + {len(eight)} rows", eight),
                       (f"{len(eight)} rows, no names", eight)):
        index = LabelIndex.build(rows, encoder, cache=cache, batch_size=args.batch_size,
                                 descriptions=None if "no names" in name else descriptions)
        method = fit_method(index, encoder, None, method="auto", cache=cache, batch_size=args.batch_size)
        predictions = Predictor(index, encoder, cache=cache, batch_size=args.batch_size).predict(test)
        scores = evaluate(predictions, test, index.label_names)
        out[name] = {"method": method["name"], "micro_f1": scores["micro_f1"]}
        print(f"   {name:<22} auto -> {method['name']:<9} held-out micro-F1 {scores['micro_f1']:.3f}")
    return out


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"fewlabel demo: encoder {args.model}; indexes and predictions go to {out}/")
    encoder = Encoder(args.model, device=args.device, backend=getattr(args, "backend", None))
    cache = None if args.no_cache else EmbeddingCache(default_cache_path())
    names = list(DEMO_SETS) if args.dataset == "all" else [args.dataset]
    results = [run_one(DEMO_SETS[name], encoder, out, args, cache) for name in names]
    (out / "scores.json").write_text(json.dumps({"model": args.model, "results": results}, indent=2))
    print(f"\nscores -> {out / 'scores.json'}")
    return 0
