"""Reaching an event loop from synchronous code, for ``send_sync``.

From an anyio worker thread (where FastAPI runs sync endpoints), the work
goes back to that thread's event loop; from a thread with no event loop, it
runs on a temporary one. Either way the work's outcome is handed back and
raised in the calling thread, never into the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import anyio
import anyio.from_thread

from ._context import await_in_context
from ._outcome import close_unstarted, unboxed

__all__ = ["run_on_a_loop"]

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
