"""Senders: matched by identity, never kept alive, never confused with a reused id()."""

from __future__ import annotations

import gc
import inspect
import weakref
from typing import Any

import pytest

from asyncsignals import Signal

pytestmark = pytest.mark.anyio


class Sender:
    """A weakly referenceable sender that compares equal to every other one."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0


class SlottedSender:
    """A sender that cannot be weakly referenced; reports when it is deleted."""

    __slots__ = ("deleted",)

    def __init__(self, deleted: list[bool]) -> None:
        self.deleted = deleted

    def __del__(self) -> None:
        self.deleted.append(True)


def handler(sender: object, **kwargs: Any) -> object:
    return sender


async def call(send: Any, *args: Any, **kwargs: Any) -> Any:
    """What a send method returns, awaited when it is async."""
    outcome = send(*args, **kwargs)
    return await outcome if inspect.isawaitable(outcome) else outcome


async def test_sender_matched_by_identity_not_equality() -> None:
    """An equal but distinct sender does not reach receivers connected for another object."""
    connected, lookalike = Sender(), Sender()
    assert connected == lookalike
    signal = Signal()
    signal.connect(handler, sender=connected)
    assert await signal.send(lookalike) == []
    assert await signal.send(connected) == [(handler, connected)]


async def test_equal_unweakrefable_senders_matched_by_identity() -> None:
    """Equal values that are distinct objects are different senders."""
    connected = (1, 2, [3])
    lookalike = (1, 2, [3])
    signal = Signal()
    signal.connect(handler, sender=connected)
    assert await signal.send(lookalike) == []
    assert await signal.send(connected) == [(handler, connected)]


async def test_any_sender_and_specific_sender_connection_calls_twice() -> None:
    """A receiver connected for any sender and for X is called twice by a send from X."""
    sender = Sender()
    signal = Signal()
    signal.connect(handler)
    signal.connect(handler, sender=sender)
    assert await signal.send(sender) == [(handler, sender), (handler, sender)]
    assert await signal.send(None) == [(handler, None)]


async def test_specific_sender_receiver_not_reached_by_other_senders() -> None:
    """A receiver connected for X is not called for another sender or for sender=None."""
    sender = Sender()
    signal = Signal()
    signal.connect(handler, sender=sender)
    assert await signal.send(None) == []
    assert await signal.send(object()) == []


async def test_send_results_merge_in_connection_order() -> None:
    """Any-sender and per-sender receivers run in the order they were connected."""
    calls: list[str] = []

    def first(sender: object, **kwargs: Any) -> None:
        calls.append("first")

    def second(sender: object, **kwargs: Any) -> None:
        calls.append("second")

    def third(sender: object, **kwargs: Any) -> None:
        calls.append("third")

    sender = Sender()
    signal = Signal()
    signal.connect(first, sender=sender)
    signal.connect(second)
    signal.connect(third, sender=sender)
    results = await signal.send(sender)
    assert calls == ["first", "second", "third"]
    assert [receiver for receiver, _ in results] == [first, second, third]


def test_signal_never_keeps_a_sender_alive() -> None:
    """Connecting for a sender holds it weakly: it is collected once its owner drops it."""
    sender = Sender()
    alive = weakref.ref(sender)
    signal = Signal()
    signal.connect(handler, sender=sender)
    assert signal.has_listeners(sender)
    del sender
    gc.collect()
    assert alive() is None


async def test_caching_never_keeps_a_sender_alive() -> None:
    """Sending (which caches the lookup) does not keep the sender alive either."""
    sender = Sender()
    alive = weakref.ref(sender)
    signal = Signal(use_caching=True)
    signal.connect(handler, sender=sender)
    await signal.send(sender)
    signal.receivers_for(sender)
    del sender
    gc.collect()
    assert alive() is None


async def test_dead_senders_connections_are_dropped() -> None:
    """When a sender dies its connections go: they are not found by later connects or sends."""
    signal = Signal()
    signal.connect(handler)
    for _ in range(3):
        sender = Sender()
        signal.connect(handler, sender=sender)
        del sender
    gc.collect()
    fresh = Sender()
    assert await signal.send(fresh) == [(handler, fresh)]
    signal.connect(handler, sender=fresh)
    assert len(await signal.send(fresh)) == 2


@pytest.mark.parametrize("sent_first", [False, True], ids=["never sent", "sent"])
async def test_strong_receivers_of_a_dead_sender_are_released_at_once(sent_first: bool) -> None:
    """A receiver held strongly only for one sender goes when that sender does, not later."""

    def make_receiver() -> Any:
        def receiver(sender: object, **kwargs: Any) -> None:
            pass

        return receiver

    signal = Signal()
    other = Sender()
    sender = Sender()
    receiver = make_receiver()
    signal.connect(receiver, sender=sender, weak=False)
    # The same receiver, weakly, for another sender: it dies with the last strong hold.
    signal.connect(receiver, sender=other, dispatch_uid="weakly")
    if sent_first:
        await signal.send(sender)  # caches the lookup, which holds the receiver too
    released = weakref.ref(receiver)
    del receiver, sender
    gc.collect()
    # No connect, send or cleanup has run since: the sender's death did it.
    assert released() is None
    assert signal.disconnect(sender=other, dispatch_uid="weakly") is False


async def test_new_object_reusing_dead_senders_id_does_not_inherit_receivers() -> None:
    """An object that gets the id() of a dead sender is a new sender with no receivers."""
    signal = Signal()
    senders = [Sender() for _ in range(50)]
    for sender in senders:
        signal.connect(handler, sender=sender)
    dead_ids = {id(sender) for sender in senders}
    del sender, senders
    gc.collect()
    # New objects of the same size land on the freed addresses.
    candidates = [Sender() for _ in range(200)]
    reusing = [candidate for candidate in candidates if id(candidate) in dead_ids]
    assert reusing, "the allocator reused no address; the test proves nothing"
    for candidate in reusing:
        assert not signal.has_listeners(candidate)
        assert signal.receivers_for(candidate) == []
        assert await signal.send(candidate) == []


async def test_unweakrefable_sender_is_matched_by_identity() -> None:
    """A sender without weakref support (object(), str, int) still gets its receivers."""
    sender = object()
    signal = Signal()
    signal.connect(handler, sender=sender)
    assert await signal.send(sender) == [(handler, sender)]
    assert await signal.send(object()) == []


def test_unweakrefable_sender_released_after_last_disconnect() -> None:
    """The signal lets go of an unweakrefable sender once its last connection is removed."""
    deleted: list[bool] = []
    sender = SlottedSender(deleted)
    signal = Signal()
    signal.connect(handler, sender=sender)
    signal.disconnect(handler, sender=sender)
    del sender
    gc.collect()
    assert deleted == [True]


@pytest.mark.parametrize("method", ["send", "send_robust", "send_sync", "send_robust_sync"])
@pytest.mark.parametrize("connected", ["none", "sync", "async"])
@pytest.mark.parametrize("typed", [False, True], ids=["untyped", "providing_args"])
async def test_sender_given_by_position_and_by_keyword_is_a_type_error(
    method: str, connected: str, typed: bool
) -> None:
    """A send given the sender twice, by position and as sender=, raises TypeError; none runs."""
    calls: list[object] = []

    def sync_receiver(sender: object, **kwargs: Any) -> None:
        calls.append(sender)  # pragma: no cover - must not run

    async def async_receiver(sender: object, **kwargs: Any) -> None:
        calls.append(sender)  # pragma: no cover - must not run

    signal = Signal(providing_args=["order"] if typed else None)
    payload = {"order": 1} if typed else {}
    if connected != "none":
        signal.connect(sync_receiver if connected == "sync" else async_receiver)
        signal.connect(sync_receiver, sender="one")
    with pytest.raises(TypeError, match=r"sender="):
        await call(getattr(signal, method), "one", sender="two", **payload)
    assert calls == []
