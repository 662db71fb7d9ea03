"""Every dispatcher measured, behind one small adapter each.

An adapter builds, from a list of receivers, a ``send(sender, **payload)``
coroutine function that dispatches to them (for a peer: its own send method,
unwrapped wherever its API allows, so no adapter call is timed), and
optionally a per-sender variant and a connect/disconnect registry.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

import asyncsignals
from benchmarks._backends import BACKENDS, Backend
from benchmarks._receivers import Receiver
from benchmarks._scenarios import INSTRUMENT_SCENARIOS

Send = Callable[..., Awaitable[Any]]
SenderPairs = Sequence[tuple[object, Receiver]]

# A robust floor logs each failure as the peers do (Django: an ERROR record with
# the exception), so the failing row compares like with like.
FLOOR_LOGGER = logging.getLogger("benchmarks.floor")

# Where each robust dispatcher logs a receiver's failure: the failing row keeps
# these on, each to a handler that drops the records (see _measure).
FAILURE_LOGGERS = ("asyncsignals", "django.dispatch", "async_signals", FLOOR_LOGGER.name)

ASYNCIO_ONLY: frozenset[Backend] = frozenset({"asyncio", "uvloop"})
ANY_BACKEND: frozenset[Backend] = frozenset(BACKENDS)


@dataclass(frozen=True)
class Registry:
    """Connect and disconnect one receiver (for any sender)."""

    connect: Callable[[Receiver], object]
    disconnect: Callable[[Receiver], object]


@dataclass(frozen=True)
class Implementation:
    """One dispatcher and what it supports."""

    name: str
    label: str
    backends: frozenset[Backend]
    build: Callable[[Sequence[Receiver], bool, Backend], Send]
    robust: bool = True
    sync_receivers: bool = True
    ordered: bool = True  # results in connection order, sync and async mixed
    returns_results: bool = True
    floor: bool = False
    concurrent: bool = True  # async receivers run concurrently (else awaited in turn)
    build_for_senders: Callable[[SenderPairs], Send] | None = None
    registry: Callable[[], Registry] | None = None
    missing: str | None = None  # why it cannot run here, when it cannot
    only: frozenset[str] | None = None  # the scenario keys it runs on (None: every one)
    instrument_column: bool = False  # reported in the instruments table
    main_column: bool = True  # reported in the main dispatch table


# -- asyncsignals -------------------------------------------------------------


def _asyncsignals_signal(
    receivers: Sequence[Receiver], **options: Any
) -> asyncsignals.Signal[Any, Any]:
    signal = asyncsignals.Signal(name="bench", **options)
    for receiver in receivers:
        signal.connect(receiver)
    return signal


def _asyncsignals_build(
    receivers: Sequence[Receiver], robust: bool, backend: Backend, **options: Any
) -> Send:
    signal = _asyncsignals_signal(receivers, **options)
    return signal.send_robust if robust else signal.send


def _asyncsignals_senders(pairs: SenderPairs) -> Send:
    signal = asyncsignals.Signal(name="bench")
    for sender, receiver in pairs:
        signal.connect(receiver, sender=sender)
    return signal.send


def _asyncsignals_registry() -> Registry:
    signal = asyncsignals.Signal(name="bench")
    return Registry(signal.connect, signal.disconnect)


# Each benchmarked signal's neighbour, which carries an instrument: kept alive
# exactly as long as the benchmarked signal, so no instrument outlives its case.
_NEIGHBOURS: weakref.WeakKeyDictionary[asyncsignals.Signal[Any, Any], Any] = (
    weakref.WeakKeyDictionary()
)


def _instrumented_elsewhere_build(
    receivers: Sequence[Receiver], robust: bool, backend: Backend
) -> Send:
    """asyncsignals' send while an instrument watches another signal, not this one."""
    signal = _asyncsignals_signal(receivers)
    neighbour = asyncsignals.Signal(name="bench-neighbour")
    asyncsignals.add_instrument(asyncsignals.Instrument(), neighbour)
    _NEIGHBOURS[signal] = neighbour
    return signal.send_robust if robust else signal.send


def _instrumented_build(
    receivers: Sequence[Receiver],
    robust: bool,
    backend: Backend,
    instrument: Callable[[], asyncsignals.Instrument] = asyncsignals.Instrument,
) -> Send:
    """asyncsignals' send with ``instrument()`` installed on the signal itself."""
    signal = _asyncsignals_signal(receivers)
    asyncsignals.add_instrument(instrument(), signal)
    return signal.send_robust if robust else signal.send


@functools.cache
def _tracer_provider() -> Any:
    # One per process: each TracerProvider registers its own shutdown at exit.
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider()


def _opentelemetry_instrument() -> asyncsignals.Instrument:
    from asyncsignals.opentelemetry import OpenTelemetryInstrument

    return OpenTelemetryInstrument(_tracer_provider())


def _opentelemetry_missing() -> str | None:
    if importlib.util.find_spec("opentelemetry") is None:
        return "opentelemetry-sdk is not installed"
    return _missing_module("opentelemetry.sdk")


def _sequential_missing() -> str | None:
    """asyncsignals' sequential mode is probed as ``Signal(concurrent=False)``."""
    try:
        asyncsignals.Signal(concurrent=False)  # type: ignore[call-arg,unused-ignore]
    except TypeError:
        return "asyncsignals has no Signal(concurrent=False) yet"
    return None


# -- Django -------------------------------------------------------------------


@functools.cache
def _django_ready() -> None:
    from django.conf import settings  # type: ignore[import-untyped,unused-ignore]

    if not settings.configured:
        settings.configure(DEBUG=False, USE_TZ=True)


def _django_signal() -> Any:
    _django_ready()
    from django.dispatch import Signal  # type: ignore[import-untyped,unused-ignore]

    return Signal()


def _django_build(receivers: Sequence[Receiver], robust: bool, backend: Backend) -> Send:
    signal = _django_signal()
    for receiver in receivers:
        signal.connect(receiver)
    send: Send = signal.asend_robust if robust else signal.asend
    return send


def _django_senders(pairs: SenderPairs) -> Send:
    signal = _django_signal()
    for sender, receiver in pairs:
        signal.connect(receiver, sender=sender)
    send: Send = signal.asend
    return send


def _django_registry() -> Registry:
    signal = _django_signal()
    return Registry(signal.connect, signal.disconnect)


# -- blinker ------------------------------------------------------------------


def _blinker_sync_wrapper(receiver: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
    # blinker's send_async refuses sync receivers unless given this wrapper.
    async def call(*args: Any, **kwargs: Any) -> Any:
        return receiver(*args, **kwargs)

    return call


def _blinker_build(receivers: Sequence[Receiver], robust: bool, backend: Backend) -> Send:
    import blinker

    signal = blinker.Signal()
    for receiver in receivers:
        signal.connect(receiver)
    if all(inspect.iscoroutinefunction(receiver) for receiver in receivers):
        return signal.send_async
    return functools.partial(signal.send_async, _sync_wrapper=_blinker_sync_wrapper)


def _blinker_senders(pairs: SenderPairs) -> Send:
    import blinker

    signal = blinker.Signal()
    for sender, receiver in pairs:
        signal.connect(receiver, sender=sender)
    return signal.send_async


def _blinker_registry() -> Registry:
    import blinker

    signal = blinker.Signal()
    return Registry(signal.connect, signal.disconnect)


# -- aiosignal ----------------------------------------------------------------


def _aiosignal_build(receivers: Sequence[Receiver], robust: bool, backend: Backend) -> Send:
    import aiosignal

    signal: aiosignal.Signal[Any] = aiosignal.Signal(owner=None)
    signal.extend(receivers)
    signal.freeze()
    return signal.send


def _aiosignal_registry() -> Registry:
    import aiosignal

    # Connecting is appending to the (not yet frozen) list; disconnecting, removing.
    signal: aiosignal.Signal[Any] = aiosignal.Signal(owner=None)
    return Registry(signal.append, signal.remove)


# -- async-signals --------------------------------------------------------------


def _async_signals_build(receivers: Sequence[Receiver], robust: bool, backend: Backend) -> Send:
    import async_signals

    signal = async_signals.Signal()
    for receiver in receivers:
        signal.connect(receiver)
    return signal.send_robust if robust else signal.send


def _async_signals_senders(pairs: SenderPairs) -> Send:
    import async_signals

    signal = async_signals.Signal()
    for sender, receiver in pairs:
        signal.connect(receiver, sender=sender)
    return signal.send


def _async_signals_registry() -> Registry:
    import async_signals

    signal = async_signals.Signal()
    return Registry(signal.connect, signal.disconnect)


# -- floors -------------------------------------------------------------------


def _plan(receivers: Sequence[Receiver]) -> list[tuple[Receiver, bool]]:
    return [(receiver, inspect.iscoroutinefunction(receiver)) for receiver in receivers]


def _loop_build(receivers: Sequence[Receiver], robust: bool, backend: Backend) -> Send:
    """The physical floor: call or await each receiver in turn, collecting results."""
    plan = _plan(receivers)
    if not robust and all(is_async for _, is_async in plan):

        async def send_async_only(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
            results: list[tuple[Receiver, Any]] = []
            for receiver in receivers:
                results.append((receiver, await receiver(sender=sender, **named)))
            return results

        return send_async_only

    if not robust and not any(is_async for _, is_async in plan):

        async def send_sync_only(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
            results: list[tuple[Receiver, Any]] = []
            for receiver in receivers:
                results.append((receiver, receiver(sender=sender, **named)))
            return results

        return send_sync_only

    if not robust:

        async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
            results: list[tuple[Receiver, Any]] = []
            for receiver, is_async in plan:
                if is_async:
                    results.append((receiver, await receiver(sender=sender, **named)))
                else:
                    results.append((receiver, receiver(sender=sender, **named)))
            return results

        return send

    async def send_robust(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        results: list[tuple[Receiver, Any]] = []
        for receiver, is_async in plan:
            try:
                if is_async:
                    value = await receiver(sender=sender, **named)
                else:
                    value = receiver(sender=sender, **named)
            except Exception as exc:
                _log_failure(receiver, exc)
                value = exc
            results.append((receiver, value))
        return results

    return send_robust


def _loop_senders(pairs: SenderPairs) -> Send:
    by_sender: dict[object, list[Receiver]] = {}
    for sender, receiver in pairs:
        by_sender.setdefault(sender, []).append(receiver)

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        results: list[tuple[Receiver, Any]] = []
        for receiver in by_sender.get(sender, ()):
            results.append((receiver, await receiver(sender=sender, **named)))
        return results

    return send


def _dict_registry() -> Registry:
    connected: dict[int, Receiver] = {}

    def connect(receiver: Receiver) -> None:
        connected[id(receiver)] = receiver

    def disconnect(receiver: Receiver) -> None:
        del connected[id(receiver)]

    return Registry(connect, disconnect)


def _log_failure(receiver: Receiver, exc: Exception) -> None:
    FLOOR_LOGGER.error("Error calling %s", receiver.__qualname__, exc_info=exc)


async def _catching(receiver: Receiver, call: Awaitable[Any]) -> Any:
    try:
        return await call
    except Exception as exc:
        _log_failure(receiver, exc)
        return exc


def _call_sync(receiver: Receiver, robust: bool, sender: object, named: dict[str, Any]) -> Any:
    if not robust:
        return receiver(sender=sender, **named)
    try:
        return receiver(sender=sender, **named)
    except Exception as exc:
        _log_failure(receiver, exc)
        return exc


def _taskgroup_build(receivers: Sequence[Receiver], robust: bool, backend: Backend) -> Send:
    """A raw ``asyncio.TaskGroup``: a task per async receiver, sync ones inline."""
    plan = _plan(receivers)

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        results: list[tuple[Receiver, Any]] = []
        tasks: list[tuple[int, asyncio.Task[Any]]] = []
        async with asyncio.TaskGroup() as task_group:
            for receiver, is_async in plan:
                if is_async:
                    call = receiver(sender=sender, **named)
                    task = task_group.create_task(_catching(receiver, call) if robust else call)
                    tasks.append((len(results), task))
                    results.append((receiver, None))
                else:
                    results.append((receiver, _call_sync(receiver, robust, sender, named)))
        for index, task in tasks:
            results[index] = (results[index][0], task.result())
        return results

    return send


async def _store(
    results: list[tuple[Receiver, Any]],
    index: int,
    receiver: Receiver,
    robust: bool,
    sender: object,
    named: dict[str, Any],
) -> None:
    if robust:
        try:
            value = await receiver(sender=sender, **named)
        except Exception as exc:
            _log_failure(receiver, exc)
            value = exc
    else:
        value = await receiver(sender=sender, **named)
    results[index] = (receiver, value)


def _anyio_build(receivers: Sequence[Receiver], robust: bool, backend: Backend) -> Send:
    """An anyio task group: a task per async receiver, sync ones inline."""
    plan = _plan(receivers)

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        results: list[tuple[Receiver, Any]] = []
        async with anyio.create_task_group() as task_group:
            for receiver, is_async in plan:
                if is_async:
                    task_group.start_soon(
                        _store, results, len(results), receiver, robust, sender, named
                    )
                    results.append((receiver, None))
                else:
                    results.append((receiver, _call_sync(receiver, robust, sender, named)))
        return results

    return send


def _nursery_build(receivers: Sequence[Receiver], robust: bool, backend: Backend) -> Send:
    """A raw trio nursery: a task per async receiver, sync ones inline."""
    import trio

    plan = _plan(receivers)

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        results: list[tuple[Receiver, Any]] = []
        async with trio.open_nursery() as nursery:
            for receiver, is_async in plan:
                if is_async:
                    nursery.start_soon(
                        _store, results, len(results), receiver, robust, sender, named
                    )
                    results.append((receiver, None))
                else:
                    results.append((receiver, _call_sync(receiver, robust, sender, named)))
        return results

    return send


# -- the list -----------------------------------------------------------------


def _missing_module(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed"
    return None


def implementations() -> list[Implementation]:
    """Every implementation, in table column order (floors first)."""
    return [
        Implementation(
            "loop",
            "hand loop (floor)",
            ANY_BACKEND,
            _loop_build,
            concurrent=False,
            floor=True,
            build_for_senders=_loop_senders,
            registry=_dict_registry,
        ),
        Implementation(
            "asyncsignals",
            "asyncsignals",
            ANY_BACKEND,
            _asyncsignals_build,
            build_for_senders=_asyncsignals_senders,
            registry=_asyncsignals_registry,
        ),
        Implementation(
            "asyncsignals-sequential",
            "asyncsignals (sequential)",
            ANY_BACKEND,
            functools.partial(_asyncsignals_build, concurrent=False),
            concurrent=False,
            missing=_sequential_missing(),
        ),
        Implementation(
            "asyncsignals-instrument-elsewhere",
            "asyncsignals, instrument on another signal",
            ANY_BACKEND,
            _instrumented_elsewhere_build,
            only=INSTRUMENT_SCENARIOS,
            instrument_column=True,
            main_column=False,
        ),
        Implementation(
            # Every row, so the main table shows what the hook costs everywhere.
            "asyncsignals-instrumented",
            "asyncsignals + no-op instrument",
            ANY_BACKEND,
            _instrumented_build,
            instrument_column=True,
        ),
        Implementation(
            "asyncsignals-opentelemetry",
            "asyncsignals, OpenTelemetry on it",
            ANY_BACKEND,
            functools.partial(_instrumented_build, instrument=_opentelemetry_instrument),
            only=INSTRUMENT_SCENARIOS,
            instrument_column=True,
            main_column=False,
            missing=_opentelemetry_missing(),
        ),
        Implementation(
            "taskgroup",
            "asyncio.TaskGroup",
            ASYNCIO_ONLY,
            _taskgroup_build,
            floor=True,
        ),
        Implementation("anyio", "anyio task group", ANY_BACKEND, _anyio_build, floor=True),
        Implementation(
            "nursery",
            "trio nursery",
            frozenset({"trio"}),
            _nursery_build,
            floor=True,
            missing=_missing_module("trio"),
        ),
        Implementation(
            "django",
            "Django asend",
            ASYNCIO_ONLY,  # asyncio.gather and asgiref's thread hop
            _django_build,
            ordered=False,  # sync receivers' results first, then async ones
            build_for_senders=_django_senders,
            registry=_django_registry,
            missing=_missing_module("django"),
        ),
        Implementation(
            "blinker",
            "blinker send_async",
            ANY_BACKEND,  # awaits each receiver in turn: no loop API used
            _blinker_build,
            concurrent=False,
            robust=False,
            ordered=False,  # receivers are kept in a set
            build_for_senders=_blinker_senders,
            registry=_blinker_registry,
            missing=_missing_module("blinker"),
        ),
        Implementation(
            "aiosignal",
            "aiosignal",
            ANY_BACKEND,  # awaits each receiver in turn: no loop API used
            _aiosignal_build,
            concurrent=False,
            robust=False,
            sync_receivers=False,
            returns_results=False,
            registry=_aiosignal_registry,
            missing=_missing_module("aiosignal"),
        ),
        Implementation(
            "async_signals",
            "async-signals",
            ANY_BACKEND,  # awaits each receiver in turn: no loop API used
            _async_signals_build,
            concurrent=False,
            build_for_senders=_async_signals_senders,
            registry=_async_signals_registry,
            missing=_missing_module("async_signals"),
        ),
    ]
