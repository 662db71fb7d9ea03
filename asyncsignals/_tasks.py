"""Running a send's async receivers concurrently, and nothing longer than the send.

Two ways, one set of rules:

- :func:`run_asyncio_tasks`, the asyncio fast path. anyio's task group costs
  several times asyncio's own per task, and ``asyncio.TaskGroup`` cannot start
  tasks eagerly; a send needs neither task names nor a group that accepts new
  tasks while it runs. On Python 3.12 and newer each task starts eagerly: a
  receiver that returns without suspending finishes inside ``Task()`` and never
  meets the scheduler, yet runs as its own task from its first step, so
  ``asyncio.timeout`` and cancel scopes inside it bind to it.
- :func:`run_trio_nursery`, a bare trio nursery: anyio's task group on trio
  costs more than twice the nursery it wraps.

The rules: every receiver's outcome is caught by its own task, so no
exception is lost, reshaped or re-grouped by a task group on its way out, and
``KeyboardInterrupt`` or ``SystemExit`` reaches the send instead of escaping
into the event loop (as asyncio does with a bare task). The first failure (any
exception in ``send``; in ``send_robust`` only a ``BaseException`` that is not
an ``Exception``) cancels the rest, and awaitables not yet started are closed
unstarted. A cancelled caller cancels every receiver, then waits for all of
them before the cancellation propagates.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import anyio

from ._outcome import Outcome, captured, close_unstarted, unboxed

T = TypeVar("T")

# (values by position, failures that aborted the run in the order they happened)
Outcomes = tuple[list[Any], list[tuple[int, BaseException]]]

# send_robust's reporter: told at once of each receiver's Exception, by position,
# so that it is reported even if the caller is cancelled before the run ends.
RobustFailure = Callable[[int, Exception], object]


class _Run:
    """The outcomes of one concurrent run, recorded by each receiver's task."""

    __slots__ = (
        "abort",
        "aborting",
        "errors",
        "on_robust_failure",
        "remaining",
        "started",
        "values",
        "waiter",
    )

    def __init__(
        self, size: int, on_robust_failure: RobustFailure | None, abort: Callable[[], object]
    ) -> None:
        self.on_robust_failure = on_robust_failure
        self.abort = abort
        self.aborting = False
        self.values: list[Any] = [None] * size
        self.errors: list[tuple[int, BaseException]] = []
        self.remaining = 0
        self.started = [False] * size
        self.waiter: asyncio.Future[None] | None = None

    def outcomes(self) -> Outcomes:
        return self.values, self.errors

    def let_go(self) -> None:
        """Once every task has ended: drop the outcomes (the caller has them) and abort().

        The frames of the run's tasks, in its errors' tracebacks, hold the
        run (and, from Python 3.12, an eagerly started task's frame links to
        the runner's); abort() holds the run and its tasks. Kept, these would
        form cycles that keep the receivers and the sender alive until the
        garbage collector's next pass.
        """
        self.values, self.errors = [], []
        self.abort = _nothing_to_abort

    def fail(self, index: int, error: BaseException) -> None:
        self.errors.append((index, error))
        self.abort_once()

    def abort_once(self) -> None:
        if not self.aborting:
            self.aborting = True
            self.abort()

    def record(self, index: int, error: BaseException) -> None:
        if self.on_robust_failure is not None and isinstance(error, Exception):
            self.values[index] = error
            self.on_robust_failure(index, error)
        else:
            self.fail(index, error)

    async def run_in_asyncio_task(self, index: int, awaitable: Awaitable[Any]) -> None:
        # A task cancelled before its first step never runs this body: the
        # abort accounts for it instead (see run_asyncio_tasks).
        self.started[index] = True
        try:
            self.values[index] = await awaitable
        except asyncio.CancelledError as error:
            if not self.aborting:
                # Cancelled by itself, not by this run: never swallowed.
                self.fail(index, error)
        except BaseException as error:
            self.record(index, error)
        finally:
            self.remaining -= 1
            waiter = self.waiter
            if not self.remaining and waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def run_in_trio_task(self, index: int, awaitable: Awaitable[Any]) -> None:
        try:
            self.values[index] = await awaitable
        except BaseException as error:
            # trio's own cancellation only: an asyncio.CancelledError a
            # receiver raises is its failure, as anything else.
            if is_cancellation(error, anyio.get_cancelled_exc_class()):
                raise  # the nursery's own business
            self.record(index, error)


async def run_asyncio_tasks(
    awaitables: Sequence[Awaitable[Any]],
    on_robust_failure: RobustFailure | None,
    on_superseded: RobustFailure,
) -> Outcomes:
    """Run ``awaitables`` as asyncio tasks of the current task; wait for them all.

    Raises:
        asyncio.CancelledError: the caller was cancelled and nothing failed;
            raised only once every task has ended.
    """
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []

    def abort() -> None:
        for index, task in enumerate(tasks):
            if task.done():
                continue
            if not run.started[index]:
                # Scheduled but not started (before 3.12): it will end
                # without running a line, so count it out and close its
                # receiver's coroutine here.
                run.remaining -= 1
                close_unstarted(awaitables[index])
            _cancel_unless_shielded(task)

    run = _Run(len(awaitables), on_robust_failure, abort)
    for index, awaitable in enumerate(awaitables):
        if run.aborting:  # pragma: no cover (only an eager task fails this early: 3.12+)
            close_unstarted(awaitable)
            continue
        run.remaining += 1
        task: asyncio.Task[None]
        if sys.version_info >= (3, 12):  # pragma: no cover (the 3.12 run covers it)
            task = asyncio.Task(
                run.run_in_asyncio_task(index, awaitable), loop=loop, eager_start=True
            )
        else:  # pragma: no cover (before Python 3.12)
            task = asyncio.Task(run.run_in_asyncio_task(index, awaitable), loop=loop)
        tasks.append(task)
    try:
        while run.remaining:
            run.waiter = loop.create_future()
            try:
                await run.waiter
            except asyncio.CancelledError as cancelled:
                run.abort_once()
                await _wait_out(run)
                _raise_unless_interrupted(cancelled, run.errors, on_superseded)
        return run.outcomes()
    finally:
        # A task cancelled before its first step keeps a CancelledError whose
        # traceback holds the run: no cycle through the tasks either.
        tasks.clear()
        run.let_go()


def _nothing_to_abort() -> None:
    """The abort of a run that has ended."""


def is_cancellation(
    error: BaseException | None, cancelled: type[BaseException] | None = None
) -> bool:
    """Whether ``error`` is a cancellation rather than a failure.

    True for ``asyncio.CancelledError``, ``trio.Cancelled`` (or only for
    ``cancelled``, when given: the running backend's own), and an exception
    group made only of them (nested groups included, as a trio nursery of a
    receiver's raises); False for None and anything else, interrupts included.
    """
    if isinstance(error, BaseExceptionGroup):
        members = cast("BaseExceptionGroup[BaseException]", error).exceptions
        return all(is_cancellation(each, cancelled) for each in members)
    if cancelled is not None:
        return isinstance(error, cancelled)
    # trio is looked up, never imported: it is there only if the application uses it.
    trio_cancelled = getattr(sys.modules.get("trio"), "Cancelled", asyncio.CancelledError)
    return isinstance(error, asyncio.CancelledError | trio_cancelled)


def first_cancellation(group: BaseException) -> BaseException:
    """The first cancellation in a group made only of them (``group`` if it is not a group)."""
    while isinstance(group, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", group).exceptions[0]
    return group


def _interrupts(errors: list[tuple[int, BaseException]]) -> bool:
    """Whether any failure is an interrupt (KeyboardInterrupt, SystemExit), never swallowed."""
    return any(
        not isinstance(error, Exception) and not is_cancellation(error) for _, error in errors
    )


def _raise_unless_interrupted(
    cancelled: BaseException, errors: list[tuple[int, BaseException]], on_superseded: RobustFailure
) -> None:
    """After the caller's cancellation: raise it as itself, unless a receiver was interrupted.

    Receivers' exceptions raised meanwhile become the cancellation's context
    and are handed to ``on_superseded`` (which logs them), so none is lost;
    an interrupt is what the send raises instead.
    """
    if _interrupts(errors):
        return
    superseded = [(position, error) for position, error in errors if isinstance(error, Exception)]
    for position, error in superseded:
        on_superseded(position, error)
    failures = [error for _, error in superseded]
    if failures and cancelled.__context__ is None:
        cancelled.__context__ = (
            failures[0]
            if len(failures) == 1
            else ExceptionGroup("receivers failed while the send was cancelled", failures)
        )
    try:
        raise cancelled
    finally:
        del cancelled, failures, superseded


def _cancel_unless_shielded(task: asyncio.Task[Any]) -> None:
    """Cancel a receiver's task, waiting while it is inside a shielded anyio cancel scope.

    anyio never delivers its own cancellation into a shielded scope; a bare
    ``task.cancel()`` would. Like anyio's own delivery, this retries on
    every loop iteration until the task has left the shield (or ended).
    """
    if task.done():
        return
    if _in_anyio_shield(task):
        task.get_loop().call_soon(_cancel_unless_shielded, task)
    else:
        task.cancel()


def _in_anyio_shield(task: asyncio.Task[Any]) -> bool:
    """Whether ``task`` is inside an anyio ``CancelScope(shield=True)`` right now.

    anyio keeps each task's innermost scope in its asyncio backend's task
    states; no public API asks about another task's. Should that layout
    change, no task counts as shielded: the send then cancels as
    ``asyncio.TaskGroup`` does.
    """
    states = getattr(sys.modules.get("anyio._backends._asyncio"), "_task_states", None)
    state = None if states is None else states.get(task)
    scope = getattr(state, "cancel_scope", None)
    while scope is not None:
        if getattr(scope, "shield", False):
            return True
        scope = getattr(scope, "_parent_scope", None)
    return False


async def _wait_out(run: _Run) -> None:
    """After the caller's cancellation: wait, uncancellably, for every task to end."""
    loop = asyncio.get_running_loop()
    # The shield stops anyio re-delivering its scope's cancellation on every
    # loop iteration; a bare asyncio cancellation arrives once and is absorbed.
    with anyio.CancelScope(shield=True):
        while run.remaining:
            run.waiter = loop.create_future()
            try:
                await run.waiter
            except asyncio.CancelledError:
                continue


async def run_trio_nursery(
    awaitables: Sequence[Awaitable[Any]],
    on_robust_failure: RobustFailure | None,
    on_superseded: RobustFailure,
) -> Outcomes:
    """Run ``awaitables`` in a trio nursery; wait for them all.

    Raises:
        trio.Cancelled: the caller was cancelled and nothing failed.
    """
    import trio  # noqa: PLC0415 (only ever called inside a running trio)

    run = _Run(len(awaitables), on_robust_failure, _nothing_to_abort)
    try:
        try:
            async with trio.open_nursery() as nursery:
                run.abort = nursery.cancel_scope.cancel
                # start_soon runs nothing yet, so no failure can stop this loop.
                for index, awaitable in enumerate(awaitables):
                    nursery.start_soon(run.run_in_trio_task, index, awaitable)
        except BaseException:
            if not run.errors:
                # The caller's cancellation, which the nursery groups:
                # raised as itself.
                await _raise_caller_cancellation(trio, run.errors, on_superseded)
                raise  # pragma: no cover (only a cancelled caller's Cancelled gets here)
        # Receivers that caught the caller's cancellation and returned (or
        # failed meanwhile) do not end it: trio's cancellation is
        # level-triggered, so asking is exact.
        await _raise_caller_cancellation(trio, run.errors, on_superseded)
        return run.outcomes()
    finally:
        run.let_go()


async def _raise_caller_cancellation(
    trio: Any, errors: list[tuple[int, BaseException]], on_superseded: RobustFailure
) -> None:
    """On trio: raise the caller's cancellation if it stands (see _raise_unless_interrupted)."""
    if _interrupts(errors):
        return
    try:
        await trio.lowlevel.checkpoint_if_cancelled()
    except trio.Cancelled as cancelled:
        _raise_unless_interrupted(cancelled, errors, on_superseded)


async def run_to_completion(awaitable: Awaitable[T]) -> T:
    """On asyncio, await ``awaitable`` so that a cancelled caller still waits for its end.

    For work that cannot be interrupted, such as a thread: the work runs in
    a task of its own; a cancelled caller waits until it ends, then raises
    the cancellation (or the work's own exception, which wins).
    """
    box: list[Outcome] = []
    task = asyncio.get_running_loop().create_task(captured(awaitable, box))
    cancelled: asyncio.CancelledError | None = None
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError as error:
        cancelled = error
        with anyio.CancelScope(shield=True):
            while not task.done():
                try:
                    await asyncio.wait((task,))
                except asyncio.CancelledError:  # pragma: no cover (defensive: cancelled again)
                    continue
    if cancelled is None:
        value: T = unboxed(box.pop())
        return value
    try:
        unboxed(box.pop())
        raise cancelled
    finally:
        del cancelled  # raised: no cycle through this frame
