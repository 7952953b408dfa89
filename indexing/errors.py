"""Errors users see. Every message names the file, line or field at fault, because a
user with a 40,000-row CSV needs to know *where*, not just *what*."""

from __future__ import annotations


class FewlabelError(Exception):
    """Base class: the CLI prints these as one line and exits 2 (no traceback). Raised as one of the classes
    below: a library user catches ``ValueError`` for anything they passed wrong, as with scikit-learn."""


class InvalidArgumentError(FewlabelError, ValueError):
    """An argument or option value fewlabel cannot use (a bad k, an unknown method, an --out that is not ours, a
    combination of options that cannot work). A ``ValueError``, as scikit-learn's ``InvalidParameterError``."""


class SetupError(FewlabelError):
    """What was asked is fine, but this machine or installation cannot do it: a missing extra, no GPU, a
    server that cannot be reached or a port that cannot be bound, a folder another command holds locked."""


class DataError(FewlabelError, ValueError):
    """Bad input data. Carries the file, 1-based line number and field when known. Also a ``ValueError``, as
    scikit-learn and Python code expect of a bad value."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.path, self.line, self.field, self.reason = path, line, field, message
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


class ModelError(FewlabelError):
    """An encoder could not be found or loaded (unknown name, bad folder, no hub access)."""


class IndexMismatchError(FewlabelError, ValueError):
    """A saved index does not fit what it is used with (encoder, dimension, format). Also a ``ValueError``."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when it has none): library errors can run to
    pages, and a user's error is one line."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
