"""The Signal: Django's signal API with structured, concurrent async dispatch."""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import reprlib
import threading
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from contextvars import copy_context
from types import FunctionType, MethodType
from typing import Any, Final, Generic, TypeAlias, cast, overload

import anyio
import anyio.to_thread
from typing_extensions import ParamSpec, TypeVar

from ._backends import Backend, CancelWatch, current_backend, running_event_loop, would_block
from ._connections import (
    ASYNC,
    INLINE,
    STRONG,
    THREAD,
    WEAK,
    WEAK_METHOD,
    Connection,
    ConnectionStore,
    InlineConnection,
    Snapshot,
    live_receiver,
)
from ._context import await_in_context
from ._hooks import UNTIMED, Observation, SendHook, everywhere, observe
from ._outcome import call_in_thread, close_unstarted, unboxed
from ._receivers import (
    WeakMethodRef,
    check_accepts,
    describe,
    inspect_receiver,
    is_async_callable,
    receiver_key,
    reference,
    signal_label,
)
from ._sync import run_on_a_loop

__all__ = ["Signal", "receiver"]

logger: Final = logging.getLogger("asyncsignals")

T = TypeVar("T")

# A signal's payload, as the parameters its receivers take, and what they return.
# Unparametrized (Signal()), any payload and any result: Django's untyped style.
P = ParamSpec("P", default=...)
R = TypeVar("R", default=Any)
# The same for functions generic in a signal's payload (Signal.declare, receiver).
DeclaredP = ParamSpec("DeclaredP")
DeclaredR = TypeVar("DeclaredR")

#: A receiver of a ``Signal[P, R]``: called with the payload, returns R or an awaitable of R.
Receiver: TypeAlias = Callable[P, Awaitable[R]] | Callable[P, R]

#: What a send returns: ``(receiver, result)`` in connection order.
Results: TypeAlias = list[tuple[Callable[..., Any], R]]


def hooks_of(signal: Signal[..., Any]) -> tuple[SendHook, ...]:
    """The hooks observing ``signal``'s sends."""
    return signal._hooks  # pyright: ignore[reportPrivateUsage] (the package's accessor)


def add_hook(signal: Signal[..., Any], hook: SendHook) -> None:
    """Observe ``signal``'s sends with ``hook`` (test helpers, instruments); thread-safe."""
    with signal._lock:  # pyright: ignore[reportPrivateUsage] (the package's accessor)
        signal._hooks = (*signal._hooks, hook)  # pyright: ignore[reportPrivateUsage]


def remove_hook(signal: Signal[..., Any], hook: SendHook) -> None:
    """Stop observing ``signal``'s sends with ``hook``; thread-safe."""
    with signal._lock:  # pyright: ignore[reportPrivateUsage] (the package's accessor)
        signal._hooks = tuple(each for each in signal._hooks if each is not hook)  # pyright: ignore[reportPrivateUsage]


def connections_of(signal: Signal[..., Any]) -> ConnectionStore:
    """The connection store of ``signal`` (for the package's test helpers)."""
    return signal._connections  # pyright: ignore[reportPrivateUsage] (the package's accessor)


def check_payload(signal: Signal[..., Any], payload: dict[str, Any]) -> None:
    """Raise TypeError for a payload ``signal`` cannot send (for sends made elsewhere)."""
    signal._check_payload(payload)  # pyright: ignore[reportPrivateUsage] (the package's accessor)


# Every signal alive, so that test helpers can save and restore them all.
_ALL_SIGNALS: weakref.WeakSet[Signal] = weakref.WeakSet()


def all_signals() -> list[Signal[..., Any]]:
    """Every signal alive now (for the package's test helpers and instruments)."""
    return list(_ALL_SIGNALS)


class Signal(Generic[P, R]):
    """A signal that receivers connect to and senders send, Django-style.

    ``Signal()`` takes any payload, as in Django. To have the type checker
    and the runtime agree on the payload, declare it once with
    :meth:`Signal.declare`; the result is a ``Signal[P, R]`` whose ``send``
    calls and receivers mypy and pyright check.

    Args:
        providing_args: The names of the keyword arguments every send provides.
            When given, ``send*`` raises ``TypeError`` for an unknown or missing
            name before any receiver runs, and ``connect`` refuses a receiver
            that cannot accept one of them.
        use_caching: Accepted for compatibility with Django; lookups are cached
            either way, and the cache never keeps a sender alive.
        name: Shown in ``repr``, error messages, exception notes and logs.
        timeout: Seconds each async receiver may run (a connection's own
            ``timeout`` overrides it); past it, the receiver is cancelled and
            fails with ``TimeoutError``. Sync receivers run inline and
            ``to_thread`` ones cannot be interrupted, so neither is timed.
        max_concurrency: At most this many async and ``to_thread`` receivers
            of this signal run at once, across all its sends (the rest wait
            their turn, on an anyio ``CapacityLimiter``).
        concurrent: True (the default) runs async receivers concurrently.
            False makes the signal a sequential hook: every receiver, sync or
            async, runs after the previous one has finished, in connection
            order, and the first failure in ``send`` stops the rest.

    Receivers are called with keyword arguments only:
    ``receiver(signal=<this signal>, sender=<sender>, **payload)``, where
    ``signal=`` is passed only to receivers whose signature accepts it.
    """

    # A dict, so that the public attribute has its docstring in help().
    __slots__ = {
        "__weakref__": None,
        "_concurrent": None,
        "_connections": None,
        "_hooks": None,
        "_limiter": None,
        "_limiters": None,
        "_lock": None,
        "_max_concurrency": None,
        "_providing_args": None,
        "_required_args": None,
        "_timeout": None,
        "name": (
            "The signal's name, shown in repr, error messages, exception notes and "
            "logs (None: the repr names it). May be changed."
        ),
    }

    def __init__(
        self,
        *,
        providing_args: Iterable[str] | None = None,
        use_caching: bool = False,
        name: str | None = None,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        concurrent: bool = True,
    ) -> None:
        if isinstance(providing_args, str):
            raise TypeError(
                f"providing_args must be a list of names, not the string {providing_args!r}"
            )
        if providing_args is not None:
            provided = frozenset(providing_args)
            for argument in provided:
                if not isinstance(argument, str) or not argument.isidentifier():  # pyright: ignore[reportUnnecessaryIsInstance] (checks what callers pass)
                    raise TypeError(
                        f"providing_args entry {argument!r} is not a valid argument name"
                    )
            reserved = provided & {"sender", "signal"}
            if reserved:
                raise TypeError(
                    f"providing_args cannot include {sorted(reserved)}: "
                    "'sender' and 'signal' are passed by the signal itself"
                )
            self._providing_args: frozenset[str] | None = provided
        else:
            self._providing_args = None
        # The names a send must provide; Signal.declare makes some optional.
        self._required_args = self._providing_args
        del use_caching  # lookups are always cached, see ConnectionStore.lookup
        self.name: str | None = name
        self._timeout = _check_timeout(timeout)
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)  # pyright: ignore[reportUnnecessaryIsInstance] (checks what callers pass)
            or max_concurrency < 1
        ):
            raise ValueError(
                f"max_concurrency must be a positive int or None, not {max_concurrency!r}"
            )
        if not isinstance(concurrent, bool):  # pyright: ignore[reportUnnecessaryIsInstance] (checks what callers pass)
            raise TypeError(f"concurrent must be True or False, not {concurrent!r}")
        self._max_concurrency = max_concurrency
        # The limiter of the loop that used it last, and one for every loop
        # that has sent (a limiter belongs to one event loop).
        self._limiter: tuple[object, anyio.CapacityLimiter] | None = None
        self._limiters: weakref.WeakKeyDictionary[object, anyio.CapacityLimiter] = (
            weakref.WeakKeyDictionary()
        )
        self._concurrent = concurrent
        self._lock = threading.Lock()
        self._connections = ConnectionStore()
        self._hooks: tuple[SendHook, ...] = everywhere()
        _ALL_SIGNALS.add(self)

    def __repr__(self) -> str:
        if self.name:
            return f"<Signal {self.name}>"
        return f"<Signal at {id(self):#x}>"

    @overload
    @staticmethod
    def declare(
        prototype: Callable[DeclaredP, DeclaredR],
        /,
        *,
        name: str | None = None,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        concurrent: bool = True,
    ) -> Signal[DeclaredP, DeclaredR]: ...

    @overload
    @staticmethod
    def declare(
        *,
        name: str | None = None,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        concurrent: bool = True,
    ) -> Callable[[Callable[DeclaredP, DeclaredR]], Signal[DeclaredP, DeclaredR]]: ...

    @staticmethod
    def declare(
        prototype: Callable[DeclaredP, DeclaredR] | None = None,
        /,
        *,
        name: str | None = None,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        concurrent: bool = True,
    ) -> (
        Signal[DeclaredP, DeclaredR]
        | Callable[[Callable[DeclaredP, DeclaredR]], Signal[DeclaredP, DeclaredR]]
    ):
        """A typed signal, declared by a function whose signature is the payload.

        Use it as a decorator on a function that is never called::

            @Signal.declare
            def order_shipped(*, sender: Shop, order: Order, tracking_number: str) -> str:
                raise NotImplementedError  # never called: the signature is the declaration

        (A body of ``...`` makes mypy report ``empty-body`` for a function
        that declares a return type; ``raise NotImplementedError`` satisfies
        both mypy and pyright.)

        The signal is named after the function. Its keyword parameters other
        than ``sender`` are the payload (those with a default may be left
        out of a send), and its return annotation is what receivers return.
        Type checkers then check every ``send`` (pass ``sender=`` by
        keyword), every receiver given to ``connect`` or ``@receiver``, and
        infer the results; at runtime the same names are enforced as with
        ``providing_args``. A ``**kwargs`` parameter leaves the payload open.

        The options are those of :class:`Signal` (``name`` defaults to the
        prototype's name); with options, use it as a decorator factory::

            @Signal.declare(timeout=2.0, concurrent=False)
            def checkout_step(*, sender: Cart, total: int) -> None:
                raise NotImplementedError

        Raises:
            TypeError: the prototype has no ``sender`` parameter, has a
                ``signal`` or positional-only parameter, or ``*args``.
            ValueError: an option is invalid, as for :class:`Signal`.
        """
        if prototype is None:
            return functools.partial(
                _declare,
                name=name,
                timeout=timeout,
                max_concurrency=max_concurrency,
                concurrent=concurrent,
            )
        return _declare(
            prototype,
            name=name,
            timeout=timeout,
            max_concurrency=max_concurrency,
            concurrent=concurrent,
        )

    @property
    def timeout(self) -> float | None:
        """Seconds each async receiver may run (a connection's own overrides it), or None.

        Fixed at construction.
        """
        return self._timeout

    @property
    def max_concurrency(self) -> int | None:
        """At most this many async and ``to_thread`` receivers run at once, per event loop.

        Fixed at construction; None means no limit.
        """
        return self._max_concurrency

    @property
    def concurrent(self) -> bool:
        """True: async receivers run concurrently; False: every receiver in turn.

        Fixed at construction.
        """
        return self._concurrent

    @property
    def providing_args(self) -> frozenset[str] | None:
        """The names every send provides, or None when the signal does not say."""
        return self._providing_args

    # -- connecting ---------------------------------------------------------

    def connect(
        self,
        receiver: Receiver[P, R],
        sender: object = None,
        weak: bool = True,
        dispatch_uid: Hashable | None = None,
        *,
        to_thread: bool = False,
        timeout: float | None = None,
    ) -> Receiver[P, R]:
        """Connect ``receiver`` to this signal and return it.

        Args:
            receiver: A sync or async callable, called with keyword arguments.
            sender: Only sends from this object (matched by identity) reach
                the receiver; None means every sender. The signal never keeps
                a weakly referenceable sender alive.
            weak: Hold the receiver by weak reference (a bound method by a weak
                reference to its object); it disappears from the signal when
                collected.
            dispatch_uid: Identifies the connection instead of the receiver.
                The same receiver, or the same ``dispatch_uid``, connects once
                per sender: a repeated connect is ignored.
            to_thread: Run this sync receiver in a worker thread, concurrently
                with the async receivers.
            timeout: Seconds this async receiver may run, instead of the
                signal's ``timeout``; past it the receiver is cancelled and
                fails with ``TimeoutError``, like any other failure.

        Raises:
            TypeError: ``receiver`` is not callable; cannot be weakly referenced
                and ``weak`` is true; cannot accept ``sender`` or a name in
                ``providing_args``; requires an argument the signal does not
                provide; is async and ``to_thread`` is true; or is given a
                ``timeout`` but is not async.
            ValueError: ``timeout`` is not a positive number.

        Thread-safe, and allowed from inside a receiver: a send already in
        flight keeps the receivers it started with.
        """
        if not callable(receiver):
            raise TypeError(f"receiver must be callable, got {receiver!r}")
        if _is_generator_function(receiver):
            raise TypeError(
                f"receiver {describe(receiver)} is a generator function: calling it only "
                "creates a generator, so its body would never run; make it a plain "
                "function or an async def that returns"
            )
        uid_key = None if dispatch_uid is None else _dispatch_uid_key(dispatch_uid)
        is_async = is_async_callable(receiver)
        if to_thread and is_async:
            raise TypeError(
                f"receiver {describe(receiver)} is async; to_thread=True is only for sync receivers"
            )
        if timeout is not None:
            if not is_async:
                raise TypeError(
                    f"receiver {describe(receiver)} is not async, so it cannot be timed out: "
                    "sync receivers run inline and threads cannot be interrupted"
                )
            timeout = _check_timeout(timeout)
        shape = inspect_receiver(receiver)
        check_accepts(receiver, shape, self._providing_args, self._required_args, self)
        takes_signal = shape is not None and shape.takes_signal
        kind = ASYNC if is_async else THREAD if to_thread else INLINE
        connections = self._connections
        target: Any = reference(receiver, connections.on_collected) if weak else receiver
        hold = STRONG if not weak else WEAK_METHOD if isinstance(target, WeakMethodRef) else WEAK
        key: Hashable
        if uid_key is not None:
            key = uid_key
        elif hold == WEAK and type(receiver) is FunctionType:
            key = target  # the weak reference is the key: see receiver_key
        else:
            key = receiver_key(receiver)

        connections.add(key, sender, target, hold, kind, takes_signal, timeout)
        return receiver

    def disconnect(
        self,
        receiver: Callable[..., Any] | None = None,
        sender: object = None,
        dispatch_uid: Hashable | None = None,
    ) -> bool:
        """Remove a connection; True when one was removed.

        Without ``sender`` this removes the any-sender connection only; with
        it, the connection made for that sender. A connection made with a
        ``dispatch_uid`` is removed by that ``dispatch_uid``.

        Raises:
            TypeError: neither ``receiver`` nor ``dispatch_uid`` is given.
        """
        if dispatch_uid is not None:
            key: Hashable = _dispatch_uid_key(dispatch_uid)
        elif receiver is not None:
            key = receiver_key(receiver)
        else:
            raise TypeError("disconnect() needs the receiver or the dispatch_uid to remove")
        return self._connections.remove(key, sender)

    def has_listeners(self, sender: object = None) -> bool:
        """True when a send from ``sender`` would reach at least one live receiver.

        ``sender=None`` asks about the receivers connected for any sender.
        """
        connections = self._connections.lookup(sender)[0]
        return any(live_receiver(c) is not None for c in connections)

    def receivers_for(self, sender: object) -> list[Callable[..., Any]]:
        """The live receivers a send from ``sender`` reaches, in connection order."""
        connections = self._connections.lookup(sender)[0]
        live = [live_receiver(c) for c in connections]
        return [receiver for receiver in live if receiver is not None]

    # -- sending ------------------------------------------------------------

    def _check_payload(self, named: dict[str, Any]) -> None:
        """Raise TypeError for a payload this signal cannot send, before any receiver runs."""
        provided = self._providing_args
        if provided is None:
            if "signal" in named:
                raise self._reserved_error()
        elif named.keys() != provided:
            if "signal" in named:
                raise self._reserved_error()
            unknown = sorted(named.keys() - provided)
            missing = sorted((self._required_args or provided) - named.keys())
            if not unknown and not missing:
                return  # only optional names left out
            problems: list[str] = []
            if unknown:
                problems.append(f"unknown argument(s) {unknown}")
            if missing:
                problems.append(f"missing argument(s) {missing}")
            raise TypeError(
                f"signal {signal_label(self)} was sent with {' and '.join(problems)}; "
                f"it provides {sorted(provided)}"
            )

    def _reserved_error(self) -> TypeError:
        return TypeError(
            f"'signal' is reserved: {signal_label(self)} passes itself as signal=; "
            "rename that payload argument"
        )

    async def send(self, *args: P.args, **kwargs: P.kwargs) -> Results[R]:
        """Call every live receiver for ``sender`` and return their results.

        Sync receivers run inline on the event loop's thread, in connection
        order; async receivers (and sync ones connected with
        ``to_thread=True``) run concurrently in one task group. The result is
        ``[(receiver, result), ...]`` in connection order.

        Fails fast: the first exception cancels every receiver still running
        and is raised as itself, with a note naming the receiver and the
        signal; several receivers failing at once raise an ``ExceptionGroup``.
        Nothing is left running when ``send`` returns or raises.

        Yields and cancellation: a send adds no checkpoint of its own. It
        yields where a receiver yields, and where it waits for receivers
        running in tasks or threads; a send whose receivers never suspend
        completes like a function call, even in a cancelled scope. Cancelling
        the caller cancels the running receivers (a ``to_thread`` one is
        waited for) and propagates as itself: a receiver that catches the
        cancellation and returns, or raises from its ``finally``, does not end
        it (that error becomes the cancellation's ``__context__``). Receivers'
        own cancel scopes, shields included, bind to the receiver.

        Raises:
            TypeError: the payload uses the reserved name ``signal``, or does
                not match ``providing_args``; raised before any receiver runs.
        """
        # The sender is usually the one positional argument: no call for that.
        sender = (
            args[0]
            if len(args) == 1 and "sender" not in kwargs
            else _pop_sender(args, kwargs, "send")
        )
        # The store's lookup and _check_payload, their common cases read here:
        # the cached lookup when no sender has receivers of its own, and no
        # call for an untyped payload that does not use the reserved name.
        # (The calls cost about 50 ns, 1.5% of a send to 10 sync receivers.)
        store = self._connections
        version, snapshot = store.any_cache
        if version is not store.version or (store.senders and sender is not None):
            snapshot = store.lookup(sender)
        if self._providing_args is not None or "signal" in kwargs:
            self._check_payload(kwargs)
        inline = snapshot[2]
        if inline is None or self._hooks:
            return await self._send(sender, kwargs, False, snapshot)
        if not inline:
            return []
        # Sync receivers only: run here, without a coroutine of their own.
        context = copy_context()
        results, pending = context.run(self._run_sync, inline, sender, kwargs, False)
        if pending:  # a sync receiver returned an awaitable
            await self._await_pending(sender, results, pending, context, False)
        return results

    async def send_robust(self, *args: P.args, **kwargs: P.kwargs) -> Results[R | Exception]:
        """Like :meth:`send`, but each receiver's ``Exception`` is its result.

        Every receiver runs to completion; each exception is returned in that
        receiver's slot and logged at ERROR on the ``asyncsignals`` logger with
        its traceback. Cancellation, ``KeyboardInterrupt`` and ``SystemExit``
        are never caught: they propagate as in :meth:`send`.
        """
        sender = (
            args[0]
            if len(args) == 1 and "sender" not in kwargs
            else _pop_sender(args, kwargs, "send_robust")
        )
        # As in send, with robust=True. Not one shared coroutine: awaiting it
        # would cost a send to 10 sync receivers about 4%.
        store = self._connections
        version, snapshot = store.any_cache
        if version is not store.version or (store.senders and sender is not None):
            snapshot = store.lookup(sender)
        if self._providing_args is not None or "signal" in kwargs:
            self._check_payload(kwargs)
        inline = snapshot[2]
        if inline is None or self._hooks:
            return await self._send(sender, kwargs, True, snapshot)
        if not inline:
            return []
        context = copy_context()
        results, pending = context.run(self._run_sync, inline, sender, kwargs, True)
        if pending:
            await self._await_pending(sender, results, pending, context, True)
        try:
            return results
        finally:
            del results  # see _report: no cycle through a kept exception

    async def _send(
        self,
        sender: object,
        named: dict[str, Any],
        robust: bool,
        snapshot: Snapshot,
        observed: bool = False,
    ) -> list[tuple[Callable[..., Any], Any]]:
        """A send whose payload is checked: ``snapshot`` is what it reaches.

        ``observed``: the hooks have seen this send, and ``snapshot`` is what
        they let run.
        """
        if self._hooks and not observed:
            return await self._send_observed(snapshot, sender, named, robust)
        connections, awaits, _ = snapshot
        if awaits and not self._concurrent:
            return await self._send_in_order(connections, sender, named, robust)
        if not connections:
            return []
        context = contextvars.copy_context()
        results, pending = context.run(self._run_inline, connections, sender, named, robust, False)
        if pending:
            await self._await_pending(sender, results, pending, context, robust)
        try:
            return results
        finally:
            del results  # see _report: no cycle through a kept exception

    async def _send_observed(
        self, snapshot: Snapshot, sender: object, named: dict[str, Any], robust: bool
    ) -> list[tuple[Callable[..., Any], Any]]:
        """A send with hooks installed: muting, skipped or wrapped receivers, reports."""
        observation = self._observe(snapshot, sender, named)
        observed = observation.snapshot
        try:
            results = (
                [] if observed is None else await self._send(sender, named, robust, observed, True)
            )
        except BaseException as error:
            observation.failed(error)
            raise
        try:
            return observation.finished(results)
        finally:
            del results  # see _report: no cycle through a kept exception

    def _observe(self, snapshot: Snapshot, sender: object, named: dict[str, Any]) -> Observation:
        """Ask the hooks about this send (see asyncsignals._hooks.observe)."""
        return observe(self, self._hooks, snapshot, sender, named, self._timeout_of, self._timed)

    async def _send_in_order(
        self,
        connections: Sequence[Connection],
        sender: object,
        named: dict[str, Any],
        robust: bool,
    ) -> list[tuple[Callable[..., Any], Any]]:
        """Run every receiver after the previous one, in connection order.

        The whole run is stepped in one copy of the sender's context, so each
        receiver is a plain call or await inside it.
        """
        backend = current_backend()
        watch = CancelWatch(backend)
        return await await_in_context(
            contextvars.copy_context(),
            self._run_in_order(connections, sender, named, robust, backend, watch),
            watch,
        )

    async def _run_in_order(
        self,
        connections: Sequence[Connection],
        sender: object,
        named: dict[str, Any],
        robust: bool,
        backend: Backend,
        watch: CancelWatch,
    ) -> list[tuple[Callable[..., Any], Any]]:
        arguments = {"sender": sender, **named}
        arguments_with_signal = {"signal": self, **arguments}
        limiter = self._current_limiter(backend)
        results: list[tuple[Callable[..., Any], Any]] = []
        value: Any = None
        try:
            for target, hold, kind, takes_signal, _, timeout in connections:
                receiver = target() if hold else target
                if receiver is None:
                    continue
                if hold == WEAK_METHOD:
                    receiver = MethodType(target.function, receiver)
                kwargs = arguments_with_signal if takes_signal else arguments
                try:
                    if kind == THREAD:
                        value = await self._guarded(
                            _run_in_thread(receiver, kwargs, backend), receiver, None, limiter
                        )
                    else:
                        value = receiver(**kwargs)
                        if kind == ASYNC or _is_awaitable(value):
                            value = await self._guarded(
                                value, receiver, self._timeout_of(timeout), limiter
                            )
                except Exception as exc:
                    if not await self._settle_failure(watch, exc, receiver, sender, robust):
                        raise
                    value = exc
                except BaseExceptionGroup as group:
                    await watch.raise_instead_of(group)
                    raise
                else:
                    # A receiver that absorbed the caller's cancellation ends the hook.
                    await watch.raise_if_caller_cancelled()
                results.append((receiver, value))
            return results
        finally:
            del results, value  # see _report: no cycle through a kept exception

    def _run_sync(
        self,
        inline: Sequence[InlineConnection],
        sender: object,
        named: dict[str, Any],
        robust: bool,
    ) -> tuple[list[tuple[Callable[..., Any], Any]], list[_Pending]]:
        """Run a send whose receivers are all sync, in connection order.

        :meth:`_run_inline` specialised for the most common send: no receiver
        to await or to hand to a thread. Runs inside the send's context copy.
        A receiver that returns an awaitable has it left pending, as there.
        The two loops repeat each other's handling of a sync receiver on
        purpose (a shared helper would cost a call per receiver); a change to
        one belongs in both.
        """
        arguments = {"sender": sender, **named}
        arguments_with_signal = {"signal": self, **arguments}
        results: list[tuple[Callable[..., Any], Any]] = []
        pending: list[_Pending] = []
        result: Any = None
        plain_results = _PLAIN_RESULTS
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
                try:
                    result = receiver(**(arguments_with_signal if takes_signal else arguments))
                except Exception as exc:
                    if not robust:
                        self._annotate(exc, receiver)
                        raise
                    result = self._report(exc, receiver, sender)
                else:
                    if (
                        result is not None
                        and type(result) not in plain_results
                        and inspect.isawaitable(result)
                    ):
                        pending.append(
                            (len(results), receiver, ASYNC, result, self._timeout_of(timeout))
                        )
                        result = None
                results.append((receiver, result))
            return results, pending
        except BaseException:
            _close_awaitables(pending)
            raise
        finally:
            del results, result  # see _report: no cycle through a kept exception

    def _run_inline(
        self,
        connections: Sequence[Connection],
        sender: object,
        named: dict[str, Any],
        robust: bool,
        in_thread: bool,
    ) -> tuple[list[tuple[Callable[..., Any], Any]], list[_Pending]]:
        """Run the inline receivers in connection order; collect the rest.

        Runs inside the send's context copy. Async receivers are called here
        (creating their coroutines) and left pending with ``to_thread`` ones;
        ``in_thread`` (the sync entry points) runs ``to_thread`` receivers
        inline too, in the calling thread.
        """
        arguments = {"sender": sender, **named}
        arguments_with_signal: dict[str, Any] | None = None
        results: list[tuple[Callable[..., Any], Any]] = []
        pending: list[_Pending] = []
        result: Any = None
        # This loop is the cost of every send: constants are read from locals,
        # and the awaitable check runs only for results that could be one.
        plain_results = _PLAIN_RESULTS
        async_kind, thread_kind, weak_method = ASYNC, THREAD, WEAK_METHOD
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
                    kwargs = arguments_with_signal = {"signal": self, **arguments}
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
                        self._annotate(exc, receiver)
                        raise
                    result = self._report(exc, receiver, sender)
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
                                # _timeout_of, without a call per receiver
                                self._timeout if timeout is None else timeout,
                            )
                        )
                        result = None
                results.append((receiver, result))
            return results, pending
        except BaseException:
            _close_awaitables(pending)
            raise
        finally:
            del results, result  # see _report: no cycle through a kept exception

    async def _await_pending(
        self,
        sender: object,
        results: list[tuple[Callable[..., Any], Any]],
        pending: list[_Pending],
        context: contextvars.Context,
        robust: bool,
    ) -> None:
        backend = current_backend()
        limiter = self._current_limiter(backend)
        if len(pending) == 1 and pending[0][2] == ASYNC:
            # One async receiver needs no task: it is awaited in this task,
            # each step run in the send's context copy.
            index, receiver, _, awaitable, timeout = pending[0]
            watch = CancelWatch(backend)
            try:
                value = await await_in_context(
                    context, self._guarded(awaitable, receiver, timeout, limiter), watch
                )
            except Exception as exc:
                if not await self._settle_failure(watch, exc, receiver, sender, robust):
                    raise
                value = exc
            except BaseExceptionGroup as group:
                await watch.raise_instead_of(group)
                raise
            else:
                # ... and over a value returned after absorbing it.
                await watch.raise_if_caller_cancelled()
            results[index] = (receiver, value)
            del value  # see _report: no cycle through a kept exception
        else:
            await self._await_concurrently(sender, results, pending, robust, backend, limiter)
        del results  # (from Python 3.12 the frames of tasks started eagerly link here)

    async def _await_concurrently(
        self,
        sender: object,
        results: list[tuple[Callable[..., Any], Any]],
        pending: list[_Pending],
        robust: bool,
        backend: Backend,
        limiter: anyio.CapacityLimiter | None,
    ) -> None:
        awaitables = [
            call
            if kind == ASYNC and timeout is None and limiter is None
            else self._guarded(
                _run_in_thread(receiver, call, backend) if kind == THREAD else call,
                receiver,
                timeout,
                limiter,
            )
            for _, receiver, kind, call, timeout in pending
        ]
        values, errors = await backend.run_tasks(
            awaitables,
            (lambda position, error: self._report(error, pending[position][1], sender))
            if robust
            else None,
            lambda position, error: self._report(
                error, pending[position][1], sender, superseded=True
            ),
        )
        try:
            if errors:
                if not robust:
                    self._annotate_each(errors, pending)
                raise _combine([error for _, error in errors], signal_label(self))
            _fill_in(results, pending, values)
        finally:
            del results, values, errors  # see _report: no cycle through an exception

    async def _settle_failure(
        self,
        watch: CancelWatch,
        exc: Exception,
        receiver: object,
        sender: object,
        robust: bool,
    ) -> bool:
        """A receiver awaited in the sender's task raised ``exc``: what becomes of it.

        The caller's cancellation, if it stands, is raised instead (in send,
        ``exc`` is then logged, never lost). Otherwise send gets False, to
        raise ``exc`` itself (annotated, traceback intact), and send_robust
        True, to return it (reported).
        """
        try:
            if robust:
                self._report(exc, receiver, sender)
                await watch.raise_if_caller_cancelled()
                return True
            try:
                await watch.raise_if_caller_cancelled()
            except BaseException:
                self._report(exc, receiver, sender, superseded=True)
                raise
            self._annotate(exc, receiver)
            return False
        finally:
            del exc  # see _report: no cycle through a kept exception

    def _timed(self, receiver: Callable[..., Any], timeout: float) -> Callable[..., Any]:
        """``receiver`` with its timeout applied to each call, for one observed send."""

        async def timed(**kwargs: Any) -> Any:
            return await self._guarded(receiver(**kwargs), receiver, timeout, None)

        timed.__dict__["__asyncsignals_receiver__"] = receiver
        return timed

    def _timeout_of(self, own_timeout: float | None) -> float | None:
        return own_timeout if own_timeout is not None else self._timeout

    def _guarded(
        self,
        awaitable: Awaitable[T],
        receiver: object,
        timeout: float | None,
        limiter: anyio.CapacityLimiter | None,
    ) -> Awaitable[T]:
        """``awaitable`` under the receiver's timeout and the signal's concurrency limit."""
        if timeout is UNTIMED:
            timeout = None
        if timeout is None and limiter is None:
            return awaitable
        return _limited_and_timed(
            awaitable,
            timeout,
            limiter,
            lambda: (
                f"receiver {describe(receiver)} of signal {signal_label(self)} "
                f"did not finish within {timeout:g} s"
            ),
        )

    def _current_limiter(self, backend: Backend) -> anyio.CapacityLimiter | None:
        """The concurrency limiter for the running event loop, made on first use.

        A limiter belongs to one event loop, so a signal used from several
        (threads with loops of their own, temporary loops of send_sync)
        gets one for each loop: the limit holds on each loop, for every loop
        that sends at once.
        """
        if self._max_concurrency is None:
            return None
        loop = backend.loop_token()
        current = self._limiter
        if current is None or current[0] is not loop:
            with self._lock:
                limiter = self._limiters.get(loop)
                if limiter is None:
                    limiter = self._limiters[loop] = anyio.CapacityLimiter(self._max_concurrency)
            current = self._limiter = (loop, limiter)
        return current[1]

    def _annotate(self, exc: BaseException, receiver: object) -> None:
        """Add a note naming the receiver and the signal, if the exception takes one.

        An exception that refuses it (a frozen dataclass, ``__notes__`` that
        is not a list) is raised as it is: the note is never worth replacing
        the receiver's own error.
        """
        note = f"raised by receiver {describe(receiver)} of signal {signal_label(self)}"
        try:
            if note not in getattr(exc, "__notes__", ()):
                exc.add_note(note)
        except Exception:
            pass

    def _annotate_each(
        self, errors: list[tuple[int, BaseException]], pending: list[_Pending]
    ) -> None:
        for position, error in errors:
            self._annotate(error, pending[position][1])

    def _report(
        self, exc: Exception, receiver: object, sender: object, superseded: bool = False
    ) -> Exception:
        """Log a receiver's exception for send_robust, which returns it as the result.

        ``superseded``: the caller's cancellation propagates instead of this
        exception (in ``send`` too), so the log is where it is seen.

        The frame that caught it is in its traceback, so that frame must not
        keep it, or the results that hold it, once the send is done: callers
        ``del`` those locals. Otherwise the exception and the frame form a
        reference cycle that keeps the receiver and the sender alive until
        the garbage collector's next pass, after the caller has let go.
        """
        logger.error(
            "receiver %s of signal %s raised %s (sender: %s)%s",
            describe(receiver),
            signal_label(self),
            type(exc).__name__,
            reprlib.repr(sender),
            "; the caller's cancellation propagates instead" if superseded else "",
            exc_info=exc,
        )
        return exc

    # -- sending from synchronous code --------------------------------------

    def send_sync(self, *args: P.args, **kwargs: P.kwargs) -> Results[R]:
        """:meth:`send` for synchronous code.

        From an anyio worker thread (a FastAPI sync endpoint), async receivers
        run on that thread's event loop; from a thread with no event loop, on
        a temporary one. On an event loop's own thread it works while only
        sync receivers are connected and raises ``RuntimeError`` when an
        async receiver would have to run. Sync receivers, including
        ``to_thread`` ones, run in the calling thread.
        """
        return self._send_sync(_pop_sender(args, kwargs, "send_sync"), kwargs, robust=False)

    def send_robust_sync(self, *args: P.args, **kwargs: P.kwargs) -> Results[R | Exception]:
        """:meth:`send_robust` for synchronous code; see :meth:`send_sync`."""
        return self._send_sync(_pop_sender(args, kwargs, "send_robust_sync"), kwargs, robust=True)

    def _send_sync(
        self,
        sender: object,
        named: dict[str, Any],
        robust: bool,
        snapshot: Snapshot | None = None,
    ) -> list[tuple[Callable[..., Any], Any]]:
        if snapshot is None:
            snapshot = self._connections.lookup(sender)
            self._check_payload(named)
            if self._hooks:
                observation = self._observe(snapshot, sender, named)
                observed = observation.snapshot
                try:
                    results = (
                        [] if observed is None else self._send_sync(sender, named, robust, observed)
                    )
                except BaseException as error:
                    observation.failed(error)
                    raise
                try:
                    return observation.finished(results)
                finally:
                    del results  # see _report: no cycle through a kept exception
        connections, awaits, _ = snapshot
        if not connections:
            return []
        on_loop_thread = running_event_loop()
        if on_loop_thread and awaits:
            asynchronous = [
                describe(receiver)
                for connection in connections
                if connection[2] == ASYNC and (receiver := live_receiver(connection)) is not None
            ]
            if asynchronous:
                names = ", ".join(asynchronous)
                raise RuntimeError(
                    f"{signal_label(self)} has async receivers ({names}) that send_sync cannot "
                    "run on the event loop's own thread; use 'await signal.send(...)'"
                )
        if awaits and not self._concurrent and not on_loop_thread:
            return contextvars.copy_context().run(
                self._run_sync_in_order, connections, sender, named, robust
            )
        context = contextvars.copy_context()
        results, pending = context.run(self._run_inline, connections, sender, named, robust, True)
        try:
            if pending:
                if on_loop_thread:
                    _close_awaitables(pending)
                    raise RuntimeError(
                        f"receiver {describe(pending[0][1])} of {signal_label(self)} returned an "
                        "awaitable, which send_sync cannot await on the event loop's own "
                        "thread; use 'await signal.send(...)'"
                    )
                run_on_a_loop(
                    functools.partial(
                        self._await_pending, sender, results, pending, context, robust
                    ),
                    [call for _, _, kind, call, _ in pending if kind == ASYNC],
                )
            return results
        finally:
            del results  # see _report: no cycle through a kept exception

    def _run_sync_in_order(
        self,
        connections: Sequence[Connection],
        sender: object,
        named: dict[str, Any],
        robust: bool,
    ) -> list[tuple[Callable[..., Any], Any]]:
        """send_sync of a sequential signal, off the event loop's thread: each receiver in turn.

        Sync receivers, ``to_thread`` ones included, are called in this
        thread; each async receiver is awaited on the thread's event loop
        (or a temporary one) before the next receiver starts. Runs in the
        send's context copy.
        """
        arguments = {"sender": sender, **named}
        arguments_with_signal = {"signal": self, **arguments}
        results: list[tuple[Callable[..., Any], Any]] = []
        value: Any = None
        try:
            for connection in connections:
                receiver = live_receiver(connection)
                if receiver is None:
                    continue
                kind, takes_signal, timeout = connection[2], connection[3], connection[5]
                try:
                    value = receiver(**(arguments_with_signal if takes_signal else arguments))
                    if kind == ASYNC or _is_awaitable(value):
                        value = run_on_a_loop(
                            functools.partial(
                                self._await_one, value, receiver, self._timeout_of(timeout)
                            ),
                            [value],
                        )
                except Exception as exc:
                    if not robust:
                        self._annotate(exc, receiver)
                        raise
                    value = self._report(exc, receiver, sender)
                results.append((receiver, value))
            return results
        finally:
            del results, value  # see _report: no cycle through a kept exception

    async def _await_one(
        self, awaitable: Awaitable[Any], receiver: object, time_limit: float | None
    ) -> Any:
        """Await one receiver's awaitable under its time limit and the signal's limit."""
        limiter = self._current_limiter(current_backend())
        return await self._guarded(awaitable, receiver, time_limit, limiter)


def _declare(
    prototype: Callable[DeclaredP, DeclaredR],
    *,
    name: str | None,
    timeout: float | None,
    max_concurrency: int | None,
    concurrent: bool,
) -> Signal[DeclaredP, DeclaredR]:
    """Signal.declare with its options: read the prototype, make the signal."""
    names: list[str] = []
    required: list[str] = []
    open_payload = False
    has_sender = False
    for parameter in inspect.signature(prototype).parameters.values():
        kind = parameter.kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            open_payload = True
        elif kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            what = (
                f"*{parameter.name}"
                if kind is inspect.Parameter.VAR_POSITIONAL
                else f"the positional-only parameter {parameter.name!r}"
            )
            raise TypeError(
                f"signal prototype {describe(prototype)} cannot have {what}: "
                "receivers are called with keyword arguments only"
            )
        elif parameter.name == "sender":
            has_sender = True
        elif parameter.name == "signal":
            raise TypeError(
                f"signal prototype {describe(prototype)} cannot have a 'signal' "
                "parameter: the signal passes itself to receivers that take one"
            )
        else:
            names.append(parameter.name)
            if parameter.default is inspect.Parameter.empty:
                required.append(parameter.name)
    if not has_sender:
        raise TypeError(
            f"signal prototype {describe(prototype)} needs a 'sender' parameter "
            "(keyword-only is best: def prototype(*, sender: ..., ...))"
        )
    signal: Signal[Any, Any] = Signal(
        providing_args=None if open_payload else names,
        name=getattr(prototype, "__name__", None) if name is None else name,
        timeout=timeout,
        max_concurrency=max_concurrency,
        concurrent=concurrent,
    )
    if not open_payload:
        signal._required_args = frozenset(required)  # pyright: ignore[reportPrivateUsage] (Signal's own)
    return cast("Signal[DeclaredP, DeclaredR]", signal)


def _pop_sender(args: tuple[object, ...], kwargs: dict[str, Any], method: str) -> object:
    """The sender of a send, given as its one positional argument or as ``sender=``."""
    if len(args) == 1 and "sender" not in kwargs:
        return args[0]
    if not args:
        try:
            return kwargs.pop("sender")
        except KeyError:
            raise TypeError(
                f"{method}() missing the sender: pass sender=... (None for any)"
            ) from None
    raise TypeError(
        f"{method}() takes the sender and keyword arguments only, got {len(args)} "
        "positional argument(s)" + (" and sender=" if "sender" in kwargs else "")
    )


# (result index, receiver, ASYNC or THREAD, its awaitable or its kwargs, timeout)
_Pending = tuple[int, Any, int, Any, float | None]

# Result types that are never awaitable: skips the awaitable check for them.
_PLAIN_RESULTS: Final = frozenset({bool, int, float, str, bytes, tuple, list, dict, set})


def _dispatch_uid_key(dispatch_uid: Hashable) -> Hashable:
    """The key a connection made with ``dispatch_uid`` is stored under.

    Raises:
        TypeError: ``dispatch_uid`` is not hashable (raised before anything is stored).
    """
    try:
        hash(dispatch_uid)
    except TypeError:
        raise TypeError(
            f"dispatch_uid must be hashable, got {type(dispatch_uid).__name__} {dispatch_uid!r}"
        ) from None
    return ("dispatch_uid", dispatch_uid)


def _is_generator_function(receiver: object) -> bool:
    """A (sync or async) generator function, a bound method or partial of one, or an
    object whose ``__call__`` is one."""
    if inspect.isgeneratorfunction(receiver) or inspect.isasyncgenfunction(receiver):
        return True
    if inspect.isfunction(receiver) or inspect.ismethod(receiver):
        return False
    call = getattr(type(receiver), "__call__", None)  # noqa: B004 (the class's, not a callable check)
    return inspect.isgeneratorfunction(call) or inspect.isasyncgenfunction(call)


def _is_awaitable(result: object) -> bool:
    """Whether a sync receiver returned something to await."""
    return result is not None and type(result) not in _PLAIN_RESULTS and inspect.isawaitable(result)


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)  # pyright: ignore[reportUnnecessaryIsInstance] (checks what callers pass)
        or not timeout > 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds or None, not {timeout!r}")
    return timeout


class _Slot:
    """One receiver's slot of a limiter, while the receiver runs."""

    __slots__ = ("held", "limiter")

    def __init__(self, limiter: anyio.CapacityLimiter) -> None:
        self.limiter = limiter
        self.held = True


# The slots held by the receivers whose code is running: a nested send from
# inside a receiver runs in its parent's slot instead of waiting for one the
# parent would never give back. A task the receiver started inherits this,
# but once the receiver has ended its slot is no longer held, and that
# task's sends wait their turn as any other.
_held_slots: contextvars.ContextVar[tuple[_Slot, ...]] = contextvars.ContextVar(
    "asyncsignals_held_slots", default=()
)


async def _limited_and_timed(
    awaitable: Awaitable[T],
    time_limit: float | None,
    limiter: anyio.CapacityLimiter | None,
    describe_failure: Callable[[], str],
) -> T:
    borrower = object()  # unique: a nested send in the same task borrows again
    slot = None
    token = None
    if limiter is not None:
        held = _held_slots.get()
        if not any(each.held and each.limiter is limiter for each in held):
            try:
                # A free slot is taken without yielding: the send adds no
                # checkpoint of its own, it waits only for a slot.
                limiter.acquire_on_behalf_of_nowait(borrower)
            except would_block():
                try:
                    await limiter.acquire_on_behalf_of(borrower)
                except BaseException:
                    close_unstarted(awaitable)
                    raise
            # Runs in the receiver's own context (its task's, or the send's
            # copy): what it sets reaches the receiver's code, never the sender.
            slot = _Slot(limiter)
            token = _held_slots.set((*held, slot))
        # else a nested send: its parent's slot is this receiver's
    try:
        if time_limit is None:
            return await awaitable
        with anyio.move_on_after(time_limit):
            return await awaitable
        raise TimeoutError(describe_failure())
    finally:
        if slot is not None:
            slot.held = False
            slot.limiter.release_on_behalf_of(borrower)
        if token is not None:
            _held_slots.reset(token)


async def _run_in_thread(
    receiver: Callable[..., Any], kwargs: dict[str, Any], backend: Backend
) -> Any:
    """Run a ``to_thread`` receiver in a worker thread; a cancel waits for it to return."""
    in_thread = _thread_outcome([receiver, kwargs])
    del receiver, kwargs
    # anyio shields the thread from its own cancel scopes, but a bare asyncio
    # task.cancel() would still return early, and on trio a deadline that
    # passed meanwhile would go unnoticed: the backend waits it out.
    result = await backend.wait_uninterruptibly(in_thread)
    if _is_awaitable(result):
        result = await result
    return result


async def _thread_outcome(call: list[Any]) -> Any:
    """What the receiver in ``call`` returned in a worker thread, or its exception raised."""
    await anyio.to_thread.run_sync(call_in_thread, call)
    return unboxed(call.pop())


def _fill_in(
    results: list[tuple[Callable[..., Any], Any]], pending: list[_Pending], values: list[Any]
) -> None:
    """Put each pending receiver's value in its slot of ``results``."""
    for (index, receiver, _, _, _), value in zip(pending, values, strict=True):
        results[index] = (receiver, value)


def _close_awaitables(pending: list[_Pending]) -> None:
    """Close the coroutines of receivers that will not run, so none is left un-awaited."""
    for _, _, kind, call, _ in pending:
        if kind == ASYNC:
            close_unstarted(call)


def _combine(errors: list[BaseException], label: str) -> BaseException:
    """One error as itself; several as a group naming the signal."""
    if len(errors) == 1:
        return errors[0]
    message = f"{len(errors)} receivers of signal {label} failed"
    exceptions = [error for error in errors if isinstance(error, Exception)]
    if len(exceptions) == len(errors):
        return ExceptionGroup(message, exceptions)
    return BaseExceptionGroup(message, errors)


def receiver(
    signal: Signal[DeclaredP, DeclaredR] | Iterable[Signal[DeclaredP, DeclaredR]],
    **connect_kwargs: Any,
) -> Callable[[Receiver[DeclaredP, DeclaredR]], Receiver[DeclaredP, DeclaredR]]:
    """Decorator: connect the function to ``signal`` (or to each of a list).

    ``connect_kwargs`` are passed to :meth:`Signal.connect`; the function is
    returned unchanged. For a declared signal the type checker checks the
    function against the signal's payload.
    """
    signals = [signal] if isinstance(signal, Signal) else list(signal)
    if not signals:
        raise TypeError("receiver() needs at least one signal to connect to, got none")
    for each in signals:
        if not isinstance(each, Signal):  # pyright: ignore[reportUnnecessaryIsInstance] (checks what callers pass)
            raise TypeError(f"receiver() expects a Signal or a list of them, got {each!r}")

    def decorator(function: Receiver[DeclaredP, DeclaredR]) -> Receiver[DeclaredP, DeclaredR]:
        for each in signals:
            each.connect(function, **connect_kwargs)
        return function

    return decorator


# Public names show their public path in reprs and tracebacks.
Signal.__module__ = "asyncsignals"
receiver.__module__ = "asyncsignals"
