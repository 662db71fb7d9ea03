"""The Redis bridge's consumer loop: reading, claiming, queueing, and the workers.

:class:`Consumer` does, while a bridge runs, everything the bridge does with
what it reads: work mode through the consumer group (claiming what stopped
consumers left), broadcast mode with XREAD, each entry queued for the
workers (``_redis_workers``), which hand it to its :class:`Delivery` (run
as a send, then acknowledged or dead-lettered); the group's upkeep runs
beside. Its owner,
``asyncsignals.redis.RedisBridge``, keeps what users call; this module never
imports it, and reads the bridge's options through :class:`ConsumerOptions`.

Imported by ``asyncsignals.redis`` only, once that module has checked that
redis-py is installed (and named the extra if not).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

import anyio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._lifespan import Lifespan
from ._redis_delivery import Delivery, DeliveryOptions
from ._redis_maintenance import GroupUpkeep, UpkeepOptions
from ._redis_reads import BoundedReads
from ._redis_wire import (
    Entry,
    Export,
    Mode,
    Start,
    delivery_counts,
    id_order,
    stream_entries,
    text,
)
from ._redis_workers import SendTimer, Workers
from ._signal import Signal

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.typing import KeyT, StreamIdT

__all__ = ["Consumer", "ConsumerOptions"]

# The bridge's own logger: what the consumer logs, the bridge logs.
logger: Final = logging.getLogger("asyncsignals.redis")

# Reconnection waits double from the first to the last.
_FIRST_RETRY: Final = 0.05
_LAST_RETRY: Final = 5.0


class ConsumerOptions(DeliveryOptions, UpkeepOptions, Protocol):
    """The options a :class:`Consumer` reads from its owner, each time it uses one.

    Read where they are used rather than copied once: they are the bridge's
    public attributes, which may be set between constructing and entering it.
    The consumer never sets them.
    """

    name: str | None
    batch_size: int
    max_concurrent: int
    block: float
    max_deliveries: int | None
    start_from: Start


class Consumer:
    """The bridge's reading and delivering: the consumer loop, while the bridge runs.

    Reads the streams of the signals the bridge consumes (work mode through
    the consumer group, claiming what stopped consumers left; broadcast mode
    with XREAD), queues at most ``batch_size`` entries, runs each in one of
    ``max_concurrent`` workers, then acknowledges it or dead-letters it. It
    reads its owner's options (``group``, ``batch_size``, ...) where it uses
    them, as the bridge's own methods would.
    """

    def __init__(
        self,
        options: ConsumerOptions,
        client: aioredis.Redis,
        lifespan: Lifespan,
        exports: Mapping[Signal[..., Any], Export],
    ) -> None:
        # What stopped the bridge while it ran (its owner raises it at exit).
        self.failure: BaseException | None = None
        self._options = options
        self._client = client
        self._lifespan = lifespan
        self._exports = exports
        # Entries read and not finished, by stream and id: never queued twice,
        # and kept from looking idle to other consumers.
        self._held: set[tuple[str, str]] = set()
        # Entries delivered before, run alone: set once each has run.
        self._finished: dict[tuple[str, str], anyio.Event] = {}
        self._broadcast_after: dict[str, str] = {}
        self._reads = BoundedReads(client)
        self.delivery = Delivery(options, client, self._release, lambda: self.display_name)
        self._upkeep = GroupUpkeep(options, client, lambda: self.display_name)
        self._readers: anyio.CancelScope | None = None
        self._workers = Workers(
            self._deliver_one, self.delivery.time_out, self._delivery_over, self._workers_done
        )

    @property
    def display_name(self) -> str:
        """How the logs name the bridge."""
        options = self._options
        return self._lifespan.display_name(options.name, unnamed=f"bridge {options.consumer}")

    # -- starting and stopping ---------------------------------------------

    async def prepare(self) -> None:
        """Create the consumer groups, and find where broadcast reading starts."""
        await self._create_groups(self._options.start_from)
        # Before the first read, which would move the group past the loss.
        await self._upkeep.report_trimmed(self._consumed("work"))
        await self._start_broadcast()

    def renew(self, lifespan: Lifespan) -> None:
        """Before the bridge runs again, within ``lifespan``: its counters go on."""
        self._lifespan = lifespan
        self.failure = None

    def workers(self) -> list[Callable[[], Awaitable[None]]]:
        """Open the local queue; return the tasks that read into it and deliver from it."""
        options = self._options
        self._readers = anyio.CancelScope()
        self.delivery.start()
        tasks = [
            self._read,
            self.delivery.acknowledge_completed,
            *self._workers.open(options.batch_size, options.max_concurrent, options.send_timeout),
        ]
        return [functools.partial(self._noting_failure, task) for task in tasks]

    def stop_reading(self) -> None:
        """Read nothing more; the workers then finish what is running."""
        assert self._readers is not None
        self._readers.cancel()

    def close(self) -> None:
        """Once the workers are done: what was read and not completed stays pending."""
        left = len(self._held)
        self._held.clear()
        self._finished.clear()
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

    async def _create_groups(self, start_from: Start) -> list[str]:
        """Create the group on each work stream that lacks it; return those streams.

        ``start_from``: where each group created starts reading: "new",
        after the stream's newest entry; "beginning", at its first.
        """
        created: list[str] = []
        first = "$" if start_from == "new" else "0"
        for stream in self._consumed("work"):
            try:
                await self._client.xgroup_create(
                    stream, self._options.group, id=first, mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            else:
                created.append(stream)
        return created

    async def _read(self) -> None:
        assert self._readers is not None
        try:
            with self._readers:
                async with anyio.create_task_group() as readers:
                    if self._consumed("work"):
                        readers.start_soon(self._keep_going, self._read_work)
                        readers.start_soon(self._keep_going, self._claim_periodically)
                        readers.start_soon(self._keep_going, self._keep_held_entries_fresh)
                    if self._consumed("broadcast"):
                        readers.start_soon(self._keep_going, self._read_broadcast)
        finally:
            # The workers then take what is queued (skipping it) and stop.
            self._workers.close()

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
                # NOGROUP: the group is gone when a command needs it.
                # UNBLOCKED: the stream (and so its group) was deleted while a
                # read blocked on it, the bridge's idle state.
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    raise
            await anyio.sleep(delay)
            delay = min(delay * 2, _LAST_RETRY)
            try:
                # A stream deleted and created again holds only what was
                # published since: all of it is new, none may be skipped.
                created = await self._create_groups("beginning")
            except (RedisConnectionError, RedisTimeoutError):
                continue
            for stream in created:
                logger.warning(
                    "%s: stream %s was deleted (DEL, FLUSHDB, or Redis restarted empty); "
                    "its consumer group %r created again",
                    self.display_name,
                    stream,
                    self._options.group,
                )
            delay = _FIRST_RETRY

    async def _queue(
        self, export: Export, entries: list[tuple[Any, Any]], redelivered: bool = False
    ) -> str | None:
        """Queue the entries not already held; return the last id seen.

        ``redelivered``: the entries were read from a pending list (this
        consumer's own, or claimed from another), one at a time: each runs
        alone, and the next is taken once it has run, so that a consumer
        that dies while it runs is known to have died of that entry. Those
        that ran alone ``max_deliveries`` times already are dead-lettered.
        """
        deliveries = await self._deliveries(export, entries) if redelivered else {}
        last: str | None = None
        for raw_id, fields in entries:
            last = entry_id = text(raw_id)
            key = (export.stream, entry_id)
            if key in self._held:
                continue
            self._held.add(key)
            entry = Entry(export, entry_id, fields, deliveries.get(entry_id, 1))
            # The first delivery was a batch read, which may have died of
            # another entry before this one started: what counts is each
            # time it was taken again, alone; this take is not one yet.
            ran_alone = deliveries.get(entry_id, 0) - 2
            maximum = self._options.max_deliveries
            if maximum is not None and ran_alone >= maximum:
                await self.delivery.reject(
                    entry,
                    f"its consumer stopped, or its send timed out, {ran_alone} times while "
                    f"it ran alone (max_deliveries={maximum}): its send kills or hangs "
                    "its consumer",
                )
                continue
            if not redelivered:
                await self._workers.put(entry)
                continue
            finished = self._finished[key] = anyio.Event()
            await self._workers.put(entry)
            # Bounded: an entry whose send hangs must not stop the reading.
            with anyio.move_on_after(self._options.claim_idle):
                await finished.wait()
        return last

    async def _deliveries(self, export: Export, entries: list[tuple[Any, Any]]) -> dict[str, int]:
        """How many times Redis has delivered each of ``entries`` (pending on this consumer)."""
        if not entries:
            return {}
        ids = [text(raw_id) for raw_id, _ in entries]
        pending = await self._client.xpending_range(
            export.stream,
            self._options.group,
            min=min(ids, key=id_order),
            max=max(ids, key=id_order),
            count=len(ids),
            consumername=self._options.consumer,
        )
        return delivery_counts(pending)

    async def _read_work(self) -> None:
        streams = self._consumed("work")
        # This consumer's own pending entries first: a restart with the same
        # consumer name resumes what it had read and not acknowledged.
        for stream, export in streams.items():
            after = "0"
            while True:
                found = await self._reads.read_group(
                    self._options.group,
                    self._options.consumer,
                    {stream: after},
                    1,
                    self._options.max_message_bytes,
                )
                entries = [entry for _, read in found for entry in read]
                last = await self._queue(export, entries, redelivered=True)
                if last is None:
                    break
                after = last
        await self._claim(streams)
        new = dict.fromkeys(streams, ">")
        while True:
            found = await self._reads.read_group(
                self._options.group,
                self._options.consumer,
                new,
                self._options.batch_size,
                self._options.max_message_bytes,
            )
            if not found:
                found = await self._wait_for_an_entry(new, grouped=True)
            for stream, entries in found:
                await self._queue(streams[stream], entries)

    async def _wait_for_an_entry(
        self, after: Mapping[str, str], *, grouped: bool
    ) -> list[tuple[str, list[tuple[Any, Any]]]]:
        """Nothing new: wait up to ``block`` for the next entry, read whole (a script cannot wait).

        ``grouped``: through the consumer group (work mode), else XREAD
        (broadcast), each stream after its id in ``after``.
        """
        options = self._options
        streams = cast("dict[KeyT, StreamIdT]", after)
        block = round(options.block * 1000)
        reply: Any
        if grouped:
            reply = await self._client.xreadgroup(
                options.group, options.consumer, streams, count=1, block=block
            )
        else:
            reply = await self._client.xread(streams, count=1, block=block)
        return stream_entries(reply)

    async def _claim(self, streams: Mapping[str, Export]) -> None:
        """Take over entries idle longer than ``claim_idle`` on other consumers."""
        min_idle = round(self._options.claim_idle * 1000)
        for stream, export in streams.items():
            start = "0-0"
            while True:
                # One at a time, each run alone (see _queue).
                start, claimed = await self._reads.claim(
                    stream,
                    self._options.group,
                    self._options.consumer,
                    min_idle,
                    start,
                    1,
                    self._options.max_message_bytes,
                )
                if claimed:
                    logger.info("%s: claimed idle entries of %s", self.display_name, stream)
                await self._queue(export, claimed, redelivered=True)
                if start == "0-0":
                    break

    async def _claim_periodically(self) -> None:
        streams = self._consumed("work")
        while True:
            await anyio.sleep(self._options.claim_idle / 2)
            await self._claim(streams)
            await self._upkeep.remove_dead_consumers(streams)
            await self._upkeep.report_trimmed(streams)

    async def _keep_held_entries_fresh(self) -> None:
        # Its own loop: claiming runs entries one at a time and may take
        # long, and these must be refreshed within every claim_idle.
        streams = self._consumed("work")
        while True:
            await anyio.sleep(self._options.claim_idle / 2)
            # The entries this process still works on (queued or running)
            # are claimed to itself again, which resets their idle time:
            # only a consumer that stopped leaves entries to be claimed.
            for stream in streams:
                ids: list[StreamIdT] = [entry_id for key, entry_id in self._held if key == stream]
                if ids:
                    await self._client.xclaim(
                        stream, self._options.group, self._options.consumer, 0, ids, justid=True
                    )

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
        while True:
            found = await self._reads.read(
                after, self._options.batch_size, self._options.max_message_bytes
            )
            if not found:
                found = await self._wait_for_an_entry(after, grouped=False)
            for stream, entries in found:
                last = await self._queue(streams[stream], entries)
                assert last is not None
                after[stream] = last

    # -- delivering ---------------------------------------------------------

    async def _noting_failure(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run ``task``, keeping the first of what stops the bridge in :attr:`failure`."""
        try:
            await task()
        except BaseException as exc:
            if self.failure is None and not isinstance(exc, anyio.get_cancelled_exc_class()):
                self.failure = exc
            raise

    def _workers_done(self) -> None:
        # What the workers completed is acknowledged, then the acknowledging stops.
        self.delivery.finish()

    async def _deliver_one(self, entry: Entry, timer: SendTimer) -> None:
        if not self._lifespan.running:
            return  # stays pending; counted at exit
        await self.delivery.deliver(entry, timer)

    def _delivery_over(self, entry: Entry) -> None:
        finished = self._finished.pop((entry.export.stream, entry.id), None)
        if finished is not None:
            finished.set()

    def _release(self, entry: Entry) -> None:
        """``entry`` is no longer held by this process: acknowledged, or left pending."""
        self._held.discard((entry.export.stream, entry.id))
