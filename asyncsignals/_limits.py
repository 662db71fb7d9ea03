"""A receiver's limits: its time limit and its slot of the signal's concurrency limit.

:class:`Limits` holds what a signal was given (``timeout``,
``max_concurrency``) and its concurrency limiter on each event loop;
:func:`guarded` puts one receiver's awaitable under both. A free slot is
taken without yielding, and a send made from inside a receiver runs in that
receiver's slot, so a nested send never waits for a slot its parent holds.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import anyio

from ._backends import Backend, would_block
from ._outcome import close_unstarted
from ._receivers import describe, signal_label

__all__ = ["UNTIMED", "Limits", "check_timeout", "guarded", "timed_receiver"]

T = TypeVar("T")

#: A connection's timeout once a wrapper applies it (see
#: :func:`timed_receiver`): the send must not time the receiver a second time.
UNTIMED: Final = float("inf")


def check_timeout(timeout: float | None) -> float | None:
    """``timeout`` itself, or ValueError when it is not a positive number of seconds."""
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)  # pyright: ignore[reportUnnecessaryIsInstance] (checks what callers pass)
        or not timeout > 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}")
    return timeout


class Limits:
    """A signal's time and concurrency limits, and its limiter on each event loop.

    A limiter belongs to one event loop, so a signal used from several
    (threads with loops of their own, temporary loops of send_sync) gets one
    for each loop: the limit holds on each loop, for every loop that sends
    at once.
    """

    __slots__ = ("_last", "_lock", "_per_loop", "max_concurrency", "timeout", "unlimited")

    def __init__(self, timeout: float | None, max_concurrency: int | None) -> None:
        """Raises ValueError for a timeout or a limit that is not a positive number."""
        self.timeout = check_timeout(timeout)
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)  # pyright: ignore[reportUnnecessaryIsInstance] (checks what callers pass)
            or max_concurrency < 1
        ):
            raise ValueError(
                f"max_concurrency must be a positive int or None, not {max_concurrency!r}"
            )
        self.max_concurrency = max_concurrency
        #: Neither a timeout nor a concurrency limit: nothing to put on a receiver.
        self.unlimited = self.timeout is None and max_concurrency is None
        # The limiter of the loop that used it last, and one for every loop
        # that has sent.
        self._last: tuple[object, anyio.CapacityLimiter] | None = None
        self._per_loop: weakref.WeakKeyDictionary[object, anyio.CapacityLimiter] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def timeout_of(self, own_timeout: float | None) -> float | None:
        """A receiver's time limit: its connection's own, else the signal's."""
        return own_timeout if own_timeout is not None else self.timeout

    def limiter(self, backend: Backend) -> anyio.CapacityLimiter | None:
        """The concurrency limiter of the running event loop, made on first use."""
        if self.max_concurrency is None:
            return None
        loop = backend.loop_token()
        last = self._last
        if last is None or last[0] is not loop:
            with self._lock:
                limiter = self._per_loop.get(loop)
                if limiter is None:
                    limiter = self._per_loop[loop] = anyio.CapacityLimiter(self.max_concurrency)
            last = self._last = (loop, limiter)
        return last[1]


def guarded(
    signal: object,
    awaitable: Awaitable[T],
    receiver: object,
    timeout: float | None,
    limiter: anyio.CapacityLimiter | None,
) -> Awaitable[T]:
    """``awaitable`` under the receiver's timeout and the signal's concurrency limit."""
    if timeout is UNTIMED:
        timeout = None
    if timeout is None and limiter is None:
        return awaitable
    return _limited_and_timed(
        awaitable,
        timeout,
        limiter,
        lambda: (
            f"receiver {describe(receiver)} of signal {signal_label(signal)} "
            f"did not finish within {timeout:g} s"
        ),
    )


def timed_receiver(
    signal: object, receiver: Callable[..., Any], timeout: float
) -> Callable[..., Any]:
    """``receiver`` with its timeout applied to each call, for one observed send."""

    async def timed(**kwargs: Any) -> Any:
        return await guarded(signal, receiver(**kwargs), receiver, timeout, None)

    timed.__dict__["__asyncsignals_receiver__"] = receiver
    return timed


class _Slot:
    """One receiver's slot of a limiter, while the receiver runs."""

    __slots__ = ("held", "limiter")

    def __init__(self, limiter: anyio.CapacityLimiter) -> None:
        self.limiter = limiter
        self.held = True


# The slots held by the receivers whose code is running: a nested send from
# inside a receiver runs in its parent's slot instead of waiting for one the
# parent would never give back. A task the receiver started inherits this,
# but once the receiver has ended its slot is no longer held, and that
# task's sends wait their turn as any other.
_held_slots: contextvars.ContextVar[tuple[_Slot, ...]] = contextvars.ContextVar(
    "asyncsignals_held_slots", default=()
)


async def _limited_and_timed(
    awaitable: Awaitable[T],
    time_limit: float | None,
    limiter: anyio.CapacityLimiter | None,
    describe_failure: Callable[[], str],
) -> T:
    borrower = object()  # unique: a nested send in the same task borrows again
    slot = None
    token = None
    if limiter is not None:
        held = _held_slots.get()
        if not any(each.held and each.limiter is limiter for each in held):
            try:
                # A free slot is taken without yielding: the send adds no
                # checkpoint of its own, it waits only for a slot.
                limiter.acquire_on_behalf_of_nowait(borrower)
            except would_block():
                try:
                    await limiter.acquire_on_behalf_of(borrower)
                except BaseException:
                    close_unstarted(awaitable)
                    raise
            # Runs in the receiver's own context (its task's, or the send's
            # copy): what it sets reaches the receiver's code, never the sender.
            slot = _Slot(limiter)
            token = _held_slots.set((*held, slot))
        # else a nested send: its parent's slot is this receiver's
    try:
        if time_limit is None:
            return await awaitable
        with anyio.move_on_after(time_limit):
            return await awaitable
        raise TimeoutError(describe_failure())
    finally:
        if slot is not None:
            slot.held = False
            slot.limiter.release_on_behalf_of(borrower)
        if token is not None:
            _held_slots.reset(token)
