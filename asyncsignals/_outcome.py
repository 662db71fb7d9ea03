"""Handing a piece of work's outcome across tasks and threads, without reference cycles.

The rule, once: an exception raised again has every frame it passes in its
traceback, and a frame that still refers to the exception (a local, a
list, a result slot) forms a reference cycle with it. The cycle keeps the
receiver and the sender alive until the garbage collector's next pass,
long after the caller let go. So an outcome travels in a box (a list) that
its taker empties, and is raised again by :func:`unboxed`, called as an
expression (``unboxed(box.pop())``), never from a local.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Any, Final

__all__ = [
    "PLAIN_RESULTS",
    "Outcome",
    "call_in_thread",
    "captured",
    "close_unstarted",
    "is_awaitable",
    "unboxed",
]

#: What happened to a piece of work, handed from where it happened to where
#: it is raised again: ``(value, None)`` or ``(None, exception)``.
Outcome = tuple[Any, BaseException | None]

#: Result types that are never awaitable: the awaitable check skips them.
PLAIN_RESULTS: Final = frozenset({bool, int, float, str, bytes, tuple, list, dict, set})


def is_awaitable(result: object) -> bool:
    """Whether a sync receiver returned something to await."""
    return result is not None and type(result) not in PLAIN_RESULTS and inspect.isawaitable(result)


def unboxed(outcome: Outcome) -> Any:
    """The value of ``outcome``, or its exception raised from here.

    Hand it over as an expression (``unboxed(box.pop())``), never through a
    local (see the module's docstring).
    """
    value, error = outcome
    if error is None:
        return value
    try:
        raise error
    finally:
        del error, outcome


async def captured(awaitable: Awaitable[Any], box: list[Outcome]) -> None:
    """Await ``awaitable`` and leave its outcome in ``box``.

    Carried out, not raised, so that ``KeyboardInterrupt`` does not escape
    into the event loop from a bare task.
    """
    try:
        box.append((await awaitable, None))
    except BaseException as error:
        box.append((None, error))


def call_in_thread(call: list[Any]) -> None:
    """In a worker thread: call the receiver in ``call``, leave its outcome there instead.

    ``call`` holds ``[receiver, kwargs]`` and is left holding the outcome,
    not returned as the thread's result: a worker thread holds its last
    job's result for a moment after handing it back, and its pool's
    machinery would put a raised exception in reference cycles, either of
    which keeps the receiver alive after the send. (A coroutine returned
    also reaches the loop this way: trio's to_thread refuses a function that
    returns one.)
    """
    receiver, kwargs = call
    call.clear()
    try:
        call.append((receiver(**kwargs), None))
    except Exception as error:
        call.append((None, error))


def close_unstarted(awaitable: object) -> None:
    """Close an awaitable that will never be awaited (a receiver's coroutine), if it can be."""
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()
