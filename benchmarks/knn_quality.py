"""kNN labelling quality against Naive Bayes on GoEmotions-ekman (English, multi-label) and NSMC
(Korean, sentiment), for each registry encoder. Writes `knn_quality.md` and `knn_quality.json`.

    python -m fewlabel.benchmarks.knn_quality --data ../shared/data --out benchmarks/results

kNN: index on train, k and m tuned on dev (micro-F1), scored once on test. Naive Bayes: CountVectorizer
+ MultinomialNB (one-vs-rest for multi-label), default settings, trained on the same train rows."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import accuracy_score, f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.naive_bayes import MultinomialNB
from sklearn.preprocessing import MultiLabelBinarizer

from fewlabel.benchmarks.report import markdown_table, write_report
from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path
from fewlabel.indexing.encoders.encoder import Encoder
from fewlabel.indexing.readers import Row
from fewlabel.indexing.store.label_index import LabelIndex
from fewlabel.retrieval.knn.saved_index import evaluate, tune_index
from fewlabel.retrieval.router import predict_rows

NSMC_TRAIN_ROWS, NSMC_DEV_ROWS = 10_000, 2_000


def goemotions_splits(data: Path) -> dict[str, list[Row]]:
    folder = data / "goemotions" / "ekman"
    names = (folder / "labels.txt").read_text().split()
    out = {}
    for split, file in {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}.items():
        df = pd.read_csv(folder / file, sep="\t", header=None, names=["text", "ids", "id"], quoting=3, dtype=str)
        out[split] = [Row(text=t, labels=tuple(names[int(i)] for i in ids.split(",")), id=str(cid), line=n + 1)
                      for n, (t, ids, cid) in enumerate(zip(df.text, df.ids, df.id, strict=True))]
    return out


def nsmc_splits(data: Path, seed: int = 0) -> dict[str, list[Row]]:
    folder = data / "nsmc"
    train = pd.read_csv(folder / "rebuilt_ratings_train.txt", sep="\t", quoting=3, dtype=str)
    test = pd.read_csv(folder / "rebuilt_ratings_test.txt", sep="\t", quoting=3, dtype=str)
    pool = train.sample(n=NSMC_TRAIN_ROWS + NSMC_DEV_ROWS, random_state=seed)
    name = {"0": "negative", "1": "positive"}

    def rows(df: pd.DataFrame) -> list[Row]:
        return [Row(text=t, labels=(name[lab],), id=str(i), line=n + 2)
                for n, (i, t, lab) in enumerate(zip(df.id, df.document, df.label, strict=True))]

    return {"train": rows(pool.iloc[:NSMC_TRAIN_ROWS]), "dev": rows(pool.iloc[NSMC_TRAIN_ROWS:]), "test": rows(test)}


def naive_bayes(splits: dict[str, list[Row]], *, analyzer: str = "word", ngram: tuple[int, int] = (1, 1)) -> dict:
    """The book's baseline: bag of words (or character n-grams) + multinomial NB."""
    started = time.perf_counter()
    mlb = MultiLabelBinarizer().fit([r.labels for r in splits["train"]])
    y_train = mlb.transform([r.labels for r in splits["train"]])
    y_test = mlb.transform([r.labels for r in splits["test"]])
    vectorizer = CountVectorizer(analyzer=analyzer, ngram_range=ngram)
    x_train = vectorizer.fit_transform([r.text for r in splits["train"]])
    x_test = vectorizer.transform([r.text for r in splits["test"]])
    multi = any(len(r.labels) > 1 for r in splits["train"])
    if multi:
        y_pred = OneVsRestClassifier(MultinomialNB()).fit(x_train, y_train).predict(x_test)
    else:
        clf = MultinomialNB().fit(x_train, y_train.argmax(1))
        y_pred = np.eye(len(mlb.classes_), dtype=int)[clf.predict(x_test)]
    return {"micro_f1": float(f1_score(y_test, y_pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(y_test, y_pred, average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(y_test, y_pred)), "n": len(y_test),
            "seconds": round(time.perf_counter() - started, 1)}


def knn(splits: dict[str, list[Row]], model: str, cache: EmbeddingCache, batch_size: int) -> dict:
    encoder = Encoder(model)
    started = time.perf_counter()
    index = LabelIndex.build(splits["train"], encoder, cache=cache, batch_size=batch_size, show_progress=True)
    built = time.perf_counter()
    tuning = tune_index(index, encoder, splits["dev"], cache=cache, batch_size=batch_size, show_progress=True)
    predictions = predict_rows(index, encoder, splits["test"], cache=cache, batch_size=batch_size,
                               show_progress=True)
    scores = evaluate(predictions, splits["test"], index.label_names)
    return {**scores, "k": tuning.k, "m": tuning.m, "dev_micro_f1": tuning.score,
            "build_seconds": round(built - started, 1), "seconds": round(time.perf_counter() - started, 1)}


def run(dataset: str, splits: dict[str, list[Row]], models: list[str], cache: EmbeddingCache,
        batch_size: int) -> list[dict]:
    sizes = {k: len(v) for k, v in splits.items()}
    results = []
    nb_variants: dict[str, dict[str, Any]] = {"Naive Bayes (words)": {},
                                              "Naive Bayes (char 1-3-grams)": {"analyzer": "char_wb", "ngram": (1, 3)}}
    for label, kwargs in nb_variants.items():
        results.append({"dataset": dataset, "method": label, **sizes, **naive_bayes(splits, **kwargs)})
        print(results[-1], flush=True)
    for model in models:
        results.append({"dataset": dataset, "method": f"kNN {model}", **sizes,
                        **knn(splits, model, cache, batch_size)})
        print(results[-1], flush=True)
    return results


def table(results: list[dict]) -> str:
    headers = ["data", "method", "train / dev / test", "k, m (tuned on dev)", "micro-F1", "macro-F1", "accuracy*",
               "time"]
    rows = [[r["dataset"], r["method"], f"{r['train']:,} / {r['dev']:,} / {r['test']:,}",
             f"{r['k']}, {r['m']:g}" if "k" in r else "-", f"{r['micro_f1']:.3f}", f"{r['macro_f1']:.3f}",
             f"{r['accuracy']:.3f}", f"{r['seconds']:.0f} s"] for r in results]
    return markdown_table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--datasets", default="goemotions,nsmc")
    parser.add_argument("--models", default="e5-small,minilm")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    data, models = Path(args.data), args.models.split(",")
    cache = EmbeddingCache(default_cache_path())
    results: list[dict] = []
    loaders = {"goemotions": ("GoEmotions-ekman", goemotions_splits), "nsmc": ("NSMC", nsmc_splits)}
    for key in args.datasets.split(","):
        name, loader = loaders[key]
        results.extend(run(name, loader(data), models, cache, args.batch_size))
    body = (
        "kNN: index on train (Flat, cosine), k in 1..20 and m in 1..k tuned on dev by micro-F1, test scored once.\n"
        "Naive Bayes: CountVectorizer + MultinomialNB (one-vs-rest for multi-label), defaults, same train rows; "
        "the character n-gram variant is there because whitespace words split Korean poorly (particles).\n"
        f"NSMC: {NSMC_TRAIN_ROWS:,} training rows and {NSMC_DEV_ROWS:,} disjoint dev rows sampled (seed 0) from "
        "the rebuilt train file; the full 50,000-row test file. GoEmotions-ekman: the published splits.\n"
        "*accuracy is exact match (all labels right) for multi-label data.\n\n" + table(results))
    write_report(Path(args.out), "knn_quality", "kNN labelling vs Naive Bayes", body,
                 {"results": results, "models": models}, data_note=f"{data} (goemotions/ekman, nsmc)")


if __name__ == "__main__":
    main()
