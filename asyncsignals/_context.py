"""Awaiting an awaitable inside a given ``contextvars.Context`` without a task.

A task is the usual way to give a coroutine its own context, but a task costs
a trip through the scheduler. For a receiver awaited in the sender's own task,
this steps the coroutine with ``Context.run``, so every step sees the send's
context copy and nothing it sets reaches the sender. Whatever the coroutine
yields to the event loop (asyncio futures, trio traps) passes through
untouched, and whatever the loop throws in (cancellation) is thrown into it.
"""

from __future__ import annotations

import contextvars
import types
from collections.abc import Awaitable, Generator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._backends import CancelWatch

T = TypeVar("T")


#: ``first`` of :func:`await_in_context` when the awaitable has not been stepped yet.
NOT_STARTED: Any = object()


@types.coroutine
def await_in_context(
    context: contextvars.Context,
    awaitable: Awaitable[T],
    watch: CancelWatch | None = None,
    first: Any = NOT_STARTED,
) -> Generator[Any, Any, T]:
    """Await ``awaitable`` with every step run in ``context``.

    The caller's task stays the current task throughout, so cancel scopes and
    timeouts that the awaited code enters bind as they would in a nested call.
    ``watch`` is told of every exception thrown in, so that the caller can
    tell a cancellation the awaitable absorbed from one it never received.
    ``first``: what the coroutine ``awaitable`` yielded at the first step,
    which the caller took itself; the awaiting goes on from there.
    """
    # A coroutine is its own iterator, and so is a generator-based one
    # (types.coroutine), which has no __await__; other awaitables hand one
    # out, which may be a plain iterator with no send() or throw().
    # (Annotated, not cast: typing.cast is a call, on every send.)
    steps: Generator[Any, Any, T]
    kind: type = type(awaitable)  # (the checkers take no generator for an Awaitable)
    if kind is types.CoroutineType or kind is types.GeneratorType:
        steps = awaitable  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    else:
        iterator = context.run(awaitable.__await__)
        steps = iterator if hasattr(iterator, "send") else _as_generator(iterator)
    send = steps.send
    value: Any = None
    thrown: BaseException | None = None
    yielded = first
    while True:
        if yielded is NOT_STARTED:
            try:
                if thrown is None:
                    yielded = context.run(send, value)
                else:
                    yielded = context.run(steps.throw, thrown)
            except StopIteration as stop:
                # Returned, not kept in a local: from Python 3.12 a finished
                # generator's frame stays reachable from tracebacks of frames it
                # ran, and a local holding the result (send_robust's results,
                # with their exceptions) would form a cycle with them.
                return stop.value  # type: ignore[no-any-return]
            except BaseException as escaping:
                # A cancellation (or interrupt) propagating as itself: the
                # watch's record of it would only form a cycle with this
                # frame. An Exception leaves it for the caller to ask about.
                if watch is not None and not isinstance(escaping, Exception):
                    watch.delivered = None
                raise
            finally:
                # Break the frame -> exception -> frame cycle before the next
                # step; ``value`` may be what trio resumed the awaitable with
                # (an outcome holding its cancellation).
                thrown = value = None
        if watch is not None and not watch.suspended:
            watch.suspending()
        try:
            value = yield yielded
        except BaseException as exc:
            # Cancellation (or GeneratorExit on close) belongs to the awaitable.
            thrown = exc
            value = None
            if watch is not None:
                watch.saw(exc)
        yielded = NOT_STARTED


def _as_generator(iterator: Iterator[Any]) -> Generator[Any, Any, Any]:
    """A plain iterator as a generator, so that it can be sent to and thrown into.

    A plain iterator's end carries no value, so the awaitable's result is None.
    """
    yield from iterator
