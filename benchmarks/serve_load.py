"""A bounded load test of `fewlabel serve` on loopback, measured against the encoder's own batch throughput and
the CPU's fp32 matmul peak in the same run. Writes `serve.md` and `serve.json`.

    flock /work/wt/heavy.lock nice -n 5 python -m fewlabel.benchmarks.serve_load --out benchmarks/results

For each encoder (``--models``) an index of the bundled GoEmotions sample is built; for each backend
(``--backends``) the server runs as the user runs it (`fewlabel serve`, one uvicorn worker, dynamic batching at
its defaults, ``--no-cache`` so every text is encoded) in its own process, and the clients are aiohttp (uvloop,
keep-alive) in this one; their CPU per request is reported, since they share the server's cores. Phases:
requests of 1 and of 16 texts at each ``--clients`` count, each stopping after its request count or
``--limit-s``, whichever comes first. During every phase a separate connection polls
``/health`` every 50 ms from a thread of its own. Memory is the server's resident set (VmRSS now, VmHWM peak).

Beside each server: the encoder's own batch throughput on the same texts (``Encoder.encode`` in batches of 32 in
this process, server idle), and its arithmetic rate as a share of the CPU's fp32 peak, measured by a large torch
matmul (``--gemm-n``) in the same run. FLOPs per batch are counted from the real token lengths: per layer and
token ``2 (4 d^2 + 2 d f)`` for the projections and feed-forward plus ``4 s d`` for attention, on the padded
batches the encoder runs (sorted by length, 32 rows). With ``--baseline`` the onnx server is run once more with
batching off (``--max-batch-tokens 0``) for the 1-text, 8-client phase: the server before issue 27.

On a shared 2-core machine the whole grid does not fit one 15-minute slot of the heavy-job lock, so ``--merge``
adds this run's rows to the ``serve.json`` already in ``--out`` (a row measured again replaces the old one) and
writes the report from all of them. Every ratio stays within one run: a row's encoder figure and fp32 peak are
those measured in the same run as the row, and each run's command, date and load are listed."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from fewlabel.benchmarks.report import command_line, cpu_flags, markdown_table, write_report

DEMO = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"
TOKEN = "load-test"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory_mib(pid: int) -> dict[str, float]:
    values = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = round(int(rest.split()[0]) / 1024, 1)
    return values


def gemm_peak(n: int, seconds: float = 3.0) -> dict:
    """fp32 GFLOP/s of an n x n torch matmul on all the process's cores (best of the timed repeats)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up
    best, began = 0.0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return {"n": n, "gflops": round(best, 1), "torch_threads": torch.get_num_threads()}


def encoder_throughput(model: str, backend: str, texts: list[str], seconds: float = 6.0) -> dict:
    """The encoder's own texts/s on ``texts`` (batches of 32, sorted by length, as `predict` runs it) and the
    GFLOP/s that makes, from the real token lengths of the padded batches."""
    from fewlabel.indexing.encoders.encoder import Encoder

    encoder = Encoder(model, backend=backend)
    encoder.encode(texts[:64])  # warm-up
    lengths = sorted((len(ids) for ids in encoder.tokenizer([encoder.prefix + t for t in texts], truncation=True,
                                                              max_length=encoder.max_length)["input_ids"]),
                     reverse=True)
    config = encoder.model.config if backend == "torch" else None
    if config is None:
        from transformers import AutoConfig

        from fewlabel.indexing.encoders.encoder import transformer_folder

        folder = Path(encoder.location)
        config = AutoConfig.from_pretrained(str(transformer_folder(folder) if folder.is_dir() else folder))
    d, f, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    padded_flops = useful_flops = 0.0
    for start in range(0, len(lengths), 32):
        chunk = lengths[start:start + 32]
        s = max(chunk)
        padded_flops += len(chunk) * s * layers * (2 * (4 * d * d + 2 * d * f) + 4 * s * d)
        useful_flops += sum(n * layers * (2 * (4 * d * d + 2 * d * f) + 4 * n * d) for n in chunk)
    rounds, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds or rounds == 0:
        encoder.encode(texts, batch_size=32)
        rounds += 1
    took = time.perf_counter() - began
    small = {}  # what the encoder does on the unsorted few-text batches a server can form from 1-text requests
    for size in (1, 4, 8):
        done, began_small = 0, time.perf_counter()
        while time.perf_counter() - began_small < seconds / 3:
            start = (done * 7) % (len(texts) - size)
            encoder.encode(texts[start:start + size], batch_size=32)
            done += size
        small[str(size)] = round(done / (time.perf_counter() - began_small), 1)
    return {"texts_per_s": round(rounds * len(texts) / took, 1), "unsorted_batch_texts_per_s": small,
            "gflops_padded": round(rounds * padded_flops / took / 1e9, 1),
            "gflops_useful": round(rounds * useful_flops / took / 1e9, 1),
            "mean_tokens": round(float(np.mean(lengths)), 1), "layers": layers, "hidden": d}


class HealthProbe(threading.Thread):
    """GET /health every 50 ms on its own blocking connection, in a thread beside the clients' event loop: a
    probe inside that loop would add the loop's own delays (32 clients' callbacks) to the server's answer."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.running = port, True
        self.seconds: list[float] = []

    def run(self) -> None:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while self.running:
            began = time.perf_counter()
            conn.request("GET", "/health")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                self.seconds.append(time.perf_counter() - began)
            time.sleep(0.05)
        conn.close()


async def phase(base: str, texts: list[str], per_request: int, requests: int, clients: int, limit_s: float) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(requests))
    deadline = time.perf_counter() + limit_s

    async def client_loop(session: aiohttp.ClientSession) -> None:
        for i in counter:
            if time.perf_counter() > deadline:
                return
            start = (i * per_request) % (len(texts) - per_request)
            began = time.perf_counter()
            try:
                async with session.post(f"{base}/classify", json={"texts": texts[start:start + per_request]}) as r:
                    await r.read()
                    if r.status != 200:
                        errors[str(r.status)] = errors.get(str(r.status), 0) + 1
                        continue
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - began)

    probe = HealthProbe(int(base.rsplit(":", 1)[1]))
    probe.start()
    began, cpu_began = time.perf_counter(), time.process_time()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients),
                                     timeout=aiohttp.ClientTimeout(total=60),
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        await asyncio.gather(*(client_loop(session) for _ in range(clients)))
    wall, client_cpu = time.perf_counter() - began, time.process_time() - cpu_began
    probe.running = False
    probe.join(5)
    ms = np.array(latencies) * 1000
    hms = np.array(probe.seconds) * 1000
    done = len(latencies) + sum(errors.values())
    return {"texts_per_request": per_request, "clients": clients, "requests_planned": requests,
            "requests_sent": done, "ok": len(latencies), "errors": errors, "wall_s": round(wall, 1),
            "requests_per_s": round(len(latencies) / wall, 1),
            "texts_per_s": round(len(latencies) * per_request / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "health_max_ms": round(float(hms.max()), 1) if len(hms) else None,
            "health_p99_ms": round(float(np.percentile(hms, 99)), 1) if len(hms) else None,
            "client_cpu_ms_per_request": round(client_cpu * 1000 / max(1, done), 2),
            "stopped_by_time_limit": done < requests}


def wait_ready(base: str, server: subprocess.Popen) -> None:
    import httpx

    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("the server did not start")
        time.sleep(0.5)


def metric_sum(base: str, name: str) -> float:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).text
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples if s.name == name)


def run_loop(coroutine):
    """The clients' event loop: uvloop's (it comes with the serve extra's uvicorn[standard]) spends less of the
    shared cores per request than asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def serve_runs(cli: list[str], index: Path, model: str, backend: str, texts: list[str], args, extra: list[str],
               shapes: list[tuple[int, int, int]], label: str = "on") -> tuple[list[dict], dict]:
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", encoding="utf-8", suffix=".log", delete=False)  # noqa: SIM115
    server = subprocess.Popen([*cli, "serve", str(index), "--port", str(port), "--no-cache", "--max-batch", "16",
                               "--token", TOKEN, "--backend", backend, *extra],
                              stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    results, memory = [], {}
    try:
        wait_ready(base, server)
        memory["after_start"] = memory_mib(server.pid)
        run_loop(phase(base, texts, 1, 50, 8, 60))  # warm-up, not reported
        for per_request, clients, count in shapes:
            batches0 = metric_sum(base, "fewlabel_batch_texts_count")
            result = run_loop(phase(base, texts, per_request, count, clients, args.limit_s))
            batches = metric_sum(base, "fewlabel_batch_texts_count") - batches0
            result.update(model=model, backend=backend, batching=label,
                          mean_batch_texts=round(result["ok"] * per_request / batches, 1) if batches else None,
                          load_average=round(os.getloadavg()[0], 2))
            results.append(result)
            memory[f"after_{per_request}x{clients}"] = memory_mib(server.pid)
            print(model, backend, extra, result, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
        server_errors = [line.rstrip() for line in Path(log.name).read_text(encoding="utf-8").splitlines()
                         if line.strip() and not line.startswith("INFO")]
        Path(log.name).unlink()
    if any(r["errors"] for r in results):  # what the server said about its errors, for the report
        for r in results:
            r["server_stderr_tail"] = server_errors[-40:]
    return results, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--models", default="minilm,e5-small")
    parser.add_argument("--backends", default="torch,onnx")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--requests", type=int, default=2000, help="requests of 1 text per phase")
    parser.add_argument("--requests-16", type=int, default=2000, help="requests of 16 texts per phase")
    parser.add_argument("--limit-s", type=float, default=420.0, help="time limit of each phase")
    parser.add_argument("--gemm-n", type=int, default=2048)
    parser.add_argument("--baseline", action="store_true", help="also onnx without batching, 1 text, 8 clients")
    parser.add_argument("--lanes", type=int, default=0,
                        help="also onnx with --encode-lanes N: 1-text phases and 16 texts at 1 client")
    parser.add_argument("--note", default="", help="a sentence for the report (e.g. what else ran)")
    parser.add_argument("--merge", action="store_true",
                        help="add this run's rows to the serve.json already in --out instead of replacing it")
    args = parser.parse_args()
    with open(DEMO / "goemotions_ekman_test.tsv", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)]
    clients = [int(c) for c in args.clients.split(",")]
    shapes = [(1, c, args.requests) for c in clients] + [(16, c, args.requests_16) for c in clients]
    load_start = os.getloadavg()
    gemm = gemm_peak(args.gemm_n)
    print("gemm", gemm, flush=True)
    results: list[dict] = []
    memory: dict[str, dict] = {}
    encoders: dict[str, dict] = {}
    stopped_early = False
    with tempfile.TemporaryDirectory() as work:
        try:
            run_all(args, work, texts, shapes, gemm, results, memory, encoders)
        except KeyboardInterrupt:  # SIGINT (`timeout -s INT`): report what was measured so far
            stopped_early = True
    if stopped_early:
        args.note += " The run was stopped early (SIGINT); only the rows above were measured."
        results = [r for r in results if f"{r['model']}/{r['backend']}" in encoders]
    write_all(args, results, memory, encoders, gemm, load_start)


def run_all(args, work, texts, shapes, gemm, results, memory, encoders) -> None:
    if True:
        cli = [sys.executable, "-m", "fewlabel.retrieval.cli", "-q"]
        for model in args.models.split(","):
            index = Path(work) / f"index-{model}"
            subprocess.run([*cli, "index", "build", str(DEMO / "goemotions_ekman_train.tsv"), "--id-col", "id",
                            "--label-col", "labels", "--label-sep", ",",
                            "--valid", str(DEMO / "goemotions_ekman_valid.tsv"),
                            "--model", model, "--out", str(index)], check=True, timeout=1800)
            for backend in args.backends.split(","):
                encoders[f"{model}/{backend}"] = enc = encoder_throughput(model, backend, texts)
                enc["gemm_gflops"] = gemm["gflops"]  # the peak of this run: shares never mix runs
                enc["share_of_peak_padded"] = round(enc["gflops_padded"] / gemm["gflops"], 3)
                enc["share_of_peak_useful"] = round(enc["gflops_useful"] / gemm["gflops"], 3)
                print(model, backend, enc, flush=True)
                # each server setting: its extra options, phases, row label and memory key
                variants: list[tuple[list[str], list, str, str]] = [([], shapes, "on", f"{model}/{backend}")]
                if args.baseline and backend == "onnx":
                    variants.append((["--max-batch-tokens", "0"], [(1, 8, args.requests)], "off",
                                     f"{model}/{backend}/no-batching"))
                if args.lanes > 1 and backend == "onnx":
                    variants.append((["--encode-lanes", str(args.lanes)],
                                     [s for s in shapes if s[0] == 1] + [(16, 1, args.requests_16)],
                                     f"on, {args.lanes} lanes", f"{model}/{backend}/{args.lanes}-lanes"))
                for extra, variant_shapes, label, memory_key in variants:
                    runs, mem = serve_runs(cli, index, model, backend, texts, args, extra, variant_shapes, label)
                    for r in runs:
                        r["encoder_texts_per_s"] = enc["texts_per_s"]  # the ratio stays within this run
                    results += runs
                    memory[memory_key] = mem

def row_key(r: dict) -> tuple:
    return r["model"], r["backend"], r["batching"], r["texts_per_request"], r["clients"]


def merge_previous(path: Path, run: dict, results: list[dict], memory: dict, encoders: dict
                   ) -> tuple[list[dict], dict, dict, list[dict]]:
    """This run's rows on top of those in ``path`` (a serve.json written by this script): a row, encoder or
    memory record measured again replaces the old one; every row keeps the date of the run that measured it."""
    if not path.is_file():
        return results, memory, encoders, [run]
    old = json.loads(path.read_text(encoding="utf-8"))
    runs = old.get("runs") or [{"command": old.get("command"), "date": old.get("date"), "gemm": old.get("gemm"),
                                "load_average_start": old.get("load_average_start"),
                                "load_average_end": old.get("load_average_end"), "note": ""}]
    old_encoders = old.get("encoders", {})
    for enc in old_encoders.values():
        enc.setdefault("gemm_gflops", (old.get("gemm") or {}).get("gflops"))
        enc.setdefault("date", old.get("date"))
    for r in old.get("results", []):
        r.setdefault("date", old.get("date"))
    new_keys = {row_key(r) for r in results}
    kept = [r for r in old.get("results", []) if "model" in r and row_key(r) not in new_keys]
    return (kept + results, {**old.get("memory_mib", {}), **memory}, {**old_encoders, **encoders},
            [*runs, run])


def write_all(args, results, memory, encoders, gemm, load_start) -> None:
    load_end = os.getloadavg()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for r in results:
        r["date"] = date
    for enc in encoders.values():
        enc["date"] = date
    run = {"command": command_line(), "date": date, "gemm": gemm, "load_average_start": load_start,
           "load_average_end": load_end, "note": args.note}
    runs = [run]
    if args.merge:
        results, memory, encoders, runs = merge_previous(args.out / "serve.json", run, results, memory, encoders)
    order = {"torch": 0, "onnx": 1}
    results = sorted(results, key=lambda r: (r["model"], order.get(r["backend"], 2), r["batching"] != "on",
                                             r["texts_per_request"], r["clients"]))
    rows = []
    for r in results:
        enc_rate = r.get("encoder_texts_per_s") or encoders[f"{r['model']}/{r['backend']}"]["texts_per_s"]
        rows.append([r["model"], r["backend"], r["batching"], r["texts_per_request"], r["clients"],
                     f"{r['ok']} of {r['requests_planned']}", r["requests_per_s"], r["texts_per_s"],
                     enc_rate, f"{r['texts_per_s'] / enc_rate:.2f}x", r["p50_ms"], r["p95_ms"],
                     r["p99_ms"], sum(r["errors"].values()) if r["errors"] else 0, r["mean_batch_texts"],
                     r["health_max_ms"], r.get("client_cpu_ms_per_request", "")])
    enc_rows = [[key, e["texts_per_s"], e["mean_tokens"], e["gflops_useful"], e["gflops_padded"],
                 e.get("gemm_gflops", gemm["gflops"]), f"{e['share_of_peak_useful']:.0%}",
                 f"{e['share_of_peak_padded']:.0%}",
                 " / ".join(str(v) for v in (e.get("unsorted_batch_texts_per_s") or {}).values()) or "not measured",
                 e.get("date", date)] for key, e in sorted(encoders.items())]
    run_lines = "".join(f"- {r['date']}: `{r['command']}`; fp32 peak {(r.get('gemm') or {}).get('gflops')} GFLOP/s; "
                        f"load average at the start {tuple(round(x, 2) for x in r['load_average_start'] or ())}, at "
                        f"the end {tuple(round(x, 2) for x in r['load_average_end'] or ())}"
                        + (f". {r['note']}" if r.get("note") else "") + "\n" for r in runs)
    mem_rows = [[key, m["after_start"].get("VmRSS"), max(v.get("VmRSS", 0) for v in m.values()),
                 max(v.get("VmHWM", 0) for v in m.values())] for key, m in memory.items()]
    errors = sum(sum(r["errors"].values()) for r in results)
    body = ("Server: `fewlabel serve` (uvicorn with uvloop and httptools) with one uvicorn worker and dynamic batching "
            "at its defaults (--max-batch-tokens 8192, --max-wait-ms 5 once requests come concurrently, "
            "--encode-lanes 1, --max-queue 1024), --no-cache (every text is encoded), --max-batch 16; index of "
            "the 800 GoEmotions rows of the bundled sample (Flat; the method `index build` chose: ensemble); "
            "aiohttp keep-alive clients (uvloop) on loopback send POST /classify with 1 or 16 test texts; `client "
            "CPU ms`: the clients' own CPU per request, taken from the same 2 cores. `batching`: on (the defaults), "
            "off (--max-batch-tokens 0: each request encodes on its own thread), or on with --encode-lanes. "
            "`encoder texts/s`: the same encoder and backend on the "
            "same texts in batches of 32, in this run, with the server idle; `ratio` = serving texts/s over it. "
            "`mean batch`: texts per encoder call in the server (from its /metrics). `/health max`: slowest "
            "/health answer while the phase ran (polled every 50 ms on its own connection, from its own thread).\n\n"
            + markdown_table(["model", "backend", "batching", "texts per request", "clients", "requests answered",
                              "requests/s", "texts/s", "encoder texts/s", "ratio", "p50 ms", "p95 ms", "p99 ms",
                              "errors", "mean batch", "/health max ms", "client CPU ms"], rows)
            + f"\n\nErrors: {errors}. CPU flags: {cpu_flags()}. Each row's date, 1-minute load average and "
              "measured encoder figure are in serve.json.\n\n"
              f"Runs in this report (the heavy-job lock of the shared machine gives at most 15 minutes a run, so the "
              f"grid is measured in several; a row's ratio uses the encoder measured in its own run):\n\n{run_lines}\n"
              f"## The encoder against the CPU's peak\n\nfp32 peak: a {gemm['n']}x{gemm['n']} torch matmul on "
              f"{gemm['torch_threads']} threads, in the same run as the encoder figure. Useful FLOPs count each "
              "text's own tokens; padded FLOPs count what the batches of 32 (sorted by length) compute. The last "
              "figures are the same encoder on unsorted windows of 1, 4 and 8 of the same texts: the batches "
              "that 1-text requests make, so the most a server of 1-text requests could reach.\n\n"
            + markdown_table(["encoder/backend", "texts/s", "mean tokens", "useful GFLOP/s", "padded GFLOP/s",
                              "fp32 peak GFLOP/s", "useful share of peak", "padded share of peak",
                              "texts/s on unsorted batches of 1 / 4 / 8", "measured"],
                             enc_rows)
            + "\n\n## Server memory (resident MiB)\n\n"
            + markdown_table(["server", "after start", "largest after a phase", "peak (VmHWM)"], mem_rows)
            + "\n")
    write_report(args.out, "serve", "Load test of fewlabel serve", body,
                 {"results": results, "encoders": encoders, "gemm": gemm, "memory_mib": memory,
                  "load_average_start": load_start, "load_average_end": load_end, "runs": runs,
                  "cpu_flags": cpu_flags()},
                 data_note="bundled GoEmotions-ekman sample (retrieval/demo_data): train indexed, valid tunes k and m, "
                           "test texts sent")


if __name__ == "__main__":
    main()
