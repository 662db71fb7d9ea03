"""Signals across processes and hosts, on Redis Streams.

An in-process signal reaches only the receivers of its own process. A service
that runs as several workers (``uvicorn --workers N``, several hosts) exports
the signals whose receivers must run elsewhere to a :class:`RedisBridge`,
entered once in the application's lifespan::

    from asyncsignals.redis import RedisBridge

    bridge = RedisBridge("redis://localhost:6379", group="orders")
    bridge.export(order_shipped)                      # work queue: one process runs it
    bridge.export(cache_invalidated, mode="broadcast")  # every process runs it

    async with bridge:
        await bridge.publish(order_shipped, "shop", order_id=42, tracking_number="1Z")

Needs the ``redis`` extra (``pip install 'asyncsignals[redis]'``); the rest of
asyncsignals never imports redis. **asyncio only**: redis-py's async client
(``redis.asyncio``) runs on asyncio (uvloop included), not on trio; entering
a bridge under trio raises ``RuntimeError``.

Modes:

- ``"work"`` (the default): a work queue on a Redis Streams consumer group.
  Each event runs ``signal.send_robust(sender, **payload)`` in one process of
  the group, and is acknowledged (``XACK``) only after that send completed.
  **At least once**: an event is never lost while Redis keeps it, and may run
  twice (a process killed after its receivers ran but before the ack, an
  entry claimed from a consumer that was only slow), so receivers of a work
  signal must be idempotent. A restarted process resumes where its group
  left off; entries pending on a dead consumer are claimed (``XAUTOCLAIM``)
  once idle for ``claim_idle`` seconds, and the bridge keeps the entries it
  is still working on from looking idle.
- ``"broadcast"``: every bridge (every process) that exports the signal runs
  every event published once it was entered (``XREAD``, no group).
  **At most once**: a process that is down or restarting misses the events
  published meanwhile. Use it for what a fresh process rebuilds anyway
  (cache invalidation, websocket pushes).

The wire: one stream per signal, ``<stream_prefix>:signal:<signal name>``,
whose entries have one field, ``event``, holding UTF-8 JSON
``{"v": 1, "signal": name, "sender": name or null, "payload": {...}}``.
Senders travel as names (strings), never as objects; data from Redis is only
ever parsed as JSON (never unpickled, never evaluated), after a size check.
An entry that is malformed, oversized, for another signal, or whose payload
does not match the signal is logged, copied to the dead-letter stream
(``<stream_prefix>:dead`` by default, with the reason) and acknowledged: it
never stops the bridge nor delays the entries behind it.

Memory is bounded: the bridge reads at most ``batch_size`` entries at a time
and reads again only when its ``max_concurrent`` local sends have room
(backpressure on Redis, not on the heap), and ``publish`` caps each stream
at about ``maxlen`` entries (``XADD MAXLEN ~``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

try:
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.typing import KeyT, StreamIdT
except ImportError as _missing_dependency:
    raise ImportError(
        "asyncsignals.redis needs redis-py, which is not installed: "
        "pip install 'asyncsignals[redis]'"
    ) from _missing_dependency

from ._lifespan import Lifespan
from ._receivers import describe
from ._redis_wire import (
    FIELD,
    Codec,
    Entry,
    Export,
    Mode,
    RejectedMessageError,
    dead_letter_copy,
    decode,
    delivery_counts,
    encode,
    export_of,
    id_order,
    stream_entries,
    text,
)
from ._signal import Signal

__all__ = ["BridgeClosedError", "Codec", "Mode", "RedisBridge", "RejectedMessageError"]

logger: Final = logging.getLogger("asyncsignals.redis")

# Reconnection waits double from the first to the last.
_FIRST_RETRY: Final = 0.05
_LAST_RETRY: Final = 5.0
# How long an acknowledgement may take once the send it acknowledges is done.
_ACK_TIMEOUT: Final = 5.0
_ACK_ATTEMPTS: Final = 3


class BridgeClosedError(RuntimeError):
    """The bridge is not running: not entered yet, or shutting down."""


class RedisBridge:
    """Delivers exported signals to the receivers of every other process, on Redis Streams.

    Export signals, enter the bridge in the application's lifespan, and
    publish::

        bridge = RedisBridge(url, group="orders", consumer=os.environ.get("WORKER_ID"))
        bridge.export(order_shipped)

        @asynccontextmanager
        async def lifespan(app):
            async with bridge:
                app.state.bridge = bridge
                yield

        await app.state.bridge.publish(order_shipped, "shop", order_id=42)

    :meth:`publish` does not run local receivers: the event reaches them the
    way it reaches every other process, through Redis (in work mode, in
    whichever process of the group reads it first; in broadcast mode, in
    every process, this one included). Keep ``await signal.send(...)`` for
    what must run here and now.

    While entered, the bridge reads the exported signals' streams and runs
    each event as ``await signal.send_robust(sender, **payload)`` in one of
    ``max_concurrent`` worker tasks; receivers' exceptions are logged (on
    ``asyncsignals`` by ``send_robust``, and on ``asyncsignals.redis`` with
    the entry) and counted in :attr:`receiver_errors`, and the event is
    acknowledged anyway: a receiver that wants a retry handles it itself.

    Args:
        redis: A ``redis.asyncio.Redis`` client (the bridge never closes it),
            or a URL for a client the bridge owns. The client must use RESP2
            and ``decode_responses=False``: the bridge reads raw bytes so that
            a hostile entry cannot break decoding.
        group: The consumer group of work mode: processes of one service
            share it; another service reading the same signals uses another.
        consumer: This process's name in the group. Default
            ``<hostname>-<pid>``. A name that survives restarts (a worker
            slot number) lets a restarted process re-run its own pending
            entries at once; otherwise they are claimed after ``claim_idle``.
            Two live processes must not share a name.
        stream_prefix: Prefix of every key the bridge uses.
        maxlen: Approximate cap on each stream's length (``XADD MAXLEN ~``);
            None never trims. Entries trimmed before a consumer read them are
            lost: size it for the longest outage you tolerate.
        claim_idle: Seconds after which another consumer may claim an entry
            pending on a consumer that stopped (``XAUTOCLAIM``); the bridge
            also checks for such entries about twice per period.
        dead_letter: Key of the dead-letter stream; default
            ``<stream_prefix>:dead``.
        max_deliveries: Deliveries after which an entry still pending is
            dead-lettered instead of run again: an event whose send kills
            or hangs every consumer that takes it (a poison message) stops
            there. Counted by Redis across consumers and restarts; None
            retries for ever.
        batch_size: Entries read per command, and the size of the local queue.
        max_concurrent: Local sends running at once.
        grace_period: Seconds that leaving the ``async with`` block lets
            running sends finish before cancelling them.
        max_message_bytes: Largest entry accepted, in bytes of JSON; larger
            ones are refused by :meth:`publish` and dead-lettered when read.
        block: Seconds each read waits on Redis for new entries; keep it
            below the client's ``socket_timeout``.
        name: Shown in ``repr`` and in logs.

    Attributes:
        group: The consumer group every process of the service shares.
        consumer: This process's name in the group.
        stream_prefix: The prefix of every stream the bridge uses.
        dead_letter: The stream rejected and poison entries go to.
        max_deliveries: Deliveries after which an entry is dead-lettered.
        max_concurrent: At most this many deliveries run at once.
        grace_period: Seconds the shutdown may take to finish deliveries.
        name: Shown in ``repr`` and logs, or None.

    The other constructor arguments are kept as attributes of the same name
    too; read them, do not change them while the bridge runs.
    """

    def __init__(
        self,
        redis: aioredis.Redis | str,
        *,
        group: str = "asyncsignals",
        consumer: str | None = None,
        stream_prefix: str = "asyncsignals",
        maxlen: int | None = 100_000,
        claim_idle: float = 60.0,
        dead_letter: str | None = None,
        max_deliveries: int | None = 10,
        batch_size: int = 16,
        max_concurrent: int = 16,
        grace_period: float = 10.0,
        max_message_bytes: int = 1 << 20,
        block: float = 2.0,
        name: str | None = None,
    ) -> None:
        for argument, value in (
            ("batch_size", batch_size),
            ("max_concurrent", max_concurrent),
            ("max_message_bytes", max_message_bytes),
        ):
            if value < 1:
                raise ValueError(f"{argument} must be at least 1, got {value!r}")
        if maxlen is not None and maxlen < 1:
            raise ValueError(f"maxlen must be at least 1 or None (no trimming), got {maxlen!r}")
        if max_deliveries is not None and max_deliveries < 1:
            raise ValueError(
                "max_deliveries must be at least 1 or None (retry for ever), "
                f"got {max_deliveries!r}"
            )
        for argument, seconds in (("claim_idle", claim_idle), ("block", block)):
            if not (0 < seconds < math.inf):
                raise ValueError(f"{argument} must be a number of seconds > 0, got {seconds!r}")
        if not grace_period >= 0:
            raise ValueError(f"grace_period must be a number of seconds >= 0, got {grace_period!r}")
        if isinstance(redis, str):
            self._client = aioredis.from_url(redis)
            self._owns_client = True
        else:
            options: Mapping[str, Any] = redis.connection_pool.connection_kwargs
            if options.get("decode_responses") or str(options.get("protocol", 2)) != "2":
                raise ValueError(
                    "RedisBridge needs a client with decode_responses=False and protocol=2 "
                    "(the defaults), or a URL"
                )
            self._client = redis
            self._owns_client = False
        self.group: str = group
        self.consumer: str = (
            consumer if consumer is not None else f"{socket.gethostname()}-{os.getpid()}"
        )
        self.stream_prefix = stream_prefix
        self.maxlen = maxlen
        self.claim_idle = claim_idle
        self.dead_letter: str = dead_letter if dead_letter is not None else f"{stream_prefix}:dead"
        self.max_deliveries = max_deliveries
        self.batch_size = batch_size
        self.max_concurrent = max_concurrent
        self.grace_period = grace_period
        self.max_message_bytes = max_message_bytes
        self.block = block
        self.name = name
        self._exports: dict[Signal[..., Any], Export] = {}
        self._by_stream: dict[str, Export] = {}
        self._lifespan = Lifespan(
            self,
            kind="bridge",
            closed_error=BridgeClosedError,
            refusal="publishes nothing more",
            before="publishing",
        )
        self._consumer = _Consumer(self, self._client, self._lifespan, self._exports)

    def __repr__(self) -> str:
        name = f" {self.name}" if self.name is not None else ""
        return (
            f"<RedisBridge{name} {self._lifespan.state}: consumer {self.consumer!r} in group "
            f"{self.group!r}, {len(self._exports)} signals, {self._consumer.delivered} delivered>"
        )

    # -- counters -----------------------------------------------------------

    @property
    def delivered(self) -> int:
        """Events this process ran (``send_robust`` completed), in either mode."""
        return self._consumer.delivered

    @property
    def dead_lettered(self) -> int:
        """Entries this process refused and copied to the dead-letter stream."""
        return self._consumer.dead_lettered

    @property
    def receiver_errors(self) -> int:
        """Exceptions raised by local receivers of delivered events, each logged."""
        return self._consumer.receiver_errors

    # -- exporting ----------------------------------------------------------

    def export(
        self,
        signal: Signal[..., Any],
        *,
        mode: Mode = "work",
        codec: Codec | None = None,
        senders: Mapping[str, object] | None = None,
        consume: bool = True,
    ) -> None:
        """Carry ``signal`` over Redis: publish it here, and run it when read.

        Call it before entering the bridge, in every process that publishes
        or receives the signal, with the same ``mode`` and ``codec``.

        Args:
            signal: A signal with a ``name`` (``Signal.declare`` names it
                after its function): names are what travel.
            mode: ``"work"`` (each event runs in one process of the group,
                at least once) or ``"broadcast"`` (in every process, at most
                once).
            codec: Converts the payload to JSON values and back; by default
                the payload must be JSON values already.
            senders: Local objects by name. :meth:`publish` then takes one
                of these objects (or its name) as the sender, and receivers
                get the object back, so ``connect(receiver, sender=Shop)``
                works across processes; an entry naming another sender is
                dead-lettered. Without it, receivers get the sender's name
                (an interned string) or None.
            consume: False to publish the signal from this process without
                running its events here (a web process that only enqueues).

        Raises:
            ValueError: the signal has no name, another exported signal has
                the same name, or ``mode`` is unknown.
            RuntimeError: the bridge was already entered.
        """
        if self._lifespan.entered:
            raise RuntimeError(f"{self!r}: export signals before entering the bridge")
        export = export_of(
            signal, self.stream_prefix, mode=mode, codec=codec, senders=senders, consume=consume
        )
        other = self._by_stream.get(export.stream)
        if other is not None and other.signal is not signal:
            raise ValueError(
                f"another signal named {export.name!r} is already exported on {self!r}"
            )
        self._exports[signal] = export
        self._by_stream[export.stream] = export

    # -- publishing ---------------------------------------------------------

    async def publish(self, signal: Signal[..., Any], sender: object, /, **payload: Any) -> str:
        """Add an event of ``signal`` to its stream; return the entry's id.

        Returns once Redis has stored the entry (a cancellation point). If it
        raises a Redis error, the event may or may not have been stored.

        Raises:
            BridgeClosedError: the bridge is not running.
            KeyError: ``signal`` was not exported.
            TypeError: the payload does not match the signal, is not JSON
                (after the codec), or the sender is not a name; nothing was
                published.
            ValueError: the event is larger than ``max_message_bytes``.
        """
        if not self._lifespan.running:
            raise self._lifespan.closed_error()
        export = self._exports.get(signal)
        if export is None:
            raise KeyError(f"{signal!r} is not exported on {self!r}; call bridge.export(signal)")
        data = encode(export, sender, payload, self.max_message_bytes)
        entry_id = await self._client.xadd(
            export.stream,
            {FIELD: data},
            maxlen=self.maxlen,
            approximate=True,
        )
        return text(entry_id)

    # -- lifespan -----------------------------------------------------------

    async def __aenter__(self) -> RedisBridge:
        """Create the consumer groups and start reading.

        Raises:
            RuntimeError: not running on asyncio, or entered before.
            redis.exceptions.RedisError: Redis could not be reached.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "asyncsignals.redis runs on asyncio only: redis-py's async client "
                "(redis.asyncio) does not run on trio. Run the bridge on asyncio (or uvloop)."
            ) from None
        self._lifespan.refuse_reentry()
        try:
            await self._consumer.prepare()
        except BaseException:
            if self._owns_client:
                await self._client.aclose()
            raise
        self._lifespan.start(self._consumer.workers())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop reading, let running sends finish, and leave the rest pending.

        Waits up to ``grace_period`` seconds for the sends already running,
        acknowledging each that completes; entries read but not started stay
        pending in the group, for this consumer's next start or for another
        consumer after ``claim_idle``. The bridge's tasks are its own: the
        block may be left by another task than the one that entered it, and
        leaving it in a task that is already being cancelled still waits
        for the grace period and raises no cancellation of its own. Left by
        a ``BaseException`` that is neither an ``Exception`` nor a
        cancellation, running sends are cancelled at once (and stay pending
        too); so they are when a cancellation still reaches the wait
        (asyncio's ``Task.cancel()`` called again), which then propagates.

        Raises:
            BaseException: what stopped the bridge while it ran (a Redis
                error that is no outage, a receiver's ``KeyboardInterrupt``),
                as itself. Otherwise the block's own exception propagates
                unchanged.
        """
        self._consumer.stop_reading()
        try:
            await self._lifespan.close(exc, self.grace_period)
        finally:
            self._consumer.close()
            if self._owns_client:
                with anyio.CancelScope(shield=True):
                    await self._client.aclose()
        self._lifespan.raise_failures(f"{self._consumer.display_name} failed")


class _Consumer:
    """The bridge's reading and delivering: the consumer loop, while the bridge runs.

    Reads the streams of the signals the bridge consumes (work mode through
    the consumer group, claiming what stopped consumers left; broadcast mode
    with XREAD), queues at most ``batch_size`` entries, runs each in one of
    ``max_concurrent`` workers, then acknowledges it or dead-letters it. It
    reads the bridge's options (``group``, ``batch_size``, ...) where it
    uses them, as the bridge's own methods would.
    """

    def __init__(
        self,
        bridge: RedisBridge,
        client: aioredis.Redis,
        lifespan: Lifespan,
        exports: Mapping[Signal[..., Any], Export],
    ) -> None:
        self.delivered = 0
        self.dead_lettered = 0
        self.receiver_errors = 0
        self._bridge = bridge
        self._client = client
        self._lifespan = lifespan
        self._exports = exports
        # Entries read and not finished, by stream and id: never queued twice,
        # and kept from looking idle to other consumers.
        self._held: set[tuple[str, str]] = set()
        self._broadcast_after: dict[KeyT, StreamIdT] = {}
        self._readers: anyio.CancelScope | None = None
        self._send_stream: MemoryObjectSendStream[Entry] | None = None
        self._receive_stream: MemoryObjectReceiveStream[Entry] | None = None

    @property
    def display_name(self) -> str:
        """How the logs name the bridge."""
        bridge = self._bridge
        return self._lifespan.display_name(bridge.name, unnamed=f"bridge {bridge.consumer}")

    # -- starting and stopping ---------------------------------------------

    async def prepare(self) -> None:
        """Create the consumer groups, and find where broadcast reading starts."""
        await self._create_groups()
        await self._start_broadcast()

    def workers(self) -> list[Callable[[], Awaitable[None]]]:
        """Open the local queue; return the tasks that read into it and deliver from it."""
        self._send_stream, self._receive_stream = anyio.create_memory_object_stream[Entry](
            self._bridge.batch_size
        )
        self._readers = anyio.CancelScope()
        return [self._read, *[self._work] * self._bridge.max_concurrent]

    def stop_reading(self) -> None:
        """Read nothing more; the workers then finish what is running."""
        assert self._readers is not None
        self._readers.cancel()

    def close(self) -> None:
        """Once the workers are done: what was read and not completed stays pending."""
        assert self._receive_stream is not None
        self._receive_stream.close()
        left = len(self._held)
        self._held.clear()
        if left:
            logger.warning(
                "%s: %d entries read but not completed at shutdown stay pending "
                "(broadcast ones are dropped)",
                self.display_name,
                left,
            )

    # -- reading ------------------------------------------------------------

    def _consumed(self, mode: Mode) -> dict[str, Export]:
        return {
            export.stream: export
            for export in self._exports.values()
            if export.consume and export.mode == mode
        }

    async def _create_groups(self) -> None:
        for stream in self._consumed("work"):
            try:
                # From the stream's start: events published before the first
                # consumer of the group existed are delivered too.
                await self._client.xgroup_create(stream, self._bridge.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _read(self) -> None:
        assert self._readers is not None
        assert self._send_stream is not None
        try:
            with self._readers:
                async with anyio.create_task_group() as readers:
                    if self._consumed("work"):
                        readers.start_soon(self._keep_going, self._read_work)
                        readers.start_soon(self._keep_going, self._claim_periodically)
                    if self._consumed("broadcast"):
                        readers.start_soon(self._keep_going, self._read_broadcast)
        finally:
            # The workers then take what is queued (skipping it) and stop.
            self._send_stream.close()

    async def _keep_going(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run ``loop``, restarting it after Redis failures with growing waits."""
        delay = _FIRST_RETRY
        while True:
            try:
                await loop()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                logger.warning(
                    "%s: Redis unavailable (%s); retrying in %.2f s",
                    self.display_name,
                    exc,
                    delay,
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                logger.warning(
                    "%s: consumer group %r is gone (Redis restarted empty, or the stream "
                    "was deleted); creating it again",
                    self.display_name,
                    self._bridge.group,
                )
            await anyio.sleep(delay)
            delay = min(delay * 2, _LAST_RETRY)
            try:
                await self._create_groups()
            except (RedisConnectionError, RedisTimeoutError):
                continue
            delay = _FIRST_RETRY

    async def _queue(
        self, export: Export, entries: list[tuple[Any, Any]], redelivered: bool = False
    ) -> str | None:
        """Queue the entries not already held; return the last id seen.

        ``redelivered``: the entries were read from a pending list (this
        consumer's own, or claimed from another), so they may have been
        delivered before; those past ``max_deliveries`` are dead-lettered.
        """
        assert self._send_stream is not None
        deliveries = await self._deliveries(export, entries) if redelivered else {}
        last: str | None = None
        for raw_id, fields in entries:
            last = entry_id = text(raw_id)
            key = (export.stream, entry_id)
            if key in self._held:
                continue
            self._held.add(key)
            entry = Entry(export, entry_id, fields)
            times = deliveries.get(entry_id, 0)
            if self._bridge.max_deliveries is not None and times > self._bridge.max_deliveries:
                await self._reject(
                    entry,
                    f"delivered {times} times without completing (max_deliveries="
                    f"{self._bridge.max_deliveries}): its send may kill or hang its consumer",
                )
                continue
            await self._send_stream.send(entry)
        return last

    async def _deliveries(self, export: Export, entries: list[tuple[Any, Any]]) -> dict[str, int]:
        """How many times Redis has delivered each of ``entries`` (pending on this consumer)."""
        if self._bridge.max_deliveries is None or not entries:
            return {}
        ids = [text(raw_id) for raw_id, _ in entries]
        pending = await self._client.xpending_range(
            export.stream,
            self._bridge.group,
            min=min(ids, key=id_order),
            max=max(ids, key=id_order),
            count=len(ids),
            consumername=self._bridge.consumer,
        )
        return delivery_counts(pending)

    async def _read_work(self) -> None:
        streams = self._consumed("work")
        # This consumer's own pending entries first: a restart with the same
        # consumer name resumes what it had read and not acknowledged.
        for stream, export in streams.items():
            after = "0"
            while True:
                response = await self._client.xreadgroup(
                    self._bridge.group,
                    self._bridge.consumer,
                    {stream: after},
                    count=self._bridge.batch_size,
                )
                entries = [entry for _, found in stream_entries(response) for entry in found]
                last = await self._queue(export, entries, redelivered=True)
                if last is None:
                    break
                after = last
        await self._claim(streams)
        block = round(self._bridge.block * 1000)
        while True:
            response = await self._client.xreadgroup(
                self._bridge.group,
                self._bridge.consumer,
                dict.fromkeys(streams, ">"),
                count=self._bridge.batch_size,
                block=block,
            )
            for stream, entries in stream_entries(response):
                await self._queue(streams[stream], entries)

    async def _claim(self, streams: Mapping[str, Export]) -> None:
        """Take over entries idle longer than ``claim_idle`` on other consumers."""
        min_idle = round(self._bridge.claim_idle * 1000)
        for stream, export in streams.items():
            start = "0-0"
            while True:
                next_start, claimed, *_ = await self._client.xautoclaim(
                    stream,
                    self._bridge.group,
                    self._bridge.consumer,
                    min_idle,
                    start,
                    count=self._bridge.batch_size,
                )
                if claimed:
                    logger.info(
                        "%s: claimed %d idle entries of %s",
                        self.display_name,
                        len(claimed),
                        stream,
                    )
                await self._queue(export, claimed, redelivered=True)
                start = text(next_start)
                if start == "0-0":
                    break

    async def _claim_periodically(self) -> None:
        streams = self._consumed("work")
        while True:
            await anyio.sleep(self._bridge.claim_idle / 2)
            # The entries this process still works on (queued or running)
            # are claimed to itself again, which resets their idle time:
            # only a consumer that stopped leaves entries to be claimed.
            for stream in streams:
                ids: list[StreamIdT] = [entry_id for key, entry_id in self._held if key == stream]
                if ids:
                    await self._client.xclaim(
                        stream, self._bridge.group, self._bridge.consumer, 0, ids, justid=True
                    )
            await self._claim(streams)

    async def _start_broadcast(self) -> None:
        # From the newest entry now (XREAD's "$", resolved once, on entry, so
        # that every event published once the bridge is entered is read, and
        # none published between two reads is missed).
        for stream in self._consumed("broadcast"):
            newest = await self._client.xrevrange(stream, count=1)
            self._broadcast_after[stream] = text(newest[0][0] or "0-0") if newest else "0-0"

    async def _read_broadcast(self) -> None:
        streams = self._consumed("broadcast")
        after = self._broadcast_after
        block = round(self._bridge.block * 1000)
        while True:
            response = await self._client.xread(after, count=self._bridge.batch_size, block=block)
            for stream, entries in stream_entries(response):
                last = await self._queue(streams[stream], entries)
                assert last is not None
                after[stream] = last

    # -- delivering ---------------------------------------------------------

    async def _work(self) -> None:
        assert self._receive_stream is not None
        async for entry in self._receive_stream:
            if not self._lifespan.running:
                continue  # stays pending; counted at exit
            try:
                await self._deliver(entry)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # Not acknowledged: read again after a reconnection, or claimed.
                self._held.discard((entry.export.stream, entry.id))
                logger.warning(
                    "%s: entry %s of %s stays pending: Redis unavailable (%s)",
                    self.display_name,
                    entry.id,
                    entry.export.stream,
                    exc,
                )

    async def _deliver(self, entry: Entry) -> None:
        export = entry.export
        try:
            sender, payload = decode(entry, self._bridge.max_message_bytes)
        except RejectedMessageError as exc:
            await self._reject(entry, str(exc))
            return
        try:
            results = await export.signal.send_robust(sender, **payload)
        except Exception as exc:
            logger.exception(
                "%s: entry %s of %s: send_robust failed",
                self.display_name,
                entry.id,
                export.stream,
            )
            await self._reject(entry, f"send failed: {type(exc).__name__}: {exc}")
            return
        self.delivered += 1
        self._count_failures(entry, results)
        # From Python 3.12 the errors' tracebacks reach this frame (it stepped
        # the send): keep no reference to them here, or they form a cycle.
        del results
        await self._acknowledge(entry)

    def _count_failures(self, entry: Entry, results: list[tuple[Any, Any]]) -> None:
        for receiver, result in results:
            if isinstance(result, Exception):
                self.receiver_errors += 1
                # The traceback is on the record send_robust logged.
                logger.error(
                    "%s: entry %s of %s: receiver %s raised %s: %s",
                    self.display_name,
                    entry.id,
                    entry.export.stream,
                    describe(receiver),
                    type(result).__name__,
                    result,
                )

    async def _reject(self, entry: Entry, reason: str) -> None:
        logger.error(
            "%s: entry %s of %s moved to %s: %s",
            self.display_name,
            entry.id,
            entry.export.stream,
            self._bridge.dead_letter,
            reason,
        )
        copy = dead_letter_copy(
            entry, self._bridge.consumer, reason, self._bridge.max_message_bytes
        )
        await self._client.xadd(
            self._bridge.dead_letter, copy, maxlen=self._bridge.maxlen, approximate=True
        )
        self.dead_lettered += 1
        await self._acknowledge(entry)

    async def _acknowledge(self, entry: Entry) -> None:
        key = (entry.export.stream, entry.id)
        if entry.export.mode == "work":
            # The send is done: the acknowledgement must not be lost to the
            # grace period's cancellation.
            with anyio.CancelScope(shield=True), anyio.move_on_after(_ACK_TIMEOUT):
                attempts = 1
                while True:
                    try:
                        await self._client.xack(entry.export.stream, self._bridge.group, entry.id)
                        break
                    except (RedisConnectionError, RedisTimeoutError):
                        # A pooled connection the server closed fails once.
                        if attempts == _ACK_ATTEMPTS:
                            raise
                        attempts += 1
                        await anyio.sleep(_FIRST_RETRY)
        self._held.discard(key)


# Public names show their public path in reprs and tracebacks.
for _public in (BridgeClosedError, RedisBridge):
    _public.__module__ = "asyncsignals.redis"
del _public
