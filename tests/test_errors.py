"""Errors: send fails fast, send_robust hands exceptions back; neither swallows interrupts."""

from __future__ import annotations

import dataclasses
import functools
import logging
import traceback
from typing import Any

import anyio
import pytest

from asyncsignals import Signal

pytestmark = pytest.mark.anyio


class ReceiverError(Exception):
    pass


def failing_sync(sender: object, **kwargs: Any) -> None:
    raise ReceiverError("sync")


async def failing_async(sender: object, **kwargs: Any) -> None:
    await anyio.lowlevel.checkpoint()
    raise ReceiverError("async")


def failing_threaded(sender: object, **kwargs: Any) -> None:
    raise ReceiverError("thread")


async def idle_async(sender: object, **kwargs: Any) -> str:
    return "idle"


class FailingCallable:
    def __call__(self, sender: object, **kwargs: Any) -> None:
        raise ReceiverError("callable")


def note_for(receiver_name: str, signal_name: str) -> str:
    return f"raised by receiver {__name__}.{receiver_name}() of signal {signal_name}"


def note_for_local(receiver: Any, signal_name: str) -> str:
    return f"raised by receiver {__name__}.{receiver.__qualname__}() of signal {signal_name}"


@pytest.mark.parametrize(
    ("receivers", "failing_name"),
    [
        pytest.param([failing_sync], "failing_sync", id="sync"),
        pytest.param([failing_async], "failing_async", id="single-async"),
        pytest.param([failing_async, idle_async], "failing_async", id="task-group"),
        pytest.param([failing_threaded], "failing_threaded", id="to-thread"),
    ],
)
async def test_send_raises_the_error_itself_with_a_note(
    receivers: list[Any], failing_name: str
) -> None:
    """send raises the receiver's exception as itself, noting the receiver and the signal."""
    signal = Signal(name="order_shipped")
    for each in receivers:
        signal.connect(each, to_thread=each is failing_threaded)
    with pytest.raises(ReceiverError) as caught:
        await signal.send(None)
    assert caught.value.__notes__ == [note_for(failing_name, "order_shipped")]
    # The traceback still reaches into the receiver that raised.
    frames = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert frames[-1] == failing_name


async def test_note_uses_signal_repr_without_a_name() -> None:
    """An unnamed signal is named in the note by its repr."""
    signal = Signal()
    signal.connect(failing_sync)
    with pytest.raises(ReceiverError) as caught:
        await signal.send(None)
    assert caught.value.__notes__ == [note_for("failing_sync", repr(signal))]


async def test_note_names_qualified_name_of_methods_objects_and_partials() -> None:
    """The note names a bound method by its qualified name, an object by its class."""

    class Listener:
        def on_event(self, sender: object, **kwargs: Any) -> None:
            raise ReceiverError("method")

    listener = Listener()
    cases: list[tuple[Any, str]] = [
        (listener.on_event, f"{Listener.__qualname__}.on_event()"),
        (FailingCallable(), "FailingCallable()"),
        (functools.partial(failing_sync), f"functools.partial of {__name__}.failing_sync()"),
    ]
    for receiver, described in cases:
        signal = Signal(name="named")
        signal.connect(receiver, weak=False)
        with pytest.raises(ReceiverError) as caught:
            await signal.send(None)
        [note] = caught.value.__notes__
        assert described in note
        assert note.endswith("of signal named")


async def test_send_stops_at_failing_sync_receiver() -> None:
    """Receivers after a failing sync receiver are not called."""
    calls: list[str] = []

    def later(sender: object, **kwargs: Any) -> None:
        calls.append("later")

    async def later_async(sender: object, **kwargs: Any) -> None:
        calls.append("later_async")

    signal = Signal()
    signal.connect(failing_sync)
    signal.connect(later)
    signal.connect(later_async)
    with pytest.raises(ReceiverError):
        await signal.send(None)
    assert calls == []


async def test_send_failure_cancels_running_siblings() -> None:
    """The first error cancels receivers still running: they see cancellation, never finish."""
    sibling_started = anyio.Event()
    outcome: list[str] = []

    async def sibling(sender: object, **kwargs: Any) -> None:
        sibling_started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            outcome.append("cancelled")
            raise
        outcome.append("finished")  # pragma: no cover

    async def fails_after_sibling_starts(sender: object, **kwargs: Any) -> None:
        await sibling_started.wait()
        raise ReceiverError("first")

    signal = Signal()
    signal.connect(sibling)
    signal.connect(fails_after_sibling_starts)
    with pytest.raises(ReceiverError):
        await signal.send(None)
    assert outcome == ["cancelled"]


async def test_several_failures_at_once_raise_an_exception_group() -> None:
    """A receiver failing while the first failure cancels it makes an ExceptionGroup of both."""
    sibling_started = anyio.Event()

    async def fails_in_cleanup(sender: object, **kwargs: Any) -> None:
        sibling_started.set()
        try:
            await anyio.sleep_forever()
        finally:
            raise KeyError("cleanup")

    async def fails_first(sender: object, **kwargs: Any) -> None:
        await sibling_started.wait()
        raise ReceiverError("first")

    signal = Signal(name="batch")
    signal.connect(fails_in_cleanup)
    signal.connect(fails_first)
    with pytest.raises(ExceptionGroup) as caught:
        await signal.send(None)
    group = caught.value
    assert "batch" in str(group)
    names = sorted(type(error).__name__ for error in group.exceptions)
    assert names == ["KeyError", "ReceiverError"]
    notes = sorted(note for error in group.exceptions for note in error.__notes__)
    assert notes == sorted(
        [note_for_local(fails_first, "batch"), note_for_local(fails_in_cleanup, "batch")]
    )


async def test_interrupt_and_error_at_once_raise_a_base_exception_group() -> None:
    """An error plus a KeyboardInterrupt raised while cancelled make a BaseExceptionGroup."""
    sibling_started = anyio.Event()

    async def interrupted_in_cleanup(sender: object, **kwargs: Any) -> None:
        sibling_started.set()
        try:
            await anyio.sleep_forever()
        finally:
            raise KeyboardInterrupt

    async def fails_first(sender: object, **kwargs: Any) -> None:
        await sibling_started.wait()
        raise ReceiverError("first")

    signal = Signal(name="batch")
    signal.connect(interrupted_in_cleanup)
    signal.connect(fails_first)
    with pytest.raises(BaseExceptionGroup) as caught:
        await signal.send(None)
    assert not isinstance(caught.value, ExceptionGroup)
    names = sorted(type(error).__name__ for error in caught.value.exceptions)
    assert names == ["KeyboardInterrupt", "ReceiverError"]


async def test_exception_group_from_one_receiver_is_raised_as_itself() -> None:
    """A receiver that raises an ExceptionGroup has that very group raised, with its note."""
    raised = ExceptionGroup("inner", [ReceiverError("x")])

    async def raises_group(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise raised

    signal = Signal(name="grouped")
    signal.connect(raises_group)
    signal.connect(idle_async)
    with pytest.raises(BaseException) as caught:
        await signal.send(None)
    assert caught.value is raised
    assert caught.value.__notes__ == [note_for_local(raises_group, "grouped")]


async def test_exception_group_from_single_receiver_is_raised_as_itself() -> None:
    """On the single-receiver path an ExceptionGroup from the receiver is raised unchanged."""
    raised = ExceptionGroup("inner", [ReceiverError("x")])

    async def raises_group(sender: object, **kwargs: Any) -> None:
        raise raised

    signal = Signal(name="grouped")
    signal.connect(raises_group)
    with pytest.raises(ExceptionGroup) as caught:
        await signal.send(None)
    assert caught.value is raised


async def test_send_robust_returns_exceptions_in_their_slots(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """send_robust runs every receiver and puts each exception in its receiver's slot."""

    def ok(sender: object, **kwargs: Any) -> str:
        return "ok"

    async def ok_async(sender: object, **kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        return "ok_async"

    signal = Signal(name="robust")
    signal.connect(failing_sync)
    signal.connect(ok)
    signal.connect(failing_async)
    signal.connect(ok_async)
    signal.connect(failing_threaded, to_thread=True)
    with caplog.at_level(logging.ERROR, logger="asyncsignals"):
        results = await signal.send_robust(None)
    receivers = [receiver for receiver, _ in results]
    assert receivers == [failing_sync, ok, failing_async, ok_async, failing_threaded]
    values = [value for _, value in results]
    assert isinstance(values[0], ReceiverError)
    assert str(values[0]) == "sync"
    assert values[1] == "ok"
    assert isinstance(values[2], ReceiverError)
    assert str(values[2]) == "async"
    assert values[3] == "ok_async"
    assert isinstance(values[4], ReceiverError)
    assert str(values[4]) == "thread"
    assert len(caplog.records) == 3


@pytest.mark.parametrize(
    "receivers",
    [
        pytest.param([failing_sync], id="sync"),
        pytest.param([failing_async], id="single-async"),
        pytest.param([failing_async, idle_async], id="task-group"),
    ],
)
async def test_send_robust_logs_error_with_traceback_and_names(
    receivers: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Each exception is logged at ERROR on 'asyncsignals' with traceback and both names."""
    signal = Signal(name="audited")
    for each in receivers:
        signal.connect(each)
    with caplog.at_level(logging.ERROR, logger="asyncsignals"):
        results = await signal.send_robust(None)
    failure = results[0][1]
    assert isinstance(failure, ReceiverError)
    [record] = caplog.records
    assert record.name == "asyncsignals" or record.name.startswith("asyncsignals.")
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert f"{receivers[0].__qualname__}()" in message
    assert "audited" in message
    assert message.endswith("(sender: None)")
    assert record.exc_info is not None
    assert record.exc_info[1] is failure
    assert "ReceiverError" in caplog.text  # the traceback is rendered


async def test_send_robust_runs_receivers_after_a_failure() -> None:
    """A failing receiver does not stop or cancel the others under send_robust."""
    finished = anyio.Event()

    async def slow(sender: object, **kwargs: Any) -> str:
        await finished.wait()
        return "slow"

    async def fails_then_releases(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        finished.set()
        raise ReceiverError("released")

    signal = Signal()
    signal.connect(slow)
    signal.connect(fails_then_releases)
    signal.connect(failing_sync)
    results = await signal.send_robust(None)
    assert results[0] == (slow, "slow")
    assert isinstance(results[1][1], ReceiverError)
    assert isinstance(results[2][1], ReceiverError)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("method", ["send", "send_robust"])
@pytest.mark.parametrize("kind", ["sync", "async", "thread"])
async def test_interrupts_are_never_swallowed(
    interrupt: type[BaseException], method: str, kind: str
) -> None:
    """KeyboardInterrupt and SystemExit from a lone receiver propagate from send*."""

    def sync_receiver(sender: object, **kwargs: Any) -> None:
        raise interrupt

    async def async_one(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise interrupt

    signal = Signal()
    if kind == "sync":
        signal.connect(sync_receiver)
    elif kind == "async":
        signal.connect(async_one)
    else:
        signal.connect(sync_receiver, to_thread=True)
    with pytest.raises(interrupt):
        await getattr(signal, method)(None)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_interrupts_from_concurrent_receivers_are_never_swallowed(
    anyio_backend: str, interrupt: type[BaseException], method: str
) -> None:
    """An interrupt in one of several async receivers propagates, not returned as a result."""
    results: list[object] = []

    async def interrupted(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise interrupt

    async def sleeps_forever(sender: object, **kwargs: Any) -> None:
        await anyio.sleep_forever()

    async def main() -> None:
        signal = Signal()
        signal.connect(interrupted)
        signal.connect(idle_async)
        signal.connect(sleeps_forever)
        results.append(await getattr(signal, method)(None))

    # An interrupt escaping a task stops asyncio's event loop itself, so this
    # runs its own loop instead of the test's.
    with pytest.raises(BaseException) as caught:
        anyio.run(main, backend=anyio_backend)
    interrupts = (
        list(caught.value.exceptions)
        if isinstance(caught.value, BaseExceptionGroup)
        else [caught.value]
    )
    assert any(isinstance(error, interrupt) for error in interrupts)
    assert results == []


@dataclasses.dataclass(frozen=True)
class FrozenError(Exception):
    """An exception that refuses new attributes, notes included."""

    code: int


class TupleNotesError(Exception):
    """An exception whose __notes__ is a tuple, so add_note fails."""

    def __init__(self) -> None:
        super().__init__("tuple notes")
        self.__notes__ = ("its own note",)  # type: ignore[assignment]


@pytest.mark.parametrize("concurrent", [True, False])
@pytest.mark.parametrize("receiver_count", [1, 2])
@pytest.mark.parametrize("make_error", [lambda: FrozenError(7), TupleNotesError])
async def test_exception_that_cannot_take_a_note_is_raised_as_itself(
    concurrent: bool, receiver_count: int, make_error: Any
) -> None:
    """A receiver's exception that refuses a note is raised as itself, not replaced."""
    error = make_error()

    async def fails(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise error

    def fails_sync(sender: object, **kwargs: Any) -> None:
        raise error

    for receiver in (fails, fails_sync):
        signal = Signal(concurrent=concurrent)
        signal.connect(receiver)
        if receiver_count == 2:
            signal.connect(idle_async)
        with pytest.raises(type(error)) as raised:
            await signal.send(None)
        assert raised.value is error


@pytest.mark.parametrize("receiver_count", [1, 2])
@pytest.mark.parametrize("concurrent", [True, False])
@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_a_receivers_group_of_interrupts_propagates_as_itself(
    concurrent: bool, method: str, receiver_count: int
) -> None:
    """A receiver raising a BaseExceptionGroup of interrupts: it reaches the caller unchanged."""
    group = BaseExceptionGroup("interrupted", [KeyboardInterrupt()])

    async def interrupted(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise group

    signal = Signal(concurrent=concurrent)
    signal.connect(interrupted)
    if receiver_count == 2:
        signal.connect(idle_async)
    with pytest.raises(BaseExceptionGroup) as raised:
        await getattr(signal, method)(None)
    assert raised.value is group
