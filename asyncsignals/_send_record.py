"""The record of one send, as the test helpers see it, and how failure messages describe sends.

A :class:`Send` is what a capture, a wait or a stream hands to a test; a
:class:`Match` is what they look for. The hub that observes the signal
(``_watching``) is the only writer of a record.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Mapping
from typing import Any, Final, Generic

from typing_extensions import TypeVar

from ._receivers import signal_label
from ._signal import Signal

__all__ = ["ANY_SENDER", "Match", "Send", "list_sends", "quantity", "record_end", "record_receiver"]


class _AnySender:
    """The default of every ``sender=`` filter: matches every sender."""

    def __repr__(self) -> str:
        return "<any sender>"


ANY_SENDER: Final = _AnySender()

# What the receivers of the recorded signal return (Any for an untyped signal).
R = TypeVar("R", default=Any)

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = _repr.maxlong = 200
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 20


class Send(Generic[R]):
    """One send of a signal, as a capture, a wait or a stream saw it.

    ``Send[R]`` for a signal whose receivers return ``R``: what a capture of
    a declared signal records.

    Recorded when the send starts, completed when it returns or raises.

    Attributes:
        signal: The signal that was sent.
        sender: The ``sender`` it was sent with.
        payload: The named arguments it was sent with (a copy).
        muted: True when :func:`muted` silenced the whole send: no receiver ran.
    """

    __slots__ = ("_error", "_receivers", "_results", "done", "muted", "payload", "sender", "signal")

    def __init__(
        self, signal: Signal[..., Any], sender: object, payload: dict[str, Any], muted: bool
    ) -> None:
        self.signal: Signal[..., Any] = signal
        self.sender: object = sender
        self.payload: dict[str, Any] = payload
        self.muted: bool = muted
        #: True once the send has returned or raised.
        self.done: bool = False
        self._receivers: list[Callable[..., Any]] = []
        self._results: list[tuple[Callable[..., Any], Any]] | None = None
        self._error: BaseException | None = None

    @property
    def receivers(self) -> tuple[Callable[..., Any], ...]:
        """The receivers this send called, in connection order (muted ones left out)."""
        return tuple(self._receivers)

    @property
    def results(self) -> list[tuple[Callable[..., Any], R | Exception]] | None:
        """What the send returned: ``[(receiver, result), ...]``.

        None while the send is running and when it raised (see :attr:`error`).
        For ``send_robust`` a failing receiver's slot holds its exception.
        """
        return None if self._results is None else list(self._results)

    @property
    def error(self) -> BaseException | None:
        """The exception the send raised, or None."""
        return self._error

    def _finish(
        self, results: list[tuple[Callable[..., Any], Any]] | None, error: BaseException | None
    ) -> None:
        self._results = results
        self._error = error
        self.done = True

    def describe(self) -> str:
        """The send on one line: sender, payload, and how it ended if not normally."""
        arguments = ", ".join(
            f"{name}={_repr.repr(value)}"
            for name, value in {"sender": self.sender, **self.payload}.items()
        )
        if self.muted:
            return f"{arguments} (muted)"
        if self._error is not None:
            return f"{arguments} (raised {type(self._error).__name__}: {self._error})"
        if not self.done:
            return f"{arguments} (still running)"
        return arguments

    def __repr__(self) -> str:
        return f"<Send of {signal_label(self.signal)}: {self.describe()}>"


# The hub fills a record in through these two, so that what it writes stays
# out of Send's public API (a test reads a send, it never writes one).


def record_receiver(send: Send, receiver: Callable[..., Any]) -> None:
    """Note that ``send`` calls ``receiver`` (after every other it called so far)."""
    send._receivers.append(receiver)  # pyright: ignore[reportPrivateUsage] (this module's)


def record_end(
    send: Send, results: list[tuple[Callable[..., Any], Any]] | None, error: BaseException | None
) -> None:
    """Note how ``send`` ended: its results, or the exception it raised (results None)."""
    send._finish(results, error)  # pyright: ignore[reportPrivateUsage] (this module's)


class Match:
    """What a wait, a stream or an assertion looks for: a sender, payload names, a predicate."""

    __slots__ = ("exact", "payload", "predicate", "sender")

    def __init__(
        self,
        sender: object,
        payload: Mapping[str, Any],
        predicate: Callable[[Send], bool] | None = None,
        exact: bool = False,
    ) -> None:
        self.sender: object = sender
        self.payload: dict[str, Any] = dict(payload)
        self.predicate: Callable[[Send], bool] | None = predicate
        self.exact: bool = exact

    def __call__(self, send: Send) -> bool:
        expected = self.sender
        if expected is not ANY_SENDER and not (send.sender is expected or expected == send.sender):
            return False
        if self.exact and send.payload.keys() != self.payload.keys():
            return False
        for name, value in self.payload.items():
            if name not in send.payload or value != send.payload[name]:
                return False
        return self.predicate is None or bool(self.predicate(send))

    def describe(self) -> str:
        """How a message names what was looked for: ' with sender=..., name=...'."""
        wanted = {} if self.sender is ANY_SENDER else {"sender": self.sender}
        wanted.update(self.payload)
        parts = [f"{name}={_repr.repr(value)}" for name, value in wanted.items()]
        if self.predicate is not None:
            name = getattr(self.predicate, "__qualname__", None) or repr(self.predicate)
            parts.append(f"matching {name}")
        return f" with {', '.join(parts)}" if parts else ""


def quantity(count: int, word: str) -> str:
    """``count`` and ``word``, plural unless the count is one: '1 send', '3 sends'."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def list_sends(sent: list[Send]) -> str:
    """Every send, numbered, for a failure message."""
    if not sent:
        return "it was never sent"
    lines = [f"  {number}. {send.describe()}" for number, send in enumerate(sent, 1)]
    return f"it was sent {quantity(len(sent), 'time')}:\n" + "\n".join(lines)
