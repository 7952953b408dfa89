"""`fewlabel bench slices`: chapter 9's central experiment as one command.

The `fewlabel` CLI (in `retrieval`) knows nothing of `benchmarks`; this module offers its commands through
the ``fewlabel.commands`` entry point (see pyproject.toml), and runs alone as
``python -m fewlabel.benchmarks.slices``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from fewlabel.retrieval.cli.options import (
    add_augment_options,
    add_data_options,
    add_model_options,
    augmenter_from_args,
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
)

__all__ = ["add_bench_command", "main"]

DESCRIPTION = """How good is each method at each amount of labelled data? Trains every method on nested,
stratified slices of TRAIN (8, 16, 32, … rows, then all), tunes every choice on DEV only, scores TEST once per
method, slice and seed, and writes DIR/report.md (mean ± std over seeds), micro_f1.png, macro_f1.png,
results.json (raw, per seed) and command.txt. An interrupted run resumes from results.json."""

EPILOG = """methods: nb (Naive Bayes: words, or character 1-3-grams for Korean), zeroshot (NLI or embedding
zero-shot, constant across slices), knn, linear, ensemble, any other method of the index's registry, and auto
(one per --encoders; auto chooses among the registry's fast candidates on dev, as `index build --method auto`
does), setfit and finetune (one per --bodies).
example: fewlabel bench slices train.tsv --dev dev.tsv --test test.tsv --no-header --text-col 0 --label-col 1
--label-sep , --label-names labels.txt --multi-label --out slices-goemotions"""


def _method_names() -> tuple[str, ...]:
    from fewlabel.benchmarks.slices.methods import method_names

    return method_names()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("train", help="labelled training file (CSV, TSV/.txt, JSONL): the pool slices are drawn from")
    p.add_argument("--dev", default=None, help="labelled dev file for every tuning choice (default: a stratified "
                                               "--dev-fraction of TRAIN held out before slicing)")
    p.add_argument("--test", required=True, help="labelled test file, scored once per method, slice and seed")
    add_data_options(p, labels=True, ids=False)
    p.add_argument("--label-names", default=None,
                   help="file with one label name a line; integer labels in the data index it (GoEmotions)")
    p.add_argument("--multi-label", action="store_true", help="rows may carry several labels")
    p.add_argument("--slices", default="8,16,32,64,128,256,all", help="slice sizes (default: %(default)s)")
    p.add_argument("--methods", default="nb,zeroshot,knn,setfit,finetune",
                   help=f"comma-separated, from: {', '.join(_method_names())} (default: %(default)s)")
    p.add_argument("--seeds", type=positive_int, default=3,
                   help="slice draws (and training seeds) per method (default: 3)")
    p.add_argument("--encoders", default="e5-small,minilm", help="kNN encoders (default: %(default)s)")
    p.add_argument("--bodies", default="e5-small", help="SetFit and fine-tuning bodies (default: %(default)s)")
    p.add_argument("--max-steps", type=positive_int, default=200,
                   help="cap on SetFit / fine-tuning steps per run (batch 16), the CPU budget knob (default: 200)")
    p.add_argument("--fit-max-rows", type=non_negative_int, default=2048,
                   help="SetFit and fine-tuning train on at most N rows of a slice, a stratified subset (at the step "
                        "cap they never see more; SetFit's head would embed the whole pool) (default: 2048; 0: all)")
    p.add_argument("--setfit-iterations", type=positive_int, default=20, help="SetFit pairs per text (default: 20)")
    p.add_argument("--finetune-epochs", type=positive_float, default=20,
                   help="fine-tuning epochs before the --max-steps cap (default: 20)")
    p.add_argument("--zeroshot-model", default="embed", help="'embed' or an NLI model folder / hub id")
    p.add_argument("--zeroshot-encoder", default="e5-small", help="encoder of the embedding zero-shot")
    p.add_argument("--zeroshot-labels", default=None,
                   help="label descriptions in label order, e.g. '0=부정,1=긍정' (default: the label names)")
    p.add_argument("--zeroshot-template", default=None, help="hypothesis template with {} for the label")
    p.add_argument("--nb-analyzer", default="auto", choices=["auto", "word", "char_wb"],
                   help="Naive Bayes features: words, character 1-3-grams, or auto (characters for mostly Korean text)")
    p.add_argument("--dev-fraction", type=fraction, default=0.1,
                   help="without --dev: the share of train held out as dev (default: 0.1)")
    p.add_argument("--dev-sample", type=non_negative_int, default=1000,
                   help="tune on a stratified sample of this many dev rows (0: all; default: 1000)")
    p.add_argument("--max-train", type=positive_int, default=None, help="cap the training pool ('all') at N rows")
    p.add_argument("--test-sample", type=positive_int, default=None, help="score a stratified sample of N test rows")
    p.add_argument("--title", default=None, help="report title (default: the training file's name)")
    add_model_options(p)
    add_augment_options(p)  # each trainable method then also runs on the augmented slice (`nb+eda`, …)
    p.add_argument("--restart", action="store_true", help="discard results.json in --out and start over")
    p.add_argument("--report-only", action="store_true",
                   help="write the report from what results.json holds (an unfinished run: missing cells show -)")
    p.add_argument("--out", required=True, help="output folder")


def add_bench_command(commands: argparse._SubParsersAction) -> None:
    """Entry point ``fewlabel.commands``: adds ``bench slices`` to the fewlabel CLI."""
    bench = commands.add_parser("bench", help="benchmark methods against each other on your data",
                                description="benchmark methods against each other on your data")
    sub = bench.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")
    slices = sub.add_parser("slices", help="every method at 8, 16, 32, … labelled rows against Naive Bayes",
                            description=DESCRIPTION, epilog=EPILOG)
    add_arguments(slices)  # -q / --quiet is fewlabel's own option: `fewlabel -q bench slices …`
    slices.set_defaults(handler=run_slices)


def config_of(args: argparse.Namespace, data) -> dict:
    """What must match for a run to resume (everything that changes a number)."""
    keys = ["train", "dev", "test", "text_col", "label_col", "label_sep", "no_header", "label_names", "multi_label",
            "slices", "methods", "seeds", "encoders", "bodies", "max_steps", "fit_max_rows", "setfit_iterations",
            "finetune_epochs", "zeroshot_model", "zeroshot_encoder", "zeroshot_labels", "zeroshot_template",
            "nb_analyzer", "dev_fraction", "dev_sample", "max_train", "test_sample"]
    config = {k: getattr(args, k) for k in keys}
    for k in ("train", "dev", "test", "label_names"):
        if config[k]:
            config[k] = Path(config[k]).name  # the same files from another folder resume the same run
    config["sizes"] = data.sizes()
    if args.augment:  # only then, so a run from before augmentation existed still resumes
        config["augment"] = augmenter_from_args(args).describe()
    return config


def run_slices(args: argparse.Namespace) -> int:
    from fewlabel.benchmarks.slices.data import load_splits
    from fewlabel.benchmarks.slices.methods import make_methods
    from fewlabel.benchmarks.slices.report import write_slice_report
    from fewlabel.benchmarks.slices.runner import load_results, run_benchmark
    from fewlabel.benchmarks.slices.sampling import parse_slices
    from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path
    from fewlabel.indexing.errors import InvalidArgumentError
    from fewlabel.indexing.files import atomic_file, refuse_foreign, resolve_target

    refuse_foreign(args.out, folder=True, what="a bench slices folder", ours=is_bench_folder)
    try:
        slices = parse_slices(args.slices)
        methods = make_methods([m.strip() for m in args.methods.split(",") if m.strip()],
                               encoders=_names(args.encoders), bodies=_names(args.bodies),
                               nb_analyzer=args.nb_analyzer, zeroshot_model=args.zeroshot_model,
                               zeroshot_encoder=args.zeroshot_encoder, zeroshot_labels=args.zeroshot_labels,
                               zeroshot_template=args.zeroshot_template, max_steps=args.max_steps,
                               setfit_iterations=args.setfit_iterations, finetune_epochs=args.finetune_epochs,
                               fit_max_rows=args.fit_max_rows or None, augmenter=augmenter_from_args(args))
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from exc
    if args.seeds < 1:
        raise InvalidArgumentError("--seeds must be >= 1")
    data = load_splits(args.train, dev=args.dev, test=args.test, text_col=args.text_col, label_col=args.label_col,
                       multi_label=args.multi_label, label_sep=args.label_sep, header=not args.no_header,
                       label_names=args.label_names, dev_fraction=args.dev_fraction, max_train=args.max_train,
                       dev_sample=args.dev_sample or None, test_sample=args.test_sample)
    out = resolve_target(args.out)
    if not args.report_only:  # a run with other settings is refused before anything in --out is written
        load_results(out, config_of(args, data), args.restart)
    out.mkdir(parents=True, exist_ok=True)
    claim_bench_folder(out)
    command = getattr(args, "command_line", None) or "fewlabel " + shlex.join(sys.argv[1:])
    if args.report_only and (out / "command.txt").is_file():
        report_command, command = command, (out / "command.txt").read_text(encoding="utf-8").strip()
    else:
        report_command = None
        with atomic_file(out / "command.txt") as fh:
            fh.write(command + "\n")
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    log(f"{len(data.labels)} labels ({'multi' if data.multi_label else 'single'}-label); train pool "
        f"{len(data.train):,}, dev {len(data.dev):,}, test {len(data.test):,}")
    for note in data.notes:
        log(f"note: {note}")
    cache = None if args.no_cache else EmbeddingCache(default_cache_path())
    notes = list(data.notes)
    if args.report_only:
        state = load_results(out, config_of(args, data))
        planned = sum(1 if m.constant else len(slices) * args.seeds for m in methods)
        if len(state["results"]) < planned:
            notes.append(f"UNFINISHED RUN: {len(state['results'])} of {planned} runs done; this report was written "
                         f"from them by `{report_command or '--report-only'}`, and '-' marks what did not run")
    else:
        state = run_benchmark(data, methods, slices, list(range(args.seeds)), out, config_of(args, data),
                              task_settings={"batch_size": args.batch_size, "cache": cache, "device": args.device,
                                             "backend": args.backend},
                              restart=args.restart, show_progress=not args.quiet, log=log)
    budget = (f"setfit / finetune: at most {args.max_steps} steps of batch 16 per run"
              + (f", on at most {args.fit_max_rows:,} rows of a slice (stratified)" if args.fit_max_rows else ""))
    augmenter = augmenter_from_args(args)
    if augmenter is not None:
        a = augmenter.describe()
        budget += (f"; `+{augmenter.name}` methods: each slice row plus up to {a['copies']} copies ({a['method']}, "
                   f"p={a['p']}, {a['unit']}s, seed {a['seed']}); dev and test are not augmented")
    report = write_slice_report(out, state, title=args.title or f"Training slices: {Path(args.train).name}",
                                data_note=f"train {args.train}, dev {args.dev or '(held out of train)'}, "
                                          f"test {args.test}; {len(data.train):,} / {len(data.dev):,} / "
                                          f"{len(data.test):,} rows",
                                notes=notes, budget_note=budget, command=command)
    print(f"wrote {report}, micro_f1.png, macro_f1.png, results.json")
    return 0


def _names(spec: str) -> list[str]:
    return [s.strip() for s in spec.split(",") if s.strip()]


def main(argv: list[str] | None = None) -> int:
    """``python -m fewlabel.benchmarks.slices …`` is ``fewlabel bench slices …``: the same parser, options and
    one-line errors."""
    from fewlabel.retrieval.cli import main as fewlabel_main

    return fewlabel_main(["bench", "slices", *(sys.argv[1:] if argv is None else argv)])


BENCH_MARKER = ".fewlabel-bench"  # in every folder `bench slices` made: the only folders it writes into


def is_bench_folder(path: Path) -> bool:
    """Whether ``path`` is a folder `bench slices` made: its marker, or (a run from before the marker) a
    results.json shaped as this benchmark writes it. A folder that merely holds a command.txt, a report.md or
    some other results.json is the user's."""
    path = Path(path)
    if (path / BENCH_MARKER).is_file():
        return True
    try:
        import json

        saved = json.loads((path / "results.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return (isinstance(saved, dict) and isinstance(saved.get("config"), dict) and "sizes" in saved["config"]
            and isinstance(saved.get("results"), list) and isinstance(saved.get("slices"), dict))


def claim_bench_folder(out: Path) -> None:
    """Mark ``out`` (empty, or already ours) as a bench folder before anything else is written into it."""
    marker = out / BENCH_MARKER
    if not marker.is_file():
        marker.write_text("written by `fewlabel bench slices`: this folder is its output\n", encoding="utf-8")
