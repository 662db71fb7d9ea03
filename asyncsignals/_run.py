"""How one send's receivers run, and what comes back.

A send hands this module the connections its lookup found and gets back the
results, ``[(receiver, result)]`` in connection order, or the error it must
raise. Every path of a send runs its receivers here (``send_sync``'s
sequential loop, in asyncsignals._sync, uses the same rules from there), and
each rule is written once for all of them:

- calling a receiver: :func:`run_sync_only` (a send whose receivers are all
  sync), :func:`run_solo` (one async receiver with nothing put on it, the
  most common send), :func:`run_inline` (sync receivers called, async ones
  started and left pending) and :func:`run_in_order` (a sequential signal),
  then :func:`start_pending` for what was left pending, in the sender's task
  for one async receiver and in the backend's tasks for more;
- a ``to_thread`` receiver's worker thread: asyncsignals._in_thread;
- a receiver's limits, its timeout and the signal's concurrency slot: put
  on by :func:`asyncsignals._limits.guarded`, on every path;
- a receiver's error: the rules of asyncsignals._failures (the note naming
  it, the log line send_robust writes, whether the caller's cancellation
  wins over it).

The signal itself is passed down as an argument: it is what receivers that
take ``signal=`` are given, and it names the send in notes and logs. This
module never calls back into it.

The frames here catch receivers' exceptions, so each deletes the locals that
hold one before it returns: see asyncsignals._failures.report.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from types import CoroutineType, MethodType
from typing import Any

from ._backends import ASYNCIO, Backend, CancelWatch, current_backend
from ._connections import ASYNC, THREAD, WEAK, WEAK_METHOD, Connection, InlineConnection
from ._context import NOT_STARTED, await_in_context
from ._failures import annotate, combined, report, settle_failure
from ._in_thread import in_a_thread
from ._limits import UNTIMED, Limits, guarded
from ._outcome import PLAIN_RESULTS, close_unstarted, is_awaitable
from ._receivers import signal_label

__all__ = [
    "Pending",
    "Results",
    "await_one",
    "await_pending",
    "close_awaitables",
    "is_awaitable",
    "pending_awaitables",
    "pending_receiver",
    "run_in_order",
    "run_inline",
    "run_solo",
    "run_sync_only",
    "start_one",
    "start_pending",
]

# A native coroutine's type, as the type checkers should narrow to it (the
# hot paths test ``type(x) is COROUTINE`` and need no cast() call after it;
# not Final, so that the checkers read its declared type inside functions).
COROUTINE: type[Coroutine[Any, Any, Any]] = CoroutineType

#: What a send returns: ``(receiver, result)`` in connection order.
Results = list[tuple[Callable[..., Any], Any]]

#: A receiver left to await: ``(result index, receiver, ASYNC or THREAD, its
#: awaitable or its kwargs, timeout)``. Read only in this module; the sync
#: entry points use :func:`pending_receiver` and :func:`pending_awaitables`.
Pending = tuple[int, Any, int, Any, float | None]

# What next() gives for a coroutine that returned (None) at its first step.
DONE: Any = object()

# -- calling receivers ------------------------------------------------------


def run_sync_only(
    signal: object,
    limits: Limits,
    inline: Sequence[InlineConnection],
    sender: object,
    named: dict[str, Any],
    robust: bool,
) -> tuple[Results, list[Pending]]:
    """Run a send whose receivers are all sync, in connection order.

    :func:`run_inline` specialised for the most common send: no receiver to
    await or to hand to a thread. Runs inside the send's context copy. A
    receiver that returns an awaitable has it left pending, as there. The
    two loops repeat each other's handling of a sync receiver on purpose (a
    shared helper would cost a call per receiver); a change to one belongs
    in both.
    """
    # The keywords for receivers that take ``signal=``; those for the others
    # are made when the first of them is reached (one dict in a send where
    # every receiver takes it, or none does).
    arguments_with_signal = {"signal": signal, "sender": sender, **named}
    arguments: dict[str, Any] | None = None
    results: Results = []
    pending: list[Pending] = []
    result: Any = None
    plain_results = PLAIN_RESULTS
    try:
        for target, hold, takes_signal, timeout in inline:
            if hold == WEAK:  # the most common: one test for it
                receiver = target()
                if receiver is None:
                    continue
            elif hold:
                receiver = target()
                if receiver is None:
                    continue
                receiver = MethodType(target.function, receiver)
            else:
                receiver = target
            if takes_signal:
                kwargs = arguments_with_signal
            elif arguments is None:
                kwargs = arguments = {"sender": sender, **named}
            else:
                kwargs = arguments
            try:
                result = receiver(**kwargs)
            except Exception as exc:
                if not robust:
                    annotate(signal, exc, receiver)
                    raise
                result = report(signal, exc, receiver, sender)
            else:
                if (
                    result is not None
                    and type(result) not in plain_results
                    and inspect.isawaitable(result)
                ):
                    pending.append(
                        (len(results), receiver, ASYNC, result, limits.timeout_of(timeout))
                    )
                    result = None
            results.append((receiver, result))
        return results, pending
    except BaseException:
        close_awaitables(pending)
        raise
    finally:
        del results, result  # see asyncsignals._failures.report: no cycle through a kept exception


def run_inline(
    signal: object,
    limits: Limits,
    connections: Sequence[Connection],
    sender: object,
    named: dict[str, Any],
    robust: bool,
    in_thread: bool,
) -> tuple[Results, list[Pending]]:
    """Run the inline receivers in connection order; collect the rest.

    Runs inside the send's context copy. Async receivers are called here
    (creating their coroutines) and left pending with ``to_thread`` ones;
    ``in_thread`` (the sync entry points) runs ``to_thread`` receivers
    inline too, in the calling thread.
    """
    arguments = {"sender": sender, **named}
    arguments_with_signal: dict[str, Any] | None = None
    results: Results = []
    pending: list[Pending] = []
    result: Any = None
    # This loop is the cost of every send: constants are read from locals,
    # and the awaitable check runs only for results that could be one.
    plain_results = PLAIN_RESULTS
    async_kind, thread_kind, weak_method = ASYNC, THREAD, WEAK_METHOD
    default_timeout = limits.timeout
    try:
        for target, hold, kind, takes_signal, _, timeout in connections:
            if hold:
                receiver = target()
                if receiver is None:
                    continue
                if hold == weak_method:
                    receiver = MethodType(target.function, receiver)
            else:
                receiver = target
            if not takes_signal:
                kwargs = arguments
            elif arguments_with_signal is None:
                kwargs = arguments_with_signal = {"signal": signal, **arguments}
            else:
                kwargs = arguments_with_signal
            if kind == thread_kind and not in_thread:
                pending.append((len(results), receiver, thread_kind, kwargs, None))
                results.append((receiver, None))
                continue
            try:
                result = receiver(**kwargs)
            except Exception as exc:
                if not robust:
                    annotate(signal, exc, receiver)
                    raise
                result = report(signal, exc, receiver, sender)
            else:
                if kind == async_kind or (
                    result is not None
                    and type(result) not in plain_results
                    and inspect.isawaitable(result)
                ):
                    # Awaited with the other async receivers; a sync
                    # function's awaitable too, never dropped.
                    pending.append(
                        (
                            len(results),
                            receiver,
                            async_kind,
                            result,
                            # Limits.timeout_of, without a call per receiver
                            default_timeout if timeout is None else timeout,
                        )
                    )
                    result = None
            results.append((receiver, result))
        return results, pending
    except BaseException:
        close_awaitables(pending)
        raise
    finally:
        del results, result  # see asyncsignals._failures.report: no cycle through a kept exception


def run_in_order(
    signal: object,
    limits: Limits,
    connections: Sequence[Connection],
    sender: object,
    named: dict[str, Any],
    robust: bool,
) -> Results | Awaitable[Results]:
    """Run every receiver after the previous one, in connection order.

    The whole run is stepped in one copy of the sender's context, so each
    receiver is a plain call or await inside it. Its first step is taken
    here: when no receiver suspends, the results are returned as they are,
    else an awaitable that goes on from there and returns them.
    """
    results: Results = []
    # The backend is looked up only once a receiver suspends: before that,
    # the watch has nothing to count (see CancelWatch).
    watch = CancelWatch(ASYNCIO)
    context = contextvars.copy_context()
    steps = _in_order(results, signal, limits, connections, sender, named, robust, watch)
    try:
        # The loop fills ``results`` and returns None, so its end comes out
        # of next() as DONE, with no StopIteration made and caught.
        first = context.run(next, steps.__await__(), DONE)
        if first is DONE:
            return results
        watch.backend = current_backend()
        return _finish(await_in_context(context, steps, watch, first), results)
    finally:
        del results  # see asyncsignals._failures.report: no cycle through a kept exception


async def _finish(steps: Awaitable[None], results: Results) -> Results:
    """``results``, once ``steps`` have filled them."""
    await steps
    try:
        return results
    finally:
        del results


async def _in_order(
    results: Results,
    signal: object,
    limits: Limits,
    connections: Sequence[Connection],
    sender: object,
    named: dict[str, Any],
    robust: bool,
    watch: CancelWatch,
) -> None:
    # As in run_sync_only: one dict when every receiver takes signal=, or none.
    arguments_with_signal = {"signal": signal, "sender": sender, **named}
    arguments: dict[str, Any] | None = None
    limiter = None if limits.max_concurrency is None else limits.limiter(current_backend())
    # A receiver with no time limit of its own, of a signal with none, is
    # awaited as it is (guarded() would return it unchanged).
    plain = limits.unlimited
    default_timeout = limits.timeout
    append = results.append
    weak, async_kind = WEAK, ASYNC
    value: Any = None
    try:
        for target, hold, kind, takes_signal, _, own_timeout in connections:
            if hold == weak:  # the most common: one test for it
                receiver = target()
                if receiver is None:
                    continue
            elif hold:
                receiver = target.method()
                if receiver is None:
                    continue
            else:
                receiver = target
            if takes_signal:
                kwargs = arguments_with_signal
            elif arguments is None:
                kwargs = arguments = {"sender": sender, **named}
            else:
                kwargs = arguments
            try:
                if kind == async_kind and plain and own_timeout is None:
                    value = await receiver(**kwargs)
                elif kind == THREAD:
                    value = await in_a_thread(signal, receiver, kwargs, current_backend(), limiter)
                else:
                    value = receiver(**kwargs)
                    if kind == async_kind or is_awaitable(value):
                        # Limits.timeout_of, without a call
                        timeout = default_timeout if own_timeout is None else own_timeout
                        if (timeout is None or timeout is UNTIMED) and limiter is None:
                            value = await value  # guarded() would return it as it is
                        else:
                            value = await guarded(signal, value, receiver, timeout, limiter)
            # The cancellation rule for a receiver awaited in the sender's
            # task; the one-receiver path in await_pending repeats these
            # except blocks on purpose: a coroutine shared by both would add
            # a coroutine frame to every send to one async receiver.
            except Exception as exc:
                if not await settle_failure(signal, watch, exc, receiver, sender, robust):
                    raise
                value = exc
                watch.suspended = False
            except BaseExceptionGroup as group:
                await watch.raise_instead_of(group)
                raise
            else:
                # A receiver that absorbed the caller's cancellation ends the
                # send. Only one that suspended can have been cancelled (the
                # watch saw it suspend before anything was thrown in): the
                # watch's own test first, for a coroutine to await for each
                # receiver that never suspended would cost a sequential send
                # a quarter more.
                if watch.suspended:
                    await watch.raise_if_caller_cancelled()
                    # The next receiver's cancel() of the task it runs in is
                    # its own: counted from its own first suspension.
                    watch.suspended = False
            append((receiver, value))
    finally:
        # See asyncsignals._failures.report: no cycle through a kept exception.
        del results, append, value


def run_solo(
    signal: object, connection: Connection, sender: object, named: dict[str, Any], robust: bool
) -> Results | Awaitable[Results]:
    """The send to one async receiver with nothing put on it: the most common send.

    ``connection`` is a lookup's ``solo`` (see :data:`Snapshot`), of a
    signal with no limits and no hooks. As :func:`run_inline` and
    :func:`start_one` together would run it, with fewer steps: the receiver
    is called, and its first step taken, in the send's context copy. Returns
    ``[(receiver, value)]`` when it did not suspend, else an awaitable that
    goes on from there and returns it.
    """
    target, hold, _, takes_signal, _, _ = connection
    if hold:
        receiver = target() if hold == WEAK else target.method()
        if receiver is None:
            return []
    else:
        receiver = target
    context = contextvars.copy_context()
    results: Results = []
    steps = _solo(
        results,
        receiver,
        {"signal": signal, "sender": sender, **named}
        if takes_signal
        else {"sender": sender, **named},
    )
    try:
        # The receiver called and its first step taken, in the copy. The end
        # comes out of next() as DONE: no StopIteration caught here (and none
        # made when the receiver returns None).
        first = context.run(next, steps.__await__(), DONE)
        if first is DONE:
            return results
    except Exception as exc:  # nothing suspended: as in run_inline
        if not robust:
            annotate(signal, exc, receiver)
            raise
        return [(receiver, report(signal, exc, receiver, sender))]
    finally:
        del results  # see asyncsignals._failures.report: no cycle through a kept exception
    # The caller's pending cancellations are counted from here (see start_one).
    watch = CancelWatch(current_backend())
    return _await_one(
        signal, sender, [(receiver, None)], 0, receiver, steps, context, watch, robust, first
    )


async def _solo(results: Results, receiver: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Call and await a lone receiver; its value both put in ``results`` and returned.

    Put there for the send that it did not suspend (:func:`run_solo` takes
    it from there), returned to the send that awaits it.
    """
    value = await receiver(**kwargs)
    results.append((receiver, value))
    return value


# -- awaiting what was left pending -----------------------------------------


def start_pending(
    signal: object,
    limits: Limits,
    sender: object,
    results: Results,
    pending: list[Pending],
    context: contextvars.Context,
    robust: bool,
) -> Results | Awaitable[Results]:
    """Await the pending receivers, starting here: ``results`` if that finished them.

    One async receiver is awaited in the sender's task (see
    :func:`start_one`); more run in the backend's tasks. What is returned,
    awaited, returns ``results``, each pending receiver's value in its slot.
    """
    if len(pending) != 1 or pending[0][2] != ASYNC:
        return _await_concurrently(signal, limits, sender, results, pending, robust)
    index, receiver, _, awaitable, timeout = pending[0]
    del pending
    if (timeout is None or timeout is UNTIMED) and limits.max_concurrency is None:
        # guarded() would return it as it is
        return start_one(signal, sender, results, index, receiver, awaitable, context, robust)
    backend = current_backend()
    steps = guarded(signal, awaitable, receiver, timeout, limits.limiter(backend))
    del awaitable
    return start_one(signal, sender, results, index, receiver, steps, context, robust, backend)


def start_one(
    signal: object,
    sender: object,
    results: Results,
    index: int,
    receiver: Callable[..., Any],
    steps: Awaitable[Any],
    context: contextvars.Context,
    robust: bool,
    backend: Backend | None = None,
) -> Results | Awaitable[Results]:
    """Await one receiver's ``steps`` in the sender's task, into slot ``index`` of ``results``.

    Its first step is taken right here, in the send's context copy: a
    receiver that returns without suspending (the most common async send)
    needs no coroutine of the send's own to await it, and ``results`` is
    returned. Otherwise what is returned, awaited, goes on from where the
    receiver suspended and returns ``results``.
    """
    first: Any = NOT_STARTED
    if type(steps) is COROUTINE:
        try:
            first = context.run(COROUTINE.send, steps, None)
        except StopIteration as stop:
            results[index] = (receiver, stop.value)
            return results
        except Exception as exc:
            # Nothing has suspended, so no cancellation can have reached the
            # receiver (_settle_failure would find none): as in run_inline.
            if not robust:
                annotate(signal, exc, receiver)
                raise
            results[index] = (receiver, report(signal, exc, receiver, sender))
            try:
                return results
            finally:
                del results  # see asyncsignals._failures.report: no cycle through a kept exception
    # The caller's pending cancellations are counted from here: a cancel()
    # that the receiver made of its own task so far is its own, as it would
    # be in a task of its own (as when several receivers run).
    watch = CancelWatch(current_backend() if backend is None else backend)
    return _await_one(
        signal, sender, results, index, receiver, steps, context, watch, robust, first
    )


async def await_pending(
    signal: object,
    limits: Limits,
    sender: object,
    results: Results,
    pending: list[Pending],
    context: contextvars.Context,
    robust: bool,
) -> Results:
    """:func:`start_pending`, awaited: ``results``, each pending value in its slot."""
    outcome = start_pending(signal, limits, sender, results, pending, context, robust)
    del results
    try:
        return outcome if isinstance(outcome, list) else await outcome
    finally:
        del outcome  # see asyncsignals._failures.report: no cycle through a kept exception


async def _await_one(
    signal: object,
    sender: object,
    results: Results,
    index: int,
    receiver: Callable[..., Any],
    steps: Awaitable[Any],
    context: contextvars.Context,
    watch: CancelWatch,
    robust: bool,
    first: Any = NOT_STARTED,
) -> Results:
    """Await one receiver in the sender's task and put its value in slot ``index``.

    ``first``: what its coroutine yielded at the first step, taken by
    :func:`start_pending`.
    """
    try:
        value = await await_in_context(context, steps, watch, first)
    # The twin of the in-order loop's except blocks (see there).
    except Exception as exc:
        if not await settle_failure(signal, watch, exc, receiver, sender, robust):
            raise
        value = exc
    except BaseExceptionGroup as group:
        await watch.raise_instead_of(group)
        raise
    else:
        # ... and over a value returned after absorbing it.
        await watch.raise_if_caller_cancelled()
    results[index] = (receiver, value)
    del value  # see asyncsignals._failures.report: no cycle through a kept exception
    try:
        return results
    finally:
        del results


async def _await_concurrently(
    signal: object,
    limits: Limits,
    sender: object,
    results: Results,
    pending: list[Pending],
    robust: bool,
) -> Results:
    """Await the pending receivers, each in a task of the backend's, into ``results``."""
    backend = current_backend()
    limiter = limits.limiter(backend)
    awaitables = [
        in_a_thread(signal, receiver, call, backend, limiter)
        if kind == THREAD
        else call
        if timeout is None and limiter is None
        else guarded(signal, call, receiver, timeout, limiter)
        for _, receiver, kind, call, timeout in pending
    ]
    values, errors = await backend.run_tasks(
        awaitables,
        (lambda position, error: report(signal, error, pending[position][1], sender))
        if robust
        else None,
        lambda position, error: report(
            signal, error, pending[position][1], sender, superseded=True
        ),
    )
    try:
        if errors:
            if not robust:
                _annotate_each(signal, errors, pending)
            raise combined([error for _, error in errors], signal_label(signal))
        _fill_in(results, pending, values)
        return results
    finally:
        # See report: no cycle through an exception. (From Python 3.12 the
        # frames of tasks started eagerly link here.)
        del results, values, errors


async def await_one(
    signal: object,
    limits: Limits,
    awaitable: Awaitable[Any],
    receiver: object,
    time_limit: float | None,
) -> Any:
    """Await one receiver's awaitable under its time limit and the signal's limit."""
    limiter = limits.limiter(current_backend())
    return await guarded(signal, awaitable, receiver, time_limit, limiter)


def pending_receiver(pending: list[Pending], position: int) -> Any:
    """The receiver of the ``position``-th entry of ``pending``."""
    return pending[position][1]


def pending_awaitables(pending: list[Pending]) -> list[Any]:
    """The awaitables of the async receivers in ``pending``, none of them started yet."""
    return [call for _, _, kind, call, _ in pending if kind == ASYNC]


def close_awaitables(pending: list[Pending]) -> None:
    """Close the coroutines of receivers that will not run, so none is left un-awaited."""
    for awaitable in pending_awaitables(pending):
        close_unstarted(awaitable)


def _fill_in(results: Results, pending: list[Pending], values: list[Any]) -> None:
    """Put each pending receiver's value in its slot of ``results``.

    A function of its own, as :func:`_annotate_each` is.
    """
    for (index, receiver, _, _, _), value in zip(pending, values, strict=True):
        results[index] = (receiver, value)


def _annotate_each(
    signal: object, errors: list[tuple[int, BaseException]], pending: list[Pending]
) -> None:
    # A function of its own: in the caller's frame, the loop variable would
    # keep an exception that the frame is in the traceback of (see report).
    for position, error in errors:
        annotate(signal, error, pending[position][1])
