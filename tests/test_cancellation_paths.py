"""The caller's cancellation propagates as itself, whatever the shape of the send.

One async receiver (awaited in the sender's task), several (in tasks), a
sequential signal, ``to_thread`` receivers: each path must give the same
answer, on every backend.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from helpers import native_timeout, native_timeout_error, runs_tasks

from asyncsignals import Signal

pytestmark = pytest.mark.anyio

# How the async receivers of a send are connected: one, several, or in order.
SHAPES = ["one", "several", "sequential"]


def make_signal(shape: str, receiver: Any) -> Signal:
    """A signal of ``shape`` whose async receivers all behave like ``receiver``."""
    signal = Signal(concurrent=shape != "sequential")
    count = 2 if shape in ("several", "sequential") else 1
    for _ in range(count):
        signal.connect(functools.partial(receiver), weak=False)
    return signal


async def raised_under_deadline(signal: Signal, method: str) -> list[BaseException]:
    """What the send raised when a 20 ms deadline around it passed (the scope absorbs it)."""
    caught: list[BaseException] = []
    with anyio.move_on_after(0.02) as scope:
        try:
            await getattr(signal, method)(None)
        except BaseException as exc:
            caught.append(exc)
            raise
    assert scope.cancelled_caught
    return caught


async def swallows(sender: object, **kwargs: Any) -> str:
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        return "swallowed"
    raise AssertionError("not reached")  # pragma: no cover


async def raises_from_finally(sender: object, **kwargs: Any) -> None:
    try:
        await anyio.sleep_forever()
    finally:
        raise ValueError("from finally")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_swallowed_cancellation_is_not_turned_into_a_result(shape: str, method: str) -> None:
    """A receiver that catches the caller's cancellation and returns cannot end the cancellation."""
    signal = make_signal(shape, swallows)
    returned: list[object] = []
    with anyio.move_on_after(0.02) as scope:
        returned.append(await getattr(signal, method)(None))
    assert scope.cancelled_caught
    assert returned == []


@pytest.mark.parametrize("shape", SHAPES)
async def test_swallowed_cancellation_still_fires_a_native_timeout(shape: str) -> None:
    """asyncio.timeout / trio.fail_after around the send raises even if a receiver swallows."""
    signal = make_signal(shape, swallows)
    with pytest.raises(native_timeout_error()):
        async with native_timeout(0.02):
            await signal.send(None)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_swallowed_bare_task_cancel_propagates(shape: str, method: str) -> None:
    """A bare task.cancel() of the sending task propagates even if a receiver swallows it."""
    signal = make_signal(shape, swallows)
    task = asyncio.ensure_future(getattr(signal, method)(None))
    await anyio.wait_all_tasks_blocked()  # the receivers are waiting
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("shape", SHAPES)
async def test_send_robust_error_from_finally_does_not_hide_the_cancellation(
    shape: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An error a receiver raises while being cancelled is logged; the cancellation propagates."""
    signal = make_signal(shape, raises_from_finally)
    returned: list[object] = []
    with caplog.at_level(logging.ERROR, logger="asyncsignals"):
        with anyio.move_on_after(0.02) as scope:
            returned.append(await signal.send_robust(None))
    assert scope.cancelled_caught
    assert returned == []
    assert "ValueError" in caplog.text


@pytest.mark.parametrize("shape", SHAPES)
async def test_send_error_from_finally_does_not_hide_the_cancellation(
    shape: str, caplog: pytest.LogCaptureFixture
) -> None:
    """In send, the cancellation propagates; the receiver's error is its context, and logged."""
    signal = make_signal(shape, raises_from_finally)
    with caplog.at_level(logging.ERROR, logger="asyncsignals"):
        caught = await raised_under_deadline(signal, "send")
    assert "ValueError" in caplog.text
    assert "the caller's cancellation propagates instead" in caplog.text
    assert isinstance(caught[0], anyio.get_cancelled_exc_class())
    context = caught[0].__context__
    while context is not None and not isinstance(context, ValueError | BaseExceptionGroup):
        context = context.__context__
    assert context is not None


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_cancellation_propagates_as_itself_not_as_a_group(shape: str, method: str) -> None:
    """The caller sees its own cancellation exception, never an exception group of them."""

    async def waits(sender: object, **kwargs: Any) -> None:
        await anyio.sleep_forever()

    signal = make_signal(shape, waits)
    caught = await raised_under_deadline(signal, method)
    assert [type(exc) for exc in caught] == [anyio.get_cancelled_exc_class()]


@pytest.mark.parametrize("concurrent", [True, False])
@pytest.mark.parametrize("with_sync", [False, True])
async def test_deadline_around_a_thread_receiver_fires_once_it_returns(
    concurrent: bool, with_sync: bool
) -> None:
    """A deadline that passes while a to_thread receiver runs fires when the thread returns."""
    returned = threading.Event()

    def blocking(sender: object, **kwargs: Any) -> str:
        time.sleep(0.1)
        returned.set()
        return "done"

    signal = Signal(concurrent=concurrent)
    if with_sync:
        signal.connect(lambda **kwargs: "sync", weak=False)
    signal.connect(blocking, to_thread=True)
    results: list[object] = []
    with anyio.move_on_after(0.02) as scope:
        results.append(await signal.send(None))
    assert returned.is_set()
    assert scope.cancelled_caught
    assert results == []


@pytest.mark.parametrize("concurrent", [True, False])
async def test_native_timeout_around_a_thread_receiver_fires(concurrent: bool) -> None:
    """asyncio.timeout / trio.fail_after around a to_thread receiver raises once it returns."""

    def blocking(sender: object, **kwargs: Any) -> None:
        time.sleep(0.1)

    signal = Signal(concurrent=concurrent)
    signal.connect(blocking, to_thread=True)
    with pytest.raises(native_timeout_error()):
        async with native_timeout(0.02):
            await signal.send(None)


@pytest.mark.parametrize("trigger", ["sibling fails", "caller deadline"])
async def test_receiver_shield_holds_against_the_send(trigger: str) -> None:
    """A receiver inside CancelScope(shield=True) finishes that block when the send aborts."""
    finished_shielded: list[bool] = []
    entered = anyio.Event()

    async def shielded(sender: object, **kwargs: Any) -> None:
        with anyio.CancelScope(shield=True):
            entered.set()
            await anyio.sleep(0.05)
            finished_shielded.append(True)
        await anyio.sleep_forever()

    async def fails(sender: object, **kwargs: Any) -> None:
        await entered.wait()
        raise ValueError("sibling")

    async def waits(sender: object, **kwargs: Any) -> None:
        await anyio.sleep_forever()

    signal = Signal()
    signal.connect(shielded)
    if trigger == "sibling fails":
        signal.connect(fails)
        with pytest.raises(ValueError, match="sibling"):
            await signal.send(None)
    else:
        signal.connect(waits)
        with anyio.move_on_after(0.01) as scope:
            await signal.send(None)
        assert scope.cancelled_caught
    assert finished_shielded == [True]


async def test_shield_of_a_lone_receiver_holds_against_the_caller_deadline() -> None:
    """The shield of a receiver awaited in the sender's own task holds as well."""
    finished_shielded: list[bool] = []

    async def shielded(sender: object, **kwargs: Any) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.05)
            finished_shielded.append(True)

    signal = Signal()
    signal.connect(shielded)
    with anyio.move_on_after(0.01) as scope:
        await signal.send(None)
        await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert finished_shielded == [True]


@pytest.mark.parametrize(("receiver_count", "concurrent"), [(1, True), (1, False), (3, False)])
@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_a_shielded_receiver_ends_and_the_send_raises_the_callers_cancellation(
    receiver_count: int, concurrent: bool, method: str
) -> None:
    """The caller's scope cancelled while a receiver is shielded: the send raises it, after it."""
    finished_shielded: list[bool] = []
    returned: list[object] = []
    callers: list[anyio.CancelScope] = []

    async def shielded(sender: object, **kwargs: Any) -> str:
        with anyio.CancelScope(shield=True):
            await anyio.lowlevel.checkpoint()
            callers[0].cancel()
            await anyio.lowlevel.checkpoint()  # the shield holds
            finished_shielded.append(True)
        return "done"

    signal = Signal(concurrent=concurrent)
    for _ in range(receiver_count):
        signal.connect(functools.partial(shielded), weak=False)
    with anyio.fail_after(5):
        with anyio.CancelScope() as scope:
            callers.append(scope)
            returned.append(await getattr(signal, method)(None))
    assert scope.cancelled_caught
    assert returned == []
    assert finished_shielded == [True]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_interrupt_while_cancelled_wins_over_the_cancellation(
    shape: str, method: str
) -> None:
    """A receiver's KeyboardInterrupt raised during the caller's cancellation is never swallowed."""

    async def interrupted(sender: object, **kwargs: Any) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            raise KeyboardInterrupt

    signal = make_signal(shape, interrupted)
    with pytest.raises((KeyboardInterrupt, BaseExceptionGroup)) as raised:
        with anyio.move_on_after(0.02):
            await getattr(signal, method)(None)
    if isinstance(raised.value, BaseExceptionGroup):
        assert raised.value.subgroup(KeyboardInterrupt) is not None
        assert raised.value.subgroup(anyio.get_cancelled_exc_class()) is None


async def test_receiver_ending_inside_its_shield_is_not_cancelled_after() -> None:
    """A shielded receiver returning from inside its shield ends normally; the error wins."""
    entered = anyio.Event()

    async def shielded(sender: object, **kwargs: Any) -> str:
        with anyio.CancelScope(shield=True):
            entered.set()
            await anyio.sleep(0.03)
            return "finished"
        raise AssertionError("not reached")  # pragma: no cover

    async def fails(sender: object, **kwargs: Any) -> None:
        await entered.wait()
        raise ValueError("sibling")

    signal = Signal()
    signal.connect(shielded)
    signal.connect(fails)
    with pytest.raises(ValueError, match="sibling"):
        await signal.send(None)


class _Suspend:
    """Suspends once without an event loop: yields a bare value."""

    def __await__(self) -> Any:
        yield None


async def test_closing_a_suspended_send_closes_its_receiver() -> None:
    """A send coroutine closed while its receiver is suspended runs the receiver's cleanup."""
    cleaned_up: list[bool] = []

    async def suspends(sender: object, **kwargs: Any) -> None:
        try:
            await _Suspend()
        finally:
            cleaned_up.append(True)

    signal = Signal()
    signal.connect(suspends)
    sending = signal.send(None)
    sending.send(None)
    sending.close()
    assert cleaned_up == [True]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_a_receivers_own_task_group_does_not_group_the_cancellation(
    shape: str, method: str
) -> None:
    """A receiver running tasks of its own when the caller is cancelled: the cancellation itself."""

    signal = make_signal(shape, runs_tasks)
    caught = await raised_under_deadline(signal, method)
    assert [type(exc) for exc in caught] == [anyio.get_cancelled_exc_class()]


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_receiver_wrapping_the_cancellation_in_a_group_still_ends_in_the_callers_scope(
    shape: str,
) -> None:
    """A receiver that re-raises the caller's cancellation inside a group: the scope catches it."""

    async def wraps(sender: object, **kwargs: Any) -> None:
        try:
            await anyio.sleep_forever()
        except BaseException as cancelled:
            raise BaseExceptionGroup("wrapped", [cancelled]) from None

    signal = make_signal(shape, wraps)
    with anyio.move_on_after(0.02) as scope:
        await signal.send(None)
    assert scope.cancelled_caught


@pytest.mark.parametrize("receiver_count", [1, 2])
async def test_a_receivers_own_asyncio_cancelled_error_is_raised_as_itself(
    receiver_count: int,
) -> None:
    """A receiver raising asyncio.CancelledError by itself: the send raises it as itself."""
    stray = asyncio.CancelledError("stray")

    async def raises_it(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise stray

    async def other(sender: object, **kwargs: Any) -> int:
        await anyio.sleep(0.01)
        return 1

    signal = Signal()
    signal.connect(raises_it)
    if receiver_count == 2:
        signal.connect(other)
    with pytest.raises(asyncio.CancelledError) as raised:
        await signal.send(None)
    assert raised.value is stray
