"""Who is connected: a signal's connections, and the cached lookup of what a send reaches.

A :class:`ConnectionStore` holds the connections made for any sender and,
per specific sender, those made for it. A send asks :meth:`ConnectionStore.lookup`
for a :data:`Snapshot`: every connection it reaches, merged in connection
order, cached per sender until the connections change. The cache never keeps
a sender alive, and a send costs the same however many other senders have
receivers.

Thread safety: changes take the store's lock. A weakly held receiver or
sender may be collected at any allocation, in any thread; its callback only
flags the store (and replaces the version, an atomic attribute store), and
the cleanup waits for the next change or lookup, under the lock.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Final, NamedTuple

__all__ = [
    "ASYNC",
    "INLINE",
    "NOTHING",
    "STRONG",
    "THREAD",
    "WEAK",
    "WEAK_METHOD",
    "Connection",
    "ConnectionRecord",
    "ConnectionStore",
    "InlineConnection",
    "SavedConnections",
    "Snapshot",
    "awaited_snapshot",
    "live_async_receivers",
    "live_receiver",
]

# How a connection's receiver is run.
INLINE: Final = 0  # sync: called on the loop's thread, in connection order
ASYNC: Final = 1  # async: awaited concurrently with the other async receivers
THREAD: Final = 2  # sync with to_thread=True: run in a worker thread

# How a connection holds its receiver.
STRONG: Final = 0  # the receiver itself
WEAK: Final = 1  # a weakref.ref to it
WEAK_METHOD: Final = 2  # a WeakMethodRef to a bound method's object

#: A connection: ``(target, hold, kind, takes_signal, sequence, timeout)`` --
#: the receiver or a weak reference to it, how it is held (STRONG, WEAK,
#: WEAK_METHOD), how it runs (INLINE, ASYNC, THREAD), whether it takes
#: ``signal=``, its connection sequence number, and its own timeout or None.
#: A plain tuple: it is read on every send, and unpacking a plain tuple is the
#: cheapest way to read its fields (a named tuple's unpacking is not).
Connection = tuple[Any, int, int, bool, int, float | None]

#: A sync receiver as a send with no receiver to await needs it:
#: ``(target, hold, takes_signal, timeout)``.
InlineConnection = tuple[Any, int, bool, float | None]

#: What a send from one sender reaches: ``(connections, awaits, inline,
#: solo)`` -- its connections in connection order, whether any of them must
#: be awaited (ASYNC or THREAD), when none must, the same connections as
#: InlineConnection entries (None when some must), and the one connection
#: when it is the only one, ASYNC, and has no timeout of its own (None
#: otherwise): the most common send, run by the shortest path.
Snapshot = tuple[
    tuple[Connection, ...], bool, tuple[InlineConnection, ...] | None, Connection | None
]
NOTHING: Final[Snapshot] = ((), False, (), None)

#: Every connection as :meth:`ConnectionStore.save` found it.
SavedConnections = tuple[
    dict[Hashable, Connection],
    dict[int, tuple["_SenderConnections", dict[Hashable, Connection]]],
]


class ConnectionRecord(NamedTuple):
    """One live connection, as :meth:`ConnectionStore.records` reports it."""

    receiver: Any  # the receiver itself (a strong reference, for the reader)
    sender: object  # the sender it is connected for, or None for any sender
    kind: int  # INLINE, ASYNC or THREAD
    weak: bool  # held by weak reference
    timeout: float | None  # the connection's own timeout
    sequence: int  # its connection sequence number


def live_receiver(connection: Connection) -> Any:
    """The connection's receiver, or None once it was collected."""
    target, hold = connection[0], connection[1]
    if hold == WEAK_METHOD:
        return target.method()
    return target() if hold else target


def live_async_receivers(connections: tuple[Connection, ...]) -> list[Any]:
    """The async receivers among ``connections`` not yet collected, in connection order."""
    live = [live_receiver(connection) for connection in connections if connection[2] == ASYNC]
    return [receiver for receiver in live if receiver is not None]


def awaited_snapshot(connections: tuple[Connection, ...]) -> Snapshot:
    """A snapshot of ``connections`` for the general loop only, with no inline entries.

    For connections that are not a lookup's (an observed send's, whose
    wrapped receivers the sync-only loop could not time).
    """
    return (connections, any(connection[2] != INLINE for connection in connections), None, None)


def _is_solo(connection: Connection) -> bool:
    """Whether ``connection``, the only one of a send, may take its shortest path."""
    return connection[2] == ASYNC and connection[5] is None


class _SenderRef(weakref.ref[Any]):
    """Weak reference to a sender, remembering the ``id()`` it is filed under."""

    __slots__ = ("sender_id",)
    sender_id: int


class _StrongSenderRef:
    """Holds a sender that cannot be weakly referenced (``object()``, str, int).

    Such a sender is kept until its last connection is removed: matching by
    identity needs the object itself, and a bare ``id()`` could be reused.
    """

    __slots__ = ("sender",)

    def __init__(self, sender: object) -> None:
        self.sender = sender

    def __call__(self) -> object:
        return self.sender


class _SenderConnections:
    """The connections made for one specific sender."""

    __slots__ = ("cache", "connections", "sender_ref")

    def __init__(self, sender_ref: Callable[[], object]) -> None:
        self.sender_ref = sender_ref
        self.connections: dict[Hashable, Connection] = {}
        # (version it was built for, any-sender and own connections merged)
        self.cache: tuple[object, Snapshot] = (None, NOTHING)


class ConnectionStore:
    """One signal's connections: for any sender, and per specific sender.

    ``version``, ``any_cache`` and ``senders`` are read directly by a send's
    hot path (see ``Signal.send``); everything else goes through methods.
    """

    __slots__ = (
        "__weakref__",
        "_any_sender",
        "_cached_records",
        "_dirty",
        "_lock",
        "_sequence",
        "any_cache",
        "on_collected",
        "senders",
        "version",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sequence = itertools.count()
        self._any_sender: dict[Hashable, Connection] = {}
        #: Records of the senders that have connections of their own, by id().
        self.senders: dict[int, _SenderConnections] = {}
        #: Replaced by any change; a cache is valid while built for the current one.
        self.version: object = object()
        #: (version it was built for, the any-sender snapshot)
        self.any_cache: tuple[object, Snapshot] = (None, NOTHING)
        # Records holding a cached lookup, for _changed to drop.
        self._cached_records: list[_SenderConnections] = []
        self._dirty = False
        #: The callback of every weak reference the store's connections hold.
        self.on_collected = _weak_callback(self)

    # -- changes ------------------------------------------------------------

    def add(
        self,
        key: Hashable,
        sender: object,
        target: Any,
        hold: int,
        kind: int,
        takes_signal: bool,
        timeout: float | None,
    ) -> None:
        """Connect under ``key`` for ``sender`` (None: any sender), unless already connected."""
        with self._lock:
            if self._dirty:
                self._purge()
            if sender is None:
                connections = self._any_sender
            else:
                record = self._record_for(sender)
                if record is None:
                    record = _SenderConnections(self._sender_ref(sender))
                    self.senders[id(sender)] = record
                connections = record.connections
            existing = connections.get(key)
            if existing is None or live_receiver(existing) is None:
                connections[key] = (
                    target,
                    hold,
                    kind,
                    takes_signal,
                    next(self._sequence),
                    timeout,
                )
                self._changed()

    def remove(self, key: Hashable, sender: object) -> bool:
        """Remove the connection under ``key`` for ``sender``; True when a live one went."""
        with self._lock:
            if sender is None:
                removed = self._any_sender.pop(key, None)
            else:
                record = self._record_for(sender)
                if record is None:
                    return False
                removed = record.connections.pop(key, None)
                if not record.connections:
                    del self.senders[id(sender)]
            if removed is None:
                return False
            self._changed()
            # A collected receiver's connection is gone already, as far as
            # anyone can tell: removing its leftover entry removes nothing.
            return live_receiver(removed) is not None

    def save(self) -> SavedConnections:
        """Every connection as it is now, for :meth:`restore`."""
        with self._lock:
            return (
                dict(self._any_sender),
                {key: (record, dict(record.connections)) for key, record in self.senders.items()},
            )

    def restore(self, saved: SavedConnections) -> None:
        """Put back the connections :meth:`save` returned (for test isolation)."""
        any_sender, senders = saved
        with self._lock:
            self._any_sender = dict(any_sender)
            self.senders = {}
            for key, (record, connections) in senders.items():
                record.connections = dict(connections)
                self.senders[key] = record
            self._changed()

    def sequence_numbers(self) -> set[int]:
        """The sequence number of every connection held, live or not yet purged."""
        any_sender, senders = self.save()
        numbers = {connection[4] for connection in any_sender.values()}
        for _, connections in senders.values():
            numbers.update(connection[4] for connection in connections.values())
        return numbers

    def records(self) -> list[ConnectionRecord]:
        """Every live connection, for any sender and per sender, in connection order.

        Read only: taken under the lock, and leaves the collected ones for the
        next cleanup.
        """
        found: list[ConnectionRecord] = []
        with self._lock:
            groups: list[tuple[object, dict[Hashable, Connection]]] = [(None, self._any_sender)]
            for record in self.senders.values():
                sender = record.sender_ref()
                if sender is not None:  # a dead sender's connections are gone
                    groups.append((sender, record.connections))
            for sender, connections in groups:
                for connection in connections.values():
                    receiver = live_receiver(connection)
                    if receiver is not None:
                        _, hold, kind, _, sequence, timeout = connection
                        weak = hold != STRONG
                        found.append(
                            ConnectionRecord(receiver, sender, kind, weak, timeout, sequence)
                        )
        found.sort(key=lambda record: record.sequence)
        return found

    # -- lookups ------------------------------------------------------------

    def live_receivers(self, sender: object) -> list[Any]:
        """The receivers a send from ``sender`` reaches, not yet collected, in order."""
        connections, _, _, _ = self.lookup(sender)
        live = [live_receiver(connection) for connection in connections]
        return [receiver for receiver in live if receiver is not None]

    def has_live_receiver(self, sender: object) -> bool:
        """Whether a send from ``sender`` reaches a receiver (stops at the first found)."""
        connections, _, _, _ = self.lookup(sender)
        return any(live_receiver(connection) is not None for connection in connections)

    def lookup(self, sender: object) -> Snapshot:
        """The connections a send from ``sender`` reaches, in connection order.

        Cached per sender (and for "any sender") until the connections change,
        so a send costs the same however many other senders have receivers.
        """
        if sender is not None and self.senders:
            record = self._record_for(sender)
            if record is not None:
                cached_version, snapshot = record.cache
                if cached_version is self.version:
                    return snapshot
                return self._rebuild(record)
        cached_version, snapshot = self.any_cache
        if cached_version is self.version:
            return snapshot
        return self._rebuild(None)

    def _rebuild(self, record: _SenderConnections | None) -> Snapshot:
        with self._lock:
            if self._dirty:
                self._purge()
            version = self.version
            merged = list(self._any_sender.values())
            if record is not None:
                merged.extend(record.connections.values())
                merged.sort(key=lambda connection: connection[4])
            awaits = any(c[2] != INLINE for c in merged)
            inline = None if awaits else tuple((c[0], c[1], c[3], c[5]) for c in merged)
            solo = merged[0] if len(merged) == 1 and _is_solo(merged[0]) else None
            snapshot = (tuple(merged), awaits, inline, solo)
            if record is None:
                self.any_cache = (version, snapshot)
            else:
                record.cache = (version, snapshot)
                self._cached_records.append(record)
            return snapshot

    # -- bookkeeping --------------------------------------------------------

    def _changed(self) -> None:
        """The connections changed (lock held): no cached lookup may be used again.

        The caches are dropped too, not just outdated, so that a lookup
        cached for a sender that never sends again does not keep a
        disconnected receiver alive.
        """
        self.version = object()
        self.any_cache = (None, NOTHING)
        for record in self._cached_records:
            record.cache = (None, NOTHING)
        self._cached_records.clear()

    def mark_dirty(self, reference: object) -> None:
        """A weakly held receiver or sender was collected (any thread, inside the collector)."""
        # Mostly only flag it: this runs inside the garbage collector,
        # possibly while another thread iterates the connections, so the
        # cleanup waits for the lock.
        self._dirty = True
        self.version = object()
        if isinstance(reference, _SenderRef):
            record = self.senders.get(reference.sender_id)
            if record is not None and record.sender_ref is reference:
                # A dead sender's connections go now, not at the next
                # cleanup: they may hold receivers strongly. Replaced, not
                # cleared, so that whoever is reading the old ones (under
                # the lock, in another thread) reads them to the end; no one
                # adds to them, since that takes the live sender.
                record.connections = {}
                record.cache = (None, NOTHING)

    def _sender_ref(self, sender: object) -> Callable[[], object]:
        try:
            sender_ref = _SenderRef(sender, self.on_collected)
        except TypeError:
            return _StrongSenderRef(sender)
        sender_ref.sender_id = id(sender)
        return sender_ref

    def _record_for(self, sender: object) -> _SenderConnections | None:
        record = self.senders.get(id(sender))
        # A record whose sender died belongs to an object that merely had the
        # same id(); it is never matched.
        if record is None or record.sender_ref() is not sender:
            return None
        return record

    def _purge(self) -> None:
        """Drop connections whose receiver or sender was collected (lock held)."""
        self._dirty = False
        self._any_sender = {
            k: c for k, c in self._any_sender.items() if live_receiver(c) is not None
        }
        for sender_id, record in list(self.senders.items()):
            if record.sender_ref() is None:
                del self.senders[sender_id]
                continue
            record.connections = {
                k: c for k, c in record.connections.items() if live_receiver(c) is not None
            }
            if not record.connections:
                del self.senders[sender_id]
        self._changed()


def _weak_callback(store: ConnectionStore) -> Callable[[object], None]:
    """The weakref callback of ``store``'s references, holding the store weakly.

    A bound method kept on the store would form a cycle with it (through the
    references its connections hold), and a dropped signal would wait for the
    cyclic garbage collector.
    """
    store_ref = weakref.ref(store)

    def on_collected(reference: object) -> None:
        alive = store_ref()
        if alive is not None:
            alive.mark_dirty(reference)

    return on_collected
