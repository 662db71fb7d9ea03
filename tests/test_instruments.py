"""Instruments hear of every send and receiver, with durations and outcomes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from helpers import runs_tasks

from asyncsignals import (
    BackgroundDispatcher,
    Instrument,
    SendEvent,
    Signal,
    add_instrument,
    remove_instrument,
)
from asyncsignals.testing import capture

pytestmark = pytest.mark.anyio


class BoomError(Exception):
    pass


class Recorder(Instrument):
    """Writes down everything it is told."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []

    def send_started(self, event: SendEvent) -> None:
        self.log.append(("send started", event.signal.name, event.sender, dict(event.payload)))

    def send_finished(self, event: SendEvent) -> None:
        assert event.duration is not None
        assert event.duration >= 0
        outcome = event.error if event.error is not None else event.results
        self.log.append(("send finished", event.signal.name, outcome))

    def receiver_started(self, event: SendEvent, receiver: Callable[..., Any]) -> None:
        self.log.append(("receiver started", receiver.__name__))

    def receiver_finished(
        self,
        event: SendEvent,
        receiver: Callable[..., Any],
        result: object,
        error: BaseException | None,
        duration: float,
    ) -> None:
        assert duration >= 0
        self.log.append(("receiver finished", receiver.__name__, result, type(error).__name__))


def sync_one(sender: object, **kwargs: Any) -> str:
    return "sync"


async def async_one(sender: object, **kwargs: Any) -> str:
    await anyio.lowlevel.checkpoint()
    return "async"


def in_thread(sender: object, **kwargs: Any) -> str:
    return "thread"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    remove_instrument(recorder)


@pytest.mark.parametrize("concurrent", [True, False])
async def test_instrument_sees_sends_and_receivers(recorder: Recorder, concurrent: bool) -> None:
    """Each send and each receiver is reported; results name the real receivers."""
    signal = Signal(name="watched", concurrent=concurrent)
    signal.connect(sync_one)
    signal.connect(async_one)
    signal.connect(in_thread, to_thread=True)
    add_instrument(recorder, signal)
    results = await signal.send("shop", order=1)
    assert results == [(sync_one, "sync"), (async_one, "async"), (in_thread, "thread")]
    assert recorder.log[0] == ("send started", "watched", "shop", {"order": 1})
    assert recorder.log[-1] == ("send finished", "watched", results)
    finished = sorted(entry for entry in recorder.log if entry[0] == "receiver finished")
    assert finished == [
        ("receiver finished", "async_one", "async", "NoneType"),
        ("receiver finished", "in_thread", "thread", "NoneType"),
        ("receiver finished", "sync_one", "sync", "NoneType"),
    ]
    assert len([entry for entry in recorder.log if entry[0] == "receiver started"]) == 3


async def test_failures_are_reported_and_named_after_the_receiver(recorder: Recorder) -> None:
    """A failing receiver's error reaches the instrument and keeps its own name in the note."""
    signal = Signal(name="watched")

    async def fails(sender: object, **kwargs: Any) -> None:
        raise BoomError("no")

    signal.connect(fails)
    add_instrument(recorder, signal)
    with pytest.raises(BoomError) as caught:
        await signal.send(None)
    assert caught.value.__notes__ == [
        f"raised by receiver {__name__}.test_failures_are_reported_and_named_after_the_receiver"
        ".<locals>.fails() of signal watched"
    ]
    assert ("receiver finished", "fails", None, "BoomError") in recorder.log
    assert recorder.log[-1] == ("send finished", "watched", caught.value)


class Outcomes(Instrument):
    """Writes down whether each send and each receiver ended cancelled, failed or returned."""

    def __init__(self) -> None:
        self.sends: list[str] = []
        self.receivers: list[str] = []

    def send_finished(self, event: SendEvent) -> None:
        self.sends.append(self.outcome(event.error, event.cancelled))

    def receiver_finished(
        self,
        event: SendEvent,
        receiver: Callable[..., Any],
        result: object,
        error: BaseException | None,
        duration: float,
    ) -> None:
        self.receivers.append(self.outcome(error, self.is_cancellation(error)))

    def outcome(self, error: BaseException | None, cancelled: bool) -> str:
        assert cancelled == self.is_cancellation(error)
        if cancelled:
            return "cancelled"
        return "returned" if error is None else f"failed: {type(error).__name__}"


def waiting_receivers(count: int) -> list[Callable[..., Any]]:
    """``count`` distinct async receivers that wait until cancelled."""

    def make() -> Callable[..., Any]:
        async def waits(sender: object, **kwargs: Any) -> None:
            await anyio.sleep_forever()

        return waits

    return [make() for _ in range(count)]


@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("concurrent", [True, False])
async def test_a_cancelled_send_is_reported_as_cancelled_never_as_failed(
    count: int, concurrent: bool
) -> None:
    """Cancelling the caller: the send and its receivers end cancelled, whatever their number."""
    signal = Signal(name="watched", concurrent=concurrent)
    for receiver in waiting_receivers(count):
        signal.connect(receiver, weak=False)
    outcomes = Outcomes()
    add_instrument(outcomes, signal)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(signal.send, None)
        await anyio.wait_all_tasks_blocked()
        tasks.cancel_scope.cancel()
    assert outcomes.sends == ["cancelled"]
    # In order, only the first receiver has started when the caller is cancelled.
    assert outcomes.receivers == ["cancelled"] * (count if concurrent else 1)


async def test_a_cancelled_receiver_running_tasks_of_its_own_is_reported_cancelled() -> None:
    """A receiver whose own task group is cancelled with the send is reported cancelled."""
    signal = Signal(name="watched")

    signal.connect(runs_tasks)
    outcomes = Outcomes()
    add_instrument(outcomes, signal)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(signal.send, None)
        await anyio.wait_all_tasks_blocked()
        tasks.cancel_scope.cancel()
    assert outcomes.receivers == ["cancelled"]
    assert outcomes.sends == ["cancelled"]


async def test_a_failed_send_is_reported_as_failed_and_its_cancelled_sibling_as_cancelled() -> None:
    """A receiver's failure fails the send; the sibling it cancels is reported cancelled."""
    signal = Signal(name="watched")
    (waits,) = waiting_receivers(1)

    async def fails(sender: object, **kwargs: Any) -> None:
        await anyio.wait_all_tasks_blocked()
        raise BoomError("no")

    signal.connect(waits, weak=False)
    signal.connect(fails)
    outcomes = Outcomes()
    add_instrument(outcomes, signal)
    with pytest.raises(BoomError):
        await signal.send(None)
    assert outcomes.sends == ["failed: BoomError"]
    assert sorted(outcomes.receivers) == ["cancelled", "failed: BoomError"]


def test_is_cancellation_tells_cancellations_and_groups_of_them_from_failures() -> None:
    """Only a cancellation, or a group made only of them (nested too), is a cancellation."""
    cancelled = asyncio.CancelledError()
    assert Instrument.is_cancellation(cancelled)
    assert Instrument.is_cancellation(
        BaseExceptionGroup("", [cancelled, BaseExceptionGroup("", [asyncio.CancelledError()])])
    )
    assert not Instrument.is_cancellation(None)
    assert not Instrument.is_cancellation(BoomError())
    assert not Instrument.is_cancellation(KeyboardInterrupt())
    assert not Instrument.is_cancellation(BaseExceptionGroup("", [cancelled, BoomError()]))


def test_send_sync_is_instrumented(recorder: Recorder) -> None:
    """send_sync reports like send, in the calling thread."""
    signal = Signal(name="watched")
    signal.connect(sync_one)
    add_instrument(recorder, signal)
    assert signal.send_sync(None) == [(sync_one, "sync")]
    assert recorder.log == [
        ("send started", "watched", None, {}),
        ("receiver started", "sync_one"),
        ("receiver finished", "sync_one", "sync", "NoneType"),
        ("send finished", "watched", [(sync_one, "sync")]),
    ]


def test_send_sync_that_raises_is_reported(recorder: Recorder) -> None:
    """A send_sync that raises reports the error and re-raises it."""
    signal = Signal(name="watched")

    def fails(sender: object, **kwargs: Any) -> None:
        raise BoomError("no")

    signal.connect(fails)
    add_instrument(recorder, signal)
    with pytest.raises(BoomError):
        signal.send_sync(None)
    assert recorder.log[-1][0] == "send finished"
    assert isinstance(recorder.log[-1][2], BoomError)


def test_everywhere_covers_existing_and_new_signals(recorder: Recorder) -> None:
    """Installed everywhere, an instrument watches signals made before and after, until removed."""
    before = Signal(name="before")
    add_instrument(recorder)
    add_instrument(recorder)  # a second install is a no-op
    after = Signal(name="after")
    before.send_sync(None)
    after.send_sync(None)
    remove_instrument(recorder)
    remove_instrument(recorder)  # and so is a second removal
    before.send_sync(None)
    Signal(name="later").send_sync(None)
    assert [entry[1] for entry in recorder.log if entry[0] == "send started"] == [
        "before",
        "after",
    ]


def test_per_signal_install_and_removal(recorder: Recorder) -> None:
    """On one signal, installing twice is a no-op and removal stops the reports."""
    signal = Signal(name="watched")
    other = Recorder()
    add_instrument(other, signal)
    add_instrument(recorder, signal)
    add_instrument(recorder, signal)
    signal.send_sync(None)
    remove_instrument(recorder, signal)
    signal.send_sync(None)
    assert [entry[0] for entry in recorder.log] == ["send started", "send finished"]
    assert len(other.log) == 4  # the other instrument stays installed


def test_a_failing_instrument_does_not_disturb_the_send(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An instrument that raises is logged; the send and its receivers go on."""

    class Broken(Instrument):
        def receiver_started(self, event: SendEvent, receiver: Callable[..., Any]) -> None:
            raise RuntimeError("broken instrument")

    signal = Signal(name="watched")
    signal.connect(sync_one)
    broken = Broken()
    add_instrument(broken, signal)
    with caplog.at_level(logging.ERROR, logger="asyncsignals.instrument"):
        assert signal.send_sync(None) == [(sync_one, "sync")]
    (record,) = caplog.records
    assert "failed in receiver_started" in record.getMessage()


def test_only_instruments_can_be_added() -> None:
    """add_instrument refuses anything that is not an Instrument."""
    with pytest.raises(TypeError, match="expects an Instrument"):
        add_instrument(object())  # type: ignore[arg-type]


def test_instrument_base_class_does_nothing() -> None:
    """The base Instrument's methods are all no-ops, so subclasses override what they need."""
    signal = Signal(name="quiet")
    signal.connect(sync_one)
    plain = Instrument()
    add_instrument(plain, signal)
    assert signal.send_sync(None) == [(sync_one, "sync")]
    remove_instrument(plain, signal)
    assert repr(SendEvent(signal, None, {})) == "<SendEvent <Signal quiet> sender=None>"


class SendsOnly(Instrument):
    """Hears of whole sends only: no receiver is wrapped for it."""

    def __init__(self) -> None:
        self.events: list[SendEvent] = []

    def send_finished(self, event: SendEvent) -> None:
        self.events.append(event)


@pytest.mark.parametrize("concurrent", [True, False])
async def test_an_instrument_of_whole_sends_sees_each_send_and_its_results(
    concurrent: bool,
) -> None:
    """An instrument overriding only send_finished hears of each send, with its real receivers."""
    signal = Signal(name="whole", concurrent=concurrent)
    for receiver in (sync_one, async_one, in_thread):
        signal.connect(receiver, to_thread=receiver is in_thread)
    instrument = SendsOnly()
    add_instrument(instrument, signal)
    try:
        results = await signal.send(None)
        assert await signal.send_robust(None) == results
    finally:
        remove_instrument(instrument, signal)
    assert results == [(sync_one, "sync"), (async_one, "async"), (in_thread, "thread")]
    assert [event.results for event in instrument.events] == [results, results]
    assert all(event.duration is not None for event in instrument.events)


async def test_a_receiver_method_set_on_the_instance_is_called() -> None:
    """An instrument's method given to the instance, not the class, is called as an override."""
    heard: list[tuple[str, object]] = []
    instrument = Instrument()
    instrument.receiver_finished = (  # type: ignore[method-assign]
        lambda event, receiver, result, error, duration: heard.append((receiver.__name__, result))
    )
    signal = Signal()
    signal.connect(sync_one)
    signal.connect(async_one)
    add_instrument(instrument, signal)
    try:
        await signal.send(None)
    finally:
        remove_instrument(instrument, signal)
    assert sorted(heard) == [("async_one", "async"), ("sync_one", "sync")]


async def test_sends_made_by_receivers_of_a_background_send_are_not_background() -> None:
    """Under an instrument of whole sends, a receiver's own send in a background send is not one."""
    inner = Signal(name="inner")
    outer = Signal(name="outer")

    async def forwards(sender: object, **kwargs: Any) -> None:
        await inner.send(sender)

    outer.connect(forwards)
    inner.connect(sync_one)
    instrument = SendsOnly()
    add_instrument(instrument, outer)
    add_instrument(instrument, inner)
    try:
        with anyio.fail_after(5):
            async with BackgroundDispatcher() as dispatcher:
                await dispatcher.send_wait(outer, None)
    finally:
        remove_instrument(instrument, outer)
        remove_instrument(instrument, inner)
    assert {event.signal.name: event.background for event in instrument.events} == {
        "inner": False,
        "outer": True,
    }


async def test_an_instrument_of_whole_sends_beside_a_capture_sees_the_real_receivers() -> None:
    """With a capture wrapping nothing either, an instrument of whole sends still sees each send."""
    signal = Signal(name="captured")
    signal.connect(sync_one)
    signal.connect(async_one)
    instrument = SendsOnly()
    add_instrument(instrument, signal)
    try:
        with capture(signal) as sends:
            results = await signal.send(None)
    finally:
        remove_instrument(instrument, signal)
    assert results == [(sync_one, "sync"), (async_one, "async")]
    assert [event.results for event in instrument.events] == [results]
    assert [send.results for send in sends.sends] == [results]


async def test_a_timed_receiver_under_a_limit_is_reported_with_its_timeout(
    recorder: Recorder,
) -> None:
    """Under a concurrency limit, a receiver an instrument wraps still gets the signal's timeout."""

    async def too_slow(sender: object, **kwargs: Any) -> str:
        await anyio.sleep(5)
        return "late"  # pragma: no cover (timed out)

    signal = Signal(name="limited", timeout=0.01, max_concurrency=1)
    signal.connect(too_slow)
    signal.connect(async_one)
    add_instrument(recorder, signal)
    with anyio.fail_after(5):
        results = await signal.send_robust(None)
    assert isinstance(results[0][1], TimeoutError)
    assert results[1] == (async_one, "async")
    assert ("receiver finished", "too_slow", None, "TimeoutError") in recorder.log
