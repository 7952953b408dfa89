"""`fewlabel finetune sts | nli | re`: train heads on labelled data. The only CLI module that imports
`fewlabel.finetune` (the arrows: retrieval does not depend on training, except through its command line)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fewlabel.indexing.errors import DataError, InvalidArgumentError
from fewlabel.indexing.model_folder import claim_model_folder
from fewlabel.retrieval.cli.options import (
    PAIRS_HELP,
    add_base_option,
    add_data_options,
    add_training_options,
    fmt_metric,
    fraction,
    positive_float,
    positive_int,
    read_unlabelled,
    say,
)
from fewlabel.retrieval.cli.relation import LABELS_HELP, MARKER_HELP, RE_FILES, load_labels, print_scores
from fewlabel.retrieval.cli.sts import read_scored_pairs

NLI_FILES = ("NLI file: KLUE-NLI JSON (premise, hypothesis, gold_label), XNLI/KorNLI TSV (sentence1, sentence2, "
             "gold_label) or MNLI-style JSONL (premise, hypothesis, label); detected from the content")


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
    add_base_option(sts)
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
    add_base_option(nli)
    nli.add_argument("--out", required=True, help="output model folder")
    add_training_options(nli)
    nli.set_defaults(handler=cmd_finetune_nli)

    re_ = ft_cmds.add_parser("re", help="train a relation classifier (KLUE-RE, SemEval-2010, …)",
                             description="Train a relation classifier with sentence-transformers' CrossEncoder "
                             "trainer: the rendered sentence (see --marker) is classified from its first token's "
                             "vector ([CLS]), or from that and the entity markers' vectors (--pooling entity-start), "
                             "into the labels of --labels. Dev micro-F1 (without no_relation / Other) "
                             "is measured every epoch and the best epoch is kept; --test rows are scored once at the "
                             "end. Writes the model, README.md (model card), scores.json, training_log.jsonl and "
                             "fewlabel_model.json to OUT; resumes from OUT/checkpoints.",
                             epilog="Use the result with: fewlabel re predict OUT test.json --out submission.csv. "
                                    + RE_FILES)
    re_.add_argument("--train", required=True, help="labelled relation file to train on")
    re_.add_argument("--dev", required=True, help="labelled relation file to pick the best epoch on")
    re_.add_argument("--test", default=None, help="labelled relation file scored once at the end (held out)")
    re_.add_argument("--labels", default=None, help=LABELS_HELP + " (default: the train file's labels)")
    re_.add_argument("--no-relation", default=None,
                     help="the class left out of micro-F1 (default: no_relation or Other when the labels have it)")
    add_base_option(re_)
    re_.add_argument("--marker", choices=["baseline", "entity", "typed"], default="typed", help=MARKER_HELP)
    re_.add_argument("--type-language", choices=["auto", "ko", "en", "code"], default="auto",
                     help="type words of typed markers: auto (Korean when the sentence has Hangul, else English), "
                          "ko, en, or code (PER, ORG, …) (default: auto)")
    re_.add_argument("--pooling", choices=["cls", "entity-start"], default="cls",
                     help="classify from the first token's vector (cls) or from it concatenated with the vectors "
                          "of the subject's and object's opening markers (entity-start; needs --marker typed or "
                          "entity) (default: cls)")
    re_.add_argument("--loss", choices=["ce", "weighted", "focal"], default="ce",
                     help="cross-entropy, cross-entropy with balanced class weights, or focal loss (default: ce)")
    re_.add_argument("--focal-gamma", type=positive_float, default=2.0, help="focal loss exponent (default: 2)")
    re_.add_argument("--label-smoothing", type=fraction, default=0.0, help="0-1 (default: 0)")
    re_.add_argument("--out", required=True, help="output model folder")
    add_training_options(re_, epochs=3, lr=3e-5, max_length_help="tokens per rendered pair")
    re_.add_argument("--freeze-embeddings", action="store_true",
                     help="keep the word-embedding matrix fixed (most of e5-small's weights, and much of a CPU step; "
                          "not with --marker entity, whose new tokens must learn theirs)")
    re_.set_defaults(handler=cmd_finetune_re)


def training_settings(args: argparse.Namespace, **extra):
    """The :class:`~fewlabel.finetune.settings.TrainSettings` of :func:`add_training_options`' options (``extra``:
    a command's own settings, such as ``freeze_embeddings``)."""
    from fewlabel.finetune.settings import TrainSettings

    return TrainSettings(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
                         warmup_ratio=args.warmup_ratio, seed=args.seed, max_steps=args.max_steps, **extra)


def run_options(args: argparse.Namespace):
    """The :class:`~fewlabel.finetune.settings.RunOptions` of :func:`add_training_options`' options."""
    from fewlabel.finetune.settings import RunOptions

    return RunOptions(resume=not args.no_resume, keep_checkpoints=args.keep_checkpoints, device=args.device,
                      show_progress=not args.quiet)


def _summary_line(kind: str, base: str, summary: dict) -> str:
    resumed = f", resumed from {Path(summary['resumed_from']).name}" if summary["resumed_from"] else ""
    steps = f"{summary['steps']} step" + ("s" if summary["steps"] != 1 else "")
    return (f"trained {kind} from {base}: {steps} in {summary['train_seconds']} s{resumed} "
            f"-> {summary['out_dir']}")


def cmd_finetune_sts(args: argparse.Namespace) -> int:
    from fewlabel.finetune.sts.trainer import train_sts_bi_encoder, train_sts_cross_encoder

    claim_model_folder(args.out)  # before any data is read or model loaded
    if args.bi_encoder and (args.binary_objective or args.freeze_embeddings):
        option = "--binary-objective" if args.binary_objective else "--freeze-embeddings"
        raise InvalidArgumentError(f"{option} applies to the cross-encoder, not --bi-encoder")
    train = read_scored_pairs(args.train, "--train")
    dev = read_scored_pairs(args.dev, "--dev")
    kind = "bi-encoder" if args.bi_encoder else "cross-encoder"
    say(args, f"training an STS {kind} from {args.base} on {len(train)} pairs (dev {len(dev)}) …")
    common = dict(run=run_options(args), sources={"train": args.train, "dev": args.dev})
    if args.bi_encoder:
        summary = train_sts_bi_encoder(train, dev, args.base, args.out, training_settings(args), **common)
    else:
        settings = training_settings(args, freeze_embeddings=args.freeze_embeddings)
        summary = train_sts_cross_encoder(train, dev, args.base, args.out, settings,
                                          binary_objective=args.binary_objective, **common)
    print(_summary_line(f"an STS {kind}", args.base, summary))
    dev_scores = summary["dev"]
    print(f"dev: Pearson {fmt_metric(dev_scores['pearson'])}  Spearman {fmt_metric(dev_scores['spearman'])}  "
          f"binary F1 {fmt_metric(dev_scores['binary_f1'])}  ({dev_scores['n']} pairs)")
    return 0


def cmd_finetune_nli(args: argparse.Namespace) -> int:
    from fewlabel.finetune.nli.trainer import train_nli_cross_encoder
    from fewlabel.indexing.nli.data import read_nli, read_nli_files

    claim_model_folder(args.out)  # before any data is read or model loaded
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
        train, dev, args.base, args.out, training_settings(args), test_pairs=test, run=run_options(args),
        sources={"train": ", ".join(args.train), "dev": args.dev, **({"test": args.test} if args.test else {})})
    print(_summary_line("an NLI cross-encoder", args.base, summary))
    for role in ("dev", "test"):
        scores = summary[role]
        if scores:
            per_class = "  ".join(f"{c} {v['f1']:.4f}" for c, v in scores["per_class"].items())
            print(f"{role}: accuracy {scores['accuracy']:.4f}  macro-F1 {scores['macro_f1']:.4f}  F1: {per_class}  "
                  f"({scores['n']} pairs)")
    return 0


def cmd_finetune_re(args: argparse.Namespace) -> int:
    from fewlabel.finetune.relation.trainer import RelationOptions, train_re_classifier
    from fewlabel.indexing.relation.data import read_relations

    claim_model_folder(args.out)  # before any data is read or model loaded
    labels = load_labels(args.labels) if args.labels else None
    train = read_relations(args.train, labels=labels)
    labels = labels or load_labels(None, train)
    dev = read_relations(args.dev, labels=labels)
    test = read_relations(args.test, labels=labels) if args.test else None
    for role, path, rows in (("--train", args.train, train), ("--dev", args.dev, dev), ("--test", args.test, test)):
        if rows and rows[0].label is None:
            raise DataError(f"{role} rows need gold labels; this file has none", path=path)
    say(args, f"training a relation classifier from {args.base} on {len(train)} rows (dev {len(dev)}"
              + (f", test {len(test)}" if test else "") + f"), {len(labels)} labels, {args.marker} markers …")
    options = RelationOptions(marker=args.marker, type_language=args.type_language, loss=args.loss,
                              focal_gamma=args.focal_gamma, label_smoothing=args.label_smoothing,
                              no_relation=args.no_relation, pooling=args.pooling)
    summary = train_re_classifier(
        train, dev, labels, args.base, args.out, training_settings(args, freeze_embeddings=args.freeze_embeddings),
        options, test_rows=test, run=run_options(args),
        sources={"train": args.train, "dev": args.dev, **({"test": args.test} if args.test else {})})
    print(_summary_line("a relation classifier", args.base, summary))
    for role in ("dev", "test"):
        if summary[role]:
            print(f"{role}: ", end="")
            print_scores(summary[role])
    return 0


# ---- `fewlabel adapt`: the encoder itself, on unlabelled texts -------------------------------------------------
def add_adapt_command(commands: argparse._SubParsersAction) -> None:
    """`fewlabel adapt`: here, because it trains (this is the CLI module that may import `fewlabel.finetune`)."""
    adapt = commands.add_parser(
        "adapt", help="adapt an encoder to your unlabelled texts (no labels needed)",
        description="Domain adaptation: train the encoder on unlabelled in-domain texts, then use the folder "
        "wherever a model name goes (index build --model, bench slices --encoders, finetune --base). Methods: "
        "simcse (MultipleNegativesRankingLoss on two dropout views of each text), tsdae (DenoisingAutoEncoderLoss, "
        "decoder tied to the encoder's own weights) or mlm (masked-LM with DataCollatorForLanguageModeling; the "
        "bundled encoders have no MLM head, so its transform starts random). Writes the encoder, README.md (model "
        "card: data, steps, wall and CPU time), training_log.jsonl and fewlabel_model.json to OUT; resumes from "
        "OUT/checkpoints.",
        epilog="Then: fewlabel index build train.csv --model OUT --valid valid.csv --out my-index. UNLABELLED is "
               "CSV, TSV/.txt or JSONL; a plain text file with one text a line reads with --no-header --text-col 0.")
    adapt.add_argument("unlabelled", help="file with the in-domain texts (any label column is ignored)")
    add_data_options(adapt, labels=False, ids=False)
    adapt.set_defaults(id_col=None)
    add_base_option(adapt)
    adapt.add_argument("--out", required=True, help="output encoder folder")
    adapt.add_argument("--method", choices=["simcse", "tsdae", "mlm"], default="simcse",
                       help="simcse (dropout views), tsdae (denoising auto-encoder) or mlm (masked words) "
                            "(default: simcse)")
    adapt.add_argument("--max-texts", type=positive_int, default=None,
                       help="train on a seeded random sample of at most N distinct texts (default: all)")
    adapt.add_argument("--freeze-embeddings", action="store_true",
                       help="keep the word-embedding matrix fixed (96M of e5-small's 118M weights; on a CPU its "
                            "update is much of a step)")
    add_training_options(adapt, epochs=1, lr=3e-5, max_length_help="tokens per text")
    adapt.set_defaults(handler=cmd_adapt)


def cmd_adapt(args: argparse.Namespace) -> int:
    from fewlabel.finetune.adapt.trainer import adapt_encoder

    claim_model_folder(args.out)  # before any data is read or model loaded
    rows = read_unlabelled(args, args.unlabelled)
    say(args, f"adapting {args.base} to {len(rows)} texts of {args.unlabelled} ({args.method}) …")
    summary = adapt_encoder([r.text for r in rows], args.base, args.out,
                            training_settings(args, freeze_embeddings=args.freeze_embeddings), method=args.method,
                            max_texts=args.max_texts, run=run_options(args), source=args.unlabelled)
    steps = f"{summary['steps']} step" + ("s" if summary["steps"] != 1 else "")
    resumed = f", resumed from {Path(summary['resumed_from']).name}" if summary["resumed_from"] else ""
    print(f"adapted {args.base} ({summary['method']}) on {summary['texts_used']} texts: {steps}, "
          f"{summary['texts_seen']} texts seen, {summary['train_seconds']} s ({summary['cpu_seconds']} s CPU)"
          f"{resumed}; loss {fmt_metric(summary['first_loss'])} -> {fmt_metric(summary['last_loss'])} "
          f"-> {summary['out_dir']}")
    return 0


def index_trainers_for(model: str, device: str | None, quiet: bool) -> dict:
    """The setfit / finetune trainers that `index build --budget` (and `index add` refitting a trained method)
    hands to the index's method choice, on the index's own encoder ``model``."""
    from fewlabel.finetune.classify.index_heads import index_trainers

    return index_trainers(model, device=device, show_progress=not quiet)
