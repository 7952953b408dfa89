"""`fewlabel predict --engine ray` on a real local Ray: the output is the local engine's (the same ids, labels and
columns; numbers equal as written but for a last digit that may round the other way) for a TSV with an id column
and for JSON Lines without one (rows numbered as the local reader numbers them). Ray runs in a subprocess with a
time limit (an actor pool that takes every CPU would hang rather than fail)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'fewlabel[ray]')")

from fewlabel.indexing.errors import DataError  # noqa: E402
from fewlabel.retrieval.cli import main  # noqa: E402
from tests.support.demo import COMMON, DEMO, slice_tsv  # noqa: E402

RAY_SCRIPT = """
import os, sys
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
import ray
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # once for both runs
from fewlabel.retrieval.cli import main
codes = [main(argv) for argv in {runs!r}]
ray.shutdown()
sys.exit(max(codes))
"""


def assert_same_predictions(ray: list[list[str]], local: list[list[str]]) -> None:
    """The same header, ids and labels; the same numbers as written, but for the last written digit: the actors
    encode other batches than the local engine, so a vector may differ in its last float bits and a similarity or a
    probability may round the other way (kNN vote fractions are exact)."""
    assert ray[0] == local[0] and len(ray) == len(local)
    for a, b in zip(ray[1:], local[1:], strict=True):
        assert a[:2] == b[:2]
        assert [float(x) for x in a[2:]] == pytest.approx([float(x) for x in b[2:]], abs=1.01e-4)


def _index_and_inputs(tmp_path: Path, n: int) -> tuple[Path, Path, Path]:
    train = slice_tsv(DEMO / "goemotions_ekman_train.tsv", tmp_path / "train.tsv", 0, 80)
    test = slice_tsv(DEMO / "goemotions_ekman_test.tsv", tmp_path / "test.tsv", 0, n)
    lines = test.read_text(encoding="utf-8").splitlines()[1:]
    jsonl = tmp_path / "test.jsonl"
    jsonl.write_text("".join(json.dumps({"text": line.split("\t")[1]}) + "\n" for line in lines), encoding="utf-8")
    index = tmp_path / "index"
    assert main(["-q", "index", "build", str(train), *COMMON, "--model", "minilm", "--no-cache", "--out",
                 str(index)]) == 0
    return index, test, jsonl


def _local_and_ray(tmp_path: Path, index: Path, inputs: dict[str, tuple[Path, list[str], str, str]]) -> None:
    """Each input labelled locally and on Ray (one Ray start for all), into local-NAME.SUFFIX and ray-NAME.SUFFIX."""
    runs = []
    for name, (path, extra, suffix, workers) in inputs.items():
        assert main(["-q", "predict", str(index), str(path), *extra, "--no-cache",
                     "--out", str(tmp_path / f"local-{name}{suffix}")]) == 0
        runs.append(["-q", "predict", str(index), str(path), *extra, "--no-cache", "--engine", "ray",
                     "--num-workers", workers, "--out", str(tmp_path / f"ray-{name}{suffix}")])
    done = subprocess.run([sys.executable, "-c", RAY_SCRIPT.format(runs=runs)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_ray_output_is_identical_to_local(tmp_path):
    """JSON Lines without an id column, two actors: the CSV is the local engine's, rows numbered as the local reader
    numbers them."""
    index, _, jsonl = _index_and_inputs(tmp_path, 120)
    _local_and_ray(tmp_path, index, {"jsonl": (jsonl, [], ".csv", "2")})
    ray, local = (list(csv.reader(open(tmp_path / f"{kind}-jsonl.csv", encoding="utf-8"))) for kind in ("ray", "local"))
    assert_same_predictions(ray, local)
    assert ray[-1][0] == "119"


@pytest.mark.slow  # a second Ray run: about a minute
def test_ray_reads_tsv_ids_and_explains_like_local(tmp_path):
    index, test, jsonl = _index_and_inputs(tmp_path, 150)
    _local_and_ray(tmp_path, index, {"tsv": (test, ["--id-col", "id"], ".csv", "2"),
                                     "explain": (jsonl, ["--explain"], ".jsonl", "1")})
    assert_same_predictions(*(list(csv.reader(open(tmp_path / f"{kind}-tsv.csv", encoding="utf-8")))
                              for kind in ("ray", "local")))
    local, ray = ([json.loads(line) for line in (tmp_path / f"{kind}-explain.jsonl").read_text().splitlines()]
                  for kind in ("local", "ray"))
    assert [r["id"] for r in ray] == [str(i) for i in range(150)]
    for a, b in zip(local, ray, strict=True):
        # the actors encode in other batches than the local engine (other padding), so a similarity may differ in
        # its last float bits: the JSONL's 6 decimals (and --explain's raw floats) may show it, the CSV's 4 did not
        assert {k: a[k] for k in ("id", "labels", "scores")} == {k: b[k] for k in ("id", "labels", "scores")}
        assert a["top_similarity"] == pytest.approx(b["top_similarity"], abs=2e-6)
        assert [n["id"] for n in a["neighbours"]] == [n["id"] for n in b["neighbours"]]
        assert [n["similarity"] for n in a["neighbours"]] == pytest.approx([n["similarity"] for n in b["neighbours"]],
                                                                           abs=1e-5)


def test_ray_mistakes_are_one_line(tmp_path, capsys):
    index = tmp_path / "nothing"
    assert main(["predict", str(index), str(tmp_path / "in.csv"), "--out", str(tmp_path / "o.csv"),
                 "--num-workers", "2"]) == 2
    assert "--num-workers applies to --engine ray" in capsys.readouterr().err
    assert main(["predict", str(index), str(tmp_path / "in.csv"), "--out", str(tmp_path / "o.csv"), "--engine",
                 "ray", "--fallback", "embed"]) == 2
    assert "--fallback runs with --engine local only" in capsys.readouterr().err


def test_the_actor_labels_a_tsv_batch_with_ids_and_explains_like_local(tmp_path):
    """The fast guard of the slow test above (issue 29): one actor's labelling code (`_Labeller`, the part of the
    Ray engine that is fewlabel's own), fed the TSV's rows as the pandas batch Ray Data would hand it, without Ray:
    the ids it reports and its --explain records (labels, scores, neighbours) are the local engine's."""
    import pandas as pd

    from fewlabel.retrieval.engines.ray_batch import _Labeller

    index, test, _ = _index_and_inputs(tmp_path, 20)
    assert main(["-q", "predict", str(index), str(test), "--id-col", "id", "--explain", "--no-cache",
                 "--out", str(tmp_path / "local.jsonl")]) == 0
    local = [json.loads(line) for line in (tmp_path / "local.jsonl").read_text().splitlines()]
    settings = dict(text_col="text", id_col="id", k=None, m=None, explain=True, batch_size=32, device="cpu",
                    cache=False, cpus=1, input=str(test))
    actor = _Labeller(str(index), settings)
    batch = pd.read_csv(test, sep="\t", dtype=str, quoting=3)  # the TSV as Ray's reader gives it: strings, no quotes
    items = [json.loads(item) for item in actor(batch)["prediction"]]
    assert [i["id"] for i in items] == [r["id"] for r in local] == batch["id"].tolist()
    for a, b in zip(local, items, strict=True):  # the JSONL writes 6 decimals; the actor's records are raw floats
        assert (a["id"], a["labels"]) == (b["id"], b["labels"]) and a["scores"] == pytest.approx(b["scores"], abs=1e-6)
        assert [n["id"] for n in a["neighbours"]] == [n["id"] for n in b["neighbours"]] and b["neighbours"]
        assert [n["similarity"] for n in a["neighbours"]] == pytest.approx([n["similarity"] for n in b["neighbours"]],
                                                                           abs=1e-5)
    blank = batch.copy()
    blank.loc[3, "id"] = " "
    with pytest.raises(DataError, match="empty id"):
        actor(blank)
