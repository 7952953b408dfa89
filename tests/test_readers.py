"""Tests for indexing.readers: good files read right, and every bad input names file, line, field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fewlabel.indexing.errors import DataError
from fewlabel.indexing.readers import Row, detect_format, read_rows, read_texts, split_label_cell
from tests.support.data import require_shared


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    """Write a small input file; newline="" so the test controls line endings exactly."""
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(content)
    return path


def write_jsonl(tmp_path: Path, name: str, objects: list[object]) -> Path:
    lines = [json.dumps(obj, ensure_ascii=False) for obj in objects]
    return write(tmp_path, name, "\n".join(lines) + "\n")


@contextmanager
def raises_data_error(*substrings: str) -> Iterator[pytest.ExceptionInfo[DataError]]:
    """Assert a DataError is raised whose message contains every substring."""
    with pytest.raises(DataError) as info:
        yield info
    message = str(info.value)
    for sub in substrings:
        assert sub in message, f"{sub!r} not in {message!r}"


# --- detect_format ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fmt"), [
    ("a.csv", "csv"), ("a.CSV", "csv"), ("a.tsv", "tsv"), ("a.txt", "tsv"), ("a.tab", "tsv"),
    ("a.jsonl", "jsonl"), ("a.ndjson", "jsonl"), ("a.json", "jsonl"),
])
def test_detect_format_by_extension(name: str, fmt: str) -> None:
    assert detect_format(name) == fmt


def test_detect_format_unknown_extension_lists_accepted() -> None:
    with raises_data_error("data.xlsx", ".xlsx", ".csv", ".tsv", ".jsonl"):
        detect_format("data.xlsx")


def test_fmt_argument_overrides_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "data.dat", "text\tlabel\nhello\tgreet\n")
    rows = read_rows(path, text_col="text", label_col="label", fmt="tsv")
    assert rows == [Row(text="hello", labels=("greet",), id="0", line=2)]


def test_unknown_fmt_argument(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", "text\nhello\n")
    with raises_data_error("data.csv", "xml", "csv", "tsv", "jsonl"):
        read_rows(path, text_col="text", fmt="xml")


# --- split_label_cell -----------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "sep", "expected"), [
    ("pos", None, ("pos",)),
    ("  pos  ", None, ("pos",)),
    ("a;b", None, ("a;b",)),
    ("a; b ;a", ";", ("a", "b")),
    ('["a", " b", "a"]', None, ("a", "b")),
    ('["a", "b"]', ";", ("a", "b")),
    (["x", "y", "x"], None, ("x", "y")),
    ([1, "2", 1], None, ("1", "2")),
    (3, None, ("3",)),
    ("스포츠|정치", "|", ("스포츠", "정치")),
])
def test_split_label_cell_good(raw: object, sep: str | None, expected: tuple[str, ...]) -> None:
    assert split_label_cell(raw, label_sep=sep, path="f.csv", line=2, field="label") == expected


@pytest.mark.parametrize("raw", ["", "   ", [], "[]", None])
def test_split_label_cell_empty_is_no_label(raw: object) -> None:
    with raises_data_error("f.csv", "line 7", "'label'", "no label"):
        split_label_cell(raw, label_sep=";", path="f.csv", line=7, field="label")


@pytest.mark.parametrize("raw", ['["a", "b"', "[not json]", "[draft"])
def test_split_label_cell_bad_json_list(raw: str) -> None:
    with raises_data_error("f.csv", "line 4", "'tags'", "JSON"):
        split_label_cell(raw, label_sep=None, path="f.csv", line=4, field="tags")


@pytest.mark.parametrize("raw", ["a;;b", '["a", ""]', ["a", " "]])
def test_split_label_cell_empty_item(raw: object) -> None:
    with raises_data_error("f.csv", "line 4", "'tags'", "empty label"):
        split_label_cell(raw, label_sep=";", path="f.csv", line=4, field="tags")


@pytest.mark.parametrize("raw", [1.5, {"a": 1}, True, [None], [["a"]]])
def test_split_label_cell_wrong_types(raw: object) -> None:
    with raises_data_error("f.jsonl", "line 2", "'label'"):
        split_label_cell(raw, label_sep=None, path="f.jsonl", line=2, field="label")


# --- good files -------------------------------------------------------------------------------


def test_csv_single_labels(tmp_path: Path) -> None:
    path = write(tmp_path, "train.csv", "text,label\nI loved it,pos\nawful,neg\n")
    rows = read_rows(path, text_col="text", label_col="label")
    assert rows == [
        Row(text="I loved it", labels=("pos",), id="0", line=2),
        Row(text="awful", labels=("neg",), id="1", line=3),
    ]


def test_csv_multi_labels_by_separator_and_json(tmp_path: Path) -> None:
    content = 'id,text,tags\na1,first,sport|news\na2,second,"[""news"", ""tech""]"\n'
    path = write(tmp_path, "multi.csv", content)
    rows = read_rows(path, text_col="text", label_col="tags", id_col="id", label_sep="|")
    assert [(r.id, r.labels) for r in rows] == [("a1", ("sport", "news")), ("a2", ("news", "tech"))]


def test_csv_crlf_bom_and_extra_fields(tmp_path: Path) -> None:
    content = "\ufefftext,label,notes\r\nhi,greet,whatever\r\n"
    rows = read_rows(write(tmp_path, "bom.csv", content), text_col="text", label_col="label")
    assert rows == [Row(text="hi", labels=("greet",), id="0", line=2)]
    # more fields than the header: an unquoted comma in the text would shift the label; refused, not guessed
    shifted = "text,label\r\nhi,greet\r\nwell, this is fine,joy\r\n"
    with raises_data_error("shifted.csv", "line 3", "3 fields but the header has 2", "unquoted comma"):
        read_rows(write(tmp_path, "shifted.csv", shifted), text_col="text", label_col="label")


def test_csv_quoted_comma_and_newline_keeps_start_lines(tmp_path: Path) -> None:
    content = (
        "text,label\n"
        '"hello, world",a\n'           # line 2
        '"two\nline ""quoted"" text",b\n'  # lines 3-4
        "after,c\n"                    # line 5
        '"three\n\nlines",d\n'         # lines 6-8
        "last,e\n"                     # line 9
    )
    rows = read_rows(write(tmp_path, "quoted.csv", content), text_col="text", label_col="label")
    assert [r.text for r in rows] == ["hello, world", 'two\nline "quoted" text', "after", "three\n\nlines",
                                      "last"]
    assert [r.line for r in rows] == [2, 3, 5, 6, 9]
    assert [r.id for r in rows] == ["0", "1", "2", "3", "4"]


def test_csv_blank_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    content = "text,label\n\nfirst,a\n\n\nsecond,b\n\n"
    rows = read_rows(write(tmp_path, "blank.csv", content), text_col="text", label_col="label")
    assert [(r.text, r.line, r.id) for r in rows] == [("first", 3, "0"), ("second", 6, "1")]


def test_bad_row_after_multiline_record_reports_its_own_line(tmp_path: Path) -> None:
    content = 'text,label\n"multi\nline",a\n   ,b\n'
    with raises_data_error("ml.csv", "line 4", "'text'", "empty text"):
        read_rows(write(tmp_path, "ml.csv", content), text_col="text", label_col="label")


def test_tsv_with_stray_quotes(tmp_path: Path) -> None:
    content = 'sentence\tscore\n"quoted start\t5\nmid "quote" here\t3\nend"\t1\n'
    rows = read_rows(write(tmp_path, "sts.tsv", content), text_col="sentence", label_col="score")
    assert [r.text for r in rows] == ['"quoted start', 'mid "quote" here', 'end"']
    assert [r.labels for r in rows] == [("5",), ("3",), ("1",)]
    assert [r.line for r in rows] == [2, 3, 4]


def test_headerless_tsv_by_position(tmp_path: Path) -> None:
    path = write(tmp_path, "nohead.tsv", "x1\t재미있다\tpos\nx2\t지루하다\tneg\n")
    rows = read_rows(path, text_col="1", label_col="2", id_col="0", header=False)
    assert rows == [
        Row(text="재미있다", labels=("pos",), id="x1", line=1),
        Row(text="지루하다", labels=("neg",), id="x2", line=2),
    ]


def test_headerless_bad_position(tmp_path: Path) -> None:
    path = write(tmp_path, "nohead.tsv", "a\tb\n")
    with raises_data_error("nohead.tsv", "'text'", "0-based"):
        read_rows(path, text_col="text", header=False)


def test_jsonl_single_and_multi_labels(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, "data.jsonl", [
        {"id": 10, "text": "one", "label": "a"},
        {"id": "11", "text": "two", "label": ["a", "b", "a"]},
        {"id": 12, "text": "three", "label": 3},
        {"id": 13, "text": "four", "label": '["x", "y"]'},
        {"id": 14, "text": "five", "label": "p, q", "extra": {"ignored": True}},
    ])
    rows = read_rows(path, text_col="text", label_col="label", id_col="id", label_sep=",")
    assert [(r.id, r.labels) for r in rows] == [
        ("10", ("a",)), ("11", ("a", "b")), ("12", ("3",)), ("13", ("x", "y")), ("14", ("p", "q")),
    ]
    assert [r.line for r in rows] == [1, 2, 3, 4, 5]


def test_jsonl_blank_lines_skipped_and_lines_counted(tmp_path: Path) -> None:
    content = '\n{"text": "a"}\n   \n{"text": "b"}\r\n\n'
    rows = read_texts(write(tmp_path, "blank.jsonl", content), text_col="text")
    assert [(r.text, r.line, r.id, r.labels) for r in rows] == [("a", 2, "0", ()), ("b", 4, "1", ())]


def test_jsonl_text_with_unicode_line_separator(tmp_path: Path) -> None:
    # U+2028 is legal raw inside a JSON string; it must not split the record.
    path = write(tmp_path, "sep.jsonl", '{"text": "a\u2028b"}\n{"text": "c"}\n')
    rows = read_texts(path, text_col="text")
    assert [(r.text, r.line) for r in rows] == [("a\u2028b", 1), ("c", 2)]


@pytest.mark.parametrize("name", ["ko.csv", "ko.tsv", "ko.jsonl"])
def test_korean_round_trip(tmp_path: Path, name: str) -> None:
    text, labels = "이 영화 정말 재미있어요! 👍", ("긍정", "추천")
    if name.endswith(".jsonl"):
        path = write_jsonl(tmp_path, name, [{"text": text, "label": list(labels)}])
    else:
        sep = "," if name.endswith(".csv") else "\t"
        path = write(tmp_path, name, f"text{sep}label\n{text}{sep}긍정|추천\n")
    rows = read_rows(path, text_col="text", label_col="label", label_sep="|")
    assert rows == [Row(text=text, labels=labels, id="0", line=1 if name.endswith(".jsonl") else 2)]


def test_read_texts_ignores_label_column(tmp_path: Path) -> None:
    path = write(tmp_path, "predict.csv", "id,text,label\nq1,some text,\nq2,more text,\n")
    rows = read_texts(path, text_col="text", id_col="id")
    assert [(r.id, r.text, r.labels) for r in rows] == [("q1", "some text", ()), ("q2", "more text", ())]


def test_allow_empty_labels(tmp_path: Path) -> None:
    path = write(tmp_path, "partial.csv", "text,label\nlabelled,a\nunlabelled,\nspaces,   \n")
    rows = read_rows(path, text_col="text", label_col="label", allow_empty_labels=True)
    assert [r.labels for r in rows] == [("a",), (), ()]


def test_allow_empty_labels_jsonl_missing_or_null(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, "partial.jsonl", [{"text": "a"}, {"text": "b", "label": None},
                                                   {"text": "c", "label": []}])
    rows = read_rows(path, text_col="text", label_col="label", allow_empty_labels=True)
    assert [r.labels for r in rows] == [(), (), ()]


def test_allow_empty_labels_still_rejects_malformed(tmp_path: Path) -> None:
    path = write(tmp_path, "partial.csv", "text,label\nok,a\nbad,[oops\n")
    with raises_data_error("partial.csv", "line 3", "'label'", "JSON"):
        read_rows(path, text_col="text", label_col="label", allow_empty_labels=True)


def test_str_path_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "s.csv", "text\nhello\n")
    assert read_texts(str(path), text_col="text")[0].text == "hello"


# --- bad inputs -------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with raises_data_error("nope.csv", "not found"):
        read_rows(tmp_path / "nope.csv", text_col="text")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    with raises_data_error("folder.csv", "is a folder"):
        read_rows(folder, text_col="text")


@pytest.mark.parametrize(("name", "content"), [
    ("empty.csv", ""),
    ("header_only.csv", "text,label\n"),
    ("blank.tsv", "\n\n"),
    ("empty.jsonl", ""),
    ("blank.jsonl", "\n  \n"),
])
def test_no_rows(tmp_path: Path, name: str, content: str) -> None:
    with raises_data_error(name, "no rows"):
        read_rows(write(tmp_path, name, content), text_col="text", label_col="label")


def test_unknown_column_lists_available(tmp_path: Path) -> None:
    path = write(tmp_path, "cols.csv", "sentence,label\nhi,a\n")
    with raises_data_error("cols.csv", "'text'", "line 1", "'sentence'", "'label'"):
        read_rows(path, text_col="text", label_col="label")


def test_unknown_label_column(tmp_path: Path) -> None:
    path = write(tmp_path, "cols.tsv", "text\tlabel\nhi\ta\n")
    with raises_data_error("cols.tsv", "'category'", "available columns"):
        read_rows(path, text_col="text", label_col="category")


def test_ambiguous_column(tmp_path: Path) -> None:
    path = write(tmp_path, "dup.csv", "text,text\na,b\n")
    with raises_data_error("dup.csv", "'text'", "2 times"):
        read_rows(path, text_col="text")


def test_too_few_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "short.csv", "id,text,label\n1,fine,a\n2,missing label\n")
    with raises_data_error("short.csv", "line 3", "'label'", "expected 3 fields, found 2"):
        read_rows(path, text_col="text", label_col="label", id_col="id")


def test_too_few_fields_tsv_headerless(tmp_path: Path) -> None:
    path = write(tmp_path, "short.tsv", "a\tb\nonly one\n")
    with raises_data_error("short.tsv", "line 2", "'1'", "expected 2 fields, found 1"):
        read_rows(path, text_col="0", label_col="1", header=False)


@pytest.mark.parametrize("bad_text", ["", "   ", "\t"])
def test_empty_text_csv(tmp_path: Path, bad_text: str) -> None:
    path = write(tmp_path, "empty_text.csv", f'text,label\nok,a\n"{bad_text}",b\n')
    with raises_data_error("empty_text.csv", "line 3", "'text'", "empty text"):
        read_rows(path, text_col="text", label_col="label")


@pytest.mark.parametrize("bad_text", ["", "  ", None, 5, ["a"]])
def test_bad_text_jsonl(tmp_path: Path, bad_text: object) -> None:
    path = write_jsonl(tmp_path, "t.jsonl", [{"body": "ok"}, {"body": bad_text}])
    with raises_data_error("t.jsonl", "line 2", "'body'"):
        read_texts(path, text_col="body")


def test_jsonl_missing_key(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, "k.jsonl", [{"text": "a", "label": "x"}, {"txt": "b", "label": "y"}])
    with raises_data_error("k.jsonl", "line 2", "'text'", "missing key"):
        read_rows(path, text_col="text", label_col="label")


def test_jsonl_missing_label_key(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, "k.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    with raises_data_error("k.jsonl", "line 2", "'label'", "no label"):
        read_rows(path, text_col="text", label_col="label")


def test_jsonl_invalid_json(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.jsonl", '{"text": "a"}\n\n{"text": "b",}\n')
    with raises_data_error("bad.jsonl", "line 3", "not valid JSON"):
        read_texts(path, text_col="text")


def test_jsonl_not_an_object(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.jsonl", '{"text": "a"}\n["text", "b"]\n')
    with raises_data_error("bad.jsonl", "line 2", "JSON object", "list"):
        read_texts(path, text_col="text")


def test_json_array_file_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "array.json", '[\n  {"text": "a"}\n]\n')
    with raises_data_error("array.json", "line 1", "JSON Lines"):
        read_texts(path, text_col="text")


def test_missing_label_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "nolabel.csv", "text,label\nok,a\nno label here,\n")
    with raises_data_error("nolabel.csv", "line 3", "'label'", "no label"):
        read_rows(path, text_col="text", label_col="label")


def test_empty_label_item_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, "items.tsv", "text\ttags\nok\ta|b\nbad\ta||b\n")
    with raises_data_error("items.tsv", "line 3", "'tags'", "empty label"):
        read_rows(path, text_col="text", label_col="tags", label_sep="|")


def test_malformed_json_label_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, "json_label.tsv", 'text\ttags\nok\t["a"]\nbad\t["a", \n')
    with raises_data_error("json_label.tsv", "line 3", "'tags'", "JSON"):
        read_rows(path, text_col="text", label_col="tags")


def test_duplicate_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "ids.csv", "id,text\nA,one\nB,two\nA,three\n")
    with raises_data_error("ids.csv", "line 4", "'id'", "duplicate id 'A'", "line 2"):
        read_texts(path, text_col="text", id_col="id")


def test_duplicate_ids_jsonl_int_and_str(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, "ids.jsonl", [{"id": 7, "text": "a"}, {"id": "7", "text": "b"}])
    with raises_data_error("ids.jsonl", "line 2", "'id'", "duplicate id '7'"):
        read_texts(path, text_col="text", id_col="id")


def test_empty_id(tmp_path: Path) -> None:
    path = write(tmp_path, "ids.csv", "id,text\nA,one\n ,two\n")
    with raises_data_error("ids.csv", "line 3", "'id'", "empty id"):
        read_texts(path, text_col="text", id_col="id")


def test_unclosed_quote_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "unclosed.csv", 'text,label\nok,a\n"never closed,b\nmore,c\n')
    with raises_data_error("unclosed.csv", "line 3", "never closed"):
        read_rows(path, text_col="text", label_col="label")


def test_garbage_after_closing_quote_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "garbage.csv", 'text,label\nok,a\n"quoted"junk,b\n')
    with raises_data_error("garbage.csv", "line 3", "malformed CSV"):
        read_rows(path, text_col="text", label_col="label")


def test_invalid_utf8_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "latin1.csv", "text\nok\ncaf\xe9\n".encode("latin-1"))
    with raises_data_error("latin1.csv", "line 3", "UTF-8"):
        read_texts(path, text_col="text")


def test_utf16_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "excel.tsv", "text\n안녕\n".encode("utf-16"))
    with raises_data_error("excel.tsv", "UTF-16"):
        read_texts(path, text_col="text")


# --- real data --------------------------------------------------------------------------------


def test_nsmc_test_split() -> None:
    """NSMC's rebuilt test split: a .txt TSV with header id/document/label, 50,000 rows."""
    nsmc_test = require_shared("nsmc", "rebuilt_ratings_test.txt")
    rows = read_rows(nsmc_test, text_col="document", label_col="label", id_col="id")
    assert len(rows) == 50_000
    assert {label for row in rows for label in row.labels} == {"0", "1"}
    assert all(len(row.labels) == 1 for row in rows)
    assert rows[0].line == 2 and rows[-1].line == 50_001
    assert len({row.id for row in rows}) == 50_000


def test_label_col_default_reads_a_labels_column_when_it_is_the_only_one(tmp_path, capsys):
    """`--label-col` defaults to `label`; a file with `labels` instead (the bundled GoEmotions sample) is read from
    it with a note, and a file with neither still fails on `label`."""
    import argparse

    from fewlabel.indexing.errors import DataError
    from fewlabel.retrieval.cli.options import read_labelled

    args = argparse.Namespace(text_col="text", label_col="label", id_col=None, label_sep=",", no_header=False,
                              quiet=False)
    plural = tmp_path / "plural.csv"
    plural.write_text("text,labels\nhello,\"a,b\"\nbye,a\n", encoding="utf-8")
    rows = read_labelled(args, str(plural))
    assert [r.labels for r in rows] == [("a", "b"), ("a",)] and args.label_col == "labels"
    assert "'labels' column" in capsys.readouterr().err
    neither = tmp_path / "neither.csv"
    neither.write_text("text,tag\nhello,a\n", encoding="utf-8")
    args.label_col = "label"
    with pytest.raises(DataError, match="label"):
        read_labelled(args, str(neither))
