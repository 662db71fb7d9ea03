"""Muting a signal and connecting a receiver for one block, or for each call of a function.

:func:`muted` and :func:`connected_to` return a block that is a ``with``
block and a decorator alike; muting itself is the hub's (``_watching``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from ._receivers import is_async_callable
from ._signal import Signal, connections_of
from ._watching import check_signal, muting

__all__ = ["connected_to", "muted"]

ReceiverT = TypeVar("ReceiverT", bound=Callable[..., Any])
FunctionT = TypeVar("FunctionT", bound=Callable[..., Any])
BlockT = TypeVar("BlockT")


class _Block(Generic[BlockT]):
    """What :func:`muted` and :func:`connected_to` return: a ``with`` block, or a decorator.

    As a decorator of a sync or an async function, each call runs in a block
    of its own (for an async function: from the call's first step to its
    return, so async tests can be decorated).
    """

    __slots__ = ("_helper", "_make", "_open")

    def __init__(
        self, helper: str, make: Callable[[], contextlib.AbstractContextManager[BlockT]]
    ) -> None:
        self._helper = helper
        self._make = make
        self._open: contextlib.AbstractContextManager[BlockT] | None = None

    def __enter__(self) -> BlockT:
        if self._open is not None:
            raise RuntimeError(f"this {self._helper}() block is already open")
        block = self._make()
        value = block.__enter__()
        self._open = block
        return value

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        block, self._open = self._open, None
        assert block is not None, "exited without being entered"
        return block.__exit__(exc_type, exc, traceback)

    def __call__(self, function: FunctionT) -> FunctionT:
        if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
            raise TypeError(
                f"{self._helper}() cannot decorate the generator function "
                f"{getattr(function, '__qualname__', function)!r}: its block would end "
                f"before the generator runs; use 'with {self._helper}(...):' inside it"
            )
        make = self._make
        if is_async_callable(function):

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with make():
                    return await function(*args, **kwargs)

            return cast("FunctionT", run_async)

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            with make():
                return function(*args, **kwargs)

        return cast("FunctionT", run)


def muted(signal: Signal[..., Any], receiver: Callable[..., Any] | None = None) -> _Block[None]:
    """Inside the block, sends of ``signal`` run no receiver (or skip just ``receiver``).

    A muted send returns ``[]`` at once; with ``receiver``, only that
    receiver is left out (compared with ``==``, so a bound method matches
    the same object's method). Captures still record muted sends, with
    ``Send.muted`` true.

    Scope: the current ``contextvars`` context, so concurrent tasks and
    tests are unaffected. Tasks started inside the block copy the context
    and so are muted too, but only until the block exits: muting ends
    everywhere when it does. Blocks nest.

    As a decorator (``@muted(signal)``) of a sync or an async function,
    such as an async test, each call runs muted until it returns.

    Raises:
        TypeError: ``signal`` is not an asyncsignals ``Signal``, or the
            decorated function is a generator function.
    """
    check_signal(signal, "muted")
    return _Block("muted", lambda: muting(signal, receiver))


def _connection_numbers(signal: Signal[..., Any]) -> set[int]:
    """The sequence number of every connection the signal holds."""
    return connections_of(signal).sequence_numbers()


def connected_to(
    signal: Signal[..., Any], receiver: ReceiverT, sender: object = None, **connect_kwargs: Any
) -> _Block[ReceiverT]:
    """Connect ``receiver`` to ``signal`` for the block only; yields the receiver.

    ``sender`` and ``connect_kwargs`` (``weak``, ``dispatch_uid``,
    ``to_thread``) are passed to :meth:`Signal.connect`. The connection is
    removed when the block exits, even by an exception or a cancellation.
    If the same connection already existed, the connect is a no-op and the
    existing connection is left in place at exit.

    Unlike :func:`muted`, this changes the signal for every task and thread.

    As a decorator (``@connected_to(signal, receiver)``) of a sync or an
    async function, such as an async test, the receiver is connected while
    each call runs.

    Raises:
        TypeError: As :meth:`Signal.connect` does (when the block is
            entered), or ``signal`` is not an asyncsignals ``Signal``, or the
            decorated function is a generator function.
    """
    check_signal(signal, "connected_to")
    return _Block("connected_to", lambda: _connected_to(signal, receiver, sender, connect_kwargs))


@contextlib.contextmanager
def _connected_to(
    signal: Signal[..., Any], receiver: ReceiverT, sender: object, connect_kwargs: dict[str, Any]
) -> Generator[ReceiverT, None, None]:
    before = _connection_numbers(signal)
    signal.connect(receiver, sender, **connect_kwargs)
    added = bool(_connection_numbers(signal) - before)
    try:
        yield receiver
    finally:
        if added:
            signal.disconnect(receiver, sender, connect_kwargs.get("dispatch_uid"))
