"""Timing, smoke checks, connect/disconnect cost and memory, for one case at a time.

Timing: the cases of one scenario are prepared together; each is warmed up
(which also sizes its batch), then timed in rounds, every round timing every
case once (interleaved, in a rotated order), each batch of ``iterations``
sends on a fresh event loop after a short untimed warm-up (loop start-up is
not timed), with ``perf_counter_ns`` while the garbage collector is disabled.
A round's result is its mean time per send; a case reports the median of its
rounds. ``gc.collect()`` runs before every timed batch.
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
from benchmarks._implementations import FAILURE_LOGGERS, Implementation, Send
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

    repeats: int  # rounds, each timing every case of a scenario once
    repeat_ns: int  # aim for this much time per case per round
    warmup_ns: int
    min_iterations: int = 3
    max_iterations: int = 200_000


DEFAULT = Settings(repeats=7, repeat_ns=25_000_000, warmup_ns=10_000_000)
QUICK = Settings(repeats=5, repeat_ns=3_000_000, warmup_ns=2_000_000)


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


def prepare(
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


class Case:
    """One dispatcher on one scenario and backend, prepared once and timed in rounds.

    Every round runs on a fresh event loop of the backend (trio's cannot be
    resumed once it returns), so a round starts with a short untimed warm-up.
    """

    def __init__(
        self, implementation: Implementation, scenario: Scenario, backend: Backend
    ) -> None:
        self.implementation = implementation
        self.scenario = scenario
        self.backend = backend
        self._send, self._senders, self._receivers = prepare(implementation, scenario, backend)
        self._position = 0
        self.iterations = 0
        self.samples: list[float] = []
        self.error: Exception | None = None  # what stopped it, if anything did

    def _batch(self, count: int) -> list[object]:
        senders = self._senders
        batch = [senders[(self._position + i) % len(senders)] for i in range(count)]
        self._position = (self._position + count) % len(senders)
        return batch

    def calibrate(self, settings: Settings) -> None:
        """Warm up (the interpreter's caches, the dispatcher's) and size the batch."""
        send = self._send

        async def warm_up() -> float:
            calls = 0
            start = time.perf_counter_ns()
            elapsed = 0
            while calls < 3 or elapsed < settings.warmup_ns:
                await send(self._batch(1)[0], order=ORDER)
                calls += 1
                elapsed = time.perf_counter_ns() - start
            return max(elapsed / calls, 1.0)

        per_call = run_on(self.backend, warm_up)
        iterations = int(settings.repeat_ns / per_call)
        self.iterations = max(settings.min_iterations, min(settings.max_iterations, iterations))

    def repeat(self) -> float:
        """Time one batch on a fresh loop; record and return its mean ns per send."""
        send = self._send
        warm = self._batch(max(3, self.iterations // 10))
        batch = self._batch(self.iterations)

        async def measure() -> float:
            for sender in warm:
                await send(sender, order=ORDER)
            gc.collect()
            gc.disable()
            try:
                begin = time.perf_counter_ns()
                for sender in batch:
                    await send(sender, order=ORDER)
                end = time.perf_counter_ns()
            finally:
                gc.enable()
            return (end - begin) / len(batch)

        sample = run_on(self.backend, measure)
        self.samples.append(sample)
        return sample

    @property
    def median(self) -> float:
        """The median of the rounds' ns per send."""
        return statistics.median(self.samples)


def time_interleaved(cases: Sequence[Case], settings: Settings) -> None:
    """Time ``cases`` in rounds: each round times every case once, in a rotated order.

    A burst of noise on a shared machine then lands on one round of every case
    rather than on every round of one, and the median across rounds drops it.
    Objects alive before the first round are frozen out of the collector, so
    the ``gc.collect()`` before each timed batch only walks what came since.
    """
    # One broken dispatcher must not cost the others their measurement.
    for case in cases:
        try:
            case.calibrate(settings)
        except Exception as exc:
            case.error = exc
    gc.collect()
    gc.freeze()
    try:
        for round_number in range(settings.repeats):
            shift = round_number % max(len(cases), 1)
            for case in [*cases[shift:], *cases[:shift]]:
                if case.error is not None:
                    continue
                try:
                    case.repeat()
                except Exception as exc:
                    case.error = exc
    finally:
        gc.unfreeze()


class SmokeError(AssertionError):
    """An implementation returned the wrong results."""


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise SmokeError(what)


@contextmanager
def null_logging(handler: logging.Handler | None = None) -> Iterator[None]:
    """Keep failure logging on, but send it to ``handler`` (a ``NullHandler``) only.

    send_robust logs each failure with its traceback. Inside this block each
    dispatcher's logger still makes its records (so a failing send is timed
    with the logging it really does); they go to one handler that drops them
    and do not propagate, so nothing is printed. ``logging.disable`` would
    skip the record altogether and time less than a user's send does.
    """
    sink = logging.NullHandler() if handler is None else handler
    saved: list[tuple[logging.Logger, list[logging.Handler], bool, int]] = []
    disabled = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    for name in FAILURE_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate, logger.level))
        logger.handlers[:] = [sink]
        logger.propagate = False
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, handlers, propagate, level in saved:
            logger.handlers[:] = handlers
            logger.propagate = propagate
            logger.setLevel(level)
        logging.disable(disabled)


class _Counter(logging.Handler):
    """Counts the records it is given, and drops them."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _outcome(value: object) -> object:
    # A failing receiver's exception, as what a smoke check compares.
    if isinstance(value, ReceiverError):
        return ("raised", *value.args)
    return value


def smoke_case(implementation: Implementation, scenario: Scenario, backend: Backend) -> None:
    """Send once and check every receiver ran once and its result came back."""
    log: list[int] = []
    send, senders, receivers = prepare(implementation, scenario, backend, log)
    label = f"{implementation.name} {scenario.key} on {backend}"
    target = senders[-1]
    expected = receivers[-scenario.count :] if scenario.count else []

    failing = scenario.kind == "failing"

    async def once() -> Any:
        return await send(target, order=ORDER)

    counter = _Counter()
    with null_logging(counter):
        results = run_on(backend, once)
    _check(sorted(log) == sorted(range(len(expected))), f"{label}: receivers called {log}")
    if failing:
        # Every robust dispatcher logs each failure: the timed row includes that.
        _check(counter.count == len(expected), f"{label}: {counter.count} failures logged")
    if not implementation.returns_results:
        _check(results is None, f"{label}: expected no results, got {results!r}")
        return
    _check(isinstance(results, list), f"{label}: results are {results!r}")
    pairs = [(receiver, _outcome(value)) for receiver, value in results]
    wanted = [
        (receiver, ("raised", index) if failing else index)
        for index, receiver in enumerate(expected)
    ]
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

    with null_logging():
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
