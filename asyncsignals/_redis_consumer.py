"""The Redis bridge's consumer loop: reading, claiming, delivering, acknowledging.

:class:`Consumer` does, while a bridge runs, everything the bridge does with
what it reads: work mode through the consumer group (claiming what stopped
consumers left), broadcast mode with XREAD, each entry run as a send, then
acknowledged or dead-lettered. Its owner, ``asyncsignals.redis.RedisBridge``,
keeps what users call; this module never imports it, and reads the bridge's
options through :class:`ConsumerOptions`.

Imported by ``asyncsignals.redis`` only, once that module has checked that
redis-py is installed (and named the extra if not).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._lifespan import Lifespan
from ._receivers import describe
from ._redis_wire import (
    Entry,
    Export,
    Mode,
    RejectedMessageError,
    Start,
    current_envelope,
    dead_letter_copy,
    decode,
    delivery_counts,
    id_order,
    in_trace,
    stream_entries,
    text,
    trimmed_unread,
)
from ._signal import Signal

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.typing import KeyT, StreamIdT

__all__ = [
    "Consumer",
    "ConsumerOptions",
    "Trimming",
    "remove_idle_consumers",
    "trimming_of",
]

# The bridge's own logger: what the consumer logs, the bridge logs.
logger: Final = logging.getLogger("asyncsignals.redis")

# Reconnection waits double from the first to the last.
_FIRST_RETRY: Final = 0.05
_LAST_RETRY: Final = 5.0
# How long an acknowledgement may take once the send it acknowledges is done.
_ACK_TIMEOUT: Final = 5.0
_ACK_ATTEMPTS: Final = 3
# A consumer idle this many times claim_idle, with nothing pending, is taken
# for gone. Removing one that is alive loses nothing (it has nothing pending,
# and reappears with its next entry): before 7.2, Redis counts as activity
# only the reads that return entries, so a live worker on a quiet stream
# looks idle too.
_DEAD_CONSUMER_IDLE: Final = 10
# Removes, in one step (so that none can read entries between the check and
# the removal, whose pending entries would then be lost), the consumers of
# group ARGV[1] on stream KEYS[1] idle for ARGV[2] ms or longer with nothing
# pending, except ARGV[3]; returns their names.
_REMOVE_IDLE_CONSUMERS: Final = """
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if consumers.err then return {} end
local removed = {}
for _, consumer in ipairs(consumers) do
    local fields = {}
    for i = 1, #consumer, 2 do fields[consumer[i]] = consumer[i + 1] end
    if fields.pending == 0 and fields.idle >= tonumber(ARGV[2]) and fields.name ~= ARGV[3] then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields.name)
        table.insert(removed, fields.name)
    end
end
return removed
"""


class ConsumerOptions(Protocol):
    """The options a :class:`Consumer` reads from its owner, each time it uses one.

    Read where they are used rather than copied once: they are the bridge's
    public attributes, which may be set between constructing and entering it.
    The consumer never sets them.
    """

    group: str
    consumer: str
    name: str | None
    batch_size: int
    max_concurrent: int
    block: float
    claim_idle: float
    max_deliveries: int | None
    max_message_bytes: int
    start_from: Start
    send_timeout: float | None
    dead_letter: str
    maxlen: int | None


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
        self.delivered = 0
        self.dead_lettered = 0
        self.receiver_errors = 0
        self.timed_out = 0
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
        self._broadcast_after: dict[KeyT, StreamIdT] = {}
        # The first entry of each stream when its trimming was last reported:
        # each loss is reported once.
        self._trimmed_at: dict[str, str] = {}
        self._readers: anyio.CancelScope | None = None
        self._send_stream: MemoryObjectSendStream[Entry] | None = None
        self._receive_stream: MemoryObjectReceiveStream[Entry] | None = None

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
        await self._report_trimmed(self._consumed("work"))
        await self._start_broadcast()

    def renew(self, lifespan: Lifespan) -> None:
        """Before the bridge runs again, within ``lifespan``: its counters go on."""
        self._lifespan = lifespan
        self.failure = None

    def workers(self) -> list[Callable[[], Awaitable[None]]]:
        """Open the local queue; return the tasks that read into it and deliver from it."""
        self._send_stream, self._receive_stream = anyio.create_memory_object_stream[Entry](
            self._options.batch_size
        )
        self._readers = anyio.CancelScope()
        return [self._read, *[self._work] * self._options.max_concurrent]

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
        assert self._send_stream is not None
        try:
            with self._readers:
                async with anyio.create_task_group() as readers:
                    if self._consumed("work"):
                        readers.start_soon(self._keep_going, self._read_work)
                        readers.start_soon(self._keep_going, self._claim_periodically)
                        readers.start_soon(self._keep_going, self._keep_held_entries_fresh)
                    if self._consumed("broadcast"):
                        readers.start_soon(self._keep_going, self._read_broadcast)
        except BaseException as exc:
            self._note_failure(exc)
            raise
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
        assert self._send_stream is not None
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
                await self._reject(
                    entry,
                    f"its consumer stopped, or its send timed out, {ran_alone} times while "
                    f"it ran alone (max_deliveries={maximum}): its send kills or hangs "
                    "its consumer",
                )
                continue
            if not redelivered:
                await self._send_stream.send(entry)
                continue
            finished = self._finished[key] = anyio.Event()
            await self._send_stream.send(entry)
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
                response = await self._client.xreadgroup(
                    self._options.group, self._options.consumer, {stream: after}, count=1
                )
                entries = [entry for _, found in stream_entries(response) for entry in found]
                last = await self._queue(export, entries, redelivered=True)
                if last is None:
                    break
                after = last
        await self._claim(streams)
        block = round(self._options.block * 1000)
        while True:
            response = await self._client.xreadgroup(
                self._options.group,
                self._options.consumer,
                dict.fromkeys(streams, ">"),
                count=self._options.batch_size,
                block=block,
            )
            for stream, entries in stream_entries(response):
                await self._queue(streams[stream], entries)

    async def _claim(self, streams: Mapping[str, Export]) -> None:
        """Take over entries idle longer than ``claim_idle`` on other consumers."""
        min_idle = round(self._options.claim_idle * 1000)
        for stream, export in streams.items():
            start = "0-0"
            while True:
                # One at a time, each run alone (see _queue).
                next_start, claimed, *_ = await self._client.xautoclaim(
                    stream, self._options.group, self._options.consumer, min_idle, start, count=1
                )
                if claimed:
                    logger.info("%s: claimed idle entries of %s", self.display_name, stream)
                await self._queue(export, claimed, redelivered=True)
                start = text(next_start)
                if start == "0-0":
                    break

    async def _claim_periodically(self) -> None:
        streams = self._consumed("work")
        while True:
            await anyio.sleep(self._options.claim_idle / 2)
            await self._claim(streams)
            await self._remove_dead_consumers(streams)
            await self._report_trimmed(streams)

    async def _report_trimmed(self, streams: Mapping[str, Export]) -> None:
        """Warn of the events trimmed (``maxlen``) from a stream before the group read them."""
        for stream in streams:
            trimming = await trimming_of(self._client, stream, self._options.group)
            if trimming is None or self._trimmed_at.get(stream) == trimming.first_entry:
                continue
            self._trimmed_at[stream] = trimming.first_entry
            lost = trimming.lost
            logger.warning(
                "%s: consumer group %r fell behind the trimmed head of %s: %s trimmed "
                "(the publishers' maxlen) before the group read them, and are lost. Make "
                "maxlen hold what is published while every consumer may be down",
                self.display_name,
                self._options.group,
                stream,
                f"{lost} events were" if lost is not None else "events may have been",
            )

    async def _remove_dead_consumers(self, streams: Mapping[str, Export]) -> None:
        """Remove from the group the consumers long gone that left nothing pending.

        Each crashed or replaced process with a name of its own (the default
        names a process) would otherwise stay listed in the group for ever.
        """
        min_idle = round(self._options.claim_idle * _DEAD_CONSUMER_IDLE * 1000)
        for stream in streams:
            removed = await remove_idle_consumers(
                self._client, stream, self._options.group, min_idle, self._options.consumer
            )
            if removed:
                logger.info(
                    "%s: removed from group %r of %s the consumers idle for over %.0f s with "
                    "nothing pending: %s",
                    self.display_name,
                    self._options.group,
                    stream,
                    min_idle / 1000,
                    ", ".join(removed),
                )

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
        block = round(self._options.block * 1000)
        while True:
            response = await self._client.xread(after, count=self._options.batch_size, block=block)
            for stream, entries in stream_entries(response):
                last = await self._queue(streams[stream], entries)
                assert last is not None
                after[stream] = last

    # -- delivering ---------------------------------------------------------

    def _note_failure(self, exc: BaseException) -> None:
        """Keep the first of what stops the bridge in :attr:`failure`."""
        if self.failure is None and not isinstance(exc, anyio.get_cancelled_exc_class()):
            self.failure = exc

    async def _work(self) -> None:
        try:
            await self._deliver_queued()
        except BaseException as exc:
            self._note_failure(exc)
            raise

    async def _deliver_queued(self) -> None:
        assert self._receive_stream is not None
        async for entry in self._receive_stream:
            try:
                await self._deliver_one(entry)
            finally:
                finished = self._finished.pop((entry.export.stream, entry.id), None)
                if finished is not None:
                    finished.set()

    async def _deliver_one(self, entry: Entry) -> None:
        if not self._lifespan.running:
            return  # stays pending; counted at exit
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
            message = decode(entry, self._options.max_message_bytes)
        except RejectedMessageError as exc:
            await self._reject(entry, str(exc))
            return
        timeout = self._options.send_timeout
        results: list[tuple[Any, Any]] | None = None
        failure: Exception | None = None
        # The send copies this context for its receivers: they see the
        # envelope, and the publisher's span as the parent of their own.
        delivering = current_envelope.set(message.envelope)
        with in_trace(message.trace), anyio.move_on_after(math.inf if timeout is None else timeout):
            try:
                results = await export.signal.send_robust(message.sender, **message.payload)
            except Exception as exc:
                logger.exception(
                    "%s: entry %s of %s: send_robust failed",
                    self.display_name,
                    entry.id,
                    export.stream,
                )
                failure = exc
            finally:
                current_envelope.reset(delivering)
        if failure is not None:
            await self._reject(entry, f"send failed: {type(failure).__name__}: {failure}")
            return
        if results is None:
            self._time_out(entry)
            return
        self.delivered += 1
        self._count_failures(entry, results)
        # From Python 3.12 the errors' tracebacks reach this frame (it stepped
        # the send): keep no reference to them here, or they form a cycle.
        del results
        await self._acknowledge(entry)

    def _time_out(self, entry: Entry) -> None:
        """The send of ``entry`` outlasted ``send_timeout`` and was cancelled."""
        self.timed_out += 1
        # No longer held: it looks idle, and is claimed (by any consumer,
        # this one too) after claim_idle, then runs alone, which counts.
        self._held.discard((entry.export.stream, entry.id))
        logger.error(
            "%s: entry %s of %s: the send did not complete within send_timeout=%s s and "
            "was cancelled; %s",
            self.display_name,
            entry.id,
            entry.export.stream,
            self._options.send_timeout,
            "it is dropped (broadcast)"
            if entry.export.mode == "broadcast"
            else "it stays pending, to be taken again alone once idle for claim_idle "
            "(a delivery that counts towards max_deliveries)",
        )

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
            self._options.dead_letter,
            reason,
        )
        copy = dead_letter_copy(
            entry, self._options.consumer, reason, self._options.max_message_bytes
        )
        refusal: OutOfMemoryError | None = None
        try:
            await self._client.xadd(
                self._options.dead_letter, copy, maxlen=self._options.maxlen, approximate=True
            )
        except OutOfMemoryError as exc:
            refusal = exc
        if refusal is not None:
            # Redis refuses what needs memory, not reads nor acknowledgements:
            # the bridge goes on, and the entry waits until Redis has room.
            self._held.discard((entry.export.stream, entry.id))
            logger.error(
                "%s: entry %s of %s could not be moved to %s (%s); %s",
                self.display_name,
                entry.id,
                entry.export.stream,
                self._options.dead_letter,
                refusal,
                "it is dropped (broadcast)"
                if entry.export.mode == "broadcast"
                else "it stays pending, tried again once idle for claim_idle",
            )
            return
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
                        await self._client.xack(entry.export.stream, self._options.group, entry.id)
                        break
                    except (RedisConnectionError, RedisTimeoutError):
                        # A pooled connection the server closed fails once.
                        if attempts == _ACK_ATTEMPTS:
                            raise
                        attempts += 1
                        await anyio.sleep(_FIRST_RETRY)
        self._held.discard(key)


async def remove_idle_consumers(
    client: aioredis.Redis, stream: str, group: str, min_idle: int, keep: str
) -> list[str]:
    """Remove the consumers of ``group`` idle ``min_idle`` ms or more with nothing pending.

    Never ``keep`` (the caller's own name); returns the names removed. The
    check and the removal are one script, so a consumer that comes back
    and reads in between keeps its pending entries.
    """
    removed: list[bytes | str] = await client.eval(
        _REMOVE_IDLE_CONSUMERS, 1, stream, group, min_idle, keep
    )
    return sorted(map(text, removed))


@dataclasses.dataclass(frozen=True)
class Trimming:
    """Entries trimmed from a stream before its consumer group read them."""

    first_entry: str
    """The id of the stream's first entry: what the group will read next."""
    lost: int | None
    """How many were trimmed unread, or None when Redis does not tell."""


async def trimming_of(client: aioredis.Redis, stream: str, group: str) -> Trimming | None:
    """What ``group`` lost of ``stream`` to trimming; None when nothing (or no such group).

    Raises:
        redis.exceptions.ResponseError: ``stream`` is not a stream.
    """
    try:
        groups: Sequence[Mapping[Any, Any]] = await client.xinfo_groups(stream)
        info: Mapping[Any, Any] = await client.xinfo_stream(stream)
    except ResponseError as exc:
        if "no such key" not in str(exc):
            raise
        return None  # deleted: its group is created again, from the beginning
    record = next((each for each in groups if text(each["name"]) == group), None)
    if record is None:
        return None  # destroyed: created again when a read needs it
    lost = trimmed_unread(record, info)
    if lost == 0:
        return None
    return Trimming(text(info["first-entry"][0]), lost)
