"""`fewlabel sts score`: 0-5 similarity of sentence pairs with a bi-encoder (cosine) or a trained cross-encoder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fewlabel.indexing.encoders.registry import DEFAULT_MODEL
from fewlabel.indexing.errors import DataError, InvalidArgumentError
from fewlabel.retrieval.cli.options import (
    PAIRS_HELP,
    add_model_options,
    fmt_metric,
    load_encoder,
    open_cache,
    say,
    torch_only,
)

STS_EPILOG = ("Scores are 0-5. A bi-encoder's cosine is mapped by 5*clip(cos,0,1), or by a linear/isotonic fit "
              "on --calibrate-on pairs; a cross-encoder folder (from `fewlabel finetune sts`) scores pairs "
              "itself, averaged over both sentence orders. Output: id,target (+ OUT.csv.meta.json).")


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


def read_scored_pairs(path: str, role: str):
    """Pairs that must carry gold scores (calibration, training, dev)."""
    from fewlabel.indexing.sts.pairs import read_pairs

    rows = read_pairs(path)
    if rows[0].score is None:
        raise DataError(f"{role} pairs need scores (a label or score column); this file has none", path=path)
    return rows


def cmd_sts_score(args: argparse.Namespace) -> int:
    from importlib.metadata import version

    from fewlabel.indexing.sts.metrics import pair_metrics
    from fewlabel.indexing.sts.pairs import read_pairs
    from fewlabel.retrieval.outputs import claim_output
    from fewlabel.retrieval.sts.scorer import BI_ENCODER, STSScorer, model_kind, write_scores

    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise InvalidArgumentError(f"{out}: STS scores are written as CSV (id,target); the name must end in .csv")
    claim_output(out, "scores", meta=True)
    if args.calibration and not args.calibrate_on:
        raise InvalidArgumentError("--calibration needs --calibrate-on TRAIN (labelled pairs to fit the map on)")
    rows = read_pairs(args.pairs)
    plot = None
    if rows and all(r.score is not None for r in rows):  # labelled pairs: the plot goes to OUT.scatter.png
        from fewlabel.retrieval.analysis import analysis_files, claim_analysis_files

        plot = analysis_files(out, plot="scatter")
        claim_analysis_files(plot)
    calib_rows = read_scored_pairs(args.calibrate_on, "--calibrate-on") if args.calibrate_on else None
    model = args.model
    if model_kind(args.model) == BI_ENCODER:
        model = load_encoder(args, args.model)  # a model that can never load is refused before anything loads
    else:
        torch_only(args, "an STS cross-encoder")
        say(args, f"loading {args.model} …")
    scorer = STSScorer(model, calibration=(args.calibration or "linear") if calib_rows else "default",
                       device=args.device, batch_size=args.batch_size, cache=open_cache(args),
                       show_progress=not args.quiet)
    if calib_rows is not None:
        scorer.fit(calib_rows)
        assert scorer.calibration_ is not None  # fit refuses a cross-encoder, the one kind without calibration
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
        print(f"Pearson {fmt_metric(metrics['pearson'])}  Spearman {fmt_metric(metrics['spearman'])}  "
              f"binary F1 {fmt_metric(metrics['binary_f1'])}  ({metrics['n']} labelled pairs)")
    if plot is not None and metrics and metrics["n"] >= 2:
        from fewlabel.retrieval.analysis import save_figure, sts_figure

        how = scorer.kind
        if calib_rows is not None:  # a calibrated plot says so: its scores differ
            assert scorer.calibration_ is not None  # as above
            how += f", {scorer.calibration_.method} map fitted on {Path(args.calibrate_on).name}"
        figure = sts_figure([r.score for r in rows if r.score is not None], scores,  # metrics: every row labelled
                            title=f"{Path(args.pairs).name}: {Path(str(args.model)).name} ({how})")
        print(f"error analysis -> {save_figure(figure, plot['png'])}")
    return 0
