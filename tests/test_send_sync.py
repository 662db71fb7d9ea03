"""send_sync and send_robust_sync: sending from synchronous code."""

from __future__ import annotations

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
