"""Bad input and faults through the real `fewlabel` command: every case runs as a subprocess, and the report
records the command, the exit code, what stderr said, whether a traceback appeared, and whether anything the
user owns (data files, folders, an existing index or output) changed when it should not have.

    python -m fewlabel.benchmarks.reliability --out benchmarks/results

A clear error is exit status 2 with one line on stderr (`fewlabel: error: …` or the parser's own one-line
`… error: …`); Ctrl-C is exit 130 with one line; a closed pipe ends quietly. The data-loss check compares the
bytes of every protected path before and after the case; fault cases also check that a complete index stands
at `--out` afterwards."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fewlabel.benchmarks.report import markdown_table, write_report

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"
COLS = ["--text-col", "text", "--label-col", "labels", "--label-sep", ","]


@dataclass
class Case:
    name: str
    args: list[str]  # after `fewlabel`; "{w}" is replaced by the work folder
    expect: int = 2  # exit status
    protect: list[str] = field(default_factory=list)  # paths (relative to the work folder) that must not change
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], object] | None = None  # what it returns is ignored (lambdas chain steps in a tuple)
    check: Callable[[Path], str | None] | None = None  # extra data-loss check: a problem, or None
    shell: str | None = None  # a shell pipeline instead of args
    interrupt_after: float | None = None  # send SIGINT after this many seconds
    concurrent: list[list[str]] | None = None  # several commands at once


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """Returns ``path``, so that a setup lambda can chain it with other steps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def unlink(path: Path) -> Path:
    """`Path.unlink` that returns ``path``, for the same reason."""
    path.unlink()
    return path


def slice_tsv(src: Path, dst: Path, start: int, n: int, ids: bool = True) -> None:
    lines = src.read_text(encoding="utf-8").splitlines()
    body = lines[1 + start:1 + start + n]
    if not ids:
        body = ["\t".join(line.split("\t")[1:]) for line in body]
    write(dst, "\n".join([lines[0] if ids else "text\tlabels", *body]) + "\n")


def prepare(w: Path) -> None:
    """The user's world: data files, a folder of their own, an index built from their data."""
    slice_tsv(DEMO / "goemotions_ekman_train.tsv", w / "train.tsv", 0, 60)
    slice_tsv(DEMO / "goemotions_ekman_train.tsv", w / "more_a.tsv", 60, 20)
    slice_tsv(DEMO / "goemotions_ekman_train.tsv", w / "more_b.tsv", 80, 20)
    slice_tsv(DEMO / "goemotions_ekman_valid.tsv", w / "valid.tsv", 0, 30)
    slice_tsv(DEMO / "goemotions_ekman_test.tsv", w / "test.tsv", 0, 10)
    slice_tsv(DEMO / "goemotions_ekman_train.tsv", w / "noid.tsv", 0, 30, ids=False)
    write(w / "mine" / "thesis.txt", "years of work\n")
    write(w / "notes.csv", "my,own,notes\n1,2,3\n")
    write(w / "pairs.csv", "sentence1,sentence2,label\na cat,a kitten,4.2\nrain,sun,0.5\n")
    run(["-q", "index", "build", "train.tsv", *COLS, "--id-col", "id", "--model", "minilm", "--out", "index"], w)
    run(["-q", "predict", "index", "test.tsv", "--id-col", "id", "--out", "ours.csv"], w)
    run(["-q", "index", "build", "train.tsv", *COLS, "--id-col", "id", "--model", "minilm", "--method", "ensemble",
         "--out", "ens"], w)  # an index with stored method arrays (linear and nb)


def run(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fewlabel.retrieval.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def snapshot(path: Path) -> dict[str, bytes] | bytes | None:
    if path.is_symlink() and not path.exists():
        return b"<broken link>"
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
                if p.is_file() and not p.name.endswith(".lock")}
    return path.read_bytes() if path.is_file() else None


def index_loads(rows: tuple[int, ...]) -> Callable[[Path], str | None]:
    def check(w: Path) -> str | None:
        from fewlabel.indexing.store.label_index import LabelIndex

        try:
            n = len(LabelIndex.load(w / "idx"))
        except Exception as exc:  # noqa: BLE001 - a report, not a control path
            return f"no complete index at --out: {exc}"
        return None if n in rows else f"index has {n} rows, expected one of {rows}"
    return check


def cases() -> list[Case]:
    build = ["index", "build"]
    out_idx = ["--model", "minilm", "--out", "idx"]
    data = ["train.tsv", *COLS]
    user = ["train.tsv", "valid.tsv", "mine", "notes.csv", "index"]
    c = [
        # --out that is not ours
        Case("build --out a user's folder", [*build, *data, "--model", "minilm", "--out", "mine"], protect=user),
        Case("build --out . (holds the data)", [*build, *data, "--model", "minilm", "--out", "."], protect=user),
        Case("build --out a user's file", [*build, *data, "--model", "minilm", "--out", "notes.csv"], protect=user),
        Case("build --out a broken link", [*build, *data, *out_idx[:2], "--out", "dangling"], protect=user,
             setup=lambda w: os.symlink(w / "nowhere", w / "dangling")),
        Case("build --out under a file", [*build, *data, *out_idx[:2], "--out", "notes.csv/idx"], protect=user),
        # data files
        Case("data file missing", [*build, "nope.tsv", *COLS, *out_idx], protect=user),
        Case("data file is a folder", [*build, "mine", *COLS, *out_idx], protect=user),
        Case("unknown extension", [*build, "data.xlsx", *COLS, *out_idx], protect=user,
             setup=lambda w: write(w / "data.xlsx", "text\tlabels\nhi\tjoy\n")),
        Case("empty file", [*build, "empty.tsv", *COLS, *out_idx], protect=user,
             setup=lambda w: write(w / "empty.tsv", "")),
        Case("header only", [*build, "head.tsv", *COLS, *out_idx], protect=user,
             setup=lambda w: write(w / "head.tsv", "text\tlabels\n")),
        Case("missing text column", [*build, "train.tsv", "--text-col", "body", "--label-col", "labels", *out_idx],
             protect=user),
        Case("missing label column", [*build, "train.tsv", "--text-col", "text", "--label-col", "tags", *out_idx],
             protect=user),
        Case("row wider than the header (unquoted comma)", [*build, "wide.csv", "--text-col", "text",
             "--label-col", "label", *out_idx], protect=user,
             setup=lambda w: write(w / "wide.csv", "text,label\ngood day,joy\nwell, this is bad,sadness\n")),
        Case("row narrower than the header", [*build, "narrow.csv", "--text-col", "text", "--label-col", "label",
             *out_idx], protect=user, setup=lambda w: write(w / "narrow.csv", "text,label\ngood day,joy\nalone\n")),
        Case("unclosed quote", [*build, "quote.csv", "--text-col", "text", "--label-col", "label", *out_idx],
             protect=user, setup=lambda w: write(w / "quote.csv", 'text,label\n"never closed,joy\nnext,sad\n')),
        Case("NUL byte", [*build, "nul.csv", "--text-col", "text", "--label-col", "label", *out_idx], protect=user,
             setup=lambda w: write(w / "nul.csv", "text,label\nbro\0ken,joy\n")),
        Case("UTF-16 file", [*build, "u16.csv", "--text-col", "text", "--label-col", "label", *out_idx],
             protect=user, setup=lambda w: write(w / "u16.csv", "text,label\nhi,joy\n", "utf-16")),
        Case("invalid UTF-8", [*build, "latin.csv", "--text-col", "text", "--label-col", "label", *out_idx],
             protect=user, setup=lambda w: (w / "latin.csv").write_bytes(b"text,label\ncaf\xe9,joy\n")),
        Case("empty text cell", [*build, "blank.csv", "--text-col", "text", "--label-col", "label", *out_idx],
             protect=user, setup=lambda w: write(w / "blank.csv", "text,label\n  ,joy\n")),
        Case("empty label", [*build, "nolabel.csv", "--text-col", "text", "--label-col", "label", *out_idx],
             protect=user, setup=lambda w: write(w / "nolabel.csv", "text,label\nhello,\n")),
        Case("label list that is bad JSON", [*build, "badjson.csv", "--text-col", "text", "--label-col", "label",
             *out_idx], protect=user, setup=lambda w: write(w / "badjson.csv", 'text,label\nhi,"[""a"","\n')),
        Case("duplicate ids", [*build, "dup.csv", "--text-col", "text", "--label-col", "label", "--id-col", "id",
             *out_idx], protect=user, setup=lambda w: write(w / "dup.csv", "id,text,label\n1,a,x\n1,b,y\n")),
        Case("JSONL line that is not JSON", [*build, "bad.jsonl", "--text-col", "text", "--label-col", "label",
             *out_idx], protect=user, setup=lambda w: write(w / "bad.jsonl", '{"text": "a", "label": "x"}\n{oops\n')),
        Case("JSON array given as JSONL", [*build, "arr.jsonl", "--text-col", "text", "--label-col", "label",
             *out_idx], protect=user, setup=lambda w: write(w / "arr.jsonl", '[{"text": "a", "label": "x"}]\n')),
        Case("JSONL missing key", [*build, "key.jsonl", "--text-col", "text", "--label-col", "label", *out_idx],
             protect=user, setup=lambda w: write(w / "key.jsonl", '{"body": "a", "label": "x"}\n')),
        # option values
        Case("--label-sep ''", [*build, "train.tsv", "--text-col", "text", "--label-col", "labels", "--label-sep", "",
             *out_idx], protect=user),
        Case("--max-k -5", [*build, *data, "--max-k", "-5", *out_idx], protect=user),
        Case("--max-k 0", [*build, *data, "--max-k", "0", *out_idx], protect=user),
        Case("--batch-size 0", [*build, *data, "--batch-size", "0", *out_idx], protect=user),
        Case("--batch-size -1", [*build, *data, "--batch-size", "-1", *out_idx], protect=user),
        Case("--device bogus", [*build, *data, "--device", "bogus", *out_idx], protect=user),
        Case("--device cuda without a GPU", [*build, *data, "--device", "cuda", *out_idx], protect=user),
        Case("--metric bogus", [*build, *data, "--metric", "bogus", *out_idx], protect=user),
        Case("--factory that FAISS does not know", [*build, *data, "--factory", "NoSuch", *out_idx], protect=user),
        Case("--factory IVF256 on 60 rows", [*build, *data, "--factory", "IVF256,Flat", *out_idx], protect=user),
        Case("--search-params that do not apply", [*build, *data, "--search-params", "bogus=3", *out_idx],
             protect=user),
        Case("--model folder that does not exist", [*build, *data, "--model", "/no/such/model", "--out", "idx"],
             protect=user),
        Case("--model a file", [*build, *data, "--model", "notes.csv", "--out", "idx"], protect=user),
        Case("--model folder without config.json", [*build, *data, "--model", "mine", "--out", "idx"],
             protect=user),
        Case("--valid with an unknown label", [*build, *data, "--valid", "badvalid.tsv", *out_idx], protect=user,
             setup=lambda w: write(w / "badvalid.tsv", "id\ttext\tlabels\nv1\tfine\tjoy\nv2\tbored\tboredom\n")),
        Case("--valid file missing", [*build, *data, "--valid", "nope.tsv", *out_idx], protect=user),
        # reading an index
        Case("index info of a missing folder", ["index", "info", "nowhere"]),
        Case("index info of a user folder", ["index", "info", "mine"], protect=user),
        Case("meta.json holding a list", ["index", "info", "broken"], protect=["broken"],
             setup=lambda w: (shutil.copytree(w / "index", w / "broken"), write(w / "broken" / "meta.json", "[1]"))),
        Case("meta.json corrupt", ["index", "info", "broken2"], protect=["broken2"],
             setup=lambda w: (shutil.copytree(w / "index", w / "broken2"), write(w / "broken2" / "meta.json", "{"))),
        Case("meta.json missing a field", ["index", "info", "broken3"], protect=["broken3"],
             setup=lambda w: (shutil.copytree(w / "index", w / "broken3"),
                              write(w / "broken3" / "meta.json", '{"format_version": 1}'))),
        Case("rows.jsonl corrupt line", ["index", "info", "broken4"], protect=["broken4"],
             setup=lambda w: (shutil.copytree(w / "index", w / "broken4"),
                              write(w / "broken4" / "rows.jsonl", "{not json\n"))),
        Case("index.faiss missing", ["index", "info", "broken5"], protect=["broken5"],
             setup=lambda w: (shutil.copytree(w / "index", w / "broken5"), unlink(w / "broken5" / "index.faiss"))),
        Case("index.faiss corrupt", ["index", "info", "broken6"], protect=["broken6"],
             setup=lambda w: (shutil.copytree(w / "index", w / "broken6"),
                              (w / "broken6" / "index.faiss").write_bytes(b"garbage"))),
        Case("rows.jsonl edited (fingerprint)", ["index", "info", "broken7"], protect=["broken7"],
             setup=lambda w: (shutil.copytree(w / "index", w / "broken7"),
                              write(w / "broken7" / "rows.jsonl", (w / "index" / "rows.jsonl").read_text()
                                    .replace("the", "THE", 1)))),
        # adding rows
        Case("index add rows whose ids are there", ["index", "add", "index", "train.tsv", *COLS, "--id-col", "id"],
             protect=user),
        Case("index add to a missing index", ["index", "add", "nowhere", "more_a.tsv", *COLS]),
        Case("index add an empty file", ["index", "add", "index", "empty2.tsv", *COLS], protect=user,
             setup=lambda w: write(w / "empty2.tsv", "")),
        Case("build and add without ids (README flow)", ["index", "add", "noid-index", "noid.tsv", *COLS],
             expect=0, setup=lambda w: run(["-q", "index", "build", "noid.tsv", *COLS, "--model", "minilm", "--out",
                                            "noid-index"], w)),
        # predicting
        Case("predict --out an existing folder", ["predict", "index", "test.tsv", "--out", "mine"], protect=user),
        Case("predict --out .", ["predict", "index", "test.tsv", "--out", "."], protect=user),
        Case("predict --out a user's CSV", ["predict", "index", "test.tsv", "--out", "notes.csv"], protect=user),
        Case("predict --out .txt", ["predict", "index", "test.tsv", "--out", "p.txt"], protect=user),
        Case("predict --out over an earlier prediction", ["-q", "predict", "index", "test.tsv", "--id-col", "id",
             "--out", "ours.csv"], expect=0, protect=user),
        Case("predict --k 0", ["predict", "index", "test.tsv", "--k", "0", "--out", "p.csv"], protect=user),
        Case("predict --k -3", ["predict", "index", "test.tsv", "--k", "-3", "--out", "p.csv"], protect=user),
        Case("predict --m 0", ["predict", "index", "test.tsv", "--m", "0", "--out", "p.csv"], protect=user),
        Case("predict --m larger than --k", ["predict", "index", "test.tsv", "--k", "3", "--m", "5", "--out",
             "p.csv"], protect=user),
        Case("predict --fallback nli without a model", ["predict", "index", "test.tsv", "--fallback", "nli",
             "--out", "p.csv"], protect=user),
        Case("predict --labels without --fallback", ["predict", "index", "test.tsv", "--labels", "a,b", "--out",
             "p.csv"], protect=user),
        Case("predict input without the text column", ["predict", "index", "test.tsv", "--text-col", "body",
             "--out", "p.csv"], protect=user),
        Case("predict input missing", ["predict", "index", "nope.tsv", "--out", "p.csv"], protect=user),
        Case("predict with a model retrained in place", ["predict", "own-index", "test.tsv", "--out", "p.csv"],
             protect=["own-index"], setup=lambda w: retrained_model_index(w)),
        # STS, zero-shot, relations, training
        Case("sts score --out not .csv", ["sts", "score", "pairs.csv", "--model", "minilm", "--out", "s.txt"],
             protect=user),
        Case("sts score --out a user's file", ["sts", "score", "pairs.csv", "--model", "minilm", "--out",
             "notes.csv"], protect=user),
        Case("sts score --calibration without data", ["sts", "score", "pairs.csv", "--calibration", "isotonic",
             "--out", "s.csv"], protect=user),
        Case("sts score malformed pairs", ["sts", "score", "train.tsv", "--out", "s.csv"], protect=user),
        Case("zeroshot without labels", ["zeroshot", "test.tsv", "--out", "z.csv"], protect=user),
        Case("zeroshot --temperature 0", ["zeroshot", "test.tsv", "--labels", "a,b", "--temperature", "0", "--out",
             "z.csv"], protect=user),
        Case("zeroshot --model missing folder", ["zeroshot", "test.tsv", "--labels", "a,b", "--model", "./nli",
             "--out", "z.csv"], protect=user),
        Case("re predict with a folder that is no model", ["re", "predict", "mine", "train.tsv", "--out", "r.csv"],
             protect=user),
        Case("re evaluate a missing submission", ["re", "evaluate", "train.tsv", "nope.csv", "--labels", "semeval"],
             protect=user),
        Case("finetune sts --out a user's folder", ["finetune", "sts", "--train", "pairs.csv", "--dev", "pairs.csv",
             "--base", "minilm", "--out", "mine"], protect=user),
        Case("finetune sts --epochs 0", ["finetune", "sts", "--train", "pairs.csv", "--dev", "pairs.csv",
             "--epochs", "0", "--out", "m"], protect=user),
        Case("finetune nli --dev missing", ["finetune", "nli", "--train", "train.tsv", "--dev", "nope.tsv",
             "--out", "m2"], protect=user),
        # faults
        Case("kill before the index is replaced", [*build, "more_a.tsv", *COLS, "--id-col", "id", *out_idx],
             expect=-9, env={"FEWLABEL_FAULT": "directory:before-replace"}, protect=user,
             setup=lambda w: shutil.copytree(w / "index", w / "idx"), check=index_loads((60, 20))),
        Case("kill right after the exchange", [*build, "more_a.tsv", *COLS, "--id-col", "id", *out_idx],
             expect=-9, env={"FEWLABEL_FAULT": "directory:after-exchange"}, protect=user,
             setup=lambda w: shutil.copytree(w / "index", w / "idx"), check=index_loads((60, 20))),
        Case("kill between the two renames (fallback)", [*build, "more_a.tsv", *COLS, "--id-col", "id", *out_idx],
             expect=-9, env={"FEWLABEL_FAULT": "directory:between-renames"}, protect=user,
             setup=lambda w: shutil.copytree(w / "index", w / "idx"), check=index_loads((60, 20))),
        Case("two index add at once", [], expect=0, protect=["train.tsv"],
             setup=lambda w: shutil.copytree(w / "index", w / "idx"), check=index_loads((100,)),
             concurrent=[["index", "add", "idx", "more_a.tsv", *COLS, "--id-col", "id"],
                         ["index", "add", "idx", "more_b.tsv", *COLS, "--id-col", "id"]]),
        Case("closed pipe (index info | head -c 1)", [], expect=0, protect=user,
             shell=f"{sys.executable} -m fewlabel.retrieval.cli index info index --json | head -c 1"),
        Case("Ctrl-C at the start", [*build, *data, *out_idx], expect=130, interrupt_after=0.3, protect=user),
        Case("Ctrl-C while encoding", ["predict", "index", "big.tsv", "--out", "big.csv"], expect=130,
             interrupt_after=6.0, protect=user, setup=lambda w: slice_tsv(DEMO / "goemotions_ekman_train.tsv",
                                                                          w / "big.tsv", 0, 800)),
    ]
    return c + round_two_cases()


def round_two_cases() -> list[Case]:
    """Issue 28: stored methods whose files match their sha256 but not each other, one-label files, bench's and
    every other --out reached through a link or a user's folder, serve's start-up token rules, the Ray engine's
    input checks, an unfinished training folder."""
    data = ["train.tsv", *COLS]
    user = ["train.tsv", "valid.tsv", "mine", "notes.csv", "index"]
    test = ["test.tsv", "--id-col", "id"]
    bench = ["bench", "slices", "train.tsv", "--text-col", "text", "--label-col", "labels", "--label-sep", ",",
             "--methods", "nb", "--slices", "10", "--seeds", "1"]
    return [
        Case("method: linear_coef one column short (sha256 updated)", ["predict", "ens", *test, "--out", "p.csv"],
             protect=user, setup=lambda w: edit_array(w / "ens", "linear_coef", lambda a: a[:, :-1])),
        Case("method: linear_intercept one label short", ["predict", "ens", *test, "--out", "p.csv"],
             protect=user, setup=lambda w: edit_array(w / "ens", "linear_intercept", lambda a: a[:-1])),
        Case("method: nb vocabulary cut short", ["predict", "ens", *test, "--out", "p.csv"], protect=user,
             setup=lambda w: edit_array(w / "ens", "nb_coef", lambda a: a[:, : a.shape[1] // 2])),
        Case("method: coefficients as integers", ["predict", "ens", *test, "--out", "p.csv"], protect=user,
             setup=lambda w: edit_array(w / "ens", "linear_coef", lambda a: a.astype("int64"))),
        Case("method: a NaN coefficient", ["predict", "ens", *test, "--out", "p.csv"], protect=user,
             setup=lambda w: edit_array(w / "ens", "linear_coef", lambda a: a * float("nan"))),
        Case("one-label file, method auto", ["index", "build", "one.tsv", *COLS, "--model", "minilm", "--out", "idx"],
             protect=user, setup=one_label_file),
        Case("one-label file, method knn", ["index", "build", "one.tsv", *COLS, "--model", "minilm", "--method",
             "knn", "--out", "idx"], protect=user, setup=one_label_file),
        Case("one-label file, method linear", ["index", "build", "one.tsv", *COLS, "--model", "minilm", "--method",
             "linear", "--out", "idx"], protect=user, setup=one_label_file),
        Case("bench --out a folder holding command.txt and report.md", [*bench, "--out", "mine"], protect=user,
             setup=lambda w: (write(w / "mine" / "command.txt", "my command\n"),
                              write(w / "mine" / "report.md", "# mine\n"))),
        Case("bench --out a folder holding someone's results.json", [*bench, "--out", "mine"], protect=user,
             setup=lambda w: write(w / "mine" / "results.json", '{"mine": true}\n')),
        Case("index add through a link (current -> real_v1)", ["-q", "index", "add", "current", "more_a.tsv", *COLS,
             "--id-col", "id"], expect=0, protect=["train.tsv"], setup=link_index, check=link_kept),
        Case("predict --out through a link to an earlier output", ["-q", "predict", "index", *test, "--out",
             "latest.csv"], expect=0, protect=user, setup=lambda w: os.symlink("ours.csv", w / "latest.csv"),
             check=lambda w: None if (w / "latest.csv").is_symlink() else "the link was replaced by a file"),
        Case("build --out a link to a user's folder", ["index", "build", *data, "--model", "minilm", "--out",
             "mylink"], protect=user, setup=lambda w: os.symlink("mine", w / "mylink")),
        Case("serve --token ''", ["serve", "index", "--token", ""], protect=user),
        Case("serve --token '   '", ["serve", "index", "--token", "   "], protect=user),
        Case("serve with FEWLABEL_TOKEN empty", ["serve", "index"], env={"FEWLABEL_TOKEN": ""}, protect=user),
        Case("serve --token with a non-ASCII character", ["serve", "index", "--token", "s\u00e9cret"], protect=user),
        Case("serve --token with a trailing space", ["serve", "index", "--token", "abc "], protect=user),
        Case("serve --token-file missing", ["serve", "index", "--token-file", "nope.txt"], protect=user),
        Case("serve --token-file empty", ["serve", "index", "--token-file", "empty.txt"], protect=user,
             setup=lambda w: write(w / "empty.txt", "\n")),
        Case("serve --token and --token-file", ["serve", "index", "--token", "a", "--token-file", "notes.csv"],
             protect=user),
        Case("serve --host 0.0.0.0 without a token", ["serve", "index", "--host", "0.0.0.0"], protect=user),
        Case("predict --engine ray, duplicate ids", ["predict", "index", "dupq.csv", "--id-col", "id", "--engine",
             "ray", "--out", "p.csv"], protect=user, setup=lambda w: write(w / "dupq.csv", "id,text\nq1,a\nq1,b\n")),
        Case("predict --engine ray, not UTF-8", ["predict", "index", "latinq.csv", "--engine", "ray", "--out",
             "p.csv"], protect=user, setup=lambda w: (w / "latinq.csv").write_bytes(b"text\ncaf\xe9\n")),
        Case("build --model an unfinished training folder", ["index", "build", *data, "--model", "half", "--out",
             "idx"], protect=user, setup=unfinished_model),
    ]


def edit_array(index: Path, key: str, change) -> None:
    """Change one stored array and record the new file's sha256, as someone who knows the format would."""
    import hashlib
    import io
    import json

    import numpy as np

    path = index / "method" / "arrays.npz"
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays[key] = change(arrays[key])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    meta = json.loads((index / "meta.json").read_text())
    meta["method"]["files"]["arrays.npz"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (index / "meta.json").write_text(json.dumps(meta))


def one_label_file(w: Path) -> None:
    lines = (w / "train.tsv").read_text(encoding="utf-8").splitlines()[1:21]
    write(w / "one.tsv", "id\ttext\tlabels\n" + "".join(f"{line.split(chr(9))[0]}\t{line.split(chr(9))[1]}\tjoy\n"
                                                          for line in lines))


def link_index(w: Path) -> None:
    shutil.copytree(w / "index", w / "real_v1")
    os.symlink("real_v1", w / "current")


def link_kept(w: Path) -> str | None:
    from fewlabel.indexing.store.label_index import LabelIndex

    if not (w / "current").is_symlink():
        return "the link was replaced by a folder"
    n = len(LabelIndex.load(w / "real_v1"))
    stray = [p.name for p in w.iterdir() if p.name.startswith(".current.")]
    return None if n == 80 and not stray else f"real_v1 holds {n} rows; leftovers {stray}"


def unfinished_model(w: Path) -> None:
    from fewlabel.indexing.encoders.registry import REGISTRY

    (w / "half" / "checkpoints").mkdir(parents=True)
    for p in Path(REGISTRY["minilm"].locate()).iterdir():
        if p.is_file():
            os.symlink(p, w / "half" / p.name)
    write(w / "half" / "checkpoints" / "fewlabel_run.json", '{"kind": "adapted-encoder"}\n')


def retrained_model_index(w: Path) -> None:
    from fewlabel.indexing.encoders.registry import REGISTRY

    shutil.copytree(REGISTRY["minilm"].locate(), w / "own-model")
    run(["-q", "index", "build", "train.tsv", *COLS, "--model", str(w / "own-model"), "--out", "own-index"], w)
    weights = next((w / "own-model").rglob("*.safetensors"))
    raw = bytearray(weights.read_bytes())
    raw[-8:] = bytes(8)
    weights.write_bytes(bytes(raw))


def run_case(case: Case, w: Path) -> dict:
    if case.setup:
        case.setup(w)
    before = {p: snapshot(w / p) for p in case.protect}
    started = time.perf_counter()
    env = {**os.environ, **case.env}
    if case.shell:
        proc = subprocess.run(case.shell, shell=True, cwd=w, capture_output=True, text=True, timeout=300)
        code, err = proc.returncode, proc.stderr
    elif case.concurrent:
        procs = [subprocess.Popen([sys.executable, "-m", "fewlabel.retrieval.cli", *args], cwd=w, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for args in case.concurrent]
        outs = [p.communicate(timeout=600) for p in procs]
        code = max(abs(p.returncode) for p in procs)
        err = " | ".join(o[1].strip() for o in outs)
    elif case.interrupt_after is not None:
        child = subprocess.Popen([sys.executable, "-m", "fewlabel.retrieval.cli", *case.args], cwd=w, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(case.interrupt_after)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
        code = child.returncode
    else:
        proc = subprocess.run([sys.executable, "-m", "fewlabel.retrieval.cli", *case.args], cwd=w, env=env,
                              capture_output=True, text=True, timeout=600)
        code, err = proc.returncode, proc.stderr
    seconds = time.perf_counter() - started
    lost = [p for p in case.protect if snapshot(w / p) != before[p]]
    problem = case.check(w) if case.check else None
    if case.check and not case.concurrent and case.expect == -9:  # a fault case: the next command repairs
        run(["index", "info", "idx"], w)
        leftovers = [p.name for p in w.iterdir() if p.name.startswith(".idx.") and not p.name.endswith(".lock")]
        problem = problem or (f"leftovers: {leftovers}" if leftovers else None)
    lines = [line for line in err.splitlines() if line.strip()]
    clear = code == case.expect and (code == 0 or code == -9 or len(lines) == 1)
    if case.interrupt_after is not None:  # progress chatter may precede it; the end is the one line
        clear = code == 130 and bool(lines) and lines[-1] == "fewlabel: interrupted"
    if case.concurrent or case.shell:
        clear = code == case.expect and "Traceback" not in err
    return {"case": case.name, "command": case.shell or " ".join(["fewlabel", *case.args]) or "(concurrent)",
            "expected": case.expect, "exit": code, "message": lines[-1][:160] if lines else "",
            "traceback": "Traceback" in err, "lost": lost + ([problem] if problem else []), "clear": clear,
            "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help="which parts to run (cli, round2, http); the others are kept from OUT/reliability.json")
    parser.add_argument("--report-only", action="store_true",
                        help="write the report again from OUT/reliability.json (classification rules changed)")
    args = parser.parse_args()
    if args.report_only:
        import json

        results = json.loads((Path(args.out) / "reliability.json").read_text(encoding="utf-8"))["results"]
        for r in results:
            if r["expected"] == 130:
                r["clear"] = r["exit"] == 130 and r["message"] == "fewlabel: interrupted"
        write_results(Path(args.out), results)
        return
    sections = set(args.sections.split(","))
    results = []
    if sections != set(SECTIONS):  # the other sections' results stand as the last full run wrote them
        import json

        kept = json.loads((Path(args.out) / "reliability.json").read_text(encoding="utf-8"))["results"]
        results = [r for r in kept if r.get("section", "cli") not in sections]
    all_cases = cases()
    with tempfile.TemporaryDirectory(prefix="fewlabel-reliability-") as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        prepare(base)
        for i, case in enumerate(all_cases, start=1):
            section = "cli" if i <= len(all_cases) - len(round_two_cases()) else "round2"
            if section not in sections:
                continue
            w = Path(tmp) / f"case{i:03d}"
            shutil.copytree(base, w, symlinks=True)
            results.append({"section": section, **run_case(case, w)})
            r = results[-1]
            print(f"{i:3d} {'ok ' if r['clear'] and not r['lost'] and not r['traceback'] else 'BAD'} "
                  f"{r['exit']:>4} {r['case']}: {r['message']}", flush=True)
            shutil.rmtree(w, ignore_errors=True)
        if "http" in sections:
            from fewlabel.benchmarks.reliability_http import run_http_cases

            w = Path(tmp) / "http"
            shutil.copytree(base, w, symlinks=True)
            for r in run_http_cases(w):
                results.append(r)
                print(f"    {'ok ' if r['clear'] and not r['lost'] and not r['traceback'] else 'BAD'} {r['exit']:>4} "
                      f"{r['case']}: {r['message']}", flush=True)
    order = {name: i for i, name in enumerate(SECTIONS)}
    results.sort(key=lambda r: order[r.get("section", "cli")])
    write_results(Path(args.out), results)


SECTIONS = ("cli", "round2", "http")


def _section_note(results: list[dict]) -> str:
    counts = {name: sum(1 for r in results if r.get("section", "cli") == name) for name in SECTIONS}
    return ("cases per section: " + ", ".join(f"{name} {n}" for name, n in counts.items())
            + " (the cli rows of this report come from its run of 2026-11-30 unless the command above ran them)")


def write_results(out: Path, results: list[dict]) -> None:
    rows = [[str(i), f"{r.get('section', 'cli')}: {r['case']}", f"`{r['command']}`", str(r["expected"]), str(r["exit"]),
             r["message"].replace("|", "\\|") or "(nothing)", "yes" if r["traceback"] else "no",
             "; ".join(r["lost"]) or "no"] for i, r in enumerate(results, start=1)]
    totals = {"cases": len(results), "clear": sum(r["clear"] for r in results),
              "tracebacks": sum(r["traceback"] for r in results), "data_loss": sum(bool(r["lost"]) for r in results)}
    body = ("Each case runs the real `fewlabel` command in a subprocess, in a fresh copy of a work folder holding "
            "the user's data files (60/20/20 GoEmotions-ekman rows from the bundled sample), a folder of their own "
            "(`mine/`), a file of their own (`notes.csv`), an index built from their data and an earlier "
            "prediction. A case is clear when it exits as expected with one line on stderr (fault cases: the "
            "process was killed, -9, and a complete index stands at `--out`; the next command repaired and "
            "cleaned; Ctrl-C cases: exit 130 and the last line is `fewlabel: interrupted`, after any progress lines). "
            "'lost' lists protected paths whose bytes changed, or a fault case's problem.\n\n"
            "Sections: **cli** (the first round's cases), **round2** (issue 28: stored method arrays that match "
            "their sha256 but not each other, one-label files, outputs reached through links and users' folders, "
            "serve's start-up token rules, the Ray engine's input checks, an unfinished model folder) and **http** "
            "(requests against a real `fewlabel serve` with a token, --max-batch 8 and --max-text-length 500: "
            "'exit' is the HTTP status, 'stderr' the answer's `error` line; a case is clear when the status is "
            "the expected one, every refusal has one `error` line and none is a 500; 'lost' also counts a "
            "refused request that changed the index files, an answer that names a server path, or an answer "
            "given without the token that holds one of the index's labels or texts; the API docs, `/docs` and "
            "`/openapi.json`, are open without the token by design: routes and field schemas only; a traceback "
            "in the server's log would mark every HTTP case). `--sections` runs some of them and keeps the "
            "others' rows from the previous report; " + _section_note(results) + "\n\n"
            + markdown_table(["#", "case", "command", "expected", "exit", "stderr (last line)", "traceback", "lost"],
                             rows)
            + f"\n\n**Totals:** {totals['cases']} cases; {totals['clear']} clear; {totals['tracebacks']} "
              f"tracebacks; {totals['data_loss']} data-loss cases.\n")
    write_report(out, "reliability", "Bad input and faults through the CLI and the HTTP service", body,
                 {"results": results, "totals": totals}, data_note="retrieval/demo_data (GoEmotions-ekman sample)")
    print(totals)


if __name__ == "__main__":
    main()
