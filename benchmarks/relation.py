"""Relation extraction on SemEval-2010 Task 8 (the KLUE-RE data cannot be had here; its format is supported and
its metrics are the ones reported). Writes `relation.md` and `relation.json`.

    python -m fewlabel.benchmarks.relation --data ../shared/data --out benchmarks/results
    python -m fewlabel.benchmarks.relation --limit 120 --models minilm --episodes 20 --out /tmp/re-check

1. **Few-shot episodes.** The test sentences are rendered with entity markers (`@ e1 @`, `# e2 #`; SemEval
   has no entity types) or left plain, embedded once per encoder, and N-way K-shot episodes (Other left out,
   `--query` rows per class, `--episodes` episodes, seeded) are labelled by the kNN vote (k = K) and by the
   nearest class prototype. Mean accuracy with a 95% interval.
2. **kNN over all training rows.** Train and test rendered with markers and embedded; the number of voting
   neighbours k is chosen on a seeded 10% of train held out from the index (by micro-F1), then the index is the
   whole train set and test is scored once: KLUE's micro-F1 without Other, AUPRC, and SemEval's official
   macro-F1 (9 relations, direction must be right, Other excluded), all x100.
3. **Fine-tuned classifiers** (`--finetune`, slow on a CPU): `fewlabel.finetune.relation.trainer` for every `--base` x
   `--marker` x `--pooling` given (comma-separated), or the `--runs` listed; the best epoch is picked on the same 10%
   held-out split and test is scored once with the same metrics. A model folder already trained with the same settings
   is scored again, not retrained, so an interrupted benchmark resumes; an interrupted training resumes from its
   checkpoints.

`--limit N` keeps the first N rows of train and of test, to check the script, not to report."""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import numpy as np

from fewlabel.benchmarks.report import markdown_table, write_report
from fewlabel.finetune.relation.trainer import RelationOptions, train_re_classifier
from fewlabel.finetune.runs import finished_run
from fewlabel.finetune.settings import RunOptions, TrainSettings
from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path
from fewlabel.indexing.encoders.encoder import Encoder
from fewlabel.indexing.files import fewlabel_home
from fewlabel.indexing.model_folder import read_marker
from fewlabel.indexing.relation.data import SEMEVAL_LABELS, SEMEVAL_OTHER, RelationRow, read_relations
from fewlabel.indexing.relation.metrics import relation_metrics
from fewlabel.retrieval.relation.classifier import RelationClassifier
from fewlabel.retrieval.relation.fewshot import RelationKNN, embed_relations, run_episodes, sample_episodes

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

K_GRID = (1, 3, 5, 10, 20, 30)
EPISODE_SETTINGS = tuple((n_way, k_shot) for n_way in (5, 10) for k_shot in (1, 5, 10))  # N-way K-shot


def semeval_splits(data: Path, limit: int | None, seed: int) -> dict[str, list[RelationRow]]:
    folder = data / "semeval2010_task8"
    train, test = read_relations(folder / "train.jsonl"), read_relations(folder / "test.jsonl")
    if limit:
        train, test = train[:limit], test[:limit]
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    n_dev = max(2, len(train) // 10)
    return {"train": train, "fit": [train[i] for i in sorted(order[n_dev:])],
            "dev": [train[i] for i in sorted(order[:n_dev])], "test": test}


def embed(encoder: Encoder, rows: list[RelationRow], marker: str, cache, batch_size: int) -> np.ndarray:
    if marker == "none":
        from fewlabel.indexing.encoders.cache import encode_with_cache

        return encode_with_cache(encoder, [r.sentence for r in rows], cache, batch_size=batch_size,
                                 show_progress_bar=True)
    return embed_relations(encoder, rows, marker=marker, batch_size=batch_size, cache=cache, show_progress=True)


# ---- 1. few-shot episodes ----------------------------------------------------------------------------------
def episode_rows(encoder: Encoder, model: str, test: list[RelationRow], args, cache) -> list[dict]:
    labels = [r.label for r in test if r.label is not None]
    assert len(labels) == len(test), "SemEval's test file is labelled"
    results: list[dict] = []
    for marker in ("typed", "none"):
        vectors = embed(encoder, test, marker, cache, args.batch_size)
        for n_way, k_shot in EPISODE_SETTINGS:
            try:
                episodes = sample_episodes(labels, n_way=n_way, k_shot=k_shot, n_query=args.query,
                                           episodes=args.episodes, seed=args.seed, exclude=[SEMEVAL_OTHER])
            except Exception as exc:  # too few rows per class under --limit
                results.append({"model": model, "marker": marker, "n_way": n_way, "k_shot": k_shot,
                                "skipped": str(exc)})
                continue
            for method in ("knn", "prototype"):
                started = time.perf_counter()
                res = run_episodes(vectors, labels, episodes, k=k_shot, method=method)
                results.append({"model": model, "marker": marker, "n_way": n_way, "k_shot": k_shot, **res,
                                "seconds": round(time.perf_counter() - started, 2)})
                print(results[-1], flush=True)
    return results


# ---- 2. kNN over all training rows ---------------------------------------------------------------------------
def full_knn_row(encoder: Encoder, model: str, splits: dict, args, cache) -> dict:
    started = time.perf_counter()
    labels = list(SEMEVAL_LABELS)
    vec = {name: embed(encoder, splits[name], "typed", cache, args.batch_size) for name in ("fit", "dev", "test")}
    gold = {name: [r.label for r in splits[name]] for name in ("fit", "dev", "test")}
    grid = {}
    for k in K_GRID:
        knn = RelationKNN(k=k).fit(vec["fit"], gold["fit"], labels=labels)
        grid[k] = relation_metrics(gold["dev"], knn.predict_proba(vec["dev"]), labels, SEMEVAL_OTHER)["micro_f1"]
    best_k = max(grid, key=lambda k: (grid[k], -k))
    knn = RelationKNN(k=best_k).fit(np.vstack([vec["fit"], vec["dev"]]), gold["fit"] + gold["dev"], labels=labels)
    scores = relation_metrics(gold["test"], knn.predict_proba(vec["test"]), labels, SEMEVAL_OTHER)
    return {"method": f"kNN {model} (typed markers, k={best_k})", "k": best_k, "dev_grid": grid, **scores,
            "seconds": round(time.perf_counter() - started, 1)}


# ---- 3. fine-tuned classifiers ------------------------------------------------------------------------------
def finetune_configs(args) -> list[tuple[str, str, str]]:
    """The (base, marker, pooling) runs: those of ``--runs``, else every combination of ``--base``, ``--marker``
    and ``--pooling``; entity-start pooling needs markers, so baseline x entity-start is left out."""
    if args.runs:
        runs = [tuple(run.split(":")) for run in args.runs.split(",")]
        bad = [":".join(run) for run in runs if len(run) != 3]
        if bad:
            raise SystemExit(f"--runs takes base:marker:pooling items, comma-separated; got {', '.join(bad)}")
        return runs
    return [(base, marker, pooling) for base in args.base.split(",") for marker in args.marker.split(",")
            for pooling in args.pooling.split(",") if not (pooling == "entity-start" and marker == "baseline")]


def finetune_row(splits: dict, args, base: str, marker: str, pooling: str) -> dict:
    name = f"re-semeval-{Path(base).name}-{marker}-{pooling}"
    out = Path(args.model_dir or fewlabel_home() / "models") / name
    settings = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.train_batch_size,
                "max_length": args.max_length, "max_steps": args.max_steps, "seed": args.seed,
                "freeze_embeddings": args.freeze_embeddings}
    wanted = {"marker": marker, "pooling": pooling, "loss": args.loss, "label_smoothing": args.label_smoothing,
              "settings": settings}
    info = finished_run(out, wanted)
    if info is None:
        train_re_classifier(splits["fit"], splits["dev"], list(SEMEVAL_LABELS), base, out,
                            TrainSettings(**settings),
                            RelationOptions(marker=marker, pooling=pooling, loss=args.loss,
                                            label_smoothing=args.label_smoothing),
                            run=RunOptions(device=args.device),
                            sources={"train": "semeval2010_task8/train.jsonl (90%)",
                                     "dev": "semeval2010_task8/train.jsonl (10%, seeded)"})
        info = read_marker(out)
    else:
        print(f"{out}: already trained with these settings; scoring it", flush=True)
    started = time.perf_counter()
    classifier = RelationClassifier(out, device=args.device, batch_size=args.batch_size)
    probs = classifier.predict_proba(splits["test"], show_progress=True)
    assert info is not None  # the trainer wrote its marker
    scores = relation_metrics([r.label for r in splits["test"] if r.label is not None], probs, classifier.labels,
                              SEMEVAL_OTHER)  # every test row is labelled (read_relations: all or none)
    return {"method": f"fine-tuned {base} ({marker} markers, {pooling} pooling)", "base": base, "marker": marker,
            "pooling": pooling, **scores, "train_seconds": info["train_seconds"], "steps": info["steps"],
            "dev_per_epoch": info.get("dev_per_epoch"), "seconds": round(time.perf_counter() - started, 1),
            "model_dir": str(out)}


# ---- report ----------------------------------------------------------------------------------------------------
def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def body(episodes: list[dict], full: list[dict], splits: dict, args) -> str:
    parts = [f"SemEval-2010 Task 8: {len(splits['train']):,} train rows ({len(splits['fit']):,} indexed / trained "
             f"on, {len(splits['dev']):,} held out for choices), {len(splits['test']):,} test rows. Scores x100.", ""]
    if full:
        parts += ["## Supervised: all training rows", "",
                  "micro-F1 is KLUE-RE's (over every relation except Other); AUPRC is KLUE's (one-vs-rest area under "
                  "the precision-recall curve, averaged over classes); the SemEval score is the official scorer's "
                  "(9+1)-way macro-F1 with directionality.", "",
                  markdown_table(["method", "micro-F1 (no Other)", "AUPRC", "SemEval macro-F1", "accuracy", "time"],
                                 [[r["method"], pct(r["micro_f1"]), pct(r["auprc"]), pct(r.get("semeval_macro_f1")),
                                   pct(r["accuracy"]), f"{r.get('train_seconds', 0) + r['seconds']:.0f} s"]
                                  for r in full]), "",
                  "kNN time counts the vote and, for vectors not yet in the embedding cache, encoding; a rerun reads "
                  "them from the cache.", ""]
        if args.note:
            parts += [args.note, ""]
        tuned = [r for r in full if "steps" in r]
        if tuned:
            parts += [f"Fine-tuning settings: {args.epochs:g} epochs, learning rate {args.lr:g}, batch "
                      f"{args.train_batch_size}, max length {args.max_length}, loss {args.loss}, label smoothing "
                      f"{args.label_smoothing:g}, seed {args.seed}"
                      + (", word embeddings frozen" if args.freeze_embeddings else "")
                      + "; the epoch with the best held-out micro-F1 is kept. Time is training plus scoring "
                      "the test set.", "",
                      markdown_table(["fine-tuned", "steps", "train time", "held-out micro-F1 by epoch"],
                                     [[r["method"], r["steps"], f"{r['train_seconds']:.0f} s",
                                       " / ".join(pct(e["micro_f1"]) for e in r.get("dev_per_epoch") or [])]
                                      for r in tuned]), ""]
    if episodes:
        done = [e for e in episodes if "skipped" not in e]
        parts += ["## Few-shot: N-way K-shot episodes", "",
                  f"{args.episodes} episodes per setting (seed {args.seed}), {args.query} query rows per class, Other "
                  "left out, drawn from the test rows. `typed` embeds the sentence with entity markers (`@ e1 @`, "
                  "`# e2 #`); `none` embeds the plain sentence, which does not say which pair is meant.", "",
                  markdown_table(["encoder", "input", "N-way K-shot", "kNN vote (k = K)", "prototype"],
                                 [[e["model"], e["marker"], f"{e['n_way']}-way {e['k_shot']}-shot",
                                   f"{pct(e['accuracy'])} ± {pct(e['ci95'])}",
                                   f"{pct(p['accuracy'])} ± {pct(p['ci95'])}"]
                                  for e in done if e["method"] == "knn"
                                  for p in done if p["method"] == "prototype" and
                                  (p["model"], p["marker"], p["n_way"], p["k_shot"]) ==
                                  (e["model"], e["marker"], e["n_way"], e["k_shot"])]), ""]
        skipped = [e for e in episodes if "skipped" in e]
        if skipped:
            parts += ["Skipped: " + "; ".join(f"{e['model']} {e['marker']} {e['n_way']}-way {e['k_shot']}-shot "
                                              f"({e['skipped']})" for e in skipped), ""]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--models", default="e5-small,minilm", help="encoders for the kNN sections")
    parser.add_argument("--sections", default="episodes,knn", help="episodes, knn, finetune (comma-separated)")
    parser.add_argument("--finetune", action="store_true", help="add the fine-tuned classifier (slow on a CPU)")
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--query", type=int, default=5, help="query rows per class in an episode")
    parser.add_argument("--base", default="e5-small",
                        help="bases of the fine-tuned classifiers, comma-separated (e5-small, minilm, folders)")
    parser.add_argument("--marker", default="typed", help="renderings, comma-separated: baseline, entity, typed")
    parser.add_argument("--pooling", default="cls", help="heads, comma-separated: cls, entity-start")
    parser.add_argument("--note", default=None, help="a sentence for the report (e.g. how the runs shared the machine)")
    parser.add_argument("--runs", default=None,
                        help="exact runs instead of every --base x --marker x --pooling, e.g. "
                             "e5-small:typed:entity-start,minilm:baseline:cls")
    parser.add_argument("--loss", default="ce", choices=["ce", "weighted", "focal"])
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--model-dir", default=None, help="fine-tuned model folder (default: $FEWLABEL_HOME/models)")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--train-batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--freeze-embeddings", action="store_true",
                        help="keep the word-embedding matrix fixed (faster on a CPU)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N rows of train and test: a check, not a report")
    args = parser.parse_args()
    sections = set(args.sections.split(",")) | ({"finetune"} if args.finetune else set())
    splits = semeval_splits(Path(args.data), args.limit, args.seed)
    cache = EmbeddingCache(default_cache_path())
    episodes: list[dict] = []
    full: list[dict] = []
    for model in args.models.split(","):
        if not sections & {"episodes", "knn"}:
            break
        encoder = Encoder(model, device=args.device)
        if "episodes" in sections:
            episodes += episode_rows(encoder, model, splits["test"], args, cache)
        if "knn" in sections:
            full.append(full_knn_row(encoder, model, splits, args, cache))
            print(full[-1]["method"], {k: full[-1][k] for k in ("micro_f1", "auprc", "semeval_macro_f1")}, flush=True)
    if "finetune" in sections:
        for base, marker, pooling in finetune_configs(args):
            full.append(finetune_row(splits, args, base, marker, pooling))
            print(full[-1]["method"], {k: full[-1][k] for k in ("micro_f1", "auprc", "semeval_macro_f1")}, flush=True)
    note = ("../shared/data/semeval2010_task8 train.jsonl / test.jsonl (official release, CC BY 3.0)"
            + (f"; LIMITED to the first {args.limit} rows of train and test: a check, not a result"
               if args.limit else ""))
    out = Path(args.out)
    write_report(out, "relation", "Relation extraction (SemEval-2010 Task 8)", body(episodes, full, splits, args),
                 {"episodes": episodes, "supervised": full, "settings": dict(vars(args))}, data_note=note)
    print(f"wrote {out / 'relation.md'} and relation.json")


if __name__ == "__main__":
    main()
