"""`fewlabel serve` against a careless or hostile client (issue 28): ids that are equal once normalised, a
write that times out, live examples on an index with a stored method, requests that are small but costly,
server paths in errors, start-up token rules, and the HTTP error contract (deep JSON, a chunked body over the
limit, lone surrogates). The server runs for real (uvicorn on a free loopback port, in a thread of this
process so that one loaded model serves several settings) and is called with httpx."""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'fewlabel[serve]')")
uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install 'fewlabel[serve]')")
httpx = pytest.importorskip("httpx", reason="the serve extra is not installed (pip install 'fewlabel[serve]')")

from fewlabel.indexing.store.label_index import LabelIndex  # noqa: E402
from fewlabel.retrieval.cli import main  # noqa: E402
from fewlabel.retrieval.serve.app import create_app  # noqa: E402
from fewlabel.retrieval.serve.service import ServeSettings, Service  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"
COMMON = ["--text-col", "text", "--label-col", "label", "--id-col", "id"]
WEATHER = ["heavy rain and strong wind expected tomorrow morning", "sunny skies with a light breeze all day",
           "snow storm warning for the northern mountains", "thunderstorms likely in the late afternoon",
           "temperatures drop below freezing tonight", "a humid and hot week ahead with scattered showers",
           "fog will clear by noon leaving clear skies", "hail and gusts up to sixty kilometres per hour"]


def _serve(app) -> tuple[uvicorn.Server, threading.Thread, str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An NSMC index (60 rows, positive/negative) whose stored method is the linear probe, loaded once; servers
    with other settings share the loaded models."""
    d = tmp_path_factory.mktemp("contract")
    lines = (DEMO / "nsmc_train.tsv").read_text(encoding="utf-8").splitlines()
    (d / "train.tsv").write_text("\n".join(lines[:61]) + "\n", encoding="utf-8")
    index = d / "index"
    assert main(["-q", "index", "build", str(d / "train.tsv"), *COMMON, "--model", "minilm", "--method", "linear",
                 "--no-cache", "--out", str(index)]) == 0
    settings = ServeSettings(index_dir=str(index), cache=False, max_batch=64, max_text_chars=500, timeout_s=60)
    service = Service(settings)
    servers = []

    def start(**changes) -> httpx.Client:
        own = copy.copy(service)
        own.settings = dataclasses.replace(settings, **changes)
        server, thread, base = _serve(create_app(own.settings, own))
        servers.append((server, thread))
        return httpx.Client(base_url=base, timeout=60)

    yield {"dir": d, "index": index, "start": start, "client": start()}
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def n_rows(world) -> int:
    return len(LabelIndex.load(world["index"], mmap=True))


def refused(response, status: int, *needles: str) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body.get("error"), str) and "\n" not in body["error"], body
    for needle in needles:
        assert needle in body["error"], body
    return body


# ---- 2. ids that are one id once stored --------------------------------------------------------------------
def test_ids_equal_once_normalised_are_one_id(world):
    client = world["client"]
    before = n_rows(world)
    rows = [{"id": "dup1", "text": "first", "labels": ["positive"]},
            {"id": " dup1", "text": "second", "labels": ["positive"]}]
    refused(client.post("/examples", json={"rows": rows}), 422, "appears twice")
    nfd = [{"id": "caf\u00e9", "text": "one", "labels": ["positive"]},
           {"id": "cafe\u0301", "text": "two", "labels": ["positive"]}]
    refused(client.post("/examples", json={"rows": nfd}), 422, "appears twice")
    assert n_rows(world) == before
    assert client.post("/examples", json={"rows": [rows[0]]}).status_code == 201
    refused(client.post("/examples", json={"rows": [rows[1]]}), 409, "already in the index")
    deleted = client.delete("/examples/%20dup1")  # as stored: stripped
    assert deleted.status_code == 200 and deleted.json() == {"deleted": "dup1", "n_rows": before}
    assert n_rows(world) == before  # exactly one row went
    slash = {"id": "team/a", "text": "an id holding a slash", "labels": ["negative"]}
    assert client.post("/examples", json={"rows": [slash]}).status_code == 201
    assert client.delete("/examples/team/a").json()["deleted"] == "team/a"
    refused(client.post("/examples", json={"rows": [{"id": "a\nb", "text": "x", "labels": ["positive"]}]}), 422,
            "printable")


# ---- 5. a write that times out ------------------------------------------------------------------------------
def test_a_timed_out_write_answers_its_real_outcome(world):
    client = world["start"](timeout_s=0.05)
    before = n_rows(world)
    rows = [{"text": f"a slow live example number {i} " * 12, "labels": ["positive"]} for i in range(32)]
    response = client.post("/examples", json={"rows": rows})
    if response.status_code == 504:
        assert "nothing was saved" in response.json()["error"] and n_rows(world) == before
    else:
        assert response.status_code == 201 and n_rows(world) == before + 32
        for row_id in response.json()["ids"]:
            assert world["client"].delete(f"/examples/{row_id}").status_code == 200


# ---- 6. live examples on an index with a stored method ------------------------------------------------------
def test_live_examples_with_a_new_label_are_used_by_a_stored_method(world):
    client = world["client"]
    assert client.get("/info").json()["method"] == "linear"
    rows = [{"id": f"w{i}", "text": text, "labels": ["weather"]} for i, text in enumerate(WEATHER)]
    assert client.post("/examples", json={"rows": rows}).status_code == 201
    try:
        answer = client.post("/classify", json={"texts": [WEATHER[3]]}).json()["predictions"][0]
        assert answer["labels"] == ["weather"] and answer["scores"]["weather"] > 0.5, answer
        other = client.post("/classify", json={"texts": ["정말 최고의 영화였어요"]}).json()["predictions"][0]
        assert other["labels"] != ["weather"]
    finally:
        for i in range(len(WEATHER)):
            client.delete(f"/examples/w{i}")


# ---- 8. small requests that make every later one expensive --------------------------------------------------
def test_labels_per_row_and_per_index_are_bounded(world):
    client = world["client"]
    before = n_rows(world)
    many = [f"l{i}" for i in range(20_000)]  # under the body limit
    refused(client.post("/examples", json={"rows": [{"text": "one row", "labels": many}]}), 413, "labels on one row")
    rows = [{"text": f"row {i}", "labels": [f"x{i}-{j}" for j in range(60)]} for i in range(40)]  # 2,400 labels
    refused(client.post("/examples", json={"rows": rows}), 413, "distinct labels")
    refused(client.post("/examples", json={"rows": [{"text": "t", "labels": ["L" * 300]}]}), 422, "label of 300")
    assert n_rows(world) == before
    started = time.monotonic()
    assert client.post("/classify", json={"texts": ["a plain request"] * 8}).status_code == 200
    assert time.monotonic() - started < 30


# ---- 9. no server path in an answer -------------------------------------------------------------------------
def test_a_missing_index_folder_is_503_without_the_path(world):
    index, aside = world["index"], world["dir"] / "moved-away"
    client = world["client"]
    assert main(["-q", "index", "add", str(index), str(_one_row(world["dir"])), *COMMON[:4], "--no-cache"]) == 0
    index.rename(aside)
    try:
        response = client.post("/classify", json={"texts": ["hello"]})
        body = refused(response, 503, "index unavailable")
        assert str(world["dir"]) not in response.text and "/tmp" not in response.text, body
        refused(client.post("/examples", json={"rows": [{"text": "t", "labels": ["positive"]}]}), 503)
    finally:
        aside.rename(index)
    assert client.post("/classify", json={"texts": ["hello"]}).status_code == 200


def _one_row(d: Path) -> Path:
    path = d / "one.tsv"
    path.write_text("text\tlabel\nan extra row added by the command line\tpositive\n", encoding="utf-8")
    return path


# ---- 11-13. the error contract -------------------------------------------------------------------------------
def test_deeply_nested_json_is_a_400_with_an_error_line(world):
    response = world["client"].post("/classify", content=b"[" * 50_000,
                                    headers={"Content-Type": "application/json"})
    refused(response, 400, "not valid JSON")
    refused(world["client"].post("/classify", content=b"\xff\xfe", headers={"Content-Type": "application/json"}),
            422, "JSON decode error")
    refused(world["client"].get("/no/such/route"), 404)


def test_a_chunked_body_over_the_limit_is_413(world):
    client = world["start"](max_batch=8)  # a body limit of 89,536 bytes

    def chunks():
        yield b'{"texts": ["'
        for _ in range(40):
            yield b"x" * 5_000
        yield b'"]}'

    refused(client.post("/classify", content=chunks(), headers={"Content-Type": "application/json"}), 413,
            "request body over")
    assert client.post("/classify", json={"texts": ["still serving"]}).status_code == 200


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/classify", '{"texts": ["ok", "\\ud800"]}', "texts.1"),
    ("/embed", '{"texts": ["\\udfff x"]}', "texts.0"),
    ("/similarity", '{"pairs": [["a", "\\ud800"]]}', "pairs.0.1"),
    ("/zeroshot", '{"texts": ["a"], "labels": ["pos", "\\ud800"]}', "labels.1"),
    ("/examples", '{"rows": [{"text": "\\ud800", "labels": ["positive"]}]}', "rows.0.text"),
    ("/examples", '{"rows": [{"id": "\\ud800", "text": "t", "labels": ["positive"]}]}', "rows.0.id"),
])
def test_lone_surrogates_are_422_naming_the_field(world, path, body, field):
    before = n_rows(world)
    response = world["client"].post(path, content=body.encode(), headers={"Content-Type": "application/json"})
    refused(response, 422, field, "not valid Unicode")
    assert n_rows(world) == before


# ---- 7, 10. start-up token rules ----------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "env", "needle"), [
    (["--token", ""], {}, "the token is empty"),
    (["--token", "   "], {}, "the token is empty"),
    ([], {"FEWLABEL_TOKEN": ""}, "the token is empty"),
    (["--token", "s\u00e9cret"], {}, "printable ASCII"),
    (["--token", "abc "], {}, "printable ASCII"),
    (["--token-file", "{d}/empty.txt"], {}, "the token is empty"),
    (["--token-file", "{d}/nowhere.txt"], {}, "cannot read it"),
    (["--token", "a", "--token-file", "{d}/token.txt"], {}, "not both"),
    (["--host", "0.0.0.0"], {}, "without a token"),
])
def test_serve_refuses_a_token_that_is_no_token_and_an_open_public_host(world, capsys, monkeypatch, args, env,
                                                                      needle):
    d = world["dir"]
    (d / "empty.txt").write_text("\n")
    (d / "token.txt").write_text("a-good-token\n")
    monkeypatch.delenv("FEWLABEL_TOKEN", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["serve", str(world["index"]), *[a.format(d=d) for a in args]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and needle in err, err


def test_token_file_is_read_without_its_newline(world, monkeypatch):
    from fewlabel.retrieval.cli.parser import build_parser
    from fewlabel.retrieval.cli.serve import resolve_token

    monkeypatch.delenv("FEWLABEL_TOKEN", raising=False)
    (world["dir"] / "token.txt").write_text("a-good-token\n")
    args = build_parser().parse_args(["serve", str(world["index"]), "--token-file", str(world["dir"] / "token.txt")])
    assert resolve_token(args) == "a-good-token"
    monkeypatch.setenv("FEWLABEL_TOKEN", "from-env")
    assert resolve_token(build_parser().parse_args(["serve", "x"])) == "from-env"
    assert os.environ["FEWLABEL_TOKEN"] == "from-env"


def test_zeroshot_refuses_a_blank_label_instead_of_dropping_it(world):
    response = world["client"].post("/zeroshot", json={"texts": ["a sunny day"], "labels": ["weather", " "]})
    refused(response, 422, "labels.1", "empty label")
