"""The hand-written rungs of the costs ladder (see benchmarks.costs).

Each builder makes, from the receivers, a ``send(sender, **named)`` that
does what the rung before it does plus one guarantee DESIGN.md requires of a
send, written the cheapest correct way we know. None of them uses the
library's code, so a rung's count does not move when the library changes;
the ladder's last rung is the library itself. Each rung is written out whole,
repeating the rung before it on purpose: a helper shared between rungs would
add a call to every send and blur what a rung adds.

The guarantees, in the order the rungs add them:

- the floor: call or await each receiver in turn, results as ``(receiver,
  result)`` pairs in connection order (the main harness's hand loop);
- receivers held weakly: each dereferenced at send time, a dead one skipped;
- ``signal=``: passed to each receiver that accepts it (decided at connect
  time), and ``signal`` refused as a payload name before any receiver runs;
- the lookup per sender: an immutable snapshot of the connections a send
  reaches (any-sender ones, plus the sender's own, matched by identity),
  cached until the connections change, so a send in flight keeps the
  receiver set it started with;
- context isolation: receivers run in a copy of the sender's context, a
  coroutine with every step run in it;
- per-receiver error rules: an exception raised as itself with a note naming
  the receiver and the signal; cancellation, ``KeyboardInterrupt`` and
  ``SystemExit`` never caught; after a receiver that suspended, the caller's
  cancellation raised if it still stands (a receiver cannot absorb it);
- sync receivers only: an awaitable a sync receiver returns is awaited;
- concurrent async receivers (Python 3.12+): each in an eagerly started task
  (which runs in a copy of the context of its own), then each task's outcome
  read under the rules of ``send``: fail fast, nothing left running, the
  caller's cancellation as itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
import types
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from typing import Any

import anyio.lowlevel

from benchmarks._backends import Backend
from benchmarks._implementations import Send, implementations
from benchmarks._receivers import Receiver, all_async

#: A hand-written rung: the receivers and the backend, to a send.
HandRung = Callable[[Sequence[Receiver], Backend], Send]

COROUTINE: type[Coroutine[Any, Any, Any]] = types.CoroutineType

# Results of these types are never awaitable: no isawaitable() call for them.
_PLAIN_RESULTS = frozenset({int, str, float, bool, tuple, list, dict, bytes})


class HandSignal:
    """What the hand-written rungs pass as ``signal=`` and name in notes."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<Signal {self.name}>"


SIGNAL = HandSignal("costs")


def _takes_signal(receiver: Receiver) -> bool:
    """Whether ``receiver`` accepts ``signal=``: decided once, at connect time."""
    parameters = inspect.signature(receiver).parameters.values()
    return any(
        parameter.kind is parameter.VAR_KEYWORD or parameter.name == "signal"
        for parameter in parameters
    )


def _refuse_reserved(named: dict[str, Any]) -> None:
    raise TypeError(f"'signal' is a reserved name: signal {SIGNAL.name} passes it itself")


def _annotate(error: BaseException, receiver: Receiver) -> None:
    error.add_note(f"raised by receiver {receiver.__qualname__} of signal {SIGNAL.name}")


# -- the floor, weak references, signal= ------------------------------------


def floor(receivers: Sequence[Receiver], backend: Backend) -> Send:
    """The main harness's hand loop: call or await each receiver, collect the results."""
    (loop,) = [each for each in implementations() if each.name == "loop"]
    return loop.build(receivers, False, backend)


def weak(receivers: Sequence[Receiver], backend: Backend) -> Send:
    """+ receivers held weakly: dereferenced at send time, a collected one skipped."""
    references = [weakref.ref(receiver) for receiver in receivers]
    if all_async(receivers):

        async def send_async(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
            results: list[tuple[Receiver, Any]] = []
            for reference in references:
                receiver = reference()
                if receiver is not None:
                    results.append((receiver, await receiver(sender=sender, **named)))
            return results

        return send_async

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        results: list[tuple[Receiver, Any]] = []
        for reference in references:
            receiver = reference()
            if receiver is not None:
                results.append((receiver, receiver(sender=sender, **named)))
        return results

    return send


# A connection as the rungs from here on hold it: (weak reference, takes signal=).
Connection = tuple[weakref.ref[Receiver], bool]


def _connections(receivers: Sequence[Receiver]) -> tuple[Connection, ...]:
    return tuple((weakref.ref(receiver), _takes_signal(receiver)) for receiver in receivers)


def with_signal(receivers: Sequence[Receiver], backend: Backend) -> Send:
    """+ ``signal=`` to each receiver that accepts it; ``signal`` refused in the payload."""
    connections = _connections(receivers)
    if all_async(receivers):

        async def send_async(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
            if "signal" in named:
                _refuse_reserved(named)
            arguments_with_signal = {"signal": SIGNAL, "sender": sender, **named}
            results: list[tuple[Receiver, Any]] = []
            for reference, takes_signal in connections:
                receiver = reference()
                if receiver is not None:
                    kwargs = arguments_with_signal if takes_signal else {"sender": sender, **named}
                    results.append((receiver, await receiver(**kwargs)))
            return results

        return send_async

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        if "signal" in named:
            _refuse_reserved(named)
        arguments_with_signal = {"signal": SIGNAL, "sender": sender, **named}
        results: list[tuple[Receiver, Any]] = []
        for reference, takes_signal in connections:
            receiver = reference()
            if receiver is not None:
                results.append(
                    (
                        receiver,
                        receiver(
                            **(
                                arguments_with_signal
                                if takes_signal
                                else {"sender": sender, **named}
                            )
                        ),
                    )
                )
        return results

    return send


# -- the lookup per sender --------------------------------------------------


class Store:
    """A signal's connections, for any sender and per sender, with a cached snapshot.

    Only what a send reads is fast: ``version``, ``any_cache`` and ``senders``.
    ``connect`` replaces the version, so no cached snapshot is used again.
    """

    __slots__ = ("_any_sender", "any_cache", "senders", "version")

    def __init__(self, receivers: Sequence[Receiver]) -> None:
        self._any_sender = list(_connections(receivers))
        # id(sender) -> (weak reference to the sender, its own connections, its cache)
        self.senders: dict[int, tuple[weakref.ref[Any], list[Connection], list[Any]]] = {}
        self.version = object()
        self.any_cache: tuple[object, tuple[Connection, ...]] = (
            self.version,
            tuple(self._any_sender),
        )

    def connect(self, receiver: Receiver, sender: object = None) -> None:
        connection = (weakref.ref(receiver), _takes_signal(receiver))
        if sender is None:
            self._any_sender.append(connection)
        else:
            record = self.senders.get(id(sender))
            if record is None or record[0]() is not sender:
                record = self.senders[id(sender)] = (weakref.ref(sender), [], [None, ()])
            record[1].append(connection)
        self.version = object()
        self.any_cache = (self.version, tuple(self._any_sender))

    def lookup(self, sender: object) -> tuple[Connection, ...]:
        """The connections a send from ``sender`` reaches (sender's own after any-sender's)."""
        version, snapshot = self.any_cache
        if version is not self.version:
            self.any_cache = (self.version, tuple(self._any_sender))
            snapshot = self.any_cache[1]
        record = self.senders.get(id(sender)) if sender is not None else None
        if record is None or record[0]() is not sender:
            return snapshot
        cache = record[2]
        if cache[0] is not self.version:
            cache[0], cache[1] = self.version, snapshot + tuple(record[1])
        own: tuple[Connection, ...] = cache[1]
        return own


def looked_up(receivers: Sequence[Receiver], backend: Backend) -> Send:
    """+ the lookup per sender: the cached snapshot of what this sender reaches."""
    store = Store(receivers)
    if all_async(receivers):

        async def send_async(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
            version, snapshot = store.any_cache
            if version is not store.version or (store.senders and sender is not None):
                snapshot = store.lookup(sender)
            if "signal" in named:
                _refuse_reserved(named)
            arguments_with_signal = {"signal": SIGNAL, "sender": sender, **named}
            results: list[tuple[Receiver, Any]] = []
            for reference, takes_signal in snapshot:
                receiver = reference()
                if receiver is not None:
                    kwargs = arguments_with_signal if takes_signal else {"sender": sender, **named}
                    results.append((receiver, await receiver(**kwargs)))
            return results

        return send_async

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        version, snapshot = store.any_cache
        if version is not store.version or (store.senders and sender is not None):
            snapshot = store.lookup(sender)
        if "signal" in named:
            _refuse_reserved(named)
        arguments_with_signal = {"signal": SIGNAL, "sender": sender, **named}
        results: list[tuple[Receiver, Any]] = []
        for reference, takes_signal in snapshot:
            receiver = reference()
            if receiver is not None:
                results.append(
                    (
                        receiver,
                        receiver(
                            **(
                                arguments_with_signal
                                if takes_signal
                                else {"sender": sender, **named}
                            )
                        ),
                    )
                )
        return results

    return send


# -- context isolation ------------------------------------------------------


class Watch:
    """Whether a receiver stepped in a context copy suspended, and what the caller had pending."""

    __slots__ = ("backend", "baseline", "suspended")

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.suspended = False
        self.baseline = 0

    def suspending(self) -> None:
        self.suspended = True
        if self.backend != "trio":
            task = asyncio.current_task()
            self.baseline = 0 if task is None else task.cancelling()

    async def raise_if_caller_cancelled(self) -> None:
        """After a receiver that suspended: the caller's cancellation, if it stands."""
        self.suspended = False
        if self.backend == "trio":
            import trio

            await trio.lowlevel.checkpoint_if_cancelled()
            return
        task = asyncio.current_task()
        if task is not None and task.cancelling() > self.baseline:
            # An anyio scope delivers its own cancellation again at a checkpoint
            # (it recognises only its own); asyncio.timeout takes any.
            await anyio.lowlevel.checkpoint_if_cancelled()
            raise asyncio.CancelledError


@types.coroutine
def stepped_in(
    context: contextvars.Context,
    coroutine: Coroutine[Any, Any, Any],
    first: Any,
    watch: Watch | None = None,
) -> Generator[Any, Any, Any]:
    """Go on awaiting ``coroutine``, which yielded ``first``, with every step in ``context``."""
    yielded = first
    while True:
        if watch is not None and not watch.suspended:
            watch.suspending()
        try:
            value = yield yielded
        except BaseException as thrown:  # cancellation belongs to the receiver
            try:
                yielded = context.run(coroutine.throw, thrown)
            except StopIteration as stop:
                return stop.value
            finally:
                del thrown
            continue
        try:
            yielded = context.run(coroutine.send, value)
        except StopIteration as stop:
            return stop.value


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _start_in(
    context: contextvars.Context, awaitable: Awaitable[Any]
) -> tuple[Coroutine[Any, Any, Any], Any]:
    """``awaitable`` as a coroutine, and its first step taken in ``context``: (coroutine, yielded).

    Raises StopIteration when it finished without suspending.
    """
    coroutine = awaitable if type(awaitable) is COROUTINE else _awaited(awaitable)
    return coroutine, context.run(COROUTINE.send, coroutine, None)


def _sync_in_context(
    snapshot: tuple[Connection, ...], sender: object, named: dict[str, Any]
) -> list[tuple[Receiver, Any]]:
    arguments_with_signal = {"signal": SIGNAL, "sender": sender, **named}
    results: list[tuple[Receiver, Any]] = []
    for reference, takes_signal in snapshot:
        receiver = reference()
        if receiver is not None:
            results.append(
                (
                    receiver,
                    receiver(
                        **(arguments_with_signal if takes_signal else {"sender": sender, **named})
                    ),
                )
            )
    return results


async def _in_order(
    snapshot: tuple[Connection, ...], sender: object, named: dict[str, Any]
) -> list[tuple[Receiver, Any]]:
    arguments_with_signal = {"signal": SIGNAL, "sender": sender, **named}
    results: list[tuple[Receiver, Any]] = []
    for reference, takes_signal in snapshot:
        receiver = reference()
        if receiver is not None:
            kwargs = arguments_with_signal if takes_signal else {"sender": sender, **named}
            results.append((receiver, await receiver(**kwargs)))
    return results


def isolated(receivers: Sequence[Receiver], backend: Backend) -> Send:
    """+ context isolation: the receivers run in a copy of the sender's context.

    Sync receivers: the loop inside ``Context.run``. One async receiver: called
    and first stepped in the copy, awaited on only if it suspended. Several:
    the whole in-order loop is one coroutine stepped in the copy.
    """
    store = Store(receivers)
    if not all_async(receivers):

        async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
            version, snapshot = store.any_cache
            if version is not store.version or (store.senders and sender is not None):
                snapshot = store.lookup(sender)
            if "signal" in named:
                _refuse_reserved(named)
            return contextvars.copy_context().run(_sync_in_context, snapshot, sender, named)

        return send

    async def send_async(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        version, snapshot = store.any_cache
        if version is not store.version or (store.senders and sender is not None):
            snapshot = store.lookup(sender)
        if "signal" in named:
            _refuse_reserved(named)
        context = contextvars.copy_context()
        if len(snapshot) == 1:
            reference, takes_signal = snapshot[0]
            receiver = reference()
            if receiver is None:
                return []
            if takes_signal:
                call = context.run(receiver, signal=SIGNAL, sender=sender, **named)
            else:
                call = context.run(receiver, sender=sender, **named)
            try:
                coroutine, first = _start_in(context, call)
            except StopIteration as stop:
                return [(receiver, stop.value)]
            return [(receiver, await stepped_in(context, coroutine, first))]
        steps = _in_order(snapshot, sender, named)
        try:
            first = context.run(COROUTINE.send, steps, None)
        except StopIteration as stop:
            results: list[tuple[Receiver, Any]] = stop.value
            return results
        results = await stepped_in(context, steps, first)
        return results

    return send_async


# -- per-receiver error rules -----------------------------------------------


def _sync_ruled(
    snapshot: tuple[Connection, ...], sender: object, named: dict[str, Any]
) -> list[tuple[Receiver, Any]]:
    arguments_with_signal = {"signal": SIGNAL, "sender": sender, **named}
    results: list[tuple[Receiver, Any]] = []
    for reference, takes_signal in snapshot:
        receiver = reference()
        if receiver is not None:
            try:
                result = receiver(
                    **(arguments_with_signal if takes_signal else {"sender": sender, **named})
                )
            except Exception as error:
                _annotate(error, receiver)
                raise
            results.append((receiver, result))
    return results


async def _in_order_ruled(
    snapshot: tuple[Connection, ...], sender: object, named: dict[str, Any], watch: Watch
) -> list[tuple[Receiver, Any]]:
    arguments_with_signal = {"signal": SIGNAL, "sender": sender, **named}
    results: list[tuple[Receiver, Any]] = []
    for reference, takes_signal in snapshot:
        receiver = reference()
        if receiver is not None:
            kwargs = arguments_with_signal if takes_signal else {"sender": sender, **named}
            try:
                value = await receiver(**kwargs)
            except Exception as error:
                _annotate(error, receiver)
                raise
            if watch.suspended:  # it may have absorbed the caller's cancellation
                await watch.raise_if_caller_cancelled()
            results.append((receiver, value))
    return results


async def _finish_one(
    context: contextvars.Context,
    receiver: Receiver,
    coroutine: Coroutine[Any, Any, Any],
    first: Any,
    backend: Backend,
) -> list[tuple[Receiver, Any]]:
    watch = Watch(backend)
    try:
        value = await stepped_in(context, coroutine, first, watch)
    except Exception as error:
        _annotate(error, receiver)
        raise
    await watch.raise_if_caller_cancelled()
    return [(receiver, value)]


def ruled(receivers: Sequence[Receiver], backend: Backend) -> Send:
    """+ per-receiver error rules: each error noted and raised as itself; cancellation wins."""
    store = Store(receivers)
    if not all_async(receivers):

        async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
            version, snapshot = store.any_cache
            if version is not store.version or (store.senders and sender is not None):
                snapshot = store.lookup(sender)
            if "signal" in named:
                _refuse_reserved(named)
            return contextvars.copy_context().run(_sync_ruled, snapshot, sender, named)

        return send

    async def send_async(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        version, snapshot = store.any_cache
        if version is not store.version or (store.senders and sender is not None):
            snapshot = store.lookup(sender)
        if "signal" in named:
            _refuse_reserved(named)
        context = contextvars.copy_context()
        if len(snapshot) == 1:
            reference, takes_signal = snapshot[0]
            receiver = reference()
            if receiver is None:
                return []
            try:
                if takes_signal:
                    call = context.run(receiver, signal=SIGNAL, sender=sender, **named)
                else:
                    call = context.run(receiver, sender=sender, **named)
                coroutine, first = _start_in(context, call)
            except StopIteration as stop:
                return [(receiver, stop.value)]
            except Exception as error:
                _annotate(error, receiver)
                raise
            return await _finish_one(context, receiver, coroutine, first, backend)
        watch = Watch(backend)
        steps = _in_order_ruled(snapshot, sender, named, watch)
        try:
            first = context.run(COROUTINE.send, steps, None)
        except StopIteration as stop:
            results: list[tuple[Receiver, Any]] = stop.value
            return results
        results = await stepped_in(context, steps, first, watch)
        return results

    return send_async


# -- sync receivers: an awaitable result awaited ----------------------------


def _sync_awaiting(
    snapshot: tuple[Connection, ...], sender: object, named: dict[str, Any]
) -> tuple[list[tuple[Receiver, Any]], list[int]]:
    arguments_with_signal = {"signal": SIGNAL, "sender": sender, **named}
    results: list[tuple[Receiver, Any]] = []
    pending: list[int] = []
    plain_results = _PLAIN_RESULTS
    for reference, takes_signal in snapshot:
        receiver = reference()
        if receiver is not None:
            try:
                result = receiver(
                    **(arguments_with_signal if takes_signal else {"sender": sender, **named})
                )
            except Exception as error:
                _annotate(error, receiver)
                raise
            if (
                result is not None
                and type(result) not in plain_results
                and inspect.isawaitable(result)
            ):
                pending.append(len(results))
            results.append((receiver, result))
    return results, pending


async def _await_results(
    context: contextvars.Context,
    results: list[tuple[Receiver, Any]],
    pending: list[int],
    backend: Backend,
) -> list[tuple[Receiver, Any]]:
    for index in pending:
        receiver, awaitable = results[index]
        try:
            coroutine, first = _start_in(context, awaitable)
        except StopIteration as stop:
            results[index] = (receiver, stop.value)
            continue
        (results[index],) = await _finish_one(context, receiver, coroutine, first, backend)
    return results


def awaiting_results(receivers: Sequence[Receiver], backend: Backend) -> Send:
    """+ an awaitable that a sync receiver returns is awaited, never dropped."""
    store = Store(receivers)

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        version, snapshot = store.any_cache
        if version is not store.version or (store.senders and sender is not None):
            snapshot = store.lookup(sender)
        if "signal" in named:
            _refuse_reserved(named)
        context = contextvars.copy_context()
        results, pending = context.run(_sync_awaiting, snapshot, sender, named)
        if not pending:
            return results
        return await _await_results(context, results, pending, backend)

    return send


# -- concurrent async receivers, in eager tasks (Python 3.12+) ---------------


def in_tasks(receivers: Sequence[Receiver], backend: Backend) -> Send:
    """+ each async receiver in an eagerly started task of its own, its result read from it.

    A task runs in a copy of the sender's context: isolation comes with it.
    A task that did not finish in its first step is waited for.
    """
    store = Store(receivers)

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        version, snapshot = store.any_cache
        if version is not store.version or (store.senders and sender is not None):
            snapshot = store.lookup(sender)
        if "signal" in named:
            _refuse_reserved(named)
        arguments_with_signal = {"signal": SIGNAL, "sender": sender, **named}
        loop = asyncio.get_running_loop()
        started: list[tuple[Receiver, asyncio.Task[Any]]] = []
        waiting = False
        for reference, takes_signal in snapshot:
            receiver = reference()
            if receiver is not None:
                call = receiver(
                    **(arguments_with_signal if takes_signal else {"sender": sender, **named})
                )
                task = asyncio.Task(call, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
                started.append((receiver, task))
                waiting = waiting or not task.done()
        if waiting:
            await asyncio.wait([task for _, task in started])
        return [(receiver, task.result()) for receiver, task in started]

    return send


class _Run:
    """The tasks of one concurrent send still running, and the future their end sets."""

    __slots__ = ("remaining", "waiter")

    def __init__(self) -> None:
        self.remaining = 0
        self.waiter: asyncio.Future[None] | None = None

    def ended(self, task: asyncio.Task[Any]) -> None:
        self.remaining -= 1
        waiter = self.waiter
        if not self.remaining and waiter is not None and not waiter.done():
            waiter.set_result(None)


def _failed(started: list[tuple[Receiver, asyncio.Task[Any]]]) -> bool:
    return any(
        task.done() and not task.cancelled() and task.exception() is not None for _, task in started
    )


async def _wait_for_all(run: _Run, started: list[tuple[Receiver, asyncio.Task[Any]]]) -> None:
    """Wait for the tasks still running.

    The first failure, or the caller's cancellation, cancels the rest, which
    are waited for before the send goes on; the cancellation propagates as
    itself.
    """
    loop = asyncio.get_running_loop()
    stop: BaseException | None = None
    try:
        while run.remaining and not _failed(started):
            run.waiter = loop.create_future()
            try:
                await run.waiter
            except asyncio.CancelledError as cancelled:
                stop = cancelled
                break
        if run.remaining:
            for _, task in started:
                task.cancel()
            while run.remaining:
                run.waiter = loop.create_future()
                try:
                    await run.waiter
                except asyncio.CancelledError as cancelled:
                    stop = stop or cancelled
        if stop is not None:
            raise stop
    finally:
        del stop


def ruled_tasks(receivers: Sequence[Receiver], backend: Backend) -> Send:
    """+ the rules of send for tasks: each outcome read from its task, fail fast, wait for all.

    An eager task that finished in its first step is read at once (no
    done-callback, which the event loop would run only later); one that
    failed stops the send before the next receiver starts.
    """
    store = Store(receivers)

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        version, snapshot = store.any_cache
        if version is not store.version or (store.senders and sender is not None):
            snapshot = store.lookup(sender)
        if "signal" in named:
            _refuse_reserved(named)
        arguments_with_signal = {"signal": SIGNAL, "sender": sender, **named}
        loop = asyncio.get_running_loop()
        started: list[tuple[Receiver, asyncio.Task[Any]]] = []
        run: _Run | None = None
        for reference, takes_signal in snapshot:
            receiver = reference()
            if receiver is None:
                continue
            call = receiver(
                **(arguments_with_signal if takes_signal else {"sender": sender, **named})
            )
            task = asyncio.Task(call, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
            started.append((receiver, task))
            if not task.done():
                if run is None:
                    run = _Run()
                run.remaining += 1
                task.add_done_callback(run.ended)
            elif not task.cancelled() and task.exception() is not None:
                break  # fail fast: no later receiver starts
        if run is not None:
            await _wait_for_all(run, started)
        errors = [
            (receiver, error)
            for receiver, task in started
            if not task.cancelled() and (error := task.exception()) is not None
        ]
        if errors:
            for receiver, error in errors:
                _annotate(error, receiver)
            if len(errors) == 1:
                raise errors[0][1]
            raise BaseExceptionGroup(
                f"receivers of signal {SIGNAL.name} failed", [error for _, error in errors]
            )
        return [(receiver, task.result()) for receiver, task in started]

    return send


# -- an instrument's observation of a send ----------------------------------

# Whether a send is a background one, as the instrument contract reports it.
_background = contextvars.ContextVar("costs.background", default=False)


class SendEvent:
    """The least an instrument's view of one send holds (as asyncsignals.SendEvent)."""

    __slots__ = ("background", "duration", "error", "payload", "results", "sender", "started")

    def __init__(self, sender: object, payload: dict[str, Any]) -> None:
        self.sender = sender
        self.payload = payload
        self.started = time.perf_counter()
        self.background = _background.get()
        self.duration: float | None = None
        self.results: list[tuple[Receiver, Any]] | None = None
        self.error: BaseException | None = None


def wrapped(plain: Send) -> Send:
    """The plain send inside one coroutine of the rung's own: what observing it sits in."""

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        results: list[tuple[Receiver, Any]] = await plain(sender, **named)
        return results

    return send


def observed(plain: Send) -> Send:
    """The plain send with a send event made before any receiver runs and ended after it."""

    async def send(sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        event = SendEvent(sender, named)
        try:
            results: list[tuple[Receiver, Any]] = await plain(sender, **named)
        except BaseException as error:
            event.duration = time.perf_counter() - event.started
            event.error = error
            raise
        event.duration = time.perf_counter() - event.started
        event.results = results
        return results

    return send
