"""The cached lookup of who a send reaches: always right."""

from __future__ import annotations

import functools
from collections.abc import Callable
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
