"""A bridge made before the process forks, then entered in the parent and in the child.

Usage: ``python forking_consumer.py URL STREAM_PREFIX``. As a server that
preloads the application does, the bridge is built once, at import time;
the process then forks, and each of the two processes enters the bridge,
records ``<pid> <consumer name>`` in the list ``<STREAM_PREFIX>:consumers``
and leaves. The parent waits for the child.
"""

from __future__ import annotations

import os
import sys

import anyio
import redis.asyncio as aioredis

from asyncsignals import Signal
from asyncsignals.redis import RedisBridge

order_shipped = Signal(providing_args=["order_id"], name="order_shipped")


async def enter_and_record(bridge: RedisBridge, url: str, stream_prefix: str) -> None:
    """Enter the bridge in this process and record which consumer it is."""
    client = aioredis.from_url(url)
    async with bridge:
        await client.rpush(f"{stream_prefix}:consumers", f"{os.getpid()} {bridge.consumer}")
    await client.aclose()


def main(url: str, stream_prefix: str) -> None:
    """Build the bridge, fork, and enter it on both sides."""
    bridge = RedisBridge(url, app="shop", stream_prefix=stream_prefix, block=0.05)
    bridge.export(order_shipped)
    child = os.fork()
    anyio.run(enter_and_record, bridge, url, stream_prefix, backend="asyncio")
    if child == 0:
        os._exit(0)
    _, status = os.waitpid(child, 0)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main(*sys.argv[1:3])
