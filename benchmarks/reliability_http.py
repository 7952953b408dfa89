"""The HTTP part of the reliability report: bad requests, as a careless client and an attacker send them, against
a real `fewlabel serve` (a subprocess on a free loopback port, with a token, small limits), called with httpx.

A case is clear when the status is the expected one, a refusal carries one ``error`` line, nothing answers 500,
no answer names a server path, and the served index's files are unchanged by any refused request ('lost')."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

TOKEN = "rel-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}


@dataclass
class HttpCase:
    name: str
    method: str
    path: str
    body: object = None  # a JSON value, or bytes sent as they are, or a callable giving chunks
    expect: int = 422
    headers: dict = field(default_factory=lambda: dict(AUTH))
    writes: bool = False  # a successful write is expected to change the index
    around: str | None = None  # "moved": the index folder is moved away during the request


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_cases() -> list[HttpCase]:
    row = {"text": "a fine example", "labels": ["joy"]}
    nested = b"[" * 50_000

    def chunked():
        yield b'{"texts": ["'
        for _ in range(40):
            yield b"x" * 5_000
        yield b'"]}'

    c = [
        HttpCase("/health needs no token", "GET", "/health", expect=200, headers={}),
        HttpCase("no token", "GET", "/info", expect=401, headers={}),
        HttpCase("wrong token", "GET", "/info", expect=401, headers={"Authorization": "Bearer nope"}),
        HttpCase("token in upper case", "GET", "/info", expect=401,
                 headers={"Authorization": f"Bearer {TOKEN.upper()}"}),
        HttpCase("token as Basic auth", "GET", "/info", expect=401, headers={"Authorization": f"Basic {TOKEN}"}),
        HttpCase("token in the query string", "GET", f"/info?token={TOKEN}", expect=401, headers={}),
        HttpCase("token percent-encoded", "GET", "/info", expect=401,
                 headers={"Authorization": "Bearer " + "".join(f"%{b:02X}" for b in TOKEN.encode())}),
        HttpCase("token with a prefix of the real one", "GET", "/info", expect=401,
                 headers={"Authorization": f"Bearer {TOKEN[:-1]}"}),
        HttpCase("scheme in lower case", "GET", "/info", expect=200, headers={"Authorization": f"bearer {TOKEN}"}),
        # the API docs are open by design (retrieval/serve/app.py: routes and field schemas only, no label, text or
        # setting of the index), so these answer 200 without the token; every route that reads the index is a 401
        HttpCase("/docs without a token (open by design)", "GET", "/docs", expect=200, headers={}),
        HttpCase("/openapi.json without a token (open by design)", "GET", "/openapi.json", expect=200, headers={}),
        HttpCase("DELETE without a token", "DELETE", "/examples/1", expect=401, headers={}),
        HttpCase("POST /examples without a token", "POST", "/examples", {"rows": [row]}, expect=401, headers={}),
        HttpCase("unknown route", "GET", "/admin", expect=404),
        HttpCase("wrong method", "GET", "/classify", expect=405),
        HttpCase("classify: no body", "POST", "/classify", None),
        HttpCase("classify: texts missing", "POST", "/classify", {}),
        HttpCase("classify: texts not a list", "POST", "/classify", {"texts": "hello"}),
        HttpCase("classify: empty list", "POST", "/classify", {"texts": []}),
        HttpCase("classify: blank text", "POST", "/classify", {"texts": ["  "]}),
        HttpCase("classify: text over the length limit", "POST", "/classify", {"texts": ["x" * 501]}),
        HttpCase("classify: a number for a text", "POST", "/classify", {"texts": [5]}),
        HttpCase("classify: 9 texts (limit 8)", "POST", "/classify", {"texts": ["a"] * 9}, expect=413),
        HttpCase("classify: k=0", "POST", "/classify", {"texts": ["a"], "k": 0}),
        HttpCase("classify: k larger than the index", "POST", "/classify", {"texts": ["a"], "k": 10_000}),
        HttpCase("classify: k a string", "POST", "/classify", {"texts": ["a"], "k": "five"}),
        HttpCase("classify: k = 1e400", "POST", "/classify", b'{"texts": ["a"], "k": 1e400}'),
        HttpCase("classify: misspelt field", "POST", "/classify", {"text": ["a"]}),
        HttpCase("classify: fallback nli without a model", "POST", "/classify", {"texts": ["a"], "fallback": "nli"}),
        HttpCase("classify: fallback unknown", "POST", "/classify", {"texts": ["a"], "fallback": "magic"}),
        HttpCase("classify: lone surrogate", "POST", "/classify", b'{"texts": ["ok", "\\ud800"]}'),
        HttpCase("classify: a valid request", "POST", "/classify", {"texts": ["what a lovely day"]}, expect=200),
        HttpCase("embed: lone surrogate", "POST", "/embed", b'{"texts": ["\\udfff"]}'),
        HttpCase("similarity: lone surrogate", "POST", "/similarity", b'{"pairs": [["a", "\\ud800"]]}'),
        HttpCase("similarity: a pair of three", "POST", "/similarity", {"pairs": [["a", "b", "c"]]}),
        HttpCase("similarity: empty side", "POST", "/similarity", {"pairs": [["a", " "]]}),
        HttpCase("zeroshot: lone surrogate in a label", "POST", "/zeroshot",
                 b'{"texts": ["a"], "labels": ["\\ud800"]}'),
        HttpCase("zeroshot: no labels", "POST", "/zeroshot", {"texts": ["a"], "labels": []}),
        HttpCase("zeroshot: 9 labels (limit 8)", "POST", "/zeroshot", {"texts": ["a"], "labels": list("abcdefghi")},
                 expect=413),
        HttpCase("zeroshot: blank label", "POST", "/zeroshot", {"texts": ["a"], "labels": ["ok", " "]}),
        HttpCase("body is not JSON", "POST", "/classify", b"texts=a"),
        HttpCase("body is not UTF-8", "POST", "/classify", b'{"texts": ["caf\xe9"]}', expect=400),
        HttpCase("body nested 50,000 deep", "POST", "/classify", nested, expect=400),
        HttpCase("body a JSON array", "POST", "/classify", [1, 2]),
        HttpCase("body JSON null", "POST", "/classify", b"null"),
        HttpCase("Content-Length over the limit", "POST", "/classify", b"{" + b" " * 300_000 + b"}", expect=413),
        HttpCase("chunked body over the limit", "POST", "/classify", chunked, expect=413),
        HttpCase("examples: lone surrogate in a text", "POST", "/examples",
                 b'{"rows": [{"text": "\\ud800", "labels": ["joy"]}]}'),
        HttpCase("examples: lone surrogate in an id", "POST", "/examples",
                 b'{"rows": [{"id": "\\ud800", "text": "t", "labels": ["joy"]}]}'),
        HttpCase("examples: lone surrogate in a label", "POST", "/examples",
                 b'{"rows": [{"text": "t", "labels": ["\\udc00"]}]}'),
        HttpCase("examples: no rows", "POST", "/examples", {"rows": []}),
        HttpCase("examples: row without labels", "POST", "/examples", {"rows": [{"text": "t", "labels": []}]}),
        HttpCase("examples: blank label", "POST", "/examples", {"rows": [{"text": "t", "labels": [" "]}]}),
        HttpCase("examples: blank id", "POST", "/examples", {"rows": [{"id": "  ", **row}]}),
        HttpCase("examples: same id twice", "POST", "/examples", {"rows": [{"id": "d1", **row}, {"id": "d1", **row}]}),
        HttpCase("examples: ids equal once stripped", "POST", "/examples",
                 {"rows": [{"id": "d1", **row}, {"id": " d1", **row}]}),
        HttpCase("examples: ids equal once NFC-normalised", "POST", "/examples",
                 {"rows": [{"id": "caf\u00e9", **row}, {"id": "cafe\u0301", **row}]}),
        HttpCase("examples: an id already in the index", "POST", "/examples", {"rows": [{"id": "eefcwnh", **row}]},
                 expect=409),
        HttpCase("examples: an id in the index, padded", "POST", "/examples", {"rows": [{"id": " eefcwnh ", **row}]},
                 expect=409),
        HttpCase("examples: an id holding a newline", "POST", "/examples", {"rows": [{"id": "a\nb", **row}]}),
        HttpCase("examples: an id of 300 characters", "POST", "/examples", {"rows": [{"id": "i" * 300, **row}]}),
        HttpCase("examples: 2,000 labels on one row", "POST", "/examples",
                 {"rows": [{"text": "t", "labels": [f"l{i}" for i in range(2_000)]}]}, expect=413),
        HttpCase("examples: 20,000 labels (over the body limit)", "POST", "/examples",
                 {"rows": [{"text": "t", "labels": [f"l{i}" for i in range(20_000)]}]}, expect=413),
        HttpCase("examples: a label of 300 characters", "POST", "/examples",
                 {"rows": [{"text": "t", "labels": ["L" * 300]}]}),
        HttpCase("examples: 9 rows (limit 8)", "POST", "/examples", {"rows": [row] * 9}, expect=413),
        HttpCase("examples: text over the length limit", "POST", "/examples", {"rows": [{"text": "x" * 501,
                                                                                         "labels": ["joy"]}]}),
        HttpCase("examples: unknown field", "POST", "/examples", {"rows": [{**row, "weight": 2}]}),
        HttpCase("delete: unknown id", "DELETE", "/examples/no-such-id", expect=404),
        HttpCase("delete: a path that climbs", "DELETE", "/examples/../../etc/passwd", expect=404),
        HttpCase("delete: an encoded slash path", "DELETE", "/examples/..%2F..%2Fmeta.json", expect=404),
        HttpCase("examples: a valid row with an id holding '/'", "POST", "/examples",
                 {"rows": [{"id": "team/a", **row}]}, expect=201, writes=True),
        HttpCase("delete: that id, '/' and all", "DELETE", "/examples/team/a", expect=200, writes=True),
        HttpCase("examples: a valid padded id (stored stripped)", "POST", "/examples",
                 {"rows": [{"id": "  p1 ", **row}]}, expect=201, writes=True),
        HttpCase("delete: the padded id, as given", "DELETE", "/examples/%20%20p1%20", expect=200, writes=True),
        HttpCase("classify: index folder moved away", "POST", "/classify", {"texts": ["a"]}, expect=503,
                 around="moved"),
        HttpCase("examples: index folder moved away", "POST", "/examples", {"rows": [row]}, expect=503,
                 around="moved"),
        HttpCase("classify: after the folder is back", "POST", "/classify", {"texts": ["a"]}, expect=200),
    ]
    return c


def _index_state(index: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(index.iterdir()) if p.is_file()}


def _index_words(folder: Path) -> list[str]:
    """The served index's label names and a few of its texts (none may appear in an answer given without the
    token)."""
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    labels = meta.get("label_names") or meta.get("labels") or []
    rows = (folder / "rows.jsonl").read_text(encoding="utf-8").splitlines() if (folder / "rows.jsonl").exists() \
        else []
    texts = [json.loads(line)["text"] for line in rows[:5]]
    return [str(v) for v in [*labels, *texts] if str(v).strip()]


def run_http_cases(w: Path) -> list[dict]:
    """Serve ``w/index`` (a copy: ``served``) and run every case against it."""
    import shutil

    import httpx

    served = w / "served"
    shutil.copytree(w / "index", served)
    port = _free_port()
    log_path = w / "server.log"
    env = {**os.environ, "FEWLABEL_TOKEN": TOKEN}
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "fewlabel.retrieval.cli", "serve", str(served), "--port",
                                   str(port), "--max-batch", "8", "--max-text-length", "500", "--timeout", "30",
                                   "--no-cache"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=w)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    results = []
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise RuntimeError(log_path.read_text())
            try:
                if client.get("/info", headers=AUTH).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.5)
        for case in http_cases():
            before = _index_state(served)
            started = time.perf_counter()
            kwargs: dict = {"headers": dict(case.headers)}
            if callable(case.body):
                kwargs["content"] = case.body()
                kwargs["headers"].update(JSON)
            elif isinstance(case.body, bytes):
                kwargs["content"] = case.body
                kwargs["headers"].update(JSON)
            elif case.body is not None:
                kwargs["json"] = case.body
            if case.around == "moved":
                served.rename(w / "moved-away")
            try:
                response = client.request(case.method, case.path, **kwargs)
            finally:
                if case.around == "moved":
                    (w / "moved-away").rename(served)
            seconds = time.perf_counter() - started
            try:
                body = response.json()
            except ValueError:
                body = {}
            error = body.get("error") if isinstance(body, dict) else None
            leaked = str(w) in response.text or "/tmp/" in response.text
            changed = _index_state(served) != before
            lost = ["index files changed by a refused request"] if changed and not case.writes else []
            lost += ["a server path in the answer"] if leaked else []
            if not case.headers.get("Authorization") and response.status_code < 400 and case.path != "/health":
                # an open page (the API docs) may describe routes, never the index: none of its labels or texts
                shown_data = [v for v in _index_words(served) if v in response.text]
                lost += [f"index data without the token: {shown_data[:3]}"] if shown_data else []
            ok_status = response.status_code == case.expect
            clear = ok_status and response.status_code != 500 and (response.status_code < 400 or
                                                                    (isinstance(error, str) and "\n" not in error))
            shown = error if error is not None else json.dumps(body)[:120]
            results.append({"section": "http", "case": case.name,
                            "command": f"{case.method} {case.path}", "expected": case.expect,
                            "exit": response.status_code, "message": str(shown)[:160], "traceback": False,
                            "lost": lost, "clear": clear, "seconds": round(seconds, 2)})
    finally:
        client.close()
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    log_text = log_path.read_text(errors="replace")
    if "Traceback" in log_text:  # a traceback in the server's log is charged to every case: it cannot be placed
        for r in results:
            r["traceback"] = True
    return results
