"""`fewlabel serve` for real: the server runs in a subprocess on a free loopback port and is called with httpx. Every
route, the error codes (401, 404, 409, 413, 422, 504), live add and delete (saved to the folder, visible to the next
/classify and to `fewlabel index info`), and /classify's labels against `fewlabel predict` on the same index."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'fewlabel[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install 'fewlabel[serve]')")
httpx = pytest.importorskip("httpx", reason="the serve extra is not installed (pip install 'fewlabel[serve]')")

from fewlabel.retrieval.cli import main  # noqa: E402
from tests.support.demo import COMMON, DEMO, slice_tsv  # noqa: E402
from tests.support.server import answers, health_ok, running_server  # noqa: E402

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An index of 80 GoEmotions rows (minilm) served with a token, small limits and a short timeout."""
    d = tmp_path_factory.mktemp("serve")
    train = slice_tsv(DEMO / "goemotions_ekman_train.tsv", d / "train.tsv", 0, 80)
    valid = slice_tsv(DEMO / "goemotions_ekman_valid.tsv", d / "valid.tsv", 0, 40)
    test = slice_tsv(DEMO / "goemotions_ekman_test.tsv", d / "test.tsv", 0, 12)
    index = d / "index"
    assert main(["-q", "index", "build", str(train), *COMMON, "--valid", str(valid), "--model", "minilm",
                 "--no-cache", "--max-k", "8", "--out", str(index)]) == 0
    env = {**os.environ, "FEWLABEL_TOKEN": TOKEN}
    with running_server([str(index), "--max-batch", "8", "--max-text-length", "500", "--timeout", "20", "--no-cache"],
                        d / "server.log", env=env,
                        ready=lambda c: health_ok(c) and c.get("/info", headers=AUTH).status_code == 200
                        ) as (server, base), httpx.Client(base_url=base, timeout=60) as client:
        yield {"client": client, "index": index, "test": test, "dir": d, "server": server,
               "port": int(base.rsplit(":", 1)[1])}


def test_health_and_docs_are_open_and_everything_else_needs_the_token(served):
    client = served["client"]
    assert client.get("/health").json() == {"status": "ok"}
    for method, path in (("GET", "/info"), ("POST", "/classify"), ("POST", "/examples"), ("DELETE", "/examples/1")):
        response = client.request(method, path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
    schema = client.get("/openapi.json").json()  # no token: the docs describe routes, not the index's data
    assert "/classify" in schema["paths"] and schema["security"] == [{"bearer": []}]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"  # Swagger's Authorize button


def test_api_docs_load_offline(served):
    """/docs and /redoc name only this server's own assets (no CDN), and those assets are served without a token."""
    client = served["client"]
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(page)
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        assert "cdn" not in html.text.lower() and "https://" not in html.text, page
        src = f"/static-offline-docs/{asset}"
        assert src in html.text
        js = client.get(src)
        assert js.status_code == 200 and len(js.content) > 100_000, src


def test_json_bodies_with_or_without_content_type(served):
    """A JSON body is read with ``Content-Type: application/json`` or with no content type; the form type ``curl -d``
    sends is a 415 naming the header to send, not a 422 about a field."""
    client = served["client"]
    body = json.dumps({"texts": ["I love it"]}).encode()
    typed = client.post("/classify", content=body, headers={**AUTH, "Content-Type": "application/json"})
    bare = client.build_request("POST", "/classify", content=body, headers=AUTH)
    bare.headers.pop("content-type", None)
    untyped = client.send(bare)
    assert typed.status_code == untyped.status_code == 200, untyped.text
    assert typed.json() == untyped.json()
    form = client.post("/classify", content=body,
                       headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    assert "Content-Type: application/json" in form.json()["error"]


def test_info(served):
    info = served["client"].get("/info", headers=AUTH).json()
    assert info["model"] == "minilm" and info["n_rows"] == 80 and info["method"] == "knn"
    assert info["multi_label"] is True and "joy" in info["labels"] and info["store"]["kind"] == "faiss"
    assert info["limits"]["max_batch"] == 8 and info["version"]
    assert type(info["k"]) is int and type(info["m"]) is int  # "m": 2, not 2.0


def test_classify_matches_fewlabel_predict(served):
    out = served["dir"] / "predictions.csv"
    assert main(["-q", "predict", str(served["index"]), str(served["test"]), "--id-col", "id", "--no-cache",
                 "--out", str(out)]) == 0
    with open(out, encoding="utf-8") as fh:
        expected = [json.loads(row["labels"]) for row in csv.DictReader(fh)]
    with open(served["test"], encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)]
    got = []
    for start in range(0, len(texts), 8):  # the server takes 8 texts a request
        response = served["client"].post("/classify", json={"texts": texts[start:start + 8]}, headers=AUTH)
        assert response.status_code == 200, response.text
        got += response.json()["predictions"]
    assert [p["labels"] for p in got] == expected
    assert all(p["route"] == "knn" and set(p["scores"]) >= set(p["labels"]) for p in got)
    explained = served["client"].post("/classify", json={"texts": texts[:1], "explain": True, "k": 3},
                                      headers=AUTH).json()["predictions"][0]
    assert len(explained["neighbours"]) == 3
    assert {"id", "text", "similarity", "labels"} <= set(explained["neighbours"][0])
    embed = served["client"].post("/classify", json={"texts": texts[:2], "fallback": "embed"}, headers=AUTH)
    assert embed.status_code == 200 and len(embed.json()["predictions"]) == 2


def test_similarity_embed_and_zeroshot(served):
    client = served["client"]
    scores = client.post("/similarity", json={"pairs": [["I love this", "I love this"], ["I love this", "tax law"]]},
                         headers=AUTH).json()["scores"]
    assert scores[0] == pytest.approx(5.0, abs=1e-3) and 0 <= scores[1] < scores[0]
    embedded = client.post("/embed", json={"texts": ["hello", "world"]}, headers=AUTH).json()
    assert embedded["dim"] == 384 and len(embedded["embeddings"]) == 2
    assert sum(v * v for v in embedded["embeddings"][0]) == pytest.approx(1.0, abs=1e-4)
    zero = client.post("/zeroshot", json={"texts": ["I am so happy today", "this makes me furious"],
                                          "labels": ["joy", "anger"]}, headers=AUTH).json()["predictions"]
    assert [p["labels"] for p in zero] == [["joy"], ["anger"]] and zero[0]["route"] == "zeroshot-embed"


def test_bad_requests_get_the_right_code_and_name_the_field(served):
    client = served["client"]
    bad_json = client.post("/classify", content=b"{not json", headers={**AUTH, "content-type": "application/json"})
    assert bad_json.status_code == 422 and bad_json.json()["detail"][0]["loc"][0] == "body"
    cases = [({"texts": "one text"}, ["body", "texts"]), ({"texts": [1, 2]}, ["body", "texts", 0]),
             ({"texts": ["a"], "k": 0}, ["body", "k"]), ({"texts": ["a"], "fallback": "maybe"}, ["body", "fallback"]),
             ({"txts": ["a"]}, ["body", "texts"]), ({"texts": ["fine", "   "]}, ["body", "texts", 1]),
             ({"texts": ["x" * 501]}, ["body", "texts", 0]), ({"texts": ["a"], "k": 1000}, ["body", "k"]),
             ({"texts": ["a"], "fallback": "nli"}, ["body", "fallback"])]
    for body, loc in cases:
        response = client.post("/classify", json=body, headers=AUTH)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"][0]["loc"] == loc, (body, response.json())
        assert response.json()["error"].startswith(".".join(map(str, loc)))
    too_many = client.post("/classify", json={"texts": ["a"] * 9}, headers=AUTH)
    assert too_many.status_code == 413
    huge = client.post("/embed", content=b'{"texts": ["' + b"a" * 3_000_000 + b'"]}',
                       headers={**AUTH, "content-type": "application/json"})
    assert huge.status_code == 413
    assert client.post("/similarity", json={"pairs": [["only one"]]}, headers=AUTH).status_code == 422
    blank = client.post("/similarity", json={"pairs": [["a", "b"], ["c", " "]]}, headers=AUTH)
    assert blank.status_code == 422 and blank.json()["detail"][0]["loc"] == ["body", "pairs", 1, 1]
    assert client.post("/similarity", json={"pairs": [["a", "b"]] * 8}, headers=AUTH).status_code == 200  # 16 texts
    assert client.post("/similarity", json={"pairs": [["a", "b"]] * 9}, headers=AUTH).status_code == 413
    row = client.post("/examples", json={"rows": [{"text": " ", "labels": ["joy"]}]}, headers=AUTH)
    assert row.status_code == 422 and row.json()["detail"][0]["loc"] == ["body", "rows", 0, "text"]
    assert client.get("/health").status_code == 200  # bad input never killed the server
    assert served["server"].poll() is None


def test_live_examples_are_added_saved_and_removed(served):
    client, index = served["client"], served["index"]
    text = "zxqv wobble flarn: the quokka jubilation"
    added = client.post("/examples", json={"rows": [{"id": "live-1", "text": text, "labels": ["wonder"]},
                                                    {"text": "another new one", "labels": ["joy"]}]}, headers=AUTH)
    assert added.status_code == 201, added.text
    assert added.json()["ids"][0] == "live-1" and added.json()["n_rows"] == 82
    assert "wonder" in client.get("/info", headers=AUTH).json()["labels"]
    nearest = client.post("/classify", json={"texts": [text], "explain": True, "k": 1}, headers=AUTH).json()
    assert nearest["predictions"][0]["labels"] == ["wonder"]
    assert nearest["predictions"][0]["neighbours"][0]["id"] == "live-1"
    meta = json.loads((index / "meta.json").read_text())  # saved like `index add`: the folder holds it
    assert meta["n_rows"] == 82 and "wonder" in meta["labels"]
    assert main(["index", "info", str(index)]) == 0
    clash = client.post("/examples", json={"rows": [{"id": "live-1", "text": "again", "labels": ["joy"]}]},
                        headers=AUTH)
    assert clash.status_code == 409 and "already in the index" in clash.json()["error"]
    no_labels = client.post("/examples", json={"rows": [{"text": "x", "labels": []}]}, headers=AUTH)
    assert no_labels.status_code == 422 and no_labels.json()["detail"][0]["loc"] == ["body", "rows", 0, "labels"]
    assert client.delete("/examples/live-1", headers=AUTH).json() == {"deleted": "live-1", "n_rows": 81}
    assert client.delete("/examples/live-1", headers=AUTH).status_code == 404
    assert "wonder" not in client.get("/info", headers=AUTH).json()["labels"]
    meta = json.loads((index / "meta.json").read_text())
    assert meta["n_rows"] == 81 and "wonder" not in meta["labels"]
    after = client.post("/classify", json={"texts": [text], "explain": True, "k": 1}, headers=AUTH).json()
    assert after["predictions"][0]["neighbours"][0]["id"] != "live-1"


def test_a_change_by_another_process_is_seen(served):
    """`fewlabel index add` while the server runs: the next request sees the new rows."""
    more = slice_tsv(DEMO / "goemotions_ekman_train.tsv", served["dir"] / "more.tsv", 200, 3)
    before = served["client"].get("/info", headers=AUTH).json()["n_rows"]
    assert main(["-q", "index", "add", str(served["index"]), str(more), *COMMON, "--no-cache"]) == 0
    assert served["client"].get("/info", headers=AUTH).json()["n_rows"] == before + 3


def test_serve_refuses_bad_start_as_one_line(tmp_path, served):
    busy = subprocess.run([sys.executable, "-m", "fewlabel.retrieval.cli", "serve", str(served["index"]),
                           "--port", str(served["port"])], capture_output=True, text=True, timeout=120)
    assert busy.returncode == 2 and "cannot listen on 127.0.0.1" in busy.stderr
    assert len(busy.stderr.strip().splitlines()) == 1
    assert main(["serve", str(tmp_path / "nothing")]) == 2


def test_a_request_over_the_timeout_gets_504_from_the_real_server(served):
    """The timeout through `fewlabel serve` itself: a second server on the same index with --timeout 0.001, where
    encoding eight long texts cannot finish in time (a server still starting answers 504 too, so readiness is any
    HTTP answer)."""
    texts = [f"Review {i}: " + "the film was long, loud and, in the end, oddly moving. " * 8 for i in range(8)]
    env = {k: v for k, v in os.environ.items() if k != "FEWLABEL_TOKEN"}
    with running_server([str(served["index"]), "--timeout", "0.001", "--no-cache"],
                        served["dir"] / "server-timeout.log", env=env, ready=answers
                        ) as (_, base), httpx.Client(base_url=base, timeout=60) as client:
        response = client.post("/classify", json={"texts": texts})
        assert response.status_code == 504, response.text
        assert response.json() == {"error": "the request took longer than 0.001 s (--timeout); send fewer texts per "
                                            "request"}


def test_guard_times_out_a_slow_request():
    """The timeout, on the guard itself (a request that is slow on purpose would slow the suite)."""
    import asyncio

    from fewlabel.retrieval.serve.app import Guard

    async def slow_app(scope, receive, send):
        await asyncio.sleep(5)

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    guard = Guard(slow_app, token=None, max_body_bytes=1000, timeout_s=0.2)
    scope = {"type": "http", "path": "/classify", "headers": []}
    asyncio.run(guard(scope, receive, send))
    assert sent[0]["status"] == 504 and b"longer than 0.2 s" in sent[1]["body"]
