"""The Redis bridge's envelope: what a receiver may know of the event it runs for.

Each event carries, beside its payload, an event id, the publish time, the
publishing bridge (its origin) and, with OpenTelemetry installed, the W3C
trace context of the publisher's span. This module holds what those become
on the consuming side (:class:`Envelope`, read with :func:`current_event`),
the trace context's injection and extraction, and :class:`Deduplicator`,
which drops an event delivered again. It never imports redis, and needs
OpenTelemetry only when it is installed.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import functools
import threading
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "Deduplicator",
    "Envelope",
    "Origin",
    "current_envelope",
    "current_event",
    "in_trace",
    "trace_context",
]


@dataclasses.dataclass(frozen=True)
class Origin:
    """Who published an event: a bridge, by its application and consumer name.

    Attributes:
        app: The publishing bridge's ``app``, or None when it had none.
        consumer: The publishing bridge's ``consumer`` name (its process).
    """

    app: str | None
    consumer: str


@dataclasses.dataclass(frozen=True)
class Envelope:
    """What the bridge knows of the event a receiver runs for.

    Attributes:
        id: The event's id, made by the publisher, the same on every
            delivery of it: key deduplication on it (delivery is at least
            once). An entry published before events had ids (wire version 1)
            has its stream entry id here, which a redelivery keeps too.
        published_at: When it was published, in seconds since the epoch, on
            the publisher's clock (Redis's clock for version 1 entries).
        origin: The bridge that published it; None for version 1 entries.
        deliveries: How many times Redis has handed the entry to a
            consumer of the group, this time included: 1 unless a consumer
            stopped (or its send timed out) before acknowledging it.
    """

    id: str
    published_at: float
    origin: Origin | None
    deliveries: int


# The envelope of the event being delivered, in the context its send runs in.
current_envelope: contextvars.ContextVar[Envelope | None] = contextvars.ContextVar(
    "asyncsignals.redis.current_event", default=None
)


def current_event() -> Envelope | None:
    """The envelope of the event whose receivers are running, or None outside them.

    Inside a receiver the bridge runs (and in what it calls, awaits or
    starts in that context) this is the event's :class:`Envelope`: its id
    (the same on each delivery: deduplicate on it), when and by whom it was
    published, and how many times Redis delivered it. None anywhere else,
    including in receivers of a local ``send``.
    """
    return current_envelope.get()


class Deduplicator:
    """Remembers the last ``window`` event ids, to drop an event delivered again.

    Delivery is at least once: a work event may run twice. Within one
    process, a receiver skips what it ran already::

        seen = Deduplicator(window=10_000)

        @receiver(order_shipped)
        async def email_customer(sender, order_id, **kwargs):
            event = current_event()
            if event is not None and seen.seen(event.id):
                return
            ...

    Memory is bounded by ``window``; an id older than the last ``window`` is
    forgotten and counts as new. It remembers within one process only: an
    event claimed by another process after this one stopped runs there
    again, so side effects that must happen once still need an idempotent
    write (an upsert, a unique key on the event id). Thread-safe.

    Args:
        window: How many of the latest ids are remembered.

    Raises:
        ValueError: ``window`` is below 1.
    """

    def __init__(self, window: int = 10_000) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window!r}")
        self.window = window
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def seen(self, event_id: str) -> bool:
        """Whether ``event_id`` is among the last ``window`` ids; remember it if not."""
        with self._lock:
            if event_id in self._ids:
                return True
            self._ids[event_id] = None
            if len(self._ids) > self.window:
                self._ids.popitem(last=False)
            return False

    def __repr__(self) -> str:
        return f"<Deduplicator {len(self._ids)} of window={self.window}>"


@functools.cache
def _trace_propagator() -> TraceContextTextMapPropagator | None:
    """W3C trace context propagation, when OpenTelemetry is installed (it is optional).

    Looked up once: a failed import searches the path again each time, which
    would cost every publish about as much as its round trip to Redis.
    """
    try:
        from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
            TraceContextTextMapPropagator,
        )
    except ImportError:
        return None
    return TraceContextTextMapPropagator()


def trace_context() -> dict[str, str]:
    """The current span's W3C trace context (``traceparent``, ``tracestate``), or ``{}``.

    Empty without OpenTelemetry, or when no span is current.
    """
    propagator = _trace_propagator()
    carrier: dict[str, str] = {}
    if propagator is not None:
        propagator.inject(carrier)
    return carrier


def in_trace(trace: Mapping[str, str]) -> contextlib.AbstractContextManager[None]:
    """Make the publisher's span, from its trace context, the parent of what runs inside.

    The receivers' spans (``asyncsignals.opentelemetry``) and the spans they
    start then belong to the publisher's trace, across processes. Does
    nothing without a trace context, or without OpenTelemetry.
    """
    propagator = _trace_propagator() if trace else None
    if propagator is None:
        return _UNTRACED
    return _in_trace(propagator, trace)


# Reusable: what an event without a trace context runs in, at no cost.
_UNTRACED: Final = contextlib.nullcontext()


@contextlib.contextmanager
def _in_trace(
    propagator: TraceContextTextMapPropagator, trace: Mapping[str, str]
) -> Generator[None]:
    from opentelemetry import context as otel_context  # noqa: PLC0415

    token = otel_context.attach(propagator.extract(trace))
    try:
        yield
    finally:
        otel_context.detach(token)


# Public names show their public path in reprs and tracebacks.
for _public in (Deduplicator, Envelope, Origin, current_event):
    _public.__module__ = "asyncsignals.redis"
del _public
