"""Background sends owned by the application's lifespan.

A web handler that must answer quickly hands slow receivers (e-mail, webhooks)
to a :class:`BackgroundDispatcher` the application entered at startup. The
dispatcher runs each send with :meth:`Signal.send_robust` inside its own task
group, keeps at most ``max_pending`` sends queued (backpressure), at most
``max_concurrent`` running, and at shutdown drains what it can within a grace
period and reports, by count and by log, every send that did not complete.
"""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
import itertools
import logging
import math
import reprlib
from collections.abc import Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from typing_extensions import ParamSpec

from ._backends import current_backend
from ._context import await_in_context
from ._instrument import background_send
from ._lifespan import Lifespan
from ._payload import pop_sender, sender_given_twice
from ._receivers import signal_label
from ._signal import Signal, check_payload

__all__ = [
    "BackgroundDispatcher",
    "BackgroundSend",
    "DispatcherClosedError",
    "DispatcherFullError",
    "ShutdownReport",
]

logger: Final = logging.getLogger("asyncsignals.background")

# The payload of the signal a send queues, checked as the signal's own send checks it.
P = ParamSpec("P")

# The most sends one dispatcher may run at once: each is a worker task,
# started on entry.
_MOST_WORKERS: Final = 10_000


class DispatcherFullError(RuntimeError):
    """:meth:`BackgroundDispatcher.send` found the queue full; nothing was queued."""


class DispatcherClosedError(RuntimeError):
    """The dispatcher is not accepting sends: not entered yet, or shutting down."""


@dataclasses.dataclass(frozen=True, eq=False)
class BackgroundSend:
    """A send handed to a :class:`BackgroundDispatcher` that did not complete.

    Attributes:
        signal: The signal that was to be sent.
        sender: The sender it was to be sent from.
        payload: The keyword arguments of the send.
        started: True when it was cancelled while running; False when it was
            still queued and never started.
    """

    signal: Signal[..., Any]
    sender: object
    payload: Mapping[str, Any]
    started: bool


@dataclasses.dataclass(frozen=True)
class ShutdownReport:
    """What a :class:`BackgroundDispatcher` did in its lifetime, set when it exits.

    ``accepted == completed + len(not_completed)``: every send accepted is
    either completed or listed here.

    Attributes:
        accepted: Sends the dispatcher queued.
        completed: Sends that ran to the end, including those whose receivers
            raised.
        errors: Receiver exceptions (and sends that failed as a whole), each
            logged.
        not_completed: The sends cancelled while running or never started, in
            the order they entered the queue (the order they started, for
            those that did): a :meth:`~BackgroundDispatcher.send_wait` that
            waited for room comes after the sends that got in meanwhile.
    """

    accepted: int
    completed: int
    errors: int
    not_completed: tuple[BackgroundSend, ...]


class _Queued:
    """A send waiting in the queue or running: what to send, and in which context.

    ``number`` is its place in the order sends entered the queue, given when
    it does (a send_wait() may wait while later sends get in first).
    """

    __slots__ = ("context", "number", "payload", "sender", "signal")

    def __init__(
        self,
        signal: Signal[..., Any],
        sender: object,
        payload: dict[str, Any],
        context: contextvars.Context,
    ) -> None:
        self.number = -1
        self.signal = signal
        self.sender = sender
        self.payload = payload
        self.context = context


# The payload summary in the log of sends that did not complete: bounded
# whatever the payload holds.
_payload_repr: Final = reprlib.Repr()
_payload_repr.maxstring = 30
_payload_repr.maxother = 40
_PAYLOAD_ITEMS: Final = 6


def _summary(payload: Mapping[str, Any]) -> str:
    items = [
        f"{key}={_payload_repr.repr(value)}"
        for key, value in itertools.islice(payload.items(), _PAYLOAD_ITEMS)
    ]
    if len(payload) > _PAYLOAD_ITEMS:
        items.append(f"... ({len(payload) - _PAYLOAD_ITEMS} more)")
    return ", ".join(items) if items else "no payload"


class BackgroundDispatcher:
    """Runs sends in the background, inside the application's lifespan.

    Enter it once, at startup, and hand it sends from request handlers::

        async with BackgroundDispatcher(grace_period=10) as dispatcher:
            ...  # serve; handlers call dispatcher.send(signal, sender, **payload)

    Each send runs as ``await signal.send_robust(sender, **payload)`` in the
    context (``contextvars``) of the code that handed it over, in one of
    ``max_concurrent`` worker tasks of the dispatcher's own task group. Sends
    start in the order they entered the queue; they run concurrently, so they may
    finish in any order.

    Args:
        max_pending: How many sends may wait in the queue. When it is full,
            :meth:`send` raises :class:`DispatcherFullError` and :meth:`send_wait`
            waits for room.
        max_concurrent: How many sends run at once.
        grace_period: Seconds that leaving the ``async with`` block waits for
            queued and running sends before cancelling the rest.
            ``math.inf`` waits for all of them.
        name: Shown in ``repr`` and in logs.
        describe: Says which send a :class:`BackgroundSend` is (``lambda send:
            f"order #{send.payload['order'].id}"``), for the log line of each
            send that did not complete. By default that line summarizes the
            payload with :mod:`reprlib` (each value, and the whole, bounded).
            If it raises, the default summary is used and the error named.

    Raises:
        TypeError: a count that is not an ``int`` (a ``bool`` included), a
            grace period that is not a number, a name that is not a str, a
            ``describe`` that is not callable.
        ValueError: a count below 1, a grace period below 0 or NaN.

    Errors: a receiver's exception never reaches the code that handed the send
    over. ``send_robust`` logs it, once, at ERROR on the ``asyncsignals``
    logger with its traceback, naming the signal, the receiver and the
    sender; :attr:`errors` counts them. A ``BaseException`` that is not an
    ``Exception`` (``KeyboardInterrupt``, ``SystemExit``) raised by a receiver
    is never swallowed, and never escapes into the event loop: it stops the
    dispatcher at once (running sends are cancelled, queued ones never start,
    new sends raise :class:`DispatcherClosedError`) and is raised, as itself,
    where the ``async with`` block is left (several at once: a
    ``BaseExceptionGroup``).

    Lifespan: the workers run in a task of the dispatcher's own (a trio
    system task on trio), so the block may be entered by one task and left by
    another, as pytest-asyncio async fixtures and aiohttp's ``cleanup_ctx``
    do. No task of the dispatcher outlives the block.

    Shutdown and cancellation: leaving the block refuses new sends
    (:class:`DispatcherClosedError`, also raised to callers waiting in
    :meth:`send_wait`), lets the workers drain the queue for up to
    ``grace_period`` seconds, then cancels what is left. The grace period
    holds whether the block ends normally, raises an ``Exception``, is left
    by cancellation, or is left in a task that is already being cancelled
    (aiohttp runs cleanup in one): the grace deadline is the dispatcher's
    own business, so leaving raises no cancellation of its own and the
    application's later cleanup still runs. Left by another
    ``BaseException`` (``KeyboardInterrupt``, ``SystemExit``), every running
    send is cancelled at once. A cancellation that still reaches the drain
    (asyncio's ``Task.cancel()`` called again, a second Ctrl+C) cancels what
    is left at once and propagates once the report is made. Either way
    :attr:`report` then lists every send that did not complete, and each is
    logged at ERROR on ``asyncsignals.background`` with its signal and sender,
    then a summary that says how the drain ended: nothing is lost silently.

    Not thread-safe: call :meth:`send` and :meth:`send_wait` on the event
    loop's thread (from a worker thread, through ``anyio.from_thread``).

    Attributes:
        max_pending: At most this many sends wait in the queue.
        max_concurrent: At most this many sends run at once.
        grace_period: Seconds the shutdown drain may take.
        name: Shown in ``repr`` and the shutdown log, or None.
        describe: What says, in the shutdown log, which send did not
            complete, or None for a bounded summary of the payload.
    """

    def __init__(
        self,
        *,
        max_pending: int = 1000,
        max_concurrent: int = 10,
        grace_period: float = 10.0,
        name: str | None = None,
        describe: Callable[[BackgroundSend], str] | None = None,
    ) -> None:
        for argument, count in (("max_pending", max_pending), ("max_concurrent", max_concurrent)):
            if not isinstance(count, int) or isinstance(count, bool):  # pyright: ignore[reportUnnecessaryIsInstance] (checks what callers pass)
                raise TypeError(f"{argument} must be a whole number of sends, got {count!r}")
            if count < 1:
                raise ValueError(f"{argument} must be at least 1, got {count!r}")
        if max_concurrent > _MOST_WORKERS:
            raise ValueError(
                f"max_concurrent must be at most {_MOST_WORKERS} (a worker task each), "
                f"got {max_concurrent!r}"
            )
        if not isinstance(grace_period, (int, float)) or isinstance(grace_period, bool):  # pyright: ignore[reportUnnecessaryIsInstance] (checks what callers pass)
            raise TypeError(
                f"grace_period must be a number of seconds (math.inf to wait for every "
                f"send), got {grace_period!r}"
            )
        if name is not None and not isinstance(name, str):  # pyright: ignore[reportUnnecessaryIsInstance] (checks what callers pass)
            raise TypeError(f"name must be a str or None, got {name!r}")
        if describe is not None and (
            not callable(describe) or inspect.iscoroutinefunction(describe)
        ):
            raise TypeError(
                f"describe must be a plain (not async) callable returning a str, or None, "
                f"got {describe!r}"
            )
        try:
            float(grace_period)
        except OverflowError:
            grace_period = math.nan  # refused below, with the same message
        if not grace_period >= 0:
            raise ValueError(
                f"grace_period must be a number of seconds >= 0 (math.inf to wait for "
                f"every send), got {grace_period!r}"
            )
        self.max_pending = max_pending
        self.max_concurrent = max_concurrent
        self.grace_period = grace_period
        self.name = name
        self.describe = describe
        self._accepted = 0
        self._completed = 0
        self._errors = 0
        self._running: dict[int, _Queued] = {}
        self._report: ShutdownReport | None = None
        self._lifespan = Lifespan(
            self,
            kind="dispatcher",
            closed_error=DispatcherClosedError,
            refusal="accepts no new sends",
            before="sending",
            failing="a receiver",
            on_stop=self._refuse_sends,
        )
        self._send_stream: MemoryObjectSendStream[_Queued] | None = None
        self._receive_stream: MemoryObjectReceiveStream[_Queued] | None = None
        # Set (and replaced) whenever a worker takes a send off a full queue,
        # and at shutdown: wakes the callers waiting in send_wait. Created on
        # entry: an anyio event needs the running backend.
        self._room: anyio.Event | None = None
        self._waiting_for_room = 0

    def __repr__(self) -> str:
        name = f" {self.name}" if self.name is not None else ""
        return (
            f"<BackgroundDispatcher{name} {self._lifespan.state}: {self.queued} queued, "
            f"{self.running} running, {self._completed} completed>"
        )

    @property
    def _display_name(self) -> str:
        return self._lifespan.display_name(self.name, unnamed="BackgroundDispatcher")

    # -- counters -----------------------------------------------------------

    @property
    def queued(self) -> int:
        """Sends accepted and not started yet."""
        if self._send_stream is None:
            return 0
        return self._send_stream.statistics().current_buffer_used

    @property
    def running(self) -> int:
        """Sends running now."""
        return len(self._running)

    @property
    def completed(self) -> int:
        """Sends that ran to the end, including those whose receivers raised."""
        return self._completed

    @property
    def errors(self) -> int:
        """Receiver exceptions so far (and sends that failed as a whole), each logged."""
        return self._errors

    @property
    def report(self) -> ShutdownReport | None:
        """What happened to every send, once the dispatcher has exited; None before."""
        return self._report

    # -- lifespan -----------------------------------------------------------

    async def __aenter__(self) -> BackgroundDispatcher:
        """Start the workers; from now on the dispatcher accepts sends.

        Does not yield. The workers run in a task of the dispatcher's own, so
        the block may be left by another task than the one that entered it
        (an async fixture's teardown, an aiohttp cleanup context).

        Raises:
            RuntimeError: the dispatcher was entered before; it runs once.
        """
        self._lifespan.refuse_reentry()
        self._send_stream, self._receive_stream = anyio.create_memory_object_stream[_Queued](
            self.max_pending
        )
        self._room = anyio.Event()
        self._lifespan.start([self._work] * self.max_concurrent)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Drain within the grace period, cancel the rest, and report.

        Waits for queued and running sends for at most ``grace_period``
        seconds, also when the block raised an exception or was cancelled,
        and also when the task leaving it is already being cancelled: the
        grace deadline is the dispatcher's own, so it raises no cancellation
        of its own, and the application's later cleanup still runs. Left by
        a ``BaseException`` that is neither an ``Exception`` nor a
        cancellation (``KeyboardInterrupt``, ``SystemExit``), running sends
        are cancelled at once. A cancellation that still reaches the wait
        (asyncio's ``Task.cancel()`` called again during the drain) cancels
        what is left at once, and propagates once the report is made.

        Raises:
            BaseException: what a receiver raised that is not an
                ``Exception``, as itself (several: a ``BaseExceptionGroup``).
                Otherwise the block's own exception propagates unchanged.
        """
        # Workers finish what is queued, then find the stream ended.
        self._refuse_sends()
        await self._lifespan.close(exc, self.grace_period)
        self._report = self._close_and_report(self._how_it_ended())
        self._lifespan.raise_failures(f"receivers of {self._display_name} failed")

    def _refuse_sends(self) -> None:
        """Close the queue to new sends, and wake the callers waiting in send_wait."""
        assert self._send_stream is not None
        assert self._room is not None
        self._send_stream.close()
        self._room.set()

    def _how_it_ended(self) -> str:
        """What the summary of sends left over says about the drain."""
        lifespan = self._lifespan
        grace = (
            "an unlimited grace period"
            if math.isinf(self.grace_period)
            else f"the {self.grace_period:g} s grace period"
        )
        if lifespan.interruption is not None:
            return (
                f"the drain was interrupted by {type(lifespan.interruption).__name__} after "
                f"{lifespan.interrupted_after:.2f} s of {grace}"
            )
        if lifespan.stopped_by is not None:
            return lifespan.stopped_by
        return (
            "grace period unlimited"
            if math.isinf(self.grace_period)
            else (f"grace period {self.grace_period:g} s")
        )

    def _close_and_report(self, how_it_ended: str) -> ShutdownReport:
        assert self._receive_stream is not None
        not_completed = [(queued, True) for queued in self._running.values()]
        while True:
            try:
                queued = self._receive_stream.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            not_completed.append((queued, False))
        self._receive_stream.close()
        self._running.clear()
        not_completed.sort(key=lambda pair: pair[0].number)
        report = ShutdownReport(
            accepted=self._accepted,
            completed=self._completed,
            errors=self._errors,
            not_completed=tuple(
                BackgroundSend(
                    queued.signal, queued.sender, MappingProxyType(queued.payload), started
                )
                for queued, started in not_completed
            ),
        )
        _log_not_completed(report, self._display_name, how_it_ended, self.describe)
        return report

    async def _work(self) -> None:
        assert self._receive_stream is not None
        async for queued in self._receive_stream:
            if self._waiting_for_room:
                assert self._room is not None
                self._room.set()
                self._room = anyio.Event()
            self._running[queued.number] = queued
            # A cancellation leaves the send in _running: reported at exit.
            await self._run(queued)
            del self._running[queued.number]
            self._completed += 1

    async def _run(self, queued: _Queued) -> None:
        signal, sender = queued.signal, queued.sender
        # Instruments see a send of its own, not a part of the request that
        # queued it (which has moved on): a trace of its own, linked to it.
        queued.context.run(background_send.set, True)
        backend = current_backend()
        baseline = backend.pending_cancellations()
        try:
            results = await await_in_context(
                queued.context, signal.send_robust(sender, **queued.payload)
            )
        except Exception as exc:
            self._send_failed(signal, sender, exc)
            return
        except backend.cancelled as cancelled:
            if backend.level_triggered or backend.pending_cancellations() > baseline:
                raise  # the dispatcher's own cancellation
            # On asyncio a receiver can raise CancelledError nobody asked
            # for (a future someone else cancelled): a failure of this send,
            # not a reason to lose the worker.
            self._send_failed(signal, sender, cancelled)
            return
        # send_robust logged each receiver's error, with its traceback.
        self._errors += sum(isinstance(result, Exception) for _, result in results)
        # From Python 3.12 the errors' tracebacks reach this frame (it stepped
        # the send): keep no reference to them here, or they form a cycle.
        del results

    def _send_failed(self, signal: Signal[..., Any], sender: object, error: BaseException) -> None:
        self._errors += 1
        logger.error(
            "background send of signal %s from sender %s failed: %s",
            signal_label(signal),
            reprlib.repr(sender),
            type(error).__name__,
            exc_info=error,
        )

    # -- sending ------------------------------------------------------------

    def _accept(
        self,
        method: str,
        signal: Signal[..., Any],
        args: tuple[object, ...],
        payload: dict[str, Any],
    ) -> _Queued:
        if not isinstance(signal, Signal):  # pyright: ignore[reportUnnecessaryIsInstance] (checks what callers pass)
            raise TypeError(f"expected a Signal to send, got {signal!r}")
        if not self._lifespan.running:
            raise self._lifespan.closed_error()
        if args and "sender" in payload:
            raise sender_given_twice(signal, method)
        sender = pop_sender(args, payload, method)
        check_payload(signal, payload)
        return _Queued(signal, sender, payload, contextvars.copy_context())

    def send(self, signal: Signal[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Queue ``signal.send_robust(sender, **payload)`` and return at once.

        Takes what the signal's own send takes: the sender (by position, or
        as ``sender=``, as a declared signal's send wants it) and the
        payload, type-checked against a declared signal's.

        Never yields to the event loop, so it can be called from sync code on
        the loop's thread (a sync receiver, for instance).

        Raises:
            DispatcherFullError: ``max_pending`` sends are already queued; nothing
                was queued. Retry later, or ``await send_wait(...)``.
            DispatcherClosedError: the dispatcher has not been entered, or is
                shutting down.
            TypeError: ``signal`` is not a Signal, or the payload does not
                match it (the reserved names, ``providing_args``): raised here,
                before anything is queued.
        """
        queued = self._accept("send", signal, args, kwargs)
        assert self._send_stream is not None
        queued.number = self._accepted
        try:
            self._send_stream.send_nowait(queued)
        except anyio.WouldBlock:
            raise DispatcherFullError(
                f"{self!r} is full ({self.max_pending} sends queued); use "
                "'await dispatcher.send_wait(...)' to wait for room, or raise max_pending"
            ) from None
        self._accepted += 1

    async def send_wait(self, signal: Signal[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Queue ``signal.send_robust(sender, **payload)``, waiting for room if full.

        Takes what :meth:`send` takes.

        When the queue has room it returns without yielding, like
        :meth:`send`. Otherwise it waits (a cancellation point) until a worker
        takes a send off the queue; callers waiting together get room in no
        promised order. Cancelled while waiting, nothing was queued.

        Raises:
            DispatcherClosedError: the dispatcher has not been entered, or began
                shutting down (also while this call was waiting): nothing was
                queued.
            TypeError: as for :meth:`send`, before anything is queued.
        """
        queued = self._accept("send_wait", signal, args, kwargs)
        assert self._send_stream is not None
        while True:
            queued.number = self._accepted
            try:
                self._send_stream.send_nowait(queued)
            except anyio.WouldBlock:
                pass
            except anyio.ClosedResourceError:
                raise self._lifespan.closed_error() from None
            else:
                self._accepted += 1
                return
            assert self._room is not None
            self._waiting_for_room += 1
            try:
                await self._room.wait()
            finally:
                self._waiting_for_room -= 1


# Public names show their public path in reprs and tracebacks.
for _public in (
    BackgroundDispatcher,
    BackgroundSend,
    DispatcherClosedError,
    DispatcherFullError,
    ShutdownReport,
):
    _public.__module__ = "asyncsignals"
del _public


def _log_not_completed(
    report: ShutdownReport,
    name: str,
    how_it_ended: str,
    describe: Callable[[BackgroundSend], str] | None,
) -> None:
    """Log each send the shutdown left undone, then their count."""
    for each in report.not_completed:
        logger.error(
            "background send of signal %s from sender %s did not complete: %s; %s",
            signal_label(each.signal),
            reprlib.repr(each.sender),
            "cancelled while running" if each.started else "cancelled before it started",
            _described(each, describe),
        )
    if report.not_completed:
        logger.error(
            "%s: %d of %d background sends did not complete at shutdown (%s)",
            name,
            len(report.not_completed),
            report.accepted,
            how_it_ended,
        )


def _described(send: BackgroundSend, describe: Callable[[BackgroundSend], str] | None) -> str:
    """The user's description of a send left undone, or a summary of its payload."""
    if describe is not None:
        try:
            return describe(send)
        except Exception as exc:  # the report must not fail because of it
            return f"{_summary(send.payload)} (describe raised {type(exc).__name__})"
    return _summary(send.payload)
