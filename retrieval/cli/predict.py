"""`fewlabel predict`: label texts with an index. One path: the router (`fewlabel.retrieval.router.Predictor`),
with no zero-shot scorer for plain kNN or with one for ``--fallback nli|embed``, and one writer."""

from __future__ import annotations

import argparse
from pathlib import Path

from fewlabel.indexing.errors import InvalidArgumentError
from fewlabel.retrieval.cli.options import (
    EPILOG,
    add_data_options,
    add_faiss_device_option,
    add_model_options,
    load_encoder,
    open_cache,
    positive_float,
    positive_int,
    read_labelled,
    resolve_id_col,
    say,
)
from fewlabel.retrieval.cli.zeroshot import labels_from_args, routes_line


def add_predict_command(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser("predict", help="label texts with an index", epilog=EPILOG,
                                  description="Label every row of INPUT with the index's method (kNN vote, linear "
                                  "head, Naive Bayes, ensemble, SetFit or fine-tuned head, as index build chose); "
                                  "writes id (INPUT's id column when it has one, else the row number), labels, a "
                                  "score per label and the nearest similarity, then any --keep-cols.")
    predict.add_argument("index_dir", help="index folder")
    predict.add_argument("input", help="file with texts to label (its labels are scored when --label-col names them)")
    add_data_options(predict, labels=False, predicting=True)
    predict.add_argument("--out", required=True, help="output file, .csv or .jsonl")
    predict.add_argument("--k", type=positive_int, default=None, help="neighbours to vote (default: tuned k)")
    predict.add_argument("--m", type=positive_float, default=None, help="votes a label needs (default: tuned m)")
    predict.add_argument("--explain", action="store_true", help="also write each text's neighbours")
    add_stream_options(predict)
    add_model_options(predict)
    add_faiss_device_option(predict)
    add_fallback_options(predict)
    add_engine_options(predict)
    predict.set_defaults(handler=cmd_predict)


def add_stream_options(predict: argparse.ArgumentParser) -> None:
    """Chunked reading and writing (`fewlabel.retrieval.streaming`): bounded memory, and a resumable run."""
    group = predict.add_argument_group("large inputs", "INPUT is read, labelled and written one chunk of rows at a "
                                       "time, so memory stays flat however long it is; an interrupted run resumes "
                                       "where it stopped when the same command is run again (OUT appears only "
                                       "when every row is written). A labelled INPUT scored with --label-col is "
                                       "read whole.")
    group.add_argument("--chunk-size", type=positive_int, default=None,
                       help="rows per chunk (default: 10000)")
    group.add_argument("--no-resume", action="store_true",
                       help="start afresh even if an unfinished run on the same OUT can be resumed")


def add_engine_options(predict: argparse.ArgumentParser) -> None:
    """`--engine ray`: the same labelling on Ray Data actors (`fewlabel.retrieval.engines.ray_batch`)."""
    group = predict.add_argument_group("engine", "Where the labelling runs. --engine ray reads the input with Ray "
                                       "Data (CSV, TSV, JSONL or Parquet) and labels it on a pool of actors that "
                                       "each load the index once; the output is the local engine's. Needs the ray "
                                       "extra: pip install 'fewlabel[ray]'.")
    group.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="local (this process) or ray (default: local)")
    group.add_argument("--ray-address", default=None,
                       help="a Ray cluster (ray://host:10001 or auto); default: start Ray on this machine")
    group.add_argument("--num-workers", type=positive_int, default=None,
                       help="Ray actors, each with its own copy of the index and encoder (default: 1)")


def _predict_on_ray(args: argparse.Namespace, out: Path) -> int:
    """--engine ray: plain kNN (the zero-shot fallback runs with --engine local) on Ray, written as locally."""
    from fewlabel.indexing.store.label_index import LabelIndex
    from fewlabel.retrieval.engines.ray_batch import check_index_for_ray, check_input_for_ray, predict_on_ray
    from fewlabel.retrieval.knn.saved_index import resolve_k_m
    from fewlabel.retrieval.outputs import write_predictions

    if args.fallback != "none":
        raise InvalidArgumentError("--fallback runs with --engine local only")
    given = "--chunk-size" if args.chunk_size else "--no-resume" if args.no_resume else \
        "--faiss-device cuda" if args.faiss_device == "cuda" else None
    if given:
        raise InvalidArgumentError(f"{given} applies to --engine local")
    check_index_for_ray(args.index_dir)  # before this process opens a Milvus Lite file
    check_input_for_ray(args.input, text_col=args.text_col, id_col=args.id_col, header=not args.no_header)
    index = LabelIndex.load(args.index_dir)
    resolve_k_m(index, args.k, args.m)
    predictions = list(predict_on_ray(args.index_dir, args.input, text_col=args.text_col, id_col=args.id_col,
                                      header=not args.no_header, k=args.k, m=args.m, explain=args.explain,
                                      batch_size=args.batch_size, device=args.device, cache=not args.no_cache,
                                      num_workers=args.num_workers or 1, address=args.ray_address, quiet=args.quiet))
    write_predictions(predictions, out, index.label_names)
    print(f"labelled {sum(1 for p in predictions if p.labels)} of {len(predictions)} texts -> {out} (ray)")
    return 0


def add_fallback_options(predict: argparse.ArgumentParser) -> None:
    """`fewlabel predict … --fallback nli|embed|none`: the router's zero-shot fallback (default none: plain kNN)."""
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
    group.add_argument("--min-examples", type=positive_int, default=None,
                       help="a label with fewer examples in the index is scored by zero-shot (default: 5)")
    group.add_argument("--similarity-threshold", type=float, default=None,
                       help="queries whose nearest example is less similar go to zero-shot (default: the value "
                            "stored by --save-fallback, else none)")
    group.add_argument("--fallback-threshold", type=float, default=None,
                       help="the zero-shot's own label threshold (default: top-1 single-label; 0.5 multi-label NLI)")
    group.add_argument("--tune-fallback", metavar="VALID",
                       help="labelled file to tune the similarity threshold on (maximising macro-F1 of the combined "
                            "output); its columns: --text-col, --label-col, --label-sep")
    group.add_argument("--label-col", default=None,
                       help="label column of the --tune-fallback file (default: label) and, when given, of INPUT: "
                            "INPUT's labels are then scored (per-label F1 printed; OUT.per_label.csv/.md, and "
                            "OUT.confusion.png for single-label data; OUT is the whole name, e.g. "
                            "pred.csv.per_label.csv)")
    group.add_argument("--label-sep", default=None, help="label separator of the --tune-fallback file")
    group.add_argument("--save-fallback", action="store_true",
                       help="store the fallback settings (thresholds, labels) in the index's meta.json")


def _check_fallback_options(args: argparse.Namespace) -> None:
    """Fallback options without ``--fallback`` would be silently ignored: refuse them instead."""
    if args.fallback == "nli" and not args.nli_model:
        raise InvalidArgumentError(
            "--fallback nli needs --nli-model FOLDER|HUB_ID (train one with `fewlabel finetune nli`)")
    if args.fallback != "nli" and args.nli_model:
        raise InvalidArgumentError("--nli-model applies to --fallback nli only")
    if args.fallback == "none":
        given = [option for option, value in (
            ("--labels", args.labels), ("--labels-file", args.labels_file), ("--template", args.template),
            ("--min-examples", args.min_examples), ("--similarity-threshold", args.similarity_threshold),
            ("--fallback-threshold", args.fallback_threshold), ("--tune-fallback", args.tune_fallback),
            ("--save-fallback", args.save_fallback or None)) if value is not None]
        if given:
            raise InvalidArgumentError(
                f"{given[0]} applies to the zero-shot fallback: add --fallback nli or --fallback embed")


def _zero_shot(args: argparse.Namespace, index, encoder):
    """The fallback scorer of ``--fallback``; None for plain kNN."""
    from fewlabel.retrieval.zeroshot.scorers import EmbeddingZeroShot, NLIZeroShot, resolve_nli_model

    if args.fallback == "none":
        return None
    common = dict(template=args.template, multi_label=index.multi_label, threshold=args.fallback_threshold,
                  batch_size=args.batch_size, show_progress=not args.quiet)
    if args.fallback == "nli":
        resolve_nli_model(args.nli_model)  # refused before anything loads
        say(args, f"loading NLI model {args.nli_model} …")
        return NLIZeroShot(args.nli_model, device=args.device, **common)
    return EmbeddingZeroShot(encoder, cache=open_cache(args), **common)


def _router_settings(args: argparse.Namespace, index, zero_shot, labels, tuning: bool) -> dict:
    """The router's thresholds and labels: the command line's, else those stored in the index for this scorer."""
    from fewlabel.retrieval.router import DEFAULT_MIN_EXAMPLES, predictor_kwargs

    kwargs: dict = {}
    stored = index.extra.get("fallback") or {}
    if zero_shot is not None and stored and not tuning:
        same = stored.get("fallback") == zero_shot.kind and (
            zero_shot.kind != "nli" or (stored.get("zero_shot") or {}).get("model") == zero_shot.location)
        if same:
            kwargs = predictor_kwargs(stored)
            stored_threshold = kwargs.get("similarity_threshold")
            say(args, f"using the fallback settings stored in {args.index_dir}: similarity threshold "
                      f"{'none' if stored_threshold is None else f'{stored_threshold:.4f}'}")
        else:
            say(args, f"{args.index_dir} stores fallback settings for another model; they are not used")
    if zero_shot is None:
        return kwargs
    if labels is not None:
        kwargs["labels"] = labels
    if args.min_examples is not None:
        kwargs["min_examples"] = args.min_examples
    kwargs.setdefault("min_examples", DEFAULT_MIN_EXAMPLES)
    if args.similarity_threshold is not None:
        kwargs["similarity_threshold"] = args.similarity_threshold
    return kwargs


def cmd_predict(args: argparse.Namespace) -> int:
    from fewlabel.indexing.store.faiss_factory import resolve_faiss_device
    from fewlabel.indexing.store.label_index import LabelIndex
    from fewlabel.retrieval.knn.saved_index import resolve_k_m
    from fewlabel.retrieval.methods.store import load_method
    from fewlabel.retrieval.outputs import claim_output, output_format
    from fewlabel.retrieval.router import Predictor
    from fewlabel.retrieval.zeroshot.labels import check_template

    out = Path(args.out)
    output_format(out)  # fail on a bad output name, or something that is not ours at --out, before any encoding
    claim_output(out, "predictions")
    _check_fallback_options(args)
    id_given = args.id_col is not None
    resolve_id_col(args, args.input)
    if args.engine == "ray":
        if args.keep_cols:
            raise InvalidArgumentError("--keep-cols applies to --engine local")
        return _predict_on_ray(args, out)
    if args.ray_address or args.num_workers:
        raise InvalidArgumentError(
            f"{'--ray-address' if args.ray_address else '--num-workers'} applies to --engine ray")
    resolve_faiss_device(args.faiss_device)  # cuda without a GPU: refused before anything is read
    labels = labels_from_args(args)
    check_template(args.template)
    index = LabelIndex.load(args.index_dir)
    index.use_faiss_device(args.faiss_device)
    resolve_k_m(index, args.k, args.m)  # and on a bad --k/--m
    if args.k is not None and args.k > len(index):
        say(args, f"note: --k {args.k} is more than the {len(index)} rows in the index; every row votes "
                  f"(k={len(index)})")
    rows, gold, total = _read_input(args)  # rows None: INPUT was checked in one pass and is streamed
    analysis = _claim_analysis(out, index.multi_label) if gold else None
    args.label_col = args.label_col or "label"  # the --tune-fallback file's default
    valid = None
    if args.tune_fallback:
        valid = read_labelled(args, args.tune_fallback, ids=id_given)  # INPUT's own id column is not asked of it
    index.check_weights()  # a model retrained in place: refused before it loads
    # the stored method (its arrays checked against the labels and dimension) is read before the encoder loads, so
    # a method folder that does not hold together is one line on stderr, not one after "loading encoder …"
    method = load_method(index) if args.k is None and args.m is None else None
    encoder = load_encoder(args, index.encoder["model"], index.encoder)
    zero_shot = _zero_shot(args, index, encoder)
    kwargs = _router_settings(args, index, zero_shot, labels, tuning=valid is not None)
    predictor = Predictor(index, encoder, zero_shot, k=args.k, m=args.m, cache=open_cache(args),
                          batch_size=args.batch_size, show_progress=not args.quiet, method=method, **kwargs)
    if predictor.weak_labels_:
        say(args, f"scored by zero-shot (fewer than {predictor.min_examples} examples in the index): "
                  f"{', '.join(predictor.weak_labels_)}")
    if valid is not None:
        predictor.tune(valid, source=args.tune_fallback, label_field=args.label_col)
        tuning = predictor.tuning_
        assert tuning is not None  # tune() records it
        threshold = predictor.similarity_threshold
        if not predictor.use_fallback:
            say(args, f"tuned on {tuning['n_valid']} validation rows: no fallback (the index alone scores macro-F1 "
                      f"{tuning['no_fallback_score']:.4f}, the best fallback setting "
                      f"{tuning['best_fallback_score']:.4f}); every text is labelled by the index")
        else:
            say(args, f"tuned on {tuning['n_valid']} validation rows: similarity threshold "
                      f"{'none' if threshold is None else f'{threshold:.4f}'}, {tuning['zero_shot_share']:.0%} of them "
                      f"routed to zero-shot (in full or for weak labels), macro-F1 {tuning['score']:.4f} "
                      f"(kNN alone {tuning['knn_alone']['macro_f1']:.4f})")
    predictions, counted = _label(args, out, predictor, zero_shot, rows, total)
    if args.save_fallback:  # on a fresh read under the write lock, so rows added meanwhile are kept
        with LabelIndex.update(args.index_dir, waiting=lambda message: say(args, message)) as fresh:
            fresh.extra["fallback"] = predictor.settings()
        say(args, f"fallback settings saved in {Path(args.index_dir) / 'meta.json'}")
    n_rows, labelled, route_counts = counted
    routes = f" (routes: {routes_line(route_counts)})" if zero_shot is not None else ""
    print(f"labelled {labelled} of {n_rows} texts -> {out}{routes}")
    if gold:
        assert analysis is not None  # claimed above whenever there is gold
        _score_input(gold, predictions, predictor.label_names_, index.multi_label, analysis,
                     title=f"{Path(args.input).name}: {Path(args.index_dir).name}")
    return 0


# ---- labelled INPUT: per-label scores and error analysis ------------------------------------------------------
NO_LABEL = "(none)"  # the predicted "label" of a text no label reached m votes for, in the confusion matrix


def _read_input(args: argparse.Namespace):
    """(rows, gold, count). When ``--label-col`` is given and INPUT has that column, INPUT is read whole (its
    rows are the gold too). Otherwise it is streamed: read here once to check every row (bounded memory, before
    any model loads) and to count them for the progress bar, then again chunk by chunk (rows None). With
    ``--tune-fallback`` the option may name that file's column only, so an INPUT without it is not scored."""
    from fewlabel.indexing.errors import DataError

    if args.label_col is not None:
        try:
            rows = read_labelled(args, args.input, keep_cols=args.keep_cols)
            return rows, rows, len(rows)
        except DataError as exc:
            if not args.tune_fallback:
                raise
            say(args, f"note: INPUT is not scored ({exc})")
    return None, None, sum(1 for _ in _stream_input(args))


def _stream_input(args: argparse.Namespace):
    from fewlabel.indexing.readers import iter_rows

    return iter_rows(args.input, text_col=args.text_col, id_col=args.id_col, header=not args.no_header,
                     keep_cols=args.keep_cols)


#: predict's options that do not change what is written (the rest key an unfinished run's resumption)
_NOT_IN_OUTPUT = {"handler", "quiet", "chunk_size", "no_resume", "batch_size", "no_cache", "device", "faiss_device",
                  "engine", "ray_address", "num_workers", "out", "input", "index_dir", "save_fallback"}


def _label(args: argparse.Namespace, out: Path, predictor, zero_shot, rows, total: int):
    """Label INPUT into OUT: the rows held in memory (a scored INPUT) in one go, else streamed in chunks with a
    progress bar, resuming an unfinished run. Returns the predictions (when held) and (rows, labelled, routes)."""
    from fewlabel.retrieval.outputs import write_predictions
    from fewlabel.retrieval.router import summarise_routes
    from fewlabel.retrieval.streaming import DEFAULT_CHUNK_ROWS, predict_to_file, resume_key

    if rows is not None:
        predictions = predictor.predict(rows, explain=args.explain)
        write_predictions(predictions, out, predictor.label_names_, routes=zero_shot is not None,
                          kept=args.keep_cols)
        return predictions, (len(predictions), sum(1 for p in predictions if p.labels), summarise_routes(predictions))
    predictor.show_progress = False  # one bar for the whole file, not one per chunk
    if zero_shot is not None and hasattr(zero_shot, "show_progress"):
        zero_shot.show_progress = False
    settings = {name: value for name, value in vars(args).items() if name not in _NOT_IN_OUTPUT}
    settings["fallback_settings"] = predictor.settings() if zero_shot is not None else None
    result = predict_to_file(predictor, _stream_input(args), out, key=resume_key(args.input, args.index_dir, settings),
                             chunk_size=args.chunk_size or DEFAULT_CHUNK_ROWS, explain=args.explain,
                             routes=zero_shot is not None, resume=not args.no_resume, total=total,
                             show_progress=not args.quiet, log=lambda message: say(args, message),
                             kept=args.keep_cols)
    return None, (result.rows, result.labelled, result.routes)


def _claim_analysis(out: Path, multi_label: bool) -> dict:
    from fewlabel.retrieval.analysis import analysis_files, claim_analysis_files

    files = analysis_files(out, plot=None if multi_label else "confusion", table="per_label")
    claim_analysis_files(files)
    return files


def _score_input(gold, predictions, label_names: list[str], multi_label: bool, files: dict, *, title: str) -> None:
    """Per-label precision, recall and F1 of the predictions against INPUT's labels (printed, and written as
    tables), and for single-label data the confusion matrix. Gold labels the index does not know count as misses."""
    from fewlabel.indexing.readers import label_matrix
    from fewlabel.retrieval.analysis import confusion_figure, per_label_scores, save_figure, write_tables

    names = list(label_names) + sorted({lab for r in gold for lab in r.labels} - set(label_names))
    by_id = {p.id: p for p in predictions}
    predicted = [by_id[r.id].labels for r in gold]
    table = per_label_scores(label_matrix(gold, names, "INPUT"), label_matrix(predicted, names, "predictions"),
                             names)
    *per_label, micro, macro = table
    print("per-label F1: " + "  ".join(f"{r['label']} {r['f1']:.4f}" for r in per_label)
          + f"  (micro {micro['f1']:.4f}, macro {macro['f1']:.4f}, {len(gold)} labelled texts)")
    write_tables(table, files["csv"], files["md"])
    written = [files["csv"], files["md"]]
    if not multi_label:
        top = [p[0] if p else NO_LABEL for p in predicted]
        columns = names + ([NO_LABEL] if NO_LABEL in top else [])
        written.insert(0, save_figure(confusion_figure([r.labels[0] for r in gold], top, columns, title=title),
                                      files["png"]))
    print("error analysis -> " + ", ".join(str(p) for p in written))
