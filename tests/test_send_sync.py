"""send_sync and send_robust_sync: sending from synchronous code."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest
from helpers import join_thread, no_unawaited_coroutines, start_thread

from asyncsignals import Signal

pytestmark = pytest.mark.anyio


class ReceiverError(Exception):
    pass


def sync_receiver(sender: object, **kwargs: Any) -> tuple[str, int]:
    return ("sync", threading.get_ident())


async def async_receiver(sender: object, **kwargs: Any) -> tuple[str, int]:
    await anyio.lowlevel.checkpoint()
    return ("async", threading.get_ident())


async def other_async_receiver(sender: object, **kwargs: Any) -> tuple[str, int]:
    await anyio.lowlevel.checkpoint()
    return ("other", threading.get_ident())


def threaded_receiver(sender: object, **kwargs: Any) -> tuple[str, int]:
    return ("thread", threading.get_ident())


def returns_coroutine(sender: object, **kwargs: Any) -> object:
    return async_receiver(sender)


async def failing_async(sender: object, **kwargs: Any) -> None:
    await anyio.lowlevel.checkpoint()
    raise ReceiverError("async")


def make_signal(*receivers: Any) -> Signal:
    signal = Signal(name="synced")
    for receiver in receivers:
        signal.connect(receiver, to_thread=receiver is threaded_receiver)
    return signal


@pytest.mark.parametrize("method", ["send_sync", "send_robust_sync"])
def test_from_thread_without_loop_runs_async_receivers_on_temporary_loop(method: str) -> None:
    """Without an event loop, async receivers run on a temporary one in the calling thread."""
    signal = make_signal(sync_receiver, async_receiver, threaded_receiver, other_async_receiver)
    here = threading.get_ident()
    results = getattr(signal, method)(None)
    assert [value for _, value in results] == [
        ("sync", here),
        ("async", here),
        ("thread", here),
        ("other", here),
    ]


def test_from_thread_without_loop_awaits_awaitable_of_sync_receiver() -> None:
    """A sync receiver's awaitable is awaited on the temporary loop."""
    signal = make_signal(returns_coroutine)
    with no_unawaited_coroutines():
        results = signal.send_sync(None)
    assert results == [(returns_coroutine, ("async", threading.get_ident()))]


def test_without_receivers_returns_empty_list() -> None:
    """send_sync with nothing connected returns []."""
    assert Signal().send_sync(None) == []
    assert Signal().send_robust_sync(None) == []


def test_payload_checked_before_any_receiver() -> None:
    """send_sync checks the reserved name and providing_args before calling anything."""
    calls: list[str] = []
    signal = Signal(providing_args=["order"])
    signal.connect(lambda **kwargs: calls.append("called"), weak=False)
    with pytest.raises(TypeError, match="reserved"):
        signal.send_sync(None, signal=1, order=1)
    with pytest.raises(TypeError, match="missing"):
        signal.send_robust_sync(None)
    assert calls == []


def test_send_sync_fails_fast_and_send_robust_sync_returns_errors() -> None:
    """send_sync raises an async receiver's error; send_robust_sync returns it in its slot."""
    signal = make_signal(sync_receiver, failing_async)
    with pytest.raises(ReceiverError) as caught:
        signal.send_sync(None)
    assert caught.value.__notes__[0].endswith("of signal synced")
    results = signal.send_robust_sync(None)
    assert isinstance(results[1][1], ReceiverError)


@pytest.mark.parametrize("method", ["send_sync", "send_robust_sync"])
async def test_from_worker_thread_runs_async_receivers_on_the_loop(method: str) -> None:
    """From an anyio worker thread, async receivers run back on the event loop's thread."""
    signal = make_signal(sync_receiver, async_receiver, threaded_receiver, other_async_receiver)
    loop_thread = threading.get_ident()

    def in_worker() -> tuple[int, list[Any]]:
        return threading.get_ident(), getattr(signal, method)(None)

    worker_thread, results = await anyio.to_thread.run_sync(in_worker)
    assert worker_thread != loop_thread
    assert [value for _, value in results] == [
        ("sync", worker_thread),
        ("async", loop_thread),
        ("thread", worker_thread),
        ("other", loop_thread),
    ]


async def test_from_worker_thread_receiver_error_is_not_mistaken_for_no_loop() -> None:
    """An async receiver raising NoEventLoopError is raised, not retried on a temporary loop."""
    calls: list[int] = []

    async def raises_no_loop(sender: object, **kwargs: Any) -> None:
        calls.append(threading.get_ident())
        raise anyio.NoEventLoopError("from the receiver")

    signal = make_signal(raises_no_loop)
    with pytest.raises(anyio.NoEventLoopError, match="from the receiver"):
        await anyio.to_thread.run_sync(signal.send_sync, None)
    assert calls == [threading.get_ident()]


@pytest.mark.parametrize("method", ["send_sync", "send_robust_sync"])
async def test_on_loop_thread_with_only_sync_receivers_works(method: str) -> None:
    """On the loop's own thread send_sync works when only sync receivers are connected."""
    signal = make_signal(sync_receiver, threaded_receiver)
    here = threading.get_ident()
    results = getattr(signal, method)(None)
    # to_thread receivers are simply called in the calling thread.
    assert [value for _, value in results] == [("sync", here), ("thread", here)]


@pytest.mark.parametrize("method", ["send_sync", "send_robust_sync"])
async def test_on_loop_thread_with_async_receiver_raises_before_any_receiver(
    method: str,
) -> None:
    """On the loop's thread an async receiver makes send_sync raise RuntimeError, running none."""
    calls: list[str] = []

    def recording(sender: object, **kwargs: Any) -> None:
        calls.append("sync")

    signal = make_signal(recording, async_receiver)
    with pytest.raises(RuntimeError, match=r"async_receiver\(\).*await signal.send"):
        getattr(signal, method)(None)
    assert calls == []


async def test_on_loop_thread_ignores_collected_async_receiver() -> None:
    """A collected async receiver does not stop send_sync on the loop's thread."""
    signal = Signal()

    async def transient(sender: object, **kwargs: Any) -> None:
        pass  # pragma: no cover

    signal.connect(sync_receiver)
    signal.connect(transient)
    del transient
    assert [value[0] for _, value in signal.send_sync(None)] == ["sync"]


async def test_on_loop_thread_awaitable_from_sync_receiver_raises_and_is_closed() -> None:
    """On the loop's thread a sync receiver's awaitable is a RuntimeError, closed not leaked."""
    signal = make_signal(returns_coroutine)
    with no_unawaited_coroutines(), pytest.raises(RuntimeError, match="returned an awaitable"):
        signal.send_sync(None)


def test_from_plain_thread_while_another_loop_runs() -> None:
    """A plain thread uses its own temporary loop even while another thread runs a loop."""
    signal = make_signal(async_receiver)
    outcome: list[Any] = []

    def in_thread() -> None:
        outcome.append((threading.get_ident(), signal.send_sync(None)))

    async def main() -> None:
        thread = start_thread(in_thread)
        await join_thread(thread)

    anyio.run(main)
    [(thread_id, results)] = outcome
    assert results == [(async_receiver, ("async", thread_id))]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
async def test_from_worker_thread_interrupt_reaches_the_caller(
    interrupt: type[BaseException],
) -> None:
    """An async receiver's KeyboardInterrupt or SystemExit reaches the caller of send_sync."""

    async def interrupts(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise interrupt

    signal = Signal()
    signal.connect(interrupts)
    caught: list[BaseException] = []

    def in_worker() -> None:
        try:
            signal.send_sync(None)
        except interrupt as error:
            caught.append(error)

    await anyio.to_thread.run_sync(in_worker)
    assert [type(error) for error in caught] == [interrupt]


@pytest.mark.parametrize("concurrent", [True, False])
async def test_from_worker_thread_to_thread_receivers_run_in_the_calling_thread(
    concurrent: bool,
) -> None:
    """send_sync calls to_thread receivers in the calling thread, sequential signals too."""
    signal = Signal(concurrent=concurrent)
    signal.connect(threaded_receiver, to_thread=True)
    signal.connect(async_receiver)
    signal.connect(sync_receiver)
    loop_thread = threading.get_ident()

    def in_worker() -> tuple[int, list[Any]]:
        return threading.get_ident(), signal.send_sync(None)

    worker_thread, results = await anyio.to_thread.run_sync(in_worker)
    assert [value for _, value in results] == [
        ("thread", worker_thread),
        ("async", loop_thread),
        ("sync", worker_thread),
    ]


@pytest.mark.parametrize("concurrent", [True, False])
def test_without_loop_to_thread_receivers_run_in_the_calling_thread(concurrent: bool) -> None:
    """From a thread with no loop, to_thread receivers run in the calling thread too."""
    signal = Signal(concurrent=concurrent)
    signal.connect(threaded_receiver, to_thread=True)
    signal.connect(async_receiver)
    results = signal.send_sync(None)
    assert [value for _, value in results] == [
        ("thread", threading.get_ident()),
        ("async", threading.get_ident()),
    ]


@pytest.mark.parametrize("concurrent", [True, False])
def test_send_sync_keeps_the_threads_current_event_loop(concurrent: bool) -> None:
    """A thread's current (not running) event loop is still current after send_sync."""
    signal = Signal(concurrent=concurrent)
    signal.connect(async_receiver)
    outcome: list[object] = []

    def in_thread() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            signal.send_sync(None)
            outcome.append(asyncio.get_event_loop() is loop)
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(5)
    assert outcome == [True]


def test_sequential_receiver_collected_before_its_turn_is_skipped() -> None:
    """In send_sync of a sequential signal, a receiver collected before its turn is left out."""
    hook = Signal(concurrent=False)

    class Listener:
        async def __call__(self, sender: object, **kwargs: Any) -> str:
            return "listener"  # pragma: no cover (collected before its turn)

    listeners = [Listener()]

    async def drops_the_listener(sender: object, **kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        listeners.clear()  # the last strong reference: collected at once
        return "dropped"

    hook.connect(drops_the_listener)
    hook.connect(listeners[0])
    assert hook.send_sync(None) == [(drops_the_listener, "dropped")]


@pytest.mark.parametrize("concurrent", [True, False])
async def test_cancelling_a_worker_threads_caller_cancels_its_send_sync(concurrent: bool) -> None:
    """Cancelling the task that waits on a worker thread cancels the async receivers it sent to."""
    cancelled: list[bool] = []
    started = threading.Event()

    async def waits(sender: object, **kwargs: Any) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append(True)

    signal = Signal(concurrent=concurrent)
    signal.connect(waits)
    outcome: list[BaseException] = []

    def in_worker() -> None:
        try:
            signal.send_sync(None)
        except BaseException as error:
            outcome.append(error)
            raise

    with anyio.move_on_after(0.05) as scope:
        await anyio.to_thread.run_sync(in_worker)
    assert scope.cancelled_caught
    assert started.is_set()
    assert cancelled == [True]
    assert len(outcome) == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("concurrent", [True, False])
async def test_from_an_asyncio_to_thread_thread_runs_on_a_temporary_loop(concurrent: bool) -> None:
    """From a thread asyncio.to_thread started (no anyio token), async receivers still run."""
    signal = Signal(concurrent=concurrent)
    signal.connect(async_receiver)
    loop_thread = threading.get_ident()

    def in_thread() -> tuple[int, list[Any]]:
        return threading.get_ident(), signal.send_sync(None)

    with no_unawaited_coroutines():
        thread, results = await asyncio.to_thread(in_thread)
    assert thread != loop_thread
    assert [value for _, value in results] == [("async", thread)]


@pytest.mark.parametrize("concurrent", [True, False])
def test_a_temporary_loop_that_cannot_start_leaves_no_coroutine_unawaited(
    concurrent: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the temporary loop fails to start, the receivers' coroutines are closed, not dropped."""
    signal = Signal(concurrent=concurrent)
    signal.connect(async_receiver)

    def refuses(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no loop for you")

    monkeypatch.setattr(anyio, "run", refuses)
    with no_unawaited_coroutines(), pytest.raises(RuntimeError, match="no loop for you"):
        signal.send_sync(None)
