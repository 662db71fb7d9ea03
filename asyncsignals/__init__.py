"""asyncsignals: Django's signal API, async-native and structured, on anyio."""

from ._background import (
    BackgroundDispatcher,
    BackgroundSend,
    DispatcherClosedError,
    DispatcherFullError,
    ShutdownReport,
)
from ._signal import Signal, receiver

__all__ = [
    "BackgroundDispatcher",
    "BackgroundSend",
    "DispatcherClosedError",
    "DispatcherFullError",
    "ShutdownReport",
    "Signal",
    "receiver",
]
