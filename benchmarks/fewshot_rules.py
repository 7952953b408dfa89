"""How auto should choose from few rows: the selection rules compared on the same cross-validation scores.

For every true few-shot cell of :mod:`fewlabel.benchmarks.fewshot` (data set, slice of 8-256 rows, seed;
protocol a, label descriptions given) this runs auto's cross-validation once and keeps each candidate's
leaderboard entry (score, per-fold scores) beside its test score. The rules are then applied to the same
entries, so they differ only in how they read them:

* ``best mean``: the highest cross-validated score;
* ``within f SE``: the simplest candidate (lowest registered rank) within f standard errors of the best, for
  f in :data:`FACTORS` (f = 1 is the one-standard-error rule);
* ``shrunk``: each candidate's advantage over kNN (paired per fold) shrunk toward its mean advantage in the
  *other* sets' cells at that slice (empirical Bayes: a normal prior from those cells, the per-fold spread
  as the noise), highest wins: the "prior ranking that the benchmarks measured".

Each rule is scored by its regret (the best candidate's test micro-F1 on that seed minus the chosen one's),
with label descriptions (every candidate) and without (knn, linear, nb, ensemble), and the factor each set
would get if it were chosen on the other two sets (leave one set out).

    python -m fewlabel.benchmarks.fewshot_rules --out benchmarks/results"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fewlabel.benchmarks.fewshot import SIZES, _test_scores, load_set
from fewlabel.benchmarks.methods import DATA
from fewlabel.benchmarks.report import markdown_table, write_report
from fewlabel.benchmarks.slices.sampling import nested_slices
from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path

FACTORS = (0.25, 0.5, 0.75, 1.0)
PLAIN = ("knn", "linear", "nb", "ensemble")  # the candidates without label descriptions
REFERENCE = "knn"  # shrinkage measures each candidate's advantage over this one (always a candidate)


def collect(name: str, data: Path, seeds: int, done: list[dict], save) -> list[dict]:
    """One cross-validated leaderboard per (slice, seed), with every candidate's test score."""
    from fewlabel.retrieval.methods.auto import select_method

    s = load_set(name, data, EmbeddingCache(default_cache_path()))
    have = {(c["size_asked"], c["seed"]) for c in done}
    sizes = [n for n in SIZES if n > 0]
    for seed in range(seeds):
        slices = dict(zip(sizes, nested_slices(s["y"], sizes, seed), strict=True))
        for asked in sizes:
            if (asked > 64 and seed >= 3) or (asked, seed) in have:  # the fewshot report's seeds
                continue
            rows = slices[asked]
            choice = select_method(s["train"].take(rows), s["y"][rows], multi_label=s["multi_label"],
                                   descriptions=s["descriptions"], seed=seed, se_factor=0)
            done.append({"size_asked": asked, "size": int(len(rows)), "seed": seed,
                         "folds": choice.protocol["folds"], "test": _test_scores(choice, s["test"], s["y_test"]),
                         "leaderboard": [{k: e[k] for k in ("method", "score", "spread", "scores")}
                                         for e in choice.leaderboard]})
            save()
            print(f"{name:<10} n={asked:<4} seed {seed}: " + ", ".join(f"{e['method']} {e['score']:.3f}"
                                                                        for e in choice.leaderboard), flush=True)
    return done


def _rank(method: str) -> int:
    from fewlabel.retrieval.methods.registry import get_spec

    return get_spec(method).rank


def within_se(cell: dict, allowed: tuple[str, ...], factor: float) -> str:
    """The simplest candidate within ``factor`` standard errors of the best (0: the best mean)."""
    from fewlabel.retrieval.methods.auto import _simplest_within

    board = {e["method"]: {"entry": e} for e in cell["leaderboard"] if e["method"] in allowed}
    best = max(board, key=lambda m: (round(board[m]["entry"]["score"], 9), -_rank(m)))
    return _simplest_within(board, best, cell["folds"], factor)


def measured_prior(cells: list[dict]) -> dict:
    """Per slice and candidate: mean and variance of its test advantage over :data:`REFERENCE`."""
    gaps: dict = {}
    for c in cells:
        for method, value in c["test"].items():
            gaps.setdefault(c["size_asked"], {}).setdefault(method, []).append(value - c["test"][REFERENCE])
    return {size: {m: (float(np.mean(v)), float(np.var(v)) + 1e-6) for m, v in by.items()} for size, by in gaps.items()}


def shrunk(cell: dict, allowed: tuple[str, ...], prior: dict) -> str:
    """The highest posterior advantage over kNN: the paired CV advantage and the measured one, each weighted by
    its precision (the CV noise is the paired per-fold variance over the folds of one draw)."""
    board = {e["method"]: e for e in cell["leaderboard"] if e["method"] in allowed}
    reference = np.asarray(board[REFERENCE]["scores"])
    draws = max(1, len(reference) // cell["folds"])
    best, best_value = REFERENCE, 0.0
    for method, entry in board.items():
        if method == REFERENCE:
            continue
        gap = np.asarray(entry["scores"]) - reference
        noise = gap.var(ddof=1) / (len(gap) / draws) + 1e-6
        mean, variance = prior.get(cell["size_asked"], {}).get(method, (0.0, 1.0))
        value = (gap.mean() / noise + mean / variance) / (1 / noise + 1 / variance)
        if value > best_value + 1e-12:
            best, best_value = method, value
    return best


def regrets(cells: list[dict], pick, allowed: tuple[str, ...]) -> dict[int, float]:
    """Mean regret per slice: the best allowed candidate's test score on that seed minus the picked one's."""
    by: dict[int, list[float]] = {}
    for c in cells:
        test = {m: v for m, v in c["test"].items() if m in allowed}
        by.setdefault(c["size_asked"], []).append(max(test.values()) - test[pick(c, allowed)])
    return {size: float(np.mean(v)) for size, v in sorted(by.items())}


def rules(sets: dict[str, list[dict]]) -> dict[str, Callable[[str], Callable[[dict, tuple[str, ...]], str]]]:
    """Per rule: given the set being scored, the function that picks a candidate in one of its cells
    (shrinkage takes its prior from the other sets' cells only)."""
    def se_rule(factor: float):
        return lambda held: (lambda cell, allowed: within_se(cell, allowed, factor))

    def shrink_rule(held: str):
        prior = measured_prior([c for name, cells in sets.items() if name != held for c in cells])
        return lambda cell, allowed: shrunk(cell, allowed, prior)

    return {"best mean": se_rule(0.0), **{f"within {f:g} SE": se_rule(f) for f in FACTORS},
            "shrunk toward the other sets": shrink_rule}


def _largest_and_mean(by_size: dict[int, float]) -> str:
    return f"{max(by_size.values()):.3f} / {np.mean(list(by_size.values())):.3f}"


def render(sets: dict[str, list[dict]]) -> str:
    from fewlabel.retrieval.methods.auto import SE_FACTOR

    parts = []
    table = rules(sets)
    every = tuple(sorted({m for cells in sets.values() for c in cells for m in c["test"]}))
    results = {(rule, label, name): regrets(cells, make(name), allowed)
               for rule, make in table.items() for label, allowed in (("names", every), ("no names", PLAIN))
               for name, cells in sets.items()}
    for label in ("names", "no names"):
        rows = [[rule, *[_largest_and_mean(results[(rule, label, n)]) for n in sets]] for rule in table]
        parts.append(f"### Auto {'with label descriptions' if label == 'names' else 'without label descriptions'}: "
                     "largest / mean regret over 8-256 rows\n\n" + markdown_table(["rule", *sets], rows))
    default = f"within {SE_FACTOR:g} SE"
    sizes = sorted({s for n in sets for s in results[(default, 'names', n)]})
    rows = [[n, *[f"{results[(default, 'names', n)].get(s, float('nan')):.3f}" for s in sizes]] for n in sets]
    parts.append(f"### The default ({default}), with descriptions: mean regret per slice\n\n"
                 + markdown_table(["set", *map(str, sizes)], rows))
    lines = []
    for held in sets:
        others = [n for n in sets if n != held]
        score = {f: max(max(results[(f"within {f:g} SE", "names", n)].values()) for n in others) for f in FACTORS}
        best = min(score.values())
        lines.append(f"- {held} left out: the other two sets' largest regret is smallest at factor "
                     + ", ".join(f"{f:g}" for f in FACTORS if score[f] <= best + 1e-9) + f" ({best:.3f})")
    parts.append("### Leave one set out: the factor the other two sets choose\n\n" + "\n".join(lines))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="nsmc,goemotions,semeval")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--render", action="store_true", help="rewrite the report from the saved cells (no run)")
    args = p.parse_args(argv)
    out = Path(args.out)
    partial, store = out / ".fewshot_rules.partial.json", out / "fewshot_rules.json"
    sets: dict[str, list[dict]] = json.loads(partial.read_text()) if partial.exists() else (
        json.loads(store.read_text())["sets"] if args.render and store.exists() else {})
    if not args.render:
        out.mkdir(parents=True, exist_ok=True)
        for name in args.datasets.split(","):
            collect(name, Path(args.data), args.seeds, sets.setdefault(name, []),
                    lambda: partial.write_text(json.dumps(sets)))
    body = render({name: sets[name] for name in args.datasets.split(",") if sets.get(name)})
    write_report(out, "fewshot_rules", "How auto chooses from few rows: selection rules on the same CV scores", body,
                 {"sets": sets}, command="python -m fewlabel.benchmarks.fewshot_rules --out benchmarks/results",
                 data_note="the true few-shot cells of fewshot.md (NSMC e5-small, GoEmotions-ekman and SemEval "
                           "minilm; 10,000-row pools, 2,000-row test samples; 5 seeds at 8-64 rows, 3 at 128-256)")
    if partial.exists() and not args.render:
        partial.unlink()  # the benchmark's own scratch file, now in fewshot_rules.json
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
