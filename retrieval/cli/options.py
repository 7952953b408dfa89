"""Every option more than one command takes, defined once, and the small helpers that read them back.

The command modules (`index`, `predict`, `sts`, …) and `fewlabel bench` (through its entry point) add their
options from here, so a shared option has one name, one default and one help text everywhere. Nothing here
imports torch or FAISS: `fewlabel --help` stays fast."""

from __future__ import annotations

import argparse
import sys

from fewlabel.indexing.encoders.onnx_backend import BACKENDS
from fewlabel.indexing.encoders.registry import DEFAULT_BACKEND, DEFAULT_MODEL, REGISTRY
from fewlabel.indexing.errors import InvalidArgumentError

__all__ = ["ENCODE_BATCH_SIZE", "EPILOG", "PAIRS_HELP", "add_augment_options", "add_data_options", "add_global_options",
           "add_model_options", "add_training_options", "augmenter_from_args", "fmt_metric", "leaf_parsers",
           "load_encoder", "open_cache", "read_labelled", "say"]

ENCODE_BATCH_SIZE = 32  # texts per encoder batch, for every command that encodes
EPILOG = "Data files: .csv, .tsv/.txt, .jsonl. Models: " + ", ".join(
    f"{name} ({spec.languages})" for name, spec in sorted(REGISTRY.items())
) + ", a local model folder, or a Hugging Face id (needs the hub)."
PAIRS_HELP = ("pair file: KorSTS TSV (with header), STS-B TSV (no header), KLUE-STS JSON, or CSV/TSV with "
              "sentence1,sentence2 [,id,label,binary-label]; the layout is detected from the content")
QUIET_HELP = "no progress bars or chatter (results and errors only); before or after the command name"


# ---- option types: a bad value is refused while parsing, before anything loads ---------------------------------
def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes, k, steps, seeds): 0 or -3 is a mistake, never silently 1."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (counts where 0 means none or all, as the option's help says)."""
    return _whole_number(text, 0)


def _finite_number(text: str, *, above_zero: bool, noun: str = "number") -> float:
    bound = "> 0" if above_zero else ">= 0"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {noun} {bound}, got {text!r}") from None
    if not (value > 0 if above_zero else value >= 0) or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite {noun} {bound}, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (epochs, learning rates, votes)."""
    return _finite_number(text, above_zero=True)


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (waits, where 0 means none)."""
    return _finite_number(text, above_zero=False)


def minutes(text: str) -> float:
    """A finite number of minutes >= 0 (a time budget, where 0 means none)."""
    return _finite_number(text, above_zero=False, noun="number of minutes")


def fraction(text: str) -> float:
    """A number in [0, 1) (warm-up ratio, label smoothing, held-out shares)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 up to (not including) 1, got {text}")
    return value


def separator(text: str) -> str:
    """A non-empty separator (an empty one would be ignored, reading "a,b" as one label)."""
    if not text:
        raise argparse.ArgumentTypeError("the separator is empty; give one such as ',' or '|'")
    return text


def device_name(text: str) -> str:
    """cpu, cuda, cuda:N, mps (whether it is present is checked when the model loads, still before any work)."""
    from fewlabel.indexing.hf import check_device_name

    try:
        return check_device_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---- options ------------------------------------------------------------------------------------------------
def add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``-q/--quiet``, accepted before the command (``top``) and after it: a sub-command's copy has no default
    of its own (``SUPPRESS``), so it only sets the value when given and never resets the top-level one."""
    if top:
        parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    else:
        parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP)


def leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser at the end of a command path (``index build``, ``sts score``, …), walking sub-commands."""
    leaves: list[argparse.ArgumentParser] = []
    children = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not children:
        return [parser]
    seen: set[int] = set()
    for action in children:
        for child in action.choices.values():
            if id(child) not in seen:  # aliases map several names to one parser
                seen.add(id(child))
                leaves.extend(leaf_parsers(child))
    return leaves


def column_names(text: str) -> list[str]:
    """Comma-separated column names (``--keep-cols text,source``), each once; an empty name is a mistake."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected column names separated by commas, got {text!r}")
    return list(dict.fromkeys(names))


def add_data_options(p: argparse.ArgumentParser, *, labels: bool, ids: bool = True, predicting: bool = False,
                     auto_id: bool = False) -> None:
    """Columns of a labelled (``labels``) or unlabelled text file, and ``--no-header``. ``predicting``: the input
    of a command that writes one prediction per row, keyed by its ``id`` column when it has one
    (:func:`resolve_id_col`), with ``--keep-cols`` to carry input columns into the output; ``auto_id``: the ``id``
    column rule alone (`suggest`, whose output carries the text already)."""
    p.add_argument("--text-col", default="text", help="column holding the text (default: text)")
    if labels:
        p.add_argument("--label-col", default="label",
                       help="column holding the label(s) (default: label, or labels when the file has only that)")
        p.add_argument("--label-sep", default=None,
                       type=separator, help="separator between several labels in one field, e.g. ',' or '|' "
                            "(a JSON list such as [\"a\",\"b\"] is always understood)")
    if ids:
        p.add_argument("--id-col", default=None, help="column with row ids (default: " + (
            "the input's id column when it has one, else the row number)" if predicting or auto_id else "row number)"))
    if predicting:
        p.add_argument("--keep-cols", type=column_names, default=[], metavar="COL[,COL…]",
                       help="input columns to copy into the output after the predictions, e.g. text (a name the "
                            "output already has, such as labels, is written as input:labels)")
    p.add_argument("--no-header", action="store_true",
                   help="CSV/TSV without a header: give columns by 0-based position, e.g. --text-col 0")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """What every command that encodes text takes: batch size, device, the embedding cache and the backend."""
    p.add_argument("--batch-size", type=positive_int, default=ENCODE_BATCH_SIZE,
                   help=f"texts per encoder batch (default: {ENCODE_BATCH_SIZE})")
    p.add_argument("--device", type=device_name, default=None,
                   help="cpu, cuda, cuda:1 … (default: cuda when present)")
    p.add_argument("--no-cache", action="store_true",
                   help="do not read or write the embedding cache ($FEWLABEL_HOME/cache)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="run the encoder with torch, onnxruntime on an ONNX export (onnx: the same vectors) or its "
                        "int8 quantisation (onnx-int8: faster, slightly different vectors) "
                        f"(default: {DEFAULT_BACKEND} on the CPU, torch on a GPU; for an existing index, a backend "
                        "that makes its kind of vectors)")


def add_faiss_device_option(p: argparse.ArgumentParser) -> None:
    """``--faiss-device``: where the FAISS index is searched (read back with
    :meth:`~fewlabel.indexing.store.label_index.LabelIndex.use_faiss_device`)."""
    p.add_argument("--faiss-device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where FAISS searches: cuda copies the index to the GPU(s) for search (faiss-gpu, the gpu "
                        "extra; the folder keeps a CPU index); auto (default) is cuda when FAISS sees a GPU")


def add_training_options(p: argparse.ArgumentParser, *, epochs: float = 2, lr: float = 2e-5,
                         max_length_help: str = "tokens per pair") -> None:
    """The options every `fewlabel finetune` command shares (read back by `fewlabel.retrieval.cli.finetune`'s
    ``training_settings`` and ``run_options``)."""
    p.add_argument("--epochs", type=positive_float, default=epochs,
                   help=f"passes over the training data (default: {epochs:g})")
    p.add_argument("--lr", type=positive_float, default=lr, help=f"learning rate (default: {lr:g})")
    p.add_argument("--batch-size", type=positive_int, default=16, help="training batch (default: 16)")
    p.add_argument("--max-length", type=positive_int, default=128, help=f"{max_length_help} (default: 128)")
    p.add_argument("--warmup-ratio", type=fraction, default=0.1,
                   help="share of the steps with a rising learning rate (default: 0.1)")
    p.add_argument("--seed", type=int, default=42, help="random seed of the run (default: 42)")
    p.add_argument("--max-steps", type=positive_int, default=None, help="stop after N optimiser steps (smoke runs)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if OUT/checkpoints has a checkpoint")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep OUT/checkpoints after training")
    p.add_argument("--device", type=device_name, default=None, help="cpu, cuda, cuda:1 … (default: cuda when present)")


def add_base_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", default=DEFAULT_MODEL,
                   help=f"model to start from: e5-small, minilm or a local folder (default: {DEFAULT_MODEL})")


def add_augment_options(p: argparse.ArgumentParser) -> None:
    """``--augment`` and its settings (`index build`, `bench slices`), read back by :func:`augmenter_from_args`."""
    from fewlabel.indexing.augment import AUGMENT_METHODS, AUGMENT_UNITS

    group = p.add_argument_group("augmentation", "Label-preserving perturbations of the labelled rows (never of "
                                 "validation, dev or test rows): N copies per row, reproducible by --augment-seed.")
    group.add_argument("--augment", choices=AUGMENT_METHODS, default=None,
                       help="eda: each copy swaps, deletes or inserts tokens (one of the three at random); or one "
                            "operation only (default: no augmentation)")
    group.add_argument("--augment-copies", type=positive_int, default=None,
                       help="copies per labelled row; identical copies are dropped (default: 4)")
    group.add_argument("--augment-p", type=fraction, default=None,
                       help="share of tokens changed per copy (default: 0.1)")
    group.add_argument("--augment-unit", choices=AUGMENT_UNITS, default=None,
                       help="word: whitespace-separated words (eojeol for Korean); char: single characters, spaces "
                            "kept (default: word)")
    group.add_argument("--augment-seed", type=int, default=None, help="seed of the copies (default: 0)")


# ---- reading them back --------------------------------------------------------------------------------------
def augmenter_from_args(args: argparse.Namespace):
    """The :class:`~fewlabel.indexing.augment.Augmenter` of :func:`add_augment_options`' options, or None without
    ``--augment`` (its settings alone are refused rather than ignored)."""
    from fewlabel.indexing.augment import Augmenter

    given = {name: getattr(args, f"augment_{name}") for name in ("copies", "p", "unit", "seed")}
    if not args.augment:
        first = next((name for name, value in given.items() if value is not None), None)
        if first:
            raise InvalidArgumentError(
                f"--augment-{first} applies to augmentation: add --augment eda (or swap, delete, "
                                "insert)")
        return None
    return Augmenter(args.augment, **{name: value for name, value in given.items() if value is not None})


def say(args: argparse.Namespace, message: str) -> None:
    """Chatter on stderr, unless ``--quiet``."""
    if not args.quiet:
        print(message, file=sys.stderr)


def open_cache(args: argparse.Namespace):
    """The embedding cache, or None with ``--no-cache``."""
    from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path

    return None if args.no_cache else EmbeddingCache(default_cache_path())


def resolve_id_col(args: argparse.Namespace, path: str) -> None:
    """Key a prediction command's output by INPUT's ``id`` column when it has one and ``--id-col`` is not given
    (read from the header, or the first JSON Lines record); otherwise ids stay row numbers."""
    from fewlabel.indexing.readers import has_column

    if args.id_col is None and not args.no_header and has_column(path, "id"):
        args.id_col = "id"


def read_labelled(args: argparse.Namespace, path: str, *, keep_cols: list[str] | None = None, ids: bool = True):
    """Labelled rows of ``path`` with the columns of :func:`add_data_options`. The one convention: the label
    column is ``label`` by default, and a file that has ``labels`` instead (the bundled GoEmotions sample does) is
    read from that, with a note; a file with neither is the usual one-line error about ``label``. ``keep_cols``:
    columns read into each row's ``extra`` (``--keep-cols``); ``ids=False`` numbers the rows whatever
    ``--id-col`` says (a second file that need not have INPUT's id column)."""
    from fewlabel.indexing.errors import DataError
    from fewlabel.indexing.readers import read_rows

    def read(label_col: str):
        return read_rows(path, text_col=args.text_col, label_col=label_col, id_col=args.id_col if ids else None,
                         label_sep=args.label_sep, header=not args.no_header, keep_cols=keep_cols or ())

    try:
        return read(args.label_col)
    except DataError as first:
        if args.label_col != "label" or args.no_header:
            raise
        try:
            rows = read("labels")
        except DataError:
            raise first from None
        say(args, f"note: {path} has no 'label' column; reading its 'labels' column (--label-col labels)")
        args.label_col = "labels"
        return rows


def read_unlabelled(args: argparse.Namespace, path: str):
    """Texts (and ids) of ``path`` with the columns of :func:`add_data_options`; labels are ignored."""
    from fewlabel.indexing.readers import read_texts

    return read_texts(path, text_col=args.text_col, id_col=args.id_col, header=not args.no_header)


def load_encoder(args: argparse.Namespace, model: str, recorded: dict | None = None):
    """The encoder of ``model`` with ``--device`` and ``--backend``; ``recorded`` (an index's meta.json encoder)
    picks a backend that makes that index's kind of vectors, and refuses one that does not."""
    from fewlabel.indexing.encoders.encoder import Encoder
    from fewlabel.indexing.encoders.onnx_backend import backend_for_index
    from fewlabel.indexing.hf import pick_device

    device = pick_device(args.device)  # a device or a model that is not there is refused before anything loads
    Encoder.check_name(model)
    backend = getattr(args, "backend", None)
    if recorded is not None:
        backend = backend_for_index(recorded, backend)
    say(args, f"loading encoder {model} …")
    return Encoder(model, device=device, backend=backend)


def torch_only(args: argparse.Namespace, what: str) -> None:
    """Refuse ``--backend onnx|onnx-int8`` where only torch runs (the cross-encoder heads: sentence-transformers'
    ONNX backend needs optimum, which does not install beside transformers 5; see README "Fast inference")."""

    if getattr(args, "backend", None) not in (None, "torch"):
        raise InvalidArgumentError(f"--backend {args.backend}: {what} runs on torch only (the ONNX backends are for "
                            "bi-encoders); leave --backend out or give --backend torch")


def fmt_metric(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
