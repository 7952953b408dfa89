"""Augmentation (`fewlabel.indexing.augment`, `--augment` on `index build` and `bench slices`): copies keep their
labels, are reproducible by seed, Korean works on eojeol or characters, and the benchmark runs each trainable
method with and without it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fewlabel.benchmarks.slices.methods import AugmentedMethod, NaiveBayesMethod, Task, make_methods
from fewlabel.indexing.augment import COPY_MARK, Augmenter, augment_rows
from fewlabel.indexing.errors import FewlabelError
from fewlabel.indexing.readers import Row
from fewlabel.retrieval.cli import main

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"
ROWS = [Row("this movie was a great joy to watch with friends", ("joy",), "a", 2),
        Row("이 영화 정말 재미있었어요 배우들 연기도 좋고", ("positive",), "b", 3),
        Row("I am so angry about the ending and the plot", ("anger", "surprise"), "c", 4),
        Row("short", ("joy",), "d", 5)]


@pytest.mark.parametrize("method", ["eda", "swap", "delete", "insert"])
@pytest.mark.parametrize("unit", ["word", "char"])
def test_copies_keep_labels_and_are_reproducible(method, unit):
    augmenter = Augmenter(method, copies=4, p=0.2, unit=unit, seed=7)
    out = augmenter.augment(ROWS)
    assert out[:len(ROWS)] == ROWS  # the originals first, untouched
    for row in out[len(ROWS):]:
        original = next(r for r in ROWS if row.id.startswith(r.id + COPY_MARK))
        assert row.labels == original.labels and row.line == original.line
        assert row.text != original.text and row.text.strip()
    for original in ROWS:
        copies = [r.text for r in out if r.id.startswith(original.id + COPY_MARK)]
        assert len(copies) == len(set(copies)) <= 4  # distinct, at most N
    assert augmenter.augment(ROWS) == out  # same seed, same copies
    assert Augmenter(method, copies=4, p=0.2, unit=unit, seed=8).augment(ROWS) != out


def test_a_row_is_augmented_the_same_whatever_rows_come_with_it():
    """Seeded per text: nested benchmark slices see the same copies of a row."""
    augmenter = Augmenter(seed=3)
    alone = augmenter.augment(ROWS[1:2])
    together = augmenter.augment(ROWS)
    assert [r.text for r in alone[1:]] == [r.text for r in together if r.id.startswith("b" + COPY_MARK)]


def test_operations_do_what_they_say():
    text = "one two three four five six seven eight nine ten"
    words = text.split()
    swapped = Augmenter("swap", copies=3, p=0.1).variants(text)
    assert all(sorted(v.split()) == sorted(words) and v != text for v in swapped)
    deleted = Augmenter("delete", copies=3, p=0.3).variants(text)
    assert all(set(v.split()) < set(words) for v in deleted)
    inserted = Augmenter("insert", copies=3, p=0.2).variants(text)
    assert all(len(v.split()) == len(words) + 2 and set(v.split()) == set(words) for v in inserted)


def test_korean_eojeol_and_characters():
    text = "배우들 연기도 정말 좋았어요"
    eojeol = Augmenter("swap", copies=3, p=0.25, unit="word").variants(text)
    assert all(sorted(v.split()) == sorted(text.split()) for v in eojeol)  # whole eojeol move, none is cut
    chars = Augmenter("swap", copies=3, p=0.25, unit="char").variants(text)
    assert all([len(w) for w in v.split(" ")] == [len(w) for w in text.split(" ")] for v in chars)  # spaces stay
    assert all(sorted(v.replace(" ", "")) == sorted(text.replace(" ", "")) for v in chars)  # syllables move
    deleted = Augmenter("delete", copies=3, p=0.2, unit="char").variants(text)
    assert all(v.count(" ") == text.count(" ") and len(v) < len(text) for v in deleted)


def test_one_word_texts_and_bad_settings():
    assert Augmenter("swap").variants("short") == []  # nothing to swap: no copy rather than a duplicate
    assert augment_rows(ROWS[3:], "swap") == ROWS[3:]
    for bad in (dict(method="synonym"), dict(copies=0), dict(p=0.0), dict(p=1.0), dict(unit="morpheme")):
        with pytest.raises(FewlabelError, match="bad augmentation settings"):
            Augmenter(**bad)


def test_augmented_method_fits_on_copies_and_keeps_its_partner():
    train = [Row("good great fine movie", ("pos",), "1", 2), Row("bad awful poor movie", ("neg",), "2", 3)]
    nb = NaiveBayesMethod()
    twin = AugmentedMethod(nb, Augmenter(copies=3, seed=1))
    info = twin.fit(train, [], Task(labels=["neg", "pos"], multi_label=False))
    assert twin.name == "nb+eda" and info["augmented_rows"] > len(train)
    assert twin.predict(["great movie", "awful movie"]).tolist() == [[False, True], [True, False]]
    methods = make_methods(["nb", "zeroshot", "knn"], encoders=["minilm"], bodies=[],
                           augmenter=Augmenter("delete", unit="char"))
    assert [m.name for m in methods] == ["nb", "nb+delete-char", "zeroshot", "knn:minilm", "knn:minilm+delete-char"]


def test_index_build_augments_training_rows_only(tmp_path, capsys):
    train = tmp_path / "train.tsv"
    lines = (DEMO / "nsmc_train.tsv").read_text(encoding="utf-8").splitlines()
    train.write_text("\n".join(lines[:41]) + "\n", encoding="utf-8")
    out = tmp_path / "index"
    assert main(["-q", "index", "build", str(train), "--model", "minilm", "--no-cache", "--out", str(out),
                 "--augment", "eda", "--augment-copies", "2", "--augment-seed", "5"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["augment"] == {"method": "eda", "copies": 2, "p": 0.1, "unit": "word", "seed": 5,
                               "labelled_rows": 40, "rows": meta["n_rows"]}
    assert 40 < meta["n_rows"] <= 120
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text(encoding="utf-8").splitlines()]
    copies = [r for r in rows if COPY_MARK in r["id"]]
    by_id = {r["id"]: r for r in rows}
    assert copies and all(r["labels"] == by_id[r["id"].split(COPY_MARK)[0]]["labels"] for r in copies)
    capsys.readouterr()
    assert main(["index", "build", str(train), "--model", "minilm", "--out", str(tmp_path / "x"),
                 "--augment-copies", "2"]) == 2
    assert "--augment-copies applies to augmentation" in capsys.readouterr().err


def test_bench_slices_runs_plain_and_augmented(tmp_path):
    rng = np.random.default_rng(0)
    words = {"pos": ["great", "fine", "lovely", "good"], "neg": ["bad", "awful", "poor", "dull"]}
    path = {}
    for split, n in (("train", 60), ("dev", 20), ("test", 20)):
        rows = ["text\tlabel"]
        for i in range(n):
            label = "pos" if i % 2 else "neg"
            rows.append(" ".join(rng.choice(words[label], 3)) + f" film {i}\t{label}")
        path[split] = tmp_path / f"{split}.tsv"
        path[split].write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "bench"
    assert main(["-q", "bench", "slices", str(path["train"]), "--dev", str(path["dev"]), "--test", str(path["test"]),
                 "--methods", "nb", "--slices", "8,all", "--seeds", "1", "--augment", "eda", "--augment-copies", "2",
                 "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in results["results"]} == {"nb", "nb+eda"}
    assert results["config"]["augment"]["copies"] == 2
    assert all("cpu_seconds" in r for r in results["results"])
    augmented = [r for r in results["results"] if r["method"] == "nb+eda"]
    assert all(r["info"]["augmented_rows"] > r["train_rows"] for r in augmented)
    assert "nb+eda" in (out / "report.md").read_text(encoding="utf-8")
