"""Context variables: receivers see the sender's, and cannot change them."""

from __future__ import annotations

import contextvars
from typing import Any

import anyio
import pytest

from asyncsignals import Signal

pytestmark = pytest.mark.anyio

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def sync_reader(sender: object, **kwargs: Any) -> str:
    seen = request_id.get()
    request_id.set("set by sync receiver")
    return seen


async def async_reader(sender: object, **kwargs: Any) -> str:
    seen = request_id.get()
    request_id.set("set by async receiver")
    await anyio.lowlevel.checkpoint()
    # Still its own value after a step through the event loop.
    assert request_id.get() == "set by async receiver"
    return seen


async def other_async_reader(sender: object, **kwargs: Any) -> str:
    return await async_reader(sender)


def threaded_reader(sender: object, **kwargs: Any) -> str:
    seen = request_id.get()
    request_id.set("set by threaded receiver")
    return seen


@pytest.mark.parametrize(
    ("receivers", "threaded"),
    [
        pytest.param([sync_reader], set(), id="sync"),
        pytest.param([async_reader], set(), id="single-async"),
        pytest.param([async_reader, other_async_reader], set(), id="task-group"),
        pytest.param([threaded_reader], {threaded_reader}, id="to-thread"),
        pytest.param([sync_reader, async_reader, threaded_reader], {threaded_reader}, id="mixed"),
    ],
)
@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_receivers_see_sender_context_and_cannot_change_it(
    receivers: list[Any], threaded: set[Any], method: str
) -> None:
    """Each receiver reads the sender's value; what it sets never reaches the sender."""
    signal = Signal()
    for receiver in receivers:
        signal.connect(receiver, to_thread=receiver in threaded)
    token = request_id.set("request-42")
    try:
        results = await getattr(signal, method)(None)
        assert [value for _, value in results] == ["request-42"] * len(receivers)
        assert request_id.get() == "request-42"
    finally:
        request_id.reset(token)


async def test_each_send_starts_from_the_senders_current_context() -> None:
    """A value a receiver set in one send is not seen by the next send."""
    for receiver in (sync_reader, async_reader):
        signal = Signal()
        signal.connect(receiver)
        assert await signal.send(None) == [(receiver, "unset")]
        assert await signal.send(None) == [(receiver, "unset")]


async def test_context_seen_by_awaitable_of_sync_receiver() -> None:
    """An awaitable returned by a sync receiver also runs in a copy of the sender's context."""

    def returns_coroutine(sender: object, **kwargs: Any) -> object:
        return async_reader(sender)

    signal = Signal()
    signal.connect(returns_coroutine)
    token = request_id.set("request-7")
    try:
        assert await signal.send(None) == [(returns_coroutine, "request-7")]
        assert request_id.get() == "request-7"
    finally:
        request_id.reset(token)
