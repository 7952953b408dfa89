"""A bounded load test of `fewlabel serve` on loopback: concurrent clients send requests of 1 and of 16 texts to
POST /classify. Writes `serve.md` and `serve.json`.

    python -m fewlabel.benchmarks.serve_load --out benchmarks/results

The server runs as the user runs it (`fewlabel serve`, one uvicorn worker, --no-cache so every text is encoded)
in its own process; the clients are httpx in this one. Every phase stops after its request count or its time
limit, whichever comes first. Memory is the server process's resident set (VmRSS now, VmHWM peak)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fewlabel.benchmarks.report import markdown_table, write_report

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


async def phase(base: str, texts: list[str], per_request: int, requests: int, clients: int, limit_s: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(requests))
    deadline = time.perf_counter() + limit_s

    async def client_loop(client: httpx.AsyncClient) -> None:
        for i in counter:
            if time.perf_counter() > deadline:
                return
            start = (i * per_request) % (len(texts) - per_request)
            began = time.perf_counter()
            try:
                response = await client.post("/classify", json={"texts": texts[start:start + per_request]})
                if response.status_code != 200:
                    errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                    continue
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=60, headers={"Authorization": f"Bearer {TOKEN}"},
                                 limits=httpx.Limits(max_connections=clients)) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    wall = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    done = len(latencies) + sum(errors.values())
    return {"texts_per_request": per_request, "requests_planned": requests, "requests_sent": done,
            "ok": len(latencies), "errors": errors, "wall_s": round(wall, 1),
            "requests_per_s": round(len(latencies) / wall, 1),
            "texts_per_s": round(len(latencies) * per_request / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "stopped_by_time_limit": done < requests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000, help="requests of 1 text")
    parser.add_argument("--requests-16", type=int, default=2000, help="requests of 16 texts")
    parser.add_argument("--note", default="", help="a sentence for the report (e.g. what else ran)")
    parser.add_argument("--limit-s", type=float, default=420.0, help="time limit of each phase")
    args = parser.parse_args()
    with open(DEMO / "goemotions_ekman_test.tsv", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)]
    results, memory = [], {}
    with tempfile.TemporaryDirectory() as work:
        index = Path(work) / "index"
        cli = [sys.executable, "-m", "fewlabel.retrieval.cli", "-q"]
        subprocess.run([*cli, "index", "build", str(DEMO / "goemotions_ekman_train.tsv"), "--id-col", "id",
                        "--label-col", "labels", "--label-sep", ",",
                        "--valid", str(DEMO / "goemotions_ekman_valid.tsv"),
                        "--model", args.model, "--out", str(index)], check=True, timeout=900)
        n_rows = sum(1 for _ in open(index / "rows.jsonl", encoding="utf-8"))
        port = free_port()
        server = subprocess.Popen([*cli, "serve", str(index), "--port", str(port), "--no-cache", "--max-batch", "16",
                                   "--token", TOKEN], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            import httpx

            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.5)
            memory["after_start"] = memory_mib(server.pid)
            asyncio.run(phase(base, texts, 1, 50, args.clients, 60))  # warm-up, not reported
            for per_request, count in ((1, args.requests), (16, args.requests_16)):
                results.append(asyncio.run(phase(base, texts, per_request, count, args.clients, args.limit_s)))
                memory[f"after_{per_request}"] = memory_mib(server.pid)
                print(results[-1], memory, flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    rows = [[r["texts_per_request"], f"{r['ok']} of {r['requests_planned']}", r["wall_s"], r["requests_per_s"],
             r["texts_per_s"], r["p50_ms"], r["p95_ms"], r["p99_ms"],
             sum(r["errors"].values()) if r["errors"] else 0] for r in results]
    errors = sum(sum(r["errors"].values()) for r in results)
    body = (f"Server: `fewlabel serve` with one uvicorn worker, {args.model} index of {n_rows} GoEmotions rows (Flat), "
            f"--no-cache; {args.clients} concurrent httpx clients on loopback, POST /classify.\n\n"
            + markdown_table(["texts per request", "requests answered", "wall s", "requests/s", "texts/s", "p50 ms",
                              "p95 ms", "p99 ms", "errors"], rows)
            + f"\n\nErrors: {errors} (target 0). Server memory (resident, MiB): after start "
              f"{memory['after_start'].get('VmRSS')}, after the 1-text phase {memory['after_1'].get('VmRSS')}, after "
              f"the 16-text phase {memory['after_16'].get('VmRSS')}; peak {memory['after_16'].get('VmHWM')}.\n\n"
              "The work is CPU-bound (encoding) on 2 cores: 8 clients queue behind it, so latency grows with "
              "concurrency while throughput is what the encoder gives. The fast (ONNX) backend does not exist in "
              "fewlabel yet, so there is no second row for it.\n" + (f"\n{args.note}\n" if args.note else ""))
    write_report(args.out, "serve", "Load test of fewlabel serve", body,
                 {"results": results, "memory_mib": memory, "clients": args.clients, "model": args.model,
                  "index_rows": n_rows},
                 data_note="bundled GoEmotions-ekman sample (retrieval/demo_data): train indexed, valid tunes k and m, "
                           "test texts sent")


if __name__ == "__main__":
    main()
