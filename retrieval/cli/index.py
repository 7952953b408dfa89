"""`fewlabel index build | info | add`: make, inspect and extend a label index folder."""

from __future__ import annotations

import argparse
import json
import time

from fewlabel.indexing.encoders.registry import DEFAULT_MODEL
from fewlabel.indexing.errors import FewlabelError
from fewlabel.retrieval.cli.options import (
    EPILOG,
    add_augment_options,
    add_data_options,
    add_model_options,
    augmenter_from_args,
    load_encoder,
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
                                  description="Encode labelled rows into a FAISS index folder; with --valid, "
                                  "tune k (neighbours) and m (votes a label needs) on validation rows.")
    build.add_argument("data", help="labelled training file")
    add_data_options(build, labels=True)
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
    mode = build.add_mutually_exclusive_group()
    mode.add_argument("--multi-label", dest="multi_label", action="store_true", default=None,
                      help="each text may carry several labels (default: decided from the data)")
    mode.add_argument("--single-label", dest="multi_label", action="store_false",
                      help="each text carries exactly one label")
    build.add_argument("--out", required=True, help="index folder to write (replaced atomically)")
    add_model_options(build)
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
    add.add_argument("--valid", help="labelled validation file to re-tune k and m on")
    add_tuning_options(add, "tried when re-tuning")
    add_model_options(add)
    add.set_defaults(handler=cmd_index_add)


def add_tuning_options(p: argparse.ArgumentParser, when: str) -> None:
    p.add_argument("--max-k", type=positive_int, default=20, help=f"largest k {when} (default: 20)")
    p.add_argument("--metric", choices=["micro", "macro"], default="micro",
                   help="F1 average that picks k and m (default: micro)")


def _tune(args: argparse.Namespace, index, encoder, valid, cache) -> None:
    from fewlabel.retrieval.knn.labelling import tune_index

    tune_index(index, encoder, valid, max_k=args.max_k, metric=args.metric, source=args.valid, cache=cache,
               batch_size=args.batch_size, show_progress=not args.quiet, label_field=args.label_col)
    tuning = index.tuning
    say(args, f"tuned on {tuning['n_valid']} validation rows: k={tuning['k']}, m={tuning['m']:g} "
              f"({tuning['metric']}-F1 {tuning['score']:.4f})")


def cmd_index_build(args: argparse.Namespace) -> int:
    from fewlabel.indexing.files import folder_lock
    from fewlabel.indexing.store.label_index import LabelIndex, claim_index_folder

    claim_index_folder(args.out)  # before anything is read or loaded: a user's folder is never replaced
    store_options = _store_options(args)
    rows = read_labelled(args, args.data)
    valid = read_labelled(args, args.valid) if args.valid else None
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
                             search_params=args.search_params, store=args.store, store_options=store_options)
    index.extra["build_seconds"] = round(time.perf_counter() - started, 2)
    index.extra["source"] = str(args.data)
    if augmenter is not None:
        index.extra["augment"] = {**augmenter.describe(), "labelled_rows": labelled_rows, "rows": len(rows)}
    try:
        if valid is not None:
            _tune(args, index, encoder, valid, cache)
        with folder_lock(args.out, waiting=lambda message: say(args, message)):
            claim_index_folder(args.out)  # again: something may have appeared there while encoding
            index.save(args.out)
    except BaseException:
        index.discard()  # a Milvus collection made for an index that was never saved
        raise
    kind = "multi-label" if index.multi_label else "single-label"
    print(f"indexed {len(index)} rows, {len(index.label_names)} labels ({kind}) with {args.model} "
          f"[{args.factory}] -> {args.out}")
    return 0


def _store_options(args: argparse.Namespace) -> dict | None:
    """--store milvus needs --milvus-uri (and pymilvus); the Milvus options without it are refused, not ignored."""
    if args.store != "milvus":
        given = "--milvus-uri" if args.milvus_uri else "--milvus-collection" if args.milvus_collection else None
        if given:
            raise FewlabelError(f"{given} applies to --store milvus")
        return None
    if not args.milvus_uri:
        raise FewlabelError("--store milvus needs --milvus-uri (a Milvus Lite file such as labels.db, or a server URL)")
    try:
        import pymilvus  # noqa: F401
    except ImportError as exc:
        raise FewlabelError("--store milvus needs pymilvus: pip install 'fewlabel[milvus]'") from exc
    from fewlabel.indexing.store.milvus_store import check_collection_name, normalise_uri

    return {"uri": normalise_uri(args.milvus_uri), "collection": check_collection_name(args.milvus_collection)}


def cmd_index_info(args: argparse.Namespace) -> int:
    from fewlabel.indexing.store.label_index import LabelIndex

    index = LabelIndex.load(args.index_dir)
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
        f"fingerprint {meta['data_fingerprint']}   format {meta['format_version']}, "
        f"fewlabel {meta['fewlabel_version']}",
    ]
    print("\n".join(lines))
    return 0


def cmd_index_add(args: argparse.Namespace) -> int:
    from fewlabel.indexing.store.label_index import LabelIndex

    LabelIndex.load(args.index_dir)  # a missing or damaged index is reported before the data is read
    rows = read_labelled(args, args.data)
    valid = read_labelled(args, args.valid) if args.valid else None
    with LabelIndex.update(args.index_dir, waiting=lambda message: say(args, message)) as index:
        encoder = load_encoder(args, index.encoder["model"])
        cache = open_cache(args)
        added = index.add(rows, encoder, cache=cache, batch_size=args.batch_size, show_progress=not args.quiet,
                          source=args.data, renumber=args.id_col is None)
        if valid is not None:
            _tune(args, index, encoder, valid, cache)
    print(f"added {added} rows -> {args.index_dir} now holds {len(index)} rows")
    return 0
