"""Milvus (Lite) against FAISS as the label index's vector store: do the labels agree on a real test set?
Writes `milvus_store.md` and `milvus_store.json`.

    python -m fewlabel.benchmarks.milvus_store --data ../shared/data --out benchmarks/results

GoEmotions-ekman (English, multi-label): one index of the train rows per store, encoded once (the embedding cache
serves the second build), k and m tuned on dev with the FAISS Flat index and used for every store, so that only the
search differs; each store labels the whole test set. Agreement is the share of test rows whose label set is the
same as FAISS Flat's."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from fewlabel.benchmarks.knn_quality import goemotions_splits
from fewlabel.benchmarks.report import markdown_table, write_report
from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path
from fewlabel.indexing.encoders.encoder import Encoder
from fewlabel.indexing.store.label_index import LabelIndex
from fewlabel.retrieval.knn.saved_index import evaluate, tune_index
from fewlabel.retrieval.router import predict_rows

STORES = [("faiss", "Flat", None), ("milvus", "FLAT", None), ("faiss", "HNSW32", "efSearch=64"),
          ("milvus", "HNSW:M=32,efConstruction=200", "ef=64")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--max-train", type=int, default=None, help="first N train rows (default: all)")
    args = parser.parse_args()

    splits = goemotions_splits(args.data)
    train = splits["train"][: args.max_train] if args.max_train else splits["train"]
    encoder = Encoder(args.model)
    cache = EmbeddingCache(default_cache_path())
    results: list[dict] = []
    reference, tuning = None, None
    with tempfile.TemporaryDirectory() as work:
        for kind, factory, params in STORES:
            options = {"uri": str(Path(work) / "bench.db")} if kind == "milvus" else None
            started = time.perf_counter()
            index = LabelIndex.build(train, encoder, factory=factory, search_params=params, cache=cache,
                                     batch_size=64, store=kind, store_options=options)
            build_s = time.perf_counter() - started
            if tuning is None:
                tune_index(index, encoder, splits["dev"], cache=cache, batch_size=64)
                tuning = index.tuning
            index.tuning = tuning
            started = time.perf_counter()
            predictions = predict_rows(index, encoder, splits["test"], cache=cache, batch_size=64)
            label_s = time.perf_counter() - started
            labels = [p.labels for p in predictions]
            sims = np.array([p.top_similarity for p in predictions])
            if reference is None:
                reference = (labels, sims)
            agree = float(np.mean([a == b for a, b in zip(labels, reference[0], strict=True)]))
            scores = evaluate(predictions, splits["test"], index.label_names)
            results.append({"store": kind, "index": factory, "search_params": params, "build_s": round(build_s, 1),
                            "label_s": round(label_s, 1), "agreement_with_faiss_flat": agree,
                            "max_top_similarity_diff": float(np.nanmax(np.abs(sims - reference[1]))),
                            "micro_f1": scores["micro_f1"], "macro_f1": scores["macro_f1"]})
            print(results[-1], flush=True)
            index.discard()
    assert tuning is not None  # set by the first store's run
    rows = [[r["store"], f"`{r['index']}`" + (f" `{r['search_params']}`" if r["search_params"] else ""),
             f"{r['agreement_with_faiss_flat']:.2%}", f"{r['max_top_similarity_diff']:.1e}", f"{r['micro_f1']:.4f}",
             f"{r['macro_f1']:.4f}", r["build_s"], r["label_s"]] for r in results]
    body = (f"k={tuning['k']}, m={tuning['m']:g} (tuned on dev with FAISS Flat, used for every store). Test: "
            f"{len(splits['test'])} rows; index: {len(train)} train rows, {args.model}.\n\n"
            + markdown_table(["store", "index type", "labels equal to FAISS Flat", "max |top similarity diff|",
                              "micro-F1", "macro-F1", "build s (cached vectors after the first)", "label test s"],
                             rows)
            + "\n\nTarget: labels agree with the FAISS path on at least 98% of a real test set, ideally 100% with "
              "FLAT. Build time includes encoding for the first row only (the embedding cache serves the rest); "
              "label time includes encoding the test texts (cached after the first store) and the search.\n")
    write_report(args.out, "milvus_store", "Milvus Lite against FAISS as the vector store", body,
                 {"results": results, "tuning": {"k": tuning["k"], "m": tuning["m"]}, "n_train": len(train),
                  "n_test": len(splits["test"]), "model": args.model},
                 data_note=f"GoEmotions-ekman from {args.data}/goemotions/ekman (train {len(train)}, dev "
                           f"{len(splits['dev'])}, test {len(splits['test'])})")


if __name__ == "__main__":
    main()
