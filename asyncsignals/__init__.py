"""asyncsignals: Django's signal API, async-native and structured, on anyio."""

from ._signal import Signal, receiver

__all__ = ["Signal", "receiver"]
