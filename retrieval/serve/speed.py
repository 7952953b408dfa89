"""The production-speed parts of `fewlabel serve`, hooked into the app in one call (:func:`install_speed`), so
that the app module keeps its routes and its error contract and this stays in modules of its own:

- ``/metrics`` counting (:mod:`.metrics`), outermost, so refusals by the guard are counted too;
- the dynamic batcher's 503 (:class:`.batching.QueueFull`) with ``Retry-After``;
- the drain at shutdown (:mod:`.shutdown`);
- what ``/info`` says about the backend, the threads and the batching (:func:`serving_info`)."""

from __future__ import annotations

import gc
import os
from functools import partial

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fewlabel.retrieval.serve.batching import QueueFull, available_cores
from fewlabel.retrieval.serve.metrics import MetricsMiddleware, ServeMetrics
from fewlabel.retrieval.serve.shutdown import stop_service

__all__ = ["install_speed", "serving_info"]


def install_speed(app: FastAPI, settings) -> None:
    metrics = app.state.metrics = ServeMetrics()
    app.state.stop_service = partial(stop_service, metrics=metrics, timeout_s=max(1.0, settings.drain_s))

    @app.exception_handler(QueueFull)
    async def queue_full(_: Request, exc: QueueFull) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after_s)})

    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)


def serving_info(service, settings) -> dict:
    """Which backend answers, on how many threads, and how requests are batched."""
    encoder = service.encoder
    batcher = getattr(encoder, "batcher", None)
    try:
        import torch

        torch_threads = torch.get_num_threads()
    except ImportError:
        torch_threads = None
    return {"backend": getattr(encoder, "backend", None), "device": getattr(encoder, "device", None),
            "pid": os.getpid(), "cores": available_cores(), "workers": settings.workers,
            "compute_threads": getattr(encoder, "compute_threads", None), "torch_threads": torch_threads,
            "batching": {"enabled": batcher is not None, **(batcher.settings() if batcher is not None else {}),
                         "queue_texts": batcher.depth if batcher is not None else 0},
            "drain_timeout_s": settings.drain_s, "gc_frozen_objects": gc.get_freeze_count()}
