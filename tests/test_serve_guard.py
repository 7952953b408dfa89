"""The service's guard (retrieval/serve/app.py `Guard`: the bearer token, the body limit and the timeout) called as
plain ASGI, in milliseconds, with a small app behind it. test_serve.py checks the same codes through the real
server; these are the ones mutation testing runs (`make mutation`, benchmarks/results/mutation.md)."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'fewlabel[serve]')")

from fewlabel.retrieval.serve.app import TICKET_KEY, Guard, WriteTicket, _error_line  # noqa: E402


def call(guard: Guard, *, path: str = "/classify", headers: dict[str, str] | None = None,
         chunks: tuple[bytes, ...] = (b"",), scope_type: str = "http", method: str = "POST") -> list[dict]:
    """Run one request through ``guard``; the messages it sent back."""
    sent: list[dict] = []
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def receive():
        return queue.pop(0)

    async def send(message):
        sent.append(message)

    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    asyncio.run(guard({"type": scope_type, "path": path, "headers": raw, "method": method}, receive, send))
    return sent


def reply(sent: list[dict]) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of a response the guard sent itself."""
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"], sent
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    body = sent[1]["body"]
    assert headers["content-type"] == "application/json" and headers["content-length"] == str(len(body))
    return sent[0]["status"], headers, json.loads(body)


async def reading_app(scope, receive, send):
    """Reads the whole body, then answers 200 with its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"size": size}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def guarded(app=reading_app, *, token: str | None = "s3cret", max_body: int = 100, timeout: float = 5.0) -> Guard:
    return Guard(app, token=token, max_body_bytes=max_body, timeout_s=timeout)


def test_the_right_token_passes_and_anything_else_is_401():
    assert call(guarded(), headers={"Authorization": "Bearer s3cret"})[0]["status"] == 200
    assert call(guarded(), headers={"Authorization": "bearer  s3cret "})[0]["status"] == 200  # scheme any case
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"},
                    {"Authorization": "s3cret"}, {"Authorization": "Bearer s3cret2"}):
        status, sent_headers, body = reply(call(guarded(), headers=headers))
        assert status == 401 and sent_headers["www-authenticate"] == "Bearer", headers
        assert body == {"error": "missing or wrong bearer token (Authorization: Bearer …)"}


def test_health_is_open_and_no_token_means_no_check():
    assert call(guarded(), path="/health")[0]["status"] == 200
    assert call(guarded(token=None))[0]["status"] == 200
    assert call(guarded(token=""))[0]["status"] == 200


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read():
    status, _, body = reply(call(guarded(), headers={"Authorization": "Bearer s3cret", "Content-Length": "1001"},
                                 chunks=(b"x" * 1001,)))
    assert status == 413 and body == {"error": "request body of 1,001 bytes; this server takes at most 100"}
    exactly = call(guarded(), headers={"Authorization": "Bearer s3cret", "Content-Length": "100"},
                   chunks=(b"x" * 100,))
    assert exactly[0]["status"] == 200 and json.loads(exactly[1]["body"]) == {"size": 100}


def test_a_chunked_body_is_counted_as_it_arrives():
    auth = {"Authorization": "Bearer s3cret"}
    status, _, body = reply(call(guarded(), headers=auth, chunks=(b"x" * 60, b"y" * 41)))
    assert status == 413 and body == {"error": "request body over 100 bytes"}
    fits = call(guarded(), headers=auth, chunks=(b"x" * 60, b"y" * 40))
    assert fits[0]["status"] == 200 and json.loads(fits[1]["body"]) == {"size": 100}


def test_a_slow_request_gets_504_naming_the_limit():
    async def slow(scope, receive, send):
        await asyncio.sleep(3)

    status, _, body = reply(call(guarded(slow, token=None, timeout=0.1)))
    assert status == 504
    assert body == {"error": "the request took longer than 0.1 s (--timeout); send fewer texts per request"}


def test_a_response_already_started_is_not_followed_by_a_second_one():
    async def starts_then_stalls(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(3)

    sent = call(guarded(starts_then_stalls, token=None, timeout=0.1))
    assert [m.get("status") for m in sent] == [200]

    async def starts_then_reads_too_much(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await receive()
        await receive()

    sent = call(guarded(starts_then_reads_too_much, token=None), chunks=(b"x" * 60, b"y" * 60))
    assert [m.get("status") for m in sent] == [200]


def test_other_scopes_pass_through_untouched():
    seen: list[str] = []

    async def app(scope, receive, send):
        seen.append(scope["type"])
        await send({"type": "lifespan.startup.complete", "got": (await receive())["type"]})

    assert call(guarded(app), scope_type="lifespan") == [{"type": "lifespan.startup.complete",
                                                          "got": "http.request"}]  # the server's own channels
    assert seen == ["lifespan"]


def test_error_line_joins_the_location():
    assert _error_line(["body", "texts", 3], "too long") == "body.texts.3: too long"
    assert _error_line([], "too long") == "too long"


def test_the_api_docs_and_their_assets_are_open_and_nothing_else_is():
    for path in ("/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json",
                 "/static-offline-docs/swagger-ui.css"):
        assert call(guarded(), path=path, method="GET")[0]["status"] == 200, path
    for path in ("/info", "/docs/other", "/static-offline-docs", "/static-offline-docsx/a", "/openapi.json/x"):
        assert call(guarded(), path=path, method="GET")[0]["status"] == 401, path


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
                                          "application/problem+json", " application/json ;q=1", None])
def test_a_json_body_or_none_is_taken(content_type):
    headers = {"Authorization": "Bearer s3cret", **({"Content-Type": content_type} if content_type else {})}
    for method in ("POST", "PUT", "PATCH"):
        assert call(guarded(), headers=headers, method=method)[0]["status"] == 200


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", "text/json",
                                          "application/jsonx", "multipart/form-data; boundary=x", "json"])
def test_another_content_type_is_415_naming_it_and_the_header_to_send(content_type):
    headers = {"Authorization": "Bearer s3cret", "Content-Type": content_type}
    for method in ("POST", "PUT", "PATCH"):
        status, _, body = reply(call(guarded(), headers=headers, method=method))
        assert status == 415 and body == {"error": f"content type {content_type!r} is not JSON; send the body as "
                                                   "JSON: -H 'Content-Type: application/json' (curl: --json '{…}')"}
    # a request without a body is not checked
    assert call(guarded(), headers={"Authorization": "Bearer s3cret", "Content-Type": content_type},
                method="GET")[0]["status"] == 200


def test_a_content_length_that_is_not_a_number_is_left_to_the_server():
    sent = call(guarded(), headers={"Authorization": "Bearer s3cret", "Content-Length": "a lot"}, chunks=(b"x" * 10,))
    assert sent[0]["status"] == 200


def writer(seconds: float, commits: bool, seen: list):
    """An app that, like the live-examples routes, asks the request's ticket before it saves, after ``seconds``."""
    async def app(scope, receive, send):
        seen.append(scope.get(TICKET_KEY))
        await asyncio.sleep(seconds)
        ticket = scope.get(TICKET_KEY)
        if commits and ticket is not None and not ticket.commit():
            return
        await asyncio.sleep(0.3 if commits else 0)  # committing past the timeout
        body = json.dumps({"saved": True}).encode()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": body})
    return app


@pytest.mark.parametrize(("method", "path"), [("POST", "/examples"), ("DELETE", "/examples/r1")])
def test_a_write_that_began_to_commit_answers_its_real_outcome_past_the_timeout(method, path):
    seen: list = []
    sent = call(guarded(writer(0.0, True, seen), token=None, timeout=0.1), path=path, method=method)
    assert isinstance(seen[0], WriteTicket) and seen[0].state == "committing"
    assert sent[0]["status"] == 201 and json.loads(sent[1]["body"]) == {"saved": True}


def test_a_write_that_had_not_begun_is_cancelled_and_says_nothing_was_saved():
    seen: list = []
    status, _, body = reply(call(guarded(writer(0.3, True, seen), token=None, timeout=0.1), path="/examples"))
    assert status == 504 and body == {"error": "the request took longer than 0.1 s (--timeout); send fewer texts per "
                                               "request; nothing was saved"}
    assert seen[0].state == "cancelled"


def test_reads_and_other_paths_get_no_ticket():
    for method, path in (("GET", "/examples"), ("POST", "/classify"), ("PUT", "/examples"), ("GET", "/info")):
        seen: list = []
        scopes: list = []

        async def app(scope, receive, send, seen=seen, scopes=scopes):
            scopes.append(scope)
            await writer(0.0, False, seen)(scope, receive, send)

        call(guarded(app, token=None), path=path, method=method)
        assert seen == [None] and TICKET_KEY not in scopes[0], (method, path)


def test_the_ticket_is_decided_once():
    ticket = WriteTicket()
    assert ticket.state == "open" and ticket.commit() is True and ticket.state == "committing"
    assert ticket.cancel() is False and ticket.commit() is True and ticket.state == "committing"
    other = WriteTicket()
    assert other.cancel() is True and other.state == "cancelled"
    assert other.commit() is False and other.cancel() is True and other.state == "cancelled"


def test_an_error_inside_the_app_is_not_swallowed():
    async def broken(scope, receive, send):
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        call(guarded(broken, token=None))


def test_a_content_type_with_several_parameters_is_still_json():
    headers = {"Authorization": "Bearer s3cret", "Content-Type": "application/json; charset=utf-8; v=2"}
    assert call(guarded(), headers=headers)[0]["status"] == 200


def test_a_request_scope_without_headers_is_checked_like_one_with_none():
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(guarded()({"type": "http", "path": "/info", "method": "GET"}, receive, send))
    assert sent[0]["status"] == 401


def test_after_a_413_the_app_hears_a_disconnect_and_no_second_answer_follows():
    heard: list[dict] = []

    async def reads_too_much_then_stalls(scope, receive, send):
        heard.append(await receive())
        heard.append(await receive())
        await asyncio.sleep(3)  # past the timeout: the 413 already answered, so no 504 may follow

    sent = call(guarded(reads_too_much_then_stalls, token=None, timeout=0.2), chunks=(b"x" * 60, b"y" * 60))
    status, _, body = reply(sent)
    assert status == 413 and body == {"error": "request body over 100 bytes"}
    assert heard[1] == {"type": "http.disconnect"} and heard[0]["type"] == "http.request"
