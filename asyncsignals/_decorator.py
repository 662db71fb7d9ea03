"""The ``@receiver`` decorator: connect a function to one signal or to several."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from typing_extensions import ParamSpec, TypeVar

from ._receivers import Receiver, ReceiverDecorator
from ._signal import Signal

__all__ = ["receiver"]

# Their defaults (any payload, any result) are what a function is checked
# against for a list of signals, whose payloads may differ (the result that the
# list's signals share, where the checker infers one).
ReceiverP = ParamSpec("ReceiverP", default=...)
ReceiverR = TypeVar("ReceiverR", default=Any)


def receiver(
    signal: (
        Signal[ReceiverP, ReceiverR] | Iterable[Signal[Any, ReceiverR]] | Iterable[Signal[Any, Any]]
    ),
    **connect_kwargs: Any,
) -> ReceiverDecorator[ReceiverP, ReceiverR]:
    """Decorator: connect the function to ``signal`` (or to each of a list).

    ``connect_kwargs`` are passed to :meth:`Signal.connect`; the function is
    returned unchanged. For a declared signal the type checker checks the
    function against the signal's payload (see :class:`ReceiverDecorator`).
    For a list of signals (their payloads may differ) pyright checks only
    the function's result, against the one its signals share, and mypy
    nothing; stack ``@receiver`` once per signal to have each one check it.
    Each signal checks the function when it connects, and refuses one that
    cannot take its payload with a ``TypeError``.
    """
    signals: list[object] = [signal] if isinstance(signal, Signal) else list(signal)
    if not signals:
        raise TypeError("receiver() needs at least one signal to connect to, got none")
    for each in signals:
        if not isinstance(each, Signal):
            raise TypeError(f"receiver() expects a Signal or a list of them, got {each!r}")

    def decorator(function: Receiver[..., Any]) -> Receiver[..., Any]:
        for each in cast("list[Signal[..., Any]]", signals):
            each.connect(function, **connect_kwargs)
        return function

    return cast("ReceiverDecorator[ReceiverP, ReceiverR]", decorator)


# Its public path in reprs and tracebacks.
receiver.__module__ = "asyncsignals"
