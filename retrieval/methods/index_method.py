"""Choose, fit and store an index's method: what `fewlabel index build --method …` and `index add` run, and
the library's one call for the same (`fit_method`, or `build_index` to encode and choose in one go).

    from fewlabel.retrieval import build_index
    index = build_index(train_rows, encoder, valid_rows, method="auto")   # LabelIndex, method stored
    index.save("my-index")                                             # Predictor.load("my-index") uses it

The index keeps its FAISS vectors whatever the method: ``--explain`` lists the nearest labelled rows as
evidence, ``top_similarity`` still drives the zero-shot fallback, and kNN's k and m are tuned too (they are
a candidate's settings, and `--k/--m` fall back to the vote)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from fewlabel.indexing.encoders.cache import EmbeddingCache, SupportsEncode, encode_with_cache
from fewlabel.indexing.errors import DataError, FewlabelError
from fewlabel.indexing.readers import Row, label_matrix
from fewlabel.retrieval.knn.labelling import DEFAULT_MAX_K
from fewlabel.retrieval.methods.auto import select_method
from fewlabel.retrieval.methods.common import Views
from fewlabel.retrieval.methods.names import CANDIDATES, METHOD_CHOICES, TRAINED
from fewlabel.retrieval.methods.store import method_files, method_record

__all__ = ["METHOD_CHOICES", "build_index", "fit_method", "index_vectors"]



def index_vectors(index, encoder: SupportsEncode, cache: EmbeddingCache | None = None, batch_size: int = 32,
                  show_progress: bool = False) -> np.ndarray:
    """The index's vectors in row order: read back from an exact FAISS index, else encoded again (from the
    embedding cache when there is one)."""
    if index.store.kind == "faiss" and index.factory == "Flat":
        return np.asarray(index.store.vectors(), dtype=np.float32)
    return encode_with_cache(encoder, [r.text for r in index.rows], cache, batch_size=batch_size,
                             show_progress_bar=show_progress)


def fit_method(index, encoder: SupportsEncode, valid_rows: Sequence[Row] | None = None, *, method: str = "auto",
               metric: str = "micro", folds: int = 5, seed: int = 0, max_k: int = DEFAULT_MAX_K,
               budget_minutes: float = 0.0, cache: EmbeddingCache | None = None, batch_size: int = 32,
               show_progress: bool = False, source: str = "validation data", label_field: str = "label",
               log: Callable[[str], None] | None = None) -> dict:
    """Choose (``method="auto"``) or fit the named method on the index's rows, tuned on ``valid_rows`` (or by
    cross-validation on the index's rows when there are none), and store it in the index: the method's files
    and ``index.method`` (leaderboard included), and kNN's tuned k and m in ``index.tuning``. Returns the
    method record."""
    if method not in METHOD_CHOICES:
        raise FewlabelError(f"unknown method '{method}'; choose from {', '.join(METHOD_CHOICES)}")
    if method in TRAINED:
        raise FewlabelError(f"--method {method} is not available for an index yet (SetFit and fine-tuning are "
                            "benchmarked by `fewlabel bench slices`); choose auto, " + ", ".join(CANDIDATES))
    started = time.perf_counter()
    names = list(CANDIDATES) if method == "auto" else [method]
    valid_rows = list(valid_rows) if valid_rows is not None else None
    if valid_rows is not None and not valid_rows:
        raise DataError("no validation rows", path=source)
    vectors = index_vectors(index, encoder, cache, batch_size, show_progress)
    train = Views(vectors, [r.text for r in index.rows])
    y = index.label_matrix()
    valid = y_valid = None
    if valid_rows is not None:
        y_valid = label_matrix(valid_rows, index.label_names, source, label_field)
        valid = Views(index.encode_queries(encoder, [r.text for r in valid_rows], cache=cache, batch_size=batch_size,
                                           show_progress=show_progress), [r.text for r in valid_rows])
    if "knn" not in names:
        names.append("knn")  # scored too: its k and m serve --k/--m-free evidence and the fallback's threshold
    choice = select_method(train, y, multi_label=index.multi_label, valid=valid, y_valid=y_valid, methods=names,
                           metric=metric, folds=folds, seed=seed, max_k=max_k, log=log)
    chosen = choice.method if method == "auto" else method
    candidate, settings = choice.candidates[chosen]
    knn, _ = choice.candidates["knn"]
    result = getattr(knn, "last_result_", None)  # its last select ran on all tuning rows
    if result is not None:
        where = str(source) if valid is not None else choice.protocol["note"]
        index.tuning = {**result.to_dict(), "max_k": knn.max_k_,
                        "n_valid": len(valid_rows) if valid_rows is not None else len(index), "source": where}
    leaderboard = choice.leaderboard if method == "auto" else [e for e in choice.leaderboard if e["method"] == chosen]
    record = method_record(chosen, chosen_by="auto" if method == "auto" else "user", settings=settings,
                           labels=index.label_names, data_fingerprint=index.fingerprint, leaderboard=leaderboard,
                           protocol=choice.protocol, seconds=round(time.perf_counter() - started, 2),
                           budget_minutes=budget_minutes)
    index.method = record
    index.method_files = method_files(chosen, candidate, settings, index.label_names)
    return record


def build_index(rows: Sequence[Row], encoder: SupportsEncode, valid_rows: Sequence[Row] | None = None, *,
                method: str = "auto", metric: str = "micro", folds: int = 5, max_k: int = DEFAULT_MAX_K,
                cache: EmbeddingCache | None = None, batch_size: int = 32, show_progress: bool = False, **build):
    """`LabelIndex.build` plus :func:`fit_method`: the library's ``index build --method``."""
    from fewlabel.indexing.store.label_index import LabelIndex

    index = LabelIndex.build(rows, encoder, cache=cache, batch_size=batch_size, show_progress=show_progress, **build)
    fit_method(index, encoder, valid_rows, method=method, metric=metric, folds=folds, max_k=max_k, cache=cache,
               batch_size=batch_size, show_progress=show_progress)
    return index
