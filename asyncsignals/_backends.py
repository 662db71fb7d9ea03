"""What differs between asyncio and trio, behind one object chosen once per send.

A send asks :func:`current_backend` once and uses what it returns: how to run
receivers in tasks, how to wait for work that cannot be interrupted (a
thread), which event loop a concurrency limit belongs to, and the
cancellation rule every send path shares:

    A receiver may catch the caller's cancellation, return a value or raise
    from its ``finally``; the caller's cancellation still propagates, as
    itself, once the receiver has ended.

On trio cancellation is level-triggered, so the rule is one public check
after the receiver ends. On asyncio a cancellation is delivered once and a
receiver can absorb it; the task's count of pending cancellation requests
(``Task.cancelling()``, which ``asyncio.timeout`` and anyio's cancel scopes
keep) tells whether the caller still wants to be cancelled.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Final, TypeVar

import anyio
import anyio.lowlevel

from ._tasks import (
    Outcomes,
    RobustFailure,
    first_cancellation,
    is_cancellation,
    run_asyncio_tasks,
    run_to_completion,
    run_trio_nursery,
)

T = TypeVar("T")

# How a backend runs a send's receivers in tasks (see asyncsignals._tasks).
TaskRunner = Callable[
    [Sequence[Awaitable[Any]], RobustFailure | None, RobustFailure], Awaitable[Outcomes]
]


class CancelWatch:
    """One send's view of the caller's cancellation while receivers run in its task.

    :func:`asyncsignals._context.await_in_context` tells it when a receiver
    first suspends, and of every cancellation thrown into the receiver; once
    the receiver has ended, :meth:`raise_if_caller_cancelled` raises that
    cancellation again when the caller still is cancelled (the receiver's
    own cancel scopes absorb their own).

    The caller's pending cancellation requests are counted when a receiver
    first suspends, not before: a ``cancel()`` that a receiver made of the
    task it runs in, before that, is the receiver's own, as it would be in a
    task of its own. (And a send whose receivers never suspend never counts.)
    """

    __slots__ = ("backend", "baseline", "delivered", "suspended")

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.baseline = 0
        self.delivered: BaseException | None = None
        # Whether the receiver yielded to the event loop: trio delivers its
        # cancellation inside the receiver's own frames, unseen from outside.
        self.suspended = False

    def suspending(self) -> None:
        """A receiver is about to yield to the event loop for the first time."""
        self.suspended = True
        self.baseline = self.backend.pending_cancellations()

    def saw(self, error: BaseException) -> None:
        """``error`` was thrown into the receiver: remember it if it is a cancellation."""
        if isinstance(error, self.backend.cancelled):
            self.delivered = error

    async def raise_if_caller_cancelled(self) -> None:
        """Raise the caller's cancellation if one may have reached a receiver and still stands.

        Returns without yielding when the receivers never suspended, or
        when nothing was cancelled. A receiver that suspended may have been
        shielded from the caller's cancellation, which then reached it not
        at all: the check is made after every receiver that suspended.
        """
        if self.delivered is not None or self.suspended:
            delivered, self.delivered = self.delivered, None
            try:
                await self.backend.raise_if_cancelled(self.baseline, delivered)
            finally:
                del delivered  # raised: no cycle through this frame

    async def raise_instead_of(self, group: BaseException) -> None:
        """A receiver raised ``group``, made only of cancellations (its own trio
        nursery's): raise the caller's cancellation, as itself, in its place."""
        if is_cancellation(group) and self.suspended:
            # One of the group's own: anyio's scopes recognise theirs by it.
            first = first_cancellation(group)
            try:
                await self.backend.raise_if_cancelled(self.baseline, first)
            finally:
                del first  # raised: no cycle through this frame


class Backend:
    """The operations a send needs from the event loop it runs on."""

    __slots__ = ("cancelled", "level_triggered", "run_tasks")

    def __init__(
        self,
        cancelled: type[BaseException],
        level_triggered: bool,
        run_tasks: TaskRunner,
    ) -> None:
        self.cancelled = cancelled
        # True: a cancelled scope raises at every checkpoint until it exits
        # (trio). False: each cancellation is delivered once (asyncio).
        self.level_triggered = level_triggered
        #: Runs awaitables concurrently, each in a task, and waits for them
        #: all; told of each Exception that is a result (send_robust) and of
        #: each that the caller's cancellation supersedes.
        self.run_tasks = run_tasks

    def pending_cancellations(self) -> int:
        """How many cancellation requests the current task has pending (asyncio only)."""
        return 0

    async def raise_if_cancelled(self, baseline: int, delivered: BaseException | None) -> None:
        """Raise the caller's cancellation if it stands, else return without yielding.

        ``baseline``: :meth:`pending_cancellations` when the send started;
        ``delivered``: the cancellation a receiver received, raised again
        as itself where the backend allows.
        """
        raise NotImplementedError

    async def wait_uninterruptibly(self, awaitable: Awaitable[T]) -> T:
        """Await work that cannot be interrupted; a cancelled caller waits for it, then raises."""
        raise NotImplementedError

    def loop_token(self) -> object:
        """An object that identifies the running event loop."""
        raise NotImplementedError

    def start_host_task(self, function: Callable[[], Coroutine[Any, Any, None]]) -> object:
        """Run ``function()`` in a task no task group owns; the caller keeps what it returns.

        For an owner that outlives the task that started it (see
        asyncsignals._lifespan). ``function`` must catch its own errors: none
        may escape into the event loop. Never yields.
        """
        raise NotImplementedError


class _Asyncio(Backend):
    __slots__ = ()

    def pending_cancellations(self) -> int:
        task = asyncio.current_task()
        return 0 if task is None else task.cancelling()

    async def raise_if_cancelled(self, baseline: int, delivered: BaseException | None) -> None:
        if self.pending_cancellations() > baseline:
            # The very exception the task received: asyncio.timeout and
            # anyio's cancel scopes recognise their own by it.
            try:
                raise delivered if delivered is not None else asyncio.CancelledError()
            finally:
                del delivered  # raised: no cycle through this frame
        # An anyio scope of the caller's, cancelled while a receiver was
        # shielded from it, has delivered nothing yet: anyio delivers it at
        # the next checkpoint, which must be the send's, not a later one.
        await anyio.lowlevel.checkpoint_if_cancelled()

    async def wait_uninterruptibly(self, awaitable: Awaitable[T]) -> T:
        return await run_to_completion(awaitable)

    def loop_token(self) -> object:
        return asyncio.get_running_loop()

    def start_host_task(self, function: Callable[[], Coroutine[Any, Any, None]]) -> object:
        # Returned to be kept: the event loop holds its tasks only weakly.
        return asyncio.get_running_loop().create_task(function())


class _Trio(Backend):
    __slots__ = ("_trio",)

    def __init__(self, trio: Any) -> None:
        super().__init__(trio.Cancelled, level_triggered=True, run_tasks=run_trio_nursery)
        self._trio = trio

    async def raise_if_cancelled(self, baseline: int, delivered: BaseException | None) -> None:
        # Level-triggered: the check is exact, and yields only to raise.
        await self._trio.lowlevel.checkpoint_if_cancelled()

    async def wait_uninterruptibly(self, awaitable: Awaitable[T]) -> T:
        # anyio's worker threads on trio return their result even after the
        # caller was cancelled: the cancellation is raised here instead.
        value = await awaitable
        await self._trio.lowlevel.checkpoint_if_cancelled()
        return value

    def loop_token(self) -> object:
        return self._trio.lowlevel.current_trio_token()

    def start_host_task(self, function: Callable[[], Coroutine[Any, Any, None]]) -> object:
        # A system task, in a copy of this context as a task would be.
        self._trio.lowlevel.spawn_system_task(function, context=contextvars.copy_context())
        return None


ASYNCIO: Final[Backend] = _Asyncio(
    asyncio.CancelledError, level_triggered=False, run_tasks=run_asyncio_tasks
)
_trio_backend: list[Backend] = []


def would_block() -> tuple[type[Exception], ...]:
    """What a limiter's ``acquire_on_behalf_of_nowait`` raises when no slot is free.

    anyio's ``WouldBlock``; on trio, older anyio releases let trio's own through.
    """
    trio = sys.modules.get("trio")
    return (anyio.WouldBlock,) if trio is None else (anyio.WouldBlock, trio.WouldBlock)


def trio_running() -> bool:
    """True inside trio, on trio's own thread.

    Cheaply, for it runs on every send: trio names itself in sniffio's
    thread-local while it runs (sniffio is trio's dependency, imported with
    it), where ``trio.lowlevel.in_trio_run()`` costs an exception raised and
    caught on every call outside trio. The thread-local is also right in
    trio's guest mode, between trio's ticks on the host's event loop, where
    ``in_trio_run()`` is true.
    """
    sniffio = sys.modules.get("sniffio")
    return sniffio is not None and bool(sniffio.thread_local.name == "trio")


def current_backend() -> Backend:
    """The backend of the event loop running this thread (asyncio unless inside trio)."""
    if not trio_running():
        return ASYNCIO
    if not _trio_backend:
        _trio_backend.append(_Trio(sys.modules["trio"]))
    return _trio_backend[0]


def running_event_loop() -> bool:
    """True on a thread that is running an asyncio or trio event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return trio_running()
    return True
