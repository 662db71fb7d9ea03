"""asyncsignals: Django's signal API, async-native and structured, on anyio."""

from ._background import (
    BackgroundDispatcher,
    BackgroundSend,
    DispatcherClosedError,
    DispatcherFullError,
    ShutdownReport,
)
from ._instrument import Instrument, SendEvent, add_instrument, remove_instrument
from ._signal import Signal, receiver

__all__ = [
    "BackgroundDispatcher",
    "BackgroundSend",
    "DispatcherClosedError",
    "DispatcherFullError",
    "Instrument",
    "SendEvent",
    "ShutdownReport",
    "Signal",
    "add_instrument",
    "receiver",
    "remove_instrument",
]
