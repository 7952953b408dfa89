"""Error analysis: the plots and per-label tables behind a single score.

One Pearson value can hide very different errors (Anscombe's quartet), and one micro-F1 hides which classes
fail. So:

- :func:`sts_figure`: predicted against gold scores with the identity line, Pearson and Spearman in the title,
  and the residuals (predicted - gold) by gold-score bin;
- :func:`confusion_figure`: the confusion matrix of single-label predictions (rows: gold, columns: predicted;
  colour = share of the gold row, numbers = counts);
- :func:`per_label_scores` and :func:`write_tables`: precision, recall, F1 and support per label, with micro and
  macro averages, as CSV and Markdown.

matplotlib runs on the Agg backend (no display needed; Korean labels drawn with NanumGothic, see
:mod:`fewlabel.indexing.plots`) and is imported only inside these functions, so the CLI
stays light. Figures are returned, so tests check their axes and labels instead of pixels, and written with
:func:`save_figure`, atomically. Files beside an output are checked with :func:`claim_analysis_files` before any
work: a user's file there is never replaced."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from fewlabel.indexing.files import atomic_file, refuse_foreign

__all__ = ["PNG_MARK", "TABLE_COLUMNS", "analysis_files", "claim_analysis_files", "confusion_figure",
           "markdown_table", "per_label_markdown", "per_label_scores", "save_figure", "sts_figure", "write_tables"]

PNG_MARK = "fewlabel error analysis"  # written into each PNG's metadata: how a plot of ours is recognised
TABLE_COLUMNS = ("label", "precision", "recall", "f1", "support", "predicted")
STS_BINS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)


def _pyplot():
    from fewlabel.indexing.plots import pyplot

    return pyplot()  # Agg (files only; never a window), with a Hangul font for Korean labels


# ---- STS -------------------------------------------------------------------------------------------------------
def sts_figure(gold: Sequence[float] | np.ndarray, predicted: Sequence[float] | np.ndarray, *,
               title: str | None = None):
    """Two panels: the scatter of predicted against gold 0-5 scores with the identity line (Pearson and Spearman
    in the title), and box plots of the residual predicted - gold for each gold-score bin (n per bin on the axis)."""
    from scipy.stats import pearsonr, spearmanr

    gold = np.asarray(gold, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    if gold.shape != predicted.shape or gold.size < 2:
        raise ValueError("sts_figure needs at least two (gold, predicted) pairs of the same length")
    pearson, spearman = float(pearsonr(gold, predicted)[0]), float(spearmanr(gold, predicted)[0])
    plt = _pyplot()
    fig, (scatter, residuals) = plt.subplots(1, 2, figsize=(11, 4.8))
    scatter.scatter(gold, predicted, s=8, alpha=0.35, color="tab:blue", label=f"pairs (n={gold.size:,})")
    scatter.plot([0, 5], [0, 5], color="black", linewidth=1, linestyle="--", label="identity (predicted = gold)")
    scatter.set(xlim=(-0.1, 5.1), ylim=(-0.1, 5.1), xlabel="gold score", ylabel="predicted score",
                title=f"Pearson {pearson:.3f}, Spearman {spearman:.3f}")
    scatter.set_aspect("equal")
    scatter.legend(loc="upper left", fontsize=8)

    errors = predicted - gold
    bins = np.clip(np.digitize(gold, STS_BINS[1:-1]), 0, len(STS_BINS) - 2)
    groups = [errors[bins == b] for b in range(len(STS_BINS) - 1)]
    names = [f"{lo:g}-{hi:g}\n(n={len(g)})" for lo, hi, g in zip(STS_BINS, STS_BINS[1:], groups, strict=False)]
    shown = [i for i, g in enumerate(groups) if len(g)]
    residuals.boxplot([groups[i] for i in shown], positions=[i + 1 for i in shown], widths=0.6, showmeans=True,
                      flierprops={"markersize": 2, "alpha": 0.4})
    residuals.axhline(0, color="black", linewidth=1, linestyle="--")
    residuals.set_xticks(range(1, len(names) + 1), names)
    residuals.set(xlabel="gold-score bin", ylabel="residual (predicted - gold)",
                  title="residuals by gold score (triangle: mean)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---- classification ----------------------------------------------------------------------------------------------
def confusion_figure(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str], *,
                     title: str | None = None):
    """The confusion matrix of single-label predictions over ``labels`` (in that order): rows are gold labels,
    columns predicted ones; colour is the share of the gold row (so rare classes are readable), the numbers are
    counts (shown up to 30 labels)."""
    from sklearn.metrics import confusion_matrix

    labels = list(labels)
    counts = confusion_matrix(list(gold), list(predicted), labels=labels)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    plt = _pyplot()
    side = max(5.0, 0.42 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the gold row")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set(xlabel="predicted label", ylabel="gold label")
    accuracy = np.trace(counts) / max(1, counts.sum())
    summary = f"confusion matrix (accuracy {accuracy:.3f}, n={int(counts.sum()):,})"
    ax.set_title(f"{title}\n{summary}" if title else summary)
    if len(labels) <= 30:
        for i, j in zip(*np.nonzero(counts), strict=True):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=6 if len(labels) > 12 else 8,
                    color="white" if shares[i, j] > 0.5 else "black")
    fig.tight_layout()
    return fig


def per_label_scores(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> list[dict]:
    """Precision, recall, F1, support (gold count) and predicted count per label from (n, L) boolean matrices
    (single-label data one-hot), then the micro and macro averages over the labels."""
    from sklearn.metrics import precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    rows = [{"label": name, "precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]),
             "support": int(support[j]), "predicted": int(y_pred[:, j].sum())} for j, name in enumerate(labels)]
    for average in ("micro", "macro"):
        ap, ar, af, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        rows.append({"label": f"({average} average)", "precision": float(ap), "recall": float(ar), "f1": float(af),
                     "support": int(y_true.sum()), "predicted": int(y_pred.sum())})
    return rows


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: Sequence[str] | None = None) -> str:
    """A Markdown table; cells are formatted by the caller so each table keeps its own precision. ``align``
    gives "l" or "r" per column (default: all left); every report and the per-label tables use this one."""
    marks = ["---:" if a == "r" else "---" for a in (align or ["l"] * len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def per_label_markdown(rows: Sequence[dict]) -> str:
    """The per-label table of :func:`per_label_scores` in Markdown, scores to 4 decimals."""
    cells = [[row["label"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", row["support"],
              row["predicted"]] for row in rows]
    return markdown_table(TABLE_COLUMNS, cells, align=["l"] + ["r"] * (len(TABLE_COLUMNS) - 1)) + "\n"


def write_tables(rows: Sequence[dict], csv_path: Path, md_path: Path) -> None:
    """The per-label table as CSV (4 decimals) and as Markdown, each written atomically."""
    with atomic_file(Path(csv_path)) as fh:
        writer = csv.writer(fh)
        writer.writerow(TABLE_COLUMNS)
        for row in rows:
            writer.writerow([row["label"], *(f"{row[k]:.4f}" for k in ("precision", "recall", "f1")),
                             row["support"], row["predicted"]])
    with atomic_file(Path(md_path)) as fh:
        fh.write(per_label_markdown(rows))


# ---- files -------------------------------------------------------------------------------------------------------
def save_figure(fig, path: Path, *, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG at ``path`` atomically (marked as ours in its metadata) and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Description": PNG_MARK})
    _pyplot().close(fig)
    with atomic_file(Path(path)) as fh:  # a text handle over a binary file: write the PNG through its buffer
        fh.flush()
        fh.buffer.write(buffer.getvalue())
    return Path(path)


def analysis_files(out: str | Path, *, plot: str | None = "confusion", table: str | None = None) -> dict[str, Path]:
    """The files written beside an output ``OUT`` (its whole name, extension included), by the one rule every
    sidecar follows, ``OUT.meta.json`` too: ``OUT.<plot>.png`` and ``OUT.<table>.csv|.md`` (``pred.csv`` gets
    ``pred.csv.per_label.csv``, ``pred.csv.confusion.png``; ``scores.csv`` gets ``scores.csv.scatter.png``)."""
    out = Path(out)
    files: dict[str, Path] = {}
    if plot:
        files["png"] = out.with_name(f"{out.name}.{plot}.png")
    if table:
        files["csv"] = out.with_name(f"{out.name}.{table}.csv")
        files["md"] = out.with_name(f"{out.name}.{table}.md")
    return files


def claim_analysis_files(files: dict[str, Path], option: str = "--out") -> None:
    """Refuse, before any work, to write over a file there that is not an earlier analysis file of ours."""
    for kind, path in files.items():
        refuse_foreign(path, folder=False, what=f"a fewlabel error-analysis {kind.upper()} file",
                       ours=partial(_ours, kind=kind), option=option)


def _ours(path: Path, kind: str) -> bool:
    try:
        if kind == "png":
            with open(path, "rb") as fh:
                return PNG_MARK.encode() in fh.read(4096)
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = fh.readline().strip()
    except OSError:
        return False
    if kind == "csv":
        return tuple(first.split(",")) == TABLE_COLUMNS
    return first.startswith("| " + " | ".join(TABLE_COLUMNS))
