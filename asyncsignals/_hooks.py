"""Observing a send: the test helpers' captures and mutes, and instruments.

A hook is plugged into a signal (or into every signal); each send asks every
hook for a watch before any receiver runs. A watch may mute the send, leave
receivers out, or wrap them; it hears how the send ended. One implementation
serves ``send``, ``send_robust`` and the sync entry points: the signal hands
its send to :func:`send_observed`, which asks the hooks (:func:`observe`),
runs what they let run and tells them how it ended.

A signal with no hooks pays one attribute check per send for all of this.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol, overload

from ._connections import ASYNC, STRONG, Connection, Snapshot, awaited_snapshot, live_receiver
from ._limits import UNTIMED, Limits, timed_receiver
from ._run import Results

__all__ = [
    "Observation",
    "SendHook",
    "SendWatch",
    "add_everywhere",
    "everywhere",
    "observe",
    "remove_everywhere",
    "send_observed",
]


class SendHook(Protocol):
    """What a watcher plugs into a signal: test helpers and instruments."""

    def begin(self, signal: Any, sender: object, named: Mapping[str, Any]) -> SendWatch:
        """A send of ``signal`` (the Signal) is starting, before any receiver runs; watch it.

        ``signal`` is typed ``Any`` here so that this module, below the
        Signal's, need not import it; hooks take it as a ``Signal``.
        """
        ...


class SendWatch(Protocol):
    """One hook's view of one send."""

    #: True mutes the send: nothing runs and it returns ``[]``.
    muted: bool

    #: False promises that :meth:`allows` lets every receiver run and
    #: :meth:`wrap` returns ``call``: the send then asks neither, and a send
    #: whose watches all promise it runs as if it were not observed.
    sees_receivers: bool

    def allows(self, receiver: Callable[..., Any]) -> bool:
        """Whether this receiver runs in this send."""
        ...

    def wrap(
        self, receiver: Callable[..., Any], call: Callable[..., Any], is_async: bool
    ) -> Callable[..., Any]:
        """What to call instead of ``call`` (``receiver``, or an earlier hook's wrapper)."""
        ...

    def end(self, results: Results | None, error: BaseException | None) -> None:
        """After the send: its results, or the exception it raised (results None)."""
        ...


# Hooks every signal gets, new ones too (instruments added everywhere).
_everywhere: tuple[SendHook, ...] = ()
_everywhere_lock = threading.Lock()


def everywhere() -> tuple[SendHook, ...]:
    """The hooks that every signal, new ones too, starts with."""
    return _everywhere


def add_everywhere(hook: SendHook) -> None:
    """Give ``hook`` to every signal created from now on (existing ones are the caller's)."""
    global _everywhere  # noqa: PLW0603 (module state: the hooks of signals yet to come)
    with _everywhere_lock:
        _everywhere = (*_everywhere, hook)


def remove_everywhere(hook: SendHook) -> None:
    """Stop giving ``hook`` to new signals."""
    global _everywhere  # noqa: PLW0603 (see add_everywhere)
    with _everywhere_lock:
        _everywhere = tuple(each for each in _everywhere if each is not hook)


# The originals of a send whose receivers no hook wraps (never changed).
_NO_ORIGINALS: Final[dict[Callable[..., Any], Any]] = {}


class Observation:
    """The hooks' watches of one send, and what they let it run."""

    __slots__ = ("_originals", "snapshot", "watches")

    def __init__(
        self,
        watches: list[SendWatch],
        snapshot: Snapshot | None,
        originals: dict[Callable[..., Any], Any],
    ) -> None:
        self.watches = watches
        #: The connections the send runs (None when muted: it runs nothing).
        self.snapshot = snapshot
        self._originals = originals

    def finished(self, results: Results) -> Results:
        """The send returned ``results``: tell every watch; the results name the receivers."""
        originals = self._originals
        if originals:
            results = [(originals.get(receiver, receiver), value) for receiver, value in results]
        for watch in self.watches:
            watch.end(results, None)
        try:
            return results
        finally:
            del results  # no cycle through an exception kept in the results

    def ended(self, outcome: Results | Awaitable[Results]) -> Results | Awaitable[Results]:
        """The send gave ``outcome``: its results (told to the watches), or an awaitable of them.

        The awaitable tells the watches how the send ended.
        """
        if isinstance(outcome, list):
            return self.finished(outcome)
        return _finish(self, outcome)

    def failed(self, error: BaseException) -> None:
        """The send raised ``error``: tell every watch."""
        for watch in self.watches:
            watch.end(None, error)


def observe(
    signal: object,
    hooks: tuple[SendHook, ...],
    snapshot: Snapshot,
    sender: object,
    named: Mapping[str, Any],
    limits: Limits,
) -> Observation:
    """Ask the hooks about a send of ``signal`` that reaches ``snapshot``.

    A wrapped receiver is held strongly for the send, with its timeout
    applied innermost (by ``timed_receiver``), so that a hook's wrapper sees
    the ``TimeoutError`` it raises, as the send does.
    """
    # Every hook hears of every send, muted or not. (A loop: two any() of
    # generators would cost a send under one instrument a tenth more.)
    watches: list[SendWatch] = []
    muted = sees_receivers = False
    for hook in hooks:
        watch = hook.begin(signal, sender, named)
        watches.append(watch)
        muted = muted or watch.muted
        sees_receivers = sees_receivers or watch.sees_receivers
    if muted:
        return Observation(watches, None, _NO_ORIGINALS)
    if not sees_receivers:
        return Observation(watches, snapshot, _NO_ORIGINALS)
    originals: dict[Callable[..., Any], Any] = {}
    kept: list[Connection] = []
    connections, _, _, _ = snapshot
    for connection in connections:
        receiver = live_receiver(connection)
        if receiver is None or not all(watch.allows(receiver) for watch in watches):
            continue
        target, _, kind, takes_signal, sequence, own_timeout = connection
        is_async = kind == ASYNC
        timeout = limits.timeout_of(own_timeout) if is_async else None
        call = receiver if timeout is None else timed_receiver(signal, receiver, timeout)
        for watch in watches:
            call = watch.wrap(receiver, call, is_async)
        if call is not receiver:
            originals[call] = receiver
            target = call
            connection = (  # noqa: PLW2901
                target,
                STRONG,
                kind,
                takes_signal,
                sequence,
                own_timeout if timeout is None else UNTIMED,
            )
        kept.append(connection)
    # The sync-only loop cannot run a wrapped receiver's timeout: no inline entries.
    return Observation(watches, awaited_snapshot(tuple(kept)), originals)


@overload
def send_observed(
    signal: object,
    hooks: tuple[SendHook, ...],
    snapshot: Snapshot,
    sender: object,
    named: Mapping[str, Any],
    limits: Limits,
    send: Callable[[Snapshot], Results],
) -> Results: ...
@overload
def send_observed(
    signal: object,
    hooks: tuple[SendHook, ...],
    snapshot: Snapshot,
    sender: object,
    named: Mapping[str, Any],
    limits: Limits,
    send: Callable[[Snapshot], Results | Awaitable[Results]],
) -> Results | Awaitable[Results]: ...
def send_observed(
    signal: object,
    hooks: tuple[SendHook, ...],
    snapshot: Snapshot,
    sender: object,
    named: Mapping[str, Any],
    limits: Limits,
    send: Callable[[Snapshot], Results | Awaitable[Results]],
) -> Results | Awaitable[Results]:
    """A send observed by ``hooks``: ``send`` runs what they let it run.

    ``send`` returns the results, or an awaitable of them when a receiver
    suspended (never, from the sync entry points); so does this. Every
    watch hears how the send ended; a muted send returns ``[]``.
    """
    observation = observe(signal, hooks, snapshot, sender, named, limits)
    observed = observation.snapshot
    try:
        outcome = [] if observed is None else send(observed)
    except BaseException as error:
        observation.failed(error)
        raise
    try:
        return observation.ended(outcome)
    finally:
        del outcome  # no cycle through an exception kept in the results


async def _finish(observation: Observation, outcome: Awaitable[Results]) -> Results:
    """Await the rest of an observed send, then tell its watches how it ended."""
    try:
        results = await outcome
    except BaseException as error:
        observation.failed(error)
        raise
    finally:
        del outcome
    try:
        return observation.finished(results)
    finally:
        del results  # no cycle through an exception kept in the results
