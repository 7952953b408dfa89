"""Where fewlabel keeps what it builds once and reuses (rebuilt models, the embedding cache).

One folder, `FEWLABEL_HOME` when set, else the user cache folder, so that CI, tests and users can
point it somewhere disposable without touching code."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


def fewlabel_home() -> Path:
    """The root of fewlabel's cache: `$FEWLABEL_HOME`, else `$XDG_CACHE_HOME/fewlabel`, else
    `~/.cache/fewlabel`."""
    env = os.environ.get("FEWLABEL_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fewlabel"


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success replace `target` with it in one rename.

    A crash (or exception) inside the block leaves `target` exactly as it was and removes the
    temporary folder, so readers never see half a model or half an index."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(path: Path) -> Iterator[TextIO]:
    """Yield a text file (UTF-8, no newline translation) that replaces `path` in one rename on success.

    An error inside the block removes the temporary file and leaves an existing `path` untouched, so an
    output is never half written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

