"""Prometheus metrics of `fewlabel serve` (GET /metrics, behind the token like every route but /health).

prometheus-client writes the exposition format; each app has its own registry, so two apps in one process (the
tests) never share counters. With ``--workers N`` each worker process counts its own requests and answers
/metrics for itself (a scrape reaches whichever worker accepts it): scrape one worker per port, or run one
worker per container, as text-embeddings-inference does.

What is counted:

- ``fewlabel_requests_total{route,method,status}`` and ``fewlabel_request_seconds{route}`` (a histogram), by
  the route's template (``/examples/{row_id}``), so the label set stays small; 401s and 413s count too;
- ``fewlabel_requests_in_flight``;
- ``fewlabel_batch_texts`` and ``fewlabel_batch_tokens`` (histograms of the dynamic batches), and
  ``fewlabel_batch_seconds``;
- ``fewlabel_queue_texts`` (texts waiting to be encoded, read at scrape time);
- ``fewlabel_texts_encoded_total``;
- ``fewlabel_examples_added_total`` and ``fewlabel_examples_deleted_total``."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import Match

__all__ = ["MetricsMiddleware", "ServeMetrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768)


class ServeMetrics:
    """The server's counters, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("fewlabel_requests", "HTTP requests answered, by route template, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("fewlabel_request_seconds", "time from the request to the end of its response",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("fewlabel_requests_in_flight", "requests accepted and not yet answered", registry=r)
        self.batch_texts = Histogram("fewlabel_batch_texts", "texts per dynamic batch", buckets=BATCH_BUCKETS,
                                     registry=r)
        self.batch_tokens = Histogram("fewlabel_batch_tokens", "padded tokens per dynamic batch (rows x longest)",
                                      buckets=TOKEN_BUCKETS, registry=r)
        self.batch_seconds = Histogram("fewlabel_batch_seconds", "time to encode one dynamic batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.queue = Gauge("fewlabel_queue_texts", "texts waiting to be encoded", registry=r)
        self.texts_encoded = Counter("fewlabel_texts_encoded", "texts encoded by the index's encoder", registry=r)
        self.examples_added = Counter("fewlabel_examples_added", "examples added live (POST /examples)", registry=r)
        self.examples_deleted = Counter("fewlabel_examples_deleted", "examples removed live (DELETE /examples)",
                                        registry=r)
        self.accepted = 0  # requests the app took (for the shutdown line: was every accepted request answered?)
        self.answered = 0  # … and answered to the last byte
        self.cut_off = 0  # … and not (cancelled past --drain-timeout, or the client went away)

    def watch(self, encoder) -> None:
        """Count what the service's :class:`~.batching.BatchedEncoder` does."""
        encoder.on_texts = self.texts_encoded.inc
        batcher = getattr(encoder, "batcher", None)
        if batcher is not None:
            batcher.on_batch = self._batch
            self.queue.set_function(lambda: batcher.depth)

    def _batch(self, texts: int, tokens: int, seconds: float) -> None:
        self.batch_texts.observe(texts)
        self.batch_tokens.observe(tokens)
        self.batch_seconds.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts every HTTP request by route template and status, and times it (plain ASGI, outermost, so that
    refusals by the auth and size guard are counted too)."""

    def __init__(self, app, *, metrics: ServeMetrics, routes) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    def _route(self, scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return getattr(route, "path", "other")
        return "unmatched"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics, route = self.metrics, self._route(scope)
        status, finished = 500, False
        began = time.perf_counter()
        metrics.accepted += 1
        metrics.in_flight.inc()

        async def counting_send(message) -> None:
            nonlocal status, finished
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True

        try:
            await self.app(scope, receive, counting_send)
        finally:
            metrics.in_flight.dec()
            if finished:
                metrics.answered += 1
            else:
                metrics.cut_off += 1
            metrics.requests.labels(route, scope["method"], str(status)).inc()
            metrics.latency.labels(route).observe(time.perf_counter() - began)
