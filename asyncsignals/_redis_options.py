"""The Redis bridge's options: their ranges, the client it is given, its default name.

Checked when a :class:`asyncsignals.redis.RedisBridge` is made, before it
holds anything: a bad option is a ``ValueError`` that names it.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis

from ._redis_wire import Start

__all__ = ["check_limits", "checked_client", "process_name"]


def check_limits(
    *,
    batch_size: int,
    max_concurrent: int,
    max_message_bytes: int,
    maxlen: int | None,
    max_deliveries: int | None,
    claim_idle: float,
    block: float,
    send_timeout: float | None,
    start_from: Start,
    grace_period: float,
) -> None:
    """Refuse, naming it, a bridge option of the wrong type or out of its range.

    Raises:
        TypeError: a count (a batch size, a length, a number of deliveries)
            is not an int: a bool, a float or a str.
        ValueError: an option is out of its range.
    """
    for argument, count, optional in (
        ("batch_size", batch_size, False),
        ("max_concurrent", max_concurrent, False),
        ("max_message_bytes", max_message_bytes, False),
        ("maxlen", maxlen, True),
        ("max_deliveries", max_deliveries, True),
    ):
        if optional and count is None:
            continue
        # bool is an int to Python, never a count to a reader of the call.
        if not isinstance(count, int) or isinstance(count, bool):
            allowed = "a whole number (an int), or None" if optional else "a whole number (an int)"
            raise TypeError(f"{argument} must be {allowed}, got {count!r}")
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
            f"max_deliveries must be at least 1 or None (retry for ever), got {max_deliveries!r}"
        )
    timeouts = [("claim_idle", claim_idle), ("block", block)]
    if send_timeout is not None:
        timeouts.append(("send_timeout", send_timeout))
    for argument, seconds in timeouts:
        if not (0 < seconds < math.inf):
            raise ValueError(f"{argument} must be a number of seconds > 0, got {seconds!r}")
    if start_from not in ("new", "beginning"):
        raise ValueError(f"start_from must be 'new' or 'beginning', got {start_from!r}")
    if not grace_period >= 0:
        raise ValueError(f"grace_period must be a number of seconds >= 0, got {grace_period!r}")


def checked_client(redis: aioredis.Redis | str, block: float) -> aioredis.Redis:
    """The bridge's client: ``redis``, or one for that URL, once checked for the bridge's reads.

    Raises:
        ValueError: the client decodes responses, or times out reads that block
            for ``block`` seconds.
    """
    client = aioredis.from_url(redis) if isinstance(redis, str) else redis
    options: Mapping[str, Any] = client.connection_pool.connection_kwargs
    # Either protocol will do (the replies of both are read), but
    # decoded responses would let a hostile entry break decoding.
    if options.get("decode_responses"):
        raise ValueError(
            "RedisBridge needs a client with decode_responses=False (the default), "
            "or a URL: it reads raw bytes so that a hostile entry cannot break decoding"
        )
    socket_timeout: float | None = options.get("socket_timeout")
    if socket_timeout is not None and block >= socket_timeout:
        raise ValueError(
            f"block={block!r} s is not shorter than the client's socket_timeout="
            f"{socket_timeout!r} s: every read that waits for new events would time out "
            "as if Redis were down. Pass a shorter block, or make the client with a "
            "longer socket_timeout (or none), leaving a margin for the network"
        )
    return client


def process_name() -> str:
    """The default consumer name: this host and process."""
    return f"{socket.gethostname()}-{os.getpid()}"
