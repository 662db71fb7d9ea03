"""OpenTelemetry tracing for signals: a span per send, a child span per receiver.

Needs the ``opentelemetry`` extra (``pip install 'asyncsignals[opentelemetry]'``);
the rest of asyncsignals never imports OpenTelemetry. Install it once at
start-up, after configuring your tracer provider::

    from asyncsignals import opentelemetry as signal_tracing

    signal_tracing.instrument()                      # every signal, now and future
    signal_tracing.instrument(signal=order_shipped)  # or one signal

Each send makes a span ``send <signal name>`` that is current while the
receivers run, and each receiver a child span ``receiver <receiver name>``
that is current while it runs, so spans a receiver starts (an HTTP call, a
query) nest under it.

Outcomes:

- A receiver that raises has the exception recorded on its span
  (``span.record_exception``) and status ``ERROR``. A ``send`` that raises
  has the same on the send span; a ``send_robust`` returns its receivers'
  exceptions, so its send span keeps an unset status and counts them in
  ``asyncsignals.receiver_errors``.
- Cancellation is not an error: a cancelled receiver, or a send whose caller
  was cancelled, ends its span with ``asyncsignals.cancelled = True`` and an
  unset status (a group made only of cancellations, as a trio nursery in a
  receiver raises, counts as a cancellation). A receiver cancelled because a
  sibling failed would otherwise count as a second failure; the failure
  itself is on the sibling's span and on the send span.

Span attributes:

- send: ``asyncsignals.signal`` (the signal's name, or its repr),
  ``asyncsignals.sender.type`` (the sender's qualified type name),
  ``asyncsignals.receivers`` (receivers that returned, once the send has),
  ``asyncsignals.background`` (True for a send a ``BackgroundDispatcher``
  runs: its span starts a trace of its own, linked to the span that queued
  it). ``asyncsignals.sender`` names a class sender (Django's
  ``sender=Model``) by its qualified name; any other sender's repr
  (shortened to 200 characters) is recorded there only with
  ``instrument(record_sender_repr=True)``, since a repr may hold personal
  data.
- receiver: ``asyncsignals.signal``, ``asyncsignals.receiver`` and
  ``code.function.name`` (the receiver's qualified name).

The payload is never recorded: it may hold personal data (and so, by
default, is the sender's repr).
"""

from __future__ import annotations

import contextvars
import reprlib
import threading
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, TracerProvider
    from opentelemetry.util.types import AttributeValue
except ImportError as _missing_dependency:
    raise ImportError(
        "asyncsignals.opentelemetry needs the OpenTelemetry API, which is not installed: "
        "pip install 'asyncsignals[opentelemetry]'"
    ) from _missing_dependency

from ._instrument import Instrument, SendEvent, add_instrument, remove_instrument
from ._receivers import describe, signal_label
from ._signal import Signal
from ._tasks import is_cancellation

__all__ = ["OpenTelemetryInstrument", "instrument", "uninstrument"]

_TRACER_NAME = "asyncsignals.opentelemetry"

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = _repr.maxlong = 200
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 20


class _Call(NamedTuple):
    """One receiver call's span, the token that made it current, and the call it nests in."""

    span: Span
    token: contextvars.Token[otel_context.Context]
    outer: _Call | None


class OpenTelemetryInstrument(Instrument):
    """An :class:`~asyncsignals.Instrument` that traces sends and receivers.

    Install it with :func:`asyncsignals.add_instrument` (or use
    :func:`instrument`). The send span is started and made current in
    ``send_started``, in the sender's task or thread, and ended there in
    ``send_finished``. Each receiver span is started and made current where
    the receiver runs (its own task for a concurrent async receiver, a worker
    thread for a ``to_thread`` one), as a child of the span current there,
    which is the send span the receiver's context inherited.

    A send run by a :class:`~asyncsignals.BackgroundDispatcher` is not a
    child of the span that queued it (that code has moved on, and its span
    has usually ended): its send span starts a trace of its own, *linked* to
    the span that was current where the send was queued, with
    ``asyncsignals.background = True``. Spans inside it nest as usual.

    Args:
        tracer_provider: Where spans go; the global tracer provider when
            None (looked up through OpenTelemetry's proxy, so a provider
            set later is used too).
        record_sender_repr: Record each sender's ``repr`` as
            ``asyncsignals.sender``; off by default, see :func:`instrument`.

    Raises:
        TypeError: ``record_sender_repr`` is not a bool.
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, *, record_sender_repr: bool = False
    ) -> None:
        _check_record_sender_repr(record_sender_repr)
        self._tracer = trace.get_tracer(_TRACER_NAME, tracer_provider=tracer_provider)
        self._record_sender_repr = record_sender_repr
        # Started and finished for one receiver call run in the same context
        # (one call frame of the receiver's wrapper), so that context is the
        # exact place to keep the call's span, even when the same receiver
        # runs twice at once in one send.
        self._calls: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
            f"asyncsignals.opentelemetry.calls.{id(self):x}", default=None
        )

    def send_started(self, event: SendEvent) -> None:
        """Start the send span and make it current for the receivers."""
        signal = event.signal
        sender = event.sender
        sender_type = type(sender)
        attributes: dict[str, AttributeValue] = {
            "asyncsignals.signal": signal_label(signal),
            "asyncsignals.sender.type": _qualified_name(sender_type),
        }
        if self._record_sender_repr:
            attributes["asyncsignals.sender"] = _repr.repr(sender)
        elif isinstance(sender, type):
            attributes["asyncsignals.sender"] = _qualified_name(sender)
        parent: otel_context.Context | None = None
        links: list[Link] = []
        if event.background:
            # The span current here is the one that queued the send, which
            # has moved on (and often ended): link to it from a trace of its own.
            attributes["asyncsignals.background"] = True
            queued_under = trace.get_current_span().get_span_context()
            if queued_under.is_valid:
                links.append(Link(queued_under))
            parent = trace.set_span_in_context(trace.INVALID_SPAN)
        span = self._tracer.start_span(
            f"send {signal.name}" if signal.name is not None else "send",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=links,
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        event.data[self] = (span, token)

    def send_finished(self, event: SendEvent) -> None:
        """Restore the sender's current span and end the send span with its outcome."""
        span: Span
        span, token = event.data.pop(self)
        otel_context.detach(token)
        if event.results is not None:
            span.set_attribute("asyncsignals.receivers", len(event.results))
            errors = sum(isinstance(result, Exception) for _, result in event.results)
            if errors:
                span.set_attribute("asyncsignals.receiver_errors", errors)
        _record_outcome(span, event.error)
        span.end()

    def receiver_started(self, event: SendEvent, receiver: Callable[..., Any]) -> None:
        """Start the receiver's span under the current one and make it current."""
        name = describe(receiver).removesuffix("()")
        span = self._tracer.start_span(
            f"receiver {_short_name(receiver)}",
            kind=SpanKind.INTERNAL,
            attributes={
                "asyncsignals.signal": signal_label(event.signal),
                "asyncsignals.receiver": name,
                "code.function.name": name,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        self._calls.set(_Call(span, token, self._calls.get()))

    def receiver_finished(
        self,
        event: SendEvent,
        receiver: Callable[..., Any],
        result: object,
        error: BaseException | None,
        duration: float,
    ) -> None:
        """End the receiver's span with its outcome and restore the span current before it."""
        call = self._calls.get()
        assert call is not None, "receiver_finished without receiver_started"
        self._calls.set(call.outer)
        otel_context.detach(call.token)
        _record_outcome(call.span, error)
        call.span.end()

    def __repr__(self) -> str:
        return f"<OpenTelemetryInstrument tracer={self._tracer!r}>"


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_record_sender_repr(record_sender_repr: object) -> None:
    if not isinstance(record_sender_repr, bool):
        raise TypeError(f"record_sender_repr must be True or False, got {record_sender_repr!r}")


def _short_name(receiver: Callable[..., Any]) -> str:
    """The receiver's qualified name without its module: low-cardinality, for span names."""
    target = getattr(receiver, "__func__", receiver)
    name = getattr(target, "__qualname__", None)
    return name if isinstance(name, str) else type(receiver).__qualname__


def _record_outcome(span: Span, error: BaseException | None) -> None:
    if error is None:
        return
    if is_cancellation(error):
        span.set_attribute("asyncsignals.cancelled", True)
        return
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


_lock = threading.Lock()
_everywhere: list[OpenTelemetryInstrument] = []
_on_signal: weakref.WeakKeyDictionary[Signal[..., Any], OpenTelemetryInstrument] = (
    weakref.WeakKeyDictionary()
)


def instrument(
    tracer_provider: TracerProvider | None = None,
    signal: Signal[..., Any] | None = None,
    *,
    record_sender_repr: bool = False,
) -> OpenTelemetryInstrument:
    """Trace every signal (now and future), or only ``signal``, with a new instrument.

    Calling it again for the same place replaces the instrument installed
    there (to switch tracer providers, say). Tracing a signal both here and
    through ``instrument()`` for every signal makes two send spans per send;
    pick one.

    Args:
        tracer_provider: Where spans go; the global tracer provider when None.
        signal: The signal to trace; every signal when None.
        record_sender_repr: Record each sender's ``repr`` (shortened to 200
            characters) as ``asyncsignals.sender``. Off by default: a repr
            may hold personal data, so only the sender's type is recorded.

    Returns:
        The installed :class:`OpenTelemetryInstrument`.

    Raises:
        TypeError: ``record_sender_repr`` is not a bool (nothing is installed).
    """
    installed = OpenTelemetryInstrument(tracer_provider, record_sender_repr=record_sender_repr)
    with _lock:
        _uninstrument(signal)
        add_instrument(installed, signal)
        if signal is None:
            _everywhere.append(installed)
        else:
            _on_signal[signal] = installed
    return installed


def uninstrument(signal: Signal[..., Any] | None = None) -> None:
    """Stop what :func:`instrument` started for ``signal`` (or for every signal).

    Sends already in flight finish their spans. A no-op when nothing is
    installed there. Instruments installed with
    :func:`asyncsignals.add_instrument` are left alone.
    """
    with _lock:
        _uninstrument(signal)


def _uninstrument(signal: Signal[..., Any] | None) -> None:
    if signal is None:
        for installed in _everywhere:
            remove_instrument(installed)
        _everywhere.clear()
        return
    if signal in _on_signal:
        remove_instrument(_on_signal.pop(signal), signal)
