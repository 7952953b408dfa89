"""`fewlabel index build | info | add`: make, inspect and extend a label index folder."""

from __future__ import annotations

import argparse
import json
import time

from fewlabel.indexing.encoders.registry import DEFAULT_MODEL
from fewlabel.indexing.errors import DataError, InvalidArgumentError, SetupError
from fewlabel.retrieval.cli.options import (
    EPILOG,
    add_augment_options,
    add_data_options,
    add_faiss_device_option,
    add_model_options,
    augmenter_from_args,
    load_encoder,
    minutes,
    open_cache,
    positive_int,
    read_labelled,
    say,
)


def add_index_commands(commands: argparse._SubParsersAction) -> None:
    index = commands.add_parser("index", help="build, inspect or extend a label index",
                                description="Build, inspect or extend a label index folder.")
    index_cmds = index.add_subparsers(dest="index_command", metavar="SUBCOMMAND", required=True)

    build = index_cmds.add_parser("build", help="encode labelled rows into a new index", epilog=EPILOG,
                                  description="Encode labelled rows into a FAISS index folder and choose how it "
                                  "labels (--method, default auto: kNN vote, linear head, Naive Bayes or an "
                                  "ensemble, scored on --valid, or by cross-validation on the training rows "
                                  "without it).")
    build.add_argument("data", nargs="?", default=None,
                       help="labelled training file (may be left out with --label-names or --labels-file: an index "
                            "of label descriptions alone labels by zero-shot)")
    add_data_options(build, labels=True)
    described = build.add_mutually_exclusive_group()
    described.add_argument("--label-names", default=None,
                           help="what each label means in words, kept in the index: 'pos=긍정적인 리뷰|좋은 영화,"
                                "neg=부정적인 리뷰' (label=description|description; a label listed alone, or not "
                                "listed, is described by its own name). Adds the zeroshot and prior candidates to "
                                "auto (docs/few-labels.md)")
    described.add_argument("--labels-file", default=None,
                           help="the same from a file: one 'label=description|description' a line, or .json")
    build.add_argument("--unlabelled", default=None, metavar="POOL",
                       help="unlabelled texts (same text column) for self-training: the index labels the ones it is "
                            "surest of, for 3 rounds, and keeps them as pseudo-labelled rows (marked; replaced by "
                            "`index add` with real labels). Off by default: see benchmarks/results/fewshot.md")
    build.add_argument("--label-template", default=None,
                       help="template that puts a description in a sentence, with {} where it goes (default: "
                            "'This example is about {}.' / '이 글은 {}에 관한 내용이다.' by script)")
    build.add_argument("--valid", help="labelled validation file (same columns) to tune k and m on")
    build.add_argument("--model", default=DEFAULT_MODEL, help=f"encoder (default: {DEFAULT_MODEL})")
    build.add_argument("--factory", default="Flat",
                       help="FAISS index factory string: Flat (exact), HNSW32, IVF256,PQ32 … (default: Flat); with "
                            "--store milvus a Milvus index type: FLAT, HNSW, IVF_FLAT:nlist=128 …")
    build.add_argument("--search-params", default=None,
                       help="FAISS search parameters kept with the index, e.g. efSearch=128 for HNSW (higher "
                            "recall, slower; FAISS's default is 16) or nprobe=16 for IVF")
    build.add_argument("--store", choices=["faiss", "milvus"], default="faiss",
                       help="where the vectors live: index.faiss in the folder, or a Milvus collection "
                            "(default: faiss)")
    build.add_argument("--milvus-uri", default=None,
                       help="with --store milvus: a Milvus Lite file (PATH.db, no server) or a server URL")
    build.add_argument("--milvus-collection", default=None,
                       help="with --store milvus: the new collection's name (default: fewlabel_<random>)")
    add_tuning_options(build, "tried when tuning")
    add_method_options(build)
    mode = build.add_mutually_exclusive_group()
    mode.add_argument("--multi-label", dest="multi_label", action="store_true", default=None,
                      help="each text may carry several labels (default: decided from the data)")
    mode.add_argument("--single-label", dest="multi_label", action="store_false",
                      help="each text carries exactly one label")
    build.add_argument("--out", required=True, help="index folder to write (replaced atomically)")
    add_model_options(build)
    add_faiss_device_option(build)
    add_augment_options(build)
    build.set_defaults(handler=cmd_index_build)

    info = index_cmds.add_parser("info", help="describe an index folder",
                                 description="Print what an index holds: encoder, labels, size, tuned k and m.")
    info.add_argument("index_dir", help="index folder")
    info.add_argument("--json", action="store_true", help="print meta.json as it is")
    info.set_defaults(handler=cmd_index_info)

    add = index_cmds.add_parser("add", help="add labelled rows to an index",
                                description="Encode more labelled rows into an existing index (with the "
                                "index's own encoder); --valid re-tunes k and m afterwards.")
    add.add_argument("index_dir", help="index folder (updated atomically)")
    add.add_argument("data", help="labelled file with the rows to add")
    add_data_options(add, labels=True)
    add.add_argument("--valid", help="labelled validation file to re-tune on (k and m, and the method's settings)")
    add_tuning_options(add, "tried when re-tuning")
    add.add_argument("--retune", action="store_true",
                     help="choose the method again (auto over every candidate; on --valid, or by cross-validation)"
                          "; without it the index's method is refitted on all rows as it is")
    add.add_argument("--cv-folds", type=positive_int, default=5,
                     help="folds of the cross-validation when there is no --valid (default: 5)")
    add_model_options(add)
    add_faiss_device_option(add)
    add.set_defaults(handler=cmd_index_add)


def add_tuning_options(p: argparse.ArgumentParser, when: str) -> None:
    p.add_argument("--max-k", type=positive_int, default=20, help=f"largest k {when} (default: 20)")
    p.add_argument("--metric", choices=["micro", "macro"], default="micro",
                   help="F1 average that picks k and m (default: micro)")


def add_method_options(p: argparse.ArgumentParser) -> None:
    from fewlabel.retrieval.methods.index_method import SETFIT_MINUTES, SETFIT_ROWS
    from fewlabel.retrieval.methods.registry import method_choices, method_help

    p.add_argument("--method", choices=method_choices(), default="auto", help=method_help())
    p.add_argument("--budget", type=minutes, default=None,
                   help="minutes for the trained candidates (SetFit, fine-tuning), split between them and between "
                        "their cross-validation folds when there is no --valid; --method setfit|finetune trains "
                        "that one. Default ($FEWLABEL_BUDGET when set): SetFit alone, for at most "
                        f"{SETFIT_MINUTES:g} minutes in all, when there are at most {SETFIT_ROWS} rows "
                        "(benchmarks/results/setfit_times.md); 0: only the fast candidates")
    p.add_argument("--cv-folds", type=positive_int, default=5,
                   help="folds of the cross-validation that scores the candidates when there is no --valid "
                        "(default: 5)")


def _build_budget(args: argparse.Namespace) -> float | None:
    """`index build`'s budget in minutes: --budget, else $FEWLABEL_BUDGET, else None (SetFit at small N)."""
    from fewlabel.retrieval.methods.index_method import default_budget

    return args.budget if args.budget is not None else default_budget()


def _check_method(args: argparse.Namespace, n_rows: int, has_valid: bool) -> None:
    """Method choices that cannot work, refused before any model loads."""
    from fewlabel.retrieval.methods.registry import MIN_CV_ROWS, trained_names

    budget = _build_budget(args)
    if args.method in trained_names() and not (budget and budget > 0):
        raise InvalidArgumentError(f"--method {args.method} trains a model: give it time with --budget MINUTES")
    if args.method not in ("knn", "auto", "zeroshot", "prior") and not has_valid and n_rows < MIN_CV_ROWS:
        raise InvalidArgumentError(f"--method {args.method} without --valid scores by cross-validation, which needs at "
                            f"least {MIN_CV_ROWS} rows (there are {n_rows}): give --valid or --method knn")


def _fit_method(args: argparse.Namespace, index, encoder, valid, cache, method: str) -> None:
    """Choose (auto) or fit the index's method; kNN alone keeps the classic tuning (or none without --valid)."""
    from fewlabel.retrieval.methods.index_method import fit_method
    from fewlabel.retrieval.methods.registry import MIN_CV_ROWS
    from fewlabel.retrieval.methods.store import method_record

    if method == "auto" and valid is None and len(index) < MIN_CV_ROWS and not index.descriptions:
        say(args, f"only {len(index)} rows and no --valid: too few to choose by cross-validation, so the kNN vote")
        method = "knn"
    if method == "knn":
        if valid is not None:
            _tune(args, index, encoder, valid, cache)
        index.method = method_record("knn", chosen_by="user", settings={}, labels=index.label_names,
                                     data_fingerprint=index.fingerprint)
        index.method_files = {}
        return
    if valid is None and len(index) >= MIN_CV_ROWS:
        say(args, f"no --valid: scoring by stratified {args.cv_folds}-fold cross-validation on the training rows")
    if hasattr(args, "budget"):  # index build
        budget = _build_budget(args)
    else:  # index add refits with the budget the index was built with
        budget = (index.method or {}).get("budget_minutes")
    trainers = None
    if budget is None or budget > 0:
        from fewlabel.retrieval.cli.finetune import index_trainers_for

        trainers = index_trainers_for(index.encoder["model"], args.device, args.quiet)
    record = fit_method(index, encoder, valid, method=method, metric=args.metric, folds=args.cv_folds,
                        max_k=args.max_k, budget_minutes=budget, trainers=trainers, cache=cache,
                        batch_size=args.batch_size, show_progress=not args.quiet,
                        source=args.valid or "the training rows", label_field=args.label_col,
                        log=lambda message: say(args, "  " + message))
    best: dict = record["leaderboard"][0] if record["leaderboard"] else {}
    if best.get("score") is not None and method == "auto":
        how = f" ({record['protocol']['metric']}-F1 {best['score']:.4f} ± {best['spread']:.4f}, chosen by auto)"
    elif best and best.get("score") is None:  # chosen without a score (too few rows)
        how = f" ({record['protocol']['note']})"
    else:
        how = ""
    say(args, f"method: {record['name']}{how}")


def _check_valid_labels(args: argparse.Namespace, valid, known: set[str]) -> None:
    """A validation label the index will never hold is a mistake found before any model loads."""
    if valid is not None:
        from fewlabel.indexing.readers import label_matrix

        label_matrix(valid, sorted(known), args.valid, args.label_col)


def _tune(args: argparse.Namespace, index, encoder, valid, cache) -> None:
    from fewlabel.retrieval.knn.saved_index import tune_index

    tune_index(index, encoder, valid, max_k=args.max_k, metric=args.metric, source=args.valid, cache=cache,
               batch_size=args.batch_size, show_progress=not args.quiet, label_field=args.label_col)
    tuning = index.tuning
    say(args, f"tuned on {tuning['n_valid']} validation rows: k={tuning['k']}, m={tuning['m']:g} "
              f"({tuning['metric']}-F1 {tuning['score']:.4f})")


def cmd_index_build(args: argparse.Namespace) -> int:
    from fewlabel.indexing.encoders.encoder import Encoder
    from fewlabel.indexing.files import folder_lock
    from fewlabel.indexing.store.faiss_factory import check_factory
    from fewlabel.indexing.store.label_index import LabelIndex, claim_index_folder

    claim_index_folder(args.out)  # before anything is read or loaded: a user's folder is never replaced
    Encoder.check_name(args.model)
    store_options = _store_options(args)
    descriptions = _descriptions(args)
    if args.data is None and descriptions is None:
        raise InvalidArgumentError("give a labelled training file, or --label-names / --labels-file for an index of "
                                   "label descriptions alone")
    rows = read_labelled(args, args.data) if args.data is not None else []
    names = {label for row in rows for label in row.labels} | set((descriptions or {}).get("labels", {}))
    if len(names) == 1:  # every method alike: nothing to choose between, so no index (see docs/reliability.md)
        raise DataError(f"every row carries only one label ('{next(iter(names))}'): an index labels by telling "
                        "labels apart, so it needs rows of at least two labels (add examples of the others, or "
                        "use `fewlabel zeroshot` with label names)", path=args.data, field=args.label_col)
    valid = read_labelled(args, args.valid) if args.valid else None
    pool = _read_pool(args) if args.unlabelled else None
    _check_valid_labels(args, valid, names)
    _check_method(args, len(rows), valid is not None)
    if args.store == "faiss":  # a factory FAISS cannot parse, or cannot train on this many rows: before encoding
        check_factory(args.factory, len(rows), args.search_params)
    faiss_device(args)
    augmenter = augmenter_from_args(args)
    labelled_rows = len(rows)
    if augmenter is not None:  # copies of the training rows only: --valid stays as it is
        rows = augmenter.augment(rows)
        say(args, f"augmented {labelled_rows} rows to {len(rows)} ({augmenter.name})")
    encoder = load_encoder(args, args.model)
    cache = open_cache(args)
    started = time.perf_counter()
    index = LabelIndex.build(rows, encoder, factory=args.factory, multi_label=args.multi_label, cache=cache,
                             batch_size=args.batch_size, show_progress=not args.quiet,
                             search_params=args.search_params, store=args.store, store_options=store_options,
                             descriptions=descriptions)
    index.extra["build_seconds"] = round(time.perf_counter() - started, 2)
    index.use_faiss_device(args.faiss_device)  # tuning and auto search on the GPU when there is one
    index.extra["source"] = str(args.data) if args.data is not None else "label descriptions only"
    if augmenter is not None:
        index.extra["augment"] = {**augmenter.describe(), "labelled_rows": labelled_rows, "rows": len(rows)}
    try:
        if pool is not None:
            from fewlabel.retrieval.methods.index_method import pseudo_label

            added = pseudo_label(index, encoder, pool, cache=cache, batch_size=args.batch_size,
                                 show_progress=not args.quiet, source=args.unlabelled,
                                 log=lambda message: say(args, "  " + message))
            say(args, f"self-training: {added} pseudo-labelled rows from {args.unlabelled}")
        _fit_method(args, index, encoder, valid, cache, args.method)
        with folder_lock(args.out, waiting=lambda message: say(args, message)):
            claim_index_folder(args.out)  # again: something may have appeared there while encoding
            index.save(args.out)
    except BaseException:
        index.discard()  # a Milvus collection made for an index that was never saved
        raise
    kind = "multi-label" if index.multi_label else "single-label"
    assert index.method is not None  # build_index fits and records a method
    print(f"indexed {len(index)} rows, {len(index.label_names)} labels ({kind}) with {args.model} "
          f"[{args.factory}], method {index.method['name']} -> {args.out}")
    return 0


def _read_pool(args: argparse.Namespace) -> list[str]:
    """--unlabelled: its texts (same text column), read before any model loads."""
    from fewlabel.retrieval.cli.options import read_unlabelled

    if args.data is None:
        raise InvalidArgumentError("--unlabelled needs labelled rows to learn from (self-training starts from them)")
    texts = [row.text for row in read_unlabelled(argparse.Namespace(**{**vars(args), "id_col": None}),
                                                 args.unlabelled)]
    if not texts:
        raise DataError("no texts", path=args.unlabelled, field=args.text_col)
    return texts


def _descriptions(args: argparse.Namespace) -> dict | None:
    """--label-names / --labels-file as the index stores them (see `LabelIndex.descriptions`); a bad template
    or label list is one line before anything loads."""
    from fewlabel.retrieval.cli.zeroshot import labels_from_args
    from fewlabel.retrieval.methods.descriptions import describe_labels

    label_set = labels_from_args(argparse.Namespace(labels=args.label_names, labels_file=args.labels_file))
    if label_set is None:
        if args.label_template is not None:
            raise InvalidArgumentError("--label-template applies with --label-names or --labels-file")
        return None
    return describe_labels(label_set, args.label_template)


def faiss_device(args: argparse.Namespace) -> str:
    """``--faiss-device`` checked before anything loads: cuda where FAISS sees no GPU is one line, exit 2; with
    --store milvus only auto and cpu mean anything."""
    from fewlabel.indexing.store.faiss_factory import resolve_faiss_device

    if getattr(args, "store", "faiss") != "faiss" and args.faiss_device == "cuda":
        raise InvalidArgumentError("--faiss-device cuda applies to --store faiss")
    return resolve_faiss_device(args.faiss_device)


def _store_options(args: argparse.Namespace) -> dict | None:
    """--store milvus needs --milvus-uri (and pymilvus); the Milvus options without it are refused, not ignored."""
    if args.store != "milvus":
        given = "--milvus-uri" if args.milvus_uri else "--milvus-collection" if args.milvus_collection else None
        if given:
            raise InvalidArgumentError(f"{given} applies to --store milvus")
        return None
    if not args.milvus_uri:
        raise InvalidArgumentError(
            "--store milvus needs --milvus-uri (a Milvus Lite file such as labels.db, or a server URL)")
    try:
        import pymilvus  # noqa: F401
    except ImportError as exc:
        raise SetupError("--store milvus needs pymilvus: pip install 'fewlabel[milvus]'") from exc
    from fewlabel.indexing.store.milvus_store import check_collection_name, normalise_uri

    return {"uri": normalise_uri(args.milvus_uri), "collection": check_collection_name(args.milvus_collection)}


def cmd_index_info(args: argparse.Namespace) -> int:
    from fewlabel.indexing.store.label_index import LabelIndex

    index = LabelIndex.load(args.index_dir, mmap=True)  # the vectors stay on disk: info never reads them
    meta = index.meta()
    if args.json:
        print(json.dumps(meta, ensure_ascii=False, indent=2))
        return 0
    enc = meta["encoder"]
    tuning = meta["tuning"]
    lines = [
        f"index       {args.index_dir}",
        f"rows        {meta['n_rows']}  ({'multi-label' if meta['multi_label'] else 'single-label'})",
        f"labels      {len(meta['labels'])}: {', '.join(meta['labels'][:20])}"
        + (" …" if len(meta['labels']) > 20 else ""),
        f"encoder     {enc['model']}  (dim {enc['dim']}, {enc['pooling']} pooling, prefix {enc['prefix']!r}, "
        f"max_length {enc['max_length']})",
        (f"faiss       {meta['faiss']['factory']}, {meta['faiss']['ntotal']} vectors"
         + (f", {meta['faiss']['search_params']}" if meta["faiss"].get("search_params") else "")) if "faiss" in meta
        else f"milvus      collection {meta['store']['collection']} at {meta['store']['uri']}, "
             f"{meta['store']['index_type']}, {meta['store']['ntotal']} vectors",
        "tuning      " + (f"k={tuning['k']}, m={tuning['m']:g}, {tuning['metric']}-F1 {tuning['score']:.4f} "
                          f"on {tuning['n_valid']} rows" + (" (stale: rows added since)" if tuning.get("stale")
                                                            else "") if tuning else "not tuned (no --valid)"),
        *_description_lines(meta.get("label_descriptions")),
        *([f"pseudo      {len(meta['pseudo_labelled']['ids'])} rows pseudo-labelled by self-training from "
           f"{meta['pseudo_labelled'].get('source', '?')} (confidence bar {meta['pseudo_labelled'].get('bar')})"]
          if meta.get("pseudo_labelled") else []),
        *_method_lines(meta.get("method")),
        f"fingerprint {meta['data_fingerprint']}   format {meta['format_version']}, "
        f"fewlabel {meta['fewlabel_version']}",
    ]
    print("\n".join(lines))
    return 0


def _description_lines(described: dict | None) -> list[str]:
    """The label descriptions (`--label-names`), for `index info`."""
    if not described:
        return []
    items = [f"{name}={'|'.join(texts)}" for name, texts in described["labels"].items()]
    shown = ", ".join(items[:10]) + (" …" if len(items) > 10 else "")
    template = described.get("template")
    return [f"described   {shown}" + (f"  (template {template!r})" if template else "")]


def _method_lines(method: dict | None) -> list[str]:
    """The method and, when auto chose it, the leaderboard, for `index info`."""
    if not method:
        return ["method      knn (index built before methods were chosen)"]
    how = {"auto": "chosen by auto", "user": "named by --method"}.get(method.get("chosen_by") or "", "")
    protocol = method.get("protocol") or {}
    lines = [f"method      {method['name']}  ({how}" + (f", {protocol['note']}" if protocol.get("note") else "")
             + ("; stale: rows changed since it was chosen, `index add --retune` chooses again"
                if method.get("stale") else "") + ")"]
    board = method.get("leaderboard") or []
    if len(board) > 1 or method.get("chosen_by") == "auto":
        lines.append(f"leaderboard {protocol.get('metric', 'micro')}-F1 (mean ± spread), seconds, tuned:")
        for entry in board:
            tuned = ", ".join(f"{k}={v}" for k, v in entry.get("tuned", {}).items() if k != "thresholds")
            value = (f"{entry['score']:.4f} ± {entry['spread']:.4f}" if entry.get("score") is not None
                     else "not scored     ")
            lines.append(f"  {'*' if entry.get('chosen') else ' '} {entry['method']:<9} {value}  "
                         f"{entry['seconds']:>7.1f}s  {tuned}")
    return lines


def cmd_index_add(args: argparse.Namespace) -> int:
    from fewlabel.indexing.store.label_index import LabelIndex
    from fewlabel.retrieval.methods.registry import MIN_CV_ROWS

    faiss_device(args)
    rows = read_labelled(args, args.data)
    valid = read_labelled(args, args.valid) if args.valid else None
    known = LabelIndex.load(args.index_dir, mmap=True).label_names
    _check_valid_labels(args, valid, {*known, *(label for row in rows for label in row.labels)})
    with LabelIndex.update(args.index_dir, waiting=lambda message: say(args, message)) as index:
        index.check_new_rows(rows, source=args.data, renumber=args.id_col is None)  # before the model loads
        index.check_weights()  # a model retrained in place: refused before it loads
        encoder = load_encoder(args, index.encoder["model"], index.encoder)
        cache = open_cache(args)
        index.use_faiss_device(args.faiss_device)
        added = index.add(rows, encoder, cache=cache, batch_size=args.batch_size, show_progress=not args.quiet,
                          source=args.data, renumber=args.id_col is None)
        method = "auto" if args.retune else (index.method or {}).get("name", "knn")
        if method == "knn" and not args.retune:
            if valid is not None:
                _tune(args, index, encoder, valid, cache)
            if index.method:
                index.method = {**index.method, "stale": False}
        else:
            if method != "auto" and valid is None and len(index) < MIN_CV_ROWS:
                raise InvalidArgumentError(f"refitting the method needs --valid or at least {MIN_CV_ROWS} rows")
            old = dict(index.method or {})
            if not args.retune:
                say(args, f"refitting the index's method ({method}) on all {len(index)} rows; it was chosen for the "
                          "old rows, so the choice may be stale: --retune chooses again")
            _fit_method(args, index, encoder, valid, cache, method)
            if not args.retune and old:  # the old choice stands, refitted: keep how it was chosen, flag it
                assert index.method is not None  # _fit_method records it
                index.method = {**index.method, "chosen_by": old.get("chosen_by", "user"),
                                "leaderboard": old.get("leaderboard", []), "protocol": old.get("protocol"),
                                "stale": True}
    replaced = f" ({index.replaced_pseudo_} pseudo-labelled rows replaced by their real labels)" \
        if index.replaced_pseudo_ else ""
    print(f"added {added} rows -> {args.index_dir} now holds {len(index)} rows{replaced}")
    return 0
