"""CLI for zero-shot labelling and the kNN -> zero-shot fallback: ``fewlabel zeroshot``, ``fewlabel finetune
nli`` and the ``--fallback`` options of ``fewlabel predict``. Registered by :mod:`retrieval.cli`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from indexing.errors import FewlabelError
from indexing.paths import atomic_file
from indexing.registry import DEFAULT_MODEL

from .cli import (
    add_data_options,
    add_model_options,
    add_training_options,
    load_encoder,
    open_cache,
    say,
    training_kwargs,
)

ZEROSHOT_EPILOG = ("Labels: --labels 'joy,anger=anger|rage' (name=alias|alias gives one label several names, scores "
                   "aggregated) or --labels-file (one label a line, same syntax; or a .json list / "
                   "{label: [aliases]}). "
                   "Templates hold {} where the name goes; by default a name with Hangul gets '이 글은 {}에 관한 "
                   "내용이다.' and any other 'This example is about {}.'. Output: id, labels, route, reason, "
                   "score:<label> (+ OUT.meta.json with the model, template and settings).")
NLI_FILES = ("NLI file: KLUE-NLI JSON (premise, hypothesis, gold_label), XNLI/KorNLI TSV (sentence1, sentence2, "
             "gold_label) or MNLI-style JSONL (premise, hypothesis, label); detected from the content")


def add_label_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument("--labels", help="candidate labels, comma-separated; 'name=alias|alias' adds names to one label")
    group.add_argument("--labels-file", help="file with one label a line (name=alias|alias allowed), or .json")
    p.add_argument("--template", default=None,
                   help="hypothesis / description with {} for the label name (default: English or Korean by the "
                        "name's script)")


def add_zeroshot_command(commands: argparse._SubParsersAction) -> None:
    zs = commands.add_parser("zeroshot", help="label texts from label names alone (NLI or embeddings)",
                             epilog=ZEROSHOT_EPILOG,
                             description="Zero-shot labelling: no examples, only label names. With an NLI checkpoint "
                             "(--model FOLDER or a hub id) every label becomes a hypothesis the model checks "
                             "against the text; with --model embed, the cosine between the text and each label's "
                             "description (encoder --encoder). Train an NLI checkpoint with `fewlabel finetune nli`.")
    zs.add_argument("input", help="file with texts to label (CSV, TSV, JSONL)")
    add_label_options(zs, required=True)
    add_data_options(zs, labels=False)
    zs.add_argument("--label-col", default=None,
                    help="gold label column of INPUT: when given, micro/macro F1 are printed and saved")
    zs.add_argument("--label-sep", default=None, help="separator between several gold labels in one field")
    zs.add_argument("--model", default="embed",
                    help="NLI checkpoint (folder from `fewlabel finetune nli`, a downloaded one, or a hub id such as "
                         "facebook/bart-large-mnli), or 'embed' for embedding zero-shot (default: embed)")
    zs.add_argument("--encoder", default=DEFAULT_MODEL,
                    help=f"encoder for --model embed (default: {DEFAULT_MODEL})")
    zs.add_argument("--multi-label", action="store_true",
                    help="labels are independent (NLI: entailment vs contradiction per label; embed: cosine "
                         "threshold) instead of competing (softmax across labels)")
    pick = zs.add_mutually_exclusive_group()
    pick.add_argument("--top-k", type=int, default=None, help="give the N best labels (default: 1 when single-label)")
    pick.add_argument("--threshold", type=float, default=None,
                      help="give every label scoring at least T (default for multi-label NLI: 0.5; for multi-label "
                           "embed T is a cosine)")
    zs.add_argument("--aggregate", choices=["max", "mean"], default="max", help="how aliases combine (default: max)")
    zs.add_argument("--temperature", type=float, default=0.05,
                    help="embed, single-label: softmax(cosine / temperature) (default: 0.05)")
    zs.add_argument("--max-length", type=int, default=None, help="NLI: tokens per text+hypothesis pair")
    zs.add_argument("--out", required=True, help="output file, .csv or .jsonl (written atomically)")
    add_model_options(zs)
    zs.set_defaults(handler=cmd_zeroshot)


def add_finetune_nli_command(ft_cmds: argparse._SubParsersAction) -> None:
    nli = ft_cmds.add_parser("nli", help="train a 3-way NLI cross-encoder for zero-shot labelling",
                             description="Train an entailment / neutral / contradiction cross-encoder with "
                             "sentence-transformers' CrossEncoder trainer. Dev macro-F1 is measured every epoch and "
                             "the best epoch is kept; --test pairs are scored once at the end (accuracy, per-class "
                             "F1). Writes the model (id2label in config.json), README.md (model card), scores.json, "
                             "training_log.jsonl and fewlabel_model.json to OUT; resumes from OUT/checkpoints.",
                             epilog="Use the result with: fewlabel zeroshot TEXTS --labels a,b --model OUT "
                                    "--out o.csv, or fewlabel predict INDEX TEXTS --fallback nli --nli-model OUT "
                                    "--out o.csv. " + NLI_FILES)
    nli.add_argument("--train", required=True, nargs="+", help="labelled NLI file(s) to train on")
    nli.add_argument("--dev", required=True, help="labelled NLI pairs to pick the best epoch on")
    nli.add_argument("--test", default=None, help="labelled NLI pairs scored once at the end (held out)")
    nli.add_argument("--base", default=DEFAULT_MODEL,
                     help=f"model to start from: e5-small, minilm or a local folder (default: {DEFAULT_MODEL})")
    nli.add_argument("--out", required=True, help="output model folder")
    add_training_options(nli)
    nli.set_defaults(handler=cmd_finetune_nli)


def add_fallback_options(predict: argparse.ArgumentParser) -> None:
    """`fewlabel predict … --fallback nli|embed|none`: the Predictor's routing (default none: plain kNN)."""
    group = predict.add_argument_group(
        "zero-shot fallback", "With --fallback, queries whose nearest example is less similar than a threshold, or "
        "whose kNN vote gives no label, and declared labels with fewer than --min-examples examples in the index, "
        "are labelled by zero-shot; the output gains route (knn, zeroshot-nli, zeroshot-embed, knn+zeroshot-…) and "
        "reason columns.")
    group.add_argument("--fallback", choices=["none", "nli", "embed"], default="none",
                       help="zero-shot fallback: an NLI checkpoint (--nli-model) or the index's own encoder "
                            "(default: none)")
    group.add_argument("--nli-model", default=None, help="NLI checkpoint for --fallback nli (folder or hub id)")
    labels = group.add_mutually_exclusive_group()
    labels.add_argument("--labels", help="declared labels (name=alias|alias allowed); labels missing from the index "
                                         "are scored by zero-shot")
    labels.add_argument("--labels-file", help="declared labels, one a line (or .json)")
    group.add_argument("--template", default=None, help="zero-shot template with {} for the label name")
    group.add_argument("--min-examples", type=int, default=None,
                       help="a label with fewer examples in the index is scored by zero-shot (default: 5)")
    group.add_argument("--similarity-threshold", type=float, default=None,
                       help="queries whose nearest example is less similar go to zero-shot (default: the value "
                            "stored by --save-fallback, else none)")
    group.add_argument("--fallback-threshold", type=float, default=None,
                       help="the zero-shot's own label threshold (default: top-1 single-label; 0.5 multi-label NLI)")
    group.add_argument("--tune-fallback", metavar="VALID",
                       help="labelled file to tune the similarity threshold on (maximising macro-F1 of the combined "
                            "output); its columns: --text-col, --label-col, --label-sep")
    group.add_argument("--label-col", default="label", help="label column of the --tune-fallback file")
    group.add_argument("--label-sep", default=None, help="label separator of the --tune-fallback file")
    group.add_argument("--save-fallback", action="store_true",
                       help="store the fallback settings (thresholds, labels) in the index's meta.json")


# ---- helpers ------------------------------------------------------------------------------------------------
def labels_from_args(args: argparse.Namespace):
    from .zeroshot import parse_labels, read_labels_file

    if getattr(args, "labels_file", None):
        return read_labels_file(args.labels_file)
    if getattr(args, "labels", None) is not None:
        return parse_labels(args.labels)
    return None


def write_meta(out: Path, meta: dict) -> Path:
    """``OUT.meta.json`` beside an output, atomically."""
    path = out.with_name(out.name + ".meta.json")
    with atomic_file(path) as fh:
        fh.write(json.dumps(meta, ensure_ascii=False, indent=2, default=str) + "\n")
    return path


def routes_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{route} {n}" for route, n in sorted(counts.items()))


# ---- handlers -----------------------------------------------------------------------------------------------
def cmd_zeroshot(args: argparse.Namespace) -> int:
    from importlib.metadata import version

    from indexing.readers import read_rows

    from .labelling import evaluate
    from .outputs import output_format
    from .predictor import Predictor, summarise_routes, write_routed_predictions
    from .zeroshot import EMBED, check_template, load_zero_shot

    out = Path(args.out)
    output_format(out)  # fail on a bad output name before loading anything
    labels = labels_from_args(args)
    check_template(args.template)
    if args.model != EMBED and args.temperature != 0.05:
        raise FewlabelError("--temperature applies to --model embed only")
    rows = read_rows(args.input, text_col=args.text_col, label_col=args.label_col, id_col=args.id_col,
                     label_sep=args.label_sep, header=not args.no_header)
    settings = dict(labels=labels, template=args.template, multi_label=args.multi_label, top_k=args.top_k,
                    threshold=args.threshold, aggregate=args.aggregate, batch_size=args.batch_size,
                    show_progress=not args.quiet)
    if args.model == EMBED:
        encoder = load_encoder(args, args.encoder)
        zero_shot = load_zero_shot(EMBED, encoder=encoder, temperature=args.temperature, cache=open_cache(args),
                                   **settings)
    else:
        say(args, f"loading NLI model {args.model} …")
        zero_shot = load_zero_shot(args.model, max_length=args.max_length, device=args.device, **settings)
    predictor = Predictor(None, None, zero_shot, labels=labels)
    started = time.perf_counter()
    predictions = predictor.predict(rows)
    seconds = time.perf_counter() - started
    write_routed_predictions(predictions, out, predictor.label_names_, similarity=False)
    metrics = evaluate(predictions, rows, predictor.label_names_) if args.label_col else None
    write_meta(out, {"input": str(args.input), "n": len(rows), "zero_shot": zero_shot.describe(),
                     "routes": summarise_routes(predictions), "metrics": metrics, "seconds": round(seconds, 2),
                     "texts_per_second": round(len(rows) / seconds, 2) if seconds > 0 else None,
                     "fewlabel_version": version("fewlabel")})
    labelled = sum(1 for p in predictions if p.labels)
    print(f"labelled {labelled} of {len(predictions)} texts by {zero_shot.route} ({len(predictor.label_names_)} "
          f"labels) -> {out}")
    if metrics:
        print(f"micro-F1 {metrics['micro_f1']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  accuracy "
              f"{metrics['accuracy']:.4f}  ({metrics['n']} labelled texts)")
    return 0


def cmd_finetune_nli(args: argparse.Namespace) -> int:
    from finetune.nli import train_nli_cross_encoder
    from indexing.errors import DataError
    from indexing.nli_data import read_nli, read_nli_files

    train = read_nli_files(args.train)
    dev = read_nli(args.dev)
    test = read_nli(args.test) if args.test else None
    for role, path, pairs in (("--train", ", ".join(args.train), train), ("--dev", args.dev, dev),
                              ("--test", args.test, test)):
        if pairs and pairs[0].label is None:
            raise DataError(f"{role} pairs need gold labels; this file has none", path=path)
    say(args, f"training an NLI cross-encoder from {args.base} on {len(train)} pairs (dev {len(dev)}"
              + (f", test {len(test)}" if test else "") + ") …")
    summary = train_nli_cross_encoder(
        train, dev, args.base, args.out, test_pairs=test, **training_kwargs(args),
        sources={"train": ", ".join(args.train), "dev": args.dev, **({"test": args.test} if args.test else {})})
    resumed = f", resumed from {Path(summary['resumed_from']).name}" if summary["resumed_from"] else ""
    steps = f"{summary['steps']} step" + ("s" if summary["steps"] != 1 else "")
    print(f"trained an NLI cross-encoder from {args.base}: {steps} in {summary['train_seconds']} s{resumed} "
          f"-> {summary['out_dir']}")
    for role in ("dev", "test"):
        scores = summary[role]
        if scores:
            per_class = "  ".join(f"{c} {v['f1']:.4f}" for c, v in scores["per_class"].items())
            print(f"{role}: accuracy {scores['accuracy']:.4f}  macro-F1 {scores['macro_f1']:.4f}  F1: {per_class}  "
                  f"({scores['n']} pairs)")
    return 0


def cmd_predict_fallback(args: argparse.Namespace) -> int:
    from indexing.label_index import LabelIndex
    from indexing.readers import read_rows, read_texts

    from .labelling import resolve_k_m
    from .outputs import output_format
    from .predictor import DEFAULT_MIN_EXAMPLES, Predictor, predictor_kwargs, summarise_routes, write_routed_predictions
    from .zeroshot import EmbeddingZeroShot, NLIZeroShot, check_template

    out = Path(args.out)
    output_format(out)
    if args.fallback == "nli" and not args.nli_model:
        raise FewlabelError("--fallback nli needs --nli-model FOLDER|HUB_ID (train one with `fewlabel finetune nli`)")
    if args.fallback != "nli" and args.nli_model:
        raise FewlabelError("--nli-model applies to --fallback nli only")
    labels = labels_from_args(args)
    check_template(args.template)
    index = LabelIndex.load(args.index_dir)
    resolve_k_m(index, args.k, args.m)
    rows = read_texts(args.input, text_col=args.text_col, id_col=args.id_col, header=not args.no_header)
    valid = (read_rows(args.tune_fallback, text_col=args.text_col, label_col=args.label_col, id_col=args.id_col,
                       label_sep=args.label_sep, header=not args.no_header) if args.tune_fallback else None)
    encoder = load_encoder(args, index.encoder["model"])
    common = dict(template=args.template, multi_label=index.multi_label, threshold=args.fallback_threshold,
                  batch_size=args.batch_size, show_progress=not args.quiet)
    if args.fallback == "nli":
        say(args, f"loading NLI model {args.nli_model} …")
        zero_shot = NLIZeroShot(args.nli_model, device=args.device, **common)
    else:
        zero_shot = EmbeddingZeroShot(encoder, cache=open_cache(args), **common)

    stored = index.extra.get("fallback") or {}
    kwargs: dict = {}
    if stored and not valid:
        same = stored.get("fallback") == zero_shot.kind and (
            zero_shot.kind != "nli" or (stored.get("zero_shot") or {}).get("model") == zero_shot.location)
        if same:
            kwargs = predictor_kwargs(stored)
            stored_threshold = kwargs.get("similarity_threshold")
            say(args, f"using the fallback settings stored in {args.index_dir}: similarity threshold "
                      f"{'none' if stored_threshold is None else f'{stored_threshold:.4f}'}")
        else:
            say(args, f"{args.index_dir} stores fallback settings for another model; they are not used")
    if labels is not None:
        kwargs["labels"] = labels
    if args.min_examples is not None:
        kwargs["min_examples"] = args.min_examples
    kwargs.setdefault("min_examples", DEFAULT_MIN_EXAMPLES)
    if args.similarity_threshold is not None:
        kwargs["similarity_threshold"] = args.similarity_threshold
    predictor = Predictor(index, encoder, zero_shot, k=args.k, m=args.m, cache=open_cache(args),
                          batch_size=args.batch_size, show_progress=not args.quiet, **kwargs)
    if predictor.weak_labels_:
        say(args, f"scored by zero-shot (fewer than {predictor.min_examples} examples in the index): "
                  f"{', '.join(predictor.weak_labels_)}")
    if valid is not None:
        predictor.tune(valid, source=args.tune_fallback)
        tuning = predictor.tuning_
        threshold = predictor.similarity_threshold
        say(args, f"tuned on {tuning['n_valid']} validation rows: similarity threshold "
                  f"{'none' if threshold is None else f'{threshold:.4f}'}, {tuning['zero_shot_share']:.0%} of them "
                  f"routed to zero-shot (in full or for weak labels), macro-F1 {tuning['score']:.4f} "
                  f"(kNN alone {tuning['knn_alone']['macro_f1']:.4f})")
    predictions = predictor.predict(rows, explain=args.explain)
    write_routed_predictions(predictions, out, predictor.label_names_)
    if args.save_fallback:
        index.extra["fallback"] = predictor.settings()
        index.save(args.index_dir)
        say(args, f"fallback settings saved in {Path(args.index_dir) / 'meta.json'}")
    labelled = sum(1 for p in predictions if p.labels)
    print(f"labelled {labelled} of {len(predictions)} texts -> {out} (routes: "
          f"{routes_line(summarise_routes(predictions))})")
    return 0
