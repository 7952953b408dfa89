"""The labelling loop in `fewlabel serve`: POST /suggest, POST /check, GET /labelling/status, POST /labelling/refit,
and the page at /ui (plain HTML and a little JavaScript from ``static/``, no CDN: it works offline).

Answers from the page go through the existing POST /examples (so they are added under the same lock, and saved
as `fewlabel index add` saves). The page itself and its two files carry no data, so they are served without
the token; the page asks for the token once (kept in the browser's localStorage) and sends it as a bearer
token on every API call, which the server checks as for any other route.

Suggestions come from the server's pool (``fewlabel serve INDEX --pool FILE``) or from texts sent with the
request. The pool's vectors are computed once (and kept in the pool cache, see
:mod:`fewlabel.retrieval.labelling.pool`); the index's method as a probability model is rebuilt only when the
index changes."""

from __future__ import annotations

import threading
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from fewlabel.indexing.errors import FewlabelError

if TYPE_CHECKING:
    from fewlabel.indexing.readers import Row
    from fewlabel.retrieval.labelling.model import IndexModel

__all__ = ["UI_PATHS", "register_labelling"]

UI_PATHS = {"/", "/ui", "/ui/app.js", "/ui/app.css"}  # no data in them: served without the token
_TYPES = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}


class SuggestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(default=10, ge=1, description="how many texts to suggest (at most --max-batch)")
    strategy: Literal["auto", "uncertainty", "diverse", "random"] = "auto"
    texts: list[str] | None = Field(default=None, description="a pool sent with the request (default: --pool)")
    exclude: list[str] = Field(default_factory=list, description="texts not to suggest (skipped ones)")
    seed: int = 0


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    folds: int = Field(default=5, ge=2, le=20)
    all: bool = Field(default=False, description="rank every row, not only the ones cleanlab flags")
    limit: int = Field(default=100, ge=1, description="most suspects returned")


class LabellingState:
    """What the labelling routes keep between requests: the pool, its vectors, and the model of the index."""

    def __init__(self, pool_spec: dict | None) -> None:
        self.pool_spec = pool_spec
        self.lock = threading.Lock()
        self.pool: list[Row] | None = None
        self.pool_vectors: np.ndarray | None = None
        self.model: IndexModel | None = None
        self.model_stamp: tuple[int, Any] | None = None
        self.added = 0  # rows this server's page added (POST /labelling/refit is told by the page)


def _request_error(status: int, message: str, loc: list):
    from fewlabel.retrieval.serve.service import RequestError

    return RequestError(status, message, loc)


def _pool(service, state: LabellingState):
    """The server's pool rows and vectors, read and encoded (or read from the pool cache) once."""
    from fewlabel.indexing.encoders.cache import encode_with_cache
    from fewlabel.indexing.readers import read_texts
    from fewlabel.retrieval.labelling.pool import pool_vectors

    with state.lock:
        if state.pool is None:
            spec = state.pool_spec
            if not spec:
                raise _request_error(422, "this server has no pool: start it with --pool FILE, or send texts",
                                     ["body", "texts"])
            rows = read_texts(spec["path"], text_col=spec.get("text_col", "text"), id_col=spec.get("id_col"),
                              header=not spec.get("no_header", False))
            vectors, _ = pool_vectors(service.index.encoder, [r.text for r in rows],
                                      lambda texts: encode_with_cache(service.encoder, texts, service.cache,
                                                                      batch_size=service.settings.batch_size),
                                      cache=service.settings.cache)
            state.pool, state.pool_vectors = rows, np.asarray(vectors)
        return state.pool, state.pool_vectors


def _model(service, state: LabellingState):
    """The index's method as a probability model, rebuilt when the index changed (a save replaces meta.json)."""
    from fewlabel.retrieval.labelling.model import index_model
    from fewlabel.retrieval.methods.index_method import index_vectors

    stamp = (id(service.index), service._stamp_seen)
    with state.lock:
        if state.model is None or state.model_stamp != stamp:
            state.model = index_model(service.index, index_vectors(service.index, service.encoder, service.cache))
            state.model_stamp = stamp
        return state.model


def status(service, state: LabellingState) -> dict:
    """Label counts, size, method and its estimated score (cross-validated or on --valid) from the last fit."""
    service._refresh()
    with service.lock.read():
        index = service.index
        counts = {name: 0 for name in index.label_names}
        for row in index.rows:
            for label in row.labels:
                counts[label] = counts.get(label, 0) + 1
        method = index.method or {}
        chosen = next((e for e in method.get("leaderboard") or [] if e.get("method") == method.get("name")), None)
        score = None
        if chosen is not None and chosen.get("score") is not None:  # None: chosen unscored (too few rows)
            score = {"value": round(float(chosen["score"]), 4), "spread": round(float(chosen.get("spread", 0)), 4),
                     "metric": (method.get("protocol") or {}).get("metric", "micro"),
                     "how": (method.get("protocol") or {}).get("note", "")}
        elif index.tuning:
            score = {"value": round(float(index.tuning["score"]), 4), "spread": 0.0,
                     "metric": index.tuning.get("metric", "micro"), "how": "kNN's k and m tuned on validation rows"}
        return {"labels": list(index.label_names), "counts": counts, "n_rows": len(index),
                "multi_label": index.multi_label, "method": method.get("name", "knn"),
                "stale": bool(method.get("stale")), "score": score, "added_by_page": state.added,
                "pool": bool(state.pool_spec)}


def suggest(service, state: LabellingState, body: SuggestRequest) -> dict:
    from fewlabel.indexing.readers import Row
    from fewlabel.retrieval.labelling.suggest import suggest as pick

    service.check_count(body.n, "n")
    if body.texts is not None:
        service.check_texts(body.texts, "texts")
        rows = [Row(text=t, labels=(), id=str(i), line=i + 1) for i, t in enumerate(body.texts)]
        from fewlabel.indexing.encoders.cache import encode_with_cache

        vectors = encode_with_cache(service.encoder, body.texts, service.cache,
                                    batch_size=service.settings.batch_size)
    else:
        rows, vectors = _pool(service, state)
    service._refresh()
    with service.lock.read():
        model = _model(service, state)
        skip = set(body.exclude)
        keep = [i for i, r in enumerate(rows) if r.text not in skip] if skip else list(range(len(rows)))
        picked = pick(service.index, [rows[i] for i in keep], vectors[np.asarray(keep, dtype=np.int64)], model,
                      n=body.n, strategy=body.strategy, seed=body.seed)
        return {"suggestions": [p.as_dict() for p in picked], "strategy": body.strategy, "method": model.name,
                "pool_size": len(rows), "n_rows": len(service.index)}


def check(service, body: CheckRequest) -> dict:
    from fewlabel.retrieval.labelling.check import check_index
    from fewlabel.retrieval.methods.index_method import index_vectors

    service._refresh()
    with service.lock.read():
        try:
            result = check_index(service.index, index_vectors(service.index, service.encoder, service.cache),
                                 folds=body.folds, everything=body.all)
        except FewlabelError as exc:
            raise _request_error(409, str(exc), []) from exc
    out = result.as_dict()
    out["suspects"] = out["suspects"][:body.limit]
    return out


def refit(service, state: LabellingState, added: int) -> dict:
    """Refit the index's method on every row (auto chooses again unless a person named the method), saved under
    the index lock as `fewlabel index add` saves; the new estimated score is in the answer."""
    from fewlabel.indexing.store.label_index import LabelIndex
    from fewlabel.retrieval.methods.index_method import fit_method
    from fewlabel.retrieval.methods.registry import MIN_CV_ROWS
    from fewlabel.retrieval.methods.store import method_record

    with service.lock.write():
        with LabelIndex.update(service.folder, service.encoder) as index:
            old = index.method or {}
            method = old.get("name", "knn") if old.get("chosen_by") == "user" else "auto"
            if len(index) < MIN_CV_ROWS or method == "knn":
                index.method = method_record("knn", chosen_by=old.get("chosen_by", "auto"), settings={},
                                             labels=index.label_names, data_fingerprint=index.fingerprint)
                index.method_files = {}
            else:
                fit_method(index, service.encoder, None, method=method, cache=service.cache,
                           batch_size=service.settings.batch_size)
        service._adopt(index)
    state.added += max(0, int(added))
    return status(service, state)


def _static(name: str) -> str:
    return resources.files("fewlabel.retrieval.serve").joinpath("static", name).read_text(encoding="utf-8")


INDEX_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>fewlabel</title></head>
<body style="font-family: sans-serif"><h1>fewlabel</h1><ul>
<li><a href="/ui">labelling page</a>: label the texts the index suggests, review suspected errors</li>
<li><a href="/docs">API docs</a> (OpenAPI)</li></ul></body></html>"""


def register_labelling(app: FastAPI, settings, open_paths: set[str]) -> None:
    """Add the labelling routes and the page to ``app`` (called by ``create_app``); the page's paths join
    ``open_paths``, the paths the token guard lets through."""
    open_paths.update(UI_PATHS)
    pool = getattr(settings, "pool", None)
    state = LabellingState({"path": pool, "text_col": getattr(settings, "pool_text_col", "text"),
                            "id_col": getattr(settings, "pool_id_col", None)} if pool else None)

    def svc(request: Request):
        return request.app.state.service

    @app.get("/", include_in_schema=False)
    def home() -> HTMLResponse:
        return HTMLResponse(INDEX_PAGE)

    @app.get("/ui", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(_static("index.html"))

    @app.get("/ui/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in _TYPES:
            raise _request_error(404, f"no such file: {name}", ["path", "name"])
        return Response(_static(name), media_type=_TYPES[name])

    @app.post("/suggest", summary="texts worth labelling next, with the index's guess (as `fewlabel suggest`)")
    def suggest_route(body: SuggestRequest, request: Request) -> dict:
        return suggest(svc(request), state, body)

    @app.post("/check", summary="labelled rows whose label looks wrong (as `fewlabel check`)")
    def check_route(body: CheckRequest, request: Request) -> dict:
        return check(svc(request), body)

    @app.get("/labelling/status", summary="label counts, size, method and its estimated score")
    def status_route(request: Request) -> dict:
        return status(svc(request), state)

    @app.post("/labelling/refit", summary="refit the index's method on every row (after a labelling round)")
    def refit_route(request: Request, added: int = 0) -> dict:
        return refit(svc(request), state, added)
