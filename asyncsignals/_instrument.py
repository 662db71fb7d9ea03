"""Instruments: watch every send and every receiver, free while none is installed.

An instrument is told when a send starts and ends, and when each receiver
starts and ends, with durations and outcomes: for metrics, logs and tracing
(``asyncsignals.opentelemetry`` is one). A signal with no instrument pays
nothing for this; one with instruments sends through a slower path that
wraps each receiver for that send.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ._hooks import add_everywhere, remove_everywhere
from ._signal import Signal, add_hook, all_signals, hooks_of, remove_hook
from ._tasks import is_cancellation

__all__ = ["Instrument", "SendEvent", "add_instrument", "remove_instrument"]

logger = logging.getLogger("asyncsignals.instrument")

# True in the context a BackgroundDispatcher runs a queued send in: that send
# is background work, run after the code that queued it has moved on (see
# SendEvent.background). Receivers' wrappers set it back to False while they
# run, so the sends they make are parts of the background send.
background_send: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "asyncsignals.background_send", default=False
)


class SendEvent:
    """One send, as instruments see it.

    Attributes:
        signal: The signal being sent.
        sender: The sender.
        payload: The keyword arguments of the send (do not change them).
        started: ``time.perf_counter()`` when the send started.
        duration: Seconds the send took, once it has finished (else None).
        results: ``[(receiver, result), ...]`` once it has returned.
        error: The exception it raised, if it raised.
        background: True when a ``BackgroundDispatcher`` runs this send:
            it runs after the code that queued it has moved on (in a copy of
            that code's context). The sends its receivers make are not
            background sends themselves, as long as an instrument watches
            the background send.
        cancelled: True when the send ended by cancellation (of its caller):
            ``error`` is then the backend's cancellation exception
            (``asyncio.CancelledError``, ``trio.Cancelled``) or a group made
            only of them. A cancellation is not a failure: count or mark it
            apart from errors.
        data: Free for instruments to keep their own per-send state (spans,
            timers), keyed by something of their own.
    """

    __slots__ = (
        "background",
        "cancelled",
        "data",
        "duration",
        "error",
        "payload",
        "results",
        "sender",
        "signal",
        "started",
    )

    def __init__(self, signal: Signal[..., Any], sender: object, payload: Mapping[str, Any]):
        self.signal: Signal[..., Any] = signal
        self.sender: object = sender
        self.payload: Mapping[str, Any] = payload
        self.started: float = time.perf_counter()
        self.duration: float | None = None
        self.results: list[tuple[Callable[..., Any], Any]] | None = None
        self.error: BaseException | None = None
        self.cancelled: bool = False
        self.background: bool = background_send.get()
        self.data: dict[object, Any] = {}

    def __repr__(self) -> str:
        return f"<SendEvent {self.signal!r} sender={self.sender!r}>"


class Instrument:
    """Base class for instruments: override the methods you need.

    ``send_started`` and ``send_finished`` run in the sender's task (or
    thread, for ``send_sync``); ``receiver_started`` and ``receiver_finished``
    run where the receiver runs: in its own task for concurrent async
    receivers, in a worker thread for ``to_thread`` ones. An exception raised
    by an instrument is logged on ``asyncsignals.instrument`` and does not
    disturb the send.

    Only the methods an instrument overrides are called, and its receivers
    are timed one by one only when it overrides ``receiver_started`` or
    ``receiver_finished``; which ones it overrides is read when it is
    installed (a method set on the instance afterwards is not seen).

    Cancellation is reported, never as a failure: a cancelled send has
    ``event.cancelled`` true, and :meth:`is_cancellation` tells a
    receiver's cancellation from its failure.
    """

    @staticmethod
    def is_cancellation(error: BaseException | None) -> bool:
        """Whether ``error`` is a cancellation rather than a failure.

        True for ``asyncio.CancelledError``, ``trio.Cancelled``, and an
        exception group made only of them (nested groups included); False
        for None and for anything else, ``KeyboardInterrupt`` included.
        """
        return is_cancellation(error)

    def send_started(self, event: SendEvent) -> None:
        """A send is starting, before any receiver runs."""

    def send_finished(self, event: SendEvent) -> None:
        """A send has returned (``event.results``) or raised (``event.error``)."""

    def receiver_started(self, event: SendEvent, receiver: Callable[..., Any]) -> None:
        """A receiver is about to be called."""

    def receiver_finished(
        self,
        event: SendEvent,
        receiver: Callable[..., Any],
        result: object,
        error: BaseException | None,
        duration: float,
    ) -> None:
        """A receiver returned ``result`` or raised ``error`` after ``duration`` seconds.

        A cancelled receiver (its send's caller was cancelled, or a sibling
        failed) reports its cancellation exception as ``error``, or a group
        made only of them when the receiver ran tasks of its own:
        ``self.is_cancellation(error)`` tells it from a failure.
        """


def _within_background_send(wrapper: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
    """``wrapper`` run as part of a background send: what it sends is not background itself."""
    if is_async:

        async def part_of_async(**kwargs: Any) -> Any:
            token = background_send.set(False)
            try:
                return await wrapper(**kwargs)
            finally:
                background_send.reset(token)

        return part_of_async

    def part_of(**kwargs: Any) -> Any:
        token = background_send.set(False)
        try:
            return wrapper(**kwargs)
        finally:
            background_send.reset(token)

    return part_of


def _call_safely(instrument: Instrument, method: str, *arguments: object) -> None:
    try:
        getattr(instrument, method)(*arguments)
    except Exception:
        logger.exception("instrument %r failed in %s", instrument, method)


def _overrides(instrument: Instrument, method: str) -> bool:
    """Whether ``instrument`` has its own ``method``: the base class's do nothing."""
    own = getattr(instrument, method)
    return getattr(own, "__func__", None) is not getattr(Instrument, method)


class _InstrumentHook:
    """Adapts an :class:`Instrument` to the signal's send hooks.

    Only the methods the instrument overrides are called, and its receivers
    are wrapped, one by one, only for an instrument that hears of them: an
    instrument that watches whole sends costs a send no call per receiver.
    """

    __slots__ = ("hears_finish", "hears_receivers", "hears_start", "instrument")

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.hears_start = _overrides(instrument, "send_started")
        self.hears_finish = _overrides(instrument, "send_finished")
        self.hears_receivers = _overrides(instrument, "receiver_started") or _overrides(
            instrument, "receiver_finished"
        )

    def begin(
        self, signal: Signal[..., Any], sender: object, named: Mapping[str, Any]
    ) -> _InstrumentWatch:
        event = SendEvent(signal, sender, named)
        if self.hears_start:
            _call_safely(self.instrument, "send_started", event)
        return _InstrumentWatch(self, event)


class _InstrumentWatch:
    """One send under one instrument: times each receiver, reports the end."""

    __slots__ = ("event", "hook", "sees_receivers")
    muted = False

    def __init__(self, hook: _InstrumentHook, event: SendEvent) -> None:
        self.hook = hook
        # The send's event, until the send has ended (see end).
        self.event: SendEvent | None = event
        # A background send's receivers are wrapped to mark what they send
        # as not background (see SendEvent.background).
        self.sees_receivers = hook.hears_receivers or event.background

    def allows(self, receiver: Callable[..., Any]) -> bool:
        return True

    def wrap(
        self, receiver: Callable[..., Any], call: Callable[..., Any], is_async: bool
    ) -> Callable[..., Any]:
        wrapper = self._timed(receiver, call, is_async) if self.hook.hears_receivers else call
        if self.event is not None and self.event.background:
            wrapper = _within_background_send(wrapper, is_async)
        if wrapper is not call:
            # Errors and logs name the receiver, not this wrapper (see describe()).
            wrapper.__dict__["__asyncsignals_receiver__"] = receiver
        return wrapper

    def _timed(
        self, receiver: Callable[..., Any], call: Callable[..., Any], is_async: bool
    ) -> Callable[..., Any]:
        """``call`` reported to the instrument: started, then finished with its outcome."""
        # The wrappers reach the event through this watch only: see end.
        watch = self
        instrument = self.hook.instrument

        def finished(started: float, result: object, error: BaseException | None) -> None:
            duration = time.perf_counter() - started
            _call_safely(
                instrument, "receiver_finished", watch.event, receiver, result, error, duration
            )

        if is_async:

            async def timed_async(**kwargs: Any) -> Any:
                _call_safely(instrument, "receiver_started", watch.event, receiver)
                started = time.perf_counter()
                try:
                    result = await call(**kwargs)
                except BaseException as error:
                    finished(started, None, error)
                    raise
                finished(started, result, None)
                return result

            wrapper: Callable[..., Any] = timed_async
        else:

            def timed(**kwargs: Any) -> Any:
                _call_safely(instrument, "receiver_started", watch.event, receiver)
                started = time.perf_counter()
                try:
                    result = call(**kwargs)
                except BaseException as error:
                    finished(started, None, error)
                    raise
                finished(started, result, None)
                return result

            wrapper = timed
        return wrapper

    def end(
        self, results: list[tuple[Callable[..., Any], Any]] | None, error: BaseException | None
    ) -> None:
        event = self.event
        if event is None:  # pragma: no cover (defensive: a send ends once)
            return
        event.duration = time.perf_counter() - event.started
        event.results = results
        event.error = error
        event.cancelled = error is not None and is_cancellation(error)
        if self.hook.hears_finish:
            _call_safely(self.hook.instrument, "send_finished", event)
        # The event now holds the send's results and error, whose tracebacks
        # hold the frames of this send, which hold this watch: let go of the
        # event, or they would form a cycle that keeps the receivers and the
        # sender alive until the garbage collector's next pass.
        self.event = None


_lock = threading.Lock()
_everywhere: dict[Instrument, _InstrumentHook] = {}


def add_instrument(instrument: Instrument, signal: Signal[..., Any] | None = None) -> None:
    """Install ``instrument`` on ``signal``, or on every signal, now and future.

    Installing the same instrument twice in the same place is a no-op.

    Raises:
        TypeError: ``instrument`` is not an :class:`Instrument`.
    """
    if not isinstance(instrument, Instrument):  # pyright: ignore[reportUnnecessaryIsInstance] (checks what callers pass)
        raise TypeError(f"add_instrument() expects an Instrument, got {instrument!r}")
    with _lock:
        if signal is not None:
            if not any(_hook_of(hook) is instrument for hook in hooks_of(signal)):
                add_hook(signal, _InstrumentHook(instrument))
            return
        if instrument in _everywhere:
            return
        hook = _everywhere[instrument] = _InstrumentHook(instrument)
        add_everywhere(hook)
        for each in all_signals():
            add_hook(each, hook)


def remove_instrument(instrument: Instrument, signal: Signal[..., Any] | None = None) -> None:
    """Undo :func:`add_instrument` (for that signal, or everywhere); a no-op if not installed."""
    with _lock:
        if signal is not None:
            for hook in hooks_of(signal):
                if _hook_of(hook) is instrument:
                    remove_hook(signal, hook)
            return
        everywhere = _everywhere.pop(instrument, None)
        if everywhere is None:
            return
        remove_everywhere(everywhere)
        for each in all_signals():
            remove_hook(each, everywhere)


def _hook_of(hook: object) -> Instrument | None:
    return hook.instrument if isinstance(hook, _InstrumentHook) else None


# Public names show their public path in reprs and tracebacks.
for _public in (Instrument, SendEvent, add_instrument, remove_instrument):
    _public.__module__ = "asyncsignals"
