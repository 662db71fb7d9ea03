"""End-to-end throughput and latency of the Redis bridge, across processes.

``python -m benchmarks.redis_bridge [--events N] [--consumers 1 2 4] [--url URL]``

For each number of consumer processes: start them (each a ``RedisBridge``
exporting one work-mode signal whose receiver notes the latency from the
publish), publish ``--events`` events from this process with 8 concurrent
publishers, wait until the group has read and acknowledged them all, then
stop the consumers (SIGTERM: a clean bridge shutdown) and collect their
latencies. Events/s is events over the time from the first publish to the
last acknowledgement; latency is publish to receiver, on one host's clock.
Writes ``benchmarks/results/redis-bridge-<date>.md`` and prints the table.
Needs a Redis (default ``redis://127.0.0.1:6379/0``); the keys it uses are
deleted afterwards.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal as os_signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as aioredis

from asyncsignals import Signal
from asyncsignals.redis import RedisBridge

PUBLISHERS = 8
RESULTS = Path(__file__).parent / "results"


def make_signal() -> Signal[..., Any]:
    return Signal(providing_args=["number", "sent_at"], name="benchmark_event")


async def consume(url: str, stream_prefix: str, consumer: str) -> None:
    """Run one consumer until SIGTERM, then print its latencies (seconds) as JSON."""
    signal = make_signal()
    latencies: list[float] = []
    numbers: list[int] = []

    def note(number: int, sent_at: float, **kwargs: Any) -> None:
        latencies.append(time.time() - sent_at)
        numbers.append(number)

    signal.connect(note)
    client = aioredis.from_url(url)
    bridge = RedisBridge(
        client, app="bench", stream_prefix=stream_prefix, consumer=consumer, claim_idle=30
    )
    bridge.export(signal)
    with anyio.open_signal_receiver(os_signal.SIGTERM) as signals:
        async with bridge:
            await client.rpush(f"{stream_prefix}:ready", consumer)
            async for _ in signals:
                break
    await client.aclose()
    print(json.dumps({"latencies": latencies, "numbers": numbers}))


async def run_case(url: str, consumers: int, events: int) -> dict[str, Any]:
    stream_prefix = f"asyncsignals-bench:{uuid.uuid4().hex}"
    client = aioredis.from_url(url)
    signal = make_signal()
    processes = [
        await anyio.open_process(
            [sys.executable, "-m", "benchmarks.redis_bridge", "--consume", url, stream_prefix],
            stdin=subprocess.DEVNULL,
            stderr=None,
        )
        for _ in range(consumers)
    ]
    outputs: list[bytes] = []
    try:
        # Polls: the consumers announce themselves in Redis.
        while await client.llen(f"{stream_prefix}:ready") < consumers:  # noqa: ASYNC110
            await anyio.sleep(0.01)
        publisher = RedisBridge(client, app="bench", stream_prefix=stream_prefix, maxlen=None)
        publisher.export(signal, consume=False)
        stream = f"{stream_prefix}:signal:benchmark_event"
        started = time.perf_counter()
        async with publisher:

            async def publish_share(first: int) -> None:
                for number in range(first, events, PUBLISHERS):
                    await publisher.publish(signal, "bench", number=number, sent_at=time.time())

            async with anyio.create_task_group() as group:
                for first in range(PUBLISHERS):
                    group.start_soon(publish_share, first)
        while True:
            (info,) = await client.xinfo_groups(stream)
            if info["pending"] == 0 and info["entries-read"] == events:
                break
            await anyio.sleep(0.005)
        elapsed = time.perf_counter() - started
    finally:
        for process in processes:
            process.send_signal(os_signal.SIGTERM)
        for process in processes:
            assert process.stdout is not None
            outputs.append(b"".join([chunk async for chunk in process.stdout]))
            await process.wait()
            await process.aclose()
        keys = [key async for key in client.scan_iter(match=f"{stream_prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    latencies: list[float] = []
    numbers: list[int] = []
    for output in outputs:
        result = json.loads(output)
        latencies += result["latencies"]
        numbers += result["numbers"]
    latencies.sort()
    assert set(numbers) == set(range(events)), "an event was lost"
    return {
        "consumers": consumers,
        "events": events,
        "seconds": elapsed,
        "rate": events / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "duplicates": len(numbers) - events,
    }


async def redis_version(url: str) -> str:
    client = aioredis.from_url(url)
    try:
        info = await client.info("server")
        return str(info["redis_version"])
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.redis_bridge", description=__doc__)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--consumers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--consume", nargs=2, metavar=("URL", "PREFIX"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.consume:
        url, stream_prefix = args.consume
        anyio.run(consume, url, stream_prefix, f"bench-{os.getpid()}", backend="asyncio")
        return 0
    rows = [
        anyio.run(run_case, args.url, consumers, args.events, backend="asyncio")
        for consumers in args.consumers
    ]
    version = anyio.run(redis_version, args.url, backend="asyncio")
    command = "python -m benchmarks.redis_bridge" + (
        f" --events {args.events}" if args.events != 20_000 else ""
    )
    lines = [
        f"# Redis bridge: end-to-end, {datetime.date.today().isoformat()}",
        "",
        f"Command: `{command}`. {platform.python_implementation()} "
        f"{platform.python_version()}, Redis {version} on the same host, {os.cpu_count()} CPUs. "
        f"One publishing process ({PUBLISHERS} concurrent publishers), work mode, default "
        "bridge settings (batch 16, 16 concurrent sends per consumer), a sync receiver. "
        "The publishers run flat out, so latency includes the time events wait in the "
        "backlog; publisher, Redis and consumers share this host's CPUs.",
        "",
        "| consumer processes | events | seconds | events/s | p50 latency (ms) "
        "| p99 latency (ms) | duplicates |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {row['consumers']} | {row['events']} | {row['seconds']:.2f} | {row['rate']:,.0f} "
        f"| {row['p50']:.1f} | {row['p99']:.1f} | {row['duplicates']} |"
        for row in rows
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"redis-bridge-{datetime.date.today().isoformat()}.md"
        path.write_text(table)
        print(f"written to {path.relative_to(Path(__file__).parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
