"""The `fewlabel` parser: one module per command group adds its commands; plugins (`bench`) arrive through the
``fewlabel.commands`` entry point; the global options are added to every command at the end, so they work
before and after the command's name."""

from __future__ import annotations

import argparse

from fewlabel.retrieval.cli.demo import add_demo_command
from fewlabel.retrieval.cli.finetune import add_adapt_command, add_finetune_commands
from fewlabel.retrieval.cli.index import add_index_commands
from fewlabel.retrieval.cli.labelling import add_labelling_commands
from fewlabel.retrieval.cli.options import EPILOG, add_global_options, leaf_parsers
from fewlabel.retrieval.cli.predict import add_predict_command
from fewlabel.retrieval.cli.relation import add_re_commands
from fewlabel.retrieval.cli.serve import add_serve_command
from fewlabel.retrieval.cli.sts import add_sts_commands
from fewlabel.retrieval.cli.zeroshot import add_zeroshot_command

__all__ = ["add_plugin_commands", "build_parser"]


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a mistake on the command line is one line on stderr (exit 2) like every other error: the
    usage block it prints by default buries the message. Sub-command parsers inherit the class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = OneLineParser(prog="fewlabel", description="Label text when labels are few: "
                                     "an index of labelled examples (FAISS or Milvus) and the method auto chooses "
                                     "on validation data (kNN vote, linear head, Naive Bayes, ensemble, SetFit, "
                                     "fine-tuning); zero-shot, STS, relations, serving.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"fewlabel {version('fewlabel')}")
    add_global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_index_commands(commands)  # `index build | info | add`
    add_predict_command(commands)  # `predict`, with the zero-shot fallback
    add_demo_command(commands)
    add_sts_commands(commands)  # `sts score`
    add_finetune_commands(commands)  # `finetune sts | nli | re`
    add_adapt_command(commands)  # `adapt`: the encoder on unlabelled texts
    add_zeroshot_command(commands)  # `zeroshot`
    add_re_commands(commands)  # `re predict | knn | evaluate`
    add_serve_command(commands)  # `serve`: the index over HTTP
    add_labelling_commands(commands)  # `suggest`, `check`: the labelling loop
    add_plugin_commands(commands)  # `bench slices` (from benchmarks, through an entry point)
    for leaf in leaf_parsers(parser):  # global options work after the command too: `fewlabel index build … -q`
        add_global_options(leaf, top=False)
    return parser


def add_plugin_commands(commands: argparse._SubParsersAction) -> None:
    """Commands other packages offer through the ``fewlabel.commands`` entry point (a function taking the
    sub-command parsers); so `fewlabel bench` lives in `benchmarks` while nothing here imports it."""
    from importlib.metadata import entry_points

    seen: set[str] = set()
    for entry in sorted(entry_points(group="fewlabel.commands"), key=lambda e: e.name):
        if entry.name in seen or entry.name in commands.choices:
            continue  # one name once: a second metadata copy of the same install (mid-reinstall) is not a conflict
        seen.add(entry.name)
        entry.load()(commands)
