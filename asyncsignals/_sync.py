"""Sending from synchronous code: ``send_sync`` and ``send_robust_sync``.

Sync receivers, ``to_thread`` ones included, run in the calling thread.
Async receivers are awaited on an event loop reached from here
(:func:`run_on_a_loop`): from an anyio worker thread (where FastAPI runs
sync endpoints), that thread's event loop; from a thread with no event
loop, a temporary one. Either way the outcome is handed back and raised in
the calling thread, never into the event loop. On an event loop's own
thread nothing can be awaited, and an async receiver is a clear error.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import anyio
import anyio.from_thread

from ._backends import running_event_loop
from ._connections import ASYNC, Connection, Snapshot, live_async_receivers, live_receiver
from ._context import await_in_context
from ._failures import annotate, report
from ._limits import Limits
from ._outcome import close_unstarted, unboxed
from ._receivers import describe, signal_label
from ._run import (
    Results,
    await_one,
    await_pending,
    close_awaitables,
    is_awaitable,
    pending_awaitables,
    pending_receiver,
    run_inline,
)

__all__ = ["run_on_a_loop", "send_from_sync"]

T = TypeVar("T")


def run_on_a_loop(function: Callable[[], Awaitable[T]], awaitables: Sequence[object] = ()) -> T:
    """Run ``function`` on this anyio worker thread's event loop, or on a temporary one.

    Either way it runs in a copy of the calling thread's context, so
    receivers see what the caller set. Its exception is raised again here,
    not through the event loop's machinery, which would hold it in
    reference cycles (see unboxed). Should no loop run it (a temporary one
    that cannot start), ``awaitables``, which it would have awaited, are
    closed: none is left un-awaited.
    """
    # The function and then its outcome, each taken out when used: nothing
    # the event loop's frames keep refers to what the receivers returned.
    box: list[Any] = [function]
    del function

    async def run() -> None:
        function: Callable[[], Awaitable[T]] = box.pop()
        try:
            box.append((await function(), None))
        except anyio.get_cancelled_exc_class():
            raise  # the loop's own business
        except BaseException as error:
            # KeyboardInterrupt and SystemExit too: they belong to the
            # caller of send_sync, not to the event loop.
            box.append((None, error))
        finally:
            del function

    try:
        anyio.from_thread.run(run)
    except anyio.NoEventLoopError:
        on_a_worker_thread = False  # no loop to go back to
    else:
        on_a_worker_thread = True
    if not on_a_worker_thread:
        callers_context = contextvars.copy_context()

        async def run_in_callers_context() -> None:
            await await_in_context(callers_context, run())

        try:
            # From a fresh context: a thread that asyncio.to_thread started
            # inherits the marker of its parent's running loop, and anyio
            # would refuse to start a loop under it. The receivers still
            # run in the caller's context. A loop factory, so that the
            # thread's current event loop, if it set one, is left as it was
            # (asyncio.Runner resets it otherwise).
            contextvars.Context().run(_run_on_a_temporary_loop, run_in_callers_context)
        except BaseException:
            for awaitable in awaitables:
                close_unstarted(awaitable)
            raise
    # Returned, not kept in a local: see unboxed.
    return cast("T", unboxed(box.pop()))


def _run_on_a_temporary_loop(function: Callable[[], Awaitable[None]]) -> None:
    anyio.run(function, backend_options={"loop_factory": asyncio.new_event_loop})


def send_from_sync(
    signal: object,
    limits: Limits,
    concurrent: bool,
    snapshot: Snapshot,
    sender: object,
    named: dict[str, Any],
    robust: bool,
) -> Results:
    """Run the receivers of ``snapshot`` for a send from synchronous code.

    As ``send`` would, but from a thread that cannot await: see the module's
    docstring for where each receiver runs.

    Raises:
        RuntimeError: on an event loop's own thread, an async receiver is
            connected or a sync one returned an awaitable (raised before
            anything runs, for the former).
    """
    connections, awaits, _, _ = snapshot
    if not connections:
        return []
    on_loop_thread = running_event_loop()
    if on_loop_thread and awaits:
        asynchronous = live_async_receivers(connections)
        if asynchronous:
            names = ", ".join(describe(receiver) for receiver in asynchronous)
            raise RuntimeError(
                f"{signal_label(signal)} has async receivers ({names}) that send_sync cannot "
                "run on the event loop's own thread; use 'await signal.send(...)'"
            )
    if awaits and not concurrent and not on_loop_thread:
        return contextvars.copy_context().run(
            _call_in_order, signal, limits, connections, sender, named, robust
        )
    context = contextvars.copy_context()
    results, pending = context.run(
        run_inline, signal, limits, connections, sender, named, robust, True
    )
    try:
        if pending:
            if on_loop_thread:
                close_awaitables(pending)
                raise RuntimeError(
                    f"receiver {describe(pending_receiver(pending, 0))} of "
                    f"{signal_label(signal)} returned an awaitable, which send_sync cannot "
                    "await on the event loop's own thread; use 'await signal.send(...)'"
                )
            run_on_a_loop(
                functools.partial(
                    await_pending, signal, limits, sender, results, pending, context, robust
                ),
                pending_awaitables(pending),
            )
        return results
    finally:
        del results  # see asyncsignals._failures.report: no cycle through a kept exception


def _call_in_order(
    signal: object,
    limits: Limits,
    connections: Sequence[Connection],
    sender: object,
    named: dict[str, Any],
    robust: bool,
) -> Results:
    """A sequential signal's send from synchronous code: each receiver in turn.

    Sync receivers, ``to_thread`` ones included, are called in this thread;
    each async receiver is awaited on the thread's event loop (or a
    temporary one) before the next receiver starts. Runs in the send's
    context copy. The twin of asyncsignals._run's sequential loop, which
    awaits in the sender's task instead: a change to one belongs in both.
    """
    arguments = {"sender": sender, **named}
    arguments_with_signal = {"signal": signal, **arguments}
    results: Results = []
    value: Any = None
    try:
        for connection in connections:
            receiver = live_receiver(connection)
            if receiver is None:
                continue
            _, _, kind, takes_signal, _, timeout = connection
            try:
                value = receiver(**(arguments_with_signal if takes_signal else arguments))
                if kind == ASYNC or is_awaitable(value):
                    value = run_on_a_loop(
                        functools.partial(
                            await_one, signal, limits, value, receiver, limits.timeout_of(timeout)
                        ),
                        [value],
                    )
            except Exception as exc:
                if not robust:
                    annotate(signal, exc, receiver)
                    raise
                value = report(signal, exc, receiver, sender)
            results.append((receiver, value))
        return results
    finally:
        del results, value  # see asyncsignals._failures.report: no cycle through a kept exception
