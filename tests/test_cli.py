"""`fewlabel` end to end on a tiny slice of the bundled GoEmotions sample, with the real MiniLM:
build with tuning, info, add, predict (CSV, JSONL, explain), demo, --help, and one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from fewlabel.retrieval.cli import build_parser, main
from tests.support.demo import COMMON, DEMO, slice_tsv


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    return {
        "train": slice_tsv(DEMO / "goemotions_ekman_train.tsv", d / "train.tsv", 0, 120),
        "more": slice_tsv(DEMO / "goemotions_ekman_train.tsv", d / "more.tsv", 120, 30),
        "valid": slice_tsv(DEMO / "goemotions_ekman_valid.tsv", d / "valid.tsv", 0, 60),
        "test": slice_tsv(DEMO / "goemotions_ekman_test.tsv", d / "test.tsv", 0, 25),
        "dir": d,
    }


@pytest.fixture(scope="module")
def built_index(files):
    out = files["dir"] / "index"
    code = main(["-q", "index", "build", str(files["train"]), *COMMON, "--valid", str(files["valid"]),
                 "--model", "minilm", "--no-cache", "--max-k", "10", "--method", "knn", "--out", str(out)])
    assert code == 0  # the kNN vote by name: these tests check its k, m and vote fractions
    return out


def test_build_tunes_and_records_k_m(built_index):
    meta = json.loads((built_index / "meta.json").read_text())
    tuning = meta["tuning"]
    assert 1 <= tuning["m"] <= tuning["k"] <= 10
    assert len(tuning["grid"]) == 55  # every (k, m) with 1 <= m <= k <= 10
    best = max(row["micro_f1"] for row in tuning["grid"])
    assert tuning["score"] == pytest.approx(best)
    assert meta["multi_label"] is True and meta["n_rows"] == 120


def test_info_prints_summary(built_index, capsys):
    assert main(["index", "info", str(built_index)]) == 0
    out = capsys.readouterr().out
    assert "120" in out and "minilm" in out and "k=" in out


def test_predict_csv_with_scores(built_index, files):
    out = files["dir"] / "pred.csv"
    assert main(["-q", "predict", str(built_index), str(files["test"]), "--id-col", "id", "--no-cache",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 25
    meta = json.loads((built_index / "meta.json").read_text())
    assert [c for c in rows[0] if c.startswith("score:")] == [f"score:{lab}" for lab in meta["labels"]]
    for row in rows:
        labels = json.loads(row["labels"])
        assert set(labels) <= set(meta["labels"])
        for lab in labels:  # a predicted label had at least m of k votes
            assert float(row[f"score:{lab}"]) >= meta["tuning"]["m"] / meta["tuning"]["k"] - 1e-4  # 4 decimals in CSV


def test_predict_jsonl_explain_and_override(built_index, files):
    out = files["dir"] / "pred.jsonl"
    assert main(["-q", "predict", str(built_index), str(files["test"]), "--id-col", "id", "--no-cache",
                 "--k", "5", "--m", "1", "--explain", "--out", str(out)]) == 0
    items = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(items) == 25 and all(len(i["neighbours"]) == 5 for i in items)
    first = items[0]
    assert first["neighbours"][0]["similarity"] == pytest.approx(first["top_similarity"], abs=1e-5)
    assert all(i["labels"] for i in items)  # m=1 of 5: some neighbour always carries a label


def test_library_short_path_gives_the_cli_labels(built_index, files):
    """`Predictor.load(folder).predict(texts)` builds the index's own encoder and labels as `fewlabel predict`."""
    from fewlabel.indexing import read_texts
    from fewlabel.retrieval import Predictor

    out = files["dir"] / "short-path.csv"
    assert main(["predict", str(built_index), str(files["test"]), "--id-col", "id", "--no-cache", "--out", str(out),
                 "--quiet"]) == 0  # a global option after the command
    cli_labels = [json.loads(row["labels"]) for row in csv.DictReader(out.open(encoding="utf-8"))]
    texts = [row.text for row in read_texts(files["test"], text_col="text", id_col="id")]
    predictions = Predictor.load(built_index).predict(texts)
    assert [list(p.labels) for p in predictions] == cli_labels
    assert any(cli_labels)


def test_add_rows_and_retune(built_index, files, tmp_path):
    import shutil

    copy = tmp_path / "index"
    shutil.copytree(built_index, copy)
    assert main(["-q", "index", "add", str(copy), str(files["more"]), *COMMON, "--no-cache",
                 "--valid", str(files["valid"]), "--max-k", "5"]) == 0
    meta = json.loads((copy / "meta.json").read_text())
    assert meta["n_rows"] == 150 and meta["tuning"]["k"] <= 5 and "stale" not in meta["tuning"]


@pytest.mark.parametrize("argv, message", [
    (["index", "build", "{train}", "--text-col", "body", "--label-col", "labels", "--out", "{dir}/x"],
     "field 'body': no such column"),
    (["predict", "{dir}/nope", "{test}", "--out", "{dir}/p.csv"], "no such index folder"),
    (["predict", "{index}", "{test}", "--out", "{dir}/p.xlsx"], "must end in .csv or .jsonl"),
    (["predict", "{index}", "{test}", "--k", "5", "--m", "9", "--out", "{dir}/p.csv"], "m must be between 1"),
    (["index", "build", "{train}", *COMMON, "--model", "./no-model-here", "--out", "{dir}/x"], "does not exist"),
    (["index", "build", "{train}", *COMMON, "--model", "minilm", "--factory", "HNSW32", "--search-params",
      "nprobe=4", "--out", "{dir}/x"], "'nprobe=4' do not apply to a 'HNSW32' index"),
])
def test_errors_are_one_line_with_nonzero_exit(argv, message, built_index, files, capsys):
    fill = {"train": files["train"], "test": files["test"], "dir": files["dir"], "index": built_index}
    code = main(["-q", *[a.format(**fill) for a in argv]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_unknown_label_in_validation_names_the_line(files, capsys):
    bad = files["dir"] / "bad_valid.tsv"
    bad.write_text("id\ttext\tlabels\nv1\tfine\tjoy\nv2\tsomething\tboredom\n", encoding="utf-8")
    code = main(["-q", "index", "build", str(files["train"]), *COMMON, "--valid", str(bad), "--model", "minilm",
                 "--no-cache", "--out", str(files["dir"] / "y")])
    err = capsys.readouterr().err
    assert code == 2 and "bad_valid.tsv, line 3, field 'labels': unknown label 'boredom'" in err
    assert not (files["dir"] / "y").exists()  # nothing half-written


def test_every_command_has_help():
    parser = build_parser()
    for argv in (["--help"], ["index", "--help"], ["index", "build", "--help"], ["index", "info", "--help"],
                 ["index", "add", "--help"], ["predict", "--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 0


def test_console_script_runs(built_index):
    result = subprocess.run([sys.executable, "-m", "fewlabel.retrieval.cli", "index", "info", str(built_index),
                             "--json"], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout)["n_rows"] == 120


def test_demo_single_dataset(tmp_path, capsys):
    assert main(["-q", "demo", "--dataset", "nsmc", "--model", "minilm", "--no-cache", "--show", "2",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "held-out scores" in out
    scores = json.loads((tmp_path / "scores.json").read_text())["results"][0]
    assert scores["n"] == 200
    # the reported micro-F1 is the one of the predictions written beside it, against the bundled gold labels
    with open(DEMO / "nsmc_test.tsv", encoding="utf-8") as fh:
        gold = {r["id"]: r["label"] for r in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)}
    with open(tmp_path / "nsmc-predictions.csv", encoding="utf-8") as fh:
        predicted = {r["id"]: json.loads(r["labels"]) for r in csv.DictReader(fh)}
    assert predicted.keys() == gold.keys()
    tp = sum(gold[i] in labels for i, labels in predicted.items())
    fp = sum(len(labels) for labels in predicted.values()) - tp
    assert scores["micro_f1"] == pytest.approx(2 * tp / (2 * tp + fp + (len(gold) - tp)), abs=1e-4)
    assert (tmp_path / "nsmc-index" / "meta.json").is_file() and (tmp_path / "nsmc-predictions.csv").is_file()
