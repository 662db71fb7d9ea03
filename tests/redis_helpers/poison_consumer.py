"""A work-mode consumer in its own process that dies of one event, as a poison message kills.

Usage: ``python poison_consumer.py URL STREAM_PREFIX CONSUMER POISON MAX_DELIVERIES``.
With the bridge's default batch size and concurrency, each event's receiver
records the order id in the list ``<STREAM_PREFIX>:ran``; the event whose
order id is ``POISON`` ends the process at once (``os._exit``: no cleanup,
no acknowledgement), as a crash in native code or an out-of-memory kill does.
"""

from __future__ import annotations

import os
import sys

import anyio
import redis.asyncio as aioredis

from asyncsignals import Signal
from asyncsignals.redis import RedisBridge


async def main(
    url: str, stream_prefix: str, consumer: str, poison: int, max_deliveries: int
) -> None:
    """Consume ``order_shipped`` until killed, or until the poison event runs."""
    order_shipped = Signal(providing_args=["order_id"], name="order_shipped")
    client = aioredis.from_url(url)

    async def record(sender: object, order_id: int, **kwargs: object) -> None:
        await client.rpush(f"{stream_prefix}:ran", order_id)
        if order_id == poison:
            os._exit(1)

    order_shipped.connect(record)
    bridge = RedisBridge(
        client,
        app="shop",
        # The test publishes its events before this process first starts.
        start_from="beginning",
        consumer=consumer,
        stream_prefix=stream_prefix,
        max_deliveries=max_deliveries,
        block=0.05,
    )
    bridge.export(order_shipped)
    async with bridge:
        await anyio.sleep_forever()


if __name__ == "__main__":
    url, stream_prefix, consumer, poison, max_deliveries = sys.argv[1:6]
    anyio.run(
        main, url, stream_prefix, consumer, int(poison), int(max_deliveries), backend="asyncio"
    )
