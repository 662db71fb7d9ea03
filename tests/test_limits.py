"""Timeouts per signal and per receiver, and a concurrency limit per signal."""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from helpers import no_unawaited_coroutines

from asyncsignals import Signal

pytestmark = pytest.mark.anyio


async def slow(sender: object, **kwargs: Any) -> str:
    await anyio.sleep(10)
    return "slow"  # pragma: no cover (always timed out)


async def quick(sender: object, **kwargs: Any) -> str:
    await anyio.lowlevel.checkpoint()
    return "quick"


@pytest.mark.parametrize("others", [0, 2], ids=["alone", "with others"])
async def test_signal_timeout_fails_the_send(others: int) -> None:
    """A receiver past the signal's timeout fails send with a TimeoutError naming it."""
    signal = Signal(name="timed", timeout=0.05)
    signal.connect(slow)
    cancelled: list[bool] = []

    async def waits(sender: object, **kwargs: Any) -> None:
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    for number in range(others):
        signal.connect(waits, dispatch_uid=number, timeout=10)
    with pytest.raises(TimeoutError) as caught:
        await signal.send(None)
    assert str(caught.value) == (
        f"receiver {__name__}.slow() of signal timed did not finish within 0.05 s"
    )
    assert caught.value.__notes__ == [f"raised by receiver {__name__}.slow() of signal timed"]
    assert cancelled == [True] * others


async def test_send_robust_returns_the_timeout_in_its_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In send_robust a timed-out receiver's result is its TimeoutError; the others finish."""
    signal = Signal(name="timed", timeout=0.05)
    signal.connect(slow)
    signal.connect(quick)
    with caplog.at_level(logging.ERROR, logger="asyncsignals"):
        results = await signal.send_robust(None)
    assert isinstance(results[0][1], TimeoutError)
    assert results[1] == (quick, "quick")
    assert "raised TimeoutError" in caplog.records[0].getMessage()


def returns_slow(sender: object, **kwargs: Any) -> Any:
    """A sync receiver that hands back an awaitable: awaited like an async receiver."""
    return slow(sender)


@pytest.mark.parametrize("others", [0, 1], ids=["alone", "with an async one"])
async def test_signal_timeout_bounds_an_awaitable_a_sync_receiver_returned(others: int) -> None:
    """The signal's timeout applies to what a sync receiver returned for the send to await."""
    signal = Signal(name="timed", timeout=0.05)
    signal.connect(returns_slow)
    if others:
        signal.connect(quick)
    with no_unawaited_coroutines():
        results = await signal.send_robust(None)
    assert isinstance(results[0][1], TimeoutError)
    assert results[1:] == [(quick, "quick")] * others


async def test_connection_timeout_overrides_the_signal_timeout() -> None:
    """connect(timeout=...) replaces the signal-wide timeout for that receiver."""
    signal = Signal(timeout=10)

    async def takes_a_while(sender: object, **kwargs: Any) -> str:
        await anyio.sleep(0.2)
        return "done"  # pragma: no cover (always timed out)

    signal.connect(takes_a_while, timeout=0.05)
    signal.connect(quick, timeout=5)
    results = await signal.send_robust(None)
    assert isinstance(results[0][1], TimeoutError)
    assert results[1] == (quick, "quick")


async def test_receiver_within_its_timeout_returns_normally() -> None:
    """A timeout that does not expire changes nothing."""
    signal = Signal(timeout=5)
    signal.connect(quick)
    assert await signal.send(None) == [(quick, "quick")]


async def test_sequential_hook_times_out_each_receiver() -> None:
    """In a sequential hook the timeout applies to each receiver in turn."""
    signal = Signal(concurrent=False, timeout=0.05)
    signal.connect(quick)
    signal.connect(slow)
    results = await signal.send_robust(None)
    assert results[0] == (quick, "quick")
    assert isinstance(results[1][1], TimeoutError)


def test_timeout_needs_an_async_receiver() -> None:
    """A sync receiver cannot be timed out: connect says so."""
    signal = Signal()

    def sync_receiver(sender: object, **kwargs: Any) -> None:
        pass

    with pytest.raises(TypeError, match="is not async, so it cannot be timed out"):
        signal.connect(sync_receiver, timeout=1)
    with pytest.raises(TypeError, match="is not async, so it cannot be timed out"):
        signal.connect(sync_receiver, timeout=1, to_thread=True)
    assert not signal.has_listeners()


@pytest.mark.parametrize("bad", [0, -1, "1", True, float("nan")])
def test_bad_timeouts_are_refused(bad: object) -> None:
    """A timeout must be a positive number of seconds."""
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        Signal(timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        Signal().connect(quick, timeout=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -2, 1.5, "3"])
def test_bad_concurrency_limits_are_refused(bad: object) -> None:
    """max_concurrency must be a positive int."""
    with pytest.raises(ValueError, match="max_concurrency must be a positive int"):
        Signal(max_concurrency=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["async", "to_thread"])
async def test_concurrency_limit_caps_running_receivers(kind: str) -> None:
    """With max_concurrency=2, never more than two receivers run at once, and all finish."""
    signal = Signal(max_concurrency=2)
    running = 0
    peak = 0

    async def tracked(sender: object, **kwargs: Any) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.01)
        running -= 1
        return peak

    def tracked_in_thread(sender: object, **kwargs: Any) -> int:
        return anyio.from_thread.run(tracked, sender)

    for number in range(6):
        if kind == "async":
            signal.connect(tracked, dispatch_uid=number)
        else:
            signal.connect(tracked_in_thread, dispatch_uid=number, to_thread=True)
    results = await signal.send(None)
    assert len(results) == 6
    assert peak == 2


async def test_concurrency_limit_is_shared_by_concurrent_sends() -> None:
    """The limit holds across sends: two sends of a max_concurrency=1 signal take turns."""
    signal = Signal(max_concurrency=1)
    running = 0
    peak = 0

    async def tracked(sender: object, **kwargs: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.01)
        running -= 1

    signal.connect(tracked)
    async with anyio.create_task_group() as task_group:
        for _ in range(3):
            task_group.start_soon(signal.send, None)
    assert peak == 1


async def test_cancelled_while_waiting_for_the_limit_leaves_nothing_behind() -> None:
    """A send cancelled while its receivers wait for capacity closes their coroutines."""
    signal = Signal(max_concurrency=1)
    holding = anyio.Event()

    async def holds(sender: object, **kwargs: Any) -> None:
        holding.set()
        await anyio.sleep_forever()

    signal.connect(holds)
    with no_unawaited_coroutines():
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(signal.send, None)
            await holding.wait()
            task_group.start_soon(signal.send, None)  # waits for the one token
            await anyio.wait_all_tasks_blocked()
            task_group.cancel_scope.cancel()


def test_limit_follows_the_event_loop() -> None:
    """A limited signal works in one event loop after another, asyncio then trio."""
    signal = Signal(max_concurrency=1)
    signal.connect(quick)
    signal.connect(quick, dispatch_uid="second")

    async def send() -> list[tuple[Any, Any]]:
        return await signal.send(None)

    for backend in ("asyncio", "trio", "asyncio"):
        assert [value for _, value in anyio.run(send, backend=backend)] == ["quick", "quick"]


@pytest.mark.parametrize("concurrent", [True, False])
async def test_to_thread_receivers_waiting_for_a_thread_hold_no_slot(concurrent: bool) -> None:
    """A to_thread receiver takes its slot once it has a worker thread, never while waiting.

    Otherwise senders holding every worker thread (send_sync from worker
    threads, as sync endpoints do) wait for slots that receivers waiting for
    those threads hold: nothing ever runs again.
    """
    signal = Signal(name="order_shipped", max_concurrency=2, concurrent=concurrent)
    audited: list[object] = []

    async def notify(sender: object, **kwargs: Any) -> None:
        await anyio.sleep(0.001)

    def audit(sender: object, **kwargs: Any) -> None:
        audited.append(sender)

    signal.connect(notify)
    signal.connect(audit, to_thread=True)
    threads = anyio.to_thread.current_default_thread_limiter().total_tokens
    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            for number in range(int(threads) + 1):
                task_group.start_soon(
                    functools.partial(
                        anyio.to_thread.run_sync, signal.send_sync, ("thread", number)
                    )
                )
                task_group.start_soon(signal.send, ("task", number))
    assert len(audited) == 2 * (int(threads) + 1)


@pytest.mark.parametrize("concurrent", [True, False])
async def test_nested_send_never_deadlocks_on_its_parents_slot(concurrent: bool) -> None:
    """A receiver of a max_concurrency=1 signal that sends the same signal runs the nested send."""
    signal = Signal(max_concurrency=1, concurrent=concurrent)
    depth: list[int] = []

    async def resends(sender: object, level: int = 0, **kwargs: Any) -> int:
        depth.append(level)
        await anyio.lowlevel.checkpoint()
        if level < 2:
            await signal.send(sender, level=level + 1)
        return level

    signal.connect(resends)
    with anyio.fail_after(2):
        await signal.send(None)
    assert depth == [0, 1, 2]


def test_concurrency_limit_holds_on_each_of_several_loops_at_once() -> None:
    """Two threads, each with its own event loop, each keep the signal's cap on their loop."""
    signal = Signal(max_concurrency=1)
    running = 0
    most = 0
    lock = threading.Lock()

    async def counts(sender: object, **kwargs: Any) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        await anyio.sleep(0.005)
        with lock:
            running -= 1

    signal.connect(counts)
    signal.connect(counts, dispatch_uid="second")
    signal.connect(counts, dispatch_uid="third")
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def loop_thread() -> None:
        async def sends() -> None:
            barrier.wait()
            for _ in range(10):
                await signal.send(None)

        try:
            anyio.run(sends)
        except BaseException as error:  # pragma: no cover (reported below)
            failures.append(error)

    threads = [threading.Thread(target=loop_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert failures == []
    # One at a time on each loop: two loops, so at most two at once in all.
    assert most <= 2


@pytest.mark.parametrize("attribute", ["timeout", "max_concurrency", "concurrent"])
def test_limits_and_modes_are_read_only(attribute: str) -> None:
    """timeout, max_concurrency and concurrent are fixed at construction."""
    signal = Signal(timeout=1.0, max_concurrency=2, concurrent=False)
    before = getattr(signal, attribute)
    with pytest.raises(AttributeError):
        setattr(signal, attribute, 3)
    assert getattr(signal, attribute) == before
    assert (signal.timeout, signal.max_concurrency, signal.concurrent) == (1.0, 2, False)


@pytest.mark.parametrize("bad", [True, False])
def test_bool_concurrency_limit_is_refused(bad: bool) -> None:
    """max_concurrency=True is not a count of 1: it is refused, like timeout=True."""
    with pytest.raises(ValueError, match="max_concurrency"):
        Signal(max_concurrency=bad)


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_concurrent_must_be_a_bool(bad: object) -> None:
    """concurrent= takes True or False only: anything else is refused at construction."""
    with pytest.raises(TypeError, match="concurrent"):
        Signal(concurrent=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("concurrent", [True, False])
async def test_a_free_slot_is_taken_without_a_checkpoint(concurrent: bool) -> None:
    """With a slot free, a limited send whose receiver never suspends runs even when cancelled."""
    ran: list[bool] = []

    async def never_suspends(sender: object, **kwargs: Any) -> str:
        ran.append(True)
        return "ran"

    signal = Signal(max_concurrency=1, concurrent=concurrent)
    signal.connect(never_suspends)
    with anyio.CancelScope() as scope:
        scope.cancel()
        results = await signal.send(None)
    assert not scope.cancelled_caught
    assert results == [(never_suspends, "ran")]


async def test_tasks_a_receiver_starts_do_not_keep_its_slot() -> None:
    """Sends from tasks a receiver started wait their turn once that receiver has ended."""
    signal = Signal(max_concurrency=1)
    running = 0
    most = 0

    async def receiver(sender: object, spawn: Any = None, **kwargs: Any) -> None:
        nonlocal running, most
        if spawn is not None:
            for _ in range(4):
                spawn.start_soon(functools.partial(signal.send, None))
            return
        running += 1
        most = max(most, running)
        await anyio.sleep(0.01)
        running -= 1

    signal.connect(receiver)
    async with anyio.create_task_group() as application:
        await signal.send(None, spawn=application)
    assert most == 1
