"""The Redis bridge's local queue, the workers that deliver from it, and their deadlines.

:class:`Workers` holds what the consumer loop (``_redis_consumer``) read and
has not yet delivered, at most ``capacity`` entries, and runs each in one of
``count`` worker tasks, which hand it to a delivery callback; a send past
its deadline is cancelled. Never imports the consumer loop nor the delivery.

Two costs per entry are avoided here, each larger than a whole send to a
sync receiver:

- Waking a worker task per entry. A worker takes entries one after the
  other while its sends complete without suspending; another worker is
  woken only when the loop runs again while entries wait, which happens
  only once a send has suspended (or the queue is empty): entries whose
  receivers never suspend run a batch at a time in one task, and those
  whose receivers suspend still run ``count`` at a time.
- A cancel scope per send for its deadline. Each worker has one scope
  for as long as no send of its own outlasts its deadline, and marks when
  its send started; one watchdog task sleeps until the earliest deadline
  and cancels the scope of a worker whose send is past it.

The bridge runs on asyncio only (redis-py's async client): the wake-up on
the loop's next iteration is asyncio's ``call_soon``.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

from ._redis_wire import Entry

__all__ = ["SendTimer", "Workers"]

_NOT_SENDING: Final = math.inf


class SendTimer:
    """When the send a worker runs now started (``math.inf``: none), on the loop's clock.

    The delivery marks the start and end of the send it runs with
    :meth:`start` and :meth:`stop`; the watchdog cancels the worker's scope
    once the send is past its deadline.
    """

    __slots__ = ("_clock", "scope", "started")

    def __init__(self, clock: Callable[[], float]) -> None:
        self.started = _NOT_SENDING
        self.scope = anyio.CancelScope()
        self._clock = clock

    def start(self) -> None:
        """The worker's send starts now."""
        self.started = self._clock()

    def stop(self) -> None:
        """The worker's send is over (completed, failed, or cancelled)."""
        self.started = _NOT_SENDING


class Workers:
    """A bounded local queue of entries and the worker tasks that deliver them.

    ``deliver`` runs one entry (marking its send on the :class:`SendTimer`
    it is given); ``time_out`` is told of an entry whose send was cancelled
    at its deadline; ``done`` is told of each entry once its delivery is
    over, whatever became of it; ``stopped`` is called once, when the last
    worker ends.
    """

    def __init__(
        self,
        deliver: Callable[[Entry, SendTimer], Awaitable[None]],
        time_out: Callable[[Entry], None],
        done: Callable[[Entry], None],
        stopped: Callable[[], None],
    ) -> None:
        self._deliver = deliver
        self._time_out = time_out
        self._done = done
        self._stopped = stopped
        self._queued: collections.deque[Entry] = collections.deque()
        self._capacity = 1
        self._closed = False
        # Idle workers, each waiting on its event; and how many were woken
        # and have not run yet (each takes an entry when it does).
        self._idle: collections.deque[anyio.Event] = collections.deque()
        self._woken = 0
        self._wake_scheduled = False
        self._room: anyio.Event | None = None
        self._running = 0
        self._timers: list[SendTimer] = []
        self._send_timeout: float | None = None
        self._watchdog: anyio.CancelScope | None = None

    def open(
        self, capacity: int, count: int, send_timeout: float | None
    ) -> list[Callable[[], Awaitable[None]]]:
        """Open the queue for ``capacity`` entries; return the tasks to run.

        ``count`` workers, and the watchdog when ``send_timeout`` (seconds
        each send may run) is not None.
        """
        self._queued.clear()
        self._capacity = capacity
        self._closed = False
        self._idle.clear()
        self._woken = 0
        self._wake_scheduled = False
        self._room = None
        self._running = count
        self._timers = []
        self._send_timeout = send_timeout
        self._watchdog = anyio.CancelScope()
        tasks: list[Callable[[], Awaitable[None]]] = [self._work] * count
        if send_timeout is not None:
            tasks.append(self._watch)
        return tasks

    async def put(self, entry: Entry) -> None:
        """Queue ``entry``, once the queue has room.

        No checkpoint of its own while the queue has room: the read that
        brought the entry in yielded already.
        """
        while len(self._queued) >= self._capacity:
            # One event for every reader waiting (work, claims, broadcast).
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()
        self._queued.append(entry)
        if not self._woken and self._idle:
            # One worker takes what the read brought in (see the module's
            # docstring); the others are woken if its sends suspend.
            self._wake()

    def close(self) -> None:
        """Queue nothing more: the workers take what is queued, then stop."""
        self._closed = True
        while self._idle:
            self._wake()

    def _wake(self) -> None:
        self._idle.popleft().set()
        self._woken += 1

    def _wake_helpers(self) -> None:
        """On the loop's next iteration after a worker took an entry with more queued.

        The loop ran again: that worker's send suspended (or it went idle),
        so the entries still queued get workers of their own.
        """
        self._wake_scheduled = False
        for _ in range(min(len(self._queued) - self._woken, len(self._idle))):
            self._wake()

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        timer = SendTimer(loop.time)
        self._timers.append(timer)
        try:
            # A scope the watchdog cancelled is spent: each round gets a new one.
            while True:
                timer.scope = anyio.CancelScope()
                if await self._deliver_until_spent(timer, loop):
                    break
        finally:
            self._timers.remove(timer)
            self._running -= 1
            if not self._running:
                self._stopped()
                assert self._watchdog is not None
                self._watchdog.cancel()

    async def _deliver_until_spent(self, timer: SendTimer, loop: asyncio.AbstractEventLoop) -> bool:
        """Deliver entries in ``timer``'s scope: True once closed and empty, False once it is spent.

        Spent: cancelled by the watchdog, whether the send it cancelled ended
        then (a time-out) or completed anyway.
        """
        queued = self._queued
        entry: Entry | None = None
        with timer.scope:
            while True:
                if not queued:
                    if self._closed:
                        return True
                    await self._wait_for_entries()
                    continue
                entry = queued.popleft()
                room = self._room
                if room is not None:
                    self._room = None
                    room.set()
                if queued and not self._wake_scheduled:
                    self._wake_scheduled = True
                    loop.call_soon(self._wake_helpers)
                try:
                    await self._deliver(entry, timer)
                finally:
                    self._done(entry)
                if timer.scope.cancel_called:
                    # Past its deadline, the send completed anyway (a
                    # receiver shielded itself): it counts as delivered, and
                    # the next entry gets a scope that is not cancelled.
                    return False
        # The scope caught the cancellation of the send past its deadline.
        assert entry is not None
        self._time_out(entry)
        return False

    async def _wait_for_entries(self) -> None:
        woken = anyio.Event()
        self._idle.append(woken)
        try:
            await woken.wait()
        finally:
            if woken.is_set():
                self._woken -= 1
            else:
                self._idle.remove(woken)

    async def _watch(self) -> None:
        """Cancel each send that outlasts the send timeout, when it does."""
        timeout = self._send_timeout
        assert timeout is not None
        assert self._watchdog is not None
        with self._watchdog:
            while True:
                now = anyio.current_time()
                # A send that starts after this look has its deadline later
                # than now + timeout: the next look is in time for it.
                next_look = now + timeout
                for timer in self._timers:
                    deadline = timer.started + timeout
                    if deadline <= now:
                        timer.stop()
                        timer.scope.cancel()
                    else:
                        next_look = min(next_look, deadline)
                await anyio.sleep_until(next_look)
