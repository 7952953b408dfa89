"""Turn a slice benchmark's ``results.json`` into ``report.md``, ``micro_f1.png`` and ``macro_f1.png``.

The table gives mean ± standard deviation over seeds per method and slice (with the real slice sizes), the
wall time per method, and a verdict per slice: the best method's margin over Naive Bayes, so "which method
at my data size" can be read off one line."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from fewlabel.benchmarks.report import markdown_table, write_report

__all__ = ["summarise", "write_slice_report"]

BASELINE = "nb"


def _order(slices: list) -> list:
    return sorted(slices, key=lambda s: (s == "all", s if isinstance(s, int) else 0))


def summarise(state: dict) -> dict:
    """{method: {slice: {"micro": (mean, std, n), "macro": …, "rows": mean slice size}}}, plus constants."""
    groups: dict = defaultdict(lambda: defaultdict(list))
    for r in state["results"]:
        groups[r["method"]][r["slice"]].append(r)
    summary: dict = {}
    for method, by_slice in groups.items():
        summary[method] = {}
        for slice_name, records in by_slice.items():
            micro = np.array([r["micro_f1"] for r in records])
            macro = np.array([r["macro_f1"] for r in records])
            summary[method][slice_name] = {"micro": (float(micro.mean()), float(micro.std()), len(records)),
                                           "macro": (float(macro.mean()), float(macro.std()), len(records)),
                                           "rows": float(np.mean([r["train_rows"] for r in records])),
                                           "seconds": float(sum(r["seconds"] for r in records))}
    return summary


def _slices(summary: dict) -> list:
    return _order(sorted({s for by_slice in summary.values() for s in by_slice if s != "-"}, key=str))


def _cell(stats: tuple | None) -> str:
    if stats is None:
        return "-"
    mean, std, n = stats
    return f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"


def _real_sizes(state: dict, slices: list) -> dict:
    sizes = defaultdict(list)
    for per_seed in state["slices"].values():
        for name, n in per_seed.items():
            sizes[int(name) if name.isdigit() else name].append(n)
    return {s: sizes.get(s, []) for s in slices}


def _table(summary: dict, slices: list, sizes: dict, metric: str) -> str:
    headers = ["method"] + [f"{s} ({'/'.join(str(n) for n in sorted(set(sizes[s])))} rows)" for s in slices]
    rows = []
    for method, by_slice in summary.items():
        if "-" in by_slice:
            rows.append([f"{method} (no training rows)"] + [_cell(by_slice["-"][metric])] * len(slices))
        else:
            rows.append([method] + [_cell(by_slice.get(s, {}).get(metric)) for s in slices])
    return markdown_table(headers, rows)


def verdicts(summary: dict, slices: list, metric: str = "micro") -> list[dict]:
    """Per slice: the best method, its margin over Naive Bayes, and each kNN's margin."""
    out = []
    for s in slices:
        found = {m: (by.get(s) or by.get("-") or {}).get(metric) for m, by in summary.items()}
        scores: dict[str, float] = {m: v[0] for m, v in found.items() if v}
        if not scores:
            continue
        best = max(scores, key=scores.__getitem__)
        base = scores.get(BASELINE)
        row = {"slice": s, "best": best, "best_f1": scores[best], "nb_f1": base}
        if base is not None:
            others = {m: v for m, v in scores.items() if m != BASELINE}
            if others:
                best_other = max(others, key=others.__getitem__)
                row.update(best_other=best_other, margin=others[best_other] - base)
            row["knn_margin"] = {m: v - base for m, v in scores.items() if m.startswith("knn")}
        out.append(row)
    return out


def at_majority(summary: dict, majority: dict | None, tolerance: float = 0.005) -> list[str]:
    """'method at slice' wherever micro- and macro-F1 both equal the constant-answer floor."""
    if not majority:
        return []
    hits = []
    for method, by_slice in summary.items():
        for s, v in by_slice.items():
            if (abs(v["micro"][0] - majority["micro_f1"]) < tolerance
                    and abs(v["macro"][0] - majority["macro_f1"]) < tolerance):
                hits.append(f"{method} at {s}")
    return hits


def plot(path: Path, summary: dict, slices: list, metric: str, title: str, majority: dict | None = None) -> None:
    from fewlabel.indexing.plots import pyplot

    plt = pyplot()  # Agg, with a Hangul font

    fig, ax = plt.subplots(figsize=(8, 5))
    xs_all = []
    for method, by_slice in summary.items():
        if "-" in by_slice:
            continue
        present = [s for s in slices if s in by_slice]
        xs = [by_slice[s]["rows"] for s in present]
        xs_all += xs
        means = np.array([by_slice[s][metric][0] for s in present])
        stds = np.array([by_slice[s][metric][1] for s in present])
        style = "--" if method == BASELINE else "-"
        ax.plot(xs, means, style, marker="o", label=method)
        ax.fill_between(xs, means - stds, means + stds, alpha=0.15)
    for method, by_slice in summary.items():
        if "-" in by_slice:
            ax.axhline(by_slice["-"][metric][0], color="grey", linestyle=":", label=f"{method} (no training rows)")
    if majority:
        ax.axhline(majority[f"{metric}_f1"], color="black", linestyle="--", linewidth=0.8,
                   label=f"every text '{majority['label']}' (best constant answer)")
    ax.set_xscale("log")
    ticks = sorted({round(x) for x in xs_all})
    if ticks:
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks], rotation=45)
        ax.minorticks_off()
    ax.set_xlabel("training rows (real slice size, log scale)")
    ax.set_ylabel(f"{metric}-F1 on test")
    ax.set_title(title)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt_margin(v: float | None) -> str:
    return "-" if v is None else f"{v:+.3f}"


def write_slice_report(out: Path, state: dict, *, title: str, data_note: str, notes: list[str],
                       budget_note: str = "", command: str | None = None) -> Path:
    summary = summarise(state)
    slices = _slices(summary)
    sizes = _real_sizes(state, slices)
    majority = state.get("majority")
    plot(out / "micro_f1.png", summary, slices, "micro", f"{title}: micro-F1", majority)
    plot(out / "macro_f1.png", summary, slices, "macro", f"{title}: macro-F1", majority)
    times = {m: sum(v["seconds"] for v in by.values()) for m, by in summary.items()}
    checks = verdicts(summary, slices)
    lines = ["Mean ± standard deviation over seeds; the column heads give the asked slice size and the real "
             "sizes drawn (nested, iteratively stratified).", ""]
    lines += [f"- {n}" for n in notes]
    if budget_note:
        lines += [f"- {budget_note}"]
    if majority:
        floor = at_majority(summary, majority)
        lines += [f"- floor: giving every test text the same answer, '{majority['label']}' (the best constant "
                  "answer on dev), scores "
                  f"micro-F1 {majority['micro_f1']:.3f} / macro-F1 {majority['macro_f1']:.3f}"
                  + (f"; these runs score exactly that (they learned nothing beyond it): {', '.join(floor)}"
                     if floor else "")]
    lines += ["", "## Micro-F1", "", _table(summary, slices, sizes, "micro"), "",
              "## Macro-F1", "", _table(summary, slices, sizes, "macro"), "",
              "## Best method per slice against Naive Bayes (micro-F1)", "",
              markdown_table(["slice", "best method", "its micro-F1", "Naive Bayes", "best non-NB margin",
                              "kNN margin over NB"],
                             [[c["slice"], c["best"], f"{c['best_f1']:.3f}",
                               "-" if c["nb_f1"] is None else f"{c['nb_f1']:.3f}",
                               f"{c.get('best_other', '-')} {_fmt_margin(c.get('margin'))}",
                               ", ".join(f"{m} {_fmt_margin(v)}" for m, v in (c.get("knn_margin") or {}).items())
                               or "-"] for c in checks]), "",
              "## Wall time per method (all slices and seeds, fit + test prediction)", "",
              markdown_table(["method", "seconds"], [[m, f"{t:,.0f}"] for m, t in times.items()]), "",
              "![micro-F1](micro_f1.png) ![macro-F1](macro_f1.png)"]
    payload = {"summary": {m: {str(s): v for s, v in by.items()} for m, by in summary.items()},
               "checks": checks, "notes": notes, "majority": majority, "config": state["config"],
               "slices": state["slices"]}
    write_report(out, "report", title, "\n".join(lines), payload, data_note=data_note, command=command)
    return out / "report.md"
