"""The Redis bridge's upkeep of its consumer group: dead consumers, and trimmed events.

While a bridge runs in work mode, it checks its group every ``claim_idle /
2`` seconds (and once on entering) for what no read reveals: consumers long
gone that left nothing pending, removed so that their names do not pile
up, and events that ``maxlen`` trimmed before the group read them, which
are lost and reported once each. Used by the consumer loop
(``_redis_consumer``); never imports it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from redis.exceptions import ResponseError

from ._redis_wire import text, trimmed_unread

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["GroupUpkeep", "Trimming", "UpkeepOptions", "remove_idle_consumers", "trimming_of"]

# The bridge's own logger: what the upkeep logs, the bridge logs.
logger: Final = logging.getLogger("asyncsignals.redis")

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
# XINFO STREAM of KEYS[1] without the bodies of its first and last entries
# (the first entry's id only): those may be of any size.
_STREAM_INFO: Final = """
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local kept = {}
for i = 1, #info, 2 do
    local key, value = info[i], info[i + 1]
    if key == 'first-entry' and value then value = {value[1]} end
    if key ~= 'last-entry' then
        table.insert(kept, key)
        table.insert(kept, value)
    end
end
return kept
"""


class UpkeepOptions(Protocol):
    """The bridge's options the upkeep reads, each time it uses one (it never sets them)."""

    group: str
    consumer: str
    claim_idle: float


class GroupUpkeep:
    """Removes a group's dead consumers, and warns of the events trimmed before it read them.

    ``describe_bridge`` names the bridge in the logs, as it is named at the
    time of logging.
    """

    def __init__(
        self,
        options: UpkeepOptions,
        client: aioredis.Redis,
        describe_bridge: Callable[[], str],
    ) -> None:
        self._options = options
        self._client = client
        self._describe_bridge = describe_bridge
        # The first entry of each stream when its trimming was last reported:
        # each loss is reported once.
        self._trimmed_at: dict[str, str] = {}

    async def report_trimmed(self, streams: Iterable[str]) -> None:
        """Warn of the events trimmed (``maxlen``) from a stream before the group read them."""
        group = self._options.group
        for stream in streams:
            trimming = await trimming_of(self._client, stream, group)
            if trimming is None or self._trimmed_at.get(stream) == trimming.first_entry:
                continue
            self._trimmed_at[stream] = trimming.first_entry
            lost = trimming.lost
            logger.warning(
                "%s: consumer group %r fell behind the trimmed head of %s: %s trimmed "
                "(the publishers' maxlen) before the group read them, and are lost. Make "
                "maxlen hold what is published while every consumer may be down",
                self._describe_bridge(),
                group,
                stream,
                f"{lost} events were" if lost is not None else "events may have been",
            )

    async def remove_dead_consumers(self, streams: Iterable[str]) -> None:
        """Remove from the group the consumers long gone that left nothing pending.

        Each crashed or replaced process with a name of its own (the default
        names a process) would otherwise stay listed in the group for ever.
        """
        group = self._options.group
        min_idle = round(self._options.claim_idle * _DEAD_CONSUMER_IDLE * 1000)
        for stream in streams:
            removed = await remove_idle_consumers(
                self._client, stream, group, min_idle, self._options.consumer
            )
            if removed:
                logger.info(
                    "%s: removed from group %r of %s the consumers idle for over %.0f s with "
                    "nothing pending: %s",
                    self._describe_bridge(),
                    group,
                    stream,
                    min_idle / 1000,
                    ", ".join(removed),
                )


async def remove_idle_consumers(
    client: aioredis.Redis, stream: str, group: str, min_idle: int, keep: str
) -> list[str]:
    """Remove the consumers of ``group`` idle ``min_idle`` ms or more with nothing pending.

    Never ``keep`` (the caller's own name); returns the names removed. The
    check and the removal are one script, so a consumer that comes back
    and reads in between keeps its pending entries.
    """
    script = client.register_script(_REMOVE_IDLE_CONSUMERS)
    removed: list[bytes | str] = await script(keys=[stream], args=[group, min_idle, keep])
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
        reply: list[Any] = await client.register_script(_STREAM_INFO)(keys=[stream])
    except ResponseError as exc:
        if "no such key" not in str(exc):
            raise
        return None  # deleted: its group is created again, from the beginning
    info = {text(key): value for key, value in zip(reply[::2], reply[1::2], strict=True)}
    record = next((each for each in groups if text(each["name"]) == group), None)
    if record is None:
        return None  # destroyed: created again when a read needs it
    lost = trimmed_unread(record, info)
    if lost == 0:
        return None
    return Trimming(text(info["first-entry"][0]), lost)
