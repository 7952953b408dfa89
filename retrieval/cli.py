"""`fewlabel`: build label indexes, label new text, run the demo.

Every error a user can cause ends as one line on stderr and exit status 2 (set FEWLABEL_DEBUG=1 for
the traceback); long work shows progress bars unless `--quiet`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from indexing.errors import FewlabelError
from indexing.registry import DEFAULT_MODEL, REGISTRY

EPILOG = "Data files: .csv, .tsv/.txt, .jsonl. Models: " + ", ".join(
    f"{name} ({spec.languages})" for name, spec in sorted(REGISTRY.items())
) + ", a local model folder, or a Hugging Face id (needs the hub)."


def say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def add_data_options(p: argparse.ArgumentParser, *, labels: bool) -> None:
    p.add_argument("--text-col", default="text", help="column holding the text (default: text)")
    if labels:
        p.add_argument("--label-col", default="label", help="column holding the label(s) (default: label)")
        p.add_argument("--label-sep", default=None,
                       help="separator between several labels in one field, e.g. ',' or '|' "
                            "(a JSON list such as [\"a\",\"b\"] is always understood)")
    p.add_argument("--id-col", default=None, help="column with row ids (default: row number)")
    p.add_argument("--no-header", action="store_true",
                   help="CSV/TSV without a header: give columns by 0-based position, e.g. --text-col 0")


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=32, help="texts per encoder batch (default: 32)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when present)")
    p.add_argument("--no-cache", action="store_true",
                   help="do not read or write the embedding cache ($FEWLABEL_HOME/cache)")


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = argparse.ArgumentParser(prog="fewlabel", description="Label text when labels are few: "
                                     "kNN over a FAISS index of labelled examples, with k and m tuned on "
                                     "validation data.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"fewlabel {version('fewlabel')}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or chatter")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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
                       help="FAISS index factory string: Flat (exact), HNSW32, IVF256,PQ32 … (default: Flat)")
    build.add_argument("--max-k", type=int, default=20, help="largest k tried when tuning (default: 20)")
    build.add_argument("--metric", choices=["micro", "macro"], default="micro",
                       help="F1 average that picks k and m (default: micro)")
    mode = build.add_mutually_exclusive_group()
    mode.add_argument("--multi-label", dest="multi_label", action="store_true", default=None,
                      help="each text may carry several labels (default: decided from the data)")
    mode.add_argument("--single-label", dest="multi_label", action="store_false",
                      help="each text carries exactly one label")
    build.add_argument("--out", required=True, help="index folder to write (replaced atomically)")
    add_model_options(build)
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
    add.add_argument("--max-k", type=int, default=20, help="largest k tried when re-tuning (default: 20)")
    add.add_argument("--metric", choices=["micro", "macro"], default="micro")
    add_model_options(add)
    add.set_defaults(handler=cmd_index_add)

    predict = commands.add_parser("predict", help="label texts with an index", epilog=EPILOG,
                                  description="Label every row of INPUT by kNN vote over the index; writes "
                                  "id, labels, a score per label (vote fraction) and the nearest similarity.")
    predict.add_argument("index_dir", help="index folder")
    predict.add_argument("input", help="file with texts to label (labels, if present, are ignored)")
    add_data_options(predict, labels=False)
    predict.add_argument("--out", required=True, help="output file, .csv or .jsonl")
    predict.add_argument("--k", type=int, default=None, help="neighbours to vote (default: tuned k)")
    predict.add_argument("--m", type=float, default=None, help="votes a label needs (default: tuned m)")
    predict.add_argument("--explain", action="store_true", help="also write each text's neighbours")
    add_model_options(predict)
    predict.set_defaults(handler=cmd_predict)

    demo = commands.add_parser("demo", help="build, tune and label on the bundled samples",
                               description="The main job end to end on samples shipped with fewlabel "
                               "(GoEmotions-ekman, English, multi-label; NSMC, Korean, sentiment): build an "
                               "index, tune k and m, label held-out texts, print predictions and scores.")
    demo.add_argument("--model", default=DEFAULT_MODEL, help=f"encoder (default: {DEFAULT_MODEL})")
    demo.add_argument("--dataset", choices=["all", "goemotions", "nsmc"], default="all")
    demo.add_argument("--out", default="fewlabel-demo", help="folder for indexes and predictions")
    demo.add_argument("--show", type=int, default=6, help="held-out predictions to print per dataset")
    add_model_options(demo)
    demo.set_defaults(handler=cmd_demo)
    return parser


# ---- handlers ----------------------------------------------------------------------------------------
def open_cache(args: argparse.Namespace):
    from indexing.embedding_cache import EmbeddingCache, default_cache_path

    return None if args.no_cache else EmbeddingCache(default_cache_path())


def read_labelled(args: argparse.Namespace, path: str):
    from indexing.readers import read_rows

    return read_rows(path, text_col=args.text_col, label_col=args.label_col, id_col=args.id_col,
                     label_sep=args.label_sep, header=not args.no_header)


def load_encoder(args: argparse.Namespace, model: str):
    from indexing.encoder import Encoder

    say(args, f"loading encoder {model} …")
    return Encoder(model, device=args.device)


def report_tuning(args: argparse.Namespace, tuning: dict) -> None:
    say(args, f"tuned on {tuning['n_valid']} validation rows: k={tuning['k']}, m={tuning['m']:g} "
              f"({tuning['metric']}-F1 {tuning['score']:.4f})")


def cmd_index_build(args: argparse.Namespace) -> int:
    from indexing.label_index import LabelIndex

    from .labelling import tune_index

    rows = read_labelled(args, args.data)
    valid = read_labelled(args, args.valid) if args.valid else None
    encoder = load_encoder(args, args.model)
    cache = open_cache(args)
    started = time.perf_counter()
    index = LabelIndex.build(rows, encoder, factory=args.factory, multi_label=args.multi_label, cache=cache,
                             batch_size=args.batch_size, show_progress=not args.quiet)
    index.extra["build_seconds"] = round(time.perf_counter() - started, 2)
    index.extra["source"] = str(args.data)
    if valid is not None:
        tune_index(index, encoder, valid, max_k=args.max_k, metric=args.metric, source=args.valid, cache=cache,
                   batch_size=args.batch_size, show_progress=not args.quiet)
        report_tuning(args, index.tuning)
    index.save(args.out)
    kind = "multi-label" if index.multi_label else "single-label"
    print(f"indexed {len(index)} rows, {len(index.label_names)} labels ({kind}) with {args.model} "
          f"[{args.factory}] -> {args.out}")
    return 0


def cmd_index_info(args: argparse.Namespace) -> int:
    from indexing.label_index import LabelIndex

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
        f"faiss       {meta['faiss']['factory']}, {meta['faiss']['ntotal']} vectors",
        "tuning      " + (f"k={tuning['k']}, m={tuning['m']:g}, {tuning['metric']}-F1 {tuning['score']:.4f} "
                          f"on {tuning['n_valid']} rows" + (" (stale: rows added since)" if tuning.get("stale")
                                                            else "") if tuning else "not tuned (no --valid)"),
        f"fingerprint {meta['data_fingerprint']}   format {meta['format_version']}, "
        f"fewlabel {meta['fewlabel_version']}",
    ]
    print("\n".join(lines))
    return 0


def cmd_index_add(args: argparse.Namespace) -> int:
    from indexing.label_index import LabelIndex

    from .labelling import tune_index

    index = LabelIndex.load(args.index_dir)
    rows = read_labelled(args, args.data)
    valid = read_labelled(args, args.valid) if args.valid else None
    encoder = load_encoder(args, index.encoder["model"])
    cache = open_cache(args)
    added = index.add(rows, encoder, cache=cache, batch_size=args.batch_size, show_progress=not args.quiet)
    if valid is not None:
        tune_index(index, encoder, valid, max_k=args.max_k, metric=args.metric, source=args.valid, cache=cache,
                   batch_size=args.batch_size, show_progress=not args.quiet)
        report_tuning(args, index.tuning)
    index.save(args.index_dir)
    print(f"added {added} rows -> {args.index_dir} now holds {len(index)} rows")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from indexing.label_index import LabelIndex
    from indexing.readers import read_texts

    from .labelling import predict_rows, resolve_k_m
    from .outputs import output_format, write_predictions

    output_format(Path(args.out))  # fail on a bad output name before any encoding
    index = LabelIndex.load(args.index_dir)
    resolve_k_m(index, args.k, args.m)  # and on a bad --k/--m
    rows = read_texts(args.input, text_col=args.text_col, id_col=args.id_col, header=not args.no_header)
    encoder = load_encoder(args, index.encoder["model"])
    predictions = predict_rows(index, encoder, rows, k=args.k, m=args.m, explain=args.explain,
                               cache=open_cache(args), batch_size=args.batch_size, show_progress=not args.quiet)
    write_predictions(predictions, args.out, index.label_names)
    labelled = sum(1 for p in predictions if p.labels)
    print(f"labelled {labelled} of {len(predictions)} texts -> {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet:
        os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        return args.handler(args)
    except FewlabelError as exc:
        print(f"fewlabel: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fewlabel: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an environment problem: still one line unless debugging
        if os.environ.get("FEWLABEL_DEBUG"):
            raise
        print(f"fewlabel: error: {type(exc).__name__}: {exc} (set FEWLABEL_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
