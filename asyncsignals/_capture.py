"""Capturing the sends of a signal, asserting on them, and waiting for the next match.

A :class:`SignalCapture` observes its signal through the hub in ``_watching``
and keeps every :class:`Send` it saw, so that assertions may follow the
block and a failure message can list what was actually sent. A wait for a
send is a capture that lasts for the wait.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Generic

import anyio
from typing_extensions import ParamSpec, TypeVar

from ._receivers import signal_label
from ._send_record import ANY_SENDER, Match, Send, list_sends, quantity
from ._signal import Signal
from ._watching import LoopCall, Observer, acquire, check_signal, release

__all__ = ["SendTimeoutError", "SignalCapture", "capture", "wait_for_send"]

# The captured signal's payload and result (any, for an untyped signal).
P = ParamSpec("P", default=...)
R = TypeVar("R", default=Any)

# How long wait_for_send and SignalCapture.wait_for wait unless told.
_DEFAULT_TIMEOUT: Final = 5.0


class SignalCapture(Observer, Generic[P, R]):
    """Records every send of one signal while it is active; see :func:`capture`.

    ``SignalCapture[P, R]`` for a ``Signal[P, R]``: its sends are ``Send[R]``.

    Use it as a (sync) context manager, in sync or async tests. The records
    stay readable after the block, so assertions may follow it.

    Thread-safe: sends from worker threads (``send_sync``) are recorded too.
    """

    def __init__(self, signal: Signal[P, R]) -> None:
        check_signal(signal, "capture")
        self.signal = signal
        self._lock = threading.Lock()
        self._sends: list[Send[R]] = []
        self._returned: set[int] = set()  # indexes already handed out by wait_for
        self._waiters: list[tuple[anyio.Event, LoopCall]] = []
        self._state = "new"

    def __enter__(self) -> SignalCapture[P, R]:
        if self._state != "new":
            raise RuntimeError(f"this capture of {signal_label(self.signal)} was already used")
        self._state = "active"
        acquire(self.signal, self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._state = "closed"
        release(self.signal, self)

    def started(self, send: Send) -> None:
        with self._lock:
            self._sends.append(send)

    def finished(self, send: Send) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for event, call in waiters:
            call(event.set)

    @property
    def sends(self) -> list[Send[R]]:
        """Every send recorded, in the order the sends started (a copy)."""
        with self._lock:
            return list(self._sends)

    def _matching(self, match: Match) -> list[Send[R]]:
        return [send for send in self.sends if match(send)]

    def _fail(self, expectation: str) -> AssertionError:
        return AssertionError(f"{expectation}; {list_sends(self.sends)}")

    def assert_sent(self, sender: object = ANY_SENDER, **payload: Any) -> Send[R]:
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
        match = Match(sender, payload)
        matching = self._matching(match)
        if not matching:
            raise self._fail(f"expected {signal_label(self.signal)} to be sent{match.describe()}")
        return matching[0]

    def assert_not_sent(self, sender: object = ANY_SENDER, **payload: Any) -> None:
        """Assert no send matched (with no filters: the signal was never sent).

        Args and matching as in :meth:`assert_sent`.

        Raises:
            AssertionError: A send matched; the message lists every send.
        """
        __tracebackhide__ = True
        match = Match(sender, payload)
        matching = self._matching(match)
        if matching:
            raise self._fail(
                f"expected {signal_label(self.signal)} not to be sent{match.describe()} "
                f"({quantity(len(matching), 'send')} matched)"
            )

    def assert_sent_times(self, count: int, sender: object = ANY_SENDER, **payload: Any) -> None:
        """Assert exactly ``count`` sends matched.

        Args and matching as in :meth:`assert_sent`.

        Raises:
            AssertionError: Another number of sends matched; the message
                lists every send.
        """
        __tracebackhide__ = True
        match = Match(sender, payload)
        matched = len(self._matching(match))
        if matched != count:
            raise self._fail(
                f"expected {signal_label(self.signal)} to be sent{match.describe()} "
                f"{quantity(count, 'time')} ({quantity(matched, 'send')} matched)"
            )

    def assert_sent_once_with(self, sender: object = ANY_SENDER, **payload: Any) -> Send[R]:
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
        match = Match(sender, payload, exact=True)
        sent = self.sends
        if len(sent) != 1 or not match(sent[0]):
            raise self._fail(
                f"expected {signal_label(self.signal)} to be sent once{match.describe()}"
            )
        return sent[0]

    async def wait_for(
        self,
        predicate: Callable[[Send[R]], bool] | None = None,
        *,
        sender: object = ANY_SENDER,
        # A timeout parameter (not the caller's own scope) so that the error
        # can say what was sent meanwhile.
        timeout: float | None = _DEFAULT_TIMEOUT,  # noqa: ASYNC109
        **payload: Any,
    ) -> Send[R]:
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
        match = Match(sender, payload, predicate)
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            return await self._next(match)
        raise SendTimeoutError(
            f"{signal_label(self.signal)} was not sent{match.describe()} within {timeout} s; "
            + list_sends(self.sends),
            self.sends,
        )

    async def _next(self, match: Match) -> Send[R]:
        call = LoopCall()
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


def capture(signal: Signal[P, R]) -> SignalCapture[P, R]:
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
    signal: Signal[P, R],
    predicate: Callable[[Send[R]], bool] | None = None,
    *,
    sender: object = ANY_SENDER,
    timeout: float | None = _DEFAULT_TIMEOUT,  # noqa: ASYNC109
    **payload: Any,
) -> Send[R]:
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
