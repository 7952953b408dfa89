"""The FastAPI application of `fewlabel serve`.

- The models load once, in the lifespan, into `app.state.service` (see `.service`).
- Endpoints are plain ``def``: the work is CPU-bound (torch, FAISS), so FastAPI runs them in its thread pool and
  the event loop keeps answering (``/health`` stays quick while a batch is encoded).
- One ASGI guard in front of everything: bearer-token auth on every path but the open ones (``/health`` and the API
  docs), a request body limit (413 before the body is read), a content-type check (415), and a request timeout
  (504; the work already started finishes in its thread, its result is dropped).
- The API docs (``/docs``, ``/redoc``, ``/openapi.json``) are open without the token, and their Swagger/ReDoc
  assets are served from the ``fastapi-offline`` package, so a browser opens them offline. They describe the
  routes and field schemas only, which the source and the docs site publish anyway; no label, text or setting of
  the index is in them. Every route that reads or changes the index still needs the token.
- A body is JSON: ``Content-Type: application/json`` (or ``+json``), or no content type at all (accepted as JSON,
  as many APIs do: ``strict_content_type=False``). Any other type, such as the form type ``curl -d`` sends, is a
  415 that says which header to send, instead of a 422 about a field.
- Errors are JSON: a bad field is a 422 whose ``detail[0].loc`` names it and whose ``error`` says it in one line;
  a refused request is 4xx with ``error``; a bug is a 500 with one line, and the server keeps serving."""

from __future__ import annotations

import asyncio
import gc
import json
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from fewlabel.indexing.errors import DataError, FewlabelError, first_line
from fewlabel.retrieval.serve.schemas import (
    ClassifyRequest,
    ClassifyResponse,
    DeleteResponse,
    EmbedRequest,
    EmbedResponse,
    ExamplesRequest,
    ExamplesResponse,
    HealthResponse,
    InfoResponse,
    SimilarityRequest,
    SimilarityResponse,
    ZeroShotRequest,
    ZeroShotResponse,
)
from fewlabel.retrieval.serve.service import RequestError, ServeSettings, Service, scrub_paths
from fewlabel.retrieval.serve.speed import install_speed, serving_info

__all__ = ["app_from_env", "create_app"]

OPEN_PATHS = {"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
DOCS_ASSETS = "/static-offline-docs"  # fastapi-offline's Swagger UI and ReDoc files (open, like the pages)
JSON_HELP = "send the body as JSON: -H 'Content-Type: application/json' (curl: --json '{…}')"


def _open_path(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(DOCS_ASSETS + "/")


def _json_or_absent(content_type: str) -> bool:
    """True for no content type or a JSON one (``application/json``, ``application/problem+json``, with or without
    ``; charset=…``)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return not kind or kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _error_line(loc: list, message: str) -> str:
    return f"{'.'.join(str(part) for part in loc)}: {message}" if loc else message


async def _send_json(send, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(payload).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Auth, body size and timeout, as plain ASGI so that it wraps the docs and the error handlers too."""

    def __init__(self, app, *, token: str | None, max_body_bytes: int, timeout_s: float) -> None:
        self.app, self.token = app, token
        self.max_body_bytes, self.timeout_s = max_body_bytes, timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.token and not _open_path(scope["path"]):
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), self.token.encode()):
                await _send_json(send, 401, {"error": "missing or wrong bearer token (Authorization: Bearer …)"},
                                 {"WWW-Authenticate": "Bearer"})
                return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _send_json(send, 413, {"error": f"request body of {int(length):,} bytes; this server takes at "
                                                  f"most {self.max_body_bytes:,}"})
            return
        if scope.get("method") in ("POST", "PUT", "PATCH") and not _json_or_absent(headers.get("content-type", "")):
            await _send_json(send, 415, {"error": f"content type {headers['content-type']!r} is not JSON; {JSON_HELP}"})
            return
        started = refused = False
        seen = 0

        async def limited_receive():
            """Count a chunked body as it arrives (no Content-Length to check up front): over the limit, answer
            413 here (the app would turn an exception raised inside its body parsing into a 400) and tell the
            app the client is gone."""
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    if not started and not refused:
                        refused = True
                        await send_413()
                    return {"type": "http.disconnect"}
            return message

        async def send_413() -> None:
            nonlocal started
            started = True
            await _send_json(send, 413, {"error": f"request body over {self.max_body_bytes:,} bytes"})

        async def tracking_send(message) -> None:
            nonlocal started
            if refused:
                return  # the 413 is the answer
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        # a write (live examples) gets a ticket: at the timeout it is cancelled if it has not begun to commit;
        # once committing, its real answer is awaited, so a client never hears 504 for rows that were saved
        ticket = WriteTicket() if scope.get("method") in WRITE_METHODS and scope["path"].startswith("/examples") \
            else None
        scope = {**scope, TICKET_KEY: ticket} if ticket is not None else scope
        task = asyncio.ensure_future(self.app(scope, limited_receive, tracking_send))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timeout_s)
            if not done and ticket is not None and not ticket.cancel():
                await task  # committed or committing: its real outcome
                return
            if not done:
                task.cancel()
                if not started:
                    await _send_json(send, 504, {"error": f"the request took longer than {self.timeout_s:g} s "
                                                          "(--timeout); send fewer texts per request"
                                                          + ("; nothing was saved" if ticket is not None else "")})
                return
            task.result()
        except Exception:
            if not refused:
                raise
        except asyncio.CancelledError:
            task.cancel()
            raise


WRITE_METHODS = {"POST", "DELETE"}
TICKET_KEY = "fewlabel.write_ticket"


class WriteTicket:
    """Decides, once, whether a write commits or is cancelled by the timeout: the worker thread calls
    :meth:`commit` just before saving, the guard :meth:`cancel` at the timeout; whichever comes first wins."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self.state = "open"

    def commit(self) -> bool:
        with self._lock:
            if self.state == "open":
                self.state = "committing"
            return self.state == "committing"

    def cancel(self) -> bool:
        with self._lock:
            if self.state == "open":
                self.state = "cancelled"
            return self.state == "cancelled"


def _refusal(exc: RequestError) -> JSONResponse:
    payload: dict = {"error": _error_line(exc.loc, str(exc))}
    if exc.status == 422:
        payload["detail"] = [{"loc": exc.loc, "msg": str(exc), "type": "value_error"}]
    return JSONResponse(payload, status_code=exc.status)


def freeze_loaded_objects() -> None:
    """Move everything loaded so far (the models, the tokenizers, the index) out of the garbage collector's
    reach. Requests make short-lived objects, and each full collection otherwise walks the millions the models
    hold: a pause of about 100 ms that every request waiting on the event loop felt, /health too (its slowest
    answer at 32 clients fell from 112 to 18 ms with this, serving-speed.md). The frozen objects are never
    freed, which is what a server's models are anyway."""
    gc.collect()
    gc.freeze()


def create_app(settings: ServeSettings, service: Service | None = None) -> FastAPI:
    """The application for ``settings``; the lifespan loads the :class:`Service` (or uses ``service``, already
    loaded, in tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            app.state.service = service or await asyncio.to_thread(Service, settings)
        except FewlabelError as exc:  # one line, as the CLI says it; uvicorn then stops
            print(f"fewlabel: error: {exc}", file=sys.stderr, flush=True)
            raise
        app.state.metrics.watch(app.state.service.encoder)
        freeze_loaded_objects()
        yield
        await asyncio.to_thread(app.state.stop_service, app.state.service)

    app = FastAPIOffline(title="fewlabel", lifespan=lifespan, strict_content_type=False,
                         description="Label text when labels are few: kNN over a label index, zero-shot, "
                                     "similarity, and live examples. Bodies are JSON. Every route but /health and "
                                     "these docs needs the bearer token when the server was started with one "
                                     "(Authorize, above).")
    if settings.token:
        _declare_bearer(app)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors: list[dict[str, Any]] = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()]
        first: dict[str, Any] = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        return JSONResponse({"error": _error_line(first["loc"], first["msg"]), "detail": errors}, status_code=422)

    @app.exception_handler(RequestError)
    async def refused(_: Request, exc: RequestError) -> JSONResponse:
        return _refusal(exc)

    @app.exception_handler(DataError)
    async def bad_data(_: Request, exc: DataError) -> JSONResponse:
        return _refusal(RequestError(422, exc.reason, ["body", *([exc.field] if exc.field else [])]))

    @app.exception_handler(FewlabelError)
    async def fewlabel_error(_: Request, exc: FewlabelError) -> JSONResponse:
        return JSONResponse({"error": scrub_paths(first_line(exc), settings)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's own refusals (an unknown route, a wrong method, a body that is not JSON or nested too
        deep to parse) get the same ``error`` line as every other refusal."""
        detail = exc.detail if isinstance(exc.detail, str) else "refused"
        if exc.status_code == 400 and "parsing the body" in detail:
            detail = "the request body is not valid JSON (or is nested too deeply to parse)"
        return JSONResponse({"error": detail, "detail": detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def bug(_: Request, exc: Exception) -> JSONResponse:
        print(f"fewlabel serve: internal error: {type(exc).__name__}: {first_line(exc)}", file=sys.stderr,
              flush=True)  # the whole message, paths included, for the server's log only
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: "
                                      f"{scrub_paths(first_line(exc), settings)}"}, status_code=500)

    def svc(request: Request) -> Service:
        return request.app.state.service

    @app.get("/health", response_model=HealthResponse, summary="liveness (no token needed)")
    async def health() -> dict:  # on the event loop: answers at once even while every pool thread waits
        return {"status": "ok"}

    @app.get("/info", response_model=InfoResponse, summary="model, labels, method, size, version, limits")
    def info(request: Request) -> dict:
        return {**svc(request).info(), "serving": serving_info(svc(request), settings)}

    @app.get("/metrics", summary="Prometheus metrics (requests, latency, batches, queue, texts, examples)")
    def metrics(request: Request) -> Response:
        body, content_type = request.app.state.metrics.render()
        return Response(body, media_type=content_type)

    @app.post("/classify", response_model=ClassifyResponse, response_model_exclude_none=True,
              summary="labels for texts, identical to `fewlabel predict` on the same index")
    def classify(body: ClassifyRequest, request: Request) -> dict:
        return {"predictions": svc(request).classify(body.texts, body.k, body.explain, body.fallback)}

    @app.post("/similarity", response_model=SimilarityResponse, summary="0-5 similarity of sentence pairs")
    def similarity(body: SimilarityRequest, request: Request) -> dict:
        return {"scores": svc(request).similarity(body.pairs)}

    @app.post("/embed", response_model=EmbedResponse, summary="unit vectors from the index's encoder")
    def embed(body: EmbedRequest, request: Request) -> dict:
        service = svc(request)
        return {"embeddings": service.embed(body.texts), "model": service.encoder.model_name,
                "dim": service.encoder.dim}

    @app.post("/zeroshot", response_model=ZeroShotResponse, summary="labels from label names alone")
    def zeroshot(body: ZeroShotRequest, request: Request) -> dict:
        return {"predictions": svc(request).zeroshot(body.texts, body.labels, body.multi_label)}

    @app.post("/examples", response_model=ExamplesResponse, status_code=201,
              summary="add labelled examples live (saved like `fewlabel index add`)")
    def add_examples(body: ExamplesRequest, request: Request) -> dict:
        result = svc(request).add_examples([row.model_dump() for row in body.rows], request.scope.get(TICKET_KEY))
        request.app.state.metrics.examples_added.inc(result["added"])
        return result

    @app.delete("/examples/{row_id:path}", response_model=DeleteResponse,
                summary="remove one example (an id holding '/' is written as it is)")
    def delete_example(row_id: str, request: Request) -> dict:
        result = svc(request).delete_example(row_id, request.scope.get(TICKET_KEY))
        request.app.state.metrics.examples_deleted.inc()
        return result

    from fewlabel.retrieval.serve.labelling import register_labelling

    register_labelling(app, settings, OPEN_PATHS)  # /suggest, /check, the /ui page (its files need no token)
    app.add_middleware(Guard, token=settings.token, max_body_bytes=settings.max_body_bytes,
                       timeout_s=settings.timeout_s)
    install_speed(app, settings)  # /metrics counting (outermost), the queue's 503s, the drain at shutdown
    return app


def _declare_bearer(app: FastAPI) -> None:
    """Declare the bearer token in the OpenAPI schema, so Swagger's Authorize button sends it with "Try it out"
    (the Guard, not FastAPI, checks it)."""
    plain = app.openapi

    def openapi() -> dict:
        schema = plain()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
            "type": "http", "scheme": "bearer"}
        schema["security"] = [{"bearer": []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema


def app_from_env() -> FastAPI:
    """uvicorn's factory for ``--workers N``: each worker process builds its app from the settings the CLI put in
    the environment."""
    return create_app(ServeSettings.from_env())
