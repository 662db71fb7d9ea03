"""The Redis bridge's reads of stream entries, each bounded by the largest entry accepted.

Reading a stream entry transfers its whole body, and the bridge could check
an entry's size only once it held it: a few hostile or misconfigured
entries of tens of megabytes each, read in one batch, took the consumer's
memory up by as much. The reads here run in a server-side script that
measures each entry first, and replaces one larger than
``max_message_bytes`` (its fields and values together, less a small
allowance for the field names) by a marker holding its size
(:data:`OVERSIZED`): its body never leaves Redis, and the bridge
dead-letters it by id. A read thus brings in at most ``count`` entries of
at most ``max_message_bytes`` each.

Scripts cannot block: a bridge with nothing to read waits in a blocking
``XREADGROUP`` or ``XREAD`` of one entry (the consumer's, not made here),
the one read not bounded here; the decoder checks the size of what it
returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from ._redis_wire import OVERSIZED, text

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["BoundedReads", "Entries"]

# (stream, [(entry id, fields, or None for an entry deleted since it was read)])
Entries = list[tuple[str, list[tuple[str, dict[bytes, bytes] | None]]]]

# Field names are short (one, "event", on every entry the bridge writes).
_FIELD_NAMES_ALLOWANCE: Final = 256

# ARGV[1]: the read ("group", "stream" or "claim"), ARGV[2]: the largest
# entry accepted, in bytes of its fields and values; then that read's own.
_BOUNDED_READ: Final = """
local limit = tonumber(ARGV[2])
local function bounded(entries)
    for _, entry in ipairs(entries) do
        local fields = entry[2]
        if fields then
            local size = 0
            for i = 1, #fields do size = size + #fields[i] end
            if size > limit then entry[2] = {ARGV[3], tostring(size)} end
        end
    end
    return entries
end
local read = ARGV[1]
if read == 'claim' then
    -- ARGV[4..8]: group, consumer, min idle (ms), start, count
    local reply = redis.call(
        'XAUTOCLAIM', KEYS[1], ARGV[4], ARGV[5], ARGV[6], ARGV[7], 'COUNT', ARGV[8])
    return {reply[1], bounded(reply[2])}
end
local command = {}
if read == 'group' then
    -- ARGV[4..6]: group, consumer, count; ARGV[7..]: the id after which to read each stream
    command = {'XREADGROUP', 'GROUP', ARGV[4], ARGV[5], 'COUNT', ARGV[6], 'STREAMS'}
else
    -- ARGV[4]: count; ARGV[5..]: the id after which to read each stream
    command = {'XREAD', 'COUNT', ARGV[4], 'STREAMS'}
end
for _, key in ipairs(KEYS) do table.insert(command, key) end
for i = #ARGV - #KEYS + 1, #ARGV do table.insert(command, ARGV[i]) end
local reply = redis.call(unpack(command))
if not reply then return false end
for _, stream in ipairs(reply) do bounded(stream[2]) end
return reply
"""


class BoundedReads:
    """XREADGROUP, XREAD and XAUTOCLAIM, none bringing in an entry over ``max_message_bytes``."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._script = client.register_script(_BOUNDED_READ)

    async def _run(self, keys: Sequence[str], read: str, max_message_bytes: int, *args: Any) -> Any:
        limit = max_message_bytes + _FIELD_NAMES_ALLOWANCE
        return await self._script(keys=list(keys), args=[read, limit, OVERSIZED, *args])

    async def read_group(
        self,
        group: str,
        consumer: str,
        after: Mapping[str, str],
        count: int,
        max_message_bytes: int,
    ) -> Entries:
        """XREADGROUP of ``count`` entries per stream, after each id of ``after`` (or ``>``)."""
        reply = await self._run(
            list(after), "group", max_message_bytes, group, consumer, count, *after.values()
        )
        return _entries_by_stream(reply)

    async def read(self, after: Mapping[str, str], count: int, max_message_bytes: int) -> Entries:
        """XREAD of ``count`` entries per stream, after each id of ``after``."""
        reply = await self._run(list(after), "stream", max_message_bytes, count, *after.values())
        return _entries_by_stream(reply)

    async def claim(
        self,
        stream: str,
        group: str,
        consumer: str,
        min_idle: int,
        start: str,
        count: int,
        max_message_bytes: int,
    ) -> tuple[str, list[tuple[str, dict[bytes, bytes] | None]]]:
        """XAUTOCLAIM: where the next claim starts, and the entries claimed."""
        next_start, claimed = await self._run(
            [stream], "claim", max_message_bytes, group, consumer, min_idle, start, count
        )
        return text(next_start), _entries(claimed)


def _entries_by_stream(reply: Any) -> Entries:
    return [(text(stream), _entries(entries)) for stream, entries in reply or ()]


def _entries(entries: Any) -> list[tuple[str, dict[bytes, bytes] | None]]:
    # A script's reply holds each entry's fields as one flat list.
    return [
        (text(entry_id), dict(zip(fields[::2], fields[1::2], strict=True)) if fields else None)
        for entry_id, fields in entries
    ]
