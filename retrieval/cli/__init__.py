"""`fewlabel`: build label indexes, label new text, run the demo, score sentence pairs (STS), fine-tune, zero-shot,
relation extraction, and (through the ``fewlabel.commands`` entry point) `bench`.

One module per command group; every shared option is defined once in :mod:`.options`. Every error a user can
cause ends as one line on stderr and exit status 2 (set FEWLABEL_DEBUG=1 for the traceback); long work shows
progress bars unless `--quiet`. Only the command modules' handlers import torch, FAISS or the trainers, so
`fewlabel --help` starts fast."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from fewlabel.indexing.errors import FewlabelError
from fewlabel.retrieval.cli.demo import add_demo_command
from fewlabel.retrieval.cli.finetune import add_finetune_commands
from fewlabel.retrieval.cli.index import add_index_commands
from fewlabel.retrieval.cli.options import EPILOG, add_global_options, leaf_parsers
from fewlabel.retrieval.cli.predict import add_predict_command
from fewlabel.retrieval.cli.relation import add_re_commands
from fewlabel.retrieval.cli.sts import add_sts_commands
from fewlabel.retrieval.cli.zeroshot import add_zeroshot_command

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = argparse.ArgumentParser(prog="fewlabel", description="Label text when labels are few: "
                                     "kNN over a FAISS index of labelled examples, with k and m tuned on "
                                     "validation data.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"fewlabel {version('fewlabel')}")
    add_global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_index_commands(commands)  # `index build | info | add`
    add_predict_command(commands)  # `predict`, with the zero-shot fallback
    add_demo_command(commands)
    add_sts_commands(commands)  # `sts score`
    add_finetune_commands(commands)  # `finetune sts | nli | re`
    add_zeroshot_command(commands)  # `zeroshot`
    add_re_commands(commands)  # `re predict | knn | evaluate`
    add_plugin_commands(commands)  # `bench slices` (from benchmarks, through an entry point)
    for leaf in leaf_parsers(parser):  # global options work after the command too: `fewlabel index build … -q`
        add_global_options(leaf, top=False)
    return parser


def add_plugin_commands(commands: argparse._SubParsersAction) -> None:
    """Commands other packages offer through the ``fewlabel.commands`` entry point (a function taking the
    sub-command parsers); so `fewlabel bench` lives in `benchmarks` while nothing here imports it."""
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group="fewlabel.commands"), key=lambda e: e.name):
        entry.load()(commands)


def main(argv: list[str] | None = None, *, prog: str = "fewlabel") -> int:
    """Run one command; ``prog`` is what the command line recorded in reports starts with."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.command_line = f"{prog} " + shlex.join(argv)  # what reports record as their command
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
