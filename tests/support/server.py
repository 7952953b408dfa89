"""A real `fewlabel serve` for the tests: a child process on a free loopback port, polled until it is ready
(a bounded wait), and stopped (terminate, then kill) whatever the test did. Written once for every test that
talks to the service over HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

__all__ = ["answers", "free_port", "health_ok", "running_server", "start_server", "stop_server"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def health_ok(client: httpx.Client) -> bool:
    return client.get("/health").status_code == 200


def answers(client: httpx.Client) -> bool:
    """Ready once /health gets any HTTP answer (a server with a tiny --timeout may answer it with a 504)."""
    client.get("/health")
    return True


def start_server(args: Sequence[str], *, log: IO | int, log_text: Callable[[], str],
                 env: Mapping[str, str] | None = None, ready: Callable[[httpx.Client], bool] = health_ok,
                 timeout_s: float = 120, poll_s: float = 0.5, client_timeout: float = 60
                 ) -> tuple[subprocess.Popen, str]:
    """``fewlabel -q serve ARGS --port FREE`` as a child writing to ``log``; returns it and its base URL once
    ``ready(client)`` is true. Fails (with the server's log) if the child exits or ``timeout_s`` passes."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "fewlabel.retrieval.cli", "-q", "serve", *args,
                               "--port", str(port)], env=None if env is None else dict(env),
                              stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=base, timeout=client_timeout) as client:
        while True:
            assert server.poll() is None, log_text()
            try:
                if ready(client):
                    return server, base
            except httpx.TransportError:
                pass
            if time.monotonic() >= deadline:
                stop_server(server)
                raise AssertionError(f"server did not start in {timeout_s:g} s")
            time.sleep(poll_s)


def stop_server(server: subprocess.Popen, timeout_s: float = 20) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            server.kill()


@contextmanager
def running_server(args: Sequence[str], log_path: Path, *, stop_timeout_s: float = 20,
                   **kwargs) -> Iterator[tuple[subprocess.Popen, str]]:
    """:func:`start_server` with its log in ``log_path``, stopped when the block ends."""
    with open(log_path, "w") as log:
        server, base = start_server(args, log=log, log_text=log_path.read_text, **kwargs)
        try:
            yield server, base
        finally:
            stop_server(server, stop_timeout_s)
