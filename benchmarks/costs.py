"""What each of a send's guarantees costs: the floor, built up one guarantee at a time.

``python -m benchmarks.costs`` times, on the rows where asyncsignals misses one
of its ratio targets, a ladder of hand-written dispatchers. Each rung adds one
thing DESIGN.md requires of a send to the rung before it, written the
cheapest way we know, and the last rung is asyncsignals itself:

- the floor: call or await each receiver in turn, collecting results;
- receivers held weakly: each dereferenced at send time;
- ``signal=`` passed to every receiver that accepts it (as Django does);
- a cancellation point: a send that runs async receivers raises at once when
  the caller is already cancelled (anyio's ``checkpoint_if_cancelled``; on
  trio, trio's own);
- context isolation: receivers run in a copy of the sender's context
  (sync receivers inside ``Context.run``; an awaited receiver with every step
  run in the copy);
- asyncsignals' ``send``.

The gap between the last hand-written rung and asyncsignals is what the
library adds beyond its guarantees; the rungs below it are what the
guarantees themselves cost, which no implementation of them avoids.

    python -m benchmarks.costs                  # asyncio and trio
    python -m benchmarks.costs --quick          # shorter repeats
    python -m benchmarks.costs --smoke          # every rung once, results checked (CI)
    python -m benchmarks.costs --backend trio
"""

from __future__ import annotations

import argparse
import contextvars
import functools
import inspect
import platform
import sys
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import anyio.lowlevel

import asyncsignals
from asyncsignals._context import await_in_context
from benchmarks._backends import Backend, run_on
from benchmarks._implementations import Implementation, Send
from benchmarks._measure import DEFAULT, QUICK, Case, Sender, Settings, time_interleaved
from benchmarks._receivers import Receiver, make_receivers
from benchmarks._report import format_ns
from benchmarks._scenarios import ORDER, TIMES, Scenario

ROWS: tuple[tuple[Scenario, bool], ...] = (
    # (scenario, sequential): the rows where a ratio target is missed
    (Scenario("send/10/sync", 10, "sync"), False),
    (Scenario("send/1/async", 1, "async"), False),
    (Scenario("send/10/async", 10, "async"), True),
)


def _checkpoint(backend: Backend) -> Callable[[], Any]:
    if backend == "trio":
        import trio

        return trio.lowlevel.checkpoint_if_cancelled
    return anyio.lowlevel.checkpoint_if_cancelled


def _floor(receivers: Sequence[Receiver], sequential: bool, backend: Backend) -> Send:
    is_async = inspect.iscoroutinefunction(receivers[0])

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        results: list[tuple[Receiver, Any]] = []
        for receiver in receivers:
            value = receiver(sender=sender, **named)
            results.append((receiver, await value if is_async else value))
        return results

    return send


def _weak(receivers: Sequence[Receiver], sequential: bool, backend: Backend) -> Send:
    references = [weakref.ref(receiver) for receiver in receivers]
    is_async = inspect.iscoroutinefunction(receivers[0])

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        results: list[tuple[Receiver, Any]] = []
        for reference in references:
            receiver = reference()
            if receiver is None:
                continue
            value = receiver(sender=sender, **named)
            results.append((receiver, await value if is_async else value))
        return results

    return send


def _with_signal(receivers: Sequence[Receiver], sequential: bool, backend: Backend) -> Send:
    references = [weakref.ref(receiver) for receiver in receivers]
    is_async = inspect.iscoroutinefunction(receivers[0])
    signal = object()

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        arguments = {"signal": signal, "sender": sender, **named}
        results: list[tuple[Receiver, Any]] = []
        for reference in references:
            receiver = reference()
            if receiver is None:
                continue
            value = receiver(**arguments)
            results.append((receiver, await value if is_async else value))
        return results

    return send


def _cancellation_point(receivers: Sequence[Receiver], sequential: bool, backend: Backend) -> Send:
    inner = _with_signal(receivers, sequential, backend)
    checkpoint = _checkpoint(backend)

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        await checkpoint()
        results: list[tuple[Receiver, Any]] = await inner(sender, **named)
        return results

    return send


def _isolated(receivers: Sequence[Receiver], sequential: bool, backend: Backend) -> Send:
    references = [weakref.ref(receiver) for receiver in receivers]
    is_async = inspect.iscoroutinefunction(receivers[0])
    signal = object()
    checkpoint = _checkpoint(backend)

    def run_inline(arguments: dict[str, Any]) -> list[tuple[Receiver, Any]]:
        results: list[tuple[Receiver, Any]] = []
        for reference in references:
            receiver = reference()
            if receiver is not None:
                results.append((receiver, receiver(**arguments)))
        return results

    async def run_awaited(arguments: dict[str, Any]) -> list[tuple[Receiver, Any]]:
        results: list[tuple[Receiver, Any]] = []
        for reference in references:
            receiver = reference()
            if receiver is not None:
                results.append((receiver, await receiver(**arguments)))
        return results

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        arguments = {"signal": signal, "sender": sender, **named}
        context = contextvars.copy_context()
        if not is_async:
            return context.run(run_inline, arguments)
        await checkpoint()
        results: list[tuple[Receiver, Any]] = await await_in_context(
            context, run_awaited(arguments)
        )
        return results

    return send


def _asyncsignals(receivers: Sequence[Receiver], sequential: bool, backend: Backend) -> Send:
    signal = asyncsignals.Signal(concurrent=not sequential)
    for receiver in receivers:
        signal.connect(receiver)
    # The signal holds its receivers weakly: kept alive as long as it is, and
    # its own send timed, with no coroutine of the benchmark's around it.
    _HELD[signal] = list(receivers)
    return signal.send


_HELD: weakref.WeakKeyDictionary[asyncsignals.Signal[Any, Any], list[Receiver]] = (
    weakref.WeakKeyDictionary()
)


# Builds a rung's send from the receivers, whether the row is sequential (which
# only asyncsignals' rung needs told: the hand-written ones await in turn), and
# the backend.
Rung = Callable[[Sequence[Receiver], bool, Backend], Send]

RUNGS: tuple[tuple[str, Rung], ...] = (
    ("floor: call or await each receiver", _floor),
    ("+ receivers held weakly", _weak),
    ("+ signal= to every receiver", _with_signal),
    ("+ a cancellation point (async receivers)", _cancellation_point),
    ("+ context isolation", _isolated),
    ("asyncsignals send", _asyncsignals),
)


def _implementation(label: str, rung: Rung, sequential: bool) -> Implementation:
    def build(receivers: Sequence[Receiver], robust: bool, backend: Backend) -> Send:
        return rung(receivers, sequential, backend)

    return Implementation(label, label, frozenset({"asyncio", "uvloop", "trio"}), build)


def _measure_row(
    scenario: Scenario, sequential: bool, backend: Backend, settings: Settings
) -> list[tuple[str, float]]:
    # The rungs are timed interleaved, round by round, as the main harness does.
    cases = [
        Case(_implementation(label, rung, sequential), scenario, backend)
        for label, rung in _rungs_for(scenario)
    ]
    time_interleaved(cases, settings)
    for case in cases:
        if case.error is not None:
            raise case.error
    return [(case.implementation.label, case.median) for case in cases]


def _rungs_for(scenario: Scenario) -> list[tuple[str, Rung]]:
    # A send with only sync receivers is no cancellation point (DESIGN.md).
    return [
        (label, rung)
        for label, rung in RUNGS
        if not (rung is _cancellation_point and scenario.kind == "sync")
    ]


def _smoke(backend: Backend) -> None:
    for scenario, sequential in ROWS:
        receivers = make_receivers(scenario.kind, scenario.count, backend)
        sender = Sender(0)
        for label, rung in _rungs_for(scenario):
            send = rung(receivers, sequential, backend)
            results: list[tuple[Receiver, Any]] = run_on(
                backend, functools.partial(send, sender, order=ORDER)
            )
            assert [receiver for receiver, _ in results] == list(receivers), label
            assert [value for _, value in results] == list(range(scenario.count)), label


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.costs",
        description="What each of a send's guarantees costs, rung by rung up from the floor.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    mode.add_argument("--smoke", action="store_true", help="every rung once, results checked")
    parser.add_argument(
        "--backend", action="append", choices=("asyncio", "trio"), help="repeatable"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print the ladder for each row and backend as markdown."""
    options = _parser().parse_args(argv)
    backends: list[Backend] = options.backend or ["asyncio", "trio"]
    if options.smoke:
        for backend in backends:
            _smoke(backend)
        print(f"costs: every rung returned the right results on {', '.join(backends)}")
        return 0
    settings = QUICK if options.quick else DEFAULT
    print(
        f"# What a send's guarantees cost: {platform.python_implementation()} "
        f"{platform.python_version()}\n"
    )
    print(
        f"Command: `python -m benchmarks.costs{' --quick' if options.quick else ''}`. "
        "Median time per send; ratio to the floor; what the rung adds.\n"
    )
    for backend in backends:
        for scenario, sequential in ROWS:
            title = scenario.label + (" (sequential)" if sequential else "")
            print(f"## {backend}: {title}\n")
            print(f"| rung | per send | {TIMES} floor | added |")
            print("|---|---|---|---|")
            timings = _measure_row(scenario, sequential, backend, settings)
            floor = timings[0][1]
            for position, (label, median) in enumerate(timings):
                added = format_ns(median - timings[position - 1][1]) if position else "—"
                print(f"| {label} | {format_ns(median)} | {median / floor:.2f}{TIMES} | {added} |")
            print()
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
