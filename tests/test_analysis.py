"""Error analysis (`fewlabel.retrieval.analysis`): the STS scatter and residual plot, the confusion matrix and the
per-label tables, checked through matplotlib's objects (axes, lines, labels) rather than pixels; and the three
commands that write them (`sts score`, `re evaluate`, `predict` on labelled input)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fewlabel.indexing.errors import FewlabelError
from fewlabel.retrieval.analysis import (
    PNG_MARK,
    TABLE_COLUMNS,
    analysis_files,
    claim_analysis_files,
    confusion_figure,
    per_label_scores,
    save_figure,
    sts_figure,
    write_tables,
)
from fewlabel.retrieval.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "retrieval" / "demo_data"
KLUE = ROOT / "tests" / "fixtures" / "klue_re"


def test_sts_figure_has_scatter_identity_scores_and_residual_bins():
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 200)
    predicted = np.clip(gold + rng.normal(0, 0.5, 200), 0, 5)
    figure = sts_figure(gold, predicted, title="my pairs")
    scatter, residuals = figure.axes
    assert scatter.get_xlabel() == "gold score" and scatter.get_ylabel() == "predicted score"
    identity = [line for line in scatter.get_lines() if line.get_label().startswith("identity")]
    assert len(identity) == 1 and list(identity[0].get_xdata()) == list(identity[0].get_ydata()) == [0, 5]
    from scipy.stats import pearsonr, spearmanr

    title = scatter.get_title()
    assert f"Pearson {pearsonr(gold, predicted)[0]:.3f}" in title
    assert f"Spearman {spearmanr(gold, predicted)[0]:.3f}" in title
    assert scatter.collections[0].get_offsets().shape == (200, 2)  # every pair is a point
    ticks = [t.get_text() for t in residuals.get_xticklabels()]
    assert [t.split("\n")[0] for t in ticks] == ["0-1", "1-2", "2-3", "3-4", "4-5"]
    counts = np.histogram(np.clip(gold, 0, 4.999), bins=[0, 1, 2, 3, 4, 5])[0]
    assert [int(t.split("n=")[1].rstrip(")")) for t in ticks] == counts.tolist()
    assert residuals.get_ylabel() == "residual (predicted - gold)" and figure._suptitle.get_text() == "my pairs"
    zero = [line for line in residuals.get_lines() if list(line.get_ydata()) == [0, 0]]
    assert zero, "the zero-residual line is drawn"


def test_confusion_figure_and_per_label_table():
    labels = ["neg", "neu", "pos"]
    gold = ["neg", "neg", "pos", "pos", "pos", "neu"]
    predicted = ["neg", "pos", "pos", "pos", "neg", "neu"]
    figure = confusion_figure(gold, predicted, labels)
    (ax, _colorbar) = figure.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == labels == [t.get_text() for t in ax.get_yticklabels()]
    assert ax.get_xlabel() == "predicted label" and ax.get_ylabel() == "gold label"
    shares = ax.images[0].get_array()
    assert np.allclose(shares, [[0.5, 0, 0.5], [0, 1, 0], [1 / 3, 0, 2 / 3]])
    assert sorted(t.get_text() for t in ax.texts) == ["1", "1", "1", "1", "2"]  # the counts of non-empty cells
    assert "accuracy 0.667" in ax.get_title()

    onehot = np.eye(3, dtype=bool)
    rows = per_label_scores(onehot[[labels.index(g) for g in gold]], onehot[[labels.index(p) for p in predicted]],
                            labels)
    by = {r["label"]: r for r in rows}
    assert by["pos"]["precision"] == pytest.approx(2 / 3) and by["pos"]["recall"] == pytest.approx(2 / 3)
    assert by["neg"]["support"] == 2 and by["neg"]["predicted"] == 2 and by["neu"]["f1"] == 1.0
    assert by["(micro average)"]["f1"] == pytest.approx(4 / 6)
    assert by["(macro average)"]["f1"] == pytest.approx(np.mean([0.5, 1.0, 2 / 3]))


def test_files_are_written_atomically_and_never_over_a_users_file(tmp_path):
    files = analysis_files(tmp_path / "pred.csv", table="per_label")
    assert files == {"png": tmp_path / "pred.csv.confusion.png", "csv": tmp_path / "pred.csv.per_label.csv",
                     "md": tmp_path / "pred.csv.per_label.md"}  # one rule, as OUT.meta.json: OUT's whole name first
    assert analysis_files(tmp_path / "scores.csv", plot="scatter") == {"png": tmp_path / "scores.csv.scatter.png"}
    claim_analysis_files(files)
    rows = per_label_scores(np.eye(2, dtype=bool), np.eye(2, dtype=bool), ["a", "b"])
    write_tables(rows, files["csv"], files["md"])
    save_figure(confusion_figure(["a", "b"], ["a", "b"], ["a", "b"]), files["png"])
    assert PNG_MARK.encode() in files["png"].read_bytes()[:4096]
    assert tuple(next(csv.reader(files["csv"].open(encoding="utf-8")))) == TABLE_COLUMNS
    assert files["md"].read_text(encoding="utf-8").startswith("| label | precision")
    claim_analysis_files(files)  # our own files may be replaced
    (tmp_path / "pred.csv.confusion.png").write_bytes(b"\x89PNG my holiday photo")
    with pytest.raises(FewlabelError, match="never replaces a file it did not make"):
        claim_analysis_files(files)


def labelled_pairs(path: Path) -> Path:
    path.write_text("sentence1,sentence2,label\n" + "\n".join([
        "A man is playing a guitar.,A man plays the guitar.,4.8",
        "A woman is slicing an onion.,A woman cuts an onion.,4.2",
        "A dog runs in the park.,A cat sleeps on the sofa.,0.6",
        "The stock market fell today.,Kids are playing football.,0.0",
        "A plane is taking off.,An airplane departs.,4.5",
        "Two men are talking.,A man is reading.,1.4"]) + "\n", encoding="utf-8")
    return path


def test_sts_score_writes_the_plot_for_labelled_pairs(tmp_path, capsys):
    pairs = labelled_pairs(tmp_path / "pairs.csv")
    out = tmp_path / "scores.csv"
    assert main(["-q", "sts", "score", str(pairs), "--model", "minilm", "--no-cache", "--out", str(out)]) == 0
    assert f"error analysis -> {tmp_path / 'scores.csv.scatter.png'}" in capsys.readouterr().out
    assert PNG_MARK.encode() in (tmp_path / "scores.csv.scatter.png").read_bytes()[:4096]
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("sentence1,sentence2\na,b\nc,d\n", encoding="utf-8")
    assert main(["-q", "sts", "score", str(unlabelled), "--model", "minilm", "--no-cache", "--out",
                 str(tmp_path / "u.csv")]) == 0
    assert not (tmp_path / "u.csv.scatter.png").exists()


def test_sts_score_plot_shows_the_scores_it_wrote_and_names_the_calibration(tmp_path, monkeypatch):
    """The figure the command saves, caught before it is written: its points are the written scores against
    gold, its title carries the printed Pearson and says which map made the scores."""
    import fewlabel.retrieval.analysis as analysis

    saved = []
    write = analysis.save_figure
    monkeypatch.setattr(analysis, "save_figure", lambda fig, path, **kw: (saved.append(fig), write(fig, path, **kw))[1])
    pairs, out = labelled_pairs(tmp_path / "pairs.csv"), tmp_path / "scores.csv"
    assert main(["-q", "sts", "score", str(pairs), "--model", "minilm", "--no-cache", "--calibrate-on", str(pairs),
                 "--calibration", "isotonic", "--out", str(out)]) == 0
    (figure,) = saved
    scatter = figure.axes[0]
    written = [float(r["target"]) for r in csv.DictReader(out.open(encoding="utf-8"))]
    assert scatter.collections[0].get_offsets()[:, 1].tolist() == pytest.approx(written)
    assert scatter.collections[0].get_offsets()[:, 0].tolist() == [4.8, 4.2, 0.6, 0.0, 4.5, 1.4]
    pearson = json.loads(Path(str(out) + ".meta.json").read_text(encoding="utf-8"))["metrics"]["pearson"]
    assert f"Pearson {pearson:.3f}" in scatter.get_title()
    assert "isotonic map fitted on pairs.csv" in figure._suptitle.get_text()
    assert (tmp_path / "scores.csv.scatter.png").is_file()


def test_re_evaluate_writes_confusion_matrix_and_per_class_tables(tmp_path, capsys):
    from fewlabel.indexing.relation.data import read_relation_labels, read_relations

    labels = read_relation_labels(str(KLUE / "relation_list.json"))
    gold = read_relations(str(KLUE / "train.json"), labels=labels)
    submission = tmp_path / "submission.csv"
    with submission.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "pred_label", "probs"])
        for i, row in enumerate(gold):
            chosen = row.label if i % 3 else "no_relation"  # every third one wrong (or no_relation)
            writer.writerow([row.id, chosen, json.dumps([1.0 if name == chosen else 0.0 for name in labels])])
    prefix = tmp_path / "analysis" / "re"
    assert main(["-q", "re", "evaluate", str(KLUE / "train.json"), str(submission), "--labels",
                 str(KLUE / "relation_list.json"), "--out", str(prefix)]) == 0
    assert "error analysis ->" in capsys.readouterr().out
    table = list(csv.DictReader((tmp_path / "analysis" / "re.per_class.csv").open(encoding="utf-8")))
    assert [r["label"] for r in table][:len(labels)] == labels and table[-1]["label"] == "(macro average)"
    assert sum(int(r["support"]) for r in table[:len(labels)]) == len(gold)
    assert (tmp_path / "analysis" / "re.per_class.md").read_text(encoding="utf-8").count("\n") == len(labels) + 4
    assert PNG_MARK.encode() in (tmp_path / "analysis" / "re.confusion.png").read_bytes()[:4096]


@pytest.fixture(scope="module")
def nsmc_index(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("predict-analysis")
    out, train = d / "index", d / "train.tsv"
    train.write_text("\n".join((DEMO / "nsmc_train.tsv").read_text(encoding="utf-8").splitlines()[:61]) + "\n",
                     encoding="utf-8")
    assert main(["-q", "index", "build", str(train), "--model", "minilm", "--no-cache", "--out", str(out)]) == 0
    return out


def test_predict_on_labelled_input_scores_it(nsmc_index, tmp_path, capsys):
    test = tmp_path / "test.tsv"
    test.write_text("\n".join((DEMO / "nsmc_test.tsv").read_text(encoding="utf-8").splitlines()[:21]) + "\n",
                    encoding="utf-8")
    out = tmp_path / "pred.csv"
    assert main(["-q", "predict", str(nsmc_index), str(test), "--label-col", "label", "--no-cache", "--k", "5",
                 "--m", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "per-label F1: negative" in printed and "positive" in printed and "20 labelled texts" in printed
    table = list(csv.DictReader((tmp_path / "pred.csv.per_label.csv").open(encoding="utf-8")))
    assert [r["label"] for r in table] == ["negative", "positive", "(micro average)", "(macro average)"]
    assert sum(int(r["support"]) for r in table[:2]) == 20
    assert (tmp_path / "pred.csv.confusion.png").is_file()
    assert main(["-q", "predict", str(nsmc_index), str(test), "--no-cache", "--out", str(tmp_path / "p2.csv")]) == 0
    assert "per-label F1" not in capsys.readouterr().out and not (tmp_path / "p2.csv.per_label.csv").exists()


def test_predict_on_labelled_multi_label_input_writes_the_table_only(tmp_path, capsys):
    train, test = tmp_path / "train.tsv", tmp_path / "test.tsv"
    lines = (DEMO / "goemotions_ekman_train.tsv").read_text(encoding="utf-8").splitlines()
    train.write_text("\n".join(lines[:81]) + "\n", encoding="utf-8")
    test.write_text("\n".join([lines[0], *lines[81:101]]) + "\n", encoding="utf-8")
    index = tmp_path / "index"
    common = ["--label-col", "labels", "--label-sep", ","]
    assert main(["-q", "index", "build", str(train), *common, "--model", "minilm", "--no-cache", "--multi-label",
                 "--out", str(index)]) == 0
    assert main(["-q", "predict", str(index), str(test), *common, "--no-cache", "--k", "5", "--m", "2", "--out",
                 str(tmp_path / "pred.jsonl")]) == 0
    assert "per-label F1:" in capsys.readouterr().out
    assert (tmp_path / "pred.jsonl.per_label.md").is_file() and not (tmp_path / "pred.jsonl.confusion.png").exists()


# ---- Hangul in the PNGs -----------------------------------------------------------------------------------------
def _glyph_pixels(text: str, family: str | None = None) -> np.ndarray:
    """The pixels of ``text`` drawn alone on a small Agg canvas (with ``family``, or the font settings fewlabel's
    plots use)."""
    from fewlabel.indexing.plots import pyplot

    plt = pyplot()
    fig = plt.figure(figsize=(1, 1), dpi=60)
    fig.text(0.1, 0.3, text, fontsize=30, **({"family": family} if family else {}))
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return pixels


def test_korean_labels_render_as_glyphs_not_boxes(tmp_path, recwarn):
    """Two different syllables draw different pixels with fewlabel's font settings (NanumGothic from
    koreanize-matplotlib, offline); with DejaVu Sans alone both are the same empty box, so the check can fail."""
    from fewlabel.indexing.plots import HANGUL_FONT, hangul_font_path

    assert hangul_font_path() is not None and hangul_font_path().is_file()
    assert not np.array_equal(_glyph_pixels("가"), _glyph_pixels("나"))
    assert np.array_equal(_glyph_pixels("가", "DejaVu Sans"), _glyph_pixels("나", "DejaVu Sans"))  # tofu, both
    recwarn.clear()
    labels = ["긍정", "부정"]
    figure = confusion_figure(["긍정", "부정", "부정"], ["긍정", "긍정", "부정"], labels, title="영화 리뷰")
    save_figure(figure, tmp_path / "ko.confusion.png")
    missing = [str(w.message) for w in recwarn if "missing from font" in str(w.message)]
    assert not missing, missing
    from matplotlib import font_manager

    assert HANGUL_FONT in {f.name for f in font_manager.fontManager.ttflist}
