"""A work-mode consumer in its own process, for the tests that kill one.

Usage: ``python consumer.py URL STREAM_PREFIX GROUP CONSUMER``. Each event's
receiver records the order id in the list ``<STREAM_PREFIX>:ran`` and then
takes a while, so that a kill lands between a receiver running and its
acknowledgement: the test counts those as duplicates.
"""

from __future__ import annotations

import sys

import anyio
import redis.asyncio as aioredis

from asyncsignals import Signal
from asyncsignals.redis import RedisBridge

# How long each receiver takes after recording its event.
WORK_SECONDS = 0.05


async def main(url: str, stream_prefix: str, group: str, consumer: str) -> None:
    """Consume ``order_shipped`` until killed."""
    order_shipped = Signal(providing_args=["order_id"], name="order_shipped")
    client = aioredis.from_url(url)

    async def record(sender: object, order_id: int, **kwargs: object) -> None:
        await client.rpush(f"{stream_prefix}:ran", order_id)
        await anyio.sleep(WORK_SECONDS)

    order_shipped.connect(record)
    bridge = RedisBridge(
        client,
        app="shop",
        # The test publishes its events before this process first starts.
        start_from="beginning",
        group=group,
        consumer=consumer,
        stream_prefix=stream_prefix,
        claim_idle=60,
        max_concurrent=4,
        batch_size=4,
    )
    bridge.export(order_shipped)
    async with bridge:
        await client.rpush(f"{stream_prefix}:ready", consumer)
        await anyio.sleep_forever()


if __name__ == "__main__":
    url, stream_prefix, group, consumer = sys.argv[1:5]
    anyio.run(main, url, stream_prefix, group, consumer, backend="asyncio")
