"""Helpers for async test suites: capture, wait for, stream, mute and connect signals.

Every helper works on asyncio and trio (through anyio), from sync and async
tests alike, and never touches a signal's receivers except
:func:`connected_to`, which connects one for the length of a block.

- :func:`capture` records every send of a signal, with assertions whose
  failure messages list what was actually sent.
- :func:`wait_for_send` and :meth:`SignalCapture.wait_for` wait for the next
  matching send, with a timeout; :func:`sends` streams sends to an
  ``async for`` loop through a bounded buffer.
- :func:`muted` silences a signal, or one receiver, in the current task's
  context only.
- :func:`connected_to` connects a receiver for the length of a block.

The pytest fixtures ``signal_capture`` and ``signal_isolation`` are enabled
with one line in the top-level ``conftest.py``::

    pytest_plugins = ["asyncsignals.testing"]

(PYTEST_DONT_REWRITE: pytest leaves this module's asserts alone, so it may be
imported before pytest loads it as a plugin without a warning.)
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import math
import reprlib
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from types import TracebackType
from typing import Any, Final, Generic, TypeVar, cast

import anyio
import anyio.lowlevel

from ._receivers import is_async_callable, signal_label
from ._signal import Signal, add_hook, connections_of, remove_hook

__all__ = [
    "Send",
    "SendStream",
    "SendTimeoutError",
    "SignalCapture",
    "capture",
    "connected_to",
    "muted",
    "sends",
    "wait_for_send",
]

# Loading this module as a pytest plugin (pytest_plugins = ["asyncsignals.testing"])
# loads the fixtures too, while importing it never imports pytest.
pytest_plugins: list[str] = ["asyncsignals._pytest_plugin"]

ReceiverT = TypeVar("ReceiverT", bound=Callable[..., Any])
FunctionT = TypeVar("FunctionT", bound=Callable[..., Any])
BlockT = TypeVar("BlockT")

# How long wait_for_send and SignalCapture.wait_for wait unless told.
_DEFAULT_TIMEOUT: Final = 5.0


class _AnySender:
    """The default of every ``sender=`` filter: matches every sender."""

    def __repr__(self) -> str:
        return "<any sender>"


_ANY_SENDER: Final = _AnySender()

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = _repr.maxlong = 200
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 20


def _check_signal(signal: object, helper: str) -> None:
    if not isinstance(signal, Signal):
        raise TypeError(f"{helper}() expects an asyncsignals Signal, got {signal!r}")


class Send:
    """One send of a signal, as a capture, a wait or a stream saw it.

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
    def results(self) -> list[tuple[Callable[..., Any], Any]] | None:
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


class _Match:
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
        if expected is not _ANY_SENDER and not (send.sender is expected or expected == send.sender):
            return False
        if self.exact and send.payload.keys() != self.payload.keys():
            return False
        for name, value in self.payload.items():
            if name not in send.payload or value != send.payload[name]:
                return False
        return self.predicate is None or bool(self.predicate(send))

    def describe(self) -> str:
        """How a message names what was looked for: ' with sender=..., name=...'."""
        wanted = {} if self.sender is _ANY_SENDER else {"sender": self.sender}
        wanted.update(self.payload)
        parts = [f"{name}={_repr.repr(value)}" for name, value in wanted.items()]
        if self.predicate is not None:
            name = getattr(self.predicate, "__qualname__", None) or repr(self.predicate)
            parts.append(f"matching {name}")
        return f" with {', '.join(parts)}" if parts else ""


def _count(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _list_sends(sent: list[Send]) -> str:
    """Every send, numbered, for a failure message."""
    if not sent:
        return "it was never sent"
    lines = [f"  {number}. {send.describe()}" for number, send in enumerate(sent, 1)]
    return f"it was sent {_count(len(sent), 'time')}:\n" + "\n".join(lines)


# -- the one hook this module installs on a signal ---------------------------


class _Observer:
    """Something told about every send of a signal: a capture or a stream."""

    def started(self, send: Send) -> None:
        """A send began (before any receiver runs), in the sender's thread."""

    def finished(self, send: Send) -> None:
        """A send returned or raised, in the sender's thread."""


class _MuteBlock:
    """One open :func:`muted` block; inactive once the block has exited."""

    __slots__ = ("active", "receiver", "signal")

    def __init__(self, signal: Signal[..., Any], receiver: Callable[..., Any] | None) -> None:
        self.signal = signal
        self.receiver = receiver
        self.active = True


# The muted blocks open in this context (inherited by tasks started in it).
_MUTED: contextvars.ContextVar[tuple[_MuteBlock, ...]] = contextvars.ContextVar(
    "asyncsignals_muted", default=()
)


def _mutes(signal: Signal[..., Any]) -> bool:
    """Whether an open block in this context mutes every receiver of the signal."""
    return any(
        block.active and block.signal is signal and block.receiver is None for block in _MUTED.get()
    )


class _Hub:
    """The hook installed on a signal while any helper here uses it.

    One per signal, shared by every capture, stream and mute block, so that
    muting and recording see each send in a fixed order.
    """

    __slots__ = ("observers", "users")

    def __init__(self) -> None:
        self.users = 0
        self.observers: tuple[_Observer, ...] = ()

    def begin(self, signal: Signal[..., Any], sender: object, named: Mapping[str, Any]) -> _Watch:
        muted = _mutes(signal)
        observers = self.observers
        send = None
        if observers:
            send = Send(signal, sender, dict(named), muted)
            for observer in observers:
                observer.started(send)
        return _Watch(signal, muted, send, observers)


class _Watch:
    """The hub's view of one send: what is muted, and who hears of it."""

    __slots__ = ("muted", "observers", "send", "signal")

    def __init__(
        self,
        signal: Signal[..., Any],
        muted: bool,
        send: Send | None,
        observers: tuple[_Observer, ...],
    ) -> None:
        self.signal = signal
        self.muted = muted
        self.send = send
        self.observers = observers

    def allows(self, receiver: Callable[..., Any]) -> bool:
        for block in _MUTED.get():
            if (
                block.active
                and block.signal is self.signal
                and block.receiver is not None
                and block.receiver == receiver
            ):
                return False
        if self.send is not None:
            self.send._receivers.append(receiver)  # pyright: ignore[reportPrivateUsage] (this module's)
        return True

    def wrap(
        self, receiver: Callable[..., Any], call: Callable[..., Any], is_async: bool
    ) -> Callable[..., Any]:
        return call

    def end(
        self, results: list[tuple[Callable[..., Any], Any]] | None, error: BaseException | None
    ) -> None:
        send = self.send
        if send is None:  # nothing was observing when the send began
            return
        send._finish(results, error)  # pyright: ignore[reportPrivateUsage] (this module's)
        for observer in self.observers:
            observer.finished(send)


_hubs_lock = threading.Lock()
_hubs: weakref.WeakKeyDictionary[Signal[..., Any], _Hub] = weakref.WeakKeyDictionary()


def _acquire(signal: Signal[..., Any], observer: _Observer | None = None) -> None:
    """Install the hub on ``signal`` (once) and add ``observer`` to it."""
    with _hubs_lock:
        hub = _hubs.get(signal)
        if hub is None:
            hub = _hubs[signal] = _Hub()
            add_hook(signal, hub)
        hub.users += 1
        if observer is not None:
            hub.observers = (*hub.observers, observer)


def _release(signal: Signal[..., Any], observer: _Observer | None = None) -> None:
    """Undo :func:`_acquire`; the last user removes the hub, so the signal pays nothing."""
    with _hubs_lock:
        hub = _hubs[signal]
        hub.users -= 1
        if observer is not None:
            hub.observers = tuple(each for each in hub.observers if each is not observer)
        if hub.users == 0:
            del _hubs[signal]
            remove_hook(signal, hub)


class _LoopCall:
    """Hands a function to the event loop thread that created it, from any thread.

    Sends may come from worker threads (``send_sync``), but anyio events and
    memory streams may only be touched from their own event loop's thread.
    From another thread the function is scheduled and the caller goes on at
    once: a send never waits for the helper's event loop, which may be
    blocked by the code under test (joining the very thread that sends).
    """

    __slots__ = ("schedule", "thread")

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        # The native token: an asyncio loop or a trio token, each with its own
        # non-blocking, thread-safe way to schedule a call (anyio's own
        # from_thread.run_sync waits for the call to run).
        native: Any = anyio.lowlevel.current_token().native_token
        self.schedule: Callable[[Callable[[], object]], object] = (
            native.call_soon_threadsafe
            if isinstance(native, asyncio.AbstractEventLoop)
            else native.run_sync_soon  # a trio token (trio is not imported here)
        )

    def __call__(self, function: Callable[[], object]) -> None:
        if threading.get_ident() == self.thread:
            function()
            return
        # RuntimeError (trio.RunFinishedError is one): that event loop has
        # finished, so nobody waits there any more.
        with contextlib.suppress(RuntimeError):
            self.schedule(function)


# -- capture -----------------------------------------------------------------


class SignalCapture(_Observer):
    """Records every send of one signal while it is active; see :func:`capture`.

    Use it as a (sync) context manager, in sync or async tests. The records
    stay readable after the block, so assertions may follow it.

    Thread-safe: sends from worker threads (``send_sync``) are recorded too.
    """

    def __init__(self, signal: Signal[..., Any]) -> None:
        _check_signal(signal, "capture")
        self.signal = signal
        self._lock = threading.Lock()
        self._sends: list[Send] = []
        self._returned: set[int] = set()  # indexes already handed out by wait_for
        self._waiters: list[tuple[anyio.Event, _LoopCall]] = []
        self._state = "new"

    def __enter__(self) -> SignalCapture:
        if self._state != "new":
            raise RuntimeError(f"this capture of {signal_label(self.signal)} was already used")
        self._state = "active"
        _acquire(self.signal, self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._state = "closed"
        _release(self.signal, self)

    def started(self, send: Send) -> None:
        with self._lock:
            self._sends.append(send)

    def finished(self, send: Send) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for event, call in waiters:
            call(event.set)

    @property
    def sends(self) -> list[Send]:
        """Every send recorded, in the order the sends started (a copy)."""
        with self._lock:
            return list(self._sends)

    def _matching(self, match: _Match) -> list[Send]:
        return [send for send in self.sends if match(send)]

    def _fail(self, expectation: str) -> AssertionError:
        return AssertionError(f"{expectation}; {_list_sends(self.sends)}")

    def assert_sent(self, sender: object = _ANY_SENDER, **payload: Any) -> Send:
        """Assert at least one send matched, and return the first that did.

        Args:
            sender: Match only this sender (the same object, or one that
                compares equal, so ``unittest.mock.ANY`` works); omit it to
                match any sender.
            **payload: Match only sends whose payload has these names with
                values that compare equal; other names are not checked.

        Raises:
            AssertionError: No send matched; the message lists every send.
        """
        __tracebackhide__ = True
        match = _Match(sender, payload)
        matching = self._matching(match)
        if not matching:
            raise self._fail(f"expected {signal_label(self.signal)} to be sent{match.describe()}")
        return matching[0]

    def assert_not_sent(self, sender: object = _ANY_SENDER, **payload: Any) -> None:
        """Assert no send matched (with no filters: the signal was never sent).

        Args and matching as in :meth:`assert_sent`.

        Raises:
            AssertionError: A send matched; the message lists every send.
        """
        __tracebackhide__ = True
        match = _Match(sender, payload)
        matching = self._matching(match)
        if matching:
            raise self._fail(
                f"expected {signal_label(self.signal)} not to be sent{match.describe()} "
                f"({_count(len(matching), 'send')} matched)"
            )

    def assert_sent_times(self, count: int, sender: object = _ANY_SENDER, **payload: Any) -> None:
        """Assert exactly ``count`` sends matched.

        Args and matching as in :meth:`assert_sent`.

        Raises:
            AssertionError: Another number of sends matched; the message
                lists every send.
        """
        __tracebackhide__ = True
        match = _Match(sender, payload)
        matched = len(self._matching(match))
        if matched != count:
            raise self._fail(
                f"expected {signal_label(self.signal)} to be sent{match.describe()} "
                f"{_count(count, 'time')} ({_count(matched, 'send')} matched)"
            )

    def assert_sent_once_with(self, sender: object = _ANY_SENDER, **payload: Any) -> Send:
        """Assert the signal was sent exactly once, with exactly this payload; return the send.

        Like ``Mock.assert_called_once_with``: the payload must have exactly
        these names (values compared with ``==``), and no other send may
        have happened.

        Args:
            sender: As in :meth:`assert_sent`.
            **payload: The whole payload of the send.

        Raises:
            AssertionError: The signal was sent another number of times, or
                its one send differs; the message lists every send.
        """
        __tracebackhide__ = True
        match = _Match(sender, payload, exact=True)
        sent = self.sends
        if len(sent) != 1 or not match(sent[0]):
            raise self._fail(
                f"expected {signal_label(self.signal)} to be sent once{match.describe()}"
            )
        return sent[0]

    async def wait_for(
        self,
        predicate: Callable[[Send], bool] | None = None,
        *,
        sender: object = _ANY_SENDER,
        # A timeout parameter (not the caller's own scope) so that the error
        # can say what was sent meanwhile.
        timeout: float | None = _DEFAULT_TIMEOUT,  # noqa: ASYNC109
        **payload: Any,
    ) -> Send:
        """Wait for a matching send to finish, and return it.

        Returns the earliest matching send recorded by this capture that an
        earlier ``wait_for`` has not returned: sends made before the call,
        while the capture was active, count, so nothing is missed between
        entering the capture and awaiting. The send is returned once it has
        returned or raised, so its :attr:`Send.results` are known.

        Args:
            predicate: Called with each finished :class:`Send`; only sends it
                returns true for match.
            sender: Match only this sender, as in :meth:`assert_sent`.
            timeout: Seconds to wait; None waits for ever.
            **payload: Payload names and values to match, as in :meth:`assert_sent`.

        Raises:
            SendTimeoutError: No matching send finished in time; the message
                lists every send recorded.
            RuntimeError: The capture is not active (not entered, or exited).

        Cancellation: returns without yielding when a matching send has
        already finished; otherwise it waits, and a cancellation there
        propagates and consumes no send.
        """
        __tracebackhide__ = True
        if self._state != "active":
            raise RuntimeError(
                f"capture of {signal_label(self.signal)} is not active; "
                "call wait_for inside its block"
            )
        match = _Match(sender, payload, predicate)
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            return await self._next(match)
        raise SendTimeoutError(
            f"{signal_label(self.signal)} was not sent{match.describe()} within {timeout} s; "
            + _list_sends(self.sends),
            self.sends,
        )

    async def _next(self, match: _Match) -> Send:
        call = _LoopCall()
        while True:
            event = anyio.Event()
            with self._lock:
                # Searching and registering under one lock: a send finishing
                # in another thread either is found here or wakes the event.
                for index, send in enumerate(self._sends):
                    if send.done and index not in self._returned and match(send):
                        self._returned.add(index)
                        return send
                waiter = (event, call)
                self._waiters.append(waiter)
            try:
                await event.wait()
            finally:
                with self._lock:
                    self._waiters.remove(waiter)


def capture(signal: Signal[..., Any]) -> SignalCapture:
    """Record every send of ``signal`` made while the returned capture is active.

    Use it as ``with capture(order_shipped) as shipped:``, in sync and async
    tests. Each :class:`Send` records the sender, the payload, the order of
    the sends, which receivers ran and their results or the exception the
    send raised; muted sends are recorded with ``muted=True``. Receivers run
    exactly as without the capture.

    Concurrency: every send is recorded, whichever task or thread makes it;
    ``capture.sends`` is in the order the sends started. A send from another
    thread never waits for the event loop of a pending ``wait_for``, so that
    loop may even block joining the sending thread.

    Raises:
        TypeError: ``signal`` is not an asyncsignals ``Signal``.
    """
    return SignalCapture(signal)


# -- waiting -----------------------------------------------------------------


class SendTimeoutError(AssertionError, TimeoutError):
    """A wait for a send timed out; the message lists what was sent meanwhile.

    An ``AssertionError``, so a test runner reports it as a failed
    expectation, like the capture's assertions; and a ``TimeoutError``, so
    code that handles timeouts (as ``anyio.fail_after`` raises them) catches
    it too.

    Attributes:
        sends: Every send seen while waiting.
    """

    def __init__(self, message: str, sends: list[Send]) -> None:
        super().__init__(message)
        self.sends = sends


async def wait_for_send(
    signal: Signal[..., Any],
    predicate: Callable[[Send], bool] | None = None,
    *,
    sender: object = _ANY_SENDER,
    timeout: float | None = _DEFAULT_TIMEOUT,  # noqa: ASYNC109
    **payload: Any,
) -> Send:
    """Wait for the next send of ``signal`` that matches, and return it once it has finished.

    Watching starts when the call is awaited, before it first yields: a send
    made after ``await wait_for_send(...)`` starts cannot be missed. To also
    catch a send that your code makes *before* you can await (for instance
    in the same task), enter :func:`capture` first and use
    :meth:`SignalCapture.wait_for`.

    Args:
        signal: The signal to watch.
        predicate: Called with each finished :class:`Send`; only sends it
            returns true for match.
        sender: Match only this sender (the same object or one that compares
            equal); omit it to match any sender.
        timeout: Seconds to wait; None waits for ever.
        **payload: Payload names and values that must compare equal.

    Raises:
        SendTimeoutError: No matching send finished in time; the message
            lists every send of the signal seen meanwhile.

    Cancellation: a cancellation point. Works on asyncio and trio, and sees
    sends from worker threads too.
    """
    __tracebackhide__ = True
    with capture(signal) as captured:
        return await captured.wait_for(predicate, sender=sender, timeout=timeout, **payload)


class SendStream(_Observer):
    """The sends of a signal as an async iterator; see :func:`sends`."""

    def __init__(self, signal: Signal[..., Any], match: _Match, max_buffer: int) -> None:
        self.signal = signal
        self.max_buffer = max_buffer
        self._match = match
        self._send_stream, self._receive_stream = anyio.create_memory_object_stream[Send](
            max_buffer
        )
        self._call = _LoopCall()
        self._dropped = 0

    def finished(self, send: Send) -> None:
        if self._match(send):
            self._call(lambda: self._push(send))

    def _push(self, send: Send) -> None:
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

    def __aiter__(self) -> SendStream:
        return self

    async def __anext__(self) -> Send:
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
                    f"{_count(self._dropped, 'send')} of {signal_label(self.signal)} found the "
                    f"stream's buffer of {self.max_buffer} full and were dropped; "
                    "read faster or pass a larger max_buffer"
                ) from None
            raise StopAsyncIteration from None

    def _close(self) -> None:
        self._send_stream.close()
        self._receive_stream.close()


@contextlib.asynccontextmanager
async def sends(
    signal: Signal[..., Any],
    predicate: Callable[[Send], bool] | None = None,
    *,
    sender: object = _ANY_SENDER,
    max_buffer: int = 100,
    **payload: Any,
) -> AsyncGenerator[SendStream, None]:
    """Stream the matching sends of ``signal`` to an ``async for`` loop.

    Use it as ``async with sends(order_shipped) as stream: async for sent in
    stream: ...``. Watching starts before the block is entered, so no send
    made after that is missed; each matching :class:`Send` is delivered once
    it has finished, in the order the sends finished.

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
    _check_signal(signal, "sends")
    if max_buffer < 1:
        raise ValueError(f"max_buffer must be at least 1, got {max_buffer}")
    stream = SendStream(signal, _Match(sender, payload, predicate), max_buffer)
    _acquire(signal, stream)
    try:
        yield stream
    finally:
        _release(signal, stream)
        stream._close()  # pyright: ignore[reportPrivateUsage] (this module's)


# -- muting and connecting ---------------------------------------------------


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
    _check_signal(signal, "muted")
    return _Block("muted", lambda: _muted(signal, receiver))


@contextlib.contextmanager
def _muted(
    signal: Signal[..., Any], receiver: Callable[..., Any] | None
) -> Generator[None, None, None]:
    block = _MuteBlock(signal, receiver)
    _acquire(signal)
    _MUTED.set((*_MUTED.get(), block))
    try:
        yield
    finally:
        block.active = False
        # Not ContextVar.reset: a fixture may exit the block in another context.
        _MUTED.set(tuple(each for each in _MUTED.get() if each is not block))
        _release(signal)


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
    _check_signal(signal, "connected_to")
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
