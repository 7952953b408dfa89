"""`fewlabel re predict | knn | evaluate`: relation extraction with a trained classifier, from a few examples, and
scoring a submission. (`fewlabel finetune re` lives with the other trainers in `finetune.py`.)"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fewlabel.indexing.encoders.registry import DEFAULT_MODEL
from fewlabel.indexing.errors import DataError, InvalidArgumentError
from fewlabel.retrieval.cli.options import (
    add_model_options,
    load_encoder,
    open_cache,
    positive_float,
    positive_int,
    say,
    torch_only,
)

RE_FILES = ("Relation files: KLUE-RE JSON (a list of objects with sentence, subject_entity/object_entity "
            "{word, start_idx, end_idx (inclusive), type} and label), the competition CSV (the same with each entity "
            "as the string of a dict), or SemEval-2010 Task 8 (JSON Lines with <e1>…</e1> <e2>…</e2> tags, or the "
            "official TRAIN_FILE.TXT layout); detected from the content.")
LABELS_HELP = ("label list in order: KLUE's relation_list.json, a JSON list, a text file with one label a line, or "
               "'semeval' for SemEval-2010's 19 labels")
MARKER_HELP = ("input rendering: baseline ('subject[SEP]object' + sentence, the competition baseline), entity "
               "([E1] … [/E1], [E2] … [/E2]) or typed ('@ * 사람 * subject @', '# ^ 단체 ^ object #'; the default)")


def load_labels(spec: str | None, rows=None) -> list[str]:
    """``--labels``: a file, ``semeval``, or (None) the labels of ``rows`` (no-relation class first)."""
    from fewlabel.indexing.relation.data import SEMEVAL_LABELS, infer_labels, read_relation_labels

    if spec is None:
        if rows is None:
            raise InvalidArgumentError("--labels is needed")
        return infer_labels(rows)
    if spec.lower() == "semeval":
        return list(SEMEVAL_LABELS)
    return read_relation_labels(spec)


def add_re_commands(commands: argparse._SubParsersAction) -> None:
    re_ = commands.add_parser("re", help="relation extraction: predict, few-shot kNN, evaluate",
                              description="Relation extraction between a subject and an object entity.",
                              epilog=RE_FILES)
    re_cmds = re_.add_subparsers(dest="re_command", metavar="SUBCOMMAND", required=True)

    predict = re_cmds.add_parser("predict", help="predict relations with a trained classifier",
                                 description="Predict the relation of every row of INPUT with a folder from "
                                 "`fewlabel finetune re` and write the competition submission: id,pred_label,probs "
                                 "(probs: a JSON list in the model's label order, summing to 1). When INPUT is "
                                 "labelled, the scores are printed and saved in OUT.meta.json.", epilog=RE_FILES)
    predict.add_argument("model_dir", help="folder from `fewlabel finetune re`")
    predict.add_argument("input", help="relation file to label")
    predict.add_argument("--out", required=True, help="submission CSV (written atomically)")
    predict.add_argument("--ignore-labels", action="store_true",
                         help="read INPUT's labels as absent (e.g. the competition test file's placeholder 100)")
    add_model_options(predict)
    predict.set_defaults(handler=cmd_re_predict)

    knn = re_cmds.add_parser("knn", help="label relations from a few examples by nearest neighbours",
                             description="Few-shot relations: embed the entity-marked sentences of TRAIN (a few "
                             "examples per relation) and INPUT with an encoder, and label INPUT by its k nearest "
                             "examples (or the nearest class prototype). Writes the submission form id,pred_label,"
                             "probs; scores are printed when INPUT is labelled.", epilog=RE_FILES)
    knn.add_argument("train", help="labelled relation file: the examples")
    knn.add_argument("input", help="relation file to label")
    knn.add_argument("--labels", default=None, help=LABELS_HELP + " (default: TRAIN's labels)")
    knn.add_argument("--model", default=DEFAULT_MODEL, help=f"encoder (default: {DEFAULT_MODEL})")
    knn.add_argument("--marker", choices=["entity", "typed"], default="typed", help="entity markers (default: typed)")
    knn.add_argument("--k", type=positive_int, default=5, help="neighbours that vote (default: 5)")
    knn.add_argument("--method", choices=["knn", "prototype"], default="knn",
                     help="k-nearest-neighbour vote or nearest class mean (default: knn)")
    knn.add_argument("--temperature", type=positive_float, default=0.05,
                     help="softmax temperature of probs (default: 0.05)")
    knn.add_argument("--out", required=True, help="submission CSV (written atomically)")
    knn.add_argument("--ignore-labels", action="store_true", help="read INPUT's labels as absent")
    add_model_options(knn)
    knn.set_defaults(handler=cmd_re_knn)

    evaluate = re_cmds.add_parser("evaluate", help="score a submission against gold labels",
                                  description="KLUE's micro-F1 (without no_relation / Other) and AUPRC, accuracy, "
                                  "and for SemEval labels the official macro-F1, of a submission CSV against a "
                                  "labelled relation file (rows matched by id).", epilog=RE_FILES)
    evaluate.add_argument("gold", help="labelled relation file")
    evaluate.add_argument("submission", help="CSV with id,pred_label,probs")
    evaluate.add_argument("--labels", required=True, help=LABELS_HELP + "; the order of probs")
    evaluate.add_argument("--no-relation", default=None, help="the relation that means none, left out of micro-F1 "
                          "(default: no_relation or Other)")
    evaluate.add_argument("--out", default=None, metavar="PREFIX",
                          help="error analysis files: PREFIX.confusion.png (confusion matrix) and "
                               "PREFIX.per_class.csv / .md (precision, recall, F1 per relation) (default: beside the "
                               "submission, its whole name as PREFIX: sub.csv.confusion.png)")
    evaluate.set_defaults(handler=cmd_re_evaluate)


# ---- handlers ------------------------------------------------------------------------------------------------
def claim_submission(path: str) -> Path:
    """The submission path, checked before any model loads: a CSV name, and nothing there but an earlier
    submission (and its OUT.meta.json)."""
    from fewlabel.retrieval.outputs import claim_output

    out = Path(path)
    if out.suffix.lower() != ".csv":
        raise InvalidArgumentError(f"{out}: a submission is a CSV file; the name must end in .csv")
    return claim_output(out, "submission", meta=True)


def print_scores(scores: dict) -> None:
    line = (f"micro-F1 (without {scores['no_relation']}) {100 * scores['micro_f1']:.2f}  AUPRC "
            f"{100 * scores['auprc']:.2f}  accuracy {100 * scores['accuracy']:.2f}")
    if "semeval_macro_f1" in scores:
        line += f"  SemEval macro-F1 {100 * scores['semeval_macro_f1']:.2f}"
    print(f"{line}  (x100, {scores['n']} rows)")


def _finish_output(args: argparse.Namespace, rows, probs, labels: list[str], no_relation: str | None,
                   out: Path, describe: dict, seconds: float) -> None:
    from importlib.metadata import version

    from fewlabel.indexing.relation.metrics import relation_metrics
    from fewlabel.retrieval.outputs import write_meta
    from fewlabel.retrieval.relation.classifier import write_submission

    write_submission([r.id for r in rows], probs, labels, out)
    scores = relation_metrics([r.label for r in rows], probs, labels, no_relation) if rows[0].label else None
    write_meta(out, {"input": str(args.input), "n": len(rows), "model": describe, "labels": labels,
                     "metrics": scores, "seconds": round(seconds, 2), "fewlabel_version": version("fewlabel")})
    print(f"predicted {len(rows)} relations -> {out}")
    if scores:
        print_scores(scores)


def cmd_re_predict(args: argparse.Namespace) -> int:
    from fewlabel.indexing.relation.data import read_relations
    from fewlabel.retrieval.relation.classifier import RelationClassifier

    out = claim_submission(args.out)
    RelationClassifier.read_info(args.model_dir)  # not a finished classifier: refused before anything loads
    torch_only(args, "re predict's relation cross-encoder")
    say(args, f"loading relation classifier {args.model_dir} …")
    classifier = RelationClassifier(args.model_dir, device=args.device, batch_size=args.batch_size)
    rows = read_relations(args.input, labels=classifier.labels, keep_labels=not args.ignore_labels)
    started = time.perf_counter()
    probs = classifier.predict_proba(rows, show_progress=not args.quiet)
    _finish_output(args, rows, probs, classifier.labels, classifier.no_relation, out, classifier.describe(),
                   time.perf_counter() - started)
    return 0


def cmd_re_knn(args: argparse.Namespace) -> int:
    from fewlabel.indexing.relation.data import no_relation_label, read_relations
    from fewlabel.retrieval.relation.fewshot import RelationKNN, embed_relations

    out = claim_submission(args.out)
    labels = load_labels(args.labels) if args.labels else None
    train = read_relations(args.train, labels=labels)
    if train[0].label is None:
        raise DataError("the examples need labels; this file has none", path=args.train)
    labels = labels or load_labels(None, train)
    rows = read_relations(args.input, labels=labels, keep_labels=not args.ignore_labels)
    knn = RelationKNN(k=args.k, method=args.method, temperature=args.temperature)
    encoder = load_encoder(args, args.model)
    cache = open_cache(args)
    started = time.perf_counter()
    common = dict(marker=args.marker, batch_size=args.batch_size, cache=cache, show_progress=not args.quiet)
    train_labels = [r.label for r in train if r.label is not None]  # read_relations: every row labelled, or none
    knn.fit(embed_relations(encoder, train, **common), train_labels, labels=labels)
    probs = knn.predict_proba(embed_relations(encoder, rows, **common))
    describe = {"encoder": encoder.describe(), "marker": args.marker, "k": args.k, "method": args.method,
                "temperature": args.temperature, "examples": len(train)}
    _finish_output(args, rows, probs, labels, no_relation_label(labels), out, describe, time.perf_counter() - started)
    return 0


def cmd_re_evaluate(args: argparse.Namespace) -> int:
    import json

    from fewlabel.indexing.relation.data import no_relation_label, read_relations
    from fewlabel.indexing.relation.metrics import relation_metrics
    from fewlabel.retrieval.analysis import analysis_files, claim_analysis_files
    from fewlabel.retrieval.relation.classifier import normalise_probs, read_submission

    files = analysis_files(args.out or args.submission, table="per_class")
    claim_analysis_files(files)
    labels = load_labels(args.labels)
    gold = read_relations(args.gold, labels=labels)
    if gold[0].label is None:
        raise DataError("the gold file has no labels", path=args.gold)
    gold_labels = [r.label for r in gold if r.label is not None]  # read_relations: every row labelled, or none
    ids, _, probs = read_submission(args.submission, labels)
    position = {row_id: i for i, row_id in enumerate(ids)}
    missing = [r.id for r in gold if r.id not in position]
    if missing:
        raise DataError(f"{len(missing)} gold ids are missing from the submission (first: '{missing[0]}')",
                        path=args.submission)
    probs = normalise_probs(probs[[position[r.id] for r in gold]])
    no_relation = args.no_relation or no_relation_label(labels)
    scores = relation_metrics(gold_labels, probs, labels, no_relation)
    print_scores(scores)
    if not args.quiet:
        print(json.dumps({k: v for k, v in scores.items() if k != "semeval_per_relation"}, indent=2))
    _write_error_analysis(gold_labels, [labels[i] for i in probs.argmax(axis=1)], labels, files,
                          title=f"{Path(args.submission).name} against {Path(args.gold).name}")
    return 0


def _write_error_analysis(gold: list[str], predicted: list[str], labels: list[str], files: dict, *,
                          title: str) -> None:
    """The confusion matrix (PNG) and the per-class table (CSV, Markdown) of single-label predictions."""
    import numpy as np

    from fewlabel.retrieval.analysis import confusion_figure, per_label_scores, save_figure, write_tables

    index = {name: j for j, name in enumerate(labels)}
    onehot = np.eye(len(labels), dtype=bool)
    table = per_label_scores(onehot[[index[g] for g in gold]], onehot[[index[p] for p in predicted]], labels)
    write_tables(table, files["csv"], files["md"])
    save_figure(confusion_figure(gold, predicted, labels, title=title), files["png"])
    print(f"error analysis -> {files['png']}, {files['csv']}, {files['md']}")
