"""Choose, fit and store an index's method: what `fewlabel index build --method …` and `index add` run, and
the library's one call for the same (`fit_method`, or `build_index` to encode and choose in one go).

    from fewlabel.retrieval import build_index
    index = build_index(train_rows, encoder, valid_rows, method="auto")   # LabelIndex, method stored
    index.save("my-index")                                             # Predictor.load("my-index") uses it

The index keeps its FAISS vectors whatever the method: ``--explain`` lists the nearest labelled rows as
evidence, ``top_similarity`` still drives the zero-shot fallback, and kNN's k and m are tuned too (they are
a candidate's settings, and `--k/--m` fall back to the vote)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from fewlabel.indexing.encoders.cache import EmbeddingCache, encode_with_cache
from fewlabel.indexing.errors import DataError, InvalidArgumentError
from fewlabel.indexing.readers import Row, label_matrix
from fewlabel.retrieval.knn.saved_index import DEFAULT_MAX_K
from fewlabel.retrieval.methods.auto import select_method
from fewlabel.retrieval.methods.common import Views
from fewlabel.retrieval.methods.registry import MIN_CV_ROWS, candidate_names, method_choices, trained_names
from fewlabel.retrieval.methods.store import method_files, method_record

if TYPE_CHECKING:
    from fewlabel.indexing.store.label_index import IndexEncoder

__all__ = ["TRAINING_SHARE", "build_index", "fit_method", "index_vectors", "pseudo_label", "trained_plan"]



def index_vectors(index, encoder: IndexEncoder | None, cache: EmbeddingCache | None = None, batch_size: int = 32,
                  show_progress: bool = False) -> np.ndarray:
    """The index's vectors in row order: read back from an exact FAISS index, else encoded again (from the
    embedding cache when there is one). ``encoder`` may be None only for an exact FAISS index."""
    if index.store.kind == "faiss" and index.factory == "Flat":
        return np.asarray(index.store.vectors(), dtype=np.float32)
    assert encoder is not None, "this index's vectors are encoded again: it needs its encoder"
    return encode_with_cache(encoder, [r.text for r in index.rows], cache, batch_size=batch_size,
                             show_progress_bar=show_progress)


TRAINING_SHARE = 0.75  # of a trained candidate's share of the budget: the rest scores validation rows, saves
# auto without --budget: SetFit is a candidate up to SETFIT_ROWS rows (benchmarks/results/setfit_times.md)
SETFIT_ROWS = 64
SETFIT_MINUTES = 1.5  # ... trained for at most this long in all (its cross-validation folds and its final fit)
BUDGET_ENV = "FEWLABEL_BUDGET"  # the default of --budget / budget_minutes=None, in minutes ("0": fast candidates only)


def default_budget() -> float | None:
    """``$FEWLABEL_BUDGET`` as minutes, or None (the built-in default: SetFit alone, at small N)."""
    text = os.environ.get(BUDGET_ENV, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise InvalidArgumentError(f"${BUDGET_ENV} must be a number of minutes >= 0, got {text!r}")
    return value


def default_trained_plan(trainers: dict | None, n_rows: int, labels: list[str], say: Callable[[str], None]) -> dict:
    """auto's trained candidates when no budget is given: SetFit, for at most :data:`SETFIT_MINUTES` in all,
    when there are at most :data:`SETFIT_ROWS` rows (and enough to cross-validate). Why SetFit alone and these
    numbers: at 8-64 rows SetFit is the trained head that can beat the fast candidates (the SetFit paper; the
    slices reports), one fit of the paper's recipe takes seconds there on a 2-core CPU, and cross-validating it
    (one fit per fold, then one on all rows) stays within the bound; at 128 rows a fit alone takes longer than
    the whole bound allows (``benchmarks/results/setfit_times.md``)."""
    if not trainers or "setfit" not in trainers or not MIN_CV_ROWS <= n_rows <= SETFIT_ROWS:
        return {}
    say(f"SetFit is a candidate ({n_rows} rows <= {SETFIT_ROWS}), trained for at most {SETFIT_MINUTES:g} minutes in "
        "all; --budget 0 leaves it out")
    return {"setfit": (trainers["setfit"], SETFIT_MINUTES * 60.0, list(labels))}


def trained_plan(method: str, trainers: dict | None, budget_minutes: float | None, labels: list[str],
                 say: Callable[[str], None], n_rows: int = 0) -> dict:
    """setfit / finetune -> (trainer, seconds of training, labels) for what this call may train.
    ``budget_minutes`` None is the default (:func:`default_trained_plan` for auto, SetFit at small N). With
    validation rows auto scores them there; without, it cross-validates them, each fold's fit taking its share
    of the seconds (:func:`fewlabel.retrieval.methods.auto.select_method`)."""
    if budget_minutes is None:
        budget_minutes = default_budget()
    if method in trained_names():
        if not trainers or method not in trainers:
            raise InvalidArgumentError(f"--method {method} trains a model: pass its trainer (the CLI does; library: "
                                "fewlabel.finetune.classify.index_heads.index_trainers)")
        if budget_minutes is None or budget_minutes <= 0:
            raise InvalidArgumentError(f"--method {method} trains a model: give it time with --budget MINUTES")
        names = [method]
    elif method != "auto":
        return {}
    elif budget_minutes is None:
        return default_trained_plan(trainers, n_rows, labels, say)
    elif budget_minutes > 0 and trainers:
        names = [name for name in trained_names() if name in trainers]
    else:
        return {}
    seconds = budget_minutes * 60.0 * TRAINING_SHARE / max(1, len(names))
    return {name: (trainers[name], seconds, list(labels)) for name in names}


def fit_method(index, encoder: IndexEncoder, valid_rows: Sequence[Row] | None = None, *, method: str = "auto",
               metric: str = "micro", folds: int = 5, seed: int = 0, max_k: int = DEFAULT_MAX_K,
               budget_minutes: float | None = None, trainers: dict | None = None,
               cache: EmbeddingCache | None = None, batch_size: int = 32, show_progress: bool = False,
               source: str = "validation data",
               label_field: str = "label", log: Callable[[str], None] | None = None) -> dict:
    """Choose (``method="auto"``) or fit the named method on the index's rows, tuned on ``valid_rows`` (or by
    cross-validation on the index's rows when there are none), and store it in the index: the method's files
    and ``index.method`` (leaderboard included), and kNN's tuned k and m in ``index.tuning``. Returns the
    method record.

    ``trainers`` (setfit / finetune, from :func:`fewlabel.finetune.classify.index_heads.index_trainers`) with
    ``budget_minutes`` > 0 add the trained candidates: auto scores them beside the fast ones, on ``valid_rows``
    or by cross-validation, each trained for at most its share of the budget (:data:`TRAINING_SHARE` of budget /
    candidates, split between its folds). ``budget_minutes`` None (the default) is ``$FEWLABEL_BUDGET`` when set,
    else SetFit alone at small N (:func:`default_trained_plan`); 0 keeps to the fast candidates."""
    if method not in method_choices():
        raise InvalidArgumentError(f"unknown method '{method}'; choose from {', '.join(method_choices())}")
    say = log or (lambda message: None)
    started = time.perf_counter()
    valid_rows = list(valid_rows) if valid_rows is not None else None
    if valid_rows is not None and not valid_rows:
        raise DataError("no validation rows", path=source)
    trained = trained_plan(method, trainers, budget_minutes, index.label_names, say, n_rows=len(index))
    descriptions = index_descriptions(index, encoder, cache)
    names = [*candidate_names(descriptions is not None), *(n for n in trained_names() if n in trained)] \
        if method == "auto" else [method]
    vectors = index_vectors(index, encoder, cache, batch_size, show_progress)
    train = Views(vectors, [r.text for r in index.rows])
    y = index.label_matrix()
    valid = y_valid = None
    if valid_rows is not None:
        y_valid = label_matrix(valid_rows, index.label_names, source, label_field)
        valid = Views(index.encode_queries(encoder, [r.text for r in valid_rows], cache=cache, batch_size=batch_size,
                                           show_progress=show_progress), [r.text for r in valid_rows])
    unscored = method in trained_names() and valid is None  # a named trained head without --valid: trained, not scored
    too_few = valid is None and len(train) < MIN_CV_ROWS  # only the label descriptions can label
    scored = ["knn"] if unscored else names + (["knn"] if "knn" not in names and not too_few else [])
    # knn is scored whatever the method: its k and m serve `--k/--m`-free evidence and the fallback's threshold
    choice = select_method(train, y, multi_label=index.multi_label, valid=valid, y_valid=y_valid, methods=scored,
                           metric=metric, folds=folds, seed=seed, max_k=max_k, log=log, trained=trained,
                           descriptions=descriptions)
    chosen = choice.method if method == "auto" else method
    if unscored:
        from fewlabel.retrieval.methods.trained import TrainedHead

        say(f"no --valid: {method} is trained on every row and not scored (its decision threshold stays 0.5)")
        candidate, settings = TrainedHead(method, *trained[method]).fit_views(train, y, index.multi_label), {}
    else:
        candidate, settings = choice.candidates[chosen]
    knn = choice.candidates.get("knn", (None, None))[0]
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


def index_descriptions(index, encoder: IndexEncoder, cache: EmbeddingCache | None = None):
    """The index's label descriptions embedded by ``encoder`` (None when it has none)."""
    if not index.descriptions:
        return None
    from fewlabel.retrieval.methods.descriptions import embed_descriptions

    return embed_descriptions(index.described_labels(), index.descriptions.get("template"), encoder, cache)


def pseudo_label(index, encoder: IndexEncoder, pool: Sequence[str], *, cache: EmbeddingCache | None = None,
                 batch_size: int = 32, show_progress: bool = False, seed: int = 0, source: str = "the pool",
                 log: Callable[[str], None] | None = None) -> int:
    """Self-training (:mod:`fewlabel.retrieval.methods.self_training`): label the ``pool`` texts the index
    is most sure of and add them as pseudo-labelled rows (marked in ``index.pseudo``). Texts already in the
    index, and repeats, are skipped. Returns the number added."""
    from fewlabel.indexing.readers import Row
    from fewlabel.retrieval.methods.self_training import self_train

    known = {r.text for r in index.rows}
    texts = [t for t in dict.fromkeys(t.strip() for t in pool) if t and t not in known]
    if not texts:
        return 0
    pool_views = Views(encode_with_cache(encoder, texts, cache, batch_size=batch_size,
                                         show_progress_bar=show_progress), texts)
    train = Views(index_vectors(index, encoder, cache, batch_size), [r.text for r in index.rows])
    _, _, record = self_train(train, index.label_matrix(), pool_views, multi_label=index.multi_label,
                              descriptions=index_descriptions(index, encoder, cache), seed=seed, log=log)
    if not len(record.rows):
        return 0
    taken = {r.id for r in index.rows}
    ids = [f"pseudo-{n}" for n in range(len(index.rows) + len(record.rows) * 2) if f"pseudo-{n}" not in taken]
    rows = [Row(text=texts[int(i)], labels=tuple(index.label_names[j] for j in np.flatnonzero(labels)),
                id=ids[k], line=0) for k, (i, labels) in enumerate(zip(record.rows, record.labels, strict=True))]
    index.add(rows, encoder, cache=cache, batch_size=batch_size)
    index.mark_pseudo([r.id for r in rows], source=str(source), bar=record.bar, rounds=record.rounds)
    return len(rows)


def build_index(rows: Sequence[Row], encoder: IndexEncoder, valid_rows: Sequence[Row] | None = None, *,
                method: str = "auto", metric: str = "micro", folds: int = 5, max_k: int = DEFAULT_MAX_K,
                budget_minutes: float | None = None, trainers: dict | None = None,
                cache: EmbeddingCache | None = None, batch_size: int = 32, show_progress: bool = False, **build):
    """`LabelIndex.build` plus :func:`fit_method`: the library's ``index build --method``."""
    from fewlabel.indexing.store.label_index import LabelIndex

    index = LabelIndex.build(rows, encoder, cache=cache, batch_size=batch_size, show_progress=show_progress, **build)
    fit_method(index, encoder, valid_rows, method=method, metric=metric, folds=folds, max_k=max_k, cache=cache,
               budget_minutes=budget_minutes, trainers=trainers, batch_size=batch_size, show_progress=show_progress)
    return index
