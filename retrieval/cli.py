"""`fewlabel`: build label indexes, label new text, run the demo, score sentence pairs (STS), fine-tune, zero-shot.

Every error a user can cause ends as one line on stderr and exit status 2 (set FEWLABEL_DEBUG=1 for
the traceback); long work shows progress bars unless `--quiet`."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from indexing.errors import DataError, FewlabelError
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


def add_training_options(p: argparse.ArgumentParser, *, epochs: float = 2, lr: float = 2e-5,
                         max_length_help: str = "tokens per pair") -> None:
    """The options every `fewlabel finetune` command shares (read back by :func:`training_kwargs`)."""
    p.add_argument("--epochs", type=float, default=epochs, help=f"(default: {epochs:g})")
    p.add_argument("--lr", type=float, default=lr, help=f"learning rate (default: {lr:g})")
    p.add_argument("--batch-size", type=int, default=16, help="(default: 16)")
    p.add_argument("--max-length", type=int, default=128, help=f"{max_length_help} (default: 128)")
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="(default: 0.1)")
    p.add_argument("--seed", type=int, default=42, help="(default: 42)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimiser steps (smoke runs)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if OUT/checkpoints has a checkpoint")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep OUT/checkpoints after training")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when present)")


def training_kwargs(args: argparse.Namespace) -> dict:
    """The trainers' keyword arguments from :func:`add_training_options`' options."""
    return dict(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
                warmup_ratio=args.warmup_ratio, seed=args.seed, resume=not args.no_resume, max_steps=args.max_steps,
                device=args.device, show_progress=not args.quiet, keep_checkpoints=args.keep_checkpoints)


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=32, help="texts per encoder batch (default: 32)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when present)")
    p.add_argument("--no-cache", action="store_true",
                   help="do not read or write the embedding cache ($FEWLABEL_HOME/cache)")


PAIRS_HELP = ("pair file: KorSTS TSV (with header), STS-B TSV (no header), KLUE-STS JSON, or CSV/TSV with "
              "sentence1,sentence2 [,id,label,binary-label]; the layout is detected from the content")
STS_EPILOG = ("Scores are 0-5. A bi-encoder's cosine is mapped by 5*clip(cos,0,1), or by a linear/isotonic fit "
              "on --calibrate-on pairs; a cross-encoder folder (from `fewlabel finetune sts`) scores pairs "
              "itself, averaged over both sentence orders. Output: id,target (+ OUT.csv.meta.json).")


# ---- STS: `sts score` and `finetune sts` ----------------------------------------------------------------
def add_sts_commands(commands: argparse._SubParsersAction) -> None:
    sts = commands.add_parser("sts", help="score sentence pairs 0-5 (semantic textual similarity)",
                              description="Semantic textual similarity: score sentence pairs 0-5.")
    sts_cmds = sts.add_subparsers(dest="sts_command", metavar="SUBCOMMAND", required=True)
    score = sts_cmds.add_parser("score", help="score every pair of a file", epilog=STS_EPILOG,
                                description="Score every pair of PAIRS 0-5 with a bi-encoder (cosine) or a "
                                "cross-encoder folder; writes id,target and OUT.csv.meta.json (model, "
                                "calibration, metrics). When PAIRS carries scores, prints Pearson, Spearman and "
                                "the F1 of the binary label (score >= 3).")
    score.add_argument("pairs", help=PAIRS_HELP)
    score.add_argument("--model", default=DEFAULT_MODEL,
                       help="encoder (registry name, folder, hub id) or cross-encoder folder "
                            f"(default: {DEFAULT_MODEL})")
    score.add_argument("--out", required=True, help="output CSV with id,target (written atomically)")
    score.add_argument("--calibrate-on", metavar="TRAIN",
                       help="labelled pair file to fit the cosine -> 0-5 map on (bi-encoders only)")
    score.add_argument("--calibration", choices=["linear", "isotonic"], default=None,
                       help="map fitted on --calibrate-on (default: linear); without --calibrate-on the map is "
                            "5*clip(cos,0,1)")
    add_model_options(score)
    score.set_defaults(handler=cmd_sts_score)


def add_finetune_commands(commands: argparse._SubParsersAction) -> None:
    finetune = commands.add_parser("finetune", help="train a model head on labelled data",
                                   description="Fine-tune model heads on labelled data.")
    ft_cmds = finetune.add_subparsers(dest="finetune_command", metavar="SUBCOMMAND", required=True)
    sts = ft_cmds.add_parser("sts", help="train an STS cross-encoder (or bi-encoder) on scored pairs",
                             description="Train an STS head with sentence-transformers' trainer: a cross-encoder "
                             "(default; both sentence orders as augmentation) or, with --bi-encoder, the encoder "
                             "itself (CosineSimilarityLoss). Dev Pearson is measured every epoch and the best "
                             "epoch is kept. Writes the model, README.md (model card), training_log.jsonl and "
                             "fewlabel_model.json to OUT; resumes from OUT/checkpoints when a run was cut short.",
                             epilog="Use the result with: fewlabel sts score PAIRS --model OUT --out scores.csv")
    sts.add_argument("--train", required=True, help="scored pairs to train on. " + PAIRS_HELP)
    sts.add_argument("--dev", required=True, help="scored pairs to pick the best epoch on")
    sts.add_argument("--base", default=DEFAULT_MODEL,
                     help=f"model to start from: e5-small, minilm or a local folder (default: {DEFAULT_MODEL})")
    sts.add_argument("--out", required=True, help="output model folder")
    add_training_options(sts)
    sts.add_argument("--freeze-embeddings", action="store_true",
                     help="cross-encoder only: keep the word-embedding matrix fixed; its 96M weights are most of "
                          "e5-small, and their update is much of a CPU training step")
    sts.add_argument("--bi-encoder", action="store_true",
                     help="fine-tune the encoder (cosine scores) instead of training a cross-encoder")
    sts.add_argument("--binary-objective", action="store_true",
                     help="cross-encoder: also learn the binary label (score >= 3) with a weighted BCE term on "
                          "the same output")
    sts.set_defaults(handler=cmd_finetune_sts)

    from .zeroshot_cli import add_finetune_nli_command

    add_finetune_nli_command(ft_cmds)  # `finetune nli`
    from .re_cli import add_finetune_re_command

    add_finetune_re_command(ft_cmds)  # `finetune re`


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
    build.add_argument("--search-params", default=None,
                       help="FAISS search parameters kept with the index, e.g. efSearch=128 for HNSW (higher "
                            "recall, slower; FAISS's default is 16) or nprobe=16 for IVF")
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
    from .zeroshot_cli import add_fallback_options, add_zeroshot_command

    add_fallback_options(predict)  # --fallback nli|embed|none and its settings
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

    add_sts_commands(commands)  # `sts score`, `finetune sts`
    add_finetune_commands(commands)
    add_zeroshot_command(commands)  # `zeroshot`
    from .re_cli import add_re_commands

    add_re_commands(commands)  # `re predict`, `re knn`, `re evaluate`
    add_plugin_commands(commands)  # `bench slices` (from benchmarks, through an entry point)
    return parser


def add_plugin_commands(commands: argparse._SubParsersAction) -> None:
    """Commands other packages offer through the ``fewlabel.commands`` entry point (a function taking the
    sub-command parsers); so `fewlabel bench` lives in `benchmarks` while nothing here imports it."""
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group="fewlabel.commands"), key=lambda e: e.name):
        entry.load()(commands)


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
                             batch_size=args.batch_size, show_progress=not args.quiet,
                             search_params=args.search_params)
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
        f"faiss       {meta['faiss']['factory']}, {meta['faiss']['ntotal']} vectors"
        + (f", {meta['faiss']['search_params']}" if meta["faiss"].get("search_params") else ""),
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

    if getattr(args, "fallback", "none") != "none":
        from .zeroshot_cli import cmd_predict_fallback

        return cmd_predict_fallback(args)
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


def read_scored_pairs(path: str, role: str):
    from indexing.pairs import read_pairs

    rows = read_pairs(path)
    if rows[0].score is None:
        raise DataError(f"{role} pairs need scores (a label or score column); this file has none", path=path)
    return rows


def cmd_sts_score(args: argparse.Namespace) -> int:
    from importlib.metadata import version

    from indexing.pairs import read_pairs

    from .sts import STSScorer, pair_metrics, write_scores

    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise FewlabelError(f"{out}: STS scores are written as CSV (id,target); the name must end in .csv")
    if args.calibration and not args.calibrate_on:
        raise FewlabelError("--calibration needs --calibrate-on TRAIN (labelled pairs to fit the map on)")
    rows = read_pairs(args.pairs)
    calib_rows = read_scored_pairs(args.calibrate_on, "--calibrate-on") if args.calibrate_on else None
    say(args, f"loading {args.model} …")
    scorer = STSScorer(args.model, calibration=(args.calibration or "linear") if calib_rows else "default",
                       device=args.device, batch_size=args.batch_size, cache=open_cache(args),
                       show_progress=not args.quiet)
    if calib_rows is not None:
        scorer.fit(calib_rows)
        say(args, f"fitted {scorer.calibration_.method} calibration on {len(calib_rows)} pairs")
    started = time.perf_counter()
    scores = scorer.predict(rows)
    seconds = time.perf_counter() - started
    metrics = pair_metrics(rows, scores)
    meta = {"input": str(args.pairs), "n_pairs": len(rows), "model": scorer.describe(),
            "calibration": scorer.calibration_.to_dict() if scorer.calibration_ is not None else None,
            "calibrated_on": args.calibrate_on, "metrics": metrics, "seconds": round(seconds, 2),
            "fewlabel_version": version("fewlabel")}
    write_scores(rows, scores, out, meta)
    print(f"scored {len(rows)} pairs with {args.model} ({scorer.kind}) -> {out}")
    if metrics:
        print(f"Pearson {_fmt_metric(metrics['pearson'])}  Spearman {_fmt_metric(metrics['spearman'])}  "
              f"binary F1 {_fmt_metric(metrics['binary_f1'])}  ({metrics['n']} labelled pairs)")
    return 0


def cmd_finetune_sts(args: argparse.Namespace) -> int:
    from finetune.sts import train_sts_bi_encoder, train_sts_cross_encoder

    if args.bi_encoder and (args.binary_objective or args.freeze_embeddings):
        option = "--binary-objective" if args.binary_objective else "--freeze-embeddings"
        raise FewlabelError(f"{option} applies to the cross-encoder, not --bi-encoder")
    train = read_scored_pairs(args.train, "--train")
    dev = read_scored_pairs(args.dev, "--dev")
    kind = "bi-encoder" if args.bi_encoder else "cross-encoder"
    say(args, f"training an STS {kind} from {args.base} on {len(train)} pairs (dev {len(dev)}) …")
    common = dict(**training_kwargs(args), sources={"train": args.train, "dev": args.dev})
    if args.bi_encoder:
        summary = train_sts_bi_encoder(train, dev, args.base, args.out, **common)
    else:
        summary = train_sts_cross_encoder(train, dev, args.base, args.out, binary_objective=args.binary_objective,
                                          freeze_embeddings=args.freeze_embeddings, **common)
    resumed = f", resumed from {Path(summary['resumed_from']).name}" if summary["resumed_from"] else ""
    steps = f"{summary['steps']} step" + ("s" if summary["steps"] != 1 else "")
    print(f"trained an STS {kind} from {args.base}: {steps} in {summary['train_seconds']} s"
          f"{resumed} -> {summary['out_dir']}")
    dev_scores = summary["dev"]
    print(f"dev: Pearson {_fmt_metric(dev_scores['pearson'])}  Spearman {_fmt_metric(dev_scores['spearman'])}  "
          f"binary F1 {_fmt_metric(dev_scores['binary_f1'])}  ({dev_scores['n']} pairs)")
    return 0


def _fmt_metric(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.command_line = "fewlabel " + shlex.join(argv)  # what reports record as their command
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
