"""Disconnecting receivers, and asking who is listening."""

from __future__ import annotations

from typing import Any

import pytest

from asyncsignals import Signal

pytestmark = pytest.mark.anyio


def handler(sender: object, **kwargs: Any) -> str:
    return "handled"


def other(sender: object, **kwargs: Any) -> str:
    return "other"


async def test_disconnect_returns_true_and_stops_delivery() -> None:
    """disconnect() returns True when it removed a connection; the receiver is no longer called."""
    signal = Signal()
    signal.connect(handler)
    assert signal.disconnect(handler) is True
    assert await signal.send(None) == []
    assert not signal.has_listeners()


def test_disconnect_unknown_receiver_returns_false() -> None:
    """disconnect() returns False when nothing matched."""
    signal = Signal()
    signal.connect(handler)
    assert signal.disconnect(other) is False
    assert signal.receivers_for(None) == [handler]


def test_disconnect_twice_returns_false_the_second_time() -> None:
    """A connection is removed once."""
    signal = Signal()
    signal.connect(handler)
    assert signal.disconnect(handler) is True
    assert signal.disconnect(handler) is False


def test_disconnect_without_sender_removes_only_the_any_sender_connection() -> None:
    """disconnect(receiver) leaves the connection made for a specific sender."""
    sender = object()
    signal = Signal()
    signal.connect(handler)
    signal.connect(handler, sender=sender)
    assert signal.disconnect(handler) is True
    assert signal.receivers_for(None) == []
    assert signal.receivers_for(sender) == [handler]


def test_disconnect_with_sender_removes_only_that_senders_connection() -> None:
    """disconnect(receiver, sender=X) leaves the any-sender connection."""
    sender = object()
    signal = Signal()
    signal.connect(handler)
    signal.connect(handler, sender=sender)
    assert signal.disconnect(handler, sender=sender) is True
    assert signal.receivers_for(sender) == [handler]
    assert signal.disconnect(handler, sender=sender) is False


def test_disconnect_with_unknown_sender_returns_false() -> None:
    """Disconnecting for a sender nothing was connected for removes nothing."""
    signal = Signal()
    signal.connect(handler)
    assert signal.disconnect(handler, sender=object()) is False
    assert signal.receivers_for(None) == [handler]


def test_disconnect_other_receiver_of_sender_keeps_the_rest() -> None:
    """Removing one receiver of a sender keeps its other receivers."""
    sender = object()
    signal = Signal()
    signal.connect(handler, sender=sender)
    signal.connect(other, sender=sender)
    assert signal.disconnect(handler, sender=sender) is True
    assert signal.disconnect(handler, sender=sender) is False
    assert signal.receivers_for(sender) == [other]


async def test_disconnect_by_dispatch_uid() -> None:
    """A connection made with a dispatch_uid is removed by that dispatch_uid."""
    signal = Signal()
    signal.connect(handler, dispatch_uid="uid")
    assert signal.disconnect(handler) is False
    assert signal.disconnect(dispatch_uid="uid") is True
    assert await signal.send(None) == []


def test_disconnect_needs_receiver_or_dispatch_uid() -> None:
    """disconnect() with neither a receiver nor a dispatch_uid is a TypeError."""
    signal = Signal()
    with pytest.raises(TypeError, match="dispatch_uid"):
        signal.disconnect()


def test_disconnect_bound_method_by_a_fresh_access() -> None:
    """A bound method is disconnected with a new access of the same method."""

    class Listener:
        def on_event(self, sender: object, **kwargs: Any) -> None:
            pass

    listener = Listener()
    signal = Signal()
    signal.connect(listener.on_event)
    assert signal.disconnect(listener.on_event) is True
    assert not signal.has_listeners()


async def test_reconnect_after_disconnect() -> None:
    """A disconnected receiver can connect again and is called again."""
    signal = Signal()
    signal.connect(handler)
    signal.disconnect(handler)
    signal.connect(handler)
    assert await signal.send(None) == [(handler, "handled")]


def test_has_listeners_none_means_any_sender_receivers() -> None:
    """has_listeners(None) is about receivers connected for any sender only."""
    sender = object()
    signal = Signal()
    assert signal.has_listeners() is False
    signal.connect(handler, sender=sender)
    assert signal.has_listeners() is False
    assert signal.has_listeners(None) is False
    assert signal.has_listeners(sender) is True
    signal.connect(other)
    assert signal.has_listeners() is True


def test_has_listeners_for_sender_includes_any_sender_receivers() -> None:
    """A sender has listeners when receivers are connected for every sender."""
    signal = Signal()
    signal.connect(handler)
    assert signal.has_listeners(object()) is True


def test_receivers_for_is_in_connection_order() -> None:
    """receivers_for() merges any-sender and per-sender receivers in connection order."""

    def third(sender: object, **kwargs: Any) -> None:
        pass

    sender = object()
    signal = Signal()
    signal.connect(handler)
    signal.connect(other, sender=sender)
    signal.connect(third)
    assert signal.receivers_for(sender) == [handler, other, third]
    assert signal.receivers_for(None) == [handler, third]
    assert signal.receivers_for(object()) == [handler, third]
