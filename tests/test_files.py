"""indexing/files.py on its own, in milliseconds: the home folder, leftovers of dead writers, the atomic folder and
file writers (a kill at each step, in a forked child), the write lock and the refusal of a foreign --out. The
command-line versions of these live in test_reliability.py; these are the ones mutation testing runs
(`make mutation`, benchmarks/results/mutation.md)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fewlabel.indexing import files
from fewlabel.indexing.errors import FewlabelError
from fewlabel.indexing.files import (
    atomic_directory,
    atomic_file,
    fewlabel_home,
    first_line_of,
    folder_lock,
    recover_directory,
    refuse_foreign,
)
from fewlabel.indexing.store.label_index import is_index_folder


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def folder_with(path: Path, name: str, text: str) -> Path:
    path.mkdir(parents=True)
    (path / name).write_text(text)
    return path


def contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


# ---- home ---------------------------------------------------------------------------------------------------------
def test_home_is_the_env_folder_else_xdg_else_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FEWLABEL_HOME", "~/fl-home")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert fewlabel_home() == tmp_path / "fl-home"
    monkeypatch.delenv("FEWLABEL_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fewlabel_home() == tmp_path / "xdg" / "fewlabel"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert fewlabel_home() == tmp_path / ".cache" / "fewlabel"


# ---- leftovers of dead writers --------------------------------------------------------------------------------
def test_alive_tells_living_from_dead_processes():
    assert files._alive(os.getpid()) is True
    assert files._alive(dead_pid()) is False
    # a living process of our own (not the parent: a probe that sent a real signal would hang up the test runner,
    # as mutation testing's `os.kill(pid, 1)` did to mutmut): probed with signal 0, so it lives on
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert files._alive(child.pid) is True
        time.sleep(0.2)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_leftovers_match_only_this_targets_copies(tmp_path):
    target = tmp_path / "ix"
    for name in (".ix.tmp-12-abc", ".ix.old-34", ".ix.tmp-56", ".ixx.old-7", ".ix.old-x", "ix.old-8", ".ix.lock",
                 ".ix.old-9-z"):
        (tmp_path / name).mkdir()
    found = sorted((p.name, kind, pid) for p, kind, pid in files._leftovers(target))
    assert found == [(".ix.old-34", "old", 34), (".ix.old-9-z", "old", 9), (".ix.tmp-12-abc", "tmp", 12),
                     (".ix.tmp-56", "tmp", 56)]
    assert list(files._leftovers(tmp_path / "missing-parent" / "ix")) == []


def test_recover_puts_the_newest_old_folder_back_and_removes_dead_copies(tmp_path):
    target = tmp_path / "ix"
    dead = dead_pid()
    older = folder_with(tmp_path / f".ix.old-{dead}", "meta.json", "older")
    newer = folder_with(tmp_path / f".ix.old-{dead + 100000}", "meta.json", "newer")
    os.utime(older, (1, 1))
    tmp = folder_with(tmp_path / f".ix.tmp-{dead}-q", "meta.json", "half")
    (tmp_path / f".ix.tmp-{dead}-f").write_text("a file")
    mine = folder_with(tmp_path / f".ix.tmp-{os.getpid()}-m", "meta.json", "in progress")  # a live writer's
    recover_directory(target)
    assert contents(target) == {"meta.json": "newer"}
    assert not older.exists() and not newer.exists() and not tmp.exists()
    assert not (tmp_path / f".ix.tmp-{dead}-f").exists()
    assert mine.exists()  # a living process's copy stays


def test_recover_keeps_the_target_and_unlinks_a_leftover_link_without_following_it(tmp_path):
    target = folder_with(tmp_path / "ix", "meta.json", "current")
    dead = dead_pid()
    old = folder_with(tmp_path / f".ix.old-{dead}", "meta.json", "old")
    precious = folder_with(tmp_path / "precious", "data.txt", "keep")
    (tmp_path / f".ix.tmp-{dead}-l").symlink_to(precious)
    recover_directory(target)
    assert contents(target) == {"meta.json": "current"}  # the target stands: the old copy is removed, not put back
    assert not old.exists() and not (tmp_path / f".ix.tmp-{dead}-l").is_symlink()
    assert contents(precious) == {"data.txt": "keep"}


def test_exchange_swaps_two_folders(tmp_path):
    a, b = folder_with(tmp_path / "a", "x", "A"), folder_with(tmp_path / "b", "x", "B")
    assert files._exchange(a, b) is True
    assert contents(a) == {"x": "B"} and contents(b) == {"x": "A"}
    with pytest.raises(OSError):
        files._exchange(a, tmp_path / "missing")


# ---- atomic folder --------------------------------------------------------------------------------------------
def test_atomic_directory_creates_then_replaces_keeping_the_mode(tmp_path):
    target = tmp_path / "deep" / "ix"
    with atomic_directory(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(f".ix.tmp-{os.getpid()}-")
        (tmp / "meta.json").write_text("one")
    assert contents(target) == {"meta.json": "one"}
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~files._umask()
    os.chmod(target, 0o750)
    with atomic_directory(target) as tmp:
        (tmp / "meta.json").write_text("two")
    assert contents(target) == {"meta.json": "two"} and stat.S_IMODE(target.stat().st_mode) == 0o750
    assert sorted(p.name for p in target.parent.iterdir()) == ["ix"]  # no temporary or old copy left


def test_atomic_directory_leaves_the_target_as_it_was_on_an_error(tmp_path):
    target = folder_with(tmp_path / "ix", "meta.json", "old")
    with pytest.raises(KeyError), atomic_directory(target) as tmp:
        (tmp / "meta.json").write_text("new")
        raise KeyError("boom")
    assert contents(target) == {"meta.json": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]


def killed_at(step: str, target: Path) -> None:
    """Replace ``target`` in a forked child that the fault hook kills at ``step``; the parent checks the kill."""
    pid = os.fork()
    if pid == 0:  # the child: never returns to pytest
        try:
            os.environ[files.FAULT_ENV] = step
            with atomic_directory(target) as tmp:
                (tmp / "meta.json").write_text("new")
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"not killed at {step}"


@pytest.mark.parametrize(("step", "expected"), [("directory:before-replace", "old"),
                                                ("directory:after-exchange", "new"),
                                                ("directory:between-renames", "old")])
def test_a_kill_at_each_step_leaves_exactly_one_complete_folder(tmp_path, step, expected):
    target = folder_with(tmp_path / "ix", "meta.json", "old")
    killed_at(step, target)
    if step == "directory:between-renames":
        assert not target.exists()  # the old folder is aside until the next command puts it back
    recover_directory(target)
    assert contents(target) == {"meta.json": expected}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]  # the dead writer's copies are gone


def test_the_two_rename_fallback_replaces_the_folder(tmp_path, monkeypatch):
    target = folder_with(tmp_path / "ix", "meta.json", "old")
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)  # a file system without renameat2
    with atomic_directory(target) as tmp:
        (tmp / "meta.json").write_text("new")
    assert contents(target) == {"meta.json": "new"} and sorted(p.name for p in tmp_path.iterdir()) == ["ix"]


def _staged_folder_cannot_be_renamed(monkeypatch):
    """A file system without renameat2 whose rename fails for the staged ``.ix.tmp-*`` folder only (the fallback's
    second rename); returns the real ``os.rename`` to put back."""
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    real_rename = os.rename

    def failing_rename(src, dst):
        if Path(src).name.startswith(".ix.tmp-"):
            raise OSError("disk gone")
        real_rename(src, dst)

    monkeypatch.setattr(files.os, "rename", failing_rename)
    return real_rename


def test_the_fallback_puts_the_old_folder_back_when_the_second_rename_fails(tmp_path, monkeypatch):
    target = folder_with(tmp_path / "ix", "meta.json", "old")
    real_rename = _staged_folder_cannot_be_renamed(monkeypatch)
    with pytest.raises(OSError, match="disk gone"), atomic_directory(target) as tmp:
        (tmp / "meta.json").write_text("new")
    monkeypatch.setattr(files.os, "rename", real_rename)
    assert contents(target) == {"meta.json": "old"} and sorted(p.name for p in tmp_path.iterdir()) == ["ix"]


# ---- atomic file ----------------------------------------------------------------------------------------------
def test_atomic_file_writes_keeps_mode_and_newlines(tmp_path):
    path = tmp_path / "sub" / "out.csv"
    with atomic_file(path) as fh:
        fh.write("a,b\r\nö\n")
    assert path.read_bytes() == "a,b\r\nö\n".encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~files._umask()
    os.chmod(path, 0o640)
    with atomic_file(path) as fh:
        fh.write("new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o640
    with pytest.raises(ValueError), atomic_file(path) as fh:
        fh.write("half")
        raise ValueError
    assert path.read_text() == "new" and sorted(p.name for p in path.parent.iterdir()) == ["out.csv"]


def test_atomic_file_removes_a_dead_writers_temporary_file(tmp_path):
    path = tmp_path / "out.csv"
    stale = tmp_path / f".out.csv.tmp-{dead_pid()}-x"
    stale.write_text("half")
    with atomic_file(path) as fh:
        fh.write("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


# ---- the write lock -------------------------------------------------------------------------------------------
def test_a_second_writer_waits_then_gives_up_with_a_clear_error(tmp_path):
    target = tmp_path / "new" / "ix"
    told: list[str] = []
    with folder_lock(target):
        assert (target.parent / ".ix.lock").exists()
        with pytest.raises(FewlabelError, match=r"another fewlabel command has been writing it for 0 s") as info, \
                folder_lock(target, waiting=told.append, timeout=0.2):
            pass
        assert str(target) in str(info.value) and ".ix.lock" in str(info.value)
    assert len(told) == 1 and "waiting for another fewlabel command" in told[0]
    with folder_lock(target, waiting=told.append, timeout=0.2):  # released: taken at once, nobody told
        pass
    assert len(told) == 1


# ---- a foreign --out ------------------------------------------------------------------------------------------
def refusal(path: Path, **kwargs) -> str:
    with pytest.raises(FewlabelError) as info:
        refuse_foreign(path, **{"folder": True, "what": "a fewlabel index", "ours": is_index_folder, **kwargs})
    return str(info.value)


@pytest.mark.parametrize("meta", [{}, {"name": "my model", "version": 3}, {"encoder": {"model": "x"}},
                                  {"format_version": 3}, [1, 2]])
def test_a_folder_with_another_tools_meta_json_is_refused(tmp_path, meta):
    out = folder_with(tmp_path / "other", "meta.json", json.dumps(meta))
    (out / "weights.bin").write_bytes(b"years of training")
    assert is_index_folder(out) is False
    message = refusal(out)
    assert message.startswith(f"--out {out}: this folder holds meta.json, weights.bin, and is not a fewlabel index")
    assert contents(out)["meta.json"] == json.dumps(meta)


def test_an_index_an_empty_folder_or_nothing_may_be_written(tmp_path):
    index = folder_with(tmp_path / "ix", "meta.json", json.dumps({"format_version": 3, "encoder": {}}))
    assert is_index_folder(index) is True
    refuse_foreign(index, folder=True, what="a fewlabel index", ours=is_index_folder)
    (tmp_path / "empty").mkdir()
    refuse_foreign(tmp_path / "empty", folder=True, what="x", ours=lambda p: False)
    refuse_foreign(tmp_path / "nothing", folder=True, what="x", ours=lambda p: False)
    refuse_foreign(tmp_path / "nothing.csv", folder=False, what="x", ours=lambda p: False)
    (tmp_path / "empty.csv").write_text("")
    refuse_foreign(tmp_path / "empty.csv", folder=False, what="x", ours=lambda p: False)
    assert is_index_folder(tmp_path / "nothing") is False
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "meta.json").write_bytes(b"\xff{")
    assert is_index_folder(tmp_path / "bad") is False


def test_every_foreign_thing_at_out_is_refused_with_its_own_message(tmp_path):
    many = tmp_path / "many"
    many.mkdir()
    for i in range(6):
        (many / f"f{i}.txt").write_text("x")
    assert refusal(many, option="--out-dir").endswith(
        "holds f0.txt, f1.txt, f2.txt, f3.txt and 2 more, and is not a fewlabel index; fewlabel never replaces a "
        "folder it did not make: choose another --out-dir")
    four = folder_with(tmp_path / "four", "a", "1")
    for name in "bcd":
        (four / name).write_text("1")
    assert "holds a, b, c, d, and is not" in refusal(four)
    note = tmp_path / "note.txt"
    note.write_text("keep me")
    assert refusal(note) == (f"--out {note}: a file is there, not a fewlabel index; fewlabel never replaces a file "
                             "it did not make: choose another --out")
    assert refusal(note / "ix") == f"--out {note / 'ix'}: {note} is a file, not a folder"
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    assert refusal(link) == f"--out {link}: a broken link is there; remove it or choose another --out"
    assert refusal(link, folder=False) == f"--out {link}: a broken link is there; remove it or choose another --out"
    assert refusal(many, folder=False, what="a predictions file") == (
        f"--out {many}: a folder is there; give a file name for a predictions file")
    assert refusal(note, folder=False, what="a predictions file", ours=lambda p: False) == (
        f"--out {note}: this file is not a predictions file written by fewlabel; fewlabel never replaces a file it "
        "did not make: choose another --out")
    refuse_foreign(note, folder=False, what="a predictions file", ours=lambda p: first_line_of(p) == "keep me")


def test_first_line_of_reads_the_first_line_only(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes("\ufeffid,labels\r\nrow".encode())
    assert first_line_of(path) == "id,labels"
    assert first_line_of(path, limit=4) == "id,l"
    assert first_line_of(tmp_path / "missing.csv") == ""


# ---- what mutation testing found unchecked (benchmarks/results/mutation.md) -----------------------------------
class _Killed(BaseException):
    """Raised by the fake os.kill below: the in-process stand-in for a SIGKILL at a fault point."""


@pytest.mark.parametrize(("step", "at_kill"), [
    # what stands beside the target at the instant of the kill (the fork tests above check the recovery after it)
    ("directory:before-replace", {"ix": {"meta.json": "old"}, "tmp": {"meta.json": "new"}}),
    ("directory:after-exchange", {"ix": {"meta.json": "new"}, "tmp": {"meta.json": "old"}}),
    ("directory:between-renames", {"old": {"meta.json": "old"}, "tmp": {"meta.json": "new"}}),
])
def test_each_fault_point_kills_this_process_at_its_own_step(tmp_path, monkeypatch, step, at_kill):
    """The kill tests fork, and mutmut records only what a test reaches in its own process: here the kill is a
    fake that notes the state at that instant, so each step's name, its place and the fallback switch are checked
    in-process."""
    target = folder_with(tmp_path / "ix", "meta.json", "old")
    seen: dict = {}

    def fake_kill(pid, sig):
        kinds = {"ix": "ix", ".ix.tmp-": "tmp", ".ix.old-": "old"}
        for p in tmp_path.iterdir():
            kind = next(k for prefix, k in kinds.items() if p.name.startswith(prefix))
            seen[kind] = contents(p)
        seen["signal"] = (pid, sig)
        raise _Killed

    monkeypatch.setattr(files.os, "kill", fake_kill)
    monkeypatch.setenv(files.FAULT_ENV, step)
    with pytest.raises(_Killed), atomic_directory(target) as tmp:
        (tmp / "meta.json").write_text("new")
    assert seen.pop("signal") == (os.getpid(), signal.SIGKILL)
    assert seen == at_kill


def test_no_fault_point_fires_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(files.FAULT_ENV, raising=False)
    monkeypatch.setattr(files.os, "kill", lambda pid, sig: pytest.fail(f"killed with {sig}"))
    target = folder_with(tmp_path / "ix", "meta.json", "old")
    with atomic_directory(target) as tmp:
        (tmp / "meta.json").write_text("new")
    assert contents(target) == {"meta.json": "new"}


def _rmtree_that_fails_unless_told_to_ignore(monkeypatch):
    real = files.shutil.rmtree

    def rmtree(path, ignore_errors=False, **kwargs):
        if not ignore_errors:
            raise OSError(f"cannot remove {path}")
        real(path, ignore_errors=True, **kwargs)

    monkeypatch.setattr(files.shutil, "rmtree", rmtree)


@pytest.mark.parametrize("exchange", [True, False])
def test_a_write_that_landed_is_not_failed_by_the_cleanup_of_the_replaced_copy(tmp_path, monkeypatch, exchange):
    """Removing the replaced folder is housekeeping (recover_directory finishes it later): a failure there must not
    turn a complete write into an error."""
    if not exchange:
        monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    _rmtree_that_fails_unless_told_to_ignore(monkeypatch)
    target = folder_with(tmp_path / "ix", "meta.json", "old")
    with atomic_directory(target) as tmp:
        (tmp / "meta.json").write_text("new")
    assert contents(target) == {"meta.json": "new"}


def test_a_failed_replace_reports_its_own_error_not_the_cleanups(tmp_path, monkeypatch):
    target = folder_with(tmp_path / "ix", "meta.json", "old")
    _rmtree_that_fails_unless_told_to_ignore(monkeypatch)
    _staged_folder_cannot_be_renamed(monkeypatch)
    with pytest.raises(OSError, match="disk gone"), atomic_directory(target) as tmp:
        (tmp / "meta.json").write_text("new")
    assert contents(target) == {"meta.json": "old"}


def test_exchange_reports_the_systems_error_for_the_path(tmp_path):
    import ctypes
    import errno

    a = folder_with(tmp_path / "a", "x", "A")
    ctypes.set_errno(0)  # the error must be this call's own, not one left by an earlier call
    with pytest.raises(FileNotFoundError) as caught:
        files._exchange(a, tmp_path / "missing")
    assert (caught.value.errno, caught.value.strerror, caught.value.filename) == (
        errno.ENOENT, os.strerror(errno.ENOENT), str(tmp_path / "missing"))


def test_exchange_works_on_relative_paths(tmp_path, monkeypatch):
    folder_with(tmp_path / "a", "x", "A")
    folder_with(tmp_path / "b", "x", "B")
    monkeypatch.chdir(tmp_path)  # relative names are resolved against the working folder (AT_FDCWD)
    assert files._exchange(Path("a"), Path("b")) is True
    assert contents(tmp_path / "a") == {"x": "B"}


def test_exchange_says_false_where_the_system_cannot_swap(tmp_path, monkeypatch):
    import ctypes
    import errno

    a, b = folder_with(tmp_path / "a", "x", "A"), folder_with(tmp_path / "b", "x", "B")

    class NoSwap:
        def __init__(self) -> None:
            self.renameat2 = lambda *args: -1  # a plain function, so that argtypes can be set on it

    for err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # a kernel or file system without RENAME_EXCHANGE
        monkeypatch.setattr(files.ctypes, "CDLL", lambda *a, **k: NoSwap())
        monkeypatch.setattr(files.ctypes, "get_errno", lambda err=err: err)
        assert files._exchange(a, b) is False

    def no_libc(*args, **kwargs):
        raise OSError("no libc")

    monkeypatch.setattr(files.ctypes, "CDLL", no_libc)
    assert files._exchange(a, b) is False
    monkeypatch.setattr(files.ctypes, "CDLL", ctypes.CDLL)
    monkeypatch.setattr(files.sys, "platform", "darwin")
    assert files._exchange(a, b) is False
    assert contents(a) == {"x": "A"}  # nothing was swapped


def test_a_link_to_our_own_folder_is_not_refused(tmp_path):
    index = folder_with(tmp_path / "real_v1", "meta.json", json.dumps({"format_version": 3, "encoder": {}}))
    (tmp_path / "current").symlink_to(index)
    refuse_foreign(tmp_path / "current", folder=True, what="a fewlabel index", ours=is_index_folder)
    note = tmp_path / "ours.csv"
    note.write_text("id,labels\n")
    (tmp_path / "latest.csv").symlink_to(note)
    refuse_foreign(tmp_path / "latest.csv", folder=False, what="x", ours=lambda p: True)


def test_five_entries_show_four_and_one_more(tmp_path):
    five = folder_with(tmp_path / "five", "a", "1")
    for name in "bcde":
        (five / name).write_text("1")
    assert "holds a, b, c, d and 1 more, and is not" in refusal(five)


def test_a_staging_folder_makes_missing_parents(tmp_path):
    stage = files.staging_directory(tmp_path / "new" / "deeper" / "ix")
    assert stage.parent == tmp_path / "new" / "deeper" and stage.name.startswith(f".ix.tmp-{os.getpid()}-")


def test_first_line_of_replaces_bad_bytes_and_strips_only_the_line_end(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"id,caf\xe9 \t\r\nrow\n")
    assert first_line_of(bad) == "id,caf\ufffd \t"  # a stray byte: replaced, not an error; spaces kept
    x = tmp_path / "x.csv"
    x.write_text("labelX\nrow\n")
    assert first_line_of(x) == "labelX"
    long = tmp_path / "long.csv"
    long.write_text("a" * 70000 + "\n")
    assert len(first_line_of(long)) == 65536  # at most 64 KiB of a first line is read


def test_a_process_of_another_user_counts_as_alive(monkeypatch):
    def not_permitted(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(files.os, "kill", not_permitted)
    assert files._alive(dead_pid()) is True  # it exists; only its owner may signal it: never remove its copies


def test_two_recoveries_at_once_never_fail_on_each_others_removals(tmp_path, monkeypatch):
    """Every reader and writer recovers first, so two may remove the same dead leftovers: one that is already gone
    is not an error (simulated by listing each leftover twice)."""
    target = folder_with(tmp_path / "ix", "meta.json", "current")
    pid = dead_pid()
    folder_with(tmp_path / f".ix.tmp-{pid}-a", "meta.json", "half")
    (tmp_path / f".ix.old-{pid}").symlink_to(tmp_path / "elsewhere")
    listed = list(files._leftovers(target))
    monkeypatch.setattr(files, "_leftovers", lambda t: iter(listed + listed))
    recover_directory(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"] and contents(target) == {"meta.json": "current"}


def test_atomic_directory_through_a_link_replaces_the_real_folder_and_keeps_the_link(tmp_path):
    real = folder_with(tmp_path / "real_v1", "meta.json", "old")
    (tmp_path / "current").symlink_to("real_v1")
    with atomic_directory(tmp_path / "current") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".real_v1.tmp-")
        (tmp / "meta.json").write_text("new")
    assert (tmp_path / "current").is_symlink() and os.readlink(tmp_path / "current") == "real_v1"
    assert contents(real) == {"meta.json": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "real_v1"]
    assert files.resolve_target(tmp_path / "current") == real and files.resolve_target(real) == real


def test_a_leftover_that_cannot_be_removed_now_does_not_stop_the_command(tmp_path, monkeypatch):
    """Removing a dead writer's copy is housekeeping: when it fails (a file held open on some file systems, a
    permission), the reader or writer goes on, and the next recovery tries again."""
    target = folder_with(tmp_path / "ix", "meta.json", "current")
    folder_with(tmp_path / f".ix.tmp-{dead_pid()}-a", "meta.json", "half")
    _rmtree_that_fails_unless_told_to_ignore(monkeypatch)
    recover_directory(target)
    assert contents(target) == {"meta.json": "current"}
