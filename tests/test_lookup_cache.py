"""The cached lookup of who a send reaches: always right, and never growing with the sends."""

from __future__ import annotations

import functools
import gc
import inspect
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
import pytest

from asyncsignals import Signal

pytestmark = pytest.mark.anyio

SEND_METHODS = ["send", "send_robust", "send_sync", "send_robust_sync"]


class Sender:
    """A weakly referenceable sender."""


async def send_with(method: str, signal: Signal, sender: object) -> list[Any]:
    """The values a send by ``method`` returns; the sync ones are called from a worker thread."""
    if method.endswith("_sync"):
        call: Callable[[], Any] = functools.partial(getattr(signal, method), sender)
        results = await anyio.to_thread.run_sync(call)
    else:
        results = await getattr(signal, method)(sender)
    return [value for _, value in results]


def returning(value: str, is_async: bool) -> Callable[..., Any]:
    """A receiver that returns ``value``, sync or async."""

    def sync_receiver(sender: object, **kwargs: Any) -> str:
        return value

    async def async_receiver(sender: object, **kwargs: Any) -> str:
        return value

    return async_receiver if is_async else sync_receiver


@pytest.mark.parametrize("method", SEND_METHODS)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("cached_by", ["sender None", "sender without receivers"])
async def test_sender_reaches_its_receivers_after_the_any_sender_lookup_was_cached(
    method: str, is_async: bool, cached_by: str
) -> None:
    """A send from A reaches A's own receivers after another send cached the any-sender lookup."""
    signal = Signal()
    sender = Sender()
    other = None if cached_by == "sender None" else Sender()
    to_any = returning("any", is_async)
    to_sender = returning("A", is_async)
    signal.connect(to_any)
    signal.connect(to_sender, sender=sender)
    assert await send_with(method, signal, other) == ["any"]
    assert await send_with(method, signal, sender) == ["any", "A"]
    assert await send_with(method, signal, other) == ["any"]
    assert await send_with(method, signal, sender) == ["any", "A"]


async def traced_growth(action: Callable[[], Awaitable[object]]) -> int:
    """How many bytes of memory ``action`` leaves allocated, as tracemalloc counts them."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await action()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


# A cache that gained an entry per send would keep at least a pointer (8 bytes)
# for each of them: 8,000 bytes for 1,000 sends.
SENDS = 1_000
FLAT = 2_000


@pytest.mark.parametrize("method", SEND_METHODS)
@pytest.mark.parametrize("from_sender", [False, True], ids=["any sender", "specific sender"])
async def test_repeated_sends_from_one_sender_keep_memory_flat(
    method: str, from_sender: bool
) -> None:
    """A thousand sends from one sender leave no more memory allocated than one send does."""
    signal = Signal()
    sender = Sender() if from_sender else None
    other = Sender()
    receivers = [returning(value, is_async=False) for value in ("any", "other", "A")]
    signal.connect(receivers[0])
    # Another sender's receivers: the sends below must find theirs among them.
    signal.connect(receivers[1], sender=other)
    if sender is not None:
        signal.connect(receivers[2], sender=sender)
    expected = ["any", "A"] if from_sender else ["any"]
    # Sync receivers only, so that the sync entry points run on this thread
    # and no send yields to the event loop, whose own allocations would count.
    send = getattr(signal, method)

    async def sends() -> None:
        for _ in range(SENDS):
            results = send(sender)
            if inspect.isawaitable(results):
                results = await results
            assert [value for _, value in results] == expected

    await sends()  # whatever a first run allocates once is allocated now
    assert await traced_growth(sends) < FLAT
