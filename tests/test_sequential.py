"""Signal(concurrent=False): a sequential hook, every receiver after the previous one."""

from __future__ import annotations

import logging
import threading
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from asyncsignals import Signal

pytestmark = pytest.mark.anyio


class HookError(Exception):
    pass


def make_hook(log: list[str]) -> Signal:
    """A sequential signal with sync, async, to_thread and awaitable-returning receivers."""
    hook = Signal(concurrent=False, name="hook")

    def first(sender: object, **kwargs: Any) -> str:
        log.append("first")
        return "first"

    async def second(sender: object, **kwargs: Any) -> str:
        await anyio.sleep(0.01)  # long enough for anything concurrent to overtake it
        log.append("second")
        return "second"

    def third(sender: object, **kwargs: Any) -> str:
        log.append("third")
        return "third"

    async def awaited_later() -> str:
        await anyio.lowlevel.checkpoint()
        log.append("fourth")
        return "fourth"

    def fourth(sender: object, **kwargs: Any) -> object:
        return awaited_later()

    for receiver in (first, second, third, fourth):
        hook.connect(receiver, weak=False, to_thread=receiver is third)
    return hook


@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_receivers_run_one_after_another_in_connection_order(method: str) -> None:
    """Each receiver starts only after the previous one, async and threaded ones too."""
    log: list[str] = []
    hook = make_hook(log)
    results = await getattr(hook, method)(None)
    assert log == ["first", "second", "third", "fourth"]
    assert [value for _, value in results] == ["first", "second", "third", "fourth"]


async def test_first_failure_stops_the_rest() -> None:
    """In send, the first failure is raised with its note and later receivers never run."""
    log: list[str] = []
    hook = Signal(concurrent=False, name="hook")

    async def fails(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise HookError("stop")

    def later(sender: object, **kwargs: Any) -> None:
        log.append("later")

    hook.connect(fails)
    hook.connect(later)
    with pytest.raises(HookError) as caught:
        await hook.send(None)
    assert log == []
    assert caught.value.__notes__ == [
        f"raised by receiver {__name__}.test_first_failure_stops_the_rest.<locals>.fails() "
        "of signal hook"
    ]


async def test_send_robust_returns_each_failure_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In send_robust a failure is that receiver's result, logged, and the next one runs."""
    hook = Signal(concurrent=False, name="hook")

    async def fails(sender: object, **kwargs: Any) -> None:
        raise HookError("stop")

    def later(sender: object, **kwargs: Any) -> str:
        return "ran"

    hook.connect(fails)
    hook.connect(later)
    with caplog.at_level(logging.ERROR, logger="asyncsignals"):
        results = await hook.send_robust(None)
    assert isinstance(results[0][1], HookError)
    assert results[1] == (later, "ran")
    assert [record.exc_info[1] for record in caplog.records if record.exc_info] == [results[0][1]]


async def test_cancellation_stops_the_hook_midway() -> None:
    """Cancelling the caller cancels the running receiver; the rest never start."""
    log: list[str] = []
    started = anyio.Event()
    hook = Signal(concurrent=False)

    async def waits(sender: object, **kwargs: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    def later(sender: object, **kwargs: Any) -> None:
        log.append("later")

    hook.connect(waits)
    hook.connect(later)
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(hook.send, None)
        await started.wait()
        task_group.cancel_scope.cancel()
    assert log == []


def test_send_sync_runs_an_async_hook_in_order_on_a_temporary_loop() -> None:
    """From a thread with no event loop, send_sync keeps the order of a sequential hook."""
    log: list[str] = []
    hook = make_hook(log)
    results: list[list[tuple[Any, Any]]] = []
    thread = threading.Thread(target=lambda: results.append(hook.send_sync(None)))
    thread.start()
    thread.join(5)
    assert log == ["first", "second", "third", "fourth"]
    assert [value for _, value in results[0]] == ["first", "second", "third", "fourth"]


async def test_send_sync_from_a_worker_thread_runs_the_hook_on_the_loop() -> None:
    """From an anyio worker thread, send_sync runs a sequential async hook on the loop."""
    log: list[str] = []
    hook = make_hook(log)
    results = await anyio.to_thread.run_sync(hook.send_sync, None)
    assert [value for _, value in results] == ["first", "second", "third", "fourth"]


async def test_sync_only_hook_sends_without_yielding() -> None:
    """A sequential signal with only sync receivers still completes without yielding."""
    hook = Signal(concurrent=False)
    hook.connect(lambda sender, **kwargs: "sync", weak=False)
    other_ran = False

    async def other() -> None:
        nonlocal other_ran
        other_ran = True

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(other)
        results = await hook.send(None)
        assert not other_ran
    assert [value for _, value in results] == ["sync"]


async def test_receiver_collected_before_its_turn_is_skipped() -> None:
    """A weakly held receiver collected while the hook runs is silently left out."""
    hook = Signal(concurrent=False)

    class Listener:
        async def __call__(self, sender: object, **kwargs: Any) -> str:
            return "listener"

    listeners = [Listener()]

    async def drops_the_listener(sender: object, **kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        listeners.clear()  # the last strong reference: collected at once
        return "dropped"

    hook.connect(drops_the_listener)
    hook.connect(listeners[0])
    results = await hook.send(None)
    assert results == [(drops_the_listener, "dropped")]


async def test_weakly_held_bound_method_runs_in_its_turn() -> None:
    """A bound method, held by a weak reference to its object, runs in connection order."""
    log: list[str] = []
    hook = Signal(concurrent=False)

    class Audit:
        async def record(self, sender: object, **kwargs: Any) -> str:
            await anyio.lowlevel.checkpoint()
            log.append("audit")
            return "recorded"

    def after(sender: object, **kwargs: Any) -> str:
        log.append("after")
        return "after"

    audit = Audit()
    hook.connect(audit.record)
    hook.connect(after)
    results = await hook.send(None)
    assert results == [(audit.record, "recorded"), (after, "after")]
    assert log == ["audit", "after"]
