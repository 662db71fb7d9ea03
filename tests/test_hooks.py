"""The private hooks asyncsignals.testing stands on: restoring and observing."""

from __future__ import annotations

from typing import Any

import pytest

from asyncsignals import Signal
from asyncsignals._signal import connections_of
from asyncsignals.testing import capture


class BoomError(Exception):
    pass


def test_restore_puts_back_sender_specific_connections() -> None:
    """Saved connections for a specific sender come back, and later ones go."""
    signal = Signal()

    class Sender:
        pass

    sender = Sender()

    def kept(sender: object, **kwargs: Any) -> str:
        return "kept"

    def added_later(sender: object, **kwargs: Any) -> str:
        return "added later"

    signal.connect(kept, sender=sender)
    saved = connections_of(signal).save()
    signal.disconnect(kept, sender=sender)
    signal.connect(added_later, sender=sender)
    connections_of(signal).restore(saved)
    assert signal.receivers_for(sender) == [kept]
    assert signal.send_sync(sender) == [(kept, "kept")]


def test_observed_send_sync_that_raises_is_recorded() -> None:
    """A send_sync that raises while observed is recorded with its error and re-raised."""
    signal = Signal(name="failing")

    def fails(sender: object, **kwargs: Any) -> None:
        raise BoomError("no")

    signal.connect(fails)
    with capture(signal) as captured, pytest.raises(BoomError):
        signal.send_sync(None)
    (sent,) = captured.sends
    assert isinstance(sent.error, BoomError)
    assert sent.results is None
