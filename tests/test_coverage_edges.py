"""Edge cases of dispatch: receivers dying mid-send, repeated cancellation, nested failures."""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
from collections.abc import Generator
from typing import Any

import anyio
import anyio.from_thread
import pytest
from helpers import no_unawaited_coroutines

from asyncsignals import Signal

pytestmark = pytest.mark.anyio


class ReceiverError(Exception):
    pass


class CustomAwaitable:
    """An awaitable without close()."""

    def __await__(self) -> Generator[Any, Any, str]:
        yield from anyio.lowlevel.checkpoint().__await__()
        return "custom"  # pragma: no cover


async def test_receiver_collected_during_send_is_skipped() -> None:
    """A weakly held receiver collected by an earlier receiver of the same send is skipped."""
    holder: list[Any] = []

    def doomed(sender: object, **kwargs: Any) -> str:
        return "doomed"  # pragma: no cover

    def kills_doomed(sender: object, **kwargs: Any) -> str:
        holder.clear()
        gc.collect()
        return "killer"

    holder.append(doomed)
    signal = Signal()
    signal.connect(kills_doomed)
    signal.connect(doomed)
    del doomed
    assert await signal.send(None) == [(kills_doomed, "killer")]


async def test_failure_in_nested_send_of_same_signal_is_noted_once() -> None:
    """An error passing through the same receiver of the same signal twice gets one note."""
    signal = Signal(name="nested")

    async def recurse(sender: object, depth: int) -> None:
        if depth == 0:
            raise ReceiverError("deep")
        await signal.send(sender, depth=depth - 1)

    signal.connect(recurse)
    with pytest.raises(ReceiverError) as caught:
        await signal.send(None, depth=2)
    assert len(caught.value.__notes__) == 1
    assert "recurse()" in caught.value.__notes__[0]


async def test_failing_sync_receiver_after_threaded_and_custom_awaitable() -> None:
    """A sync failure after a to_thread receiver and a custom awaitable leaves nothing behind."""

    def threaded(sender: object, **kwargs: Any) -> None:
        pass  # pragma: no cover

    def returns_custom(sender: object, **kwargs: Any) -> CustomAwaitable:
        return CustomAwaitable()

    def fails(sender: object, **kwargs: Any) -> None:
        raise ReceiverError

    signal = Signal()
    signal.connect(threaded, to_thread=True)
    signal.connect(returns_custom)
    signal.connect(fails)
    with no_unawaited_coroutines(), pytest.raises(ReceiverError):
        await signal.send(None)


@pytest.mark.parametrize("receiver_count", [1, 2])
@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_receiver_failing_while_caller_cancels_raises_the_cancellation(
    receiver_count: int, method: str
) -> None:
    """A receiver failing as the caller cancels: both sends raise the cancellation itself."""
    started = anyio.Event()

    async def fails_in_cleanup(sender: object, **kwargs: Any) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            raise KeyError("cleanup")

    async def waits(sender: object, **kwargs: Any) -> None:
        await anyio.sleep_forever()

    signal = Signal()
    signal.connect(fails_in_cleanup)
    if receiver_count == 2:
        signal.connect(waits)
    outcome: list[BaseException] = []

    async def sender() -> None:
        try:
            await getattr(signal, method)(None)
        except BaseException as error:
            outcome.append(error)
            raise

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(sender)
        await started.wait()
        task_group.cancel_scope.cancel()
    assert [type(error) for error in outcome] == [anyio.get_cancelled_exc_class()]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_receiver_cancelling_its_own_asyncio_task_is_not_swallowed() -> None:
    """On asyncio, a receiver whose own task is cancelled natively propagates the cancellation."""

    async def cancels_itself(sender: object, **kwargs: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)

    async def waits(sender: object, **kwargs: Any) -> None:
        await anyio.sleep_forever()

    signal = Signal()
    signal.connect(cancels_itself)
    signal.connect(waits)
    with pytest.raises(asyncio.CancelledError):
        await signal.send_robust(None)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("threaded", [False, True], ids=["async", "to-thread"])
async def test_repeated_native_cancellation_still_waits_for_receivers(threaded: bool) -> None:
    """On asyncio, cancelling the sending task twice still waits for every receiver to end."""
    started = anyio.Event()
    release = threading.Event()
    finished: list[str] = []

    async def slow_cleanup(sender: object, **kwargs: Any) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(release.wait, 5)
            finished.append("async")

    def blocking(sender: object, **kwargs: Any) -> None:
        anyio.from_thread.run_sync(started.set)
        release.wait(5)
        finished.append("thread")

    async def waits(sender: object, **kwargs: Any) -> None:
        await anyio.sleep_forever()

    signal = Signal()
    if threaded:
        signal.connect(blocking, to_thread=True)
    else:
        signal.connect(slow_cleanup)
        signal.connect(waits)
    sending = asyncio.ensure_future(signal.send(None))
    await started.wait()
    sending.cancel()
    await anyio.wait_all_tasks_blocked()
    sending.cancel()
    await anyio.wait_all_tasks_blocked()
    assert not sending.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.shield(sending)
    assert finished == ["thread" if threaded else "async"]


async def test_cancel_after_failure_still_waits_for_thread_receiver() -> None:
    """A send that failed and is then cancelled waits for its to_thread receiver, then cancels."""
    started = anyio.Event()
    release = threading.Event()
    returned = threading.Event()
    outcome: list[bool] = []
    scopes: list[anyio.CancelScope] = []

    def blocking(sender: object, **kwargs: Any) -> None:
        anyio.from_thread.run_sync(started.set)
        release.wait(5)
        returned.set()

    async def fails(sender: object, **kwargs: Any) -> None:
        await started.wait()
        raise ReceiverError

    signal = Signal()
    signal.connect(blocking, to_thread=True)
    signal.connect(fails)

    async def sender() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            try:
                await signal.send(None)
            finally:
                outcome.append(returned.is_set())

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(sender)
        await started.wait()
        await anyio.wait_all_tasks_blocked()
        scopes[0].cancel()
        await anyio.wait_all_tasks_blocked()
        assert outcome == []
        release.set()
    assert outcome == [True]
    # The caller's cancellation wins over the failure that came first.
    assert scopes[0].cancelled_caught


def test_partial_keeps_partial_in_name() -> None:
    """functools.partial receivers are named after the function they wrap."""
    signal = Signal(name="named")

    def base(sender: object, **kwargs: Any) -> None:
        raise ReceiverError

    signal.connect(functools.partial(base), weak=False)
    with pytest.raises(ReceiverError) as caught:
        signal.send_sync(None)
    assert "functools.partial of " in caught.value.__notes__[0]


def test_a_lone_receiver_collected_after_its_lookup_is_skipped() -> None:
    """A lone weak receiver that died after the send's lookup (another thread let go): skipped.

    Only another thread can drop it between the two, so the send's step
    after the lookup is called here with a dead reference.
    """
    from asyncsignals._connections import ASYNC, WEAK, WEAK_METHOD
    from asyncsignals._receivers import reference
    from asyncsignals._run import run_solo

    class Listener:
        async def on_event(self, sender: object, **kwargs: Any) -> str:
            return "never"  # pragma: no cover

    async def doomed(sender: object, **kwargs: Any) -> str:
        return "never"  # pragma: no cover

    function_ref = reference(doomed, lambda _: None)
    method_ref = reference(Listener().on_event, lambda _: None)
    del doomed
    gc.collect()
    signal = Signal()
    for target, hold in ((function_ref, WEAK), (method_ref, WEAK_METHOD)):
        assert run_solo(signal, (target, hold, ASYNC, True, 0, None), None, {}, False) == []


async def test_a_sequential_send_skips_a_bound_method_whose_object_dies_before_its_turn() -> None:
    """Weakly held, a bound method is skipped once its object is collected mid-send."""
    signal = Signal(concurrent=False)

    class Holder:
        async def method(self, sender: object, **kwargs: Any) -> str:
            return "method"

    holders = [Holder()]

    async def first(sender: object, **kwargs: Any) -> str:
        holders.clear()  # the object's last reference
        gc.collect()
        return "first"

    async def last(sender: object, **kwargs: Any) -> str:
        return "last"

    signal.connect(first, weak=False)
    signal.connect(holders[0].method)
    signal.connect(last, weak=False)
    assert await signal.send(None) == [(first, "first"), (last, "last")]


def test_the_bridge_s_cache_of_publishers_stays_bounded() -> None:
    """Publishers restarted under new names do not grow the decoder's cache of origins."""
    from asyncsignals import _redis_wire
    from asyncsignals.redis import Origin

    most = _redis_wire._MOST_ORIGINS  # pyright: ignore[reportPrivateUsage]
    for number in range(most + 10):
        origin = _redis_wire._origin("app", f"worker-{number}")  # pyright: ignore[reportPrivateUsage]
        assert origin == Origin("app", f"worker-{number}")
    assert len(_redis_wire._origins) <= most  # pyright: ignore[reportPrivateUsage]
