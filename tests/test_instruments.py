"""Instruments hear of every send and receiver, with durations and outcomes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from asyncsignals import Instrument, SendEvent, Signal, add_instrument, remove_instrument

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
