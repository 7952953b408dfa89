"""`fewlabel suggest INDEX POOL` and `fewlabel check INDEX`: the labelling loop on the command line (the library
side is :mod:`fewlabel.retrieval.labelling`; the page is `fewlabel serve`'s /ui). The loop closes with `fewlabel
index add INDEX to_label.csv` once the label column is reviewed."""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from fewlabel.indexing.errors import InvalidArgumentError
from fewlabel.retrieval.cli.options import (
    EPILOG,
    add_data_options,
    add_model_options,
    load_encoder,
    open_cache,
    positive_int,
    read_unlabelled,
    resolve_id_col,
    say,
)

NO_INDEX = "-"


def add_labelling_commands(commands: argparse._SubParsersAction) -> None:
    from fewlabel.retrieval.labelling.strategies import STRATEGIES

    suggest = commands.add_parser(
        "suggest", help="pick the pool texts worth labelling next", epilog=EPILOG,
        description="Pick the unlabelled texts of POOL worth labelling next and write them with the index's guess, "
                    "its score and why each was picked. Review the label column (prefilled with the guess), delete "
                    "the rows you skip, and add the file with `fewlabel index add INDEX FILE`. Texts the index "
                    "already holds are never suggested. The pool's vectors are cached (one matrix per pool and "
                    "encoder), so a second suggest on the same pool does not encode it again.")
    suggest.add_argument("index_dir", metavar="INDEX",
                         help=f"index folder, or {NO_INDEX} when nothing is labelled yet (then give --model)")
    suggest.add_argument("pool", metavar="POOL", help="unlabelled texts (CSV, TSV or JSONL)")
    add_data_options(suggest, labels=False, auto_id=True)
    suggest.add_argument("--n", type=positive_int, default=50, help="how many texts to suggest (default: 50)")
    suggest.add_argument("--strategy", choices=STRATEGIES, default="auto",
                         help="auto (default): diverse representatives while the index is small (under 256 rows or "
                              "4 per label), then the most uncertain texts spread over clusters; uncertainty: the "
                              "smallest margin of the method's probabilities; diverse: k-means representatives; "
                              "random")
    suggest.add_argument("--out", required=True, help="CSV to write (id,text,label,guess,score,strategy,reason)")
    suggest.add_argument("--seed", type=int, default=0, help="seed of k-means and random picks (default: 0)")
    suggest.add_argument("--max-scan", type=positive_int, default=None,
                         help="score a random sample of at most this many pool texts (bounds the time of a Naive "
                              "Bayes method on a huge pool; default: every text, but 10,000 for auto past its cold "
                              "start)")
    suggest.add_argument("--model", default=None, help=f"encoder when INDEX is {NO_INDEX} (default: e5-small)")
    add_model_options(suggest)
    suggest.set_defaults(handler=cmd_suggest)

    check = commands.add_parser(
        "check", help="list labelled rows whose label looks wrong", epilog=EPILOG,
        description="Refit the index's method on folds of its rows, give every row the probabilities of a model "
                    "that never saw it, and let cleanlab (find_label_issues) flag the rows whose label looks wrong, "
                    "ranked; with the given label, the suggested one and the model's confidence. Also lists exact "
                    "duplicate texts with conflicting labels.")
    check.add_argument("index_dir", metavar="INDEX", help="index folder")
    check.add_argument("--out", default=None, help="CSV of the suspects and conflicting duplicates")
    check.add_argument("--folds", type=positive_int, default=5, help="cross-validation folds (default: 5)")
    check.add_argument("--all", action="store_true", help="rank every row, not only the ones cleanlab flags")
    check.add_argument("--top", type=positive_int, default=20, help="suspects printed (default: 20)")
    check.add_argument("--seed", type=int, default=0, help="seed of the folds (default: 0)")
    add_model_options(check)
    check.set_defaults(handler=cmd_check)


# ---- outputs --------------------------------------------------------------------------------------------------
def _ours(path: Path, columns: tuple[str, ...]) -> bool:
    from fewlabel.indexing.files import first_line_of

    return tuple(next(csv.reader([first_line_of(path)]), [])[:len(columns)]) == columns


def claim_csv(path: str, columns: tuple[str, ...], what: str) -> Path:
    """``--out`` must end in .csv and hold nothing but an earlier output of the same command."""
    from fewlabel.indexing.files import refuse_foreign

    out = Path(path)
    if out.suffix.lower() != ".csv":
        raise InvalidArgumentError(f"--out {out}: give a .csv file name")
    refuse_foreign(out, folder=False, what=what, ours=lambda p: _ours(p, columns))
    return out


def _label_cell(labels: list[str], multi_label: bool) -> str:
    """What `index add` reads back: a plain label, or a JSON list (always understood, whatever --label-sep)."""
    if not labels:
        return ""
    return json.dumps(labels, ensure_ascii=False) if multi_label or len(labels) > 1 else labels[0]


def write_suggestions(out: Path, suggestions, multi_label: bool) -> None:
    from fewlabel.indexing.files import atomic_file
    from fewlabel.retrieval.labelling.suggest import SUGGEST_COLUMNS

    with atomic_file(out) as fh:
        writer = csv.writer(fh)
        writer.writerow(SUGGEST_COLUMNS)
        for s in suggestions:
            writer.writerow([s.id, s.text, _label_cell(s.guess, multi_label),
                             json.dumps(s.guess, ensure_ascii=False), "" if s.score is None else f"{s.score:.4f}",
                             s.strategy, s.reason])


def write_check(out: Path, result) -> None:
    from fewlabel.indexing.files import atomic_file
    from fewlabel.retrieval.labelling.check import CHECK_COLUMNS

    dumps = lambda value: json.dumps(value, ensure_ascii=False)  # noqa: E731
    with atomic_file(out) as fh:
        writer = csv.writer(fh)
        writer.writerow(CHECK_COLUMNS)
        for s in result.suspects:
            writer.writerow([s.rank, s.id, s.text, dumps(s.given), dumps(s.suggested), f"{s.confidence:.4f}",
                             f"{s.quality:.4f}", int(s.flagged), "label"])
        for c in result.conflicts:
            for row_id, labels in zip(c.ids, c.labels, strict=True):
                writer.writerow(["", row_id, c.text, dumps(labels), "", "", "", 1, "duplicate"])


# ---- commands -------------------------------------------------------------------------------------------------
def _vectors_of_index(args: argparse.Namespace, index):
    """The index's vectors: read back from an exact FAISS index, else encoded (through the cache)."""
    from fewlabel.retrieval.methods.index_method import index_vectors

    encoder = None
    if not (index.store.kind == "faiss" and index.factory == "Flat"):
        encoder = load_encoder(args, index.encoder["model"], index.encoder)
    return index_vectors(index, encoder, open_cache(args) if encoder is not None else None, args.batch_size)


def cmd_suggest(args: argparse.Namespace) -> int:
    from fewlabel.indexing.encoders.cache import encode_with_cache
    from fewlabel.indexing.encoders.registry import DEFAULT_MODEL
    from fewlabel.retrieval.labelling.pool import pool_vectors
    from fewlabel.retrieval.labelling.suggest import SUGGEST_COLUMNS, suggest

    out = claim_csv(args.out, SUGGEST_COLUMNS, "a suggestions file (id,text,label,guess,…)")
    index = None
    if args.index_dir != NO_INDEX:
        from fewlabel.indexing.store.label_index import LabelIndex

        if args.model:
            raise InvalidArgumentError("--model applies when INDEX is '-' (an index encodes with its own encoder)")
        index = LabelIndex.load(args.index_dir)
    started = time.perf_counter()
    resolve_id_col(args, args.pool)  # suggestions keyed by the pool's own ids, ready for `index add --id-col id`
    pool = read_unlabelled(args, args.pool)
    texts = [r.text for r in pool]
    encoder = None

    def encode(missing: list[str]):
        nonlocal encoder
        if encoder is None:
            encoder = load_encoder(args, index.encoder["model"], index.encoder) if index is not None else \
                load_encoder(args, args.model or DEFAULT_MODEL)
        if index is not None:
            index.check_encoder(encoder)
        return encode_with_cache(encoder, missing, open_cache(args), batch_size=args.batch_size,
                                 show_progress_bar=not args.quiet)

    if index is not None:
        record = index.encoder
    else:
        encoder = load_encoder(args, args.model or DEFAULT_MODEL)
        record = encoder.describe(normalize=True)
    vectors, hit = pool_vectors(record, texts, encode, cache=not args.no_cache)
    say(args, f"pool: {len(texts):,} texts, vectors {'from the pool cache' if hit else 'encoded and cached'}")
    model = None
    if index is not None:
        from fewlabel.retrieval.labelling.model import index_model

        model = index_model(index, _vectors_of_index(args, index))
    picked = suggest(index, pool, vectors, model, n=args.n, strategy=args.strategy, seed=args.seed,
                     max_scan=args.max_scan)
    write_suggestions(out, picked, index.multi_label if index is not None else False)
    how = f"method {model.name}" if model is not None else "no index yet"
    print(f"suggested {len(picked)} of {len(pool):,} pool texts ({args.strategy}, {how}) -> {out} "
          f"in {time.perf_counter() - started:.1f}s")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from fewlabel.indexing.store.label_index import LabelIndex
    from fewlabel.retrieval.labelling.check import CHECK_COLUMNS, check_index

    out = claim_csv(args.out, CHECK_COLUMNS, "a check report (rank,id,text,given,…)") if args.out else None
    index = LabelIndex.load(args.index_dir)
    result = check_index(index, _vectors_of_index(args, index), folds=args.folds, seed=args.seed,
                         everything=args.all)
    for note in result.notes:
        say(args, f"note: {note}")
    flagged = sum(s.flagged for s in result.suspects)
    print(f"{flagged} of {len(index)} rows flagged by cleanlab on {result.folds}-fold out-of-fold probabilities "
          f"of {result.method}; {len(result.conflicts)} duplicate texts with conflicting labels")
    for s in result.suspects[:args.top]:
        text = s.text if len(s.text) <= 60 else s.text[:59] + "…"
        print(f"{s.rank:>4}  {s.id:<12} {'|'.join(s.given):<18} -> {'|'.join(s.suggested):<18} "
              f"{s.confidence:.2f}  {text}")
    for c in result.conflicts[:args.top]:
        print(f"dup   {', '.join(c.ids)}: {' vs '.join('|'.join(lab) for lab in c.labels)}  {c.text[:60]}")
    if out is not None:
        write_check(out, result)
        print(f"-> {out}")
    return 0
