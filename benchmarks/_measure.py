"""Timing, smoke checks, connect/disconnect cost and memory, for one case at a time.

Timing: one coroutine run per case (loop start-up is not timed), a warm-up
that also sizes the batch, then several repeats of ``iterations`` sends each,
timed with ``perf_counter_ns`` while the garbage collector is disabled. The
result of a repeat is its mean time per send; a case reports the median of
its repeats. ``gc.collect()`` runs before every case.
"""

from __future__ import annotations

import gc
import logging
import statistics
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from benchmarks._backends import Backend, run_on
from benchmarks._implementations import Implementation, Send
from benchmarks._receivers import (
    Listener,
    Receiver,
    ReceiverError,
    make_failing_receivers,
    make_receivers,
)
from benchmarks._scenarios import ORDER, Scenario


@dataclass(frozen=True)
class Settings:
    """How hard to measure."""

    repeats: int
    repeat_ns: int  # aim for this much time per repeat
    warmup_ns: int
    min_iterations: int = 3
    max_iterations: int = 200_000


DEFAULT = Settings(repeats=7, repeat_ns=25_000_000, warmup_ns=10_000_000)
QUICK = Settings(repeats=3, repeat_ns=5_000_000, warmup_ns=2_000_000)


class Sender:
    """A sender object: hashable and weakly referenceable, like a model class."""

    __slots__ = ("__weakref__", "number")

    def __init__(self, number: int) -> None:
        self.number = number


def supports(implementation: Implementation, scenario: Scenario, backend: Backend) -> bool:
    """True when ``implementation`` can run ``scenario`` on ``backend``."""
    if implementation.missing is not None or backend not in implementation.backends:
        return False
    if implementation.only is not None and scenario.key not in implementation.only:
        return False
    if scenario.wall and not implementation.concurrent:
        return False  # 100 sleeps of 10 ms one after another: a second, and no news
    if scenario.robust and not implementation.robust:
        return False
    if scenario.kind in ("sync", "mixed") and not implementation.sync_receivers:
        return False
    if scenario.senders:
        return implementation.build_for_senders is not None
    return True


def _prepare(
    implementation: Implementation,
    scenario: Scenario,
    backend: Backend,
    log: list[int] | None = None,
) -> tuple[Send, list[object], list[Receiver]]:
    """The send function, the senders to cycle through, and the receivers (kept alive)."""
    if scenario.senders:
        assert implementation.build_for_senders is not None
        senders: list[object] = [Sender(number) for number in range(scenario.senders)]
        receivers = [
            receiver
            for _ in senders
            for receiver in make_receivers(scenario.kind, scenario.count, backend, log)
        ]
        pairs = [(senders[index // scenario.count], r) for index, r in enumerate(receivers)]
        return implementation.build_for_senders(pairs), senders, receivers
    receivers = make_receivers(scenario.kind, scenario.count, backend, log)
    send = implementation.build(receivers, scenario.robust, backend)
    return send, [Sender(0)], receivers


def time_case(
    implementation: Implementation, scenario: Scenario, backend: Backend, settings: Settings
) -> tuple[float, list[float], int]:
    """Median ns per send, every repeat's ns per send, and the iterations per repeat."""
    send, senders, receivers = _prepare(implementation, scenario, backend)

    async def measure() -> tuple[list[float], int]:
        position = 0
        calls = 0
        start = time.perf_counter_ns()
        elapsed = 0
        while calls < 3 or elapsed < settings.warmup_ns:
            await send(senders[position], order=ORDER)
            position = (position + 1) % len(senders)
            calls += 1
            elapsed = time.perf_counter_ns() - start
        per_call = max(elapsed / calls, 1.0)
        iterations = int(settings.repeat_ns / per_call)
        iterations = max(settings.min_iterations, min(settings.max_iterations, iterations))
        samples: list[float] = []
        for _ in range(settings.repeats):
            batch = [senders[(position + i) % len(senders)] for i in range(iterations)]
            position = (position + iterations) % len(senders)
            gc.disable()
            try:
                begin = time.perf_counter_ns()
                for sender in batch:
                    await send(sender, order=ORDER)
                end = time.perf_counter_ns()
            finally:
                gc.enable()
            samples.append((end - begin) / iterations)
        return samples, iterations

    gc.collect()
    samples, iterations = run_on(backend, measure)
    del receivers
    return statistics.median(samples), samples, iterations


class SmokeError(AssertionError):
    """An implementation returned the wrong results."""


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise SmokeError(what)


@contextmanager
def _quiet_logging() -> Iterator[None]:
    # send_robust logs each failure with its traceback: expected here.
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def smoke_case(implementation: Implementation, scenario: Scenario, backend: Backend) -> None:
    """Send once and check every receiver ran once and its result came back."""
    log: list[int] = []
    send, senders, receivers = _prepare(implementation, scenario, backend, log)
    label = f"{implementation.name} {scenario.key} on {backend}"
    target = senders[-1]
    expected = receivers[-scenario.count :] if scenario.count else []

    async def once() -> Any:
        return await send(target, order=ORDER)

    results = run_on(backend, once)
    _check(sorted(log) == sorted(range(len(expected))), f"{label}: receivers called {log}")
    if not implementation.returns_results:
        _check(results is None, f"{label}: expected no results, got {results!r}")
        return
    _check(isinstance(results, list), f"{label}: results are {results!r}")
    pairs = [(receiver, value) for receiver, value in results]
    wanted = [(receiver, index) for index, receiver in enumerate(expected)]
    if implementation.ordered:
        _check(pairs == wanted, f"{label}: results {pairs} != {wanted}")
    else:
        _check(
            len(pairs) == len(wanted) and dict(pairs) == dict(wanted),
            f"{label}: results {pairs} != {wanted} (any order)",
        )


def smoke_robust_failures(implementation: Implementation, backend: Backend) -> None:
    """send_robust hands back a failing receiver's exception in that receiver's slot."""
    if not implementation.robust:
        return
    receivers = make_receivers("mixed", 2, backend)
    failing = make_failing_receivers()
    if not implementation.sync_receivers:
        failing = failing[:1]
    everything = [*receivers, *failing]
    send = implementation.build(everything, True, backend)

    async def once() -> Any:
        return await send(Sender(0), order=ORDER)

    with _quiet_logging():
        results = run_on(backend, once)
    label = f"{implementation.name} send_robust with failing receivers on {backend}"
    by_receiver = dict(results)
    _check(len(results) == len(everything), f"{label}: {results}")
    for index, receiver in enumerate(receivers):
        _check(by_receiver[receiver] == index, f"{label}: {results}")
    for receiver in failing:
        _check(isinstance(by_receiver[receiver], ReceiverError), f"{label}: {results}")


@dataclass(frozen=True)
class ConnectCost:
    """ns per connect and per disconnect with ``connected`` receivers already there."""

    connect_ns: float
    disconnect_ns: float
    connected: int


def connect_cost(
    implementation: Implementation, connected: int, settings: Settings, batch: int = 1000
) -> ConnectCost:
    """Connect ``batch`` new receivers to a registry holding ``connected``, then remove them."""
    assert implementation.registry is not None
    registry = implementation.registry()
    resident = make_receivers("async", connected, "asyncio")
    for receiver in resident:
        registry.connect(receiver)
    connects: list[float] = []
    disconnects: list[float] = []
    # A small first round estimates the cost, so slow (O(N)) registries run fewer.
    size = min(batch, 20)
    for round_number in range(settings.repeats + 1):
        newcomers = make_receivers("async", size, "asyncio")
        gc.collect()
        gc.disable()
        try:
            begin = time.perf_counter_ns()
            for receiver in newcomers:
                registry.connect(receiver)
            middle = time.perf_counter_ns()
            for receiver in newcomers:
                registry.disconnect(receiver)
            end = time.perf_counter_ns()
        finally:
            gc.enable()
        if round_number == 0:
            per_operation = max((end - begin) / (2 * size), 1.0)
            size = max(20, min(batch, int(settings.repeat_ns / 2 / per_operation)))
            continue
        connects.append((middle - begin) / len(newcomers))
        disconnects.append((end - middle) / len(newcomers))
    return ConnectCost(statistics.median(connects), statistics.median(disconnects), connected)


@dataclass(frozen=True)
class MemoryCost:
    """Bytes allocated per connected receiver, and retained per connect+disconnect."""

    function_bytes: float
    method_bytes: float
    retained_bytes: float


def _traced_bytes_while(action: Any) -> int:
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    action()
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before


def memory_cost(implementation: Implementation, count: int, cycles: int) -> MemoryCost:
    """Measure with tracemalloc; receivers are created before tracing starts."""
    assert implementation.registry is not None
    functions = make_receivers("async", count, "asyncio")
    listeners = [Listener() for _ in range(count)]
    methods = [listener.on_event for listener in listeners]
    cyclers = make_receivers("async", cycles, "asyncio")
    function_registry = implementation.registry()
    method_registry = implementation.registry()
    cycle_registry = implementation.registry()
    for receiver in make_receivers("async", 10, "asyncio"):
        cycle_registry.connect(receiver)
    warm = make_receivers("async", 50, "asyncio")

    def connect_all(registry: Any, receivers: Sequence[Receiver]) -> None:
        for receiver in receivers:
            registry.connect(receiver)

    def cycle_all(receivers: Sequence[Receiver]) -> None:
        for receiver in receivers:
            cycle_registry.connect(receiver)
            cycle_registry.disconnect(receiver)

    cycle_all(warm)  # let the registry reach its steady size first
    # A function's __annotations__ dict is created on first access (inspect.signature
    # makes it): memory of the receiver, not of the registry, so made before tracing.
    for receiver in (*functions, *cyclers, Listener.on_event):
        _ = receiver.__annotations__
    tracemalloc.start()
    try:
        function_bytes = _traced_bytes_while(lambda: connect_all(function_registry, functions))
        method_bytes = _traced_bytes_while(lambda: connect_all(method_registry, methods))
        retained = _traced_bytes_while(lambda: cycle_all(cyclers))
    finally:
        tracemalloc.stop()
    return MemoryCost(function_bytes / count, method_bytes / count, retained / cycles)
