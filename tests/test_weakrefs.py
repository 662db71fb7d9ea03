"""Weak references: collected receivers vanish; strong ones and disconnects behave."""

from __future__ import annotations

import gc
import threading
import tracemalloc
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
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


def make_async_function() -> Callable[..., Awaitable[str]]:
    async def transient_async(sender: object, **kwargs: Any) -> str:
        return "transient async"

    return transient_async


def in_this_thread(sender: object, **kwargs: Any) -> int:
    return threading.get_ident()


def signal_whose_async_receiver_was_collected(concurrent: bool = True) -> Signal:
    """A signal with a live sync receiver (``in_this_thread``) and a collected async one."""
    signal = Signal(concurrent=concurrent)
    signal.connect(in_this_thread)
    doomed = make_async_function()
    signal.connect(doomed)
    assert signal.receivers_for(None) == [in_this_thread, doomed]
    del doomed
    gc.collect()
    return signal


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


@pytest.mark.parametrize("method", ["send", "send_robust"])
@pytest.mark.parametrize("concurrent", [True, False], ids=["concurrent", "sequential"])
async def test_send_to_sync_receivers_left_by_a_collected_async_one_does_not_yield(
    method: str, concurrent: bool
) -> None:
    """Its async receiver collected, a send runs the sync ones like a call, even when cancelled."""
    signal = signal_whose_async_receiver_was_collected(concurrent)
    scheduled: list[str] = []

    async def bystander() -> None:
        scheduled.append("ran")

    results: list[Any] | None = None
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(bystander)
        with anyio.CancelScope() as scope:
            scope.cancel()
            results = await getattr(signal, method)(None)
        # Had the send yielded, the bystander would have run, and the
        # cancellation would have ended the send.
        assert scheduled == []
        assert not scope.cancelled_caught
    assert results == [(in_this_thread, threading.get_ident())]


@pytest.mark.parametrize("method", ["send_sync", "send_robust_sync"])
@pytest.mark.parametrize("concurrent", [True, False], ids=["concurrent", "sequential"])
@pytest.mark.parametrize("caller", ["loop thread", "worker thread"])
async def test_send_sync_after_the_only_async_receiver_was_collected(
    method: str, concurrent: bool, caller: str
) -> None:
    """Its async receiver collected, send_sync works on the loop's thread, runs in the caller's."""
    signal = signal_whose_async_receiver_was_collected(concurrent)

    def send_here() -> tuple[int, list[Any]]:
        return threading.get_ident(), getattr(signal, method)(None)

    if caller == "loop thread":
        calling_thread, results = send_here()
    else:
        calling_thread, results = await anyio.to_thread.run_sync(send_here)
    assert results == [(in_this_thread, calling_thread)]


async def test_lookups_after_the_only_async_receiver_was_collected() -> None:
    """has_listeners and receivers_for leave out a collected async receiver."""
    signal = signal_whose_async_receiver_was_collected()
    assert signal.has_listeners(None)
    assert signal.receivers_for(None) == [in_this_thread]
    assert signal.disconnect(in_this_thread)
    assert not signal.has_listeners(None)
    assert signal.receivers_for(None) == []


# A connection left behind keeps over 200 bytes: its tuple, its weak reference
# and its slot in a dict. A few are traced as kept even when all are released:
# the interpreter keeps up to 2,000 freed tuples of a size for reuse. So
# enough receivers that the two are far apart: about 2 MB against 0.2 MB.
COLLECTED = 10_000
KEPT_PER_CONNECTION = 50  # bytes


@pytest.mark.parametrize(
    "lookup", ["send", "send_robust", "send_sync", "has_listeners", "receivers_for"]
)
async def test_connections_of_collected_receivers_are_released_by_the_next_lookup(
    lookup: str,
) -> None:
    """What collected receivers' connections held is freed by the next send or lookup, not kept."""
    signal = Signal()
    signal.connect(in_this_thread)
    expected = await signal.send(None)

    def connect_receivers_that_die() -> None:
        receivers = [make_async_function() for _ in range(COLLECTED)]
        for each in receivers:
            signal.connect(each)

    async def look_up() -> None:
        outcome = getattr(signal, lookup)(None)
        if lookup.startswith("send") and not lookup.endswith("_sync"):
            outcome = await outcome
        assert outcome in (expected, True, [in_this_thread])

    connect_receivers_that_die()  # whatever connecting allocates once is allocated now
    await look_up()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        connect_receivers_that_die()
        gc.collect()
        await look_up()
        left = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert left < COLLECTED * KEPT_PER_CONNECTION
