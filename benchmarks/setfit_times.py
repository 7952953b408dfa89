"""How long SetFit trains on this CPU at 8-128 rows: the numbers behind auto's default SetFit bound.

`fewlabel index build` (auto, no ``--budget``) makes SetFit a candidate only when the rows are few enough that
cross-validating it fits a default time bound (:data:`fewlabel.retrieval.methods.index_method.SETFIT_ROWS`,
``SETFIT_SECONDS``). This benchmark measures one SetFit fit (the paper's recipe: 20 pairs per text, one epoch,
batch 16, no time limit) on nested slices of each set, and its test micro-F1, so the bound and the row limit
rest on measured times. ``--auto`` also times ``index build``'s choice with SetFit in it (true few-shot
cross-validation at the default bound) against the same choice without it.

    python -m fewlabel.benchmarks.setfit_times --out benchmarks/results            # fits, then the report
    python -m fewlabel.benchmarks.setfit_times --auto --out benchmarks/results     # plus auto with SetFit"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fewlabel.benchmarks.fewshot import load_set
from fewlabel.benchmarks.methods import DATA
from fewlabel.benchmarks.report import cpu_flags, markdown_table, write_report
from fewlabel.benchmarks.slices.sampling import nested_slices
from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path

SIZES = (8, 16, 32, 64, 128)
AUTO_SIZES = (8, 16, 32, 64)
RUN_COMMAND = ("python -m fewlabel.benchmarks.setfit_times --sets nsmc,semeval --out benchmarks/results; "
               "python -m fewlabel.benchmarks.setfit_times --sets nsmc --no-fits --auto --auto-seeds 1 "
               "--out benchmarks/results")


def time_fits(s: dict, sizes: tuple[int, ...], seed: int, keep: Callable[[dict], None]) -> None:
    """One SetFit fit per slice, untimed-out, with its training seconds and test micro-F1; ``keep`` saves each
    fit as it ends (a 128-row fit takes many minutes: a stopped run keeps the slices it finished)."""
    from fewlabel.finetune.classify.index_heads import index_trainers
    from fewlabel.retrieval.methods.common import f1_scores
    from fewlabel.retrieval.methods.trained import TrainedHead

    trainer = index_trainers(s["spec"]["model"], device="cpu", seed=seed)["setfit"]
    for size, rows in zip(sizes, nested_slices(s["y"], list(sizes), seed), strict=True):
        started = time.perf_counter()
        head = TrainedHead("setfit", trainer, 1e9, s["labels"]).fit_views(s["train"].take(rows), s["y"][rows],
                                                                         s["multi_label"])
        seconds = time.perf_counter() - started
        test = f1_scores(head.decide(head.state(s["test"]), {}), s["y_test"])[0]
        fit = {"set": s["name"], "model": s["spec"]["model"], "size": size, "seed": seed,
               "seconds": round(seconds, 1), "test_micro_f1": round(float(test), 4),
               "load": round(os.getloadavg()[0], 2)}
        print(fit, flush=True)
        keep(fit)


def time_auto(s: dict, sizes: tuple[int, ...], seed: int) -> list[dict]:
    """auto without validation rows, with and without SetFit at the default bound: seconds, choice, test."""
    from fewlabel.finetune.classify.index_heads import index_trainers
    from fewlabel.retrieval.methods.auto import select_method
    from fewlabel.retrieval.methods.common import f1_scores
    from fewlabel.retrieval.methods.index_method import default_trained_plan

    trainers = index_trainers(s["spec"]["model"], device="cpu", seed=seed)
    out = []
    for size, rows in zip(sizes, nested_slices(s["y"], list(sizes), seed), strict=True):
        train, y = s["train"].take(rows), s["y"][rows]
        cell: dict[str, Any] = {"set": s["name"], "size": size, "seed": seed}
        for tag, trained in (("without", {}), ("with", default_trained_plan(trainers, len(rows), s["labels"],
                                                                            print))):
            started = time.perf_counter()
            choice = select_method(train, y, multi_label=s["multi_label"], descriptions=s["descriptions"], seed=seed,
                                   trained=trained)
            seconds = time.perf_counter() - started
            candidate, settings = choice.candidates[choice.method]
            test = f1_scores(candidate.decide(candidate.state(s["test"]), settings), s["y_test"])[0]
            cell[tag] = {"seconds": round(seconds, 1), "chosen": choice.method, "test_micro_f1": round(float(test), 4)}
            if "setfit" in choice.candidates:
                head, head_settings = choice.candidates["setfit"]
                cell[tag]["setfit_test"] = round(float(f1_scores(head.decide(head.state(s["test"]), head_settings),
                                                                 s["y_test"])[0]), 4)
        print(cell, flush=True)
        out.append(cell)
    return out


def render(results: dict, out: Path, command: str | None = None) -> Path:
    fits = results.get("fits") or []
    rows = []
    for name in dict.fromkeys(f["set"] for f in fits):
        for size in SIZES:
            cells = [f for f in fits if f["set"] == name and f["size"] == size]
            if cells:
                rows.append([name, cells[0]["model"], size, f"{np.mean([c['seconds'] for c in cells]):.1f}",
                             f"{np.mean([c['test_micro_f1'] for c in cells]):.3f}", len(cells)])
    lines = [
        f"CPU flags: {cpu_flags()}. The 1-minute load average at each fit is in the json (about 2 is this job's "
        "own two threads on the 2 cores). Recipe: the SetFit paper's (20 pairs per text, one epoch, batch 16), "
        "no time limit, "
        "word embeddings frozen (as the index's SetFit trains), then its logistic head; the seconds include "
        "loading the body and fitting the head.", "",
        "## One SetFit fit", "",
        markdown_table(["set", "model", "rows", "seconds", "test micro-F1", "seeds"], rows), "",
    ]
    auto = results.get("auto") or []
    if auto:
        table = []
        for c in auto:
            w, wo = c["with"], c["without"]
            table.append([c["set"], c["size"], c["seed"], wo["chosen"], f"{wo['test_micro_f1']:.3f}",
                          f"{wo['seconds']:.1f}", w["chosen"], f"{w['test_micro_f1']:.3f}", f"{w['seconds']:.1f}",
                          f"{w['setfit_test']:.3f}" if "setfit_test" in w else "-"])
        lines += [
            "## auto (true few-shot) with SetFit at the default bound", "",
            "`select_method` without validation rows, label descriptions given, as `index build --label-names … "
            "--method auto` runs it: without SetFit (`--budget 0`) and with it (the default up to the row "
            "limit). Seconds are the whole choice, SetFit's cross-validation and final fit included.", "",
            markdown_table(["set", "rows", "seed", "chosen (no SetFit)", "test", "s", "chosen (SetFit in)", "test",
                            "s", "SetFit's own test"], table), "",
        ]
    lines += results.get("conclusion", [])
    payload = {k: v for k, v in results.items() if k in ("fits", "auto", "conclusion")}
    return write_report(out, "setfit_times", "SetFit training time on this CPU (issue 23: SetFit by default at "
                        "small N)", "\n".join(lines), payload,
                        data_note="the fewshot benchmark's sets and caps (NSMC 10k pool and 2k test with e5-small; "
                                  "SemEval and GoEmotions-ekman with minilm), nested slices drawn as in fewshot.md",
                        command=command or results.get("command"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="nsmc,semeval,goemotions", help="comma-separated sets of the fewshot benchmark")
    p.add_argument("--seeds", type=int, default=1, help="seeds of the single-fit timings")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated slice sizes of the fits")
    p.add_argument("--auto", action="store_true", help="also time auto with SetFit in (slow)")
    p.add_argument("--auto-seeds", type=int, default=2, help="seeds of the auto timings")
    p.add_argument("--no-fits", action="store_true", help="skip the single-fit timings (keep those in the json)")
    p.add_argument("--render", action="store_true", help="only write the report from the json")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder of the report")
    args = p.parse_args(argv)
    path = args.out / "setfit_times.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if not args.render:
        cache = EmbeddingCache(default_cache_path())
        for name in args.sets.split(","):
            s = load_set(name, DATA, cache)
            if not args.no_fits:
                sizes = tuple(int(size) for size in args.sizes.split(","))
                results["fits"] = [f for f in results.get("fits", [])
                                  if not (f["set"] == name and f["size"] in sizes)]

                def keep(fit: dict) -> None:
                    results["fits"].append(fit)
                    render(results, args.out, RUN_COMMAND)

                for seed in range(args.seeds):
                    time_fits(s, sizes, seed, keep)
            if args.auto:
                auto = [c for seed in range(args.auto_seeds) for c in time_auto(s, AUTO_SIZES, seed)]
                results["auto"] = [c for c in results.get("auto", []) if c["set"] != name] + auto
            print(render(results, args.out, RUN_COMMAND))  # the json too: what is measured so far survives a stop
    else:
        print(render(results, args.out))


if __name__ == "__main__":
    main()
