"""Running a ``to_thread`` receiver in a worker thread, on every path of a send.

A receiver connected with ``to_thread=True`` runs in one of anyio's worker
threads. Two rules hold for it wherever it runs: it waits for a thread
before it takes the signal's concurrency slot (never the other way round,
see :func:`_run_in_thread_and_slot`), and a cancel waits for it to return
(a thread cannot be stopped, and its result must not be dropped unseen).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread

from ._backends import Backend, would_block
from ._limits import guarded
from ._outcome import call_in_thread, is_awaitable, unboxed

__all__ = ["in_a_thread"]


def in_a_thread(
    signal: object,
    receiver: Callable[..., Any],
    kwargs: dict[str, Any],
    backend: Backend,
    limiter: anyio.CapacityLimiter | None,
) -> Awaitable[Any]:
    """A ``to_thread`` receiver's run in a worker thread, under the signal's limit."""
    if limiter is None:
        return _run_in_thread(receiver, kwargs, backend, None)
    return _run_in_thread_and_slot(signal, receiver, kwargs, backend, limiter)


async def _run_in_thread_and_slot(
    signal: object,
    receiver: Callable[..., Any],
    kwargs: dict[str, Any],
    backend: Backend,
    limiter: anyio.CapacityLimiter,
) -> Any:
    """Secure a worker thread first, then the signal's slot, then run the receiver.

    A receiver waiting for a thread must hold no slot: senders that hold
    every worker thread (``send_sync`` from worker threads, where sync
    endpoints run) may be waiting for a slot, and would wait for ever.
    """
    threads = anyio.to_thread.current_default_thread_limiter()
    borrower = object()
    try:
        threads.acquire_on_behalf_of_nowait(borrower)
    except would_block():
        await threads.acquire_on_behalf_of(borrower)
    try:
        # Its own limiter: the thread secured above is this receiver's.
        in_thread = _run_in_thread(receiver, kwargs, backend, anyio.CapacityLimiter(1))
        del kwargs
        return await guarded(signal, in_thread, receiver, None, limiter)
    finally:
        threads.release_on_behalf_of(borrower)


async def _run_in_thread(
    receiver: Callable[..., Any],
    kwargs: dict[str, Any],
    backend: Backend,
    thread_limiter: anyio.CapacityLimiter | None,
) -> Any:
    """Run a ``to_thread`` receiver in a worker thread; a cancel waits for it to return."""
    in_thread = _thread_outcome([receiver, kwargs], thread_limiter)
    del receiver, kwargs
    # anyio shields the thread from its own cancel scopes, but a bare asyncio
    # task.cancel() would still return early, and on trio a deadline that
    # passed meanwhile would go unnoticed: the backend waits it out.
    result = await backend.wait_uninterruptibly(in_thread)
    if is_awaitable(result):
        result = await result
    return result


async def _thread_outcome(call: list[Any], thread_limiter: anyio.CapacityLimiter | None) -> Any:
    """What the receiver in ``call`` returned in a worker thread, or its exception raised."""
    await anyio.to_thread.run_sync(call_in_thread, call, limiter=thread_limiter)
    return unboxed(call.pop())
