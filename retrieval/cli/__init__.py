"""`fewlabel`: build label indexes, label new text, run the demo, score sentence pairs (STS), fine-tune, zero-shot,
relation extraction, and (through the ``fewlabel.commands`` entry point) `bench`.

The parser is in :mod:`.parser`, one module per command group, every shared option once in :mod:`.options`.
This module is only the process around a command, and imports nothing but the standard library, so that
everything after the first instant (parsing, plugin loading, the handlers' heavy imports) is inside the
error handling below:

- every error a user can cause is one line on stderr and exit status 2 (FEWLABEL_DEBUG=1 shows the traceback);
- Ctrl-C anywhere is one line and exit status 130;
- a closed pipe (``fewlabel index info DIR | head -1``) ends quietly;
- ``-q`` silences progress bars and third-party chatter (Python warnings, library logs)."""

from __future__ import annotations

import os
import shlex
import sys

__all__ = ["build_parser", "main", "run"]


def build_parser():
    """The full argument parser (see :mod:`fewlabel.retrieval.cli.parser`)."""
    from fewlabel.retrieval.cli.parser import build_parser as build

    return build()


def _quiet_third_parties() -> None:
    """What ``-q`` silences beyond fewlabel's own bars and chatter. Called before the parser is built (tqdm reads
    TQDM_DISABLE once, when it is first imported, and parsing imports it), and again after parsing."""
    import logging
    import warnings

    os.environ.setdefault("TQDM_DISABLE", "1")  # every library's tqdm bar (sentence-transformers' model card, …)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights"/"Writing" bars
    os.environ["FEWLABEL_QUIET"] = "1"  # read where no args reach (the one-off ONNX export and e5 rebuild lines)
    os.environ.setdefault("GLOG_minloglevel", "2")  # absl/glog start-up lines of native libraries
    os.environ.setdefault("RAY_LOG_TO_STDERR", "0")
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)


def _closed_pipe() -> int:
    """Point stdout at /dev/null so the interpreter's final flush does not complain, and exit as a process
    killed by SIGPIPE would (128 + 13)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


def main(argv: list[str] | None = None, *, prog: str = "fewlabel") -> int:
    """Run one command; ``prog`` is what the command line recorded in reports starts with."""
    from fewlabel.indexing.errors import FewlabelError

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if "-q" in argv or "--quiet" in argv:  # before any library is imported (see _quiet_third_parties)
            _quiet_third_parties()
        args = build_parser().parse_args(argv)
        args.command_line = f"{prog} " + shlex.join(argv)  # what reports record as their command
        if args.quiet:
            _quiet_third_parties()
        if getattr(args, "device", None):  # a device that is not there: refused before anything loads
            from fewlabel.indexing.hf import pick_device

            pick_device(args.device)
        return args.handler(args)
    except FewlabelError as exc:
        print(f"fewlabel: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fewlabel: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _closed_pipe()
    except Exception as exc:  # a bug or an environment problem: still one line unless debugging
        if os.environ.get("FEWLABEL_DEBUG"):
            raise
        print(f"fewlabel: error: {type(exc).__name__}: {exc} (set FEWLABEL_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


def run() -> None:
    """The console script: exit with :func:`main`'s status, flushing stdout inside the pipe handling."""
    status = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        status = _closed_pipe()
    sys.exit(status)
