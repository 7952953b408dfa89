"""What a predictions file is keyed by and carries (issue 25, item 6): the input's own `id` column when it has
one (row numbers otherwise, or --id-col), and --keep-cols to copy input columns (the text, gold labels, any
other) after the predictions, through every path that writes per-row predictions: `predict` held in memory
(scored with --label-col) or streamed in chunks, CSV and JSONL, `zeroshot`, and the demo's file. Real MiniLM on
slices of the bundled GoEmotions sample."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fewlabel.indexing.readers import has_column, read_rows
from fewlabel.retrieval.cli import main
from fewlabel.retrieval.outputs import Prediction, format_predictions, prediction_header

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"


def _tsv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def _write_tsv(path: Path, rows: list[dict[str, str]], columns: list[str]) -> Path:
    lines = ["\t".join(columns)] + ["\t".join(r[c] for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("columns")
    train = _tsv_rows(DEMO / "goemotions_ekman_train.tsv")[:100]
    test = _tsv_rows(DEMO / "goemotions_ekman_test.tsv")[:20]
    for i, row in enumerate(test):
        row["source"] = f"batch-{i % 3}"
    files = {"train": _write_tsv(d / "train.tsv", train, ["id", "text", "labels"]),
             "test": _write_tsv(d / "test.tsv", test, ["id", "source", "text", "labels"]),
             "no_ids": _write_tsv(d / "no_ids.tsv", test, ["text", "labels"]), "dir": d, "rows": test}
    jsonl = d / "test.jsonl"
    jsonl.write_text("".join(json.dumps({"id": r["id"], "text": r["text"], "n": i, "tags": [r["source"]]},
                                        ensure_ascii=False) + "\n" for i, r in enumerate(test)), encoding="utf-8")
    files["jsonl"] = jsonl
    index = d / "index"
    assert main(["-q", "index", "build", str(files["train"]), "--label-col", "labels", "--label-sep", ",",
                 "--model", "minilm", "--no-cache", "--method", "knn",
                 "--out", str(index)]) == 0
    files["index"] = index
    return files


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_predictions_are_keyed_by_the_input_id_column_without_being_told(data):
    out = data["dir"] / "by-id.csv"
    assert main(["-q", "predict", str(data["index"]), str(data["test"]), "--no-cache", "--out", str(out)]) == 0
    rows = _csv(out)
    assert [r["id"] for r in rows] == [r["id"] for r in data["rows"]]
    assert rows[0]["id"].startswith("e") and list(rows[0])[:2] == ["id", "labels"]  # GoEmotions ids, not "0"


def test_an_input_without_id_column_is_keyed_by_row_number(data):
    out = data["dir"] / "numbered.csv"
    assert main(["-q", "predict", str(data["index"]), str(data["no_ids"]), "--no-cache", "--out", str(out)]) == 0
    assert [r["id"] for r in _csv(out)] == [str(i) for i in range(len(data["rows"]))]


def test_keep_cols_streamed_csv_carries_text_and_gold_labels(data):
    """The streamed path (no --label-col): text and source as they were, the input's labels as input:labels."""
    out = data["dir"] / "kept.csv"
    assert main(["-q", "predict", str(data["index"]), str(data["test"]), "--no-cache", "--keep-cols",
                 "text,source,labels", "--out", str(out)]) == 0
    rows = _csv(out)
    assert list(rows[0])[-3:] == ["text", "source", "input:labels"]
    assert [(r["id"], r["text"], r["source"], r["input:labels"]) for r in rows] == \
        [(r["id"], r["text"], r["source"], r["labels"]) for r in data["rows"]]
    assert all(json.loads(r["labels"]) is not None for r in rows)  # the predicted labels are still a JSON list


def test_keep_cols_on_a_scored_input_and_jsonl(data, capsys):
    """--label-col reads INPUT whole (the other path): the kept text is there, and JSONL has it as a key."""
    out = data["dir"] / "scored.jsonl"
    assert main(["-q", "predict", str(data["index"]), str(data["test"]), "--no-cache", "--label-col", "labels",
                 "--label-sep", ",", "--keep-cols", "text", "--out", str(out)]) == 0
    items = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(i["id"], i["text"]) for i in items] == [(r["id"], r["text"]) for r in data["rows"]]
    assert "per-label F1" in capsys.readouterr().out


def test_keep_cols_from_jsonl_keeps_json_values(data):
    out_csv, out_jsonl = data["dir"] / "from-jsonl.csv", data["dir"] / "from-jsonl.jsonl"
    for out in (out_csv, out_jsonl):
        assert main(["-q", "predict", str(data["index"]), str(data["jsonl"]), "--no-cache", "--keep-cols", "n,tags",
                     "--out", str(out)]) == 0
    items = [json.loads(line) for line in out_jsonl.read_text(encoding="utf-8").splitlines()]
    assert [(i["n"], i["tags"]) for i in items] == [(k, [r["source"]]) for k, r in enumerate(data["rows"])]
    rows = _csv(out_csv)  # in CSV a number or a list is written as JSON
    assert [(r["n"], json.loads(r["tags"])) for r in rows] == [(str(k), [r["source"]])
                                                              for k, r in enumerate(data["rows"])]
    assert rows[0]["id"] == data["rows"][0]["id"]


@pytest.mark.parametrize("extra", [[], ["--label-col", "labels", "--label-sep", ","]],
                         ids=["streamed", "scored"])
def test_a_missing_kept_column_is_one_line_naming_it(data, capsys, extra):
    out = data["dir"] / "never.csv"
    code = main(["-q", "predict", str(data["index"]), str(data["test"]), "--no-cache", *extra,
                 "--keep-cols", "text,nope", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "nope" in err and "no such column" in err, err
    assert not out.exists()


def test_keep_cols_is_refused_on_ray_and_empty_names_by_the_parser(data, capsys):
    assert main(["-q", "predict", str(data["index"]), str(data["test"]), "--keep-cols", "text", "--engine", "ray",
                 "--out", str(data["dir"] / "ray.csv")]) == 2
    assert "--keep-cols applies to --engine local" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(data["index"]), str(data["test"]), "--keep-cols", "text,,id", "--out", "x.csv"])
    assert exc.value.code == 2 and "--keep-cols" in capsys.readouterr().err


def test_zeroshot_keys_by_id_and_keeps_text(data):
    out = data["dir"] / "zs.csv"
    assert main(["-q", "zeroshot", str(data["test"]), "--labels", "joy,anger,sadness", "--encoder", "minilm",
                 "--no-cache", "--keep-cols", "text", "--out", str(out)]) == 0
    rows = _csv(out)
    assert [(r["id"], r["text"]) for r in rows] == [(r["id"], r["text"]) for r in data["rows"]]


def test_readers_has_column_and_kept_values(tmp_path):
    tsv = _write_tsv(tmp_path / "a.tsv", [{"id": "x", "text": "hello"}], ["text", "id"])
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('\n{"text": "hi", "meta": {"a": 1}}\n', encoding="utf-8")
    assert has_column(tsv, "id") and not has_column(tsv, "labels")
    assert has_column(jsonl, "meta") and not has_column(jsonl, "id")
    assert not has_column(tmp_path / "missing.csv", "id")
    assert read_rows(jsonl, text_col="text", keep_cols=["meta"])[0].extra == {"meta": {"a": 1}}


def test_kept_names_never_shadow_the_outputs_own_columns():
    p = Prediction(id="7", labels=("a",), scores={"a": 1.0}, top_similarity=0.5,
                   kept={"id": "7", "scores": "s", "text": "t"})
    assert prediction_header(["a"], kept=["id", "text"]) == ["id", "labels", "score:a", "top_similarity",
                                                             "input:id", "text"]
    item = json.loads(format_predictions([p], "jsonl", ["a"], kept=["id", "scores", "text"]))
    assert item["id"] == "7" and item["scores"] == {"a": 1.0} and item["input:scores"] == "s"
    assert item["input:id"] == "7" and item["text"] == "t"


def test_suggest_keys_its_rows_by_the_pool_id_column(data):
    out = data["dir"] / "suggest.csv"
    assert main(["-q", "suggest", str(data["index"]), str(data["test"]), "--n", "4", "--no-cache",
                 "--out", str(out)]) == 0
    ids = {r["id"]: r["text"] for r in data["rows"]}
    rows = _csv(out)
    assert len(rows) == 4 and all(ids[r["id"]] == r["text"] for r in rows)  # the pool's ids, not row numbers
