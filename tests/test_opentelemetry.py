"""OpenTelemetry: a span per send, a child span per receiver, outcomes recorded."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from helpers import runs_tasks
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from asyncsignals import BackgroundDispatcher, Signal, add_instrument, remove_instrument
from asyncsignals._instrument import background_send
from asyncsignals.opentelemetry import OpenTelemetryInstrument, instrument, uninstrument

pytestmark = pytest.mark.anyio


class BoomError(Exception):
    pass


class Tracing:
    """A private tracer provider whose finished spans are kept in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests")

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.named(name)
        return span


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    identifier: int = span.context.span_id
    return identifier


def exception_types(span: ReadableSpan) -> list[object]:
    return [
        event.attributes["exception.type"]
        for event in span.events
        if event.name == "exception" and event.attributes is not None
    ]


@pytest.fixture
def tracing() -> Tracing:
    return Tracing()


@pytest.fixture
def signal(tracing: Tracing) -> Iterator[Signal[Any, Any]]:
    """A signal named order_shipped, traced to ``tracing`` for the test."""
    signal = Signal(name="order_shipped")
    watcher = OpenTelemetryInstrument(tracing.provider)
    add_instrument(watcher, signal)
    yield signal
    remove_instrument(watcher, signal)


def audit(sender: object, **kwargs: Any) -> str:
    return "audited"


def ledger(sender: object, **kwargs: Any) -> str:
    return "booked"


async def notify_warehouse(sender: object, **kwargs: Any) -> str:
    await anyio.lowlevel.checkpoint()
    return "notified"


async def email_customer(sender: object, **kwargs: Any) -> str:
    await anyio.lowlevel.checkpoint()
    return "mailed"


NOT_THREADED: frozenset[Any] = frozenset()


def print_label(sender: object, **kwargs: Any) -> str:
    return threading.current_thread().name


class Shop:
    def __repr__(self) -> str:
        return "<Shop main>"


async def test_send_span_has_signal_sender_and_receiver_count(
    tracing: Tracing, signal: Signal[Any, Any]
) -> None:
    """The send span is named after the signal, names the sender's type and how many ran."""
    signal.connect(audit)
    signal.connect(ledger)
    await signal.send(Shop(), order="#42")
    send = tracing.one("send order_shipped")
    assert send.kind is trace.SpanKind.INTERNAL
    assert dict(send.attributes or {}) == {
        "asyncsignals.signal": "order_shipped",
        "asyncsignals.sender.type": f"{__name__}.Shop",
        "asyncsignals.receivers": 2,
    }
    assert send.status.status_code is StatusCode.UNSET
    assert parent_id(send) is None


class Customer:
    """A sender whose repr holds personal data."""

    def __repr__(self) -> str:
        return "<Customer jane@example.com>"


def test_the_senders_repr_is_recorded_only_when_asked_for(tracing: Tracing) -> None:
    """By default a span names the sender's type only; its repr only with record_sender_repr."""
    signal = Signal(name="order_shipped")
    plain = OpenTelemetryInstrument(tracing.provider)
    add_instrument(plain, signal)
    signal.send_sync(Customer())
    remove_instrument(plain, signal)
    revealing = instrument(tracing.provider, signal=signal, record_sender_repr=True)
    signal.send_sync(Customer())
    uninstrument(signal)
    assert revealing is not plain
    default, opted_in = (dict(span.attributes or {}) for span in tracing.spans())
    assert "jane@example.com" not in str(default)
    assert default["asyncsignals.sender.type"] == f"{__name__}.Customer"
    assert "asyncsignals.sender" not in default
    assert opted_in["asyncsignals.sender"] == "<Customer jane@example.com>"
    assert opted_in["asyncsignals.sender.type"] == f"{__name__}.Customer"


def test_a_class_sender_is_named_by_its_qualified_name(tracing: Tracing) -> None:
    """A class as sender (Django's sender=Model) is named, since a class holds no data."""
    signal = Signal(name="order_shipped")
    instrument(tracing.provider, signal=signal)
    try:
        signal.send_sync(Customer)
    finally:
        uninstrument(signal)
    attributes = dict(tracing.one("send order_shipped").attributes or {})
    assert attributes["asyncsignals.sender"] == f"{__name__}.Customer"
    assert attributes["asyncsignals.sender.type"] == "builtins.type"


def test_record_sender_repr_must_be_a_bool(tracing: Tracing) -> None:
    """record_sender_repr given anything but a bool is a TypeError naming it; nothing installed."""
    signal = Signal(name="order_shipped")
    with pytest.raises(TypeError, match="record_sender_repr must be True or False, got 'yes'"):
        instrument(tracing.provider, signal=signal, record_sender_repr="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="record_sender_repr"):
        OpenTelemetryInstrument(tracing.provider, record_sender_repr=1)  # type: ignore[arg-type]
    signal.send_sync(None)
    assert tracing.spans() == []


@pytest.mark.parametrize(
    ("receivers", "threaded"),
    [
        pytest.param([audit, ledger], NOT_THREADED, id="sync"),
        pytest.param([notify_warehouse], NOT_THREADED, id="single-async"),
        pytest.param([notify_warehouse, email_customer], NOT_THREADED, id="concurrent-async"),
        pytest.param([print_label], frozenset({print_label}), id="to-thread"),
        pytest.param(
            [audit, notify_warehouse, email_customer, print_label],
            frozenset({print_label}),
            id="mixed",
        ),
    ],
)
@pytest.mark.parametrize("concurrent", [True, False])
async def test_each_receiver_span_is_a_child_of_the_send_span(
    tracing: Tracing, receivers: list[Any], threaded: frozenset[Any], concurrent: bool
) -> None:
    """Every receiver, inline, in its own task or in a thread, gets a span under the send's."""
    signal = Signal(name="order_shipped", concurrent=concurrent)
    for receiver in receivers:
        signal.connect(receiver, to_thread=receiver in threaded)
    watcher = OpenTelemetryInstrument(tracing.provider)
    add_instrument(watcher, signal)
    try:
        await signal.send(None, order="#42")
    finally:
        remove_instrument(watcher, signal)
    send = tracing.one("send order_shipped")
    children = [span for span in tracing.spans() if span is not send]
    assert sorted(span.name for span in children) == sorted(
        f"receiver {receiver.__qualname__}" for receiver in receivers
    )
    for child in children:
        assert parent_id(child) == span_id(send)
        assert child.end_time is not None
        assert send.end_time is not None
        assert child.end_time <= send.end_time
    assert tracing.one(f"receiver {receivers[0].__qualname__}").attributes == {
        "asyncsignals.signal": "order_shipped",
        "asyncsignals.receiver": f"{__name__}.{receivers[0].__qualname__}",
        "code.function.name": f"{__name__}.{receivers[0].__qualname__}",
    }


async def test_spans_a_receiver_starts_nest_under_its_receiver_span(tracing: Tracing) -> None:
    """The receiver span is current while the receiver runs, in every kind of receiver."""
    signal = Signal(name="order_shipped")
    inner: dict[str, trace.Span] = {}

    def sync_work(sender: object, **kwargs: Any) -> None:
        with tracing.tracer.start_as_current_span("sync query") as span:
            inner["sync"] = span

    async def async_work(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        with tracing.tracer.start_as_current_span("async query") as span:
            inner["async"] = span
            await anyio.lowlevel.checkpoint()

    def thread_work(sender: object, **kwargs: Any) -> None:
        with tracing.tracer.start_as_current_span("thread query") as span:
            inner["thread"] = span

    signal.connect(sync_work)
    signal.connect(async_work)
    signal.connect(thread_work, to_thread=True)
    watcher = OpenTelemetryInstrument(tracing.provider)
    add_instrument(watcher, signal)
    try:
        await signal.send(None)
    finally:
        remove_instrument(watcher, signal)
    for kind, receiver in (("sync", sync_work), ("async", async_work), ("thread", thread_work)):
        receiver_span = tracing.one(f"receiver {receiver.__qualname__}")
        assert parent_id(tracing.one(f"{kind} query")) == span_id(receiver_span)


async def test_send_span_nests_in_the_senders_span_and_is_current_only_during_the_send(
    tracing: Tracing, signal: Signal[Any, Any]
) -> None:
    """The sender's current span is the send span's parent, and is current again afterwards."""
    seen: list[trace.Span] = []

    async def look(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()

    signal.connect(look)
    with tracing.tracer.start_as_current_span("request") as request:
        await signal.send(None)
        seen.append(trace.get_current_span())
    assert seen == [request]
    assert parent_id(tracing.one("send order_shipped")) == span_id(tracing.one("request"))


async def test_a_send_from_a_receiver_nests_under_that_receiver(
    tracing: Tracing, signal: Signal[Any, Any]
) -> None:
    """A receiver that sends another signal puts that send's spans under its own span."""
    payment_settled = Signal(name="payment_settled")
    watcher = OpenTelemetryInstrument(tracing.provider)
    add_instrument(watcher, payment_settled)

    async def settle(sender: object, **kwargs: Any) -> None:
        await payment_settled.send(sender)

    payment_settled.connect(audit)
    signal.connect(settle)
    try:
        await signal.send(None)
    finally:
        remove_instrument(watcher, payment_settled)
    settle_span = tracing.one(f"receiver {settle.__qualname__}")
    inner_send = tracing.one("send payment_settled")
    assert parent_id(inner_send) == span_id(settle_span)
    assert parent_id(tracing.one("receiver audit")) == span_id(inner_send)


@pytest.fixture(params=["dispatcher", "marked-context"])
def in_background(request: pytest.FixtureRequest) -> Callable[..., Awaitable[None]]:
    """Runs ``signal.send_robust(sender)`` as background work, queued where it is called.

    Through a real BackgroundDispatcher, and in a task whose context is marked
    as the dispatcher marks it (so the instruments' side is pinned on its own).
    """

    async def through_a_dispatcher(signal: Signal[Any, Any], sender: object) -> None:
        async with BackgroundDispatcher() as dispatcher:
            dispatcher.send(signal, sender)

    async def in_a_marked_context(signal: Signal[Any, Any], sender: object) -> None:
        context = contextvars.copy_context()
        context.run(background_send.set, True)
        async with anyio.create_task_group() as tasks:
            context.run(tasks.start_soon, signal.send_robust, sender)

    return through_a_dispatcher if request.param == "dispatcher" else in_a_marked_context


async def test_a_background_send_links_to_the_span_that_queued_it(
    tracing: Tracing,
    signal: Signal[Any, Any],
    in_background: Callable[..., Awaitable[None]],
) -> None:
    """A dispatcher's send starts a trace of its own, linked to the request span that queued it."""
    payment_settled = Signal(name="payment_settled")
    watcher = OpenTelemetryInstrument(tracing.provider)
    add_instrument(watcher, payment_settled)

    async def settle(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        await payment_settled.send(sender)

    def settle_now(sender: object, **kwargs: Any) -> None:
        payment_settled.send_sync(sender)

    payment_settled.connect(audit)
    signal.connect(settle)
    signal.connect(settle_now)
    try:
        with tracing.tracer.start_as_current_span("request"):
            await in_background(signal, None)
    finally:
        remove_instrument(watcher, payment_settled)
    request_span = tracing.one("request")
    send = tracing.one("send order_shipped")
    assert parent_id(send) is None
    assert send.context is not None
    assert request_span.context is not None
    assert send.context.trace_id != request_span.context.trace_id
    assert [link.context.span_id for link in send.links] == [span_id(request_span)]
    assert dict(send.attributes or {})["asyncsignals.background"] is True
    # Within the background send, spans nest as usual, async or sync: no further links.
    inner_sends = tracing.named("send payment_settled")
    assert len(inner_sends) == 2
    for receiver in (settle, settle_now):
        receiver_span = tracing.one(f"receiver {receiver.__qualname__}")
        assert parent_id(receiver_span) == span_id(send)
        (inner_send,) = (each for each in inner_sends if parent_id(each) == span_id(receiver_span))
        assert list(inner_send.links) == []
        assert "asyncsignals.background" not in dict(inner_send.attributes or {})


async def test_a_background_send_queued_outside_any_span_has_no_link(
    tracing: Tracing,
    signal: Signal[Any, Any],
    in_background: Callable[..., Awaitable[None]],
) -> None:
    """Queued where no span was current, a dispatcher's send is a root span without links."""
    signal.connect(audit)
    await in_background(signal, None)
    send = tracing.one("send order_shipped")
    assert parent_id(send) is None
    assert list(send.links) == []


async def test_sends_outside_a_dispatcher_are_not_background(
    tracing: Tracing, signal: Signal[Any, Any]
) -> None:
    """A send awaited in a task the request started is a child of the request span, unlinked."""
    signal.connect(notify_warehouse)
    with tracing.tracer.start_as_current_span("request"):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(signal.send, None)
    send = tracing.one("send order_shipped")
    assert parent_id(send) == span_id(tracing.one("request"))
    assert list(send.links) == []
    assert "asyncsignals.background" not in dict(send.attributes or {})


async def test_a_receiver_connected_twice_gets_two_spans(
    tracing: Tracing, signal: Signal[Any, Any]
) -> None:
    """Connected for any sender and for this one, a receiver runs twice: two ended spans."""
    shop = Shop()

    async def slow_then_fast(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()

    signal.connect(slow_then_fast)
    signal.connect(slow_then_fast, sender=shop)
    await signal.send(shop)
    spans = tracing.named(f"receiver {slow_then_fast.__qualname__}")
    assert len(spans) == 2
    assert len({span_id(span) for span in spans}) == 2
    send = tracing.one("send order_shipped")
    assert send.attributes is not None
    assert send.attributes["asyncsignals.receivers"] == 2


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_send_records_a_receiver_failure_on_both_spans(
    tracing: Tracing, signal: Signal[Any, Any], kind: str
) -> None:
    """In send, a failing receiver's span and the send span both have the error."""

    def sync_fails(sender: object, **kwargs: Any) -> None:
        raise BoomError("out of stock")

    async def async_fails(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise BoomError("out of stock")

    fails = sync_fails if kind == "sync" else async_fails
    signal.connect(fails)
    with pytest.raises(BoomError):
        await signal.send(None)
    receiver_span = tracing.one(f"receiver {fails.__qualname__}")
    send = tracing.one("send order_shipped")
    for span in (receiver_span, send):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "BoomError: out of stock"
        assert exception_types(span) == [f"{__name__}.BoomError"]
    assert send.attributes is not None
    assert "asyncsignals.receivers" not in send.attributes


async def test_send_robust_records_the_error_on_the_receiver_span_only(
    tracing: Tracing, signal: Signal[Any, Any]
) -> None:
    """In send_robust, the failing receiver's span has the error; the send span counts it."""

    async def fails(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise BoomError("out of stock")

    signal.connect(fails)
    signal.connect(notify_warehouse)
    results = await signal.send_robust(None)
    assert isinstance(results[0][1], BoomError)
    receiver_span = tracing.one(f"receiver {fails.__qualname__}")
    assert receiver_span.status.status_code is StatusCode.ERROR
    assert exception_types(receiver_span) == [f"{__name__}.BoomError"]
    assert tracing.one("receiver notify_warehouse").status.status_code is StatusCode.UNSET
    send = tracing.one("send order_shipped")
    assert send.status.status_code is StatusCode.UNSET
    assert exception_types(send) == []
    assert send.attributes is not None
    assert send.attributes["asyncsignals.receivers"] == 2
    assert send.attributes["asyncsignals.receiver_errors"] == 1


async def test_a_sibling_cancelled_by_a_failure_is_marked_cancelled_not_failed(
    tracing: Tracing, signal: Signal[Any, Any]
) -> None:
    """The receiver cancelled because another failed is marked cancelled, status unset."""

    async def fails(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise BoomError("out of stock")

    async def waits(sender: object, **kwargs: Any) -> None:
        await anyio.sleep_forever()

    signal.connect(waits)
    signal.connect(fails)
    with pytest.raises(BoomError):
        await signal.send(None)
    waiting = tracing.one(f"receiver {waits.__qualname__}")
    assert waiting.attributes is not None
    assert waiting.attributes["asyncsignals.cancelled"] is True
    assert waiting.status.status_code is StatusCode.UNSET
    assert exception_types(waiting) == []
    assert tracing.one("send order_shipped").status.status_code is StatusCode.ERROR


async def waits_forever(sender: object, **kwargs: Any) -> None:
    await anyio.sleep_forever()


@pytest.mark.parametrize(
    "receivers",
    [[waits_forever], [waits_forever, runs_tasks], [runs_tasks]],
    ids=["one", "two", "one-running-tasks"],
)
async def test_a_cancelled_send_is_never_an_error_on_any_span(
    tracing: Tracing, signal: Signal[Any, Any], receivers: list[Callable[..., Any]]
) -> None:
    """Cancelling the caller ends every span marked cancelled, none an error, for any receivers."""
    for receiver in receivers:
        signal.connect(receiver)
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(signal.send, None)
        await anyio.wait_all_tasks_blocked()
        task_group.cancel_scope.cancel()
    spans = tracing.spans()
    assert sorted(span.name for span in spans) == sorted(
        ["send order_shipped"] + [f"receiver {receiver.__qualname__}" for receiver in receivers]
    )
    for span in spans:
        assert span.status.status_code is StatusCode.UNSET, span.name
        assert exception_types(span) == [], span.name
        assert span.attributes is not None
        assert span.attributes["asyncsignals.cancelled"] is True, span.name


async def test_a_timed_out_receiver_is_recorded_as_its_timeout(
    tracing: Tracing, signal: Signal[Any, Any]
) -> None:
    """A receiver past its connection's timeout has a TimeoutError on its span."""

    async def slow(sender: object, **kwargs: Any) -> None:
        await anyio.sleep_forever()

    signal.connect(slow, timeout=0.01)
    results = await signal.send_robust(None)
    assert isinstance(results[0][1], TimeoutError)
    slow_span = tracing.one(f"receiver {slow.__qualname__}")
    assert slow_span.status.status_code is StatusCode.ERROR
    assert exception_types(slow_span) == ["TimeoutError"]


def test_send_sync_is_traced(tracing: Tracing, signal: Signal[Any, Any]) -> None:
    """send_sync makes the same spans, in the calling thread."""
    signal.connect(audit)
    assert signal.send_sync(None) == [(audit, "audited")]
    assert parent_id(tracing.one("receiver audit")) == span_id(tracing.one("send order_shipped"))
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_span_names_stay_short_for_methods_objects_and_unnamed_signals(tracing: Tracing) -> None:
    """Bound methods and callable objects name their span by qualified name; unnamed: 'send'."""

    class Warehouse:
        def notify(self, sender: object, **kwargs: Any) -> None:
            pass

        def __call__(self, sender: object, **kwargs: Any) -> None:
            pass

    warehouse = Warehouse()
    signal = Signal()
    signal.connect(warehouse.notify)
    signal.connect(warehouse)
    watcher = OpenTelemetryInstrument(tracing.provider)
    add_instrument(watcher, signal)
    signal.send_sync(None)
    remove_instrument(watcher, signal)
    qualname = Warehouse.__qualname__
    assert sorted(span.name for span in tracing.spans()) == [
        f"receiver {qualname}",
        f"receiver {qualname}.notify",
        "send",
    ]
    method_span = tracing.one(f"receiver {qualname}.notify")
    assert method_span.attributes is not None
    assert method_span.attributes["asyncsignals.receiver"] == f"{__name__}.{qualname}.notify"
    send = tracing.one("send")
    assert send.attributes is not None
    assert send.attributes["asyncsignals.signal"] == repr(signal)


def test_the_global_tracer_provider_is_used_by_default() -> None:
    """Without a tracer provider the instrument uses the global one (a no-op here)."""
    signal = Signal(name="order_shipped")
    signal.connect(audit)
    watcher = OpenTelemetryInstrument()
    add_instrument(watcher, signal)
    try:
        assert signal.send_sync(None) == [(audit, "audited")]
    finally:
        remove_instrument(watcher, signal)
    assert repr(watcher).startswith("<OpenTelemetryInstrument tracer=")


def test_instrument_traces_one_signal_until_uninstrumented(tracing: Tracing) -> None:
    """instrument(signal=...) traces that signal only; uninstrument(signal) stops it."""
    traced = Signal(name="traced")
    untraced = Signal(name="untraced")
    traced.connect(audit)
    untraced.connect(audit)
    installed = instrument(tracing.provider, signal=traced)
    assert isinstance(installed, OpenTelemetryInstrument)
    traced.send_sync(None)
    untraced.send_sync(None)
    uninstrument(traced)
    uninstrument(traced)  # a second time is a no-op
    traced.send_sync(None)
    assert [span.name for span in tracing.spans()] == ["receiver audit", "send traced"]


def test_instrument_everywhere_covers_every_signal_until_uninstrumented(tracing: Tracing) -> None:
    """instrument() traces signals made before and after it; uninstrument() stops all of it."""
    before = Signal(name="before")
    instrument(tracing.provider)
    after = Signal(name="after")
    try:
        before.send_sync(None)
        after.send_sync(None)
    finally:
        uninstrument()
    before.send_sync(None)
    after.send_sync(None)
    assert sorted(span.name for span in tracing.spans()) == ["send after", "send before"]


def test_instrument_again_replaces_the_tracer_provider(tracing: Tracing) -> None:
    """A second instrument() for the same place replaces the first: one span, new provider."""
    first = Tracing()
    signal = Signal(name="order_shipped")
    instrument(first.provider, signal=signal)
    instrument(tracing.provider, signal=signal)
    instrument(first.provider)
    instrument(tracing.provider)
    try:
        signal.send_sync(None)
    finally:
        uninstrument()
        uninstrument(signal)
    assert first.spans() == []
    assert [span.name for span in tracing.spans()] == ["send order_shipped"] * 2
