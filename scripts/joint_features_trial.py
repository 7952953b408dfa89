"""A trial toward methods.md's NSMC target (0.850): one logistic regression on [character tf-idf; w * e5-small
embedding] instead of the ensemble's blend of two models, swept over n-gram range, w and C on NSMC (10,000
training rows, the methods benchmark's caps) and scored on its dev sample and test sample. Kept to show what
was tried; the result is in methods.md ("Tried for NSMC").

    python scripts/joint_features_trial.py"""

from __future__ import annotations

from fewlabel.benchmarks.methods import DATA, SETS


def main() -> int:
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from fewlabel.benchmarks.slices.data import load_splits
    from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path, encode_with_cache
    from fewlabel.indexing.encoders.encoder import Encoder
    from fewlabel.indexing.readers import label_matrix

    spec = SETS["nsmc"]
    data = load_splits(str(DATA / spec["train"]), dev=None, test=str(DATA / spec["test"]), text_col=spec["text_col"],
                       label_col=spec["label_col"], multi_label=False, max_train=spec["max_train"],
                       dev_sample=spec["dev_sample"], test_sample=spec["test_sample"])
    encoder, cache = Encoder(spec["model"], device="cpu"), EmbeddingCache(default_cache_path())
    parts = ("train", "dev", "test")
    texts = {k: [r.text for r in getattr(data, k)] for k in parts}
    vectors = {k: encode_with_cache(encoder, texts[k], cache, batch_size=64) for k in parts}
    gold = {k: label_matrix(getattr(data, k), data.labels, k).argmax(1) for k in parts}
    print("ngram  w  C  dev_acc  test_acc")
    for ngram in ((1, 3), (2, 4), (1, 5)):
        tfidf = TfidfVectorizer(analyzer="char_wb", ngram_range=ngram, sublinear_tf=True, min_df=2).fit(texts["train"])
        grams = {k: tfidf.transform(texts[k]) for k in parts}
        for w in (0.0, 1.0, 2.0):
            features = {k: sp.hstack([grams[k], sp.csr_matrix(vectors[k] * w)]).tocsr() if w else grams[k]
                        for k in parts}
            for c in (1, 3, 10):
                model = LogisticRegression(C=c, max_iter=2000).fit(features["train"], gold["train"])
                dev, test = ((model.predict(features[k]) == gold[k]).mean() for k in ("dev", "test"))
                print(f"{ngram} {w:g} {c} {dev:.4f} {test:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
