"""The training-slice benchmark: nested stratified slices, dev-only tuning, resume, the report writer, and
the SetFit / fine-tuning heads it trains (few steps, real minilm)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fewlabel.benchmarks.slices import methods as methods_module
from fewlabel.benchmarks.slices.data import SliceData, load_splits
from fewlabel.benchmarks.slices.methods import KNNMethod, NaiveBayesMethod, Task, ZeroShotMethod, make_methods
from fewlabel.benchmarks.slices.report import summarise, verdicts, write_slice_report
from fewlabel.benchmarks.slices.runner import RESULTS_FILE, majority_reference, run_benchmark
from fewlabel.benchmarks.slices.sampling import ALL, nested_slices, parse_slices
from fewlabel.indexing.errors import DataError, FewlabelError
from fewlabel.indexing.readers import Row

LABELS = ["anger", "fear", "joy", "sadness", "surprise"]


def multi_label_matrix(n: int = 400, seed: int = 0) -> np.ndarray:
    """Skewed label frequencies (joy common, fear rare), 1-2 labels a row."""
    rng = np.random.default_rng(seed)
    p = np.array([0.15, 0.03, 0.5, 0.2, 0.12])
    y = np.zeros((n, len(p)), dtype=bool)
    for i in range(n):
        y[i, rng.choice(len(p), p=p / p.sum())] = True
        if rng.random() < 0.3:
            y[i, rng.choice(len(p), p=p / p.sum())] = True
    return y


# ---- sampling ------------------------------------------------------------------------------------------
def test_parse_slices_orders_and_rejects_bad_sizes():
    assert parse_slices("32, 8,all,16") == [8, 16, 32, ALL]
    with pytest.raises(ValueError, match="positive integers"):
        parse_slices("8,-3")
    with pytest.raises(ValueError, match="no slice"):
        parse_slices(" , ")


def test_slices_are_nested_sized_stratified_and_reproducible():
    y = multi_label_matrix()
    sizes = [8, 16, 32, 64, ALL]
    slices = nested_slices(y, sizes, seed=3)
    for small, big in zip(slices, slices[1:], strict=False):
        assert set(small) < set(big)  # each slice contains the one before
    assert len(slices[-1]) == len(y)
    for asked, got in zip(sizes[1:-1], slices[1:-1], strict=True):
        assert asked <= len(got) <= asked + len(LABELS)  # asked size, plus at most one top-up per label
    assert y[slices[0]].any(0).all(), "every label is in the smallest slice"
    again = nested_slices(y, sizes, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(slices, again, strict=True))
    other = nested_slices(y, sizes, seed=4)
    assert not np.array_equal(slices[2], other[2])
    # stratified: label shares in a 64-row slice stay near the pool's
    share_pool, share_slice = y.mean(0), y[slices[3]].mean(0)
    assert np.abs(share_pool - share_slice).max() < 0.08


def test_single_label_slices_cover_every_class():
    labels = np.repeat(np.arange(6), [100, 50, 20, 10, 5, 3])
    y = np.eye(6, dtype=bool)[labels]
    first = nested_slices(y, [8, 32], seed=0)[0]
    assert set(labels[first]) == set(range(6))


# ---- data ------------------------------------------------------------------------------------------------
def write_tsv(path, rows):
    path.write_text("".join(f"{t}\t{lab}\n" for t, lab in rows), encoding="utf-8")
    return str(path)


def test_label_names_map_integer_labels_and_unknown_labels_fail(tmp_path):
    names = tmp_path / "labels.txt"
    names.write_text("neg\npos\n")
    train = write_tsv(tmp_path / "train.tsv", [(f"text {i}", i % 2) for i in range(40)])
    test = write_tsv(tmp_path / "test.tsv", [("good", 1), ("bad", 0)])
    data = load_splits(train, dev=None, test=test, text_col="0", label_col="1", multi_label=False, header=False,
                       label_names=str(names), dev_fraction=0.25)
    assert data.labels == ["neg", "pos"]
    assert len(data.dev) == 10 and len(data.train) == 30
    assert {r.text for r in data.dev}.isdisjoint(r.text for r in data.train)
    assert any("held out" in n for n in data.notes)
    bad = write_tsv(tmp_path / "bad.tsv", [("good", 1), ("odd", 7)])
    with pytest.raises(DataError, match="bad.tsv.*line 2"):
        load_splits(train, dev=None, test=bad, text_col="0", label_col="1", multi_label=False, header=False,
                    label_names=str(names))


# ---- runner: dev-only tuning and resume ------------------------------------------------------------------
def toy_data() -> SliceData:
    words = {"joy": ["happy", "glad", "delighted", "cheerful"], "sadness": ["sad", "unhappy", "gloomy", "tearful"],
             "anger": ["angry", "furious", "mad", "irate"]}
    rows = {"train": [], "dev": [], "test": []}
    for split, count in (("train", 12), ("dev", 4), ("test", 4)):
        for label, ws in words.items():
            for i in range(count):
                rows[split].append(Row(f"I feel {ws[i % 4]} about day {i} of {split}", (label,), f"{split}-{label}-{i}",
                                       i + 1))
    return SliceData(rows["train"], rows["dev"], rows["test"], sorted(words), multi_label=False)


def test_tuners_never_see_test_labels(monkeypatch, tmp_path):
    """Every label matrix a method builds (k/m tuning, zero-shot threshold) must come from dev rows."""
    seen: list[str] = []
    import fewlabel.retrieval.knn.saved_index as labelling

    original_targets, original_matrix = labelling.label_matrix, methods_module.label_matrix

    def spy_targets(rows, names, *args):
        seen.extend(r.id for r in rows if isinstance(r, Row))
        return original_targets(rows, names, *args)

    def spy_matrix(rows, labels, *args):
        seen.extend(r.id for r in rows if isinstance(r, Row))
        return original_matrix(rows, labels, *args)

    monkeypatch.setattr(labelling, "label_matrix", spy_targets)
    monkeypatch.setattr(methods_module, "label_matrix", spy_matrix)
    data = toy_data()
    data.multi_label = True  # so the zero-shot threshold is tuned too
    methods = [NaiveBayesMethod(), KNNMethod("minilm"), ZeroShotMethod("embed", encoder="minilm")]
    state = run_benchmark(data, methods, [4, ALL], [0], tmp_path, {"toy": 1}, show_progress=False,
                          log=lambda m: None)
    assert any(i.startswith("dev-") for i in seen), "the spies saw the tuning data"
    assert not [i for i in seen if i.startswith("test-")], "a test label reached a tuner"
    knn_all = next(r for r in state["results"] if r["method"] == "knn:minilm" and r["slice"] == ALL)
    assert knn_all["micro_f1"] > 0.9  # emotion words are easy for minilm: the wiring is right
    assert {"k", "m"} <= set(knn_all["info"])


class Interrupting:
    """Naive Bayes that stops the run (like Ctrl-C) on its n-th fit."""

    constant = False

    def __init__(self, stop_at: int | None) -> None:
        self.inner, self.stop_at, self.calls, self.name = NaiveBayesMethod(), stop_at, 0, "nb"

    def fit(self, train, dev, task):
        self.calls += 1
        if self.stop_at is not None and self.calls == self.stop_at:
            raise KeyboardInterrupt
        return self.inner.fit(train, dev, task)

    def predict(self, texts):
        return self.inner.predict(texts)


def test_resume_after_interruption_runs_only_what_is_missing(tmp_path):
    data = toy_data()
    first = Interrupting(stop_at=4)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(data, [first], [3, 6, ALL], [0, 1], tmp_path, {"c": 1}, show_progress=False,
                      log=lambda m: None)
    saved = json.loads((tmp_path / RESULTS_FILE).read_text())
    assert len(saved["results"]) == 3
    second = Interrupting(stop_at=None)
    state = run_benchmark(data, [second], [3, 6, ALL], [0, 1], tmp_path, {"c": 1}, show_progress=False,
                          log=lambda m: None)
    assert second.calls == 3 and len(state["results"]) == 6
    assert len({r["key"] for r in state["results"]}) == 6
    with pytest.raises(FewlabelError, match="other settings"):
        run_benchmark(data, [second], [3], [0], tmp_path, {"c": 2}, show_progress=False, log=lambda m: None)


class Renamed(Interrupting):
    """Naive Bayes under another method name: a method added to a finished run."""

    def __init__(self) -> None:
        super().__init__(stop_at=None)
        self.name = "nb-again"


def test_a_finished_run_grows_by_new_methods_only(tmp_path):
    data = toy_data()
    first = Interrupting(stop_at=None)
    run_benchmark(data, [first], [3, ALL], [0], tmp_path, {"c": 1, "methods": "nb"}, show_progress=False,
                  log=lambda m: None)
    again, added = Interrupting(stop_at=None), Renamed()
    state = run_benchmark(data, [again, added], [3, ALL], [0], tmp_path, {"c": 1, "methods": "nb,nb-again"},
                          show_progress=False, log=lambda m: None)
    assert again.calls == 0 and added.calls == 2  # only the new method's units ran
    assert sorted(r["method"] for r in state["results"]) == ["nb", "nb", "nb-again", "nb-again"]
    assert json.loads((tmp_path / RESULTS_FILE).read_text())["config"]["methods"] == "nb,nb-again"
    with pytest.raises(FewlabelError, match="other settings"):  # anything else that changes numbers: refused
        run_benchmark(data, [again], [3], [0], tmp_path, {"c": 2, "methods": "nb"}, show_progress=False,
                      log=lambda m: None)


def test_constant_floor_is_one_label_for_single_label_data_and_greedy_for_multi_label():
    # Two frequent labels: adding the second raises micro-F1 when rows may carry both.
    y = np.array([[1, 1, 0], [1, 1, 0], [1, 0, 0], [1, 0, 0], [1, 1, 1]], dtype=bool)
    multi = majority_reference(y, y, ["a", "b", "c"], multi_label=True)
    assert multi["label"] == "a + b"
    single_y = np.eye(3, dtype=bool)[[0, 0, 0, 1, 2]]
    single = majority_reference(single_y, single_y, ["a", "b", "c"], multi_label=False)
    assert single["label"] == "a"
    assert single["micro_f1"] == pytest.approx(0.6)


def test_make_methods_expands_encoders_and_rejects_unknown():
    names = [m.name for m in make_methods(["nb", "knn", "finetune"], encoders=["e5-small", "minilm"],
                                          bodies=["minilm"])]
    assert names == ["nb", "knn:e5-small", "knn:minilm", "finetune:minilm"]
    with pytest.raises(ValueError, match="unknown method"):
        make_methods(["nb", "svm"], encoders=[], bodies=[])


def test_naive_bayes_uses_character_ngrams_for_korean():
    rows = [Row("정말 재미있는 영화였어요", ("pos",), "1", 1), Row("너무 지루하고 별로였다", ("neg",), "2", 2)]
    info = NaiveBayesMethod().fit(rows, [], Task(labels=["neg", "pos"], multi_label=False))
    assert info["analyzer"] == "char_wb"
    english = [Row("a fine film", ("pos",), "1", 1), Row("a dull film", ("neg",), "2", 2)]
    assert NaiveBayesMethod().fit(english, [], Task(labels=["neg", "pos"], multi_label=False))["analyzer"] == "word"


# ---- report ------------------------------------------------------------------------------------------------
def canned_state() -> dict:
    results = []
    for seed, jitter in ((0, 0.0), (1, 0.02)):
        for s, nb, knn in ((8, 0.20, 0.45), (32, 0.30, 0.50), (ALL, 0.49, 0.60)):
            for method, f1 in (("nb", nb), ("knn:e5-small", knn)):
                results.append({"key": f"{method}|{s}|{seed}", "method": method, "slice": s, "seed": seed,
                                "train_rows": {8: 10, 32: 33, ALL: 1000}[s], "micro_f1": f1 + jitter,
                                "macro_f1": f1 / 2, "seconds": 1.0, "info": {}})
    results.append({"key": "zeroshot|-|None", "method": "zeroshot", "slice": "-", "seed": None, "train_rows": 0,
                    "micro_f1": 0.4, "macro_f1": 0.3, "seconds": 5.0, "info": {}})
    return {"config": {"x": 1}, "slices": {"0": {"8": 10, "32": 33, "all": 1000}, "1": {"8": 9, "32": 32,
                                                                                          "all": 1000}},
            "results": results}


def test_report_writer_on_canned_results(tmp_path):
    state = canned_state()
    summary = summarise(state)
    assert summary["nb"][8]["micro"][0] == pytest.approx(0.21)
    assert summary["nb"][8]["micro"][1] == pytest.approx(0.01)
    checks = {c["slice"]: c for c in verdicts(summary, [8, 32, ALL])}
    assert checks[8]["best"] == "knn:e5-small" and checks[8]["margin"] == pytest.approx(0.25)
    assert checks[ALL]["knn_margin"]["knn:e5-small"] == pytest.approx(0.11)
    state["majority"] = {"label": "joy", "micro_f1": 0.20, "macro_f1": 0.10}
    report = write_slice_report(tmp_path, state, title="canned", data_note="canned", notes=["a note"])
    text = report.read_text()
    assert "| nb | 0.210 ± 0.010 | 0.310 ± 0.010 | 0.500 ± 0.010 |" in text
    assert "8 (9/10 rows)" in text and "zeroshot (no training rows)" in text and "a note" in text
    assert "'joy' (the best constant answer on dev), scores micro-F1 0.200 / macro-F1 0.100" in text
    assert "nb at 8" not in text
    for png in ("micro_f1.png", "macro_f1.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


# ---- the heads SetFit and fine-tuning train ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> str:
    from tests.support.tiny_models import tiny_bert

    return str(tiny_bert(tmp_path_factory.mktemp("tiny") / "base"))


def test_setfit_and_fine_tuned_heads_answer_in_label_order_on_a_tiny_base(tiny_base):
    """The fast guard of the minilm test below (same checks; a few seconds instead of over a minute): the
    plumbing of both heads (label order, a label without examples, dev scoring, unknown labels refused)."""
    check_setfit_and_fine_tuned_heads(tiny_base)


@pytest.mark.slow  # 80 s on the loaded 2 cores; the tiny-base test above runs the same checks in make test
def test_setfit_and_fine_tuned_heads_learn_and_answer_in_label_order():
    check_setfit_and_fine_tuned_heads("minilm")


def check_setfit_and_fine_tuned_heads(base: str) -> None:
    from fewlabel.finetune.classify.setfit import train_setfit
    from fewlabel.finetune.classify.transformer import fine_tune_classifier
    from fewlabel.finetune.settings import TrainSettings

    data = toy_data()
    texts, labels = [r.text for r in data.train], [r.labels for r in data.train]
    dev_texts, dev_labels = [r.text for r in data.dev], [r.labels for r in data.dev]
    setfit = train_setfit(texts, labels, data.labels + ["fear"], base, multi_label=False, dev_texts=dev_texts,
                          dev_labels=dev_labels, num_iterations=2, max_steps=4, batch_size=8)
    probs = setfit.predict_proba(["I feel so happy", "I feel furious"])
    assert probs.shape == (2, 4) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert probs[:, 3].max() == 0  # "fear" has no example: never predicted
    assert setfit.info["dev_embedding_loss"], "dev was scored during training"
    settings = TrainSettings(epochs=10, max_steps=6, batch_size=8, lr=1e-4)
    tuned = fine_tune_classifier(texts, labels, data.labels, base, settings, multi_label=True,
                                 dev_texts=dev_texts, dev_labels=dev_labels)
    probs = tuned.predict_proba(["I feel so happy"])
    assert probs.shape == (1, 3) and ((probs >= 0) & (probs <= 1)).all()
    assert len(tuned.info["dev_micro_f1"]) >= 2 and tuned.info["best_step"] is not None
    assert tuned.info["settings"] == settings.to_dict()
    with pytest.raises(DataError, match="unknown label 'joy'"):
        fine_tune_classifier(texts, labels, ["anger", "sadness"], base, TrainSettings(max_steps=1),
                             multi_label=False)


def test_fine_tuned_head_keeps_frozen_word_embeddings_fixed():
    import torch
    from transformers import AutoModel

    from fewlabel.finetune.classify.transformer import CLASSIFIER_SETTINGS, fine_tune_classifier
    from fewlabel.finetune.settings import resolve_base
    from fewlabel.indexing.encoders.encoder import transformer_folder

    data = toy_data()
    texts, labels = [r.text for r in data.train], [r.labels for r in data.train]
    settings = replace(CLASSIFIER_SETTINGS, max_steps=2, batch_size=8, lr=1e-3, freeze_embeddings=True)
    tuned = fine_tune_classifier(texts, labels, data.labels, "minilm", settings, multi_label=False)
    base = AutoModel.from_pretrained(str(transformer_folder(Path(resolve_base("minilm")[0]))))
    after = tuned.model.get_input_embeddings().weight
    assert torch.equal(after.detach().cpu(), base.get_input_embeddings().weight.detach())
    assert tuned.info["trained_steps"] == 2 and tuned.info["settings"]["freeze_embeddings"] is True


class FixedProbabilities:
    """A stand-in head whose probabilities are all under 0.5, as after a few steps on 8 rows."""

    def predict_proba(self, texts, batch_size=64):
        return np.array([[0.30, 0.10] if "joy" in t else [0.10, 0.30] for t in texts])

    def predict(self, texts, threshold=0.5, batch_size=64):
        return self.predict_proba(texts) >= threshold


def test_multi_label_heads_get_their_decision_threshold_from_dev():
    from fewlabel.benchmarks.slices.methods import FineTuneMethod

    method = FineTuneMethod("minilm")
    method.model_, method.task_ = FixedProbabilities(), Task(labels=["joy", "sadness"], multi_label=True)
    dev = [Row("joy today", ("joy",), "d1", 1), Row("grey sadness", ("sadness",), "d2", 2)]
    info = method.tune_threshold(dev)
    assert 0.1 < info["threshold"] <= 0.3 and info["dev_micro_f1"] == 1.0
    assert method.predict(["joy again", "sadness again"]).tolist() == [[True, False], [False, True]]


def test_cli_bench_slices_writes_the_report_and_resumes(tmp_path, capsys):
    from fewlabel.retrieval.cli import main

    data = toy_data()
    for split in ("train", "dev", "test"):
        write_tsv(tmp_path / f"{split}.tsv", [(r.text, r.labels[0]) for r in getattr(data, split)])
    argv = ["-q", "bench", "slices", str(tmp_path / "train.tsv"), "--dev", str(tmp_path / "dev.tsv"), "--test",
            str(tmp_path / "test.tsv"), "--no-header", "--text-col", "0", "--label-col", "1", "--methods", "nb",
            "--slices", "3,6,all", "--seeds", "2", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    out = tmp_path / "out"
    for name in ("report.md", "micro_f1.png", "macro_f1.png", "results.json", "command.txt"):
        assert (out / name).is_file(), name
    assert "bench slices" in (out / "command.txt").read_text()
    assert len(json.loads((out / "results.json").read_text())["results"]) == 6
    assert main(argv) == 0  # everything finished: nothing runs again, the report is rewritten
    partial = [*argv[:argv.index("--methods")], "--methods", "nb,knn", "--encoders", "minilm", "--slices", "3,6,all",
               "--seeds", "2", "--out", str(tmp_path / "partial")]
    assert main([*partial, "--methods", "nb"]) == 0  # the last --methods wins: a run of nb alone
    state = json.loads((tmp_path / "partial" / "results.json").read_text())
    state["config"]["methods"] = "nb,knn"  # as if knn had been asked too and the run stopped before it
    (tmp_path / "partial" / "results.json").write_text(json.dumps(state))
    assert main([*partial, "--report-only"]) == 0
    report = (tmp_path / "partial" / "report.md").read_text()
    assert "UNFINISHED RUN: 6 of 12 runs done" in report and "| knn:minilm |" not in report
    assert "--report-only" not in (tmp_path / "partial" / "command.txt").read_text()
    capsys.readouterr()
    other = [*argv[:argv.index("--seeds")], "--seeds", "3", "--out", str(out)]
    assert main(other) == 2  # other settings in the same folder: refused, nothing overwritten
    assert "other settings (seeds" in capsys.readouterr().err
    assert len(json.loads((out / "results.json").read_text())["results"]) == 6
    assert main([*argv[:argv.index("--text-col")], "--text-col", "9", "--label-col", "1", "--out",
                 str(tmp_path / "bad")]) == 2
    assert "train.tsv" in capsys.readouterr().err
