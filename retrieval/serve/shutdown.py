"""Graceful shutdown of `fewlabel serve`.

On SIGTERM (or Ctrl-C) uvicorn stops listening, closes idle keep-alive connections, and lets every request
already accepted finish, for at most ``--drain-timeout`` seconds (uvicorn's ``timeout_graceful_shutdown``);
requests still running then are cancelled. Then the app's lifespan ends here: the batch worker finishes what is
queued and stops, and the index folder's write lock is checked free (a live edit that was running has finished
and released it; one cancelled past the timeout releases it when the process exits, as the lock is an OS file
lock). One line on stderr says how many accepted requests were answered, so an operator (and
tests/test_serve_speed.py) can see that a drain lost nothing."""

from __future__ import annotations

import sys

__all__ = ["DEFAULT_DRAIN_S", "lock_is_free", "stop_service"]

DEFAULT_DRAIN_S = 20.0


def lock_is_free(index_dir: str, timeout_s: float = 2.0) -> bool:
    """Whether the index folder's write lock can be taken now (taken and given back at once)."""
    from fewlabel.indexing.errors import FewlabelError
    from fewlabel.indexing.files import folder_lock

    try:
        with folder_lock(index_dir, timeout=timeout_s):
            return True
    except FewlabelError:
        return False


def stop_service(service, metrics, timeout_s: float = 10.0) -> str:
    """Stop the batch worker (queued texts are encoded first), check the lock, and say what the drain did."""
    encoder = getattr(service, "encoder", None)
    batcher = getattr(encoder, "batcher", None)
    if batcher is not None:
        batcher.stop(timeout_s)
    free = lock_is_free(service.settings.index_dir)
    line = (f"fewlabel serve: stopped: {metrics.accepted} requests accepted, {metrics.answered} answered, "
            f"{metrics.cut_off} cut off; index lock {'free' if free else 'still held (released at exit)'}")
    print(line, file=sys.stderr, flush=True)
    return line
