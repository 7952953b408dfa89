"""The FastAPI application of `fewlabel serve`.

- The models load once, in the lifespan, into `app.state.service` (see `.service`).
- Endpoints are plain ``def``: the work is CPU-bound (torch, FAISS), so FastAPI runs them in its thread pool and
  the event loop keeps answering (``/health`` stays quick while a batch is encoded).
- One ASGI guard in front of everything: bearer-token auth on every path but ``/health``, a request body limit
  (413 before the body is read), and a request timeout (504; the work already started finishes in its thread, its
  result is dropped).
- Errors are JSON: a bad field is a 422 whose ``detail[0].loc`` names it and whose ``error`` says it in one line;
  a refused request is 4xx with ``error``; a bug is a 500 with one line, and the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

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
from fewlabel.retrieval.serve.service import RequestError, ServeSettings, Service

__all__ = ["app_from_env", "create_app"]

OPEN_PATHS = {"/health"}


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
        if self.token and scope["path"] not in OPEN_PATHS:
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
        receive = self._limited(receive)
        started = False

        async def tracking_send(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, tracking_send), self.timeout_s)
        except asyncio.TimeoutError:
            if not started:
                await _send_json(send, 504, {"error": f"the request took longer than {self.timeout_s:g} s "
                                                      "(--timeout); send fewer texts per request"})
        except _BodyTooLarge:
            if not started:
                await _send_json(send, 413, {"error": f"request body over {self.max_body_bytes:,} bytes"})

    def _limited(self, receive):
        """Count a chunked body as it arrives (no Content-Length to check up front)."""
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        return limited_receive


class _BodyTooLarge(Exception):
    pass


def _refusal(exc: RequestError) -> JSONResponse:
    payload: dict = {"error": _error_line(exc.loc, str(exc))}
    if exc.status == 422:
        payload["detail"] = [{"loc": exc.loc, "msg": str(exc), "type": "value_error"}]
    return JSONResponse(payload, status_code=exc.status)


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
        yield

    app = FastAPI(title="fewlabel", lifespan=lifespan,
                  description="Label text when labels are few: kNN over a label index, zero-shot, similarity, "
                              "and live examples. Every route but /health needs the bearer token when the server "
                              "was started with one.")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        return JSONResponse({"error": _error_line(first["loc"], first["msg"]), "detail": errors}, status_code=422)

    @app.exception_handler(RequestError)
    async def refused(_: Request, exc: RequestError) -> JSONResponse:
        return _refusal(exc)

    @app.exception_handler(DataError)
    async def bad_data(_: Request, exc: DataError) -> JSONResponse:
        return _refusal(RequestError(422, exc.reason, ["body", *([exc.field] if exc.field else [])]))

    @app.exception_handler(FewlabelError)
    async def fewlabel_error(_: Request, exc: FewlabelError) -> JSONResponse:
        return JSONResponse({"error": first_line(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def bug(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {first_line(exc)}"}, status_code=500)

    def svc(request: Request) -> Service:
        return request.app.state.service

    @app.get("/health", response_model=HealthResponse, summary="liveness (no token needed)")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/info", response_model=InfoResponse, summary="model, labels, method, size, version, limits")
    def info(request: Request) -> dict:
        return svc(request).info()

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
        return svc(request).add_examples([row.model_dump() for row in body.rows])

    @app.delete("/examples/{row_id}", response_model=DeleteResponse, summary="remove one example")
    def delete_example(row_id: str, request: Request) -> dict:
        return svc(request).delete_example(row_id)

    from fewlabel.retrieval.serve.labelling import register_labelling

    register_labelling(app, settings, OPEN_PATHS)  # /suggest, /check, the /ui page (its files need no token)
    app.add_middleware(Guard, token=settings.token, max_body_bytes=settings.max_body_bytes,
                       timeout_s=settings.timeout_s)
    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory for ``--workers N``: each worker process builds its app from the settings the CLI put in
    the environment."""
    return create_app(ServeSettings.from_env())
