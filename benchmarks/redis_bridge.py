"""The Redis bridge's consumers against a hand-written redis-py consumer (the floor).

``python -m benchmarks.redis_bridge [--rounds 3] [--events N] [--rate R] [--seconds S]
[--consumers 1 2 4] [--url URL] [--no-write]``

Two implementations consume the same work-mode events, each in 1, 2 and 4
consumer processes:

- ``bridge``: a ``RedisBridge`` exporting one signal, default settings
  (batch 16, 16 concurrent sends), a sync receiver;
- ``floor``: what a careful user writes by hand with redis-py: XREADGROUP a
  batch of 16 (blocking), decode each entry's JSON, call the handler, then
  one XACK for the batch.

Each case is measured twice. **Saturated**: the consumers wait on an empty
stream, ``--events`` entries are then written as fast as a pipeline can, and
the clock runs until the group has read and acknowledged them all; it gives
events/s and the consumers' CPU time per event (user + system, from
``getrusage`` in each consumer process, summed). **Paced**: ``--rate``
events/s for ``--seconds`` seconds, each carrying its publish time; it
gives p50 and p99 latency from the publish to the handler (one host's
clock). Cases run in interleaved rounds (each round every case once, the
order rotated from round to round) and the table shows each measure's
median over the rounds, and the bridge's ratio to the floor, with the
range of the ratios round by round (how noisy the host was). Writes
``benchmarks/results/redis-bridge-<date>.md`` and prints it, and draws the
three ratios per consumer count in ``docs/redis-bridge-ratios.png`` (with
matplotlib, of the ``bench`` extra). Needs a Redis
(default ``redis://127.0.0.1:6379/0``); the keys it uses are deleted
afterwards. Publisher, Redis and consumers share the host's CPUs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import signal as os_signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as aioredis

from asyncsignals import Signal
from asyncsignals.redis import RedisBridge

RESULTS = Path(__file__).parent / "results"
CHART = Path(__file__).parent.parent / "docs" / "redis-bridge-ratios.png"
# Each ratio of the bridge to the floor: its name, how it is computed, its target.
RATIOS: tuple[
    tuple[str, str, Callable[[dict[str, float], dict[str, float]], float], float], ...
] = (
    ("CPU/event", "at most", lambda bridge, floor: bridge["cpu_us"] / floor["cpu_us"], 1.5),
    ("events/s", "at least", lambda bridge, floor: bridge["rate"] / floor["rate"], 0.8),
    ("paced p99", "at most", lambda bridge, floor: bridge["p99"] / floor["p99"], 1.3),
)
IMPLEMENTATIONS = ("floor", "bridge")
APP = "bench"
SIGNAL = "benchmark_event"
BATCH = 16


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Notes:
    """What a consumer process saw: each event's number and latency."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.numbers: list[int] = []

    def handle(self, number: int, sent_at: float) -> None:
        self.latencies.append(time.time() - sent_at)
        self.numbers.append(number)

    def report(self, cpu: float) -> None:
        print(json.dumps({"latencies": self.latencies, "numbers": self.numbers, "cpu": cpu}))


async def consume_bridge(
    url: str, stream_prefix: str, notes: Notes, ready: Callable[[], Any]
) -> None:
    signal: Signal[..., Any] = Signal(providing_args=["number", "sent_at"], name=SIGNAL)

    def receiver(number: int, sent_at: float, **kwargs: Any) -> None:
        notes.handle(number, sent_at)

    signal.connect(receiver)
    client = aioredis.from_url(url)
    bridge = RedisBridge(client, app=APP, stream_prefix=stream_prefix, consumer=f"c-{os.getpid()}")
    bridge.export(signal)
    with anyio.open_signal_receiver(os_signal.SIGTERM) as signals:
        async with bridge:
            await ready()
            async for _ in signals:
                break
    await client.aclose()


async def consume_floor(
    url: str, stream_prefix: str, notes: Notes, ready: Callable[[], Any]
) -> None:
    client = aioredis.from_url(url)
    stream = f"{stream_prefix}:signal:{SIGNAL}"
    consumer = f"c-{os.getpid()}"

    async def loop() -> None:
        while True:
            response: Any = await client.xreadgroup(
                APP, consumer, {stream: ">"}, count=BATCH, block=2000
            )
            for _, entries in response or ():
                ids: list[bytes] = []
                for entry_id, fields in entries:
                    message = json.loads(fields[b"event"])
                    notes.handle(**message["payload"])
                    ids.append(entry_id)
                await client.xack(stream, APP, *ids)

    async with anyio.create_task_group() as group:
        group.start_soon(loop)
        with anyio.open_signal_receiver(os_signal.SIGTERM) as signals:
            await ready()
            async for _ in signals:
                break
        group.cancel_scope.cancel()
    await client.aclose()


def consume(implementation: str, url: str, stream_prefix: str) -> None:
    """Run one consumer until SIGTERM, then print what it saw and its CPU time as JSON."""
    notes = Notes()
    started: list[float] = []

    async def main() -> None:
        client = aioredis.from_url(url)

        async def ready() -> None:
            started.append(cpu_seconds())
            await client.rpush(f"{stream_prefix}:ready", os.getpid())

        run = consume_bridge if implementation == "bridge" else consume_floor
        try:
            await run(url, stream_prefix, notes, ready)
        finally:
            await client.aclose()

    anyio.run(main, backend="asyncio")
    notes.report(cpu_seconds() - started[0])


def entry(number: int) -> bytes:
    """An event as the bridge writes it (wire version 2), with its publish time."""
    return json.dumps(
        {
            "v": 2,
            "signal": SIGNAL,
            "sender": "bench",
            "payload": {"number": number, "sent_at": time.time()},
            "id": uuid.uuid4().hex,
            "published_at": time.time(),
            "origin": {"app": APP, "consumer": "publisher"},
        },
        separators=(",", ":"),
    ).encode()


async def run_case(
    url: str, implementation: str, consumers: int, events: int, paced: tuple[float, float] | None
) -> dict[str, Any]:
    """One case: start the consumers, publish, wait for every ack, stop them, collect."""
    stream_prefix = f"asyncsignals-bench:{uuid.uuid4().hex}"
    stream = f"{stream_prefix}:signal:{SIGNAL}"
    client = aioredis.from_url(url)
    await client.xgroup_create(stream, APP, id="0", mkstream=True)
    processes = [
        await anyio.open_process(
            [
                sys.executable,
                "-m",
                "benchmarks.redis_bridge",
                "--consume",
                implementation,
                url,
                stream_prefix,
            ],
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
        await anyio.sleep(0.2)
        started = time.perf_counter()
        if paced is None:
            for first in range(0, events, 500):
                async with client.pipeline(transaction=False) as pipe:
                    for number in range(first, min(first + 500, events)):
                        pipe.xadd(stream, {b"event": entry(number)})
                    await pipe.execute()
        else:
            rate, seconds = paced
            events = round(rate * seconds)
            for number in range(events):
                # Paced on the clock, not on the previous publish.
                delay = started + number / rate - time.perf_counter()
                if delay > 0:
                    await anyio.sleep(delay)
                await client.xadd(stream, {b"event": entry(number)})
        while True:
            (info,) = await client.xinfo_groups(stream)
            if info["pending"] == 0 and info["entries-read"] == events:
                break
            await anyio.sleep(0.002)
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
    cpu = 0.0
    for output in outputs:
        result = json.loads(output)
        latencies += result["latencies"]
        numbers += result["numbers"]
        cpu += result["cpu"]
    latencies.sort()
    assert set(numbers) == set(range(events)), f"{implementation}: an event was lost"
    return {
        "rate": events / elapsed,
        "cpu_us": cpu / events * 1e6,
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


Samples = dict[tuple[str, int], list[dict[str, float]]]


def measure(args: argparse.Namespace) -> Samples:
    """Every case, in interleaved rounds: each round's measures."""
    samples: dict[tuple[str, int], list[dict[str, float]]] = {}
    cases = [(implementation, n) for n in args.consumers for implementation in IMPLEMENTATIONS]
    for round_number in range(args.rounds):
        shift = round_number % len(cases)
        for implementation, consumers in cases[shift:] + cases[:shift]:
            saturated = anyio.run(
                run_case,
                args.url,
                implementation,
                consumers,
                args.events,
                None,
                backend="asyncio",
            )
            paced = anyio.run(
                run_case,
                args.url,
                implementation,
                consumers,
                0,
                (args.rate, args.seconds),
                backend="asyncio",
            )
            sample = {
                "rate": saturated["rate"],
                "cpu_us": saturated["cpu_us"],
                "p50": paced["p50"],
                "p99": paced["p99"],
                "duplicates": saturated["duplicates"] + paced["duplicates"],
            }
            print(f"round {round_number + 1}: {implementation} x{consumers}: {sample}", flush=True)
            samples.setdefault((implementation, consumers), []).append(sample)
    return samples


def medians_of(samples: Samples) -> dict[tuple[str, int], dict[str, float]]:
    return {
        case: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
        for case, runs in samples.items()
    }


def ratio_ranges(samples: Samples, consumers: int) -> list[tuple[float, float]]:
    """Each ratio's lowest and highest over the rounds (a round's bridge to its floor)."""
    pairs = list(zip(samples[("bridge", consumers)], samples[("floor", consumers)], strict=True))
    return [
        (min(ratio(b, f) for b, f in pairs), max(ratio(b, f) for b, f in pairs))
        for _, _, ratio, _ in RATIOS
    ]


def chart(args: argparse.Namespace, samples: Samples, path: Path) -> None:
    """The three ratios per consumer count (medians, the rounds' range as error bars)."""
    # The bench extra's, needed here only.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    medians = medians_of(samples)
    figure, axes = plt.subplots(1, len(RATIOS), figsize=(10, 3.4))
    for index, (axis, (name, bound, ratio, target)) in enumerate(zip(axes, RATIOS, strict=True)):
        values = [ratio(medians[("bridge", n)], medians[("floor", n)]) for n in args.consumers]
        ranges = [ratio_ranges(samples, n)[index] for n in args.consumers]
        errors = [
            [value - low for value, (low, _) in zip(values, ranges, strict=True)],
            [high - value for value, (_, high) in zip(values, ranges, strict=True)],
        ]
        labels = [str(n) for n in args.consumers]
        axis.bar(labels, values, yerr=errors, capsize=4, color="#4c72b0")
        axis.axhline(target, color="#c44e52", linestyle="--", label=f"target: {bound} {target:g}x")
        axis.axhline(1.0, color="grey", linewidth=0.8)
        axis.set_title(f"{name}, bridge / floor")
        axis.set_xlabel("consumer processes")
        axis.legend(loc="upper right", fontsize=8)
        axis.set_ylim(0, max(*(high for _, high in ranges), target) * 1.25)
    figure.suptitle(
        f"Redis bridge against a hand-written consumer (medians of {args.rounds} rounds)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def table(args: argparse.Namespace, samples: Samples, load: tuple[float, float]) -> str:
    medians = medians_of(samples)
    version = anyio.run(redis_version, args.url, backend="asyncio")
    lines = [
        f"# Redis bridge against a hand-written consumer, {datetime.date.today().isoformat()}",
        "",
        f"Command: `python -m benchmarks.redis_bridge --rounds {args.rounds} --events "
        f"{args.events} --rate {args.rate:g} --seconds {args.seconds:g}`. "
        f"{platform.python_implementation()} {platform.python_version()}, Redis {version} on "
        f"the same host, {os.cpu_count()} CPUs; medians of {args.rounds} interleaved rounds. "
        "Saturated: events/s and consumer CPU per event draining a burst of "
        f"{args.events} events; paced: latency at {args.rate:g} events/s. Floor: XREADGROUP "
        "of 16, json.loads, the handler, one XACK per batch. Targets: CPU/event at most 1.5x "
        "the floor, events/s at least 0.8x, paced p99 at most 1.3x. "
        f"Load average (1 min) of the host: {load[0]:.1f} before, {load[1]:.1f} after.",
        "",
        "| consumers | implementation | events/s | CPU µs/event | p50 ms | p99 ms "
        "| events/s ratio | CPU ratio | p99 ratio |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for consumers in args.consumers:
        floor = medians[("floor", consumers)]
        for implementation in IMPLEMENTATIONS:
            row = medians[(implementation, consumers)]
            ratios = (
                "| | | |"
                if implementation == "floor"
                else f"| {row['rate'] / floor['rate']:.2f} | {row['cpu_us'] / floor['cpu_us']:.2f} "
                f"| {row['p99'] / floor['p99']:.2f} |"
            )
            lines.append(
                f"| {consumers} | {implementation} | {row['rate']:,.0f} | {row['cpu_us']:.0f} "
                f"| {row['p50']:.2f} | {row['p99']:.2f} {ratios}"
            )
    lines += [
        "",
        "Each ratio's range over the rounds (a round's bridge to the same round's floor):",
        "",
        "| consumers | " + " | ".join(name for name, _, _, _ in RATIOS) + " |",
        "| ---: |" + " ---: |" * len(RATIOS),
    ]
    for consumers in args.consumers:
        ranges = ratio_ranges(samples, consumers)
        cells = [f"{low:.2f} to {high:.2f}" for low, high in ranges]
        lines.append(f"| {consumers} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.redis_bridge", description=__doc__)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--consumers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument(
        "--consume", nargs=3, metavar=("IMPL", "URL", "PREFIX"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.consume:
        consume(*args.consume)
        return 0
    load_before = os.getloadavg()[0]
    samples = measure(args)
    report = table(args, samples, (load_before, os.getloadavg()[0]))
    print(report)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"redis-bridge-{datetime.date.today().isoformat()}.md"
        path.write_text(report)
        (path.with_suffix(".json")).write_text(
            json.dumps([[*case, runs] for case, runs in samples.items()], indent=1)
        )
        chart(args, samples, CHART)
        for written in (path, CHART):
            print(f"written to {written.relative_to(Path(__file__).parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
