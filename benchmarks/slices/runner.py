"""Run every (method, slice, seed) of a slice benchmark, save each result as it lands, resume after a stop.

``results.json`` in the output folder holds the run's configuration and one record per finished unit; it is
rewritten atomically after every unit, so an interrupted run keeps all it finished and a second call with the
same configuration skips those. A different configuration in the same folder is refused rather than mixed;
more methods, encoders or bodies only add units, so asking a finished run for one more method runs just that.
Test labels stay here: methods get test texts only, and are scored by :func:`score`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from fewlabel.benchmarks.slices.data import SliceData
from fewlabel.benchmarks.slices.methods import Task
from fewlabel.benchmarks.slices.sampling import nested_slices
from fewlabel.indexing.errors import InvalidArgumentError
from fewlabel.indexing.files import atomic_file
from fewlabel.indexing.readers import label_matrix

__all__ = ["RESULTS_FILE", "load_results", "majority_reference", "run_benchmark", "score", "unit_key"]

RESULTS_FILE = "results.json"
# settings that only add or drop units (each unit's key names its method, encoder or body): a finished run
# asked again with one more method computes that method's units and reuses the rest
GROWABLE = frozenset({"methods", "encoders", "bodies"})


def unit_key(method: str, slice_name: int | str, seed: int | None) -> str:
    return f"{method}|{slice_name}|{seed}"


def score(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    return {"micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}


def load_results(out: Path, config: dict, restart: bool = False) -> dict:
    """The results so far for ``config`` (empty when starting)."""
    path = out / RESULTS_FILE
    if path.is_file() and not restart:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}); move it away or "
                                "pass --restart") from exc
        previous = saved.get("config") or {}
        changed = sorted(k for k in set(config) | set(previous)
                         if k not in GROWABLE and previous.get(k) != config.get(k))
        if changed:
            raise InvalidArgumentError(f"{path} holds a run with other settings ({', '.join(changed)}); choose another "
                                "--out or pass --restart to start over")
        saved["config"] = config  # methods, encoders or bodies added: only their units are new
        return saved
    return {"config": config, "slices": {}, "results": []}


def _save(out: Path, state: dict) -> None:
    with atomic_file(out / RESULTS_FILE) as fh:
        fh.write(json.dumps(state, indent=1, ensure_ascii=False) + "\n")


def run_benchmark(data: SliceData, methods: list, slices: list[int | str], seeds: list[int], out: Path,
                  config: dict, *, task_settings: dict | None = None, restart: bool = False,
                  show_progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Fit and score every unit not yet in ``out/results.json``; returns the whole state."""
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    state = load_results(out, config, restart)
    done = {r["key"] for r in state["results"]}
    y_train = label_matrix(data.train, data.labels, "train")
    y_test = label_matrix(data.test, data.labels, "test")
    test_texts = [r.text for r in data.test]
    state["majority"] = majority_reference(label_matrix(data.dev, data.labels, "dev"), y_test, data.labels,
                                           multi_label=data.multi_label)
    plan: list[tuple[Any, Any, Any, Any]] = []  # (method, slice, seed, row indices); None for a constant method
    for seed in seeds:
        indices = nested_slices(y_train, slices, seed)
        state["slices"][str(seed)] = {str(s): len(ix) for s, ix in zip(slices, indices, strict=True)}
        for method in methods:
            if method.constant:
                if seed == seeds[0]:
                    plan.append((method, None, None, None))
                continue
            plan += [(method, s, seed, ix) for s, ix in zip(slices, indices, strict=True)]
    todo = [p for p in plan if unit_key(p[0].name, p[1] or "-", p[2]) not in done]
    if len(todo) < len(plan):
        log(f"resuming: {len(plan) - len(todo)} of {len(plan)} units already in {out / RESULTS_FILE}")
    bar = tqdm(todo, desc="methods x slices x seeds", unit="run", disable=not show_progress)
    for method, slice_name, seed, ix in bar:
        bar.set_postfix_str(f"{method.name} slice={slice_name or '-'} seed={seed if seed is not None else '-'}")
        task = Task(labels=data.labels, multi_label=data.multi_label, seed=seed or 0, **(task_settings or {}))
        train = [] if ix is None else [data.train[i] for i in ix]
        started, cpu_started = time.perf_counter(), time.process_time()
        info = method.fit(train, data.dev, task)
        fitted = time.perf_counter()
        y_pred = np.asarray(method.predict(test_texts), dtype=bool)
        if y_pred.shape != y_test.shape:
            raise InvalidArgumentError(f"{method.name} answered a {y_pred.shape} matrix for a {y_test.shape} test set")
        record = {"key": unit_key(method.name, slice_name or "-", seed), "method": method.name,
                  "slice": slice_name if slice_name is not None else "-", "seed": seed,
                  "train_rows": len(train), **score(y_test, y_pred),
                  "fit_seconds": round(fitted - started, 2),
                  "seconds": round(time.perf_counter() - started, 2),
                  "cpu_seconds": round(time.process_time() - cpu_started, 2), "info": _plain(info)}
        state["results"].append(record)
        _save(out, state)
        log(f"{method.name:>20} slice {str(slice_name or '-'):>5} ({len(train):>6} rows) seed {seed}: "
            f"micro-F1 {record['micro_f1']:.3f} macro-F1 {record['macro_f1']:.3f} ({record['seconds']:.0f} s)")
    _save(out, state)
    return state


def majority_reference(y_dev: np.ndarray, y_test: np.ndarray, labels: list[str], *, multi_label: bool = True) -> dict:
    """The score of one constant answer, the same labels for every text, chosen on dev (labels added greedily
    while dev micro-F1 rises): the floor a method must clear to have learned anything. On GoEmotions-ekman
    "joy" + "neutral" for everything reaches micro-F1 0.46. Single-label data allows one label only (the
    majority class), since two labels per text is not an answer a single-label task accepts."""
    def constant(y: np.ndarray, chosen: list[int]) -> np.ndarray:
        pred = np.zeros_like(y)
        pred[:, chosen] = True
        return pred

    chosen: list[int] = []
    best = -1.0
    most = len(labels) if multi_label else 1
    while len(chosen) < most:
        f1, j = max((score(y_dev, constant(y_dev, chosen + [j]))["micro_f1"], j)
                    for j in range(len(labels)) if j not in chosen)
        if f1 <= best:
            break
        chosen, best = chosen + [j], f1
    return {"label": " + ".join(labels[j] for j in chosen), **score(y_test, constant(y_test, chosen))}


def _plain(value):
    """JSON-safe copy of a method's info (numpy numbers become Python numbers)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
