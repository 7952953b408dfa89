"""Where fewlabel keeps what it builds once and reuses (rebuilt models, the embedding cache), and how it writes
what the user owns: atomically, under a lock, keeping file modes, and never over something that is not ours.

One home folder, `FEWLABEL_HOME` when set, else the user cache folder, so that CI, tests and users can point
it somewhere disposable without touching code.

Replacing a folder (an index) is one atomic exchange of the new folder with the old one (Linux
``renameat2(RENAME_EXCHANGE)``), so a complete index, old or new, stands at the target at every instant. Where
the exchange is not available the old folder is first renamed aside to ``.NAME.old-PID``; a process killed
between the two renames is repaired by the next command, which puts the old folder back. Leftovers of dead
processes (``.NAME.tmp-PID-…``, ``.NAME.old-PID``) are removed by the next command that touches the target."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from fewlabel.indexing.errors import InvalidArgumentError, SetupError

__all__ = ["atomic_directory", "atomic_file", "fewlabel_home", "folder_lock", "recover_directory", "replace_directory",
           "resolve_target", "staging_directory"]

LOCK_TIMEOUT_S = 600.0  # a second writer waits this long for the first, then gives up with a clear message
FAULT_ENV = "FEWLABEL_FAULT"  # tests: kill this process at a named step of a replacement


def fewlabel_home() -> Path:
    """The root of fewlabel's cache: `$FEWLABEL_HOME`, else `$XDG_CACHE_HOME/fewlabel`, else
    `~/.cache/fewlabel`."""
    env = os.environ.get("FEWLABEL_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fewlabel"


# ---- faults (for the tests that kill a writer at each step) ---------------------------------------------------
def fault_point(step: str) -> None:
    """Die at once (SIGKILL, no cleanup) when the environment names this step: how the tests prove that a
    kill at any instant leaves a complete target."""
    if os.environ.get(FAULT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


# ---- modes ----------------------------------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _mode_for(path: Path, *, directory: bool) -> int:
    """The mode a replacement gets: the existing file's, else the default for a new one under the user's umask
    (mkstemp/mkdtemp create 0600/0700, which would silently hide outputs from the user's group)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return (0o777 if directory else 0o666) & ~_umask()


# ---- leftovers of dead processes ----------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(target: Path) -> Iterator[tuple[Path, str, int]]:
    """(path, kind, pid) of the temporary and set-aside copies of ``target`` that writers leave behind."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(tmp|old)-(\d+)(-.*)?$")
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        match = pattern.match(entry.name)
        if match:
            yield entry, match.group(1), int(match.group(2))


def recover_directory(target: str | os.PathLike) -> None:
    """Repair what a killed writer left at ``target``: put a set-aside old folder back when the target is
    missing, and remove the temporary and old copies whose process is dead. Cheap; every reader and writer of
    an index calls it first."""
    target = resolve_target(target)
    dead = [(path, kind) for path, kind, pid in _leftovers(target) if not _alive(pid)]
    if not target.exists():
        olds = sorted((p for p, kind in dead if kind == "old"), key=lambda p: p.stat().st_mtime, reverse=True)
        if olds:
            os.rename(olds[0], target)
            dead = [(p, k) for p, k in dead if p != olds[0]]
    for path, _ in dead:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step with Linux's ``renameat2(RENAME_EXCHANGE)``; False where the system or the
    file system cannot (then the caller falls back to two renames)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


# ---- atomic writers -------------------------------------------------------------------------------------------
def resolve_target(target: str | os.PathLike) -> Path:
    """The real path a write to ``target`` lands on. A symlink to a folder or file (``current -> real_v1``, the
    usual "current version" pattern) is followed, so the real folder is replaced and the link stays a link;
    every writer (index, outputs, model folders) applies this one rule. A broken link is refused by
    :func:`refuse_foreign` before anything is written."""
    target = Path(target).expanduser()
    return Path(os.path.realpath(target)) if target.is_symlink() else target


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success replace `target` with it so that a complete folder,
    old or new, stands at `target` at every instant (see the module docstring). A symlink at `target` is
    followed (:func:`resolve_target`).

    An exception inside the block leaves `target` exactly as it was and removes the temporary folder. The
    caller makes sure `target` is ours to replace (and holds :func:`folder_lock` when others may write)."""
    target = resolve_target(target)
    tmp = staging_directory(target)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_directory(tmp, target)


def staging_directory(target: str | os.PathLike) -> Path:
    """A new empty folder beside ``target`` (``.NAME.tmp-PID-…``) to build its replacement in; a dead process's
    leftover is removed by the next :func:`recover_directory`."""
    target = resolve_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(target)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))


def replace_directory(tmp: Path, target: str | os.PathLike) -> None:
    """Put the complete folder ``tmp`` (made by :func:`staging_directory`) at ``target`` in one atomic step,
    removing the folder it replaces; on failure ``target`` is as it was and ``tmp`` is removed."""
    target = resolve_target(target)
    try:
        os.chmod(tmp, _mode_for(target, directory=True))
        fault_point("directory:before-replace")
        if not target.exists():
            os.rename(tmp, target)
            return
        fallback = os.environ.get(FAULT_ENV) == "directory:between-renames"  # the tests' way to reach it
        if not fallback and _exchange(tmp, target):  # target is new, tmp holds the old folder
            fault_point("directory:after-exchange")
            shutil.rmtree(tmp, ignore_errors=True)
            return
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
        fault_point("directory:between-renames")
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(path: Path) -> Iterator[TextIO]:
    """Yield a text file (UTF-8, no newline translation) that replaces `path` in one rename on success.

    An error inside the block removes the temporary file and leaves an existing `path` untouched, so an output
    is never half written. The replacement keeps the existing file's mode (a new file follows the umask)."""
    path = resolve_target(path)  # a link to the output: the real file is replaced, the link stays
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(path)  # temporary files of killed writers
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            yield fh
        os.chmod(tmp, _mode_for(path, directory=False))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- locks ----------------------------------------------------------------------------------------------------
@contextmanager
def folder_lock(target: str | os.PathLike, *, waiting: Callable[[str], None] | None = None,
                timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the write lock of ``target`` (an index folder or an output file) for the block: a second writer
    waits (``waiting`` is told once) and gives up after ``timeout`` seconds with a clear error. The lock file,
    ``.NAME.lock``, sits beside the target, because the target folder itself is replaced on every save."""
    from filelock import FileLock, Timeout

    target = resolve_target(target).absolute()  # one lock for the link and the folder it names
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.with_name(f".{target.name}.lock")))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if waiting is not None:
            waiting(f"waiting for another fewlabel command that is writing {target} …")
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise SetupError(f"{target}: another fewlabel command has been writing it for {timeout:.0f} s "
                                f"(lock {lock.lock_file}); try again when it has finished") from None
    try:
        yield
    finally:
        lock.release()


# ---- what is at --out -----------------------------------------------------------------------------------------
def refuse_foreign(path: str | os.PathLike, *, folder: bool, what: str, ours: Callable[[Path], bool],
                   option: str = "--out") -> None:
    """Refuse to write ``what`` at ``path`` when something is there that fewlabel did not make: a user's folder
    or file is never replaced or removed. Nothing there, an empty folder (for folders) or something ``ours``
    recognises as a fewlabel ``what`` is fine. Called before any model loads, so a mistake costs nothing."""
    path = Path(path).expanduser()
    if not path.exists() and not path.is_symlink():
        if path.parent.exists() and not path.parent.is_dir():
            raise InvalidArgumentError(f"{option} {path}: {path.parent} is a file, not a folder")
        return
    if path.is_symlink() and not path.exists():
        raise InvalidArgumentError(f"{option} {path}: a broken link is there; remove it or choose another {option}")
    if folder:
        if not path.is_dir():
            raise InvalidArgumentError(
                f"{option} {path}: a file is there, not {what}; fewlabel never replaces a file it "
                                f"did not make: choose another {option}")
        entries = sorted(p.name for p in path.iterdir())
        if not entries or ours(path):
            return
        shown = ", ".join(entries[:4]) + (f" and {len(entries) - 4} more" if len(entries) > 4 else "")
        raise InvalidArgumentError(f"{option} {path}: this folder holds {shown}, and is not {what}; fewlabel never "
                            f"replaces a folder it did not make: choose another {option}")
    if path.is_dir():
        raise InvalidArgumentError(f"{option} {path}: a folder is there; give a file name for {what}")
    if path.stat().st_size and not ours(path):
        raise InvalidArgumentError(f"{option} {path}: this file is not {what} written by fewlabel; fewlabel never "
                            f"replaces a file it did not make: choose another {option}")


def first_line_of(path: Path, limit: int = 65536) -> str:
    """The first line of a text file (empty when unreadable): enough to recognise fewlabel's own outputs."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            return fh.readline(limit).rstrip("\r\n")
    except OSError:
        return ""
