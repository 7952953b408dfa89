"""Mutation testing of the modules that protect data and decide labels (issue 29): `make mutation`.

Tool: mutmut 3. It mutates a copy of the code (`mutants/`), records which tests call each function once, then
runs each mutant in a process forked from a warm one (torch, faiss and the test modules already imported), and
only the tests that reach the mutated function. Cosmic-ray starts a fresh test process per mutant, which here
(2 cores, a few seconds to import torch) would cost 5-10 s a mutant before any test runs.

Layout: fewlabel installs as a namespace (`fewlabel.indexing` -> indexing/, …) by an editable finder that
mutmut's copy cannot reach, and mutmut names mutants by file path. So each module is staged in
`.mutation/NAME/` as `fewlabel/indexing/…` (a plain folder, which Python's path finder imports ahead of the
editable finder once mutmut puts `mutants/` first on sys.path) with the tests and a pyproject.toml that tells
mutmut what to mutate and which tests guard it. Functions outside a module's scope are fenced with
`# pragma: no mutate start/end` in the staged copy only.

    .venv/bin/python -m tests.support.mutation files knn   # some modules; no argument: all of them
    MUTATION_BUDGET_S=420 MUTATION_RESUME=1 .venv/bin/python -m tests.support.mutation knn_voting
                                                           # at most 7 minutes; a second call goes on from there
    .venv/bin/python -m tests.support.mutation --collect knn_voting   # only read the staged copy's results
    .venv/bin/python -m tests.support.mutation --report    # the per-module table of mutation.md

Results: benchmarks/results/mutation.json (per module: counts and surviving mutants with their diffs);
benchmarks/results/mutation.md is written by hand from it (each survivor killed or explained)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGE = ROOT / ".mutation"
RESULTS = ROOT / "benchmarks" / "results" / "mutation.json"
ROOMS = ("indexing", "retrieval", "finetune", "benchmarks")


@dataclass
class Target:
    source: str  # the file, relative to the repository root
    tests: list[str]  # the tests that guard it (only these run against its mutants)
    scope: list[str] = field(default_factory=list)  # qualified names to mutate ([]: the whole file)
    pytest_args: list[str] = field(default_factory=list)  # e.g. a -k leaving out slow checks of other parts


DETECTED = ("killed", "timeout", "segfault")  # what counts towards the score (see run())

# scikit-learn's estimator checks (several seconds each) test the labeler's API, not the vote or the tuning
KNN_FAST = ["-k", "not check_estimator and not estimator_contract"]

TARGETS = {
    "files": Target("indexing/files.py", ["tests/test_files.py"]),
    "label_index": Target("indexing/store/label_index.py", ["tests/test_index_store.py"],
                          ["LabelIndex.update", "LabelIndex.save", "LabelIndex.load", "_check_meta_fields",
                           "_read_method", "_store_record", "claim_index_folder", "is_index_folder"]),
    "knn_voting": Target("retrieval/knn/voting.py", ["tests/test_knn.py"], pytest_args=KNN_FAST),
    "knn_tuning": Target("retrieval/knn/tuning.py", ["tests/test_knn.py"], pytest_args=KNN_FAST),
    "method_store": Target("retrieval/methods/store.py", ["tests/test_method_store.py"]),
    "sts_scorer": Target("retrieval/sts/scorer.py", ["tests/test_sts_scorer.py"]),
    "serve_guard": Target("retrieval/serve/app.py", ["tests/test_serve_guard.py"],
                          ["_open_path", "_json_or_absent", "_error_line", "_send_json", "Guard.__call__",
                           "WriteTicket.commit", "WriteTicket.cancel"]),
}


# tqdm guards its bar registry with a multiprocessing lock: a semaphore in shared memory that every test process
# mutmut forks shares with the others. A forked test killed while it held it (a timeout, a SIGKILL fault point)
# leaves it taken for good, and from then on every mutant whose tests create a bar (even a disabled one: its
# constructor takes the lock) hangs until its timeout (seen: gdb in sem_wait under tqdm.__new__; 20 kNN tuning
# "timeouts" in a row). In the staged copy only, each process gets a lock of its own.
FORK_SAFE_TQDM = """

# staged copy only (tests/support/mutation.py, FORK_SAFE_TQDM): a per-process lock for tqdm, not a shared semaphore
import threading as _mutation_threading  # noqa: E402

import tqdm as _mutation_tqdm  # noqa: E402

_mutation_tqdm.tqdm.set_lock(_mutation_threading.RLock())
"""


def _fence(source: str, scope: list[str]) -> str:
    """The source with every top-level function, class or method outside ``scope`` between
    ``# pragma: no mutate start`` and ``end`` lines (mutmut then leaves them as they are)."""
    if not scope:
        return source
    lines = source.splitlines()
    fences: list[tuple[int, int, str]] = []  # (first line, last line, indent), 1-based

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            name = prefix + node.name
            if name in scope:
                continue
            if isinstance(node, ast.ClassDef) and any(s.startswith(name + ".") for s in scope):
                visit(node.body, name + ".")
                continue
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            fences.append((first, node.end_lineno, " " * node.col_offset))

    visit(ast.parse(source).body, "")
    if fences and max(last for _, last, _ in fences) >= len(lines):
        # an `end` on the file's last line is a comment of the module's footer, which mutmut reads after every other
        # comment ("cannot open no mutate context"): give it a statement to belong to
        lines.append("pass  # staged copy only: the statement the last `no mutate end` belongs to")
    for first, last, indent in sorted(fences, reverse=True):
        lines.insert(last, f"{indent}# pragma: no mutate end")
        lines.insert(first - 1, f"{indent}# pragma: no mutate start")
    return "\n".join(lines) + "\n"


def stage(name: str) -> Path:
    """A fresh `.mutation/NAME/` with the package as `fewlabel/…`, the tests and mutmut's settings."""
    target = TARGETS[name]
    folder = STAGE / name
    shutil.rmtree(folder, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "results", "*.png", "*.egg-info")
    for room in ROOMS:
        shutil.copytree(ROOT / room, folder / "fewlabel" / room, ignore=ignore)
    shutil.copytree(ROOT / "tests", folder / "tests", ignore=ignore)
    conftest = folder / "tests" / "conftest.py"
    conftest.write_text(conftest.read_text(encoding="utf-8") + FORK_SAFE_TQDM, encoding="utf-8")
    staged = folder / "fewlabel" / target.source
    staged.write_text(_fence(staged.read_text(encoding="utf-8"), target.scope), encoding="utf-8")
    settings = {
        "source_paths": ["fewlabel"],
        "only_mutate": [f"fewlabel/{target.source}"],
        "also_copy": ["tests"],
        "pytest_add_cli_args_test_selection": target.tests,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-m", "not slow", *target.pytest_args],
    }
    toml = ["[tool.mutmut]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    toml += ["", "[tool.pytest.ini_options]", 'markers = ["slow: long-running checks"]', ""]
    (folder / "pyproject.toml").write_text("\n".join(toml), encoding="utf-8")
    return folder


def _status(code) -> str:
    from mutmut.stats import status_by_exit_code

    return status_by_exit_code[code]


def _stop(proc: subprocess.Popen) -> None:
    """End mutmut and the test processes it forked (its own session), politely first."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 20)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run(name: str) -> dict:
    """Stage, run mutmut, and return the module's counts and surviving mutants (with their diffs).

    ``MUTATION_BUDGET_S``: stop mutmut after that many seconds and report what it checked (the rest are "not
    checked"); ``MUTATION_RESUME=1``: keep the staged copy and mutmut's results, so a stopped run goes on where it
    stopped (``--collect``: only read the results of the staged copy)."""
    collect = os.environ.get("MUTATION_COLLECT") == "1"
    resume = collect or (os.environ.get("MUTATION_RESUME") == "1" and (STAGE / name / "mutants").is_dir())
    folder = STAGE / name if resume else stage(name)
    started = time.monotonic()
    # one BLAS/OpenMP/torch thread: mutmut forks each mutant's test process from a warm one, and a thread pool the
    # parent had started does not survive a fork (surviving knn mutants hung until mutmut's timeout)
    threads = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **threads}
    mutmut = [sys.executable, "-m", "mutmut"]
    budget = float(os.environ["MUTATION_BUDGET_S"]) if os.environ.get("MUTATION_BUDGET_S") else None
    stopped = False
    if not collect:
        proc = subprocess.Popen([*mutmut, "run", "--max-children", os.environ.get("MUTATION_CHILDREN", "2")],
                                cwd=folder, env=env, start_new_session=True)
        try:
            proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            stopped = True
            _stop(proc)
        except BaseException:  # SIGTERM from `timeout`, Ctrl-C: never leave mutmut running without the lock
            _stop(proc)
            raise
    meta_path = folder / "mutants" / "fewlabel" / (TARGETS[name].source + ".meta")
    if not collect and not stopped:
        # a timeout is measured in wall-clock seconds (mutmut: 15 x (the tests' time + 1 s)), so a burst of load on
        # the shared machine, or a forked child stuck on a lock its parent held (tqdm, OpenMP), can time out a
        # mutant that the tests would settle in seconds: check each timeout once more, alone, before counting it
        timeouts = [key for key, code in json.loads(meta_path.read_text())["exit_code_by_key"].items()
                    if code is not None and _status(code) == "timeout"]
        left = None if budget is None else budget - (time.monotonic() - started)
        if timeouts and (left is None or left > 30):
            print(f"{name}: checking the {len(timeouts)} timeouts again", flush=True)
            proc = subprocess.Popen([*mutmut, "run", "--max-children", "1", *timeouts], cwd=folder, env=env,
                                    start_new_session=True)
            try:
                proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                stopped = True
                _stop(proc)
            except BaseException:
                _stop(proc)
                raise
    seconds = time.monotonic() - started
    meta = json.loads(meta_path.read_text())
    statuses = {key: _status(code) for key, code in meta["exit_code_by_key"].items()}
    durations = meta.get("durations_by_key", {})
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    survivors = {}
    for key, status in sorted(statuses.items()):
        if status == "not checked":  # a run stopped by its budget: listed, not shown (a second each)
            survivors[key] = {"status": status, "seconds": 0.0, "diff": ""}
        elif status != "killed":
            shown = subprocess.run([*mutmut, "show", key], cwd=folder, env=env, capture_output=True, text=True)
            survivors[key] = {"status": status, "seconds": round(durations.get(key, 0.0), 1),
                              "diff": shown.stdout.strip()}
    total = len(statuses)
    return {"source": TARGETS[name].source, "scope": TARGETS[name].scope or "whole file",
            "tests": TARGETS[name].tests, "mutants": total, "counts": counts,
            "killed_share": round(counts.get("killed", 0) / total, 4) if total else None,
            # a timeout is a mutant the tests noticed (it made them run 30 times longer than measured), and so is a
            # "segfault" here: the test process died of SIGKILL (a fault point that fires on every call)
            "detected_share": round(sum(counts.get(k, 0) for k in DETECTED) / total, 4) if total else None,
            "seconds": round(seconds, 1), "stopped_by_budget": stopped, "survivors": survivors}


def report_table(results: dict) -> str:
    """The per-module table of mutation.md from mutation.json (the survivors' notes are written by hand)."""
    rows = ["| module | mutants | killed | timeout | SIGKILLed | survived | no tests | not checked | killed % "
            "| detected % | killed % of checked | seconds | date |", "|---" * 13 + "|"]
    for name in TARGETS:
        r = results.get(name)
        if r is None:
            rows.append(f"| `{TARGETS[name].source}` | not run | | | | | | | | | | | |")
            continue
        c = r["counts"]
        rows.append(f"| `{r['source']}` | {r['mutants']} | {c.get('killed', 0)} | {c.get('timeout', 0)} | "
                    f"{c.get('segfault', 0)} | {c.get('survived', 0)} | {c.get('no tests', 0)} | "
                    f"{c.get('not checked', 0)} | {r['killed_share']:.1%} | {r['detected_share']:.1%} | "
                    f"{c.get('killed', 0) / max(1, r['mutants'] - c.get('not checked', 0)):.1%} | "
                    f"{r['seconds']:.0f} | {r.get('date', '')} |")
    return "\n".join(rows)


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)  # so that run() stops mutmut before this process ends


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    if "--report" in argv:
        print(report_table(json.loads(RESULTS.read_text()) if RESULTS.exists() else {}))
        return 0
    if "--collect" in argv:
        os.environ["MUTATION_COLLECT"] = "1"
    names = [a for a in argv if not a.startswith("-")] or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        print(f"unknown module(s) {unknown}; choose from {list(TARGETS)}", file=sys.stderr)
        return 2
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in names:
        print(f"== mutation testing {name} ({TARGETS[name].source})", flush=True)
        results[name] = run(name)
        results[name]["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        r = results[name]
        print(f"{name}: {r['counts'].get('killed', 0)}/{r['mutants']} killed ({r['killed_share']:.1%}), "
              f"{r['detected_share']:.1%} detected, in {r['seconds']:.0f} s; counts {r['counts']}", flush=True)
        if r["counts"].get("not checked"):  # the run ended early (a mutant that killed mutmut itself, a timeout)
            print(f"{name}: {r['counts']['not checked']} mutants were not checked: the run did not finish", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
