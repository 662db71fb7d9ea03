"""The receivers every implementation is given: the same function objects for all.

A receiver is called with ``sender`` (by keyword, or positionally by blinker
and aiosignal) and the payload, and returns its index in the connection order,
so a smoke run can check that every result came from the right receiver.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal

from benchmarks._backends import Backend

Receiver = Callable[..., Any]

# async: returns without suspending; suspend: suspends once (a bare checkpoint);
# sync: a plain function; mixed: async and sync alternating, async first;
# sleep: sleeps 10 ms; failing: async, raises ReceiverError(index) without suspending.
Kind = Literal["async", "suspend", "sync", "mixed", "sleep", "failing"]

SLEEP_SECONDS = 0.010


class ReceiverError(Exception):
    """Raised by the failing receivers (the failing row's carry their index)."""


def _async_receiver(index: int, log: list[int] | None) -> Receiver:
    if log is None:

        async def receiver(sender: object, **named: Any) -> int:
            return index

    else:

        async def receiver(sender: object, **named: Any) -> int:
            log.append(index)
            return index

    return receiver


def _sync_receiver(index: int, log: list[int] | None) -> Receiver:
    if log is None:

        def receiver(sender: object, **named: Any) -> int:
            return index

    else:

        def receiver(sender: object, **named: Any) -> int:
            log.append(index)
            return index

    return receiver


def _failing_receiver(index: int, log: list[int] | None) -> Receiver:
    async def receiver(sender: object, **named: Any) -> int:
        if log is not None:
            log.append(index)
        raise ReceiverError(index)

    return receiver


def _suspending_receiver(index: int, log: list[int] | None, backend: Backend) -> Receiver:
    # The backend's own cheapest suspension, so the receiver costs the same
    # to every dispatcher on that backend.
    if backend == "trio":
        from trio.lowlevel import checkpoint

        async def receiver(sender: object, **named: Any) -> int:
            await checkpoint()
            if log is not None:
                log.append(index)
            return index

    else:

        async def receiver(sender: object, **named: Any) -> int:
            await asyncio.sleep(0)
            if log is not None:
                log.append(index)
            return index

    return receiver


def _sleeping_receiver(index: int, log: list[int] | None, backend: Backend) -> Receiver:
    if backend == "trio":
        from trio import sleep

        async def receiver(sender: object, **named: Any) -> int:
            await sleep(SLEEP_SECONDS)
            if log is not None:
                log.append(index)
            return index

    else:

        async def receiver(sender: object, **named: Any) -> int:
            await asyncio.sleep(SLEEP_SECONDS)
            if log is not None:
                log.append(index)
            return index

    return receiver


def make_receivers(
    kind: Kind, count: int, backend: Backend, log: list[int] | None = None
) -> list[Receiver]:
    """``count`` distinct receivers of ``kind``; each logs its index to ``log`` if given."""
    receivers: list[Receiver] = []
    for index in range(count):
        if kind == "async" or (kind == "mixed" and index % 2 == 0):
            receivers.append(_async_receiver(index, log))
        elif kind in ("sync", "mixed"):
            receivers.append(_sync_receiver(index, log))
        elif kind == "suspend":
            receivers.append(_suspending_receiver(index, log, backend))
        elif kind == "failing":
            receivers.append(_failing_receiver(index, log))
        else:
            receivers.append(_sleeping_receiver(index, log, backend))
    return receivers


def make_failing_receivers() -> list[Receiver]:
    """One async and one sync receiver that raise ``ReceiverError``."""

    async def failing_async(sender: object, **named: Any) -> int:
        raise ReceiverError("async")

    def failing_sync(sender: object, **named: Any) -> int:
        raise ReceiverError("sync")

    return [failing_async, failing_sync]


def all_async(receivers: Sequence[Receiver]) -> bool:
    """True when every receiver is an ``async def`` function."""
    return all(inspect.iscoroutinefunction(receiver) for receiver in receivers)


class Listener:
    """An object whose bound method is a receiver (for the memory measurement)."""

    async def on_event(self, sender: object, **named: Any) -> int:
        return 0
