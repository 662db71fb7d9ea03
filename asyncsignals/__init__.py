"""asyncsignals: Django's signal API, async-native and structured, on anyio."""

from ._background import (
    BackgroundDispatcher,
    BackgroundSend,
    DispatcherClosedError,
    DispatcherFullError,
    ShutdownReport,
)
from ._decorator import receiver
from ._instrument import Instrument, SendEvent, add_instrument, remove_instrument
from ._receivers import Receiver, ReceiverDecorator
from ._signal import Results, Signal

# Kept equal to the version in pyproject.toml (a test compares the two).
__version__ = "0.1.0"

__all__ = [
    "BackgroundDispatcher",
    "BackgroundSend",
    "DispatcherClosedError",
    "DispatcherFullError",
    "Instrument",
    "Receiver",
    "ReceiverDecorator",
    "Results",
    "SendEvent",
    "ShutdownReport",
    "Signal",
    "add_instrument",
    "receiver",
    "remove_instrument",
]
