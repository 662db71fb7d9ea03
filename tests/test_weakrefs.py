"""Weak references: collected receivers vanish; strong ones and disconnects behave."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from asyncsignals import Signal

pytestmark = pytest.mark.anyio


class Listener:
    def on_event(self, sender: object, **kwargs: Any) -> str:
        return "method"

    async def on_event_async(self, sender: object, **kwargs: Any) -> str:
        return "async method"


def make_function() -> Callable[..., str]:
    def transient(sender: object, **kwargs: Any) -> str:
        return "transient"

    return transient


@pytest.mark.parametrize("for_sender", [False, True])
async def test_collected_receiver_disappears_silently(for_sender: bool) -> None:
    """A weakly held receiver that is collected is no longer called or listed."""
    sender = Listener() if for_sender else None
    signal = Signal()
    receiver = make_function()
    signal.connect(receiver, sender=sender)
    assert signal.has_listeners(sender)
    del receiver
    gc.collect()
    assert not signal.has_listeners(sender)
    assert signal.receivers_for(sender) == []
    assert await signal.send(sender) == []
    assert await signal.send_robust(sender) == []


async def test_bound_method_held_by_weak_method() -> None:
    """A bound method lives as long as its object, not as long as the method object."""
    listener = Listener()
    signal = Signal()
    signal.connect(listener.on_event)
    signal.connect(listener.on_event_async)
    gc.collect()
    results = await signal.send(None)
    assert [value for _, value in results] == ["method", "async method"]
    del listener, results
    gc.collect()
    assert await signal.send(None) == []


async def test_weak_false_keeps_receiver_alive() -> None:
    """weak=False holds the receiver strongly: it is called after every other reference is gone."""
    signal = Signal()
    receiver = make_function()
    alive = weakref.ref(receiver)
    signal.connect(receiver, weak=False)
    del receiver
    gc.collect()
    assert alive() is not None
    [(_, value)] = await signal.send(None)
    assert value == "transient"


def test_weak_false_bound_method_keeps_its_object_alive() -> None:
    """weak=False on a bound method keeps its object alive too."""
    listener = Listener()
    alive = weakref.ref(listener)
    signal = Signal()
    signal.connect(listener.on_event, weak=False)
    del listener
    gc.collect()
    assert alive() is not None


@pytest.mark.parametrize("weak", [False, True])
@pytest.mark.parametrize("for_sender", [False, True])
def test_nothing_retained_after_disconnect(weak: bool, for_sender: bool) -> None:
    """After disconnect the signal holds neither the receiver nor the sender."""
    sender: Listener | None = Listener() if for_sender else None
    sender_alive = weakref.ref(sender) if sender is not None else None
    listener = Listener()
    listener_alive = weakref.ref(listener)
    signal = Signal()
    signal.connect(listener.on_event, sender=sender, weak=weak)
    assert signal.disconnect(listener.on_event, sender=sender)
    del listener, sender
    gc.collect()
    assert listener_alive() is None
    assert sender_alive is None or sender_alive() is None


async def test_receiver_collected_then_new_one_connects() -> None:
    """After a receiver is collected, a new receiver connects and is called (not ignored)."""
    signal = Signal()
    for _ in range(3):
        receiver = make_function()
        signal.connect(receiver)
        assert await signal.send(None) == [(receiver, "transient")]
        del receiver
        gc.collect()
    assert not signal.has_listeners()


@pytest.mark.parametrize("shape", ["function", "bound method"])
@pytest.mark.parametrize("with_async", [False, True], ids=["sync only", "with an async one"])
async def test_receiver_collected_during_a_send_is_skipped(with_async: bool, shape: str) -> None:
    """A receiver collected while a send runs is not called by the rest of that send."""
    signal = Signal()
    doomed = make_function() if shape == "function" else Listener().on_event
    held: dict[str, Callable[..., str]] = {"doomed": doomed}
    del doomed

    def drops_the_next(sender: object, **kwargs: Any) -> str:
        del held["doomed"]
        gc.collect()
        return "dropped"

    async def async_receiver(sender: object, **kwargs: Any) -> str:
        return "async"

    signal.connect(drops_the_next)
    signal.connect(held["doomed"])
    if with_async:
        signal.connect(async_receiver)
    results = await signal.send(None)
    assert results == [(drops_the_next, "dropped")] + (
        [(async_receiver, "async")] if with_async else []
    )


async def test_collected_receiver_of_a_live_sender_is_dropped() -> None:
    """A sender whose only receiver was collected is left with the any-sender ones."""
    kept_sender, emptied_sender = Listener(), Listener()
    kept = make_function()
    signal = Signal()
    signal.connect(kept, sender=kept_sender)
    signal.connect(make_function(), sender=emptied_sender)
    gc.collect()
    signal.connect(kept)  # connect cleans up what was collected
    assert signal.receivers_for(emptied_sender) == [kept]
    assert signal.receivers_for(kept_sender) == [kept, kept]


async def test_collected_sender_is_cleaned_up_on_connect() -> None:
    """Connections of a collected sender are dropped and a new sender starts empty."""
    signal = Signal()
    sender = Listener()
    receiver = make_function()
    signal.connect(receiver, sender=sender)
    del sender
    gc.collect()
    other = Listener()
    signal.connect(receiver, sender=other)
    assert await signal.send(other) == [(receiver, "transient")]
