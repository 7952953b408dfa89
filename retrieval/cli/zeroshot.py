"""`fewlabel zeroshot`: label texts from label names alone (NLI or embeddings), and the label options the
zero-shot fallback of `fewlabel predict` shares."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fewlabel.indexing.encoders.registry import DEFAULT_MODEL
from fewlabel.indexing.errors import InvalidArgumentError
from fewlabel.retrieval.cli.options import (
    add_data_options,
    add_model_options,
    load_encoder,
    open_cache,
    positive_float,
    positive_int,
    resolve_id_col,
    say,
)

ZEROSHOT_EPILOG = ("Labels: --labels 'joy,anger=anger|rage' (name=alias|alias gives one label several names, scores "
                   "aggregated) or --labels-file (one label a line, same syntax; or a .json list / "
                   "{label: [aliases]}). "
                   "Templates hold {} where the name goes; by default a name with Hangul gets '이 글은 {}에 관한 "
                   "내용이다.' and any other 'This example is about {}.'. Output: id, labels, route, reason, "
                   "score:<label>, then any --keep-cols (+ OUT.meta.json with the model, template and settings).")


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
    add_data_options(zs, labels=False, predicting=True)
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
    pick.add_argument("--top-k", type=positive_int, default=None,
                      help="give the N best labels (default: 1 when single-label)")
    pick.add_argument("--threshold", type=float, default=None,
                      help="give every label scoring at least T (default for multi-label NLI: 0.5; for multi-label "
                           "embed T is a cosine)")
    zs.add_argument("--aggregate", choices=["max", "mean"], default="max", help="how aliases combine (default: max)")
    zs.add_argument("--temperature", type=positive_float, default=0.05,
                    help="embed, single-label: softmax(cosine / temperature) (default: 0.05)")
    zs.add_argument("--max-length", type=positive_int, default=None, help="NLI: tokens per text+hypothesis pair")
    zs.add_argument("--out", required=True, help="output file, .csv or .jsonl (written atomically)")
    add_model_options(zs)
    zs.set_defaults(handler=cmd_zeroshot)


# ---- helpers ------------------------------------------------------------------------------------------------
def labels_from_args(args: argparse.Namespace):
    from fewlabel.retrieval.zeroshot.labels import parse_labels, read_labels_file

    if getattr(args, "labels_file", None):
        return read_labels_file(args.labels_file)
    if getattr(args, "labels", None) is not None:
        return parse_labels(args.labels)
    return None


def routes_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{route} {n}" for route, n in sorted(counts.items()))


# ---- handlers -----------------------------------------------------------------------------------------------
def cmd_zeroshot(args: argparse.Namespace) -> int:
    from importlib.metadata import version

    from fewlabel.indexing.readers import read_rows
    from fewlabel.retrieval.knn.saved_index import evaluate
    from fewlabel.retrieval.outputs import claim_output, output_format, write_meta, write_predictions
    from fewlabel.retrieval.router import Predictor, summarise_routes
    from fewlabel.retrieval.zeroshot.labels import check_template
    from fewlabel.retrieval.zeroshot.scorers import EMBED, load_zero_shot, resolve_nli_model

    out = Path(args.out)
    output_format(out)  # fail on a bad output name, or something not ours there, before loading anything
    claim_output(out, "predictions", meta=True)
    labels = labels_from_args(args)
    check_template(args.template)
    if args.model != EMBED and args.temperature != 0.05:
        raise InvalidArgumentError("--temperature applies to --model embed only")
    resolve_id_col(args, args.input)
    rows = read_rows(args.input, text_col=args.text_col, label_col=args.label_col, id_col=args.id_col,
                     label_sep=args.label_sep, header=not args.no_header, keep_cols=args.keep_cols)
    settings = dict(labels=labels, template=args.template, multi_label=args.multi_label, top_k=args.top_k,
                    threshold=args.threshold, aggregate=args.aggregate, batch_size=args.batch_size,
                    show_progress=not args.quiet)
    if args.model == EMBED:
        encoder = load_encoder(args, args.encoder)
        zero_shot = load_zero_shot(EMBED, encoder=encoder, temperature=args.temperature, cache=open_cache(args),
                                   **settings)
    else:
        resolve_nli_model(args.model)  # a missing or wrong checkpoint is refused before anything loads
        say(args, f"loading NLI model {args.model} …")
        zero_shot = load_zero_shot(args.model, max_length=args.max_length, device=args.device, **settings)
    predictor = Predictor(None, None, zero_shot, labels=labels)
    started = time.perf_counter()
    predictions = predictor.predict(rows)
    seconds = time.perf_counter() - started
    write_predictions(predictions, out, predictor.label_names_, routes=True, similarity=False, kept=args.keep_cols)
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
