"""Dynamic batching for `fewlabel serve`: every request that encodes puts its texts in one queue, and one worker
thread encodes what is queued together and hands each request its rows back.

Why: on a CPU, eight requests of one text encoded at once in FastAPI's thread pool make eight small torch or
onnxruntime calls that fight for the same cores (each call's threads spin against the others'). One call on
eight texts does the same work in about the time of two, so the server comes near the encoder's own batch
throughput (text-embeddings-inference batches the same way: a token budget, a short wait, a bounded queue).

- The worker takes the oldest request and then more, in arrival order, while the batch stays within
  ``max_batch_tokens`` padded tokens (rows x longest row); it waits at most ``max_wait_ms`` after the oldest
  request arrived for more to come, and not at all once the budget is full, nor when requests do not overlap
  (none of those queued arrived while another was queued or being encoded): a lone client is not made to wait
  for company that is not coming. One request larger than the budget
  is encoded alone (the encoder splits it into its usual sorted sub-batches).
- The queue holds at most ``max_queue`` texts. A request that would overflow it is refused at once with a 503
  and ``Retry-After`` (:class:`QueueFull`), never left to hang until its timeout.
- The texts of one batch go to ``Encoder.encode`` in one call, so they are sorted by length and cut into
  ``batch_size`` sub-batches there: little padding, as in `fewlabel predict`.
- :func:`limit_compute_threads` sets torch, onnxruntime and FAISS to share the process's cores (divided by the
  number of worker processes), so the process never runs more compute threads than cores.
- ``lanes`` (``--encode-lanes``): that many worker threads take batches from the one queue, each encoding with
  ``cores // lanes`` threads: for a machine with many cores, where one batch of a few short texts cannot keep
  them all busy. On this project's 2 cores two single-threaded lanes measured slower than one lane of two
  threads (139 against 169 texts/s of 1-text requests at 8 clients, and a lone 16-text request gets one core),
  so the default is one lane; serving-speed.md has the measurements.

:class:`BatchedEncoder` stands in for the service's encoder (every attribute but ``encode`` is the encoder's),
so every route that encodes (``/classify``, ``/embed``, ``/zeroshot``, ``/similarity`` with the index's encoder,
``/examples``) goes through the queue without knowing it."""

from __future__ import annotations

import copy
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from fewlabel.indexing.errors import FewlabelError

__all__ = ["BatchedEncoder", "Batcher", "QueueFull", "available_cores", "limit_compute_threads"]


class QueueFull(FewlabelError):
    """The queue is full: a 503 with ``Retry-After`` (seconds), so a client backs off instead of waiting (the app's
    handler for it is in .speed; not a service.RequestError, so that service can import this module)."""

    status = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def limit_compute_threads(encoder, workers: int = 1, lanes: int = 1) -> int:
    """Give torch, onnxruntime and FAISS ``cores // (workers * lanes)`` threads each (at least 1), torch one
    inter-op thread, and the tokenizers none of their own. Only the batch workers (``lanes`` of them) encode, so
    at most ``cores // workers`` compute threads run at once in this process. onnxruntime's threads are also
    told not to spin between calls: a spinning pool takes the cores the HTTP side needs between batches.
    Returns the thread count."""
    threads = max(1, available_cores() // (max(1, workers) * max(1, lanes)))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no rayon pool per request thread beside these
    try:
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set, or inter-op work already ran in this process
            pass
    except ImportError:
        pass
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except (ImportError, AttributeError):
        pass
    runner = getattr(encoder, "model", None)
    folder = getattr(runner, "folder", None)
    if folder is not None and getattr(encoder, "backend", "torch") != "torch":
        from fewlabel.indexing.encoders.onnx_backend import OnnxRunner

        encoder.model = OnnxRunner(folder, threads=threads, spin=False)
    return threads


@dataclass
class _Job:
    texts: list[str]
    normalize: bool
    tokens: int  # the longest text's token count
    overlapped: bool = False  # it arrived while another request was queued or being encoded
    arrived: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    """What the worker did, for /metrics (the callback) and the tests."""

    batches: int = 0
    texts: int = 0
    largest: int = 0


class Batcher:
    """One queue and one worker thread in front of ``encoder.encode``. ``encode`` is called from the request
    threads and blocks until the request's rows are ready (or raises what the encoder raised)."""

    def __init__(self, encoder, *, max_batch_tokens: int = 8192, max_wait_ms: float = 5.0, max_queue: int = 1024,
                 batch_size: int = 32, lanes: int = 1,
                 on_batch: Callable[[int, int, float], None] | None = None) -> None:
        self.encoder = encoder
        self.max_batch_tokens, self.max_wait_s = int(max_batch_tokens), float(max_wait_ms) / 1000
        self.max_queue, self.batch_size = int(max_queue), int(batch_size)
        self.on_batch = on_batch  # (texts, padded tokens, seconds) of each batch
        self.stats = BatchStats()
        self._jobs: deque[_Job] = deque()
        self._queued_texts = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._rate = 0.0  # texts/s of recent batches, for Retry-After
        self._encoding = 0  # lanes encoding a batch now
        # Requests count their tokens with a copy of the tokenizer, one thread at a time. A fast tokenizer keeps
        # its padding and truncation settings in the shared Rust object: a count (no padding) made with the
        # encoder's own tokenizer while the worker tokenized a padded batch switched padding off under it, and the
        # ragged batch failed every request in it (a 500 in the load test, tests/test_serve_speed.py).
        self._counter = copy.deepcopy(encoder.tokenizer)
        self._counter_lock = threading.Lock()
        self.lanes = max(1, int(lanes))
        self._threads = [threading.Thread(target=self._run, name=f"fewlabel-batcher-{lane}", daemon=True)
                         for lane in range(self.lanes)]
        for thread in self._threads:
            thread.start()

    # ---- the request side -----------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Texts waiting (not yet taken by the worker)."""
        return self._queued_texts

    def settings(self) -> dict:
        return {"max_batch_tokens": self.max_batch_tokens, "max_wait_ms": self.max_wait_s * 1000,
                "max_queue": self.max_queue, "batch_size": self.batch_size, "encode_lanes": self.lanes}

    def _count_tokens(self, texts: Sequence[str]) -> int:
        """The longest text's token count, as the encoder will see it (prefix, truncation)."""
        encoder = self.encoder
        with self._counter_lock:
            lengths = self._counter([encoder.prefix + t for t in texts], truncation=True,
                                    max_length=encoder.max_length)["input_ids"]
        return max(len(ids) for ids in lengths)

    def encode(self, texts: Sequence[str], normalize: bool = True) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        job = _Job(texts, normalize, self._count_tokens(texts))
        with self._cond:
            if self._stopping:
                raise QueueFull("the server is shutting down; try another instance", 1)
            if self._queued_texts and self._queued_texts + len(texts) > self.max_queue:
                wait = self._queued_texts / self._rate if self._rate else 1.0
                raise QueueFull(f"the encoding queue is full ({self._queued_texts} texts waiting, --max-queue "
                                f"{self.max_queue}); retry later", max(1, math.ceil(wait)))
            job.overlapped = bool(self._jobs) or self._encoding > 0
            self._jobs.append(job)
            self._queued_texts += len(texts)
            self._cond.notify()
        return job.future.result()

    # ---- the worker -----------------------------------------------------------------------------------------
    def _take(self) -> list[_Job] | None:
        """The next batch: the oldest job, then later ones of the same kind while the padded tokens fit; waits
        up to max_wait after the oldest arrived while the budget is not full, but only while requests come
        concurrently (one of those queued arrived while another was queued or being encoded): a lone client's
        request is encoded at once, since no other request is coming to share its batch (waiting there only
        added max_wait to every request: 72 against 134 texts/s at 1 client, serving-speed.md). With several
        lanes another lane may take the jobs while this one waits, so the plan is made again after every
        wait."""
        with self._cond:
            while True:
                while not self._jobs:
                    if self._stopping:
                        return None
                    self._cond.wait()
                batch: list[_Job] = []
                rows, longest = 0, 0
                for job in self._jobs:
                    if job.normalize != self._jobs[0].normalize:
                        break
                    grown_rows, grown_longest = rows + len(job.texts), max(longest, job.tokens)
                    if batch and grown_rows * grown_longest > self.max_batch_tokens:
                        break
                    batch.append(job)
                    rows, longest = grown_rows, grown_longest
                full = len(batch) < len(self._jobs) or rows * longest >= self.max_batch_tokens
                left = self._jobs[0].arrived + self.max_wait_s - time.monotonic()
                concurrent = any(job.overlapped for job in self._jobs)
                if full or left <= 0 or self._stopping or not concurrent:
                    for _ in batch:
                        self._jobs.popleft()
                    self._queued_texts -= rows
                    self._encoding += 1
                    return batch
                self._cond.wait(left)

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            texts = [t for job in batch for t in job.texts]
            began = time.perf_counter()
            try:
                vectors = self.encoder.encode(texts, batch_size=self.batch_size, normalize=batch[0].normalize)
            except BaseException as exc:  # the encoder's error goes to every request of the batch
                for job in batch:
                    job.future.set_exception(exc)
                continue
            finally:
                with self._cond:
                    self._encoding -= 1
            took = time.perf_counter() - began
            with self._cond:  # several lanes update these
                self._rate = len(texts) / took * self.lanes if took > 0 else self._rate
                self.stats.batches += 1
                self.stats.texts += len(texts)
                self.stats.largest = max(self.stats.largest, len(texts))
            if self.on_batch is not None:
                self.on_batch(len(texts), len(texts) * max(job.tokens for job in batch), took)
            start = 0
            for job in batch:
                job.future.set_result(vectors[start:start + len(job.texts)])
                start += len(job.texts)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Refuse new work, finish what is queued, and end the worker (waits at most ``timeout_s``)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class BatchedEncoder:
    """The encoder, with ``encode`` going through a :class:`Batcher` (``batcher=None``: straight to the encoder,
    each request on its own, as before). ``on_texts`` counts the texts encoded, for /metrics."""

    def __init__(self, encoder, batcher: Batcher | None, on_texts: Callable[[int], None] | None = None) -> None:
        self.__dict__["_encoder"] = encoder
        self.__dict__["batcher"] = batcher
        self.__dict__["on_texts"] = on_texts

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)

    def __setattr__(self, name: str, value) -> None:
        if name in ("batcher", "on_texts"):
            self.__dict__[name] = value
        else:
            setattr(self._encoder, name, value)

    def encode(self, texts, batch_size: int = 32, normalize: bool = True, show_progress_bar: bool = False):
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        if self.batcher is None:
            out = self._encoder.encode(items, batch_size=batch_size, normalize=normalize)
        else:
            out = self.batcher.encode(items, normalize=normalize)
        if self.on_texts is not None:
            self.on_texts(len(items))
        return out[0] if single else out


def batched_encoder(encoder, settings) -> BatchedEncoder:
    """The service's encoder for ``settings`` (a ServeSettings): threads limited, and batched unless
    ``max_batch_tokens`` is 0."""
    lanes = getattr(settings, "encode_lanes", 1)
    threads = limit_compute_threads(encoder, getattr(settings, "workers", 1), lanes)
    tokens = getattr(settings, "max_batch_tokens", 8192)
    batcher = Batcher(encoder, max_batch_tokens=tokens, max_wait_ms=getattr(settings, "max_wait_ms", 5.0),
                      max_queue=getattr(settings, "max_queue", 1024), batch_size=settings.batch_size, lanes=lanes) \
        if tokens > 0 else None
    wrapped = BatchedEncoder(encoder, batcher)
    wrapped.__dict__["compute_threads"] = threads
    return wrapped
