"""Cancellation: of the caller, of receivers, and what is (not) a checkpoint."""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest
from helpers import (
    native_timeout,
    native_timeout_error,
    no_unawaited_coroutines,
)

from asyncsignals import Signal

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("receiver_count", [1, 3])
@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_caller_cancellation_cancels_receivers_and_propagates(
    receiver_count: int, method: str
) -> None:
    """Cancelling the caller cancels running receivers; the send raises, it returns no result."""
    started = 0
    all_started = anyio.Event()
    cancelled: list[int] = []
    returned: list[object] = []

    async def waits(sender: object, number: int = 0, **kwargs: Any) -> None:
        nonlocal started
        started += 1
        if started == receiver_count:
            all_started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(1)
            raise

    signal = Signal()
    for _ in range(receiver_count):
        # Distinct functions, so each is its own connection.
        signal.connect(functools.partial(waits), weak=False)

    async with anyio.create_task_group() as task_group:

        async def sender() -> None:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                returned.append(await getattr(signal, method)(None))

        scopes: list[anyio.CancelScope] = []
        task_group.start_soon(sender)
        await all_started.wait()
        scopes[0].cancel()
    assert scopes[0].cancelled_caught
    assert returned == []
    assert len(cancelled) == receiver_count


@pytest.mark.parametrize("receiver_count", [1, 3])
async def test_timeout_around_send_cancels_receivers(receiver_count: int) -> None:
    """A timeout around send stops it; receivers see cancellation and the timeout is raised."""
    cancelled: list[int] = []

    async def waits(sender: object, **kwargs: Any) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(1)
            raise

    signal = Signal()
    for _ in range(receiver_count):
        signal.connect(functools.partial(waits), weak=False)
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.05):
            await signal.send(None)
    assert len(cancelled) == receiver_count


async def test_to_thread_receiver_cancellation_waits_for_it_to_return() -> None:
    """A to_thread receiver cannot be interrupted: the cancelled send waits for it to return."""
    started = anyio.Event()
    release = threading.Event()
    receiver_returned = threading.Event()
    send_ended = anyio.Event()
    returned_when_send_ended: list[bool] = []

    def blocking(sender: object, **kwargs: Any) -> str:
        anyio.from_thread.run_sync(started.set)
        assert release.wait(5)
        receiver_returned.set()
        return "done"

    async def waits(sender: object, **kwargs: Any) -> None:
        await anyio.sleep_forever()

    signal = Signal()
    signal.connect(blocking, to_thread=True)
    signal.connect(waits)

    async with anyio.create_task_group() as task_group:

        async def sender() -> None:
            try:
                with anyio.CancelScope() as scope:
                    scopes.append(scope)
                    await signal.send(None)
            finally:
                returned_when_send_ended.append(receiver_returned.is_set())
                send_ended.set()

        scopes: list[anyio.CancelScope] = []
        task_group.start_soon(sender)
        await started.wait()
        scopes[0].cancel()
        await anyio.wait_all_tasks_blocked()
        assert not send_ended.is_set()
        release.set()
        await send_ended.wait()
    assert returned_when_send_ended == [True]
    assert scopes[0].cancelled_caught


@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_send_with_only_sync_receivers_does_not_yield(method: str) -> None:
    """A send with no async receiver runs like a function call: no other task runs meanwhile."""
    other_ran = False

    def sync_receiver(sender: object, **kwargs: Any) -> str:
        return "sync"

    signal = Signal()
    signal.connect(sync_receiver)
    signal.connect(lambda **kwargs: "lambda", weak=False)

    async def other() -> None:
        nonlocal other_ran
        other_ran = True

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(other)
        for _ in range(10):
            await getattr(signal, method)(None)
        assert not other_ran
        await getattr(Signal(), method)(None)
        assert not other_ran


async def test_send_with_only_sync_receivers_is_not_a_cancellation_point() -> None:
    """Inside a cancelled scope a send with only sync receivers completes and returns."""

    def sync_receiver(sender: object, **kwargs: Any) -> str:
        return "sync"

    signal = Signal()
    signal.connect(sync_receiver)
    with anyio.CancelScope() as scope:
        scope.cancel()
        assert await signal.send(None) == [(sync_receiver, "sync")]
        assert await signal.send_robust(None) == [(sync_receiver, "sync")]
        assert await Signal().send(None) == []
    assert not scope.cancelled_caught


# Several concurrent receivers run in tasks, which the send must wait for.
@pytest.mark.parametrize(("receiver_count", "concurrent"), [(1, True), (1, False), (2, False)])
@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_send_adds_no_checkpoint_of_its_own(
    receiver_count: int, concurrent: bool, method: str
) -> None:
    """In a cancelled scope, receivers awaited in the sender's task that never suspend all run."""
    calls: list[str] = []

    def sync_receiver(sender: object, **kwargs: Any) -> str:
        calls.append("sync")
        return "sync"

    async def never_suspends(sender: object, **kwargs: Any) -> str:
        calls.append("async")
        return "async"

    signal = Signal(concurrent=concurrent)
    signal.connect(sync_receiver)
    for _ in range(receiver_count):
        signal.connect(functools.partial(never_suspends), weak=False)
    with anyio.CancelScope() as scope:
        scope.cancel()
        results = await getattr(signal, method)(None)
    assert not scope.cancelled_caught
    assert [value for _, value in results] == ["sync"] + ["async"] * receiver_count
    assert sorted(calls) == ["async"] * receiver_count + ["sync"]


@pytest.mark.parametrize("concurrent", [True, False])
@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_send_whose_async_receiver_never_suspends_does_not_yield(
    concurrent: bool, method: str
) -> None:
    """A send to one async receiver that returns without suspending lets no other task run."""
    other_ran = False

    async def never_suspends(sender: object, **kwargs: Any) -> str:
        return "async"

    def sync_receiver(sender: object, **kwargs: Any) -> str:
        return "sync"

    async def other() -> None:
        nonlocal other_ran
        other_ran = True

    alone = Signal(concurrent=concurrent)
    alone.connect(never_suspends)
    with_sync = Signal(concurrent=concurrent)
    with_sync.connect(sync_receiver)
    with_sync.connect(never_suspends)
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(other)
        for _ in range(10):
            assert await getattr(alone, method)(None) == [(never_suspends, "async")]
            assert await getattr(with_sync, method)(None) == [
                (sync_receiver, "sync"),
                (never_suspends, "async"),
            ]
        assert not other_ran


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(("receiver_count", "concurrent"), [(1, True), (2, True), (2, False)])
@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_a_receivers_cancel_of_its_own_task_is_its_own(
    receiver_count: int, concurrent: bool, method: str
) -> None:
    """A receiver's cancel() of the task it runs in, absorbed, is not the caller's cancellation.

    One receiver, or a sequential signal's, runs in the sender's task,
    several concurrent ones in tasks of their own: on every path the
    cancel() the receiver made of its own task is its own.
    """

    async def cancels_itself(sender: object, **kwargs: Any) -> str:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            return "absorbed"
        return "not cancelled"  # pragma: no cover (the cancel lands at the sleep)

    signal = Signal(concurrent=concurrent)
    for _ in range(receiver_count):
        signal.connect(functools.partial(cancels_itself), weak=False)
    with anyio.fail_after(5):
        results = await getattr(signal, method)(None)
    assert [value for _, value in results] == ["absorbed"] * receiver_count


@pytest.mark.parametrize("receiver_count", [1, 2])
@pytest.mark.parametrize("concurrent", [True, False])
@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_already_cancelled_send_raises_where_a_receiver_suspends(
    receiver_count: int, concurrent: bool, method: str
) -> None:
    """An already-cancelled caller gets its cancellation at the first receiver that suspends."""
    returned: list[object] = []

    async def suspends(sender: object, **kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        return "finished"  # pragma: no cover (cancelled at the checkpoint)

    signal = Signal(concurrent=concurrent)
    for _ in range(receiver_count):
        signal.connect(functools.partial(suspends), weak=False)
    with no_unawaited_coroutines():
        with anyio.CancelScope() as scope:
            scope.cancel()
            returned.append(await getattr(signal, method)(None))
    assert scope.cancelled_caught
    assert returned == []


async def test_already_cancelled_send_closes_awaitable_from_sync_receiver() -> None:
    """An awaitable returned by a sync receiver is not left un-awaited by a cancelled send."""

    async def work() -> None:
        pass

    def returns_coroutine(sender: object, **kwargs: Any) -> object:
        return work()

    signal = Signal()
    signal.connect(returns_coroutine)
    with no_unawaited_coroutines():
        with anyio.CancelScope() as scope:
            scope.cancel()
            await signal.send(None)


@pytest.mark.parametrize("receiver_count", [1, 3])
async def test_receiver_fail_after_binds_to_the_receiver(receiver_count: int) -> None:
    """anyio.fail_after inside a receiver times out that receiver, not the sender."""
    outcomes: list[str] = []

    async def times_out(sender: object, **kwargs: Any) -> str:
        try:
            with anyio.fail_after(0.01):
                await anyio.sleep_forever()
        except TimeoutError:
            outcomes.append("timed out")
        await anyio.lowlevel.checkpoint()  # the sender's task is not cancelled
        return "recovered"

    signal = Signal()
    for _ in range(receiver_count):
        signal.connect(functools.partial(times_out), weak=False)
    results = await signal.send(None)
    assert [value for _, value in results] == ["recovered"] * receiver_count
    assert outcomes == ["timed out"] * receiver_count
    await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize("receiver_count", [1, 3])
async def test_receiver_move_on_after_binds_to_the_receiver(receiver_count: int) -> None:
    """anyio.move_on_after inside a receiver stops only that receiver's wait."""

    async def moves_on(sender: object, **kwargs: Any) -> bool:
        with anyio.move_on_after(0.01) as scope:
            await anyio.sleep_forever()
        await anyio.lowlevel.checkpoint()
        return scope.cancelled_caught

    signal = Signal()
    for _ in range(receiver_count):
        signal.connect(functools.partial(moves_on), weak=False)
    with anyio.CancelScope() as outer:
        results = await signal.send(None)
    assert not outer.cancelled_caught
    assert [value for _, value in results] == [True] * receiver_count


@pytest.mark.parametrize("receiver_count", [1, 3])
async def test_receiver_native_timeout_binds_to_the_receiver(receiver_count: int) -> None:
    """The backend's own timeout (asyncio.timeout, trio.fail_after) binds to the receiver."""
    expired = native_timeout_error()

    async def times_out(sender: object, **kwargs: Any) -> str:
        try:
            async with native_timeout(0.01):
                await anyio.sleep_forever()
        except expired:
            pass
        await anyio.lowlevel.checkpoint()
        return "recovered"

    signal = Signal()
    for _ in range(receiver_count):
        signal.connect(functools.partial(times_out), weak=False)
    results = await signal.send(None)
    assert [value for _, value in results] == ["recovered"] * receiver_count
    # The sender's own task can still wait: nothing leaked a cancellation into it.
    await anyio.lowlevel.checkpoint()


async def test_receiver_cancelling_itself_does_not_cancel_the_sender() -> None:
    """A receiver that cancels its own cancel scope leaves the sender and siblings running."""

    async def cancels_own_scope(sender: object, **kwargs: Any) -> str:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await anyio.sleep_forever()
        return "own scope"

    async def sibling(sender: object, **kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        return "sibling"

    signal = Signal()
    signal.connect(cancels_own_scope)
    signal.connect(sibling)
    assert await signal.send(None) == [(cancels_own_scope, "own scope"), (sibling, "sibling")]
