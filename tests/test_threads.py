"""Re-entrancy and threads: connecting while sending, from anywhere."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest
from helpers import join_thread, start_thread

from asyncsignals import Signal

pytestmark = pytest.mark.anyio


async def test_connect_and_disconnect_from_other_threads_while_sending() -> None:
    """Threads connecting and disconnecting during sends break nothing and lose no receiver."""
    signal = Signal()
    sender = object()

    def steady(sender: object, **kwargs: Any) -> str:
        return "steady"

    async def steady_async(sender: object, **kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        return "steady_async"

    signal.connect(steady)
    signal.connect(steady_async, sender=sender)
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn(offset: int) -> None:
        try:
            while not stop.is_set():
                for number in range(20):

                    def transient(sender: object, **kwargs: Any) -> str:
                        return "transient"

                    uid = (offset, number)
                    signal.connect(transient, weak=False, dispatch_uid=uid)
                    signal.connect(transient, sender=sender, dispatch_uid=uid)
                    signal.disconnect(dispatch_uid=uid)
                    signal.disconnect(dispatch_uid=uid, sender=sender)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [start_thread(lambda offset=offset: churn(offset)) for offset in range(3)]
    try:
        for _ in range(200):
            results = await signal.send(sender)
            values = [value for _, value in results]
            assert values[0] == "steady"
            assert "steady_async" in values
            assert set(values) <= {"steady", "steady_async", "transient"}
    finally:
        stop.set()
        for thread in threads:
            await join_thread(thread)
    assert errors == []
    assert signal.receivers_for(sender) == [steady, steady_async]


async def test_receiver_may_connect_and_disconnect_during_send() -> None:
    """A receiver may change the connections; the send in flight keeps the set it started with."""
    calls: list[str] = []
    signal = Signal()

    def late(sender: object, **kwargs: Any) -> None:
        calls.append("late")

    def removed(sender: object, **kwargs: Any) -> None:
        calls.append("removed")

    async def removed_async(sender: object, **kwargs: Any) -> None:
        calls.append("removed_async")

    def rewires(sender: object, **kwargs: Any) -> None:
        calls.append("rewires")
        assert signal.disconnect(removed)
        assert signal.disconnect(removed_async)
        signal.connect(late)

    signal.connect(rewires)
    signal.connect(removed)
    signal.connect(removed_async)
    await signal.send(None)
    assert calls == ["rewires", "removed", "removed_async"]
    calls.clear()
    signal.disconnect(rewires)
    await signal.send(None)
    assert calls == ["late"]


async def test_async_receiver_may_rewire_during_send() -> None:
    """An async receiver connecting and disconnecting mid-send does not change that send."""
    calls: list[str] = []
    signal = Signal()

    async def rewires(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        signal.disconnect(other)
        signal.connect(late)

    async def other(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        calls.append("other")

    def late(sender: object, **kwargs: Any) -> None:
        calls.append("late")

    signal.connect(rewires)
    signal.connect(other)
    results = await signal.send(None)
    assert [receiver for receiver, _ in results] == [rewires, other]
    assert calls == ["other"]
    assert signal.receivers_for(None) == [rewires, late]


@pytest.mark.parametrize("is_async", [False, True])
async def test_receiver_may_send_the_same_signal(is_async: bool) -> None:
    """A receiver may send the signal it is receiving, recursively."""
    signal = Signal()
    depths: list[int] = []

    async def recurse_async(sender: object, depth: int) -> int:
        depths.append(depth)
        if depth < 3:
            await signal.send(sender, depth=depth + 1)
        return depth

    def recurse_sync(sender: object, depth: int) -> int:
        depths.append(depth)
        if depth < 3:
            signal.send_sync(sender, depth=depth + 1)
        return depth

    receiver = recurse_async if is_async else recurse_sync
    signal.connect(receiver)
    assert await signal.send(None, depth=0) == [(receiver, 0)]
    assert depths == [0, 1, 2, 3]


async def test_receiver_may_send_another_signal() -> None:
    """A receiver may send other signals, and their receivers run within it."""
    inner = Signal(name="inner")
    outer = Signal(name="outer")

    async def inner_receiver(sender: object, **kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        return f"inner from {sender}"

    def inner_sync(sender: object, **kwargs: Any) -> str:
        return "inner sync"

    async def outer_receiver(sender: object, **kwargs: Any) -> list[Any]:
        return [value for _, value in await inner.send("outer")]

    async def outer_other(sender: object, **kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        return "outer other"

    inner.connect(inner_receiver)
    inner.connect(inner_sync)
    outer.connect(outer_receiver)
    outer.connect(outer_other)
    assert await outer.send(None) == [
        (outer_receiver, ["inner from outer", "inner sync"]),
        (outer_other, "outer other"),
    ]
