"""The Signal: Django's signal API with structured, concurrent async dispatch."""

from __future__ import annotations

import contextvars
import functools
import threading
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterable
from contextvars import copy_context
from typing import Any, Generic, cast, overload

from typing_extensions import ParamSpec, TypeAliasType, TypeVar

from ._connections import ConnectionStore, Snapshot
from ._hooks import SendHook, everywhere, observe, send_observed
from ._limits import Limits, check_timeout
from ._payload import (
    check_names,
    payload_names,
    pop_sender,
    read_prototype,
    reserved_name_error,
)
from ._receivers import (
    Receiver,
    check_accepts,
    dispatch_uid_key,
    inspect_receiver,
    receiver_key,
    receiver_kind,
    refuse_generator,
    stored_as,
)
from ._run import (
    run_in_order,
    run_inline,
    run_solo,
    run_sync_only,
    start_pending,
)
from ._sync import send_from_sync

__all__ = ["Results", "Signal"]

# A signal's payload, as the parameters its receivers take, and what they return.
# Unparametrized (Signal()), any payload and any result: Django's untyped style.
P = ParamSpec("P", default=...)
R = TypeVar("R", default=Any)
# The same for functions generic in a signal's payload (Signal.declare).
DeclaredP = ParamSpec("DeclaredP")
DeclaredR = TypeVar("DeclaredR")

#: What a send returns: ``(receiver, result)`` in connection order.
Results = TypeAliasType("Results", list[tuple[Callable[..., Any], R]], type_params=(R,))


def hooks_of(signal: Signal[..., Any]) -> tuple[SendHook, ...]:
    """The hooks observing ``signal``'s sends."""
    return signal._hooks  # pyright: ignore[reportPrivateUsage] (the package's accessor)


def add_hook(signal: Signal[..., Any], hook: SendHook) -> None:
    """Observe ``signal``'s sends with ``hook`` (test helpers, instruments); thread-safe."""
    with signal._lock:  # pyright: ignore[reportPrivateUsage] (the package's accessor)
        signal._set_hooks((*signal._hooks, hook))  # pyright: ignore[reportPrivateUsage]


def remove_hook(signal: Signal[..., Any], hook: SendHook) -> None:
    """Stop observing ``signal``'s sends with ``hook``; thread-safe."""
    with signal._lock:  # pyright: ignore[reportPrivateUsage] (the package's accessor)
        signal._set_hooks(tuple(each for each in signal._hooks if each is not hook))  # pyright: ignore[reportPrivateUsage]


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
        "_direct": None,
        "_hooks": None,
        "_limits": None,
        "_lock": None,
        "_providing_args": None,
        "_required_args": None,
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
        self._providing_args = payload_names(providing_args)
        # The names a send must provide; Signal.declare makes some optional.
        self._required_args = self._providing_args
        del use_caching  # lookups are always cached, see ConnectionStore.lookup
        self.name: str | None = name
        self._limits = Limits(timeout, max_concurrency)
        if not isinstance(concurrent, bool):  # pyright: ignore[reportUnnecessaryIsInstance] (checks what callers pass)
            raise TypeError(f"concurrent must be True or False, not {concurrent!r}")
        self._concurrent = concurrent
        self._lock = threading.Lock()
        self._connections = ConnectionStore()
        self._set_hooks(everywhere())
        _ALL_SIGNALS.add(self)

    def _set_hooks(self, hooks: tuple[SendHook, ...]) -> None:
        self._hooks = hooks
        # A lone async receiver is run by send itself when nothing is put on it.
        self._direct = not hooks and self._limits.unlimited

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
        ``providing_args``. A ``**kwargs: Any`` parameter leaves the payload open.

        The options are those of :class:`Signal` (``name`` defaults to the
        prototype's name); with options, use it as a decorator factory::

            @Signal.declare(timeout=2.0, concurrent=False)
            def checkout_step(*, sender: Cart, total: int) -> None:
                raise NotImplementedError

        A ``**payload: Unpack[SomeTypedDict]`` parameter declares the
        TypedDict's keys as the payload (its ``NotRequired`` keys may be left
        out), and the runtime enforces them too.

        Raises:
            TypeError: the prototype is not a function (a callable object,
                a ``functools.partial``, a class); is ``async def``; has no ``sender``
                parameter; has a payload parameter that is not keyword-only
                (only ``sender`` may be an ordinary parameter); has a
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
        return self._limits.timeout

    @property
    def max_concurrency(self) -> int | None:
        """At most this many async and ``to_thread`` receivers run at once, per event loop.

        Fixed at construction; None means no limit.
        """
        return self._limits.max_concurrency

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
    ) -> Callable[..., Any]:
        """Connect ``receiver`` to this signal and return it.

        The type checker checks ``receiver`` against the signal's payload and
        result. It is returned as it was given (typed ``Callable[..., Any]``:
        one signature cannot give back both kinds of receiver, sync and
        async, as themselves; ``@receiver`` does).

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
        refuse_generator(receiver)
        uid_key = None if dispatch_uid is None else dispatch_uid_key(dispatch_uid)
        kind = receiver_kind(receiver, to_thread, timeout is not None)
        timeout = check_timeout(timeout)
        shape = inspect_receiver(receiver)
        check_accepts(receiver, shape, self._providing_args, self._required_args, self)
        takes_signal = shape is not None and shape.takes_signal
        connections = self._connections
        key, target, hold = stored_as(receiver, weak, uid_key, connections.on_collected)
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
            key: Hashable = dispatch_uid_key(dispatch_uid)
        elif receiver is not None:
            key = receiver_key(receiver)
        else:
            raise TypeError("disconnect() needs the receiver or the dispatch_uid to remove")
        return self._connections.remove(key, sender)

    def has_listeners(self, sender: object = None) -> bool:
        """True when a send from ``sender`` would reach at least one live receiver.

        ``sender=None`` asks about the receivers connected for any sender.
        """
        return self._connections.has_live_receiver(sender)

    def receivers_for(self, sender: object) -> list[Callable[..., Any]]:
        """The live receivers a send from ``sender`` reaches, in connection order."""
        return self._connections.live_receivers(sender)

    # -- sending ------------------------------------------------------------

    def _check_payload(self, named: dict[str, Any]) -> None:
        """Raise TypeError for a payload this signal cannot send, before any receiver runs."""
        provided = self._providing_args
        if provided is None:
            if "signal" in named:
                raise reserved_name_error(self)
        elif named.keys() != provided:
            check_names(self, provided, self._required_args, named)

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
        running in tasks or threads (several concurrent async receivers run
        in tasks: waiting for them is one even if none suspends); otherwise a
        send whose receivers never suspend completes like a function call,
        even in a cancelled scope. Cancelling
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
            else pop_sender(args, kwargs, "send")
        )
        # The store's lookup and _check_payload, their common cases read here
        # (the calls cost 1.5% of a send to 10 sync receivers): the cached
        # lookup when no sender has receivers of its own, and no call for an
        # untyped payload that does not use the reserved name.
        store = self._connections
        version, snapshot = store.any_cache
        if version is not store.version or (store.senders and sender is not None):
            snapshot = store.lookup(sender)
        if self._providing_args is not None or "signal" in kwargs:
            self._check_payload(kwargs)
        _, _, inline, solo = snapshot
        # Each path gives a list when no receiver suspended, else an awaitable
        # of one; the most common send, to one async receiver, first.
        if solo is not None and self._direct:
            outcome = run_solo(self, solo, sender, kwargs, False)
        elif inline is None and not self._concurrent and not self._hooks:
            outcome = run_in_order(self, self._limits, snapshot[0], sender, kwargs, False)
        elif inline is None or self._hooks:
            outcome = _start(self, self._hooks, sender, kwargs, False, snapshot)
        elif not inline:
            return []
        else:  # sync receivers only: run here, without a call of their own
            context = copy_context()
            limits = self._limits
            outcome, pending = context.run(
                run_sync_only, self, limits, inline, sender, kwargs, False
            )
            if not pending:
                return outcome
            # A sync receiver returned an awaitable.
            outcome = start_pending(self, limits, sender, outcome, pending, context, False)
        return outcome if isinstance(outcome, list) else await outcome

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
            else pop_sender(args, kwargs, "send_robust")
        )
        # As in send, with robust=True. Not one shared coroutine: awaiting it
        # would cost a send to 10 sync receivers about 4%.
        store = self._connections
        version, snapshot = store.any_cache
        if version is not store.version or (store.senders and sender is not None):
            snapshot = store.lookup(sender)
        if self._providing_args is not None or "signal" in kwargs:
            self._check_payload(kwargs)
        _, _, inline, solo = snapshot
        if solo is not None and self._direct:
            outcome = run_solo(self, solo, sender, kwargs, True)
        elif inline is None and not self._concurrent and not self._hooks:
            outcome = run_in_order(self, self._limits, snapshot[0], sender, kwargs, True)
        elif inline is None or self._hooks:
            outcome = _start(self, self._hooks, sender, kwargs, True, snapshot)
        elif not inline:
            return []
        else:
            context = copy_context()
            limits = self._limits
            outcome, pending = context.run(
                run_sync_only, self, limits, inline, sender, kwargs, True
            )
            if pending:
                outcome = start_pending(self, limits, sender, outcome, pending, context, True)
        try:
            return outcome if isinstance(outcome, list) else await outcome
        finally:
            del outcome  # see asyncsignals._failures.report: no cycle through a kept exception

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
        return self._send_sync(pop_sender(args, kwargs, "send_sync"), kwargs, robust=False)

    def send_robust_sync(self, *args: P.args, **kwargs: P.kwargs) -> Results[R | Exception]:
        """:meth:`send_robust` for synchronous code; see :meth:`send_sync`."""
        return self._send_sync(pop_sender(args, kwargs, "send_robust_sync"), kwargs, robust=True)

    def _send_sync(
        self, sender: object, named: dict[str, Any], robust: bool
    ) -> list[tuple[Callable[..., Any], Any]]:
        snapshot = self._connections.lookup(sender)
        self._check_payload(named)
        limits, concurrent = self._limits, self._concurrent
        if not self._hooks:
            return send_from_sync(self, limits, concurrent, snapshot, sender, named, robust)
        send = functools.partial(
            send_from_sync, self, limits, concurrent, sender=sender, named=named, robust=robust
        )
        return send_observed(self, self._hooks, snapshot, sender, named, limits, send)


def _start(
    signal: Signal[..., Any],
    hooks: tuple[SendHook, ...],
    sender: object,
    named: dict[str, Any],
    robust: bool,
    snapshot: Snapshot,
) -> Results[Any] | Awaitable[Results[Any]]:
    """Start a send whose payload is checked: ``snapshot`` is what it reaches.

    Returns the results when no receiver suspended, else an awaitable of
    them. ``hooks``: the signal's, or none once they have seen this send
    (``snapshot`` is then what they let run).
    """
    limits = signal._limits  # pyright: ignore[reportPrivateUsage] (the class's own send)
    if hooks:
        # As send_observed, with no callable of this send's own to make.
        observation = observe(signal, hooks, snapshot, sender, named, limits)
        observed = observation.snapshot
        try:
            outcome = (
                [] if observed is None else _start(signal, (), sender, named, robust, observed)
            )
        except BaseException as error:
            observation.failed(error)
            raise
        try:
            return observation.ended(outcome)
        finally:
            del outcome  # see asyncsignals._failures.report: no cycle through a kept exception
    connections, awaits, inline, _ = snapshot
    if awaits and not signal._concurrent:  # pyright: ignore[reportPrivateUsage]
        return run_in_order(signal, limits, connections, sender, named, robust)
    if not connections:
        return []
    context = contextvars.copy_context()
    if inline is None:
        results, pending = context.run(
            run_inline, signal, limits, connections, sender, named, robust, False
        )
    else:  # sync receivers only, sent to under hooks that wrap none of them
        results, pending = context.run(run_sync_only, signal, limits, inline, sender, named, robust)
    try:
        if not pending:
            return results
        return start_pending(signal, limits, sender, results, pending, context, robust)
    finally:
        del results  # see asyncsignals._failures.report: no cycle through a kept exception


def _declare(
    prototype: Callable[DeclaredP, DeclaredR],
    *,
    name: str | None,
    timeout: float | None,
    max_concurrency: int | None,
    concurrent: bool,
) -> Signal[DeclaredP, DeclaredR]:
    """Signal.declare with its options: read the prototype, make the signal."""
    provided, required = read_prototype(prototype)
    signal: Signal[Any, Any] = Signal(
        providing_args=provided,
        name=getattr(prototype, "__name__", None) if name is None else name,
        timeout=timeout,
        max_concurrency=max_concurrency,
        concurrent=concurrent,
    )
    if provided is not None:
        signal._required_args = required  # pyright: ignore[reportPrivateUsage] (Signal's own)
    return cast("Signal[DeclaredP, DeclaredR]", signal)


# Public names show their public path in reprs and tracebacks.
Signal.__module__ = "asyncsignals"
