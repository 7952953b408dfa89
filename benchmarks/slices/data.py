"""The three splits of a slice benchmark, read from users' files and made affordable.

Train, dev and test are read by :func:`fewlabel.indexing.readers.read_rows` (CSV, TSV, JSONL; errors name file, line
and field). Without a dev file a stratified dev split is held out of train *before* any slice is drawn.
``max_train``, ``dev_sample`` and ``test_sample`` cap the pool, the tuning data and the test set with fixed
(seed 0) stratified samples, identical for every seed and method, and each cap is recorded in the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fewlabel.benchmarks.slices.sampling import stratified_subset
from fewlabel.indexing.errors import DataError
from fewlabel.indexing.readers import Row, label_matrix, read_rows, read_text_file

__all__ = ["SliceData", "load_splits", "read_label_names"]

CAP_SEED = 0  # caps and hold-outs are the same for every seed: only the slices vary


@dataclass
class SliceData:
    train: list[Row]
    dev: list[Row]
    test: list[Row]
    labels: list[str]
    multi_label: bool
    notes: list[str] = field(default_factory=list)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)}


def read_label_names(path: str | Path) -> list[str]:
    """One label name a line (GoEmotions' ``labels.txt``); row labels that are integers index this list."""
    names = [line.strip() for line in read_text_file(path).splitlines() if line.strip()]
    if not names:
        raise DataError("no label names", path=str(path))
    return names


def _named(rows: list[Row], names: list[str] | None, source: str) -> list[Row]:
    if names is None:
        return rows
    out = []
    for row in rows:
        mapped = []
        for label in row.labels:
            if not (label.isdigit() and int(label) < len(names)):
                raise DataError(f"label '{label}' is not an index into the {len(names)} label names",
                                path=source, line=row.line, field="label")
            mapped.append(names[int(label)])
        out.append(Row(row.text, tuple(mapped), row.id, row.line))
    return out


def load_splits(train: str, *, dev: str | None, test: str, text_col: str, label_col: str, multi_label: bool,
                label_sep: str | None = None, header: bool = True, label_names: str | None = None,
                dev_fraction: float = 0.1, max_train: int | None = None, dev_sample: int | None = None,
                test_sample: int | None = None) -> SliceData:
    names = read_label_names(label_names) if label_names else None

    def read(path: str) -> list[Row]:
        rows = read_rows(path, text_col=text_col, label_col=label_col, label_sep=label_sep, header=header)
        rows = _named(rows, names, path)
        if not multi_label:
            many = next((r for r in rows if len(r.labels) > 1), None)
            if many is not None:
                raise DataError(f"{len(many.labels)} labels in a single-label run (add --multi-label)", path=path,
                                line=many.line, field=label_col)
        return rows

    notes: list[str] = []
    train_rows = read(train)
    labels = names or sorted({lab for r in train_rows for lab in r.labels})
    y_train = label_matrix(train_rows, labels, train)
    if dev:
        dev_rows = read(dev)
    else:
        if not 0 < dev_fraction < 1:
            raise DataError(f"dev fraction must be between 0 and 1, got {dev_fraction}", path=train)
        held = stratified_subset(y_train, max(1, round(len(train_rows) * dev_fraction)), CAP_SEED)
        keep = np.setdiff1d(np.arange(len(train_rows)), held)
        dev_rows = [train_rows[i] for i in held]
        train_rows, y_train = [train_rows[i] for i in keep], y_train[keep]
        notes.append(f"no dev file: a stratified {dev_fraction:.0%} of train ({len(dev_rows):,} rows) is held out "
                     "as dev before slicing")
    test_rows = read(test)
    y_dev, y_test = label_matrix(dev_rows, labels, dev or train), label_matrix(test_rows, labels, test)
    # iterative stratification hits the asked sizes only roughly: the notes give the real ones
    if max_train and len(train_rows) > max_train:
        n = len(train_rows)
        train_rows = [train_rows[i] for i in stratified_subset(y_train, max_train, CAP_SEED)]
        notes.append(f"training pool capped at {len(train_rows):,} of {n:,} rows (stratified sample, asked "
                     f"{max_train:,}): 'all' means these")
    if dev_sample and len(dev_rows) > dev_sample:
        n = len(dev_rows)
        dev_rows = [dev_rows[i] for i in stratified_subset(y_dev, dev_sample, CAP_SEED)]
        notes.append(f"tuning uses a stratified sample of {len(dev_rows):,} of the {n:,} dev rows")
    if test_sample and len(test_rows) > test_sample:
        n = len(test_rows)
        test_rows = [test_rows[i] for i in stratified_subset(y_test, test_sample, CAP_SEED)]
        notes.append(f"test is a stratified sample of {len(test_rows):,} of the {n:,} test rows, the same for "
                     "every method, slice and seed")
    return SliceData(train_rows, dev_rows, test_rows, list(labels), multi_label, notes)
