"""BackgroundDispatcher: sends that return at once, bounded, drained or reported at shutdown."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from helpers import eventually, no_unawaited_coroutines, running_tasks

from asyncsignals import (
    BackgroundDispatcher,
    BackgroundSend,
    DispatcherClosedError,
    DispatcherFullError,
    ShutdownReport,
    Signal,
)

pytestmark = pytest.mark.anyio

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class Fatal(BaseException):
    """A BaseException that is not an Exception, as KeyboardInterrupt is."""


class Gate:
    """An async receiver that records its calls and waits until opened."""

    def __init__(self) -> None:
        self.opened = anyio.Event()
        self.calls: list[tuple[object, dict[str, Any]]] = []
        self.finished = 0

    async def __call__(self, sender: object, **kwargs: Any) -> str:
        self.calls.append((sender, kwargs))
        await self.opened.wait()
        self.finished += 1
        return "done"


def background_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "asyncsignals.background"]


async def test_send_returns_before_the_receivers_run() -> None:
    """send() queues and returns without yielding; the receivers run afterwards."""
    signal = Signal(name="order_shipped")
    calls: list[tuple[object, dict[str, Any]]] = []

    async def email(sender: object, **kwargs: Any) -> None:
        calls.append((sender, kwargs))

    signal.connect(email)
    async with BackgroundDispatcher() as dispatcher:
        # Already cancelled, yet no Cancelled: send() is not a cancellation point.
        with anyio.CancelScope() as scope:  # noqa: ASYNC100 - that is the point
            scope.cancel()
            dispatcher.send(signal, "shop", order=42)
        assert not scope.cancelled_caught
        assert calls == []
        await eventually(lambda: dispatcher.completed == 1)
    assert calls == [("shop", {"signal": signal, "order": 42})]


async def test_receivers_of_every_kind_run_with_the_senders_context() -> None:
    """Sync and async receivers run via send_robust, seeing the caller's contextvars."""
    signal = Signal(providing_args=["order"], name="order_shipped")
    seen: list[tuple[str, str, int]] = []

    def audit(sender: object, order: int, **kwargs: Any) -> None:
        seen.append(("audit", request_id.get(), order))

    async def email(sender: object, order: int, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(("email", request_id.get(), order))

    signal.connect(audit)
    signal.connect(email)
    async with BackgroundDispatcher() as dispatcher:
        token = request_id.set("req-1")
        dispatcher.send(signal, None, order=1)
        request_id.reset(token)
        await dispatcher.send_wait(signal, None, order=2)
    assert sorted(seen) == [
        ("audit", "-", 2),
        ("audit", "req-1", 1),
        ("email", "-", 2),
        ("email", "req-1", 1),
    ]
    assert dispatcher.report == ShutdownReport(accepted=2, completed=2, errors=0, not_completed=())


async def test_send_raises_dispatcher_full_when_the_queue_is_full() -> None:
    """With max_pending queued and every worker busy, send() raises and queues nothing."""
    signal = Signal(name="order_shipped")
    gate = Gate()
    signal.connect(gate)
    async with BackgroundDispatcher(max_pending=2, max_concurrent=1) as dispatcher:
        dispatcher.send(signal, 1)
        await eventually(lambda: dispatcher.running == 1)
        dispatcher.send(signal, 2)
        dispatcher.send(signal, 3)
        assert dispatcher.queued == 2
        with pytest.raises(DispatcherFullError, match=r"full \(2 sends queued\).*send_wait"):
            dispatcher.send(signal, 4)
        gate.opened.set()
    assert [sender for sender, _ in gate.calls] == [1, 2, 3]
    assert dispatcher.report is not None
    assert dispatcher.report.accepted == dispatcher.report.completed == 3


async def test_send_wait_waits_for_room_then_queues() -> None:
    """send_wait() on a full queue waits until a worker takes a send, then queues its own."""
    signal = Signal(name="order_shipped")
    gate = Gate()
    signal.connect(gate)
    returned = anyio.Event()
    async with BackgroundDispatcher(max_pending=1, max_concurrent=1) as dispatcher:
        dispatcher.send(signal, 1)
        await eventually(lambda: dispatcher.running == 1)
        dispatcher.send(signal, 2)

        async def wait_for_room() -> None:
            await dispatcher.send_wait(signal, 3)
            returned.set()

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(wait_for_room)
            await anyio.sleep(0.01)
            assert not returned.is_set()
            assert dispatcher.queued == 1
            gate.opened.set()
            await returned.wait()
    assert [sender for sender, _ in gate.calls] == [1, 2, 3]


async def test_send_wait_with_room_does_not_yield() -> None:
    """send_wait() with room queues without a cancellation point, as send() does."""
    signal = Signal()
    async with BackgroundDispatcher() as dispatcher:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await dispatcher.send_wait(signal, None)
        assert not scope.cancelled_caught
    assert dispatcher.report is not None
    assert dispatcher.report.completed == 1


async def test_send_wait_cancelled_while_waiting_queues_nothing() -> None:
    """A send_wait() cancelled while waiting for room leaves nothing queued."""
    signal = Signal()
    gate = Gate()
    signal.connect(gate)
    async with BackgroundDispatcher(max_pending=1, max_concurrent=1) as dispatcher:
        dispatcher.send(signal, 1)
        await eventually(lambda: dispatcher.running == 1)
        dispatcher.send(signal, 2)
        with anyio.move_on_after(0.01) as scope:
            await dispatcher.send_wait(signal, 3)
        assert scope.cancelled_caught
        gate.opened.set()
    assert [sender for sender, _ in gate.calls] == [1, 2]
    assert dispatcher.report is not None
    assert dispatcher.report.accepted == 2


async def test_send_wait_waiting_at_shutdown_raises_closed() -> None:
    """A send_wait() still waiting when shutdown starts raises DispatcherClosedError."""
    signal = Signal()
    gate = Gate()
    signal.connect(gate)
    errors: list[BaseException] = []

    async def wait_for_room(dispatcher: BackgroundDispatcher) -> None:
        try:
            await dispatcher.send_wait(signal, 3)
        except DispatcherClosedError as error:
            errors.append(error)

    async with (
        anyio.create_task_group() as task_group,
        BackgroundDispatcher(max_pending=1, max_concurrent=1) as dispatcher,
    ):
        dispatcher.send(signal, 1)
        await eventually(lambda: dispatcher.running == 1)
        dispatcher.send(signal, 2)
        task_group.start_soon(wait_for_room, dispatcher)
        await anyio.sleep(0.01)
        gate.opened.set()
    assert len(errors) == 1
    assert "shutting down" in str(errors[0])
    assert [sender for sender, _ in gate.calls] == [1, 2]


async def test_shutdown_drains_queued_and_running_sends_within_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Leaving the block waits for queued and running sends; nothing is reported lost."""
    signal = Signal(name="order_shipped")
    finished: list[int] = []

    async def slow_email(sender: int, **kwargs: Any) -> None:
        await anyio.sleep(0.02)
        finished.append(sender)

    signal.connect(slow_email)
    async with BackgroundDispatcher(max_concurrent=2, grace_period=5) as dispatcher:
        for number in range(6):
            dispatcher.send(signal, number)
    assert sorted(finished) == list(range(6))
    assert dispatcher.report == ShutdownReport(accepted=6, completed=6, errors=0, not_completed=())
    assert background_records(caplog) == []


async def test_after_grace_the_rest_is_cancelled_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After the grace period, running and queued sends are cancelled, counted and logged."""
    signal = Signal(name="order_shipped")
    done = Signal(name="order_created")

    async def stuck(sender: object, **kwargs: Any) -> None:
        await anyio.sleep_forever()

    signal.connect(stuck)
    async with BackgroundDispatcher(max_concurrent=1, grace_period=0.05) as dispatcher:
        dispatcher.send(done, "first")
        await eventually(lambda: dispatcher.completed == 1)
        dispatcher.send(signal, "order-1", order=1)
        dispatcher.send(signal, "order-2", order=2)
    report = dispatcher.report
    assert report is not None
    assert (report.accepted, report.completed, report.errors) == (3, 1, 0)
    assert [(s.signal, s.sender, dict(s.payload), s.started) for s in report.not_completed] == [
        (signal, "order-1", {"order": 1}, True),
        (signal, "order-2", {"order": 2}, False),
    ]
    assert isinstance(report.not_completed[0], BackgroundSend)
    assert background_records(caplog) == [
        "background send of signal order_shipped from sender 'order-1' did not complete: "
        "cancelled while running; order=1",
        "background send of signal order_shipped from sender 'order-2' did not complete: "
        "cancelled before it started; order=2",
        "BackgroundDispatcher: 2 of 3 background sends did not complete at shutdown "
        "(grace period 0.05 s)",
    ]


async def test_receiver_errors_are_logged_with_signal_receiver_and_sender(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A receiver's exception is counted and logged once, naming signal, receiver and sender."""
    signal = Signal(name="order_shipped")
    ran: list[str] = []

    async def broken_email(sender: object, **kwargs: Any) -> None:
        raise ConnectionError("mail server down")

    def audit(sender: object, **kwargs: Any) -> None:
        ran.append("audit")

    signal.connect(broken_email)
    signal.connect(audit)
    async with BackgroundDispatcher(name="mailer") as dispatcher:
        dispatcher.send(signal, "shop")
        await eventually(lambda: dispatcher.completed == 1)
        assert dispatcher.errors == 1
        dispatcher.send(signal, "shop")
    assert ran == ["audit", "audit"]
    report = dispatcher.report
    assert report is not None
    assert (report.completed, report.errors, report.not_completed) == (2, 2, ())
    # Each error is logged once: send_robust's record, with its traceback.
    assert background_records(caplog) == []
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.name for r in errors] == ["asyncsignals", "asyncsignals"]
    assert all(r.exc_info for r in errors)
    assert errors[0].getMessage() == (
        f"receiver {__name__}.{broken_email.__qualname__}() of signal order_shipped raised "
        "ConnectionError (sender: 'shop')"
    )


async def test_a_send_failing_as_a_whole_is_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A send_robust that itself raises is logged with signal and sender, and counted."""

    class Broken(Signal):
        async def send_robust(
            self, sender: object, **named: Any
        ) -> list[tuple[Callable[..., Any], Any]]:
            raise RuntimeError("broken signal")

    async with BackgroundDispatcher() as dispatcher:
        dispatcher.send(Broken(name="broken"), "shop")
    assert dispatcher.report == ShutdownReport(accepted=1, completed=1, errors=1, not_completed=())
    [record] = [r for r in caplog.records if r.name == "asyncsignals.background"]
    assert record.getMessage() == (
        "background send of signal broken from sender 'shop' failed: RuntimeError"
    )
    assert record.exc_info is not None


async def test_sends_outside_the_block_raise_closed() -> None:
    """Before entry and once shutdown began, send() and send_wait() raise DispatcherClosedError."""
    signal = Signal()
    dispatcher = BackgroundDispatcher(name="mailer")
    with pytest.raises(DispatcherClosedError, match=r"has not been started.*async with"):
        dispatcher.send(signal, None)
    with pytest.raises(DispatcherClosedError, match="has not been started"):
        await dispatcher.send_wait(signal, None)
    async with dispatcher:
        pass
    with pytest.raises(DispatcherClosedError, match=r"mailer closed.*accepts no new sends"):
        dispatcher.send(signal, None)
    with pytest.raises(DispatcherClosedError, match="accepts no new sends"):
        await dispatcher.send_wait(signal, None)
    with pytest.raises(RuntimeError, match="already entered"):
        async with dispatcher:
            pass


async def test_a_receiver_sending_during_shutdown_gets_closed_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """During the drain, a receiver handing over another send gets DispatcherClosedError."""
    signal = Signal(name="order_shipped")
    follow_up = Signal(name="follow_up")
    dispatcher = BackgroundDispatcher()

    async def chain(sender: object, **kwargs: Any) -> None:
        await anyio.sleep(0.01)
        dispatcher.send(follow_up, sender)

    signal.connect(chain)
    async with dispatcher:
        dispatcher.send(signal, "shop")
    assert dispatcher.report is not None
    assert dispatcher.report.errors == 1
    assert "raised DispatcherClosedError" in caplog.records[0].getMessage()


async def test_bad_sends_raise_type_error_before_queuing() -> None:
    """A payload the signal cannot send, or something not a Signal, is a TypeError at once."""
    checked = Signal(providing_args=["order"], name="order_shipped")
    async with BackgroundDispatcher() as dispatcher:
        with pytest.raises(TypeError, match="missing argument"):
            dispatcher.send(checked, None)
        with pytest.raises(TypeError, match="'signal' is reserved"):
            dispatcher.send(Signal(), None, signal=1)
        with pytest.raises(TypeError, match="'sender' is reserved"):
            await dispatcher.send_wait(Signal(), None, sender=1)
        with pytest.raises(TypeError, match="expected a Signal"):
            dispatcher.send(print, None)  # type: ignore[arg-type]
    assert dispatcher.report is not None
    assert dispatcher.report.accepted == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"max_pending": 0}, "max_pending must be at least 1"),
        ({"max_concurrent": 0}, "max_concurrent must be at least 1"),
        ({"grace_period": -1}, "grace_period must be"),
        ({"grace_period": math.nan}, "grace_period must be"),
        ({"grace_period": 10**400}, "grace_period must be"),
        ({"max_concurrent": 2**63}, "max_concurrent must be at most"),
    ],
)
def test_bad_limits_are_value_errors(arguments: dict[str, Any], message: str) -> None:
    """Limits must be usable: at least one pending and running send, a grace >= 0."""
    with pytest.raises(ValueError, match=message):
        BackgroundDispatcher(**arguments)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"max_pending": 2.5}, "max_pending must be a whole number of sends, got 2.5"),
        ({"max_concurrent": 2.5}, "max_concurrent must be a whole number of sends, got 2.5"),
        ({"max_pending": True}, "max_pending must be a whole number of sends, got True"),
        ({"max_concurrent": False}, "max_concurrent must be a whole number of sends, got False"),
        ({"max_concurrent": "3"}, "max_concurrent must be a whole number of sends, got '3'"),
        ({"grace_period": None}, "grace_period must be a number of seconds.*got None"),
        ({"grace_period": "10"}, "grace_period must be a number of seconds.*got '10'"),
        ({"grace_period": True}, "grace_period must be a number of seconds.*got True"),
        ({"name": 3}, "name must be a str or None, got 3"),
    ],
)
def test_arguments_of_the_wrong_type_are_type_errors(
    arguments: dict[str, Any], message: str
) -> None:
    """Counts must be ints (not bools), the grace a number of seconds, the name a str."""
    with pytest.raises(TypeError, match=message):
        BackgroundDispatcher(**arguments)


async def test_concurrency_is_bounded_by_max_concurrent() -> None:
    """No more than max_concurrent sends run at once; the rest wait in the queue."""
    signal = Signal()
    gate = Gate()
    signal.connect(gate)
    async with BackgroundDispatcher(max_concurrent=3) as dispatcher:
        for number in range(10):
            dispatcher.send(signal, number)
        await eventually(lambda: dispatcher.running == 3)
        await anyio.sleep(0.01)
        assert (dispatcher.running, dispatcher.queued, len(gate.calls)) == (3, 7, 3)
        gate.opened.set()
    assert gate.finished == 10


async def test_no_task_is_left_after_exit() -> None:
    """Workers and sends are gone once the block is left, drained or cancelled."""
    before = running_tasks()
    signal = Signal()

    async def stuck(sender: object, **kwargs: Any) -> None:
        await anyio.sleep_forever()

    signal.connect(stuck)
    async with BackgroundDispatcher(max_concurrent=4, grace_period=0.01) as dispatcher:
        dispatcher.send(signal, None)
        await eventually(lambda: dispatcher.running == 1)
        assert len(running_tasks() - before) >= 4
    assert running_tasks() - before == set()


async def test_cancelling_the_lifespan_drains_within_grace_then_reports_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Cancellation of the enclosing scope still gives sends the grace period, then reports."""
    signal = Signal(name="order_shipped")
    gate = Gate()
    signal.connect(gate)
    before = running_tasks()
    dispatcher = BackgroundDispatcher(max_concurrent=1, grace_period=0.05)
    with anyio.CancelScope() as lifespan:
        async with dispatcher:
            dispatcher.send(signal, "order-1")
            dispatcher.send(signal, "order-2")
            await eventually(lambda: dispatcher.running == 1)
            lifespan.cancel()
            await anyio.sleep_forever()
    assert lifespan.cancelled_caught
    report = dispatcher.report
    assert report is not None
    assert [(s.sender, s.started) for s in report.not_completed] == [
        ("order-1", True),
        ("order-2", False),
    ]
    assert gate.finished == 0
    assert background_records(caplog)[-1] == (
        "BackgroundDispatcher: 2 of 2 background sends did not complete at shutdown "
        "(grace period 0.05 s)"
    )
    assert running_tasks() - before == set()


async def test_a_keyboard_interrupt_in_the_block_cancels_sends_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A block left by a BaseException that is not a cancellation does not wait for grace."""
    signal = Signal(name="order_shipped")
    gate = Gate()
    signal.connect(gate)
    dispatcher = BackgroundDispatcher(grace_period=math.inf)
    with pytest.raises(Fatal):  # noqa: PT012
        async with dispatcher:
            dispatcher.send(signal, "order-1")
            await eventually(lambda: dispatcher.running == 1)
            raise Fatal
    report = dispatcher.report
    assert report is not None
    assert [(s.sender, s.started) for s in report.not_completed] == [("order-1", True)]
    assert background_records(caplog)[-1] == (
        "BackgroundDispatcher: 1 of 1 background sends did not complete at shutdown "
        "(cancelled at once: the block was left by Fatal)"
    )


async def test_an_application_error_still_drains_then_propagates() -> None:
    """When the block raises an Exception, pending sends still get their grace period."""
    signal = Signal()
    finished: list[object] = []

    async def slow(sender: object, **kwargs: Any) -> None:
        await anyio.sleep(0.01)
        finished.append(sender)

    signal.connect(slow)
    dispatcher = BackgroundDispatcher()
    with pytest.raises(LookupError, match="startup failed"):  # noqa: PT012
        async with dispatcher:
            dispatcher.send(signal, "a")
            dispatcher.send(signal, "b")
            raise LookupError("startup failed")
    assert sorted(finished) == ["a", "b"]  # type: ignore[type-var]
    assert dispatcher.report is not None
    assert dispatcher.report.not_completed == ()


async def test_a_fatal_base_exception_in_a_receiver_propagates_and_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A receiver's BaseException (not an Exception) stops the dispatcher and is raised at exit."""
    signal = Signal(name="order_shipped")

    async def fatal(sender: object, **kwargs: Any) -> None:
        raise Fatal

    signal.connect(fatal)
    dispatcher = BackgroundDispatcher(name="mailer")
    with pytest.raises(Fatal):  # noqa: PT012
        async with dispatcher:
            dispatcher.send(signal, "shop")
            await eventually(lambda: " stopped: " in repr(dispatcher))
            with pytest.raises(DispatcherClosedError, match=r"mailer stopped.*stopped by Fatal"):
                await dispatcher.send_wait(signal, "later")
    assert dispatcher.report is not None
    assert [(s.sender, s.started) for s in dispatcher.report.not_completed] == [("shop", True)]
    assert background_records(caplog)[-1] == (
        "dispatcher mailer: 1 of 1 background sends did not complete at shutdown "
        "(stopped by Fatal raised by a receiver)"
    )


async def test_fatal_errors_of_several_receivers_are_raised_as_a_group() -> None:
    """Receivers of two sends raising BaseExceptions at once: the exit raises both, grouped."""
    signal = Signal(name="order_shipped")
    together = anyio.Event()

    async def fatal(sender: object, **kwargs: Any) -> None:
        await together.wait()
        raise Fatal(sender)

    signal.connect(fatal)
    with pytest.raises(BaseExceptionGroup) as caught:  # noqa: PT012
        async with BackgroundDispatcher(max_concurrent=2) as dispatcher:
            dispatcher.send(signal, "a")
            dispatcher.send(signal, "b")
            await eventually(lambda: dispatcher.running == 2)
            together.set()
    assert sorted(str(error) for error in caught.value.exceptions) == ["a", "b"]
    assert "receivers of BackgroundDispatcher failed" in str(caught.value)


async def test_repr_shows_name_state_and_counts() -> None:
    """repr names the dispatcher, its state and its queued/running/completed counts."""
    dispatcher = BackgroundDispatcher(name="mailer")
    assert repr(dispatcher) == (
        "<BackgroundDispatcher mailer not started: 0 queued, 0 running, 0 completed>"
    )
    async with dispatcher:
        dispatcher.send(Signal(), None)
        assert repr(dispatcher) == (
            "<BackgroundDispatcher mailer running: 1 queued, 0 running, 0 completed>"
        )
    assert repr(BackgroundDispatcher()).startswith("<BackgroundDispatcher not started")
    assert dispatcher.report is not None
    assert dispatcher.report.completed == 1


async def test_not_completed_sends_are_listed_in_queue_order() -> None:
    """The report lists sends in the order they entered the queue, not the order of the calls."""
    signal = Signal(name="order_shipped")
    first_done = anyio.Event()
    dispatcher = BackgroundDispatcher(max_pending=1, max_concurrent=1, grace_period=0.05)

    async def receiver(sender: int, **kwargs: Any) -> None:
        if sender == 1:
            await first_done.wait()
        elif sender == 2:
            # Takes the room that the worker just made, ahead of send_wait(3).
            dispatcher.send(signal, 4)
        else:
            await anyio.sleep_forever()

    signal.connect(receiver)
    async with anyio.create_task_group() as task_group, dispatcher:
        dispatcher.send(signal, 1)
        await eventually(lambda: dispatcher.running == 1)
        dispatcher.send(signal, 2)
        task_group.start_soon(dispatcher.send_wait, signal, 3)
        await anyio.wait_all_tasks_blocked()  # send_wait(3) waits for room
        first_done.set()
        # 4 running, and 3 in the room it left (4 queued and not yet picked
        # up shows the same two counts).
        await eventually(
            lambda: (dispatcher.running, dispatcher.queued, dispatcher.completed) == (1, 1, 2)
        )
    assert dispatcher.report is not None
    assert [(s.sender, s.started) for s in dispatcher.report.not_completed] == [
        (4, True),
        (3, False),
    ]


@types.coroutine
def counting_suspensions(
    awaitable: Awaitable[None], suspensions: list[int]
) -> Generator[Any, Any, None]:
    """Await ``awaitable``, counting each time it suspends (yields to the event loop)."""
    steps = awaitable.__await__()
    value: Any = None
    thrown: BaseException | None = None
    while True:
        try:
            yielded = steps.send(value) if thrown is None else steps.throw(thrown)
        except StopIteration:
            return
        suspensions[0] += 1
        thrown = value = None
        try:
            value = yield yielded
        except BaseException as exc:  # thrown into the awaitable
            thrown = exc


async def test_send_wait_on_a_full_queue_sleeps_instead_of_spinning() -> None:
    """A send_wait() that lost the room to another caller waits again; it does not spin."""
    signal = Signal()
    gate = Gate()
    signal.connect(gate)
    suspensions = [0]
    async with BackgroundDispatcher(max_pending=1, max_concurrent=1) as dispatcher:
        dispatcher.send(signal, 1)
        await eventually(lambda: dispatcher.running == 1)
        dispatcher.send(signal, 2)

        async def wait_for_room(sender: int) -> None:
            await counting_suspensions(dispatcher.send_wait(signal, sender), suspensions)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(wait_for_room, 3)
            task_group.start_soon(wait_for_room, 4)
            await anyio.wait_all_tasks_blocked()  # both wait for room
            # Send 1 ends and the worker takes 2: one waiter gets in, the
            # other finds the queue full again and must sleep, not retry.
            gate.opened.set()
            gate.opened = anyio.Event()
            await eventually(lambda: len(gate.calls) == 2 and dispatcher.queued == 1)
            await anyio.sleep(0.05)
            assert suspensions[0] < 10
            gate.opened.set()
    assert sorted(sender for sender, _ in gate.calls) == [1, 2, 3, 4]  # type: ignore[type-var]


async def test_sends_left_over_are_logged_with_a_bounded_payload_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each send that did not complete is logged with a short summary of its payload."""
    signal = Signal(name="order_shipped")
    signal.connect(stuck_receiver)
    async with BackgroundDispatcher(grace_period=0.01) as dispatcher:
        dispatcher.send(signal, "shop", order=7, note="x" * 10_000, items=list(range(1000)))
        dispatcher.send(signal, "many", **{f"field_{number}": number for number in range(8)})
        dispatcher.send(signal, "none")
        await eventually(lambda: dispatcher.running == 3)
    lines = background_records(caplog)
    assert lines[:3] == [
        "background send of signal order_shipped from sender 'shop' did not complete: "
        "cancelled while running; order=7, note='xxxxxxxxxxxx...xxxxxxxxxxxxx', "
        "items=[0, 1, 2, 3, 4, 5, ...]",
        "background send of signal order_shipped from sender 'many' did not complete: "
        "cancelled while running; field_0=0, field_1=1, field_2=2, field_3=3, field_4=4, "
        "field_5=5, ... (2 more)",
        "background send of signal order_shipped from sender 'none' did not complete: "
        "cancelled while running; no payload",
    ]


async def test_describe_names_each_send_left_over(caplog: pytest.LogCaptureFixture) -> None:
    """A describe callable says, in the log, which send did not complete."""
    signal = Signal(name="order_shipped")
    signal.connect(stuck_receiver)

    def order_number(send: BackgroundSend) -> str:
        return f"order #{send.payload['order'].id}"

    class Order:
        def __init__(self, id: int) -> None:
            self.id = id

    async with BackgroundDispatcher(grace_period=0.01, describe=order_number) as dispatcher:
        dispatcher.send(signal, "shop", order=Order(42))
        dispatcher.send(signal, "shop", order=None)
        await eventually(lambda: dispatcher.running == 2)
    assert background_records(caplog)[:2] == [
        "background send of signal order_shipped from sender 'shop' did not complete: "
        "cancelled while running; order #42",
        "background send of signal order_shipped from sender 'shop' did not complete: "
        "cancelled while running; order=None (describe raised AttributeError)",
    ]


def test_describe_must_be_callable() -> None:
    """describe= that is not callable is a TypeError at once."""
    with pytest.raises(TypeError, match=r"describe must be a plain .*, got .order."):
        BackgroundDispatcher(describe="order")  # type: ignore[arg-type]


async def stuck_receiver(sender: object, **kwargs: Any) -> None:
    await anyio.sleep_forever()


async def _describes(send: BackgroundSend) -> str:
    return "never awaited"  # pragma: no cover (refused)


def test_describe_must_not_be_async() -> None:
    """An async describe would log a coroutine: it is refused in the constructor."""
    with no_unawaited_coroutines(), pytest.raises(TypeError, match="describe"):
        BackgroundDispatcher(describe=_describes)  # type: ignore[arg-type]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_receivers_stray_cancelled_error_fails_only_its_send(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A receiver raising CancelledError nobody asked for fails its send; the worker goes on."""
    flaky, fine = Signal(name="flaky"), Signal(name="fine")
    ran: list[str] = []

    async def awaits_a_cancelled_future(sender: object, **kwargs: Any) -> None:
        future = asyncio.get_running_loop().create_future()
        future.cancel()
        await future

    async def works(sender: object, **kwargs: Any) -> None:
        ran.append("fine")

    flaky.connect(awaits_a_cancelled_future)
    fine.connect(works)
    with caplog.at_level(logging.ERROR, logger="asyncsignals"):
        async with BackgroundDispatcher(max_concurrent=1, grace_period=5) as dispatcher:
            dispatcher.send(flaky, None)
            for _ in range(3):
                dispatcher.send(fine, None)
    report = dispatcher.report
    assert report is not None
    assert ran == ["fine"] * 3
    assert (report.completed, report.errors, report.not_completed) == (4, 1, ())
    assert "CancelledError" in caplog.text
