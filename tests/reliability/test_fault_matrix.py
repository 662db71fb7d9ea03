"""Every fault, every receiver kind, both send methods: the documented outcome, nothing left.

Each case connects an async ``sibling`` receiver (it waits until released,
and releases a blocked ``to_thread`` receiver when it is cancelled) and then
the ``faulty`` receiver of the given kind, sends once, and checks the
outcome, that the sibling finished only when it should have, that no task,
busy worker thread or un-awaited coroutine is left, and that a ``to_thread``
receiver had returned before the send ended.

Outcomes (``robust``: ``send_robust``; "thread": a ``to_thread`` receiver):

- caller cancelled (``CancelScope.cancel``), sync/async/thread: the
  cancellation propagates, from both methods.
- caller timeout (``asyncio.timeout`` / ``trio.fail_after``),
  sync/async/thread: the backend's timeout error, from both.
- receiver never returns, under ``anyio.fail_after``, sync/async:
  ``TimeoutError``, from both.
- receiver raises, sync/async/thread: ``send`` raises the error with a note
  naming the receiver and the signal; ``send_robust`` returns it in the
  receiver's slot and logs it, and the sibling completes.
- receiver cancels its own scope, async: normal results, from both.
- receiver cancelled from inside (asyncio only: its task cancels itself, or
  it raises ``CancelledError``), sync/async/thread: ``CancelledError``
  propagates, from both.
- receiver raises while being cancelled by its caller, async/thread:
  ``send`` raises the error (it beats the cancellation, as in a task group);
  ``send_robust`` lets the cancellation propagate.
- ``KeyboardInterrupt`` / ``SystemExit``, sync/async/thread: raised as
  itself, from both.

In every case that does not return, the sibling did not complete; when the
caller was cancelled, a thread receiver had returned before the send ended.

Cells left out: a sync receiver runs to completion before anything can
cancel it (so it cannot raise while being cancelled, or cancel an own scope
that matters); a ``to_thread`` receiver that never returns keeps the send
waiting by design (a cancelled send waits for its thread, shown by the
"caller" rows); trio has no way to cancel a task from inside it but its own
scopes ("cancels its own scope").
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pytest
from helpers import (
    TEST_TIMEOUT,
    native_timeout,
    native_timeout_error,
    no_unawaited_coroutines,
    running_tasks,
)

from asyncsignals import Signal

# How long a caller's timeout gives the receivers, all of which have started
# long before it expires.
DEADLINE = 0.05


class ReceiverError(Exception):
    """What a faulty receiver raises."""


class Fault(enum.Enum):
    CALLER_CANCELLED = "caller-cancelled"
    CALLER_TIMEOUT = "caller-timeout"
    NEVER_RETURNS = "never-returns"
    RAISES = "raises"
    CANCELS_OWN_SCOPE = "cancels-own-scope"
    CANCELLED_INSIDE = "cancelled-inside"
    RAISES_WHILE_CANCELLED = "raises-while-cancelled"
    KEYBOARD_INTERRUPT = "keyboard-interrupt"
    SYSTEM_EXIT = "system-exit"


class Kind(enum.Enum):
    SYNC = "sync"
    ASYNC = "async"
    THREAD = "thread"


ALL_KINDS = frozenset(Kind)
KINDS: dict[Fault, frozenset[Kind]] = {
    Fault.CALLER_CANCELLED: ALL_KINDS,
    Fault.CALLER_TIMEOUT: ALL_KINDS,
    Fault.NEVER_RETURNS: frozenset({Kind.SYNC, Kind.ASYNC}),
    Fault.RAISES: ALL_KINDS,
    Fault.CANCELS_OWN_SCOPE: frozenset({Kind.ASYNC}),
    Fault.CANCELLED_INSIDE: ALL_KINDS,
    Fault.RAISES_WHILE_CANCELLED: frozenset({Kind.ASYNC, Kind.THREAD}),
    Fault.KEYBOARD_INTERRUPT: ALL_KINDS,
    Fault.SYSTEM_EXIT: ALL_KINDS,
}
ASYNCIO_ONLY = frozenset({Fault.CANCELLED_INSIDE})
# Faults after which the caller is cancelled while the receivers run.
CANCELLING = frozenset(
    {
        Fault.CALLER_CANCELLED,
        Fault.CALLER_TIMEOUT,
        Fault.NEVER_RETURNS,
        Fault.RAISES_WHILE_CANCELLED,
    }
)


def cases() -> list[Any]:
    """Every applicable (backend, method, fault, kind) cell of the matrix."""
    return [
        pytest.param(
            backend, method, fault, kind, id=f"{backend}-{method}-{fault.value}-{kind.value}"
        )
        for backend in ("asyncio", "trio")
        for method in ("send", "send_robust")
        for fault in Fault
        if not (backend == "trio" and fault in ASYNCIO_ONLY)
        for kind in Kind
        if kind in KINDS[fault]
    ]


@dataclass
class Run:
    """The state one case shares between its receivers and its caller."""

    fault: Fault
    robust: bool
    started: anyio.Event = field(default_factory=anyio.Event)
    sibling_started: anyio.Event = field(default_factory=anyio.Event)
    release_sibling: anyio.Event = field(default_factory=anyio.Event)
    release_thread: threading.Event = field(default_factory=threading.Event)
    events: list[str] = field(default_factory=list)

    async def sibling(self, sender: object, **kwargs: Any) -> str:
        """Waits until released; when cancelled, releases a blocked thread receiver."""
        self.sibling_started.set()
        try:
            await self.release_sibling.wait()
        except anyio.get_cancelled_exc_class():
            self.events.append("sibling cancelled")
            self.release_thread.set()
            raise
        self.events.append("sibling completed")
        return "sibling"

    def faulty(self, kind: Kind) -> Callable[..., Any]:
        """The faulty receiver of this kind."""
        if kind is Kind.ASYNC:
            return self.faulty_async
        return self.faulty_sync if kind is Kind.SYNC else self.faulty_thread

    def faulty_sync(self, sender: object, **kwargs: Any) -> str:
        """A sync receiver with the case's fault, run inline on the loop's thread."""
        self.started.set()
        if self.fault is Fault.RAISES and self.robust:
            self.release_sibling.set()
        self.raise_fault()
        self.events.append("faulty returned")
        return "faulty"

    def faulty_thread(self, sender: object, **kwargs: Any) -> str:
        """A ``to_thread`` receiver with the case's fault."""
        anyio.from_thread.run_sync(self.started.set)
        if self.fault is Fault.RAISES and self.robust:
            anyio.from_thread.run_sync(self.release_sibling.set)
        if self.fault in CANCELLING:
            # Uninterruptible: it returns only once the sibling was cancelled.
            assert self.release_thread.wait(TEST_TIMEOUT)
        self.events.append("faulty returned")
        if self.fault is Fault.RAISES_WHILE_CANCELLED:
            raise ReceiverError("raised while cancelled")
        self.raise_fault()
        return "faulty"

    async def faulty_async(self, sender: object, **kwargs: Any) -> str:
        """An async receiver with the case's fault."""
        self.started.set()
        await anyio.lowlevel.checkpoint()
        if self.fault is Fault.RAISES and self.robust:
            self.release_sibling.set()
        if self.fault is Fault.CANCELS_OWN_SCOPE:
            with anyio.CancelScope() as scope:
                scope.cancel()
                await anyio.sleep_forever()
            self.release_sibling.set()
            return "own scope cancelled"
        if self.fault is Fault.CANCELLED_INSIDE:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await anyio.lowlevel.checkpoint()
        if self.fault in CANCELLING:
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                self.events.append("faulty cancelled")
                if self.fault is Fault.RAISES_WHILE_CANCELLED:
                    raise ReceiverError("raised while cancelled") from None
                raise
        self.raise_fault()
        return "faulty"

    def raise_fault(self) -> None:
        """Raise what the case's fault raises, if it raises at once."""
        if self.fault is Fault.RAISES:
            raise ReceiverError("receiver failed")
        if self.fault is Fault.KEYBOARD_INTERRUPT:
            raise KeyboardInterrupt
        if self.fault is Fault.SYSTEM_EXIT:
            raise SystemExit(3)
        if self.fault is Fault.CANCELLED_INSIDE:
            raise asyncio.CancelledError


@dataclass
class Outcome:
    """How the send ended, seen from its caller."""

    results: list[tuple[Any, Any]] | None = None
    raised: BaseException | None = None
    cancelled_caught: bool = False


async def call(signal: Signal, run: Run, outcome: Outcome, scope: anyio.CancelScope) -> None:
    """The caller: send inside the case's cancel scope or timeout; record how it ended."""
    send = signal.send_robust if run.robust else signal.send
    try:
        with scope:
            if run.fault is Fault.CALLER_TIMEOUT:
                async with native_timeout(DEADLINE):
                    outcome.results = await send(None)
            elif run.fault is Fault.NEVER_RETURNS:
                with anyio.fail_after(DEADLINE):
                    outcome.results = await send(None)
            else:
                outcome.results = await send(None)
        run.events.append("send ended")
    except BaseException as error:  # every outcome is checked by the test
        run.events.append("send ended")
        outcome.raised = error
    outcome.cancelled_caught = scope.cancelled_caught


def expected_error(fault: Fault, robust: bool) -> type[BaseException] | None:
    """What the send raises for this fault, or None when it returns."""
    if fault in (Fault.CALLER_CANCELLED, Fault.CANCELS_OWN_SCOPE):
        return None  # the caller's own scope swallows its cancellation
    if fault is Fault.CALLER_TIMEOUT:
        return native_timeout_error()
    if fault is Fault.NEVER_RETURNS:
        return TimeoutError
    if fault is Fault.RAISES:
        return None if robust else ReceiverError
    if fault is Fault.RAISES_WHILE_CANCELLED:
        return None  # the caller's cancellation wins; the error is its context (or logged)
    if fault is Fault.CANCELLED_INSIDE:
        return asyncio.CancelledError
    if fault is Fault.KEYBOARD_INTERRUPT:
        return KeyboardInterrupt
    return SystemExit


@pytest.mark.parametrize(("anyio_backend", "method", "fault", "kind"), cases())
@pytest.mark.anyio
async def test_fault(
    method: str, fault: Fault, kind: Kind, caplog: pytest.LogCaptureFixture
) -> None:
    """The send ends as documented for this fault, leaving no task, thread or coroutine behind."""
    robust = method == "send_robust"
    run = Run(fault, robust)
    signal = Signal(name="matrix")
    signal.connect(run.sibling)
    faulty = signal.connect(run.faulty(kind), to_thread=kind is Kind.THREAD)
    # Warm the worker thread pool, so that a baseline thread count includes it.
    await anyio.to_thread.run_sync(lambda: None)
    threads_before = threading.active_count()
    tasks_before = running_tasks()
    outcome = Outcome()
    caller_scope = anyio.CancelScope()
    with no_unawaited_coroutines(), caplog.at_level(logging.ERROR, logger="asyncsignals"):
        async with anyio.create_task_group() as group:
            group.start_soon(call, signal, run, outcome, caller_scope)
            if fault in (Fault.CALLER_CANCELLED, Fault.RAISES_WHILE_CANCELLED):
                await run.sibling_started.wait()
                await run.started.wait()
                caller_scope.cancel()

    error = expected_error(fault, robust)
    if error is None:
        assert outcome.raised is None
    else:
        assert isinstance(outcome.raised, error), outcome.raised
    if fault is Fault.CALLER_CANCELLED or (fault is Fault.RAISES_WHILE_CANCELLED and robust):
        assert outcome.cancelled_caught
        assert outcome.results is None
    if fault is Fault.RAISES and not robust:
        assert isinstance(outcome.raised, ReceiverError)
        assert any(
            "receiver" in note and "faulty" in note and "matrix" in note
            for note in outcome.raised.__notes__
        )

    if fault is Fault.RAISES and robust:
        assert outcome.results is not None
        [(sibling, sibling_value), (receiver, value)] = outcome.results
        assert (sibling, sibling_value) == (run.sibling, "sibling")
        assert receiver == faulty
        assert isinstance(value, ReceiverError)
        assert [r.levelno for r in caplog.records] == [logging.ERROR]
        assert "matrix" in caplog.records[0].getMessage()
        assert "faulty" in caplog.records[0].getMessage()
        del sibling, receiver, value
    elif fault is Fault.CANCELS_OWN_SCOPE:
        assert outcome.results == [(run.sibling, "sibling"), (faulty, "own scope cancelled")]
        assert "sibling completed" in run.events
    else:
        # Nothing returned, so the sibling never completed: cancelled, or
        # closed before it started when a sync receiver failed first.
        assert "sibling completed" not in run.events
        if fault in CANCELLING or kind is not Kind.SYNC:
            assert "sibling cancelled" in run.events
    if kind is Kind.ASYNC and fault in CANCELLING:
        assert "faulty cancelled" in run.events
    if kind is Kind.THREAD:
        # A cancelled send waits for its thread: it returned before the send ended.
        assert run.events.index("faulty returned") < run.events.index("send ended")
    outcome.results = None
    outcome.raised = None
    assert running_tasks() == tasks_before
    assert threading.active_count() <= threads_before


@pytest.mark.anyio
async def test_robust_logs_error_raised_while_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    """send_robust logs a receiver's error raised while its caller cancels it, not drops it."""
    run = Run(Fault.RAISES_WHILE_CANCELLED, robust=True)
    signal = Signal(name="matrix")
    signal.connect(run.sibling)
    signal.connect(run.faulty_async)
    outcome = Outcome()
    caller_scope = anyio.CancelScope()
    with caplog.at_level(logging.ERROR, logger="asyncsignals"):
        async with anyio.create_task_group() as group:
            group.start_soon(call, signal, run, outcome, caller_scope)
            await run.started.wait()
            # Cancel only once the receiver waits inside its try block.
            await anyio.wait_all_tasks_blocked()
            caller_scope.cancel()
    assert outcome.cancelled_caught
    assert "raised while cancelled" in caplog.text
