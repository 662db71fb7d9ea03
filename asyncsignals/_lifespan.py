"""The life of an object that owns background tasks for the application's lifespan.

:class:`~asyncsignals.BackgroundDispatcher` and the Redis bridge live the same
life: created, entered once (running their workers), left (a drain within a
grace period), closed; or stopped early by what one of their workers raised.
:class:`Lifespan` is that life, held by each owner; :class:`OwnedTaskGroup`
hosts the owner's workers so that any task may enter and leave it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import anyio

from ._backends import current_backend

__all__ = ["Lifespan", "OwnedTaskGroup"]

# An owner's life: created, entered (running), shutting down, done; or
# stopped by a worker's failure while it ran.
_NEW: Final = "not started"
_RUNNING: Final = "running"
_CLOSING: Final = "shutting down"
_CLOSED: Final = "closed"
_STOPPED: Final = "stopped"


class OwnedTaskGroup:
    """A task group hosted by a task of its own, so that any task may start and stop it.

    An application's lifespan is not always started and ended by one task
    (pytest-asyncio runs an async fixture's setup and teardown in two; aiohttp
    runs cleanup in a task that is already cancelled), while a task group
    must be left by the task that entered it. So the group lives in a host
    task of its own: an asyncio task, or a trio system task. Its workers'
    failures never escape into the event loop: each is kept in
    :attr:`failures`, stops the group at once, and is told to ``on_failure``;
    the owner raises them where it is left.
    """

    def __init__(self, on_failure: Callable[[BaseException], object]) -> None:
        self.failures: list[BaseException] = []
        # What interrupted join(), and when: the owner's report says so.
        self.interruption: BaseException | None = None
        self.interrupted_at = math.inf
        # The caller's cancellation that arrived at the wait's first step,
        # requested before it began: raised once the workers have ended.
        self.deferred: BaseException | None = None
        self._on_failure = on_failure
        self._scope: anyio.CancelScope | None = None
        self._deadline = math.inf
        self._cancelled = False
        self._done: anyio.Event | None = None
        self._host: object = None

    def start(self, workers: Sequence[Callable[[], Awaitable[None]]]) -> None:
        """Start the host task, which runs each of ``workers`` in its group. Never yields."""
        self._done = anyio.Event()
        self._host = current_backend().start_host_task(functools.partial(self._run, workers))

    async def _run(self, workers: Sequence[Callable[[], Awaitable[None]]]) -> None:
        assert self._done is not None
        try:
            async with anyio.create_task_group() as group:
                self._scope = group.cancel_scope
                group.cancel_scope.deadline = self._deadline
                if self._cancelled:
                    group.cancel_scope.cancel()
                for worker in workers:
                    group.start_soon(self._guarded, worker)
        finally:
            self._done.set()

    async def _guarded(self, worker: Callable[[], Awaitable[None]]) -> None:
        try:
            await worker()
        except anyio.get_cancelled_exc_class():
            raise  # the group's own business
        except BaseException as failure:
            # Caught here: asyncio lets a task's KeyboardInterrupt or
            # SystemExit escape into the event loop.
            self.failures.append(failure)
            self.cancel()
            self._on_failure(failure)

    def wind_down(self, exc: BaseException | None, grace_period: float) -> bool:
        """Begin the end, for an owner whose block was left with ``exc``; True: at once.

        A ``BaseException`` that is neither an ``Exception`` nor a
        cancellation (``KeyboardInterrupt``, ``SystemExit``) cancels every
        worker now; anything else gives them ``grace_period`` seconds.
        """
        if exc is not None and not isinstance(exc, (Exception, anyio.get_cancelled_exc_class())):
            self.cancel()
            return True
        self.cancel_after(grace_period)
        return False

    def raise_failures(self, message: str) -> None:
        """Raise what interrupted :meth:`join`, else the workers' failures.

        One failure is raised as itself; several as a ``BaseExceptionGroup``
        with ``message``.
        """
        if self.interruption is not None:
            raise self.interruption
        if len(self.failures) == 1:
            raise self.failures[0]
        if self.failures:
            raise BaseExceptionGroup(message, self.failures)
        if self.deferred is not None:
            raise self.deferred

    def cancel(self) -> None:
        """Cancel every worker now."""
        self._cancelled = True
        if self._scope is not None:
            self._scope.cancel()

    def cancel_after(self, seconds: float) -> None:
        """Cancel every worker once ``seconds`` have passed (math.inf: never)."""
        self._deadline = min(self._deadline, anyio.current_time() + seconds)
        if self._scope is not None:
            self._scope.deadline = self._deadline

    async def join(self, requested: int = 0) -> None:
        """Wait for every worker to end, shielded from the caller's cancellation.

        The caller's cancellation is not this wait's business: the deadline
        set by :meth:`cancel_after` bounds it. What still reaches the wait
        (asyncio's own ``Task.cancel()``, trio's ``KeyboardInterrupt``)
        cancels every worker at once; it is kept in :attr:`interruption`
        for the owner to report and raise.

        ``requested``: the task's pending cancellation requests when its
        owner's block was left without a cancellation (see
        ``Backend.pending_cancellations``). A request not yet delivered then
        arrives at this wait's first step: it is the shutdown's own signal,
        not an interruption. It is kept in :attr:`deferred`, and the wait
        goes on.
        """
        assert self._done is not None
        backend = current_backend()
        while not self._done.is_set():
            try:
                with anyio.CancelScope(shield=True):
                    await self._done.wait()
            except BaseException as interruption:
                if (
                    requested
                    and self.deferred is None
                    and isinstance(interruption, backend.cancelled)
                    and backend.pending_cancellations() == requested
                ):
                    self.deferred = interruption
                    continue
                if self.interruption is None:
                    self.interruption = interruption
                    self.interrupted_at = anyio.current_time()
                self.cancel()
        self._host = None


class Lifespan:
    """One owner's life, from creation to close, and the wording that tells of it.

    The owner (``owner``, shown by its ``repr`` in errors) enters once:
    :meth:`refuse_reentry`, then :meth:`start` with its workers. It is left
    with :meth:`close`, which drains within a grace period, and then
    :meth:`raise_failures`. A failure of a worker (see
    :class:`OwnedTaskGroup`) stops it first: :attr:`state` says so, and
    ``on_stop`` is told, so that the owner refuses new work at once.

    Args:
        owner: The object whose life this is.
        kind: What the owner is called in its errors and logs ("dispatcher").
        closed_error: What :meth:`closed_error` raises.
        refusal: What a closed owner no longer does ("accepts no new sends").
        before: What an owner not started must be entered before ("sending").
        failing: Who raises what stops the owner ("a receiver"), named in
            why it stopped; None when the failure's type says enough.
        on_stop: Called when a worker's failure stops the owner.
    """

    def __init__(
        self,
        owner: object,
        *,
        kind: str,
        closed_error: Callable[[str], RuntimeError],
        refusal: str,
        before: str,
        failing: str | None = None,
        on_stop: Callable[[], object] | None = None,
    ) -> None:
        self.kind: Final = kind
        # Why the owner stopped before its block was left, or why its
        # workers were cancelled at once when it was; None otherwise.
        self.stopped_by: str | None = None
        self._owner = owner
        self._closed_error = closed_error
        self._refusal = refusal
        self._before = before
        self._failing = failing
        self._on_stop = on_stop
        self._state = _NEW
        self._tasks = OwnedTaskGroup(self._stop)
        self._closing_since = math.inf

    @property
    def state(self) -> str:
        """Where the owner is in its life, for its ``repr``.

        One of "not started", "running", "stopped", "shutting down", "closed".
        """
        return self._state

    @property
    def entered(self) -> bool:
        """The owner has been entered (it may have been left since)."""
        return self._state is not _NEW

    @property
    def running(self) -> bool:
        """Entered, and neither stopped nor left."""
        return self._state is _RUNNING

    @property
    def interruption(self) -> BaseException | None:
        """What interrupted the drain of :meth:`close` (see :meth:`OwnedTaskGroup.join`)."""
        return self._tasks.interruption

    @property
    def interrupted_after(self) -> float:
        """Seconds the drain had run when :attr:`interruption` reached it."""
        return max(self._tasks.interrupted_at - self._closing_since, 0)

    def display_name(self, name: str | None, unnamed: str) -> str:
        """How logs name the owner: its kind and ``name``, or ``unnamed``."""
        return f"{self.kind} {name}" if name is not None else unnamed

    def refuse_reentry(self) -> None:
        """Raise RuntimeError if the owner was entered before: it runs once."""
        if self._state is not _NEW:
            raise RuntimeError(f"{self._owner!r} was already entered; a {self.kind} runs only once")

    def start(self, workers: Sequence[Callable[[], Awaitable[None]]]) -> None:
        """Start ``workers`` in a task group of the owner's own; it runs. Never yields."""
        assert self._state is _NEW
        self._tasks.start(workers)
        self._state = _RUNNING

    def closed_error(self) -> RuntimeError:
        """The error for work handed to an owner that is not running, saying why not."""
        if self._state is _NEW:
            return self._closed_error(
                f"{self._owner!r} has not been started: enter it with 'async with' (in the "
                f"application's lifespan) before {self._before}"
            )
        if self._state is _STOPPED:
            return self._closed_error(f"{self._owner!r} was {self.stopped_by}; it {self._refusal}")
        return self._closed_error(f"{self._owner!r} is {self._state}; it {self._refusal}")

    async def close(self, exc: BaseException | None, grace_period: float) -> None:
        """Let the workers finish within ``grace_period`` seconds, then cancel the rest.

        For an owner whose block was left with ``exc``: a ``BaseException``
        that is neither an ``Exception`` nor a cancellation cancels them at
        once. The wait is shielded from the caller's cancellation (see
        :meth:`OwnedTaskGroup.join`), so it raises none of its own.
        """
        if self._state is _RUNNING:
            self._state = _CLOSING
        self._closing_since = anyio.current_time()
        if self._tasks.wind_down(exc, grace_period) and self.stopped_by is None:
            assert exc is not None
            self.stopped_by = f"cancelled at once: the block was left by {type(exc).__name__}"
        backend = current_backend()
        requested = 0 if isinstance(exc, backend.cancelled) else backend.pending_cancellations()
        try:
            await self._tasks.join(requested)
        finally:
            self._state = _CLOSED

    def raise_failures(self, message: str) -> None:
        """Raise what interrupted the drain, else the workers' failures.

        One failure is raised as itself; several as a ``BaseExceptionGroup``
        with ``message``.
        """
        self._tasks.raise_failures(message)

    def _stop(self, failure: BaseException) -> None:
        """A worker raised what stops the owner: it refuses new work from now on."""
        if self.stopped_by is None:
            culprit = f" raised by {self._failing}" if self._failing is not None else ""
            self.stopped_by = f"stopped by {type(failure).__name__}{culprit}"
        if self._state is _RUNNING:
            self._state = _STOPPED
        if self._on_stop is not None:
            self._on_stop()
