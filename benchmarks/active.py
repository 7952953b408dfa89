"""The labelling loop with a simulated annotator: which texts `fewlabel suggest` picks, and what `check` finds.

Learning curves. Each set's pool (up to 10,000 training rows) and test set are encoded once with the default
encoder (e5-small, embedding cache). A run starts from 0 labelled rows or from 8 random ones; after each batch of
16 answers (the annotator gives the gold labels) the index's default method is refitted as `fewlabel index
build` does without --valid (auto over knn, linear, nb and ensemble by stratified cross-validation, the kNN vote
below 6 rows) and scored on test (micro-F1), up to 256 labels. The next batch is picked from the unlabelled pool
by the strategy under test with the same code `fewlabel suggest` runs (`fewlabel.retrieval.labelling.suggest.pick`
on the fitted method's probabilities).

Check. 1,000 pool rows, 10% of their labels flipped (single-label: to another label, uniformly; multi-label: the
label set replaced by one label it did not hold); the default method is chosen on the noisy rows, and
`fewlabel.retrieval.labelling.check` ranks every row by cleanlab on out-of-fold probabilities. Precision and
recall of the top k at k = 1x and 2x the flips.

    python -m fewlabel.benchmarks.active --out benchmarks/results"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from fewlabel.benchmarks.report import markdown_table, write_report
from fewlabel.benchmarks.slices.data import load_splits
from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path, encode_with_cache
from fewlabel.indexing.readers import label_matrix

DATA = Path("../shared/data")  # the project's convention (as --data in the other benchmarks): from the root
MODEL = "e5-small"  # the default encoder (fewlabel.indexing.encoders.registry.DEFAULT_MODEL)
SETS: dict[str, dict[str, Any]] = {
    "nsmc": dict(title="NSMC (Korean, binary)", multi_label=False, train="nsmc/rebuilt_ratings_train.txt", dev=None,
                 test="nsmc/rebuilt_ratings_test.txt", text_col="document", label_col="label", max_train=10000,
                 dev_sample=100, test_sample=1000),
    "goemotions": dict(title="GoEmotions-ekman (English, 7 labels, multi-label)", multi_label=True,
                       train="goemotions/ekman/train.tsv", dev="goemotions/ekman/dev.tsv",
                       test="goemotions/ekman/test.tsv", text_col="0", label_col="1", label_sep=",", header=False,
                       label_names="goemotions/ekman/labels.txt", max_train=5000, dev_sample=100, test_sample=1000),
    "semeval": dict(title="SemEval-2010 Task 8 as text (19 labels)", multi_label=False,
                    train="semeval2010_task8/train.jsonl", dev=None, test="semeval2010_task8/test.jsonl",
                    text_col="sentence", label_col="relation", dev_sample=100, test_sample=1000),
}
STRATEGIES = ("random", "uncertainty", "diverse", "auto")
STARTS = (0, 8)
BATCH, BUDGET = 16, 256
CHECK_ROWS, FLIP_SHARE = 1000, 0.10


def load_set(name: str, cache: EmbeddingCache, encoder, data_dir: Path = DATA) -> dict:
    spec = SETS[name]
    opt = spec.get
    data = load_splits(str(data_dir / spec["train"]), dev=str(data_dir / spec["dev"]) if spec["dev"] else None,
                       test=str(data_dir / spec["test"]), text_col=spec["text_col"], label_col=spec["label_col"],
                       multi_label=spec["multi_label"], label_sep=opt("label_sep"), header=spec.get("header", True),
                       label_names=str(data_dir / spec["label_names"]) if opt("label_names") else None,
                       max_train=opt("max_train"), dev_sample=opt("dev_sample"), test_sample=opt("test_sample"))

    def encode(rows):
        return encode_with_cache(encoder, [r.text for r in rows], cache, batch_size=64, show_progress_bar=True)

    return {"name": name, "spec": spec, "data": data, "pool_x": encode(data.train), "test_x": encode(data.test),
            "pool_texts": [r.text for r in data.train], "test_texts": [r.text for r in data.test],
            "y": label_matrix(data.train, data.labels, "train"), "y_test": label_matrix(data.test, data.labels, "test")}


def fit_default(x: np.ndarray, texts: list[str], y: np.ndarray, multi_label: bool, seed: int):
    """(name, candidate, settings): `index build` without --valid: auto by cross-validation, kNN below 6 rows."""
    from fewlabel.retrieval.knn.saved_index import UNTUNED_K
    from fewlabel.retrieval.methods.auto import select_method
    from fewlabel.retrieval.methods.common import Views
    from fewlabel.retrieval.methods.knn import KNNCandidate
    from fewlabel.retrieval.methods.registry import MIN_CV_ROWS

    views = Views(x, texts)
    if len(x) < MIN_CV_ROWS:
        k = min(UNTUNED_K, len(x))
        return "knn", KNNCandidate(k).fit_views(views, y, multi_label), \
            {"k": k, "m": 1 if not multi_label else max(1, round(k / 3))}
    choice = select_method(views, y, multi_label=multi_label, folds=5, seed=seed)
    return choice.method, choice.candidate, choice.settings


def micro_f1(candidate, settings, x: np.ndarray, texts: list[str], y: np.ndarray) -> float:
    from fewlabel.retrieval.methods.common import Views, f1_scores

    return f1_scores(candidate.decide(candidate.state(Views(x, texts)), settings), y)[0]


def simulate(s: dict, strategy: str, start: int, seed: int) -> dict:
    """One run of the simulated annotator: sizes, test micro-F1 and the method chosen after each batch."""
    from fewlabel.retrieval.labelling.model import IndexModel
    from fewlabel.retrieval.labelling.suggest import pick
    from fewlabel.retrieval.methods.common import Views

    pool_x, y, texts = s["pool_x"], s["y"], s["pool_texts"]
    ml, labels = s["data"].multi_label, s["data"].labels
    rng = np.random.default_rng(1000 + seed)
    labelled = list(rng.choice(len(y), size=start, replace=False)) if start else []
    sizes, scores, methods, seconds = [], [], [], 0.0
    model = None
    while True:
        if labelled:
            rows = np.asarray(labelled)
            name, candidate, settings = fit_default(pool_x[rows], [texts[i] for i in rows], y[rows], ml, seed)
            model = IndexModel(name, candidate, settings, list(labels), ml)
            sizes.append(len(rows))
            scores.append(round(micro_f1(candidate, settings, s["test_x"], s["test_texts"], s["y_test"]), 4))
            methods.append(name)
        if len(labelled) >= BUDGET:
            break
        started = time.perf_counter()
        taken = set(labelled)
        free = np.asarray([i for i in range(len(y)) if i not in taken], dtype=np.int64)
        proba = None
        if model is not None and strategy != "random":
            proba, _ = model.proba(Views(pool_x[free], [texts[i] for i in free]))
        n_labels = int(y[np.asarray(labelled, dtype=np.int64)].any(0).sum()) if labelled else 0
        picked, _ = pick(pool_x[free], proba, model, n=min(BATCH, BUDGET - len(labelled)), strategy=strategy,
                         seed=seed * 1000 + len(labelled), n_labelled=len(labelled), n_labels=n_labels,
                         labelled_vectors=pool_x[np.asarray(labelled, dtype=np.int64)] if labelled else None)
        seconds += time.perf_counter() - started
        labelled.extend(int(free[i]) for i in picked.rows)
    return {"sizes": sizes, "scores": scores, "methods": methods, "pick_seconds": round(seconds, 2)}


def flip_labels(y: np.ndarray, share: float, multi_label: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(len(y), size=round(len(y) * share), replace=False))
    noisy = y.copy()
    for i in flipped:
        others = np.flatnonzero(~y[i])
        noisy[i] = False
        noisy[i, rng.choice(others)] = True
    return noisy, flipped


def check_run(s: dict, seed: int) -> dict:
    from fewlabel.retrieval.labelling.check import out_of_fold, rank_issues
    from fewlabel.retrieval.labelling.model import FOLDABLE
    from fewlabel.retrieval.methods.common import Views

    rng = np.random.default_rng(2000 + seed)
    rows = np.sort(rng.choice(len(s["y"]), size=min(CHECK_ROWS, len(s["y"])), replace=False))
    ml = s["data"].multi_label
    noisy, flipped = flip_labels(s["y"][rows], FLIP_SHARE, ml, seed)
    x, texts = s["pool_x"][rows], [s["pool_texts"][i] for i in rows]
    started = time.perf_counter()
    name, _, settings = fit_default(x, texts, noisy, ml, seed)
    assert name in FOLDABLE
    proba, _ = out_of_fold(name, settings, Views(x, texts), noisy, ml, folds=5, seed=seed)
    order, flagged, _ = rank_issues(noisy, proba, ml)
    truth = set(flipped.tolist())
    out = {"method": name, "flips": len(flipped), "flagged": int(flagged.sum()),
           "flagged_precision": round(len(truth & set(np.flatnonzero(flagged).tolist())) / max(1, flagged.sum()), 4),
           "flagged_recall": round(len(truth & set(np.flatnonzero(flagged).tolist())) / len(truth), 4),
           "seconds": round(time.perf_counter() - started, 2)}
    for mult in (1, 2):
        top = set(order[:mult * len(flipped)].tolist())
        out[f"precision@{mult}x"] = round(len(top & truth) / len(top), 4)
        out[f"recall@{mult}x"] = round(len(top & truth) / len(truth), 4)
    return out


def _stats(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def curves(state: dict, name: str, start: int) -> dict:
    """strategy -> (sizes, mean, std) over the seeds run."""
    out = {}
    for strategy in STRATEGIES:
        runs = [r for key, r in state["runs"].items() if key.startswith(f"{name}|{start}|{strategy}|")]
        if not runs:
            continue
        sizes = runs[0]["sizes"]
        scores = np.array([r["scores"] for r in runs])
        out[strategy] = (sizes, scores.mean(0).tolist(), scores.std(0).tolist(), len(runs))
    return out


def efficiency(curve: dict) -> dict:
    """Labels each strategy needs to reach random's mean score at 256 (None: not within 256)."""
    if "random" not in curve:
        return {}
    goal = curve["random"][1][-1]
    out = {}
    for strategy, (sizes, mean, _, _) in curve.items():
        out[strategy] = next((n for n, m in zip(sizes, mean, strict=True) if m >= goal - 1e-9), None)
    return {"goal": goal, "labels": out}


def plot(path: Path, state: dict, names: list[str], starts: tuple[int, ...] = STARTS) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(starts), len(names), figsize=(5 * len(names), 4 * len(starts)), squeeze=False)
    for col, name in enumerate(names):
        for row, start in enumerate(starts):
            ax = axes[row][col]
            for strategy, (sizes, mean, std, _) in curves(state, name, start).items():
                mean, std = np.array(mean), np.array(std)
                ax.plot(sizes, mean, marker=".", label=strategy)
                ax.fill_between(sizes, mean - std, mean + std, alpha=0.15)
            ax.set_title(f"{name}, start {start}")
            ax.set_xlabel("labelled rows")
            ax.set_ylabel("test micro-F1")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(out: Path, state: dict, names: list[str], report_name: str = "active",
           starts: tuple[int, ...] = STARTS) -> None:
    body = []
    auto_hits, check_hits = 0, 0
    for name in names:
        if not any(k.startswith(name + "|") for k in state["runs"]):
            continue
        meta = state["sets"][name]
        body += [f"## {meta['title']}", "", f"pool {meta['pool']:,} rows, test {meta['test']:,} rows; "
                 + "; ".join(meta["notes"]), ""]
        for start in starts:
            curve = curves(state, name, start)
            if not curve:
                continue
            sizes = next(iter(curve.values()))[0]
            shown = [i for i, n in enumerate(sizes) if n in (sizes[0], 24, 32, 64, 72, 128, 136, 200, 256)
                     or i == len(sizes) - 1]
            rows = [[strategy, str(c[3])] + [f"{c[1][i]:.3f} ± {c[2][i]:.3f}" for i in shown]
                    for strategy, c in curve.items()]
            body += [f"Start from {start} rows: test micro-F1, mean ± std over seeds", "",
                     markdown_table(["strategy", "seeds", *[str(sizes[i]) for i in shown]], rows), ""]
            eff = efficiency(curve)
            if eff:
                cells = ", ".join(f"{s} {n if n is not None else '> 256'}" for s, n in eff["labels"].items())
                body += [f"Label efficiency (labels to reach random's 256-label score {eff['goal']:.3f}): {cells}",
                         ""]
                if start == 0:
                    needed = eff["labels"].get("auto")
                    meta.setdefault("auto_needed", needed)
        auto_needed = meta.get("auto_needed")
        auto_hits += auto_needed is not None and auto_needed <= 128
        checks = [r for key, r in state["checks"].items() if key.startswith(name + "|")]
        if checks:
            check_cells = []
            for field in ("precision@1x", "recall@1x", "precision@2x", "recall@2x", "flagged", "flagged_precision",
                          "flagged_recall"):
                m, sd = _stats([c[field] for c in checks])
                check_cells.append(f"{m:.3f} ± {sd:.3f}" if field != "flagged" else f"{m:.0f}")
            body += [f"Check ({CHECK_ROWS:,} rows, {checks[0]['flips']} flipped; method "
                     f"{', '.join(sorted({c['method'] for c in checks}))}; {len(checks)} seeds):", "",
                     markdown_table(["P@1x", "R@1x", "P@2x", "R@2x", "cleanlab flagged", "flagged P", "flagged R"],
                                    [check_cells]), ""]
            check_hits += _stats([c["recall@2x"] for c in checks])[0] >= 0.6
    done = [n for n in names if any(k.startswith(n + "|") for k in state["runs"])]
    body += ["## Targets", "",
             f"- `--strategy auto` (from 0 rows) reaches random's 256-label score with at most 128 labels on "
             f"{auto_hits} of {len(done)} sets (target: 2 of 3): " + ("reached" if auto_hits >= 2 else
                                                                   "**not reached**") + ".",
             *([f"- `check` finds at least 60% of the flipped labels in its top 2x on {check_hits} of {len(done)} "
                "sets (target: 2 of 3): " + ("reached" if check_hits >= 2 else "**not reached**") + "."]
               if state["checks"] else []), ""]
    plot(out / f"{report_name}.png", state, done, starts)
    body += [f"![learning curves]({report_name}.png)", ""]
    write_report(out, report_name, "The labelling loop with a simulated annotator", "\n".join(body), state,
                 data_note="NSMC (rebuilt), GoEmotions-ekman, SemEval-2010 Task 8 from ../shared/data; pools capped at "
                           "10,000 rows, test at 2,000 (stratified, fixed); encoder e5-small (the default), vectors "
                           "cached once")


def main(argv: list[str] | None = None) -> int:
    from fewlabel.indexing.encoders.encoder import Encoder

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="nsmc,goemotions,semeval")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder (default ../shared/data)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--deadline", default=None, help="HH:MM UTC: start no new run after it")
    p.add_argument("--starts", default=",".join(map(str, STARTS)), help="labelled rows a run starts from")
    p.add_argument("--no-check", action="store_true", help="only the learning curves")
    p.add_argument("--name", default="active", help="the report's and state file's name under --out")
    args = p.parse_args(argv)
    names = [n for n in args.sets.split(",") if n]
    strategies = [s for s in args.strategies.split(",") if s]
    starts = tuple(int(v) for v in args.starts.split(",") if v)
    state_path = args.out / f"{args.name}.json"
    state: dict[str, dict] = {"runs": {}, "checks": {}, "sets": {}}
    if state_path.is_file():
        loaded = json.loads(state_path.read_text())
        state = {key: loaded.get(key, {}) for key in ("runs", "checks", "sets")}
    if not args.report_only:
        cache = EmbeddingCache(default_cache_path())
        encoder = Encoder(MODEL, device="cpu")
        loaded_sets = {}
        # the runs in order of what the targets need first, seed-major inside each group, so that a run cut
        # short by --deadline leaves whole seeds of the most telling comparisons
        jobs: list[tuple[str, int, str, int | None, str | None]]
        jobs = [("run", seed, name, 0, strategy) for seed in range(args.seeds) for name in names
                for strategy in ("random", "auto") if strategy in strategies and 0 in starts]
        jobs += [("check", seed, name, None, None) for seed in range(args.seeds) for name in names
                 if not args.no_check]
        jobs += [("run", seed, name, 0, strategy) for seed in range(args.seeds) for name in names
                 for strategy in ("uncertainty", "diverse") if strategy in strategies and 0 in starts]
        jobs += [("run", seed, name, start, strategy) for start in starts if start for seed in range(args.seeds)
                 for name in names for strategy in STRATEGIES if strategy in strategies]
        for kind, seed, name, start, strategy in jobs:
            if args.deadline and time.strftime("%H:%M", time.gmtime()) >= args.deadline:
                print(f"deadline {args.deadline} UTC reached: stopping before {kind} {name} {seed}", flush=True)
                break
            key = f"{name}|{seed}" if kind == "check" else f"{name}|{start}|{strategy}|{seed}"
            if key in state["checks" if kind == "check" else "runs"]:
                continue
            if name not in loaded_sets:
                loaded_sets[name] = s = load_set(name, cache, encoder, args.data)
                state["sets"][name] = {"title": s["spec"]["title"], "pool": len(s["y"]), "test": len(s["y_test"]),
                                       "labels": len(s["data"].labels), "notes": s["data"].notes}
            s = loaded_sets[name]
            started = time.perf_counter()
            if kind == "check":
                state["checks"][key] = check_run(s, seed)
                print(key, "check", state["checks"][key], flush=True)
            else:
                assert strategy is not None and start is not None  # every "run" job has both
                state["runs"][key] = r = simulate(s, strategy, start, seed)
                print(key, f"{time.perf_counter() - started:.0f}s", r["scores"][-1], r["sizes"][-1], flush=True)
            args.out.mkdir(parents=True, exist_ok=True)
            state_path.write_text(json.dumps(state, indent=1))
    report(args.out, state, names, args.name, starts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
