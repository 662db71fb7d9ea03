"""Streaming the sends of a signal to an ``async for`` loop, each once it has finished.

A stream watches the signal through the hub in ``_watching`` and hands each
matching send to the loop through a bounded buffer that never blocks the code
under test: a send that finds it full is dropped, and the loop says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any, Generic

import anyio
from typing_extensions import ParamSpec, TypeVar

from ._receivers import signal_label
from ._send_record import ANY_SENDER, Match, Send, quantity
from ._signal import Signal
from ._watching import LoopCall, Observer, acquire, check_signal, release

__all__ = ["SendStream", "sends"]

# The streamed signal's payload and result (any, for an untyped signal).
P = ParamSpec("P", default=...)
R = TypeVar("R", default=Any)


class SendStream(Observer, Generic[P, R]):
    """The sends of a signal as an async iterator; see :func:`sends`.

    ``SendStream[P, R]`` for a ``Signal[P, R]``: it yields ``Send[R]``.
    """

    def __init__(self, signal: Signal[P, R], match: Match, max_buffer: int) -> None:
        self.signal = signal
        self.max_buffer = max_buffer
        self._match = match
        self._send_stream, self._receive_stream = anyio.create_memory_object_stream[Send[R]](
            max_buffer
        )
        self._call = LoopCall()
        self._dropped = 0

    def finished(self, send: Send[R]) -> None:
        if self._match(send):
            self._call(lambda: self._push(send))

    def _push(self, send: Send[R]) -> None:
        if self._dropped:
            self._dropped += 1
            return
        try:
            self._send_stream.send_nowait(send)
        except anyio.WouldBlock:
            # The consumer fell behind. Stop here rather than block or fail
            # the code under test: the consumer reads what was buffered, then
            # gets an error saying sends were lost.
            self._dropped = 1
            self._send_stream.close()
        except anyio.ClosedResourceError:
            pass  # the stream's block has exited

    def __aiter__(self) -> SendStream[P, R]:
        return self

    async def __anext__(self) -> Send[R]:
        """The next matching send, in the order the sends finished.

        Raises:
            AssertionError: The buffer was full when a send finished: the
                buffered sends come first, then this error.
            StopAsyncIteration: The stream's block has exited.
        """
        try:
            return await self._receive_stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self._dropped:
                raise AssertionError(
                    f"{quantity(self._dropped, 'send')} of {signal_label(self.signal)} found the "
                    f"stream's buffer of {self.max_buffer} full and were dropped; "
                    "read faster or pass a larger max_buffer"
                ) from None
            raise StopAsyncIteration from None

    def _close(self) -> None:
        self._send_stream.close()
        self._receive_stream.close()


@contextlib.asynccontextmanager
async def sends(
    signal: Signal[P, R],
    predicate: Callable[[Send[R]], bool] | None = None,
    *,
    sender: object = ANY_SENDER,
    max_buffer: int = 100,
    **payload: Any,
) -> AsyncGenerator[SendStream[P, R], None]:
    """Stream the matching sends of ``signal`` to an ``async for`` loop.

    Use it as ``async with sends(order_shipped) as stream: async for sent in
    stream: ...``. Watching starts before the block is entered, so no send
    made after that is missed; each matching :class:`Send` is delivered once
    it has finished, in the order the sends finished. For a ``Signal[P, R]``
    the stream is a ``SendStream[P, R]``: each send is a ``Send[R]``, whose
    results are typed.

    Args:
        signal: The signal to watch.
        predicate: Only sends it returns true for are delivered.
        sender: Only sends from this sender (the same object, or one that
            compares equal); omit it for every sender.
        max_buffer: How many finished sends may wait to be read. A send that
            finds the buffer full is dropped, never blocked: the code under
            test runs as it would without the stream, and the loop raises
            ``AssertionError`` once it has read the buffered sends.
        **payload: Payload names and values that must compare equal.

    Raises:
        ValueError: ``max_buffer`` is less than 1.
        TypeError: ``signal`` is not an asyncsignals ``Signal``.

    Cancellation: iterating is a cancellation point. The loop never ends by
    itself; leave it with ``break`` or bound it with a timeout
    (``anyio.fail_after``). Sends from worker threads are delivered too.
    """
    check_signal(signal, "sends")
    if max_buffer < 1:
        raise ValueError(f"max_buffer must be at least 1, got {max_buffer}")
    stream = SendStream(signal, Match(sender, payload, predicate), max_buffer)
    acquire(signal, stream)
    try:
        yield stream
    finally:
        release(signal, stream)
        stream._close()  # pyright: ignore[reportPrivateUsage] (this module's)
