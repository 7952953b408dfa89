"""`fewlabel serve` at production speed, for real: dynamic batching (in process on the real encoder, and over HTTP
on a real server), the full queue's 503, /metrics behind the token, /info's serving settings, the drain on SIGTERM
under load, and live edits seen by every worker of a --workers 2 server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'fewlabel[serve]')")
pytest.importorskip("prometheus_client", reason="the serve extra is not installed (pip install 'fewlabel[serve]')")
httpx = pytest.importorskip("httpx", reason="the serve extra is not installed (pip install 'fewlabel[serve]')")

from fewlabel.retrieval.cli import main  # noqa: E402
from fewlabel.retrieval.serve.batching import Batcher, QueueFull  # noqa: E402
from tests.support.demo import COMMON, DEMO, slice_tsv  # noqa: E402
from tests.support.server import (  # noqa: E402
    start_server as start_test_server,  # noqa: E402
    stop_server,  # noqa: E402
)
from tests.test_serve import AUTH, TOKEN  # noqa: E402

TEXTS = [line.split("\t")[1] for line in (DEMO / "goemotions_ekman_test.tsv").read_text(encoding="utf-8")
         .splitlines()[1:41]]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("speed")
    train = slice_tsv(DEMO / "goemotions_ekman_train.tsv", d / "train.tsv", 0, 60)
    valid = slice_tsv(DEMO / "goemotions_ekman_valid.tsv", d / "valid.tsv", 0, 30)
    index = d / "index"
    assert main(["-q", "index", "build", str(train), *COMMON, "--valid", str(valid), "--model", "minilm",
                 "--no-cache", "--max-k", "8", "--out", str(index)]) == 0
    return index


def start_server(index: Path, log: Path, *extra: str, polls: list | None = None) -> tuple[subprocess.Popen, str]:
    """The server, once /info answers; ``polls`` gets one item per poll that the server answered."""

    def ready(client: httpx.Client) -> bool:
        answer = client.get("/info", headers=AUTH)
        if polls is not None:
            polls.append(answer.status_code)
        return answer.status_code == 200

    return start_test_server([str(index), "--token", TOKEN, "--no-cache", *extra],
                             log=open(log, "w"),  # noqa: SIM115 - the child owns it
                             log_text=log.read_text, ready=ready, timeout_s=180, poll_s=0.3)


def stop(server: subprocess.Popen) -> None:
    stop_server(server, timeout_s=30)


@pytest.fixture(scope="module")
def served(index_dir, tmp_path_factory):
    """A server that waits up to 150 ms to fill a batch and queues at most 8 texts."""
    log = tmp_path_factory.mktemp("speedlog") / "server.log"
    server, base = start_server(index_dir, log, "--max-wait-ms", "150", "--max-queue", "8", "--max-batch", "8")
    try:
        yield {"base": base, "server": server, "index": index_dir, "log": log}
    finally:
        stop(server)


def concurrently(calls) -> list:
    """Run the calls at the same instant (a barrier), each in its own thread; results in order."""
    out: list = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i, call):
        barrier.wait()
        out[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent), read with prometheus-client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


# ---- the batcher on the real encoder ---------------------------------------------------------------------
def test_batcher_merges_concurrent_requests_and_hands_each_its_rows():
    from fewlabel.indexing.encoders.encoder import Encoder

    encoder = Encoder("minilm", backend="torch")
    expected = encoder.encode(TEXTS[:12])
    batches: list[tuple[int, int]] = []
    batcher = Batcher(encoder, max_batch_tokens=100_000, max_wait_ms=300, max_queue=64,
                      on_batch=lambda n, tokens, s: batches.append((n, tokens)))
    try:
        requests = [TEXTS[i:i + 2] for i in range(0, 12, 2)]  # six requests of two texts
        results = concurrently([lambda r=r: batcher.encode(r) for r in requests])
    finally:
        batcher.stop()
    got = np.concatenate(results)
    assert np.allclose(got, expected, atol=1e-5)  # each request got its own rows, in its own order
    assert sum(n for n, _ in batches) == 12
    assert len(batches) < len(requests)  # at least two requests shared one encoder call


def test_batcher_keeps_to_the_token_budget_and_refuses_a_full_queue():
    from fewlabel.indexing.encoders.encoder import Encoder

    encoder = Encoder("minilm", backend="torch")
    tokens = [len(ids) for ids in encoder.tokenizer(TEXTS[:16], truncation=True)["input_ids"]]
    budget = 3 * max(tokens)  # room for about three texts
    seen: list[tuple[int, int]] = []
    batcher = Batcher(encoder, max_batch_tokens=budget, max_wait_ms=200, max_queue=64,
                      on_batch=lambda n, t, s: seen.append((n, t)))
    try:
        results = concurrently([lambda t=t: batcher.encode([t]) for t in TEXTS[:16]])
        assert all(r.shape == (1, encoder.dim) for r in results)
        assert sum(n for n, _ in seen) == 16
        assert all(t <= budget for n, t in seen), seen  # a batch of several requests stays within the budget
        assert max(n for n, _ in seen) > 1
    finally:
        batcher.stop()

    slow = Batcher(encoder, max_batch_tokens=100_000, max_wait_ms=2000, max_queue=3)
    try:
        # a long request keeps the worker busy; one that arrives meanwhile overlaps it, so it waits up to 2 s
        # in the queue for company and fills it
        busy = threading.Thread(target=slow.encode, args=(TEXTS * 8,))
        busy.start()
        deadline = time.monotonic() + 5
        while slow._encoding == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        first = threading.Thread(target=slow.encode, args=(TEXTS[:3],))
        first.start()
        while slow.depth < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        with pytest.raises(QueueFull) as refused:
            slow.encode(TEXTS[3:4])
        assert refused.value.status == 503 and refused.value.retry_after_s >= 1
        first.join(30)
        busy.join(60)
    finally:
        slow.stop()


def test_a_lone_request_is_encoded_at_once_and_overlapping_ones_wait_for_company():
    """--max-wait-ms holds a batch open only while requests overlap: one client sending one request at a time
    would otherwise pay the whole wait on every request (serving-speed.md: 72 against 134 texts/s)."""
    from fewlabel.indexing.encoders.encoder import Encoder

    encoder = Encoder("minilm", backend="onnx")
    batches: list[int] = []
    batcher = Batcher(encoder, max_batch_tokens=100_000, max_wait_ms=20_000, max_queue=64,
                      on_batch=lambda n, t, s: batches.append(n))
    try:
        began = time.monotonic()
        for text in TEXTS[:3]:  # one after another: never overlapping
            assert batcher.encode([text]).shape == (1, encoder.dim)
        assert time.monotonic() - began < 10  # not 3 x 20 s
        assert batches == [1, 1, 1]
    finally:
        batcher.stop(timeout_s=30)


def test_two_lanes_encode_two_batches_at_once_and_hand_each_request_its_rows():
    """--encode-lanes 2: a second worker takes the next batch while the first still holds its own. Each lane's
    batch callback waits (up to 30 s) until both lanes have encoded one, so a single lane fails this test."""
    from fewlabel.indexing.encoders.encoder import Encoder
    from fewlabel.retrieval.serve.batching import available_cores, limit_compute_threads

    encoder = Encoder("minilm", backend="onnx")
    expected = encoder.encode(TEXTS[:4])
    lanes_seen: set[str] = set()
    both = threading.Event()

    def hold_until_both_lanes_encoded(n: int, tokens: int, seconds: float) -> None:
        lanes_seen.add(threading.current_thread().name)
        if len(lanes_seen) == 2:
            both.set()
        both.wait(30)

    # a budget of 1 token: each request is over it, so each is a batch of its own
    batcher = Batcher(encoder, max_batch_tokens=1, max_wait_ms=0, max_queue=64, lanes=2,
                      on_batch=hold_until_both_lanes_encoded)
    try:
        results = concurrently([lambda i=i: batcher.encode(TEXTS[i:i + 2]) for i in (0, 2)])
    finally:
        batcher.stop(timeout_s=30)
    assert both.is_set() and lanes_seen == {"fewlabel-batcher-0", "fewlabel-batcher-1"}
    assert np.allclose(np.concatenate(results), expected, atol=1e-5)
    assert batcher.settings()["encode_lanes"] == 2
    assert limit_compute_threads(encoder, workers=1, lanes=available_cores()) == 1  # the lanes share the cores


def test_counting_tokens_in_request_threads_never_unpads_the_workers_batch():
    """Found by the load test (serve.md): every request counts its tokens in its own thread as it arrives,
    and it did so with the encoder's own fast tokenizer while the worker tokenized a padded batch with it.
    Counting (no padding) switched the shared Rust tokenizer's padding off in the middle of the worker's call,
    the batch came back ragged, and every request in it got a 500. Here request-side counting runs without a
    pause in four threads while batches of texts of different lengths go through the worker: every batch must
    come back whole and equal to the encoder's own vectors."""
    from fewlabel.indexing.encoders.encoder import Encoder

    encoder = Encoder("minilm", backend="onnx")
    texts = [" ".join(TEXTS[i % len(TEXTS)].split()[: 1 + i % 23]) for i in range(8)]  # 1 to 8 words
    expected = encoder.encode(texts)
    batcher = Batcher(encoder, max_batch_tokens=8192, max_wait_ms=0, max_queue=1024)
    done = threading.Event()

    def arriving_requests() -> None:
        while not done.is_set():
            batcher._count_tokens(TEXTS[:2])  # what Batcher.encode does first for each request

    counters = [threading.Thread(target=arriving_requests) for _ in range(4)]
    errors: list[str] = []
    try:
        for t in counters:
            t.start()
        for _ in range(60):
            try:
                assert np.allclose(batcher.encode(texts), expected, atol=1e-4)
            except ValueError as exc:
                errors.append(repr(exc))
    finally:
        done.set()
        for t in counters:
            t.join(30)
        batcher.stop()
    assert not errors, f"{len(errors)} of 60 batches failed: {errors[0]}"


# ---- a real server ---------------------------------------------------------------------------------------
def test_info_says_backend_threads_and_batching(served):
    info = httpx.get(f"{served['base']}/info", headers=AUTH, timeout=30).json()
    serving = info["serving"]
    assert serving["backend"] in ("torch", "onnx", "onnx-int8")
    assert serving["batching"] == {"enabled": True, "max_batch_tokens": 8192, "max_wait_ms": 150.0, "max_queue": 8,
                                   "batch_size": 32, "encode_lanes": 1, "queue_texts": 0}
    assert serving["gc_frozen_objects"] > 100_000  # the models' objects, out of the collector's reach
    assert 1 <= serving["compute_threads"] <= serving["cores"] and serving["workers"] == 1


def test_concurrent_http_requests_share_a_batch_and_get_their_own_answers(served):
    """Requests that overlap (here: four that arrive while a long request is encoded) wait for each other and
    share an encoder call; each gets its own rows."""
    base, texts = served["base"], TEXTS[:4]
    # 4 texts cut at the encoder's longest: a slow batch; with the 4 short ones that is the queue's 8 at most, so
    # none is refused even if the long one is still queued when they arrive
    long_request = {"texts": [" ".join(TEXTS)] * 4}
    with httpx.Client(base_url=base, headers=AUTH, timeout=60) as client:
        alone = [client.post("/embed", json={"texts": [t]}).json()["embeddings"][0] for t in texts]
        before = client.get("/metrics").text
        busy = threading.Thread(target=httpx.post, args=(f"{base}/embed",),
                                kwargs={"json": long_request, "headers": AUTH, "timeout": 60})
        busy.start()
        time.sleep(0.02)
        answers = concurrently([lambda t=t: httpx.post(f"{base}/embed", json={"texts": [t]}, headers=AUTH,
                                                       timeout=60) for t in texts])
        busy.join(60)
        after = client.get("/metrics").text
    assert [a.status_code for a in answers] == [200] * 4
    for answer, single in zip(answers, alone, strict=True):
        assert np.allclose(answer.json()["embeddings"][0], single, atol=1e-5)
    batches = metric(after, "fewlabel_batch_texts_count") - metric(before, "fewlabel_batch_texts_count")
    encoded = metric(after, "fewlabel_texts_encoded_total") - metric(before, "fewlabel_texts_encoded_total")
    assert encoded == 8 and 2 <= batches < 5  # the long one, then the four short ones in fewer than four calls


def test_a_full_queue_answers_503_with_retry_after_at_once(served):
    base = served["base"]
    began = time.monotonic()
    # three requests of 8 texts at once on a queue of 8: the first is taken (or queued), and a later one finds
    # 8 texts queued (one that overlaps another waits there up to --max-wait-ms 150 for company)
    answers = concurrently([lambda i=i: httpx.post(f"{base}/classify", json={"texts": TEXTS[i:i + 8]},
                                                   headers=AUTH, timeout=60) for i in (0, 8, 16)])
    codes = sorted(a.status_code for a in answers)
    assert 200 in codes and 503 in codes and set(codes) <= {200, 503}, [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 503)
    assert int(refused.headers["Retry-After"]) >= 1 and "--max-queue" in refused.json()["error"]
    assert time.monotonic() - began < 20
    text = httpx.get(f"{base}/metrics", headers=AUTH, timeout=30).text
    assert metric(text, "fewlabel_requests_total", method="POST", route="/classify", status="503") >= 1


def test_metrics_need_the_token_and_count_requests_and_examples(served):
    base = served["base"]
    assert httpx.get(f"{base}/metrics", timeout=30).status_code == 401
    with httpx.Client(base_url=base, headers=AUTH, timeout=60) as client:
        assert client.post("/classify", json={"texts": TEXTS[:2]}).status_code == 200
        assert client.post("/classify", json={"texts": [""]}).status_code == 422
        added = client.post("/examples", json={"rows": [{"text": "a brand new happy example", "labels": ["joy"]},
                                                        {"text": "another new one", "labels": ["joy"]}]})
        assert added.status_code == 201
        assert client.delete(f"/examples/{added.json()['ids'][0]}").status_code == 200
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric(text, "fewlabel_requests_total", method="POST", route="/classify", status="200") >= 1
    assert metric(text, "fewlabel_requests_total", method="POST", route="/classify", status="422") >= 1
    assert metric(text, "fewlabel_requests_total", method="GET", route="/metrics", status="401") >= 1
    assert metric(text, "fewlabel_requests_total", method="DELETE", route="/examples/{row_id:path}", status="200") == 1
    assert metric(text, "fewlabel_examples_added_total") == 2
    assert metric(text, "fewlabel_examples_deleted_total") == 1
    assert metric(text, "fewlabel_request_seconds_count", route="/classify") >= 2
    assert metric(text, "fewlabel_queue_texts") == 0
    assert metric(text, "fewlabel_texts_encoded_total") >= 4
    assert "fewlabel_batch_tokens_bucket" in text


def test_serve_refuses_bad_batching_options_as_one_line(index_dir, capsys):
    for option, value in (("--max-wait-ms", "-1"), ("--max-queue", "0"), ("--max-batch-tokens", "x"),
                          ("--encode-lanes", "0")):
        with pytest.raises(SystemExit) as stopped:
            main(["serve", str(index_dir), option, value])
        assert stopped.value.code == 2
        assert option in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_under_load_answers_every_accepted_request(index_dir, tmp_path):
    """8 keep-alive clients send /classify of 4 texts without pause; SIGTERM lands while requests are in
    flight. Every response that comes back is a 200, requests in flight at SIGTERM finish, the server's last
    line says every request it accepted was answered and the index lock is free, and its count of answers is
    exactly what the clients received: a client whose request failed had sent it on a connection the server
    closed without reading it (an idle keep-alive connection, or one still in the listen backlog), which is
    safe to retry."""
    log = tmp_path / "server.log"
    polls: list[int] = []
    server, base = start_server(index_dir, log, "--drain-timeout", "30", polls=polls)
    statuses: list[int] = []
    connect_errors: list[str] = []
    lost: list[str] = []
    finished_after_term: list[float] = []
    term_at: list[float] = []
    stop_clients = threading.Event()

    def client_loop(worker: int) -> None:
        with httpx.Client(base_url=base, headers=AUTH, timeout=60) as client:
            i = worker
            while not stop_clients.is_set():
                i += 8
                began = time.monotonic()
                try:
                    response = client.post("/classify", json={"texts": TEXTS[i % 36:i % 36 + 4]})
                except httpx.ConnectError as exc:
                    connect_errors.append(type(exc).__name__)
                    return
                except httpx.TransportError as exc:  # sent, and no answer: the server dropped it
                    lost.append(f"{type(exc).__name__}: {exc}")
                    return
                statuses.append(response.status_code)
                if term_at and began < term_at[0] < time.monotonic():
                    finished_after_term.append(time.monotonic() - term_at[0])

    threads = [threading.Thread(target=client_loop, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while len(statuses) < 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        term_at.append(time.monotonic())
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        stop_clients.set()
        for t in threads:
            t.join(60)
    finally:
        stop_clients.set()
        stop(server)
    text = log.read_text()
    assert code in (0, -signal.SIGTERM), text  # uvicorn re-raises the signal it drained on, as is conventional
    assert all(m.startswith(("RemoteProtocolError: Server disconnected without sending a response",
                             "ReadError", "WriteError")) for m in lost), lost
    assert statuses and set(statuses) == {200}, statuses
    assert finished_after_term, "no request was in flight when SIGTERM came"
    line = re.search(r"stopped: (\d+) requests accepted, (\d+) answered, (\d+) cut off; index lock (\w+)", text)
    assert line, text
    accepted, answered, cut_off, lock = int(line[1]), int(line[2]), int(line[3]), line[4]
    assert cut_off == 0 and accepted == answered and lock == "free", line[0]
    assert answered == len(statuses) + len(polls), (line[0], len(statuses), polls, lost)  # none lost on the way back
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/health", timeout=5)


@pytest.mark.slow
def test_live_edits_are_seen_by_every_worker(index_dir, tmp_path):
    """--workers 2: an example added through one worker is in the next answer of both (each request checks the
    folder's meta.json and reloads under the folder lock), and so is its removal."""
    log = tmp_path / "server.log"
    server, base = start_server(index_dir, log, "--workers", "2")
    try:
        with httpx.Client(base_url=base, headers=AUTH, timeout=60) as client:
            start = client.get("/info").json()["n_rows"]
            added = client.post("/examples", json={"rows": [{"text": "workers agree on this one",
                                                             "labels": ["joy"]}]})
            assert added.status_code == 201, added.text
            pids = set()
            for _ in range(200):  # a new connection each time: the kernel hands it to either worker
                fresh = httpx.get(f"{base}/info", headers=AUTH, timeout=60).json()
                assert fresh["n_rows"] == start + 1
                pids.add(fresh["serving"]["pid"])
                if len(pids) == 2:
                    break
            assert len(pids) == 2, pids  # both workers answered, both with the new row
            assert client.delete(f"/examples/{added.json()['ids'][0]}").status_code == 200
            seen = set()
            for _ in range(200):
                fresh = httpx.get(f"{base}/info", headers=AUTH, timeout=60).json()
                assert fresh["n_rows"] == start
                seen.add(fresh["serving"]["pid"])
                if len(seen) == 2:
                    break
            assert len(seen) == 2, seen
    finally:
        stop(server)
    assert json.loads((index_dir / "meta.json").read_text())  # the folder is whole
    assert os.path.isdir(index_dir)
