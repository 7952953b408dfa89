"""`fewlabel demo`: the main job end to end on the samples bundled with fewlabel."""

from __future__ import annotations

import argparse

from fewlabel.indexing.encoders.registry import DEFAULT_MODEL
from fewlabel.retrieval.cli.options import add_model_options, non_negative_int


def add_demo_command(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="build, tune and label on the bundled samples",
                               description="The main job end to end on samples shipped with fewlabel "
                               "(GoEmotions-ekman, English, multi-label; NSMC, Korean, sentiment): build an "
                               "index, let auto choose its method (leaderboard printed), label held-out texts, print "
                               "predictions and scores.")
    demo.add_argument("--model", default=DEFAULT_MODEL, help=f"encoder (default: {DEFAULT_MODEL})")
    demo.add_argument("--dataset", choices=["all", "goemotions", "nsmc"], default="all",
                      help="which bundled sample to run (default: all)")
    demo.add_argument("--out", default="fewlabel-demo",
                      help="folder for indexes and predictions (default: fewlabel-demo)")
    demo.add_argument("--show", type=non_negative_int, default=6, help="held-out predictions to print per dataset")
    add_model_options(demo)
    demo.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from fewlabel.indexing.files import refuse_foreign
    from fewlabel.retrieval.demo import run_demo

    refuse_foreign(args.out, folder=True, what="a fewlabel demo folder", ours=lambda p: (p / "scores.json").is_file())
    return run_demo(args)
