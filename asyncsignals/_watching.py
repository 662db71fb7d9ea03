"""The one hook the test helpers install on a signal, and the muting it applies.

Captures, streams and :func:`muting` blocks share one hub per signal, plugged
into the core's hooks only while one of them uses it, so that a signal no
helper watches pays nothing. :class:`LoopCall` hands what a send in another
thread observed back to the helper's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import weakref
from collections.abc import Callable, Generator, Mapping
from typing import Any

import anyio.lowlevel

from ._send_record import Send, record_end, record_receiver
from ._signal import Signal, add_hook, remove_hook

__all__ = ["LoopCall", "Observer", "acquire", "check_signal", "muting", "release"]


def check_signal(signal: object, helper: str) -> None:
    """Raise the TypeError every helper raises for something that is not a Signal."""
    if not isinstance(signal, Signal):
        raise TypeError(f"{helper}() expects an asyncsignals Signal, got {signal!r}")


class Observer:
    """Something told about every send of a signal: a capture or a stream."""

    def started(self, send: Send) -> None:
        """A send began (before any receiver runs), in the sender's thread."""

    def finished(self, send: Send) -> None:
        """A send returned or raised, in the sender's thread."""


class _MuteBlock:
    """One open :func:`muting` block; inactive once the block has exited."""

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
    """The hook installed on a signal while any test helper uses it.

    One per signal, shared by every capture, stream and mute block, so that
    muting and recording see each send in a fixed order.
    """

    __slots__ = ("observers", "users")

    def __init__(self) -> None:
        self.users = 0
        self.observers: tuple[Observer, ...] = ()

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
    sees_receivers = True  # mute blocks leave receivers out; captures record them

    def __init__(
        self,
        signal: Signal[..., Any],
        muted: bool,
        send: Send | None,
        observers: tuple[Observer, ...],
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
            record_receiver(self.send, receiver)
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
        record_end(send, results, error)
        for observer in self.observers:
            observer.finished(send)


_hubs_lock = threading.Lock()
_hubs: weakref.WeakKeyDictionary[Signal[..., Any], _Hub] = weakref.WeakKeyDictionary()


def acquire(signal: Signal[..., Any], observer: Observer | None = None) -> None:
    """Install the hub on ``signal`` (once) and add ``observer`` to it."""
    with _hubs_lock:
        hub = _hubs.get(signal)
        if hub is None:
            hub = _hubs[signal] = _Hub()
            add_hook(signal, hub)
        hub.users += 1
        if observer is not None:
            hub.observers = (*hub.observers, observer)


def release(signal: Signal[..., Any], observer: Observer | None = None) -> None:
    """Undo :func:`acquire`; the last user removes the hub, so the signal pays nothing."""
    with _hubs_lock:
        hub = _hubs[signal]
        hub.users -= 1
        if observer is not None:
            hub.observers = tuple(each for each in hub.observers if each is not observer)
        if hub.users == 0:
            del _hubs[signal]
            remove_hook(signal, hub)


@contextlib.contextmanager
def muting(
    signal: Signal[..., Any], receiver: Callable[..., Any] | None
) -> Generator[None, None, None]:
    """Mute ``signal`` (or only ``receiver``) in the current context until the block exits."""
    block = _MuteBlock(signal, receiver)
    acquire(signal)
    _MUTED.set((*_MUTED.get(), block))
    try:
        yield
    finally:
        block.active = False
        # Not ContextVar.reset: a fixture may exit the block in another context.
        _MUTED.set(tuple(each for each in _MUTED.get() if each is not block))
        release(signal)


class LoopCall:
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
