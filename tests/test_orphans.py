"""Nothing outlives a send: no task, no un-awaited coroutine."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import anyio
import pytest
from helpers import no_unawaited_coroutines, running_tasks

from asyncsignals import Signal

pytestmark = pytest.mark.anyio


class ReceiverError(Exception):
    pass


async def waits(sender: object, **kwargs: Any) -> None:
    await anyio.sleep_forever()


async def fails(sender: object, **kwargs: Any) -> None:
    await anyio.lowlevel.checkpoint()
    raise ReceiverError


async def quick(sender: object, **kwargs: Any) -> str:
    await anyio.lowlevel.checkpoint()
    return "quick"


async def never_awaits(sender: object, **kwargs: Any) -> str:
    return "never awaits"


def fails_sync(sender: object, **kwargs: Any) -> None:
    raise ReceiverError


def returns_coroutine(sender: object, **kwargs: Any) -> object:
    return quick(sender)


async def test_no_task_left_after_send_returns() -> None:
    """After a successful send with concurrent receivers, no extra task is running."""
    signal = Signal()
    for receiver in (quick, never_awaits, returns_coroutine):
        signal.connect(receiver)
    before = running_tasks()
    with no_unawaited_coroutines():
        await signal.send(None)
        await signal.send_robust(None)
    assert running_tasks() == before


@pytest.mark.parametrize(
    "receivers",
    [
        pytest.param([waits, fails], id="async-fails"),
        pytest.param([waits, never_awaits, returns_coroutine, fails], id="mixed"),
        pytest.param([returns_coroutine, never_awaits, fails_sync], id="sync-fails-first"),
    ],
)
async def test_no_task_or_coroutine_left_after_send_raises(receivers: list[Any]) -> None:
    """After send fails fast, nothing it started is still running or left un-awaited."""
    signal = Signal()
    for receiver in receivers:
        signal.connect(receiver)
    before = running_tasks()
    with no_unawaited_coroutines(), pytest.raises(ReceiverError):
        await signal.send(None)
    assert running_tasks() == before


async def test_no_task_left_after_caller_cancels() -> None:
    """After the caller's timeout cancels a send, no receiver task remains."""
    signal = Signal()
    signal.connect(waits)
    signal.connect(quick)
    signal.connect(returns_coroutine)
    before = running_tasks()
    with no_unawaited_coroutines():
        with anyio.move_on_after(0.01) as scope:
            await signal.send(None)
    assert scope.cancelled_caught
    assert running_tasks() == before


async def test_failing_sync_receiver_closes_pending_awaitables() -> None:
    """Awaitables collected before a sync receiver fails are closed, not left un-awaited."""
    signal = Signal()
    signal.connect(returns_coroutine)
    signal.connect(never_awaits)
    signal.connect(fails_sync)
    with no_unawaited_coroutines(), pytest.raises(ReceiverError):
        await signal.send(None)


async def fails_at_once(sender: object, **kwargs: Any) -> None:
    raise ReceiverError


class CustomAwaitable:
    """An awaitable with no close() method."""

    def __await__(self) -> Generator[Any, Any, str]:
        yield from anyio.lowlevel.checkpoint().__await__()
        return "custom"


def returns_custom(sender: object, **kwargs: Any) -> CustomAwaitable:
    return CustomAwaitable()


@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_failure_before_siblings_start_leaves_nothing_behind(method: str) -> None:
    """A receiver failing on its first step leaves no unstarted sibling task or coroutine."""
    signal = Signal()
    signal.connect(fails_at_once)
    signal.connect(quick)
    signal.connect(returns_coroutine)
    signal.connect(never_awaits)
    signal.connect(returns_custom)
    before = running_tasks()
    with no_unawaited_coroutines():
        if method == "send":
            with pytest.raises(ReceiverError):
                await signal.send(None)
        else:
            results = await signal.send_robust(None)
            assert isinstance(results[0][1], ReceiverError)
            assert [value for _, value in results[1:]] == [
                "quick",
                "quick",
                "never awaits",
                "custom",
            ]
            del results
    assert running_tasks() == before
