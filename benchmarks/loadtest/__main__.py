"""Load test: requests/s and p99 latency of the FastAPI example under uvicorn.

    python -m benchmarks.loadtest [--requests 2000] [--concurrency 32] [--duration 60]

For 0, 1 and 10 receivers on ``order_shipped``, and for the same receivers
called directly by the handler, it serves ``benchmarks/loadtest/app.py`` (the
FastAPI example) with uvicorn on 127.0.0.1 in a subprocess, creates the orders
(untimed), ships them through a bounded load generator (``--requests`` ship
requests at most ``--concurrency`` at a time, stopped after ``--duration``
seconds if not done), waits for the background e-mails, stops the server
with SIGINT and reads its dispatcher's shutdown report. Every shipped order
hands one e-mail to the background dispatcher, in both modes. It fails unless
every request succeeded and every background send completed. The table is
printed and written to ``benchmarks/results/loadtest-<interpreter>-<date>.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
from anyio.abc import ByteReceiveStream

ROOT = Path(__file__).resolve().parents[2]
RECEIVER_COUNTS = (0, 1, 10)
MODES = ("direct", "signal")
WARMUP = 200


@dataclass
class Run:
    mode: str
    receivers: int
    sent: int
    errors: int
    elapsed: float
    latencies: list[float]
    report: dict[str, object]

    @property
    def per_second(self) -> float:
        return self.sent / self.elapsed

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

    @property
    def lost(self) -> int:
        accepted = int(str(self.report["accepted"]))
        completed = int(str(self.report["completed"]))
        not_completed = int(str(self.report["not_completed"]))
        return not_completed + (accepted - completed - not_completed)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_until_serving(client: httpx.AsyncClient) -> None:
    with anyio.fail_after(30):
        while True:
            try:
                await client.get("/stats")
                return
            except httpx.TransportError:
                await anyio.sleep(0.05)


async def drive(
    client: httpx.AsyncClient, order_ids: list[int], concurrency: int, duration: float
) -> tuple[list[float], int, int, float]:
    """Ship the orders, ``concurrency`` at a time; (latencies, errors, sent, elapsed)."""
    latencies: list[float] = []
    errors = 0
    remaining = iter(order_ids)

    async def worker() -> None:
        nonlocal errors
        for order_id in remaining:
            started = time.perf_counter()
            try:
                response = await client.post(f"/orders/{order_id}/ship")
            except httpx.HTTPError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                errors += 1

    started = time.perf_counter()
    with anyio.move_on_after(duration):
        async with anyio.create_task_group() as task_group:
            for _ in range(concurrency):
                task_group.start_soon(worker)
    elapsed = time.perf_counter() - started
    return latencies, errors, len(latencies), elapsed


async def create_orders(client: httpx.AsyncClient, count: int, concurrency: int) -> list[int]:
    ids: list[int] = []
    limiter = anyio.CapacityLimiter(concurrency)

    async def create() -> None:
        async with limiter:
            response = await client.post("/orders", json={"item": "teapot"})
            response.raise_for_status()
            ids.append(int(response.json()["id"]))

    async with anyio.create_task_group() as task_group:
        for _ in range(count):
            task_group.start_soon(create)
    return sorted(ids)


async def read_all(stream: ByteReceiveStream) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def measure(
    mode: str, receivers: int, requests: int, concurrency: int, duration: float
) -> Run:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "benchmarks.loadtest.app",
        "--mode",
        mode,
        "--receivers",
        str(receivers),
        "--port",
        str(port),
    ]
    server = await anyio.open_process(command, cwd=ROOT)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30
        ) as client:
            await wait_until_serving(client)
            order_ids = await create_orders(client, WARMUP + requests, concurrency)
            await drive(client, order_ids[:WARMUP], concurrency, duration)
            latencies, errors, sent, elapsed = await drive(
                client, order_ids[WARMUP:], concurrency, duration
            )
            with anyio.fail_after(60):
                while True:
                    stats = (await client.get("/stats")).json()
                    if stats["background_queued"] == stats["background_running"] == 0:
                        break
                    await anyio.sleep(0.05)
    finally:
        server.send_signal(signal.SIGINT)
        with anyio.fail_after(60):
            await server.wait()
    assert server.stdout is not None
    assert server.stderr is not None
    output = (await read_all(server.stdout)).decode()
    if server.returncode != 0:
        log = (await read_all(server.stderr)).decode()
        raise SystemExit(f"server failed ({server.returncode}):\n{log}")
    report: dict[str, object] = json.loads(output.strip().splitlines()[-1])
    return Run(mode, receivers, sent, errors, elapsed, latencies, report)


def table(runs: list[Run]) -> str:
    lines = [
        "| receivers | dispatch | requests | errors | requests/s | p50 ms | p99 ms "
        "| background sends completed / accepted | not completed |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        dispatch = "order_shipped.send" if run.mode == "signal" else "direct calls"
        lines.append(
            f"| {run.receivers} | {dispatch} | {run.sent} | {run.errors} "
            f"| {run.per_second:,.0f} | {run.percentile(0.50):.2f} | {run.percentile(0.99):.2f} "
            f"| {run.report['completed']} / {run.report['accepted']} | {run.lost} |"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description="Load test the FastAPI example under uvicorn.")
    parser.add_argument("--requests", type=int, default=2000, help="ship requests per run")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--duration", type=float, default=60, help="seconds at most per run")
    parser.add_argument("--no-write", action="store_true", help="print only")
    arguments = parser.parse_args()
    runs = []
    for receivers in RECEIVER_COUNTS:
        for mode in MODES:
            run = await measure(
                mode, receivers, arguments.requests, arguments.concurrency, arguments.duration
            )
            print(
                f"{receivers:>2} receivers, {mode:<6}: {run.per_second:,.0f} requests/s, "
                f"p99 {run.percentile(0.99):.2f} ms",
                file=sys.stderr,
            )
            runs.append(run)
    command = "python -m benchmarks.loadtest " + shlex.join(sys.argv[1:])
    interpreter = f"{platform.python_implementation().lower()}-{platform.python_version()}"
    loop = runs[0].report["loop"]
    text = (
        f"# Load test: the FastAPI example under uvicorn\n\n"
        f"Command: `{command.strip()}`\n\n"
        f"{platform.python_implementation()} {platform.python_version()}, uvicorn on 127.0.0.1 "
        f"({loop} event loop, one worker), {platform.system()} {platform.machine()} "
        f"with {os.cpu_count()} CPUs shared by server and client, "
        f"{datetime.date.today().isoformat()}. Load: {arguments.requests} "
        f"`POST /orders/{{id}}/ship` requests per row (after {WARMUP} warm-up requests), at "
        f"most {arguments.concurrency} in flight, from an httpx client in another process; "
        f"at most {arguments.duration:g} s per row. Each request runs the receivers in the "
        "request (sync and async alternating, each appending to a list) through "
        "`order_shipped.send` or by calling them in turn, and hands one e-mail to the "
        "background dispatcher. Background sends are counted from the dispatcher's "
        "shutdown report after a graceful stop (SIGINT). Rows run one after another: "
        "between rows, only differences larger than the spread of repeated runs mean "
        "anything.\n\n"
        f"{table(runs)}\n"
    )
    print(text)
    failures = [run for run in runs if run.errors or run.lost or run.sent != arguments.requests]
    if not arguments.no_write:
        name = f"loadtest-{interpreter.rsplit('.', 1)[0]}-{datetime.date.today().isoformat()}.md"
        path = ROOT / "benchmarks" / "results" / name
        path.write_text(text)
        print(f"written to {path.relative_to(ROOT)}", file=sys.stderr)
    if failures:
        raise SystemExit(f"{len(failures)} runs had errors, lost sends or did not finish")


if __name__ == "__main__":
    anyio.run(main)
