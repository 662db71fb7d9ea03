"""The Redis bridge, against a real Redis: the session's ``redis_url``.

That is the Redis at ``ASYNCSIGNALS_TEST_REDIS`` (default 127.0.0.1:6379) when
it answers, else a throwaway ``redis-server`` the session starts and stops;
with no ``redis-server`` installed the tests fail saying how to install it.
asyncio only: redis-py's async client does not run on trio. Every test uses
its own stream prefix and deletes its keys.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import gc
import inspect
import json
import logging
import math
import signal as os_signal
import subprocess
import sys
import time
import uuid
import weakref
import zoneinfo
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import urlsplit

import anyio
import pydantic
import pytest
import redis
import redis.asyncio as aioredis
from helpers import TEST_TIMEOUT, eventually, leave_right_after_a_cancel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis_helpers.server import free_port, server_command

from asyncsignals import Signal, _redis_envelope
from asyncsignals._redis_maintenance import remove_idle_consumers, trimming_of
from asyncsignals._redis_wire import stream_entries, text, trimmed_unread
from asyncsignals.redis import (
    BridgeClosedError,
    Deduplicator,
    Envelope,
    Origin,
    RedisBridge,
    TypedJSON,
    current_event,
)

pytestmark = pytest.mark.anyio

CONSUMER_SCRIPT = Path(__file__).parent / "redis_helpers" / "consumer.py"
POISON_CONSUMER_SCRIPT = Path(__file__).parent / "redis_helpers" / "poison_consumer.py"
FORKING_CONSUMER_SCRIPT = Path(__file__).parent / "redis_helpers" / "forking_consumer.py"
TRACED_PUBLISHER_SCRIPT = Path(__file__).parent / "redis_helpers" / "traced_publisher.py"
# For the tests of what a bridge refuses before it connects: no server needed.
UNUSED_URL = "redis://127.0.0.1:6379/0"
# The application every test's bridges belong to (its streams are the test's own).
APP = "shop"


@pytest.fixture
def anyio_backend() -> str:
    """asyncio only: redis.asyncio does not run on trio."""
    return "asyncio"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A connected client of the test Redis (the session's ``redis_url``)."""
    connection = aioredis.from_url(redis_url)
    await connection.ping()
    yield connection
    await connection.aclose()


@pytest.fixture
async def prefix(client: aioredis.Redis) -> AsyncIterator[str]:
    """A stream prefix of this test alone; its keys are deleted afterwards."""
    stream_prefix = f"asyncsignals-test:{uuid.uuid4().hex}"
    yield stream_prefix
    keys = [key async for key in client.scan_iter(match=f"{stream_prefix}:*")]
    if keys:
        await client.delete(*keys)


@pytest.fixture
def order_shipped() -> Iterator[Signal[..., Any]]:
    """A fresh named signal with a declared payload."""
    signal: Signal[..., Any] = Signal(providing_args=["order_id"], name="order_shipped")
    yield signal
    signal.disconnect(dispatch_uid="test")


def make_bridge(url: str, prefix: str, **options: Any) -> RedisBridge:
    options.setdefault("block", 0.05)
    return RedisBridge(url, app=APP, stream_prefix=prefix, **options)


def recorder(signal: Signal[..., Any]) -> list[tuple[object, dict[str, Any]]]:
    """Connect a receiver that records (sender, payload); return the records."""
    calls: list[tuple[object, dict[str, Any]]] = []

    def record(sender: object, **payload: Any) -> None:
        payload.pop("signal", None)
        calls.append((sender, payload))

    signal.connect(record, weak=False, dispatch_uid="test")
    return calls


async def pending(client: aioredis.Redis, stream: str, group: str = APP) -> int:
    summary = await client.xpending(stream, group)
    count: int = summary["pending"]
    return count


async def eventually_async(read: Callable[[], Awaitable[object]], expected: object) -> None:
    """Wait until ``await read()`` gives ``expected``; the test's timeout bounds the wait."""
    while await read() != expected:  # noqa: ASYNC110 - the state is in Redis
        await anyio.sleep(0.01)


async def dead_letters(client: aioredis.Redis, prefix: str) -> list[dict[bytes, bytes]]:
    """The fields of every entry of the test's dead-letter stream, oldest first."""
    entries: list[tuple[Any, dict[bytes, bytes]]] = await client.xrange(f"{prefix}:dead")  # type: ignore[assignment]
    return [fields for _, fields in entries]


def stream_of(prefix: str, name: str = "order_shipped") -> str:
    return f"{prefix}:signal:{name}"


async def left_pending_by_a_stopped_consumer(
    url: str, client: aioredis.Redis, prefix: str, signal: Signal[..., Any], order_ids: list[int]
) -> list[str]:
    """Publish one event per order id, read them all as consumer "gone", and return their ids."""
    publisher = make_bridge(url, prefix)
    publisher.export(signal, consume=False)
    async with publisher:
        ids = [await publisher.publish(signal, "shop", order_id=each) for each in order_ids]
    stream = stream_of(prefix)
    await client.xgroup_create(stream, APP, id="0")
    await client.xreadgroup(APP, "gone", {stream: ">"}, count=len(order_ids))
    return ids


# -- work mode --------------------------------------------------------------


async def test_work_event_round_trip_is_acknowledged(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A published work event runs the local receivers once and is then acknowledged."""
    calls = recorder(order_shipped)
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped)
    async with bridge:
        entry_id = await bridge.publish(order_shipped, "shop", order_id=1)
        await eventually(lambda: bridge.delivered == 1)
        # The acknowledgement follows the delivery; the test's timeout bounds the wait.
        while await pending(client, stream_of(prefix)) != 0:  # noqa: ASYNC110 - the state is in Redis
            await anyio.sleep(0.001)
    assert calls == [("shop", {"order_id": 1})]
    assert isinstance(entry_id, str)
    assert "1 delivered" in repr(bridge)
    assert "closed" in repr(bridge)


async def test_sender_names_match_receivers_connected_for_that_name(
    redis_url: str, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A sender travels as an interned name, so connect(sender="shop") matches it."""
    for_shop: list[object] = []
    order_shipped.connect(
        lambda sender, **kwargs: for_shop.append(sender),
        sender="shop",
        weak=False,
        dispatch_uid="test",
    )
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped)
    async with bridge:
        await bridge.publish(order_shipped, "shop", order_id=1)
        await bridge.publish(order_shipped, "other", order_id=2)
        await bridge.publish(order_shipped, None, order_id=3)
        await eventually(lambda: bridge.delivered == 3)
    assert for_shop == ["shop"]


async def test_each_work_event_runs_in_one_consumer_of_the_group(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """Two consumers of one group share the events: each runs exactly once when none fails."""
    calls = recorder(order_shipped)
    first = make_bridge(redis_url, prefix, consumer="first")
    second = RedisBridge(client, app=APP, consumer="second", stream_prefix=prefix, block=0.05)
    for bridge in (first, second):
        bridge.export(order_shipped)
    async with first, second:
        for order_id in range(40):
            await first.publish(order_shipped, "shop", order_id=order_id)
        await eventually(lambda: first.delivered + second.delivered == 40)
    assert sorted(payload["order_id"] for _, payload in calls) == list(range(40))
    assert await pending(client, stream_of(prefix)) == 0
    assert await client.ping(), "a client passed in stays open"


async def test_a_dropped_connection_does_not_rerun_an_entry_in_flight(
    redis_url: str,
    client: aioredis.Redis,
    prefix: str,
    order_shipped: Signal[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After a reconnection the bridge re-reads its pending entries, skipping those it runs."""
    calls: list[int] = []
    release = anyio.Event()

    async def wait_for_release(order_id: int, **kwargs: Any) -> None:
        calls.append(order_id)
        await release.wait()

    order_shipped.connect(wait_for_release, weak=False, dispatch_uid="test")
    name = f"asyncsignals-test-{uuid.uuid4().hex}"
    own_client = aioredis.from_url(redis_url, client_name=name)
    bridge = RedisBridge(own_client, app=APP, stream_prefix=prefix, block=0.05)
    bridge.export(order_shipped)
    try:
        with caplog.at_level(logging.WARNING, "asyncsignals.redis"):
            async with bridge:
                await bridge.publish(order_shipped, "shop", order_id=1)
                await eventually(lambda: calls == [1])
                for connection in await client.client_list():
                    if connection["name"] == name:
                        await client.client_kill_filter(_id=connection["id"])
                await eventually(lambda: "Redis unavailable" in caplog.text)
                await anyio.sleep(0.2)
                release.set()
                await eventually(lambda: bridge.delivered == 1)
    finally:
        await own_client.aclose()
    assert calls == [1]
    assert await pending(client, stream_of(prefix)) == 0


async def test_a_new_group_starts_with_the_events_published_from_then_on(
    redis_url: str, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """By default a new service does not replay the stream's history; once started, it resumes."""
    calls = recorder(order_shipped)
    publisher = make_bridge(redis_url, prefix)
    publisher.export(order_shipped, consume=False)
    consumer = make_bridge(redis_url, prefix)
    consumer.export(order_shipped)
    async with publisher:
        await publisher.publish(order_shipped, "shop", order_id=1)  # history
        async with consumer:
            await publisher.publish(order_shipped, "shop", order_id=2)
            await eventually(lambda: consumer.delivered == 1)
        await publisher.publish(order_shipped, "shop", order_id=3)  # while it is down
        async with consumer:
            await eventually(lambda: consumer.delivered == 2)
    assert [payload["order_id"] for _, payload in calls] == [2, 3]


async def test_a_new_group_started_from_the_beginning_delivers_the_history(
    redis_url: str, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """start_from="beginning": events published before the group existed are delivered too."""
    calls = recorder(order_shipped)
    publisher = make_bridge(redis_url, prefix)
    publisher.export(order_shipped, consume=False)
    async with publisher:
        await publisher.publish(order_shipped, "shop", order_id=7)
    assert calls == []
    consumer = make_bridge(redis_url, prefix, start_from="beginning")
    consumer.export(order_shipped)
    async with consumer:
        await eventually(lambda: consumer.delivered == 1)
    assert calls == [("shop", {"order_id": 7})]


async def test_restart_resumes_from_the_groups_position(
    redis_url: str, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A bridge started again reads only what its group has not read yet."""
    calls = recorder(order_shipped)
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped)
    async with bridge:
        for order_id in range(3):
            await bridge.publish(order_shipped, "shop", order_id=order_id)
        await eventually(lambda: bridge.delivered == 3)
    publisher = make_bridge(redis_url, prefix)
    publisher.export(order_shipped, consume=False)
    async with publisher:
        for order_id in range(3, 6):
            await publisher.publish(order_shipped, "shop", order_id=order_id)
    restarted = make_bridge(redis_url, prefix)
    restarted.export(order_shipped)
    async with restarted:
        await eventually(lambda: restarted.delivered == 3)
        await anyio.sleep(0.1)
    assert [payload["order_id"] for _, payload in calls] == list(range(6))
    assert restarted.delivered == 3


async def test_acknowledged_only_after_the_send_completes(
    redis_url: str,
    client: aioredis.Redis,
    prefix: str,
    order_shipped: Signal[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A receiver still running when the grace period ends leaves its entry pending."""
    started = anyio.Event()

    async def hang(**kwargs: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    order_shipped.connect(hang, weak=False, dispatch_uid="test")
    bridge = make_bridge(redis_url, prefix, consumer="hanging", grace_period=0.1)
    bridge.export(order_shipped)
    with caplog.at_level(logging.WARNING, "asyncsignals.redis"):
        async with bridge:
            await bridge.publish(order_shipped, "shop", order_id=1)
            await started.wait()
    assert bridge.delivered == 0
    assert await pending(client, stream_of(prefix)) == 1
    assert "stay pending" in caplog.text


async def test_shutdown_lets_running_sends_finish_and_acknowledges_them(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """Within the grace period a running send completes and is acknowledged."""
    started = anyio.Event()
    finished: list[int] = []

    async def slow(order_id: int, **kwargs: Any) -> None:
        started.set()
        await anyio.sleep(0.2)
        finished.append(order_id)

    order_shipped.connect(slow, weak=False, dispatch_uid="test")
    bridge = make_bridge(redis_url, prefix, grace_period=3)
    bridge.export(order_shipped)
    async with bridge:
        await bridge.publish(order_shipped, "shop", order_id=1)
        await started.wait()
    assert finished == [1]
    assert await pending(client, stream_of(prefix)) == 0


async def test_queued_entries_stay_pending_at_shutdown(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """Entries read but not started at shutdown are not run and stay pending."""
    started = anyio.Event()

    async def slow(**kwargs: Any) -> None:
        started.set()
        await anyio.sleep(0.3)

    order_shipped.connect(slow, weak=False, dispatch_uid="test")
    bridge = make_bridge(redis_url, prefix, max_concurrent=1, batch_size=4, grace_period=3)
    bridge.export(order_shipped)
    async with bridge:
        for order_id in range(4):
            await bridge.publish(order_shipped, "shop", order_id=order_id)
        await started.wait()
        await anyio.sleep(0.05)
    assert bridge.delivered == 1
    assert await pending(client, stream_of(prefix)) == 3


async def test_same_consumer_rereads_its_own_pending_entries_at_start(
    redis_url: str, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A consumer restarted under its name re-runs what it left pending, without waiting."""
    started = anyio.Event()
    calls: list[int] = []

    async def hang_once(order_id: int, **kwargs: Any) -> None:
        calls.append(order_id)
        if len(calls) == 1:
            started.set()
            await anyio.sleep_forever()

    order_shipped.connect(hang_once, weak=False, dispatch_uid="test")
    bridge = make_bridge(redis_url, prefix, consumer="worker-1", grace_period=0)
    bridge.export(order_shipped)
    async with bridge:
        await bridge.publish(order_shipped, "shop", order_id=5)
        await started.wait()
    again = make_bridge(redis_url, prefix, consumer="worker-1", claim_idle=60)
    again.export(order_shipped)
    async with again:
        await eventually(lambda: again.delivered == 1)
    assert calls == [5, 5]


async def test_idle_entries_of_a_stopped_consumer_are_claimed(
    redis_url: str,
    client: aioredis.Redis,
    prefix: str,
    order_shipped: Signal[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Entries pending on another consumer for claim_idle are claimed and run."""
    calls = recorder(order_shipped)
    stream = stream_of(prefix)
    await left_pending_by_a_stopped_consumer(redis_url, client, prefix, order_shipped, [0, 1, 2])
    bridge = make_bridge(redis_url, prefix, consumer="survivor", claim_idle=0.2, batch_size=2)
    bridge.export(order_shipped)
    with caplog.at_level(logging.INFO, "asyncsignals.redis"):
        async with bridge:
            await eventually(lambda: bridge.delivered == 3)
    assert sorted(payload["order_id"] for _, payload in calls) == [0, 1, 2]
    assert await pending(client, stream) == 0
    assert "claimed" in caplog.text


async def test_an_entry_past_max_deliveries_is_dead_lettered_when_claimed(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A poison entry that other consumers took and never finished is dead-lettered, not run."""
    calls = recorder(order_shipped)
    stream = stream_of(prefix)
    poison, _ = await left_pending_by_a_stopped_consumer(
        redis_url, client, prefix, order_shipped, [1, 2]
    )
    # Read in a batch, then taken alone by three consumers that each died of it.
    await client.xclaim(stream, APP, "gone", 0, [poison], retrycount=4)
    bridge = make_bridge(redis_url, prefix, consumer="survivor", claim_idle=0.1, max_deliveries=3)
    bridge.export(order_shipped)
    async with bridge:
        await eventually(lambda: bridge.delivered == 1 and bridge.dead_lettered == 1)
    assert [payload["order_id"] for _, payload in calls] == [2]
    [dead] = await dead_letters(client, prefix)
    assert dead[b"id"] == poison.encode()
    assert b"timed out, 3 times while it ran alone (max_deliveries=3)" in dead[b"reason"]
    assert json.loads(dead[b"field:event"])["payload"] == {"order_id": 1}
    assert await pending(client, stream) == 0


async def test_own_pending_entries_past_max_deliveries_are_dead_lettered_at_start(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """An entry that hung this consumer at every start is dead-lettered at the next one."""
    runs: list[int] = []

    async def hang(order_id: int, **kwargs: Any) -> None:
        runs.append(order_id)
        await anyio.sleep_forever()

    order_shipped.connect(hang, weak=False, dispatch_uid="test")

    async def run_until_the_send_hangs(publish: bool) -> None:
        """One run of the process, stopped while the send hangs."""
        runs_before = len(runs)
        bridge = make_bridge(
            redis_url, prefix, consumer="worker-1", grace_period=0, max_deliveries=2
        )
        bridge.export(order_shipped)
        async with bridge:
            if publish:
                await bridge.publish(order_shipped, "shop", order_id=7)
            await eventually(lambda: len(runs) > runs_before)

    await run_until_the_send_hangs(publish=True)
    # Read in a batch first, then taken alone at each start.
    await run_until_the_send_hangs(publish=False)
    await run_until_the_send_hangs(publish=False)
    again = make_bridge(redis_url, prefix, consumer="worker-1", max_deliveries=2)
    again.export(order_shipped)
    async with again:
        await eventually(lambda: again.dead_lettered == 1)
    assert runs == [7, 7, 7]
    [dead] = await dead_letters(client, prefix)
    assert b"timed out, 2 times while it ran alone" in dead[b"reason"]
    assert await pending(client, stream_of(prefix)) == 0


def hang_on_order_1(signal: Signal[..., Any]) -> list[int]:
    """Connect a receiver that records each order id and hangs on order 1; return the ids."""
    ran: list[int] = []

    async def hang_on_the_first(order_id: int, **kwargs: Any) -> None:
        ran.append(order_id)
        if order_id == 1:
            await anyio.sleep_forever()

    signal.connect(hang_on_the_first, weak=False, dispatch_uid="test")
    return ran


async def test_a_hung_send_times_out_frees_its_worker_and_counts_as_a_delivery(
    redis_url: str,
    client: aioredis.Redis,
    prefix: str,
    order_shipped: Signal[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A send past send_timeout is cancelled: the events behind it run; it is dead-lettered."""
    ran = hang_on_order_1(order_shipped)
    # One worker: without a deadline the hung send would hold every event.
    bridge = make_bridge(
        redis_url,
        prefix,
        max_concurrent=1,
        send_timeout=0.1,
        claim_idle=0.2,
        max_deliveries=1,
    )
    bridge.export(order_shipped)
    with caplog.at_level(logging.ERROR, "asyncsignals.redis"):
        async with bridge:
            for order_id in (1, 2, 3):
                await bridge.publish(order_shipped, "shop", order_id=order_id)
            await eventually(lambda: bridge.delivered == 2)
            # Taken again alone once idle, it hangs again: dead-lettered next.
            await eventually(lambda: bridge.dead_lettered == 1)
    assert ran[:3] == [1, 2, 3]
    assert ran.count(1) == 2
    assert bridge.timed_out == 2
    assert "did not complete within send_timeout=0.1 s" in caplog.text
    [dead] = await dead_letters(client, prefix)
    assert json.loads(dead[b"field:event"])["payload"] == {"order_id": 1}
    assert await pending(client, stream_of(prefix)) == 0


async def test_a_hung_broadcast_send_is_dropped_after_send_timeout(
    redis_url: str, prefix: str, order_shipped: Signal[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A broadcast send past send_timeout is cancelled and dropped; the next event runs."""
    ran = hang_on_order_1(order_shipped)
    bridge = make_bridge(redis_url, prefix, max_concurrent=1, send_timeout=0.1)
    bridge.export(order_shipped, mode="broadcast")
    with caplog.at_level(logging.ERROR, "asyncsignals.redis"):
        async with bridge:
            await bridge.publish(order_shipped, "shop", order_id=1)
            await bridge.publish(order_shipped, "shop", order_id=2)
            await eventually(lambda: bridge.delivered == 1)
    assert ran == [1, 2]
    assert bridge.timed_out == 1
    assert "it is dropped (broadcast)" in caplog.text


async def test_each_send_has_its_own_deadline(
    redis_url: str, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A send that started later is not cancelled at an earlier send's deadline."""
    hung = anyio.Event()

    async def hang_or_take_a_while(sender: object, order_id: int, **kwargs: Any) -> None:
        if order_id == 1:
            hung.set()
            await anyio.sleep_forever()
        await anyio.sleep(0.6)

    order_shipped.connect(hang_or_take_a_while, weak=False, dispatch_uid="test")
    bridge = make_bridge(redis_url, prefix, send_timeout=1.0, claim_idle=60)
    bridge.export(order_shipped)
    async with bridge:
        await bridge.publish(order_shipped, "shop", order_id=1)
        await hung.wait()
        await anyio.sleep(0.6)
        # Runs from 0.6 s to 1.2 s after the first, past its deadline (1 s).
        await bridge.publish(order_shipped, "shop", order_id=2)
        await eventually(lambda: bridge.timed_out == 1)
        await eventually(lambda: bridge.delivered == 1)
    assert bridge.timed_out == 1


async def test_sends_that_suspend_run_max_concurrent_at_once(
    redis_url: str, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """Entries read in one batch whose receivers suspend each get a worker, up to the limit."""
    running: set[int] = set()
    most = 0
    all_in = anyio.Event()

    async def wait_for_the_others(sender: object, order_id: int, **kwargs: Any) -> None:
        nonlocal most
        running.add(order_id)
        most = max(most, len(running))
        if len(running) == 4:
            all_in.set()
        await all_in.wait()
        await anyio.sleep(0.01)
        running.discard(order_id)

    order_shipped.connect(wait_for_the_others, weak=False, dispatch_uid="test")
    bridge = make_bridge(redis_url, prefix, max_concurrent=4, start_from="beginning")
    bridge.export(order_shipped)
    async with bridge:
        await bridge.publish(order_shipped, "shop", order_id=0)
        await eventually(lambda: len(running) == 1)
        for order_id in range(1, 9):
            await bridge.publish(order_shipped, "shop", order_id=order_id)
        await eventually(lambda: bridge.delivered == 9)
    assert most == 4


async def test_entries_whose_receivers_never_suspend_run_a_batch_in_one_task(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A batch of entries whose sends complete without suspending wakes one worker, not one each."""
    tasks: list[object] = []

    def note_the_task(sender: object, order_id: int, **kwargs: Any) -> None:
        tasks.append(asyncio.current_task())

    order_shipped.connect(note_the_task, weak=False, dispatch_uid="test")
    publisher = make_bridge(redis_url, prefix)
    publisher.export(order_shipped, consume=False)
    async with publisher:
        for order_id in range(16):
            await publisher.publish(order_shipped, "shop", order_id=order_id)
    bridge = make_bridge(redis_url, prefix, start_from="beginning", batch_size=16)
    bridge.export(order_shipped)
    async with bridge:
        await eventually(lambda: bridge.delivered == 16)
    assert len(tasks) == 16
    assert len(set(tasks)) == 1
    assert await pending(client, stream_of(prefix)) == 0


def test_send_timeout_none_sets_no_limit() -> None:
    """send_timeout=None lets every send run as long as it takes."""
    assert RedisBridge(UNUSED_URL, app=APP, send_timeout=None).send_timeout is None


async def test_max_deliveries_none_retries_for_ever(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """With max_deliveries=None an entry delivered many times still runs."""
    calls = recorder(order_shipped)
    stream = stream_of(prefix)
    [entry_id] = await left_pending_by_a_stopped_consumer(
        redis_url, client, prefix, order_shipped, [1]
    )
    await client.xclaim(stream, APP, "gone", 0, [entry_id], retrycount=1000)
    bridge = make_bridge(
        redis_url, prefix, consumer="survivor", claim_idle=0.1, max_deliveries=None
    )
    bridge.export(order_shipped)
    async with bridge:
        await eventually(lambda: bridge.delivered == 1)
    assert [payload["order_id"] for _, payload in calls] == [1]
    assert bridge.dead_lettered == 0


async def test_a_long_send_is_not_claimed_by_another_consumer(
    redis_url: str, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A consumer keeps the entries it is running from looking idle: no duplicate."""
    calls: list[int] = []

    async def slow(order_id: int, **kwargs: Any) -> None:
        calls.append(order_id)
        await anyio.sleep(0.8)

    order_shipped.connect(slow, weak=False, dispatch_uid="test")
    first = make_bridge(redis_url, prefix, consumer="first", claim_idle=0.2)
    first.export(order_shipped)
    second = make_bridge(redis_url, prefix, consumer="second", claim_idle=0.2)
    second.export(order_shipped)
    async with first:
        await first.publish(order_shipped, "shop", order_id=1)
        await eventually(lambda: calls == [1])
        async with second:
            await eventually(lambda: first.delivered == 1)
    assert calls == [1]


async def test_entries_claimed_one_at_a_time_are_not_claimed_again_while_they_run(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """Slow claimed entries, run one by one, stay fresh: another consumer takes none of them."""
    runs: list[int] = []

    async def slow(order_id: int, **kwargs: Any) -> None:
        runs.append(order_id)
        await anyio.sleep(0.5)

    order_shipped.connect(slow, weak=False, dispatch_uid="test")
    await left_pending_by_a_stopped_consumer(redis_url, client, prefix, order_shipped, [1, 2, 3])
    first = make_bridge(redis_url, prefix, consumer="first", claim_idle=0.2)
    first.export(order_shipped)
    second = make_bridge(redis_url, prefix, consumer="second", claim_idle=0.2)
    second.export(order_shipped)
    async with first:
        await eventually(lambda: len(runs) == 3)
        async with second:
            await eventually(lambda: first.delivered == 3)
    assert sorted(runs) == [1, 2, 3]
    assert await pending(client, stream_of(prefix)) == 0


async def test_a_killed_consumer_loses_no_event(
    redis_url: str, client: aioredis.Redis, prefix: str
) -> None:
    """SIGKILL mid-stream: another consumer claims what was pending; all run at least once."""
    order_shipped: Signal[..., Any] = Signal(providing_args=["order_id"], name="order_shipped")
    local: list[int] = []

    def record(order_id: int, **kwargs: Any) -> None:
        local.append(order_id)

    order_shipped.connect(record)
    events = 60
    publisher = make_bridge(redis_url, prefix)
    publisher.export(order_shipped, consume=False)
    async with publisher:
        for order_id in range(events):
            await publisher.publish(order_shipped, "shop", order_id=order_id)
    process = await anyio.open_process(
        [sys.executable, str(CONSUMER_SCRIPT), redis_url, prefix, APP, "doomed"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=None,
    )
    async with process:
        while await client.llen(f"{prefix}:ran") < 8:  # noqa: ASYNC110
            await anyio.sleep(0.01)
        process.send_signal(os_signal.SIGKILL)
        assert await process.wait() == -os_signal.SIGKILL
    ran_there = [int(order_id) for order_id in await client.lrange(f"{prefix}:ran", 0, -1)]
    consumers = {
        consumer["name"]: consumer["pending"]
        for consumer in await client.xinfo_consumers(stream_of(prefix), APP)
    }
    assert consumers[b"doomed"] > 0, "the kill must leave entries pending"
    survivor = make_bridge(redis_url, prefix, consumer="survivor", claim_idle=0.2)
    survivor.export(order_shipped)
    async with survivor:
        await eventually(lambda: set(ran_there) | set(local) == set(range(events)))
        await eventually(lambda: survivor.delivered == len(local))
    assert await pending(client, stream_of(prefix)) == 0
    duplicates = len(ran_there) + len(local) - events
    print(f"killed consumer: {events} events, {duplicates} delivered twice")
    assert duplicates >= 0
    assert len(set(local)) == len(local), "the survivor ran each event once"


async def test_only_the_event_that_kills_its_consumer_is_dead_lettered(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A process killed by one event of a batch: only that event is dead-lettered, the rest run."""
    calls = recorder(order_shipped)
    events, poison = 16, 5
    publisher = make_bridge(redis_url, prefix)
    publisher.export(order_shipped, consume=False)
    async with publisher:
        for order_id in range(events):
            await publisher.publish(order_shipped, "shop", order_id=order_id)
    # The first process dies of the poison event read in its batch, the
    # second of the same event taken alone; with max_deliveries=1 the next
    # start dead-letters it (it killed a consumer that ran it alone).
    command = [sys.executable, str(POISON_CONSUMER_SCRIPT), redis_url, prefix, "worker"]
    for _ in range(2):
        process = await anyio.open_process(
            [*command, str(poison), "1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=None,
        )
        async with process:
            assert await process.wait() == 1
    ran_there = [int(order_id) for order_id in await client.lrange(f"{prefix}:ran", 0, -1)]
    assert ran_there.count(poison) == 2
    bridge = make_bridge(redis_url, prefix, consumer="worker", max_deliveries=1)
    bridge.export(order_shipped)
    async with bridge:
        await eventually_async(lambda: pending(client, stream_of(prefix)), 0)
    [dead] = await dead_letters(client, prefix)
    assert json.loads(dead[b"field:event"])["payload"] == {"order_id": poison}
    assert b"timed out, 1 times while it ran alone (max_deliveries=1)" in dead[b"reason"]
    ran_here = [payload["order_id"] for _, payload in calls]
    assert poison not in ran_here
    assert set(ran_there) | set(ran_here) == set(range(events))


async def test_workers_forked_after_the_bridge_was_made_have_consumer_names_of_their_own(
    redis_url: str, client: aioredis.Redis, prefix: str
) -> None:
    """A bridge built before a fork: parent and child each enter it under their own pid's name."""
    process = await anyio.open_process(
        [sys.executable, str(FORKING_CONSUMER_SCRIPT), redis_url, prefix],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=None,
    )
    async with process:
        assert await process.wait() == 0
    records: list[bytes] = await client.lrange(f"{prefix}:consumers", 0, -1)  # type: ignore[assignment]
    recorded = [record.decode().split() for record in records]
    assert len(recorded) == 2
    assert len({name for _, name in recorded}) == 2
    for pid, name in recorded:
        assert name.endswith(f"-{pid}")


# -- broadcast mode ---------------------------------------------------------


async def test_broadcast_reaches_every_bridge(
    redis_url: str, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """Every bridge exporting a broadcast signal runs every event once."""
    calls = recorder(order_shipped)
    first = make_bridge(redis_url, prefix, consumer="first")
    second = make_bridge(redis_url, prefix, consumer="second")
    for bridge in (first, second):
        bridge.export(order_shipped, mode="broadcast")
    async with first, second:
        for order_id in range(5):
            await first.publish(order_shipped, "shop", order_id=order_id)
        await eventually(lambda: first.delivered == 5 and second.delivered == 5)
    assert sorted(payload["order_id"] for _, payload in calls) == sorted(list(range(5)) * 2)


async def test_broadcast_is_at_most_once_across_restarts(
    redis_url: str, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A broadcast bridge runs only events published after it started reading."""
    calls = recorder(order_shipped)
    publisher = make_bridge(redis_url, prefix)
    publisher.export(order_shipped, mode="broadcast", consume=False)
    async with publisher:
        await publisher.publish(order_shipped, "shop", order_id=1)
        listener = make_bridge(redis_url, prefix)
        listener.export(order_shipped, mode="broadcast")
        async with listener:
            await anyio.sleep(0.1)
            await publisher.publish(order_shipped, "shop", order_id=2)
            await eventually(lambda: listener.delivered == 1)
    assert calls == [("shop", {"order_id": 2})]


# -- hostile and broken entries ---------------------------------------------


async def test_hostile_entries_go_to_the_dead_letter_stream(
    redis_url: str,
    client: aioredis.Redis,
    prefix: str,
    order_shipped: Signal[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Malformed, oversized, unknown and ill-fitting entries are dead-lettered; the rest run."""
    calls = recorder(order_shipped)
    stream = stream_of(prefix)

    def event(**changes: Any) -> bytes:
        message = {"v": 1, "signal": "order_shipped", "sender": "shop", "payload": {"order_id": 1}}
        message.update(changes)
        return json.dumps(message).encode()

    hostile: list[dict[Any, Any]] = [
        {b"event": b"{not json"},
        {b"event": b"\xff\xfe\x00"},
        {b"event": b"x" * 5000},
        {b"event": b"[" * 3000 + b"]" * 3000},
        {b"event": b'{"v": 1, "signal": "order_shipped", "sender": NaN, "payload": {}}'},
        {b"event": b"[1, 2]"},
        {b"other": event()},
        {b"event": event(), b"extra": b"1"},
        {b"event": event(v=3)},
        {b"event": event(signal="order_cancelled")},
        {b"event": event(sender=7)},
        {b"event": event(payload=[1])},
        {b"event": event(payload={"order_id": 1, "refund": 2})},
        {b"event": event(payload={})},
        {b"event": b"\x80\x04\x95" + b"cos\nsystem\n(S'echo pwned'\ntR."},
    ]
    bridge = make_bridge(redis_url, prefix, max_message_bytes=4096)
    bridge.export(order_shipped)
    with caplog.at_level(logging.ERROR, "asyncsignals.redis"):
        async with bridge:
            for fields in hostile:
                await client.xadd(stream, dict(fields))
            await client.xadd(stream, {b"event": event()})
            await eventually(lambda: bridge.delivered == 1 and bridge.dead_lettered == len(hostile))
    assert calls == [("shop", {"order_id": 1})]
    assert await pending(client, stream) == 0
    dead = await dead_letters(client, prefix)
    reasons = [fields[b"reason"].decode() for fields in dead]
    assert len(dead) == len(hostile)
    assert all(fields[b"stream"] == stream.encode() for fields in dead)
    for expected in ("not JSON", "oversized", "unknown signal", "does not fit", "wire version"):
        assert any(expected in reason for reason in reasons), expected
    assert caplog.text.count("moved to") == len(hostile)


async def sent_by_redis(client: aioredis.Redis) -> int:
    """Bytes Redis has sent to all its clients so far (its INFO stats)."""
    stats = await client.info("stats")
    sent: int = stats["total_net_output_bytes"]
    return sent


OVERSIZED_ENTRY = b"x" * 2_000_000


async def test_entries_over_max_message_bytes_are_dead_lettered_without_being_read(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A batch read leaves each entry over max_message_bytes in Redis; it is dead-lettered by id."""
    calls = recorder(order_shipped)
    stream = stream_of(prefix)
    await client.xgroup_create(stream, APP, id="0", mkstream=True)
    publisher = make_bridge(redis_url, prefix)
    publisher.export(order_shipped, consume=False)
    async with publisher:
        await publisher.publish(order_shipped, "shop", order_id=1)
        for _ in range(4):
            await client.xadd(stream, {b"event": OVERSIZED_ENTRY})
        await publisher.publish(order_shipped, "shop", order_id=2)
    bridge = make_bridge(redis_url, prefix, max_message_bytes=10_000)
    bridge.export(order_shipped)
    sent_before = await sent_by_redis(client)
    async with bridge:
        await eventually(lambda: bridge.delivered == 2 and bridge.dead_lettered == 4)
    # Reading the four entries would have sent 8 MB.
    assert await sent_by_redis(client) - sent_before < 200_000
    assert calls == [("shop", {"order_id": 1}), ("shop", {"order_id": 2})]
    dead = await dead_letters(client, prefix)
    assert [fields[b"reason"] for fields in dead] == [
        b"oversized: 2000005 bytes of fields, more than max_message_bytes=10000 "
        b"(left in Redis unread)"
    ] * 4
    assert all(not any(key.startswith(b"field:") for key in fields) for fields in dead)
    assert await pending(client, stream) == 0


async def test_claimed_entries_over_max_message_bytes_are_dead_lettered_without_being_read(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """Entries claimed from a stopped consumer are measured in Redis: the oversized stay there."""
    stream = stream_of(prefix)
    await client.xgroup_create(stream, APP, id="0", mkstream=True)
    for _ in range(2):
        await client.xadd(stream, {b"event": OVERSIZED_ENTRY})
    await client.xreadgroup(APP, "gone", {stream: ">"}, count=2)
    bridge = make_bridge(redis_url, prefix, max_message_bytes=10_000, claim_idle=0.05)
    bridge.export(order_shipped)
    sent_before = await sent_by_redis(client)
    async with bridge:
        await eventually(lambda: bridge.dead_lettered == 2)
    assert await sent_by_redis(client) - sent_before < 200_000
    assert await pending(client, stream) == 0


async def test_an_event_field_just_over_max_message_bytes_is_refused_once_read(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """An event a few bytes over the limit (within the field names' allowance) is dead-lettered."""
    bridge = make_bridge(redis_url, prefix, max_message_bytes=10_000)
    bridge.export(order_shipped)
    async with bridge:
        await client.xadd(stream_of(prefix), {b"event": b"x" * 10_001})
        await eventually(lambda: bridge.dead_lettered == 1)
    (dead,) = await dead_letters(client, prefix)
    assert dead[b"reason"] == b"oversized: 10001 bytes, more than max_message_bytes=10000"


async def test_payload_carrying_sender_is_dead_lettered(
    redis_url: str, client: aioredis.Redis, prefix: str
) -> None:
    """An open-payload signal still refuses a payload that names 'sender'."""
    open_signal: Signal[..., Any] = Signal(name="open")
    bridge = make_bridge(redis_url, prefix)
    bridge.export(open_signal)
    async with bridge:
        message = {"v": 1, "signal": "open", "sender": None, "payload": {"sender": 1}}
        await client.xadd(stream_of(prefix, "open"), {b"event": json.dumps(message).encode()})
        await eventually(lambda: bridge.dead_lettered == 1)


async def test_an_entry_trimmed_while_pending_is_dead_lettered(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A pending entry deleted from the stream before it ran is dead-lettered, not retried."""
    started = anyio.Event()

    async def hang(**kwargs: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    order_shipped.connect(hang, weak=False, dispatch_uid="test")
    bridge = make_bridge(redis_url, prefix, consumer="worker-1", grace_period=0)
    bridge.export(order_shipped)
    async with bridge:
        entry_id = await bridge.publish(order_shipped, "shop", order_id=1)
        await started.wait()
    await client.xdel(stream_of(prefix), entry_id)
    again = make_bridge(redis_url, prefix, consumer="worker-1")
    again.export(order_shipped)
    async with again:
        await eventually(lambda: again.dead_lettered == 1)
    dead = await dead_letters(client, prefix)
    assert b"trimmed" in dead[0][b"reason"]
    assert await pending(client, stream_of(prefix)) == 0


async def test_receiver_errors_are_logged_counted_and_acknowledged(
    redis_url: str,
    client: aioredis.Redis,
    prefix: str,
    order_shipped: Signal[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A receiver's exception is logged and counted; the event is still acknowledged."""

    def fail(**kwargs: Any) -> None:
        raise LookupError("no such order")

    order_shipped.connect(fail, weak=False, dispatch_uid="test")
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped)
    with caplog.at_level(logging.ERROR):
        async with bridge:
            await bridge.publish(order_shipped, "shop", order_id=1)
            await eventually(lambda: bridge.delivered == 1)
    assert bridge.receiver_errors == 1
    assert await pending(client, stream_of(prefix)) == 0
    assert "raised LookupError: no such order" in caplog.text


async def test_a_failing_send_is_dead_lettered(
    redis_url: str,
    client: aioredis.Redis,
    prefix: str,
    order_shipped: Signal[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """send_robust itself raising (not a receiver) dead-letters the entry; the bridge goes on."""

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("instrument bug")

    monkeypatch.setattr(Signal, "send_robust", broken)
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped)
    async with bridge:
        await bridge.publish(order_shipped, "shop", order_id=1)
        await eventually(lambda: bridge.dead_lettered == 1)
    dead = await dead_letters(client, prefix)
    assert b"send failed: RuntimeError" in dead[0][b"reason"]


class FailingReceiver:
    """A receiver object that raises: its frame, in the error's traceback, holds it."""

    def __call__(self, sender: object, **kwargs: Any) -> None:
        raise LookupError("no such order")


async def test_failing_receivers_are_freed_without_the_cyclic_collector(
    redis_url: str, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A delivery whose receiver raised leaves no cycle holding the error and the receiver.

    From Python 3.12 the error's traceback reaches the frame that delivered
    the entry; a frame that kept the results in a local would form a cycle.
    """
    receiver = FailingReceiver()
    order_shipped.connect(receiver, dispatch_uid="test")
    reference = weakref.ref(receiver)
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped)
    # send_robust logs each failure; pytest's log capture would keep the error.
    logging.disable(logging.CRITICAL)
    gc.collect()
    gc.disable()
    try:
        async with bridge:
            await bridge.publish(order_shipped, "shop", order_id=1)
            await eventually(lambda: bridge.delivered == 1)
        assert bridge.receiver_errors == 1
        del receiver
        assert reference() is None, "a cycle kept the failing receiver alive"
    finally:
        gc.enable()
        logging.disable(logging.NOTSET)


# -- codecs and senders -----------------------------------------------------


class Shop:
    """A sender class that receivers connect for."""


class DecimalCodec:
    """Carries Decimal amounts as strings."""

    def encode(self, payload: Any) -> dict[str, Any]:
        return {**payload, "amount": str(payload["amount"])}

    def decode(self, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "amount": Decimal(data["amount"])}


async def test_codec_and_named_senders_round_trip(redis_url: str, prefix: str) -> None:
    """A codec carries non-JSON values; exported senders come back as the same objects."""
    refunded: Signal[..., Any] = Signal(providing_args=["amount"], name="refunded")
    calls: list[tuple[object, Decimal]] = []
    refunded.connect(
        lambda sender, amount, **kwargs: calls.append((sender, amount)),
        sender=Shop,
        weak=False,
    )
    bridge = make_bridge(redis_url, prefix)
    bridge.export(refunded, codec=DecimalCodec(), senders={"shop": Shop})
    async with bridge:
        await bridge.publish(refunded, Shop, amount=Decimal("9.99"))
        await bridge.publish(refunded, "shop", amount=Decimal("1.50"))
        await bridge.publish(refunded, None, amount=Decimal("0"))
        await eventually(lambda: bridge.delivered == 3)
        with pytest.raises(TypeError, match="none of the senders"):
            await bridge.publish(refunded, "warehouse", amount=Decimal("1"))
    assert calls == [(Shop, Decimal("9.99")), (Shop, Decimal("1.50"))]


async def test_an_unknown_sender_name_is_dead_lettered(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """With exported senders, an entry naming another sender is dead-lettered."""
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped, senders={"shop": Shop})
    async with bridge:
        message = {"v": 1, "signal": "order_shipped", "sender": "x", "payload": {"order_id": 1}}
        await client.xadd(stream_of(prefix), {b"event": json.dumps(message).encode()})
        await eventually(lambda: bridge.dead_lettered == 1)


# -- publishing errors and configuration ------------------------------------


async def test_publish_refuses_what_cannot_travel(
    redis_url: str, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """Unexported signals, bad payloads, object senders, non-JSON and oversized events raise."""
    other: Signal[..., Any] = Signal(name="other")
    bridge = make_bridge(redis_url, prefix, max_message_bytes=200)
    bridge.export(order_shipped, consume=False)
    bridge.export(other, consume=False)
    with pytest.raises(BridgeClosedError, match="has not been started"):
        await bridge.publish(order_shipped, "shop", order_id=1)
    async with bridge:
        with pytest.raises(KeyError, match="not exported"):
            await bridge.publish(Signal(name="stray"), "shop")
        with pytest.raises(TypeError, match="missing argument"):
            await bridge.publish(order_shipped, "shop")
        with pytest.raises(TypeError, match="'sender' is reserved"):
            await bridge.publish(other, "shop", sender="x")
        with pytest.raises(TypeError, match="travels with its sender's name"):
            await bridge.publish(order_shipped, object(), order_id=1)
        with pytest.raises(TypeError, match="not JSON"):
            await bridge.publish(order_shipped, "shop", order_id=object())
        with pytest.raises(TypeError, match="not JSON"):
            await bridge.publish(order_shipped, "shop", order_id=float("nan"))
        with pytest.raises(ValueError, match="max_message_bytes"):
            await bridge.publish(order_shipped, "shop", order_id="x" * 300)
    with pytest.raises(BridgeClosedError, match="closed"):
        await bridge.publish(order_shipped, "shop", order_id=1)


async def test_export_refuses_unnamed_duplicate_and_late_signals(
    redis_url: str, prefix: str
) -> None:
    """export needs a named signal, a unique name, a known mode, and a bridge not yet entered."""
    bridge = make_bridge(redis_url, prefix)
    with pytest.raises(ValueError, match="has no name"):
        bridge.export(Signal())
    bridge.export(Signal(name="a"))
    with pytest.raises(ValueError, match="already exported"):
        bridge.export(Signal(name="a"))
    with pytest.raises(ValueError, match="mode must be"):
        bridge.export(Signal(name="b"), mode="fanout")  # type: ignore[arg-type]
    async with bridge:
        with pytest.raises(RuntimeError, match="before entering"):
            bridge.export(Signal(name="c"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_message_bytes": 0}, "max_message_bytes"),
        ({"maxlen": 0}, "maxlen"),
        ({"max_deliveries": 0}, "max_deliveries"),
        ({"claim_idle": 0}, "claim_idle"),
        ({"block": float("inf")}, "block"),
        ({"grace_period": -1}, "grace_period"),
        ({"start_from": "0"}, "start_from must be 'new' or 'beginning'"),
        ({"send_timeout": 0}, "send_timeout"),
    ],
)
def test_bad_options_raise(options: dict[str, Any], message: str) -> None:
    """Each option out of range is a ValueError naming it."""
    with pytest.raises(ValueError, match=message):
        RedisBridge(UNUSED_URL, app=APP, **options)


@pytest.mark.parametrize(
    "option", ["batch_size", "max_concurrent", "max_message_bytes", "maxlen", "max_deliveries"]
)
@pytest.mark.parametrize("value", [True, 2.0, 2.5, "2"])
def test_counts_that_are_not_whole_numbers_raise(option: str, value: Any) -> None:
    """A count option given a bool, a float or a str is a TypeError naming it."""
    with pytest.raises(TypeError, match=f"{option} must be a whole number .*got {value!r}"):
        RedisBridge(UNUSED_URL, app=APP, **{option: value})


def user_client(url: str, **options: Any) -> aioredis.Redis:
    """A client made as users make one, ``Redis(host=..., port=...)``, for the Redis at ``url``."""
    parts = urlsplit(url)
    return aioredis.Redis(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        db=int(parts.path.lstrip("/") or 0),
        **options,
    )


# Every way to ask for a protocol, on every redis-py from 5: the default (RESP2
# up to redis-py 7, RESP3 from 8), each protocol by name, and RESP3's own
# reply shapes where redis-py 8 can return them.
CLIENT_OPTIONS: list[dict[str, Any]] = [{}, {"protocol": 2}, {"protocol": 3}]
if "legacy_responses" in inspect.signature(aioredis.Redis).parameters:
    CLIENT_OPTIONS.append({"protocol": 3, "legacy_responses": False})


@pytest.mark.parametrize("options", CLIENT_OPTIONS, ids=repr)
async def test_clients_of_either_protocol_read_every_kind_of_reply(
    redis_url: str,
    client: aioredis.Redis,
    prefix: str,
    order_shipped: Signal[..., Any],
    options: dict[str, Any],
) -> None:
    """A default client (RESP3 from redis-py 8) or either protocol: new, own, claimed, broadcast."""
    calls = recorder(order_shipped)
    notice: Signal[..., Any] = Signal(providing_args=["text"], name="notice")
    notices = recorder(notice)
    stream = stream_of(prefix)
    own, _ = await left_pending_by_a_stopped_consumer(
        redis_url, client, prefix, order_shipped, [1, 2]
    )
    # One entry pending on the bridge's own consumer (read again at start),
    # one on a stopped consumer (claimed).
    await client.xclaim(stream, APP, "user", 0, [own], justid=True)
    users = user_client(redis_url, **options)
    try:
        bridge = RedisBridge(
            users, app=APP, stream_prefix=prefix, consumer="user", claim_idle=0.1, block=0.05
        )
        bridge.export(order_shipped)
        bridge.export(notice, mode="broadcast")
        async with bridge:
            await bridge.publish(order_shipped, "shop", order_id=3)
            await bridge.publish(notice, None, text="hi")
            await eventually(lambda: bridge.delivered == 4)
    finally:
        await users.aclose()
    assert sorted(payload["order_id"] for _, payload in calls) == [1, 2, 3]
    assert notices == [(None, {"text": "hi"})]
    assert bridge.dead_lettered == 0
    assert await pending(client, stream) == 0


def test_a_bridge_needs_the_name_of_its_application() -> None:
    """Without app= (nor both group= and stream_prefix=) a TypeError says how to choose it."""
    with pytest.raises(TypeError, match=r"needs app=, your application's name, e\.g\."):
        RedisBridge(UNUSED_URL)
    with pytest.raises(TypeError, match="the same name in each of its processes"):
        RedisBridge(UNUSED_URL, group="orders")
    with pytest.raises(ValueError, match="non-empty"):
        RedisBridge(UNUSED_URL, app="")
    bridge = RedisBridge(UNUSED_URL, app="shop")
    assert (bridge.group, bridge.stream_prefix, bridge.dead_letter) == (
        "shop",
        "asyncsignals:shop",
        "asyncsignals:shop:dead",
    )
    explicit = RedisBridge(UNUSED_URL, group="orders", stream_prefix="legacy")
    assert (explicit.app, explicit.group, explicit.stream_prefix) == (None, "orders", "legacy")


async def test_two_applications_with_a_signal_of_one_name_keep_their_events_apart(
    redis_url: str, client: aioredis.Redis
) -> None:
    """Two apps on one Redis, each with an order_shipped: each runs all its events, only its."""
    apps = [f"app-{uuid.uuid4().hex}" for _ in range(2)]
    signals: list[Signal[..., Any]] = [
        Signal(providing_args=["order_id"], name="order_shipped") for _ in apps
    ]
    received = [recorder(signal) for signal in signals]
    bridges = [RedisBridge(redis_url, app=app, block=0.05) for app in apps]
    try:
        for bridge, signal in zip(bridges, signals, strict=True):
            bridge.export(signal)
        async with bridges[0], bridges[1]:
            for order_id in range(8):
                which = 0 if order_id < 6 else 1
                await bridges[which].publish(signals[which], apps[which], order_id=order_id)
            await eventually(lambda: [bridge.delivered for bridge in bridges] == [6, 2])
    finally:
        for app in apps:
            keys = [key async for key in client.scan_iter(match=f"asyncsignals:{app}:*")]
            await client.delete(*keys)
    for app, calls in zip(apps, received, strict=True):
        assert {sender for sender, _ in calls} == {app}
    assert sorted(payload["order_id"] for _, payload in received[0]) == [0, 1, 2, 3, 4, 5]
    assert sorted(payload["order_id"] for _, payload in received[1]) == [6, 7]


def test_read_replies_of_every_shape_give_the_same_entries() -> None:
    """XREAD(GROUP) replies of RESP2, of RESP3, and of RESP3 wrapped as redis-py 5 to 7 do."""
    entries = [(b"1-0", {b"event": b"{}"}), (b"2-0", {b"event": b"{}"})]
    expected = [("s", entries)]
    assert stream_entries([[b"s", entries]]) == expected
    assert stream_entries({b"s": entries}) == expected
    assert stream_entries({b"s": [entries]}) == expected
    assert stream_entries({b"s": [[]]}) == [("s", [])]
    assert stream_entries(None) == stream_entries({}) == []


async def test_clients_that_decode_responses_are_refused(
    redis_url: str, client: aioredis.Redis
) -> None:
    """A client decoding responses could be broken by a hostile entry: refused up front."""
    decoding = aioredis.from_url(redis_url, decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses=False"):
            RedisBridge(decoding, app=APP)
    finally:
        await decoding.aclose()
    bridge = RedisBridge(client, app=APP, name="mine")
    assert repr(bridge).startswith("<RedisBridge mine not started")
    assert not bridge.healthy
    bridge.raise_if_failed()


async def test_a_block_not_shorter_than_the_socket_timeout_is_refused() -> None:
    """block >= the client's socket_timeout would time out every idle read: a ValueError."""
    expected = r"block=2\.0 s is not shorter than the client's socket_timeout=1\.0 s"
    timing_out = aioredis.Redis(socket_timeout=1.0)
    try:
        with pytest.raises(ValueError, match=expected):
            RedisBridge(timing_out, app=APP, block=2.0)
        with pytest.raises(ValueError, match="shorter block, or make the client with a longer"):
            RedisBridge(timing_out, app=APP, block=1.0)
        assert RedisBridge(timing_out, app=APP, block=0.5).block == 0.5
    finally:
        await timing_out.aclose()
    with pytest.raises(ValueError, match=expected):
        RedisBridge(f"{UNUSED_URL}?socket_timeout=1", app=APP, block=2.0)
    assert RedisBridge(aioredis.Redis(socket_timeout=None), app=APP, block=60).block == 60


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_is_refused_with_a_clear_error() -> None:
    """Entering a bridge under trio raises RuntimeError saying it needs asyncio."""
    bridge = RedisBridge(UNUSED_URL, app=APP)
    with pytest.raises(RuntimeError, match="asyncio only"):
        await bridge.__aenter__()


async def test_an_unexpected_redis_error_stops_the_bridge(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A Redis error that is no outage stops the bridge: unhealthy, publish and exit raise it."""
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped)
    with pytest.raises(ExceptionGroup) as caught:  # noqa: PT012
        async with bridge:
            assert bridge.healthy
            bridge.raise_if_failed()
            await client.set(stream_of(prefix), "not a stream")
            await eventually(lambda: not bridge.healthy)
            with pytest.raises(BridgeClosedError, match="stopped by ExceptionGroup") as refused:
                await bridge.publish(order_shipped, "shop", order_id=1)
            with pytest.raises(BridgeClosedError, match="stopped by ExceptionGroup") as failed:
                bridge.raise_if_failed()
            causes = [refused.value.__cause__, failed.value.__cause__]
    assert caught.group_contains(ResponseError, match="WRONGTYPE")
    assert causes == [caught.value, caught.value]


async def test_a_bridge_left_can_be_entered_again_but_not_while_it_runs(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """Left, a bridge may be entered again and delivers; entered, a second entry is refused."""
    calls = recorder(order_shipped)
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped)
    for order_id in (1, 2):
        async with bridge:
            with pytest.raises(RuntimeError, match="is entered already; a bridge runs once"):
                await bridge.__aenter__()
            await bridge.publish(order_shipped, "shop", order_id=order_id)
            await eventually(lambda n=order_id: bridge.delivered == n)  # type: ignore[misc]
        assert not bridge.healthy
    assert [payload["order_id"] for _, payload in calls] == [1, 2]
    assert await pending(client, stream_of(prefix)) == 0


def test_a_module_level_bridge_runs_again_in_a_new_event_loop(
    redis_url: str, order_shipped: Signal[..., Any]
) -> None:
    """Each TestClient(app) runs the lifespan in a new event loop: the bridge runs in each."""
    calls = recorder(order_shipped)
    # Sync, as a test using TestClient is: the prefix fixture is async.
    prefix = f"asyncsignals-test:{uuid.uuid4().hex}"
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped)

    async def application_lifetime(order_id: int) -> None:
        with anyio.fail_after(TEST_TIMEOUT):
            async with bridge:
                await bridge.publish(order_shipped, "shop", order_id=order_id)
                await eventually(lambda: len(calls) == order_id)

    try:
        for order_id in (1, 2):
            asyncio.run(application_lifetime(order_id))
    finally:
        with redis.Redis.from_url(redis_url) as cleanup:
            cleanup.delete(*cleanup.keys(f"{prefix}:*"))
    assert [payload["order_id"] for _, payload in calls] == [1, 2]


async def test_entered_in_one_task_and_exited_in_another(
    redis_url: str, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A bridge entered by one task and left by another delivers, then stops cleanly."""
    calls = recorder(order_shipped)
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped)

    async def start() -> None:
        await bridge.__aenter__()
        await bridge.publish(order_shipped, "shop", order_id=1)

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(start)
    await eventually(lambda: bridge.delivered == 1)
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(bridge.__aexit__, None, None, None)
    assert calls == [("shop", {"order_id": 1})]
    assert repr(bridge).startswith("<RedisBridge closed")


async def test_exit_with_a_cancellation_not_yet_delivered_still_drains(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """Left with its task's cancellation requested, not yet delivered, it still drains."""
    finished: list[object] = []
    started = anyio.Event()

    async def email(sender: object, **kwargs: Any) -> None:
        started.set()
        await anyio.sleep(0.05)
        finished.append(kwargs["order_id"])

    order_shipped.connect(email, dispatch_uid="test")
    bridge = make_bridge(redis_url, prefix, grace_period=5)
    bridge.export(order_shipped)

    async def begin() -> None:
        await bridge.publish(order_shipped, "shop", order_id=1)
        await started.wait()

    later_cleanup = await leave_right_after_a_cancel(bridge, begin)
    assert finished == [1]
    assert later_cleanup == ["ran"]
    assert await pending(client, stream_of(prefix)) == 0


async def test_exit_in_a_natively_cancelled_task_raises_no_cancellation_of_its_own(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """Left in a task asyncio cancelled, the grace running out raises nothing; cleanup goes on."""
    started = anyio.Event()

    async def stuck(sender: object, **kwargs: Any) -> None:
        started.set()
        await anyio.sleep_forever()

    order_shipped.connect(stuck, dispatch_uid="test")
    bridge = make_bridge(redis_url, prefix, grace_period=0.05)
    bridge.export(order_shipped)
    later_cleanup: list[str] = []

    async def serve() -> None:
        await bridge.__aenter__()
        await bridge.publish(order_shipped, "shop", order_id=1)
        try:
            await asyncio.sleep(3600)
        finally:
            await bridge.__aexit__(None, None, None)
            later_cleanup.append("ran")

    task = asyncio.get_running_loop().create_task(serve())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert later_cleanup == ["ran"]
    assert await pending(client, stream_of(prefix)) == 1


async def test_group_creation_errors_other_than_busygroup_raise(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """Entering over a key that is not a stream raises Redis's error."""
    await client.set(stream_of(prefix), "not a stream")
    for bridge in (
        make_bridge(redis_url, prefix),
        RedisBridge(client, app=APP, stream_prefix=prefix),
    ):
        bridge.export(order_shipped)
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await bridge.__aenter__()
    assert await client.ping()


# -- Redis restarted mid-run ------------------------------------------------


async def start_redis(port: int) -> anyio.abc.Process:
    process = await anyio.open_process(
        server_command(port),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    probe = aioredis.Redis(port=port)
    try:
        while True:
            try:
                await probe.ping()
                return process
            except RedisConnectionError:
                await anyio.sleep(0.02)
    finally:
        await probe.aclose()


async def test_redis_restarted_mid_run(caplog: pytest.LogCaptureFixture) -> None:
    """Redis restarted empty: the bridge reconnects, recreates its group and goes on."""
    port = free_port()
    order_shipped: Signal[..., Any] = Signal(providing_args=["order_id"], name="order_shipped")
    calls = recorder(order_shipped)
    server = await start_redis(port)
    release = anyio.Event()

    async def wait_for_release(order_id: int, **kwargs: Any) -> None:
        if order_id == 1:
            await release.wait()

    order_shipped.connect(wait_for_release, weak=False)
    bridge = RedisBridge(f"redis://127.0.0.1:{port}", app=APP, block=0.05, grace_period=1)
    bridge.export(order_shipped)
    try:
        with caplog.at_level(logging.WARNING, "asyncsignals.redis"):
            async with bridge:
                await bridge.publish(order_shipped, "shop", order_id=1)
                await eventually(lambda: len(calls) == 1)
                server.kill()
                await server.wait()
                await server.aclose()
                release.set()
                await eventually(lambda: "Redis unavailable" in caplog.text)
                await anyio.sleep(0.2)
                server = await start_redis(port)
                while True:
                    try:
                        await bridge.publish(order_shipped, "shop", order_id=2)
                        break
                    except RedisConnectionError:
                        await anyio.sleep(0.02)
                await eventually(lambda: len(calls) == 2)
    finally:
        server.kill()
        await server.wait()
        await server.aclose()
        order_shipped.disconnect(dispatch_uid="test")
    assert [payload["order_id"] for _, payload in calls] == [1, 2]
    assert "stays pending" in caplog.text


async def test_a_deleted_stream_and_group_are_created_again(
    redis_url: str,
    client: aioredis.Redis,
    prefix: str,
    order_shipped: Signal[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The stream deleted under a running bridge: it recreates the group and goes on."""
    calls = recorder(order_shipped)
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped)
    with caplog.at_level(logging.WARNING, "asyncsignals.redis"):
        async with bridge:
            await client.delete(stream_of(prefix))
            await eventually(lambda: "created again" in caplog.text)
            await bridge.publish(order_shipped, "shop", order_id=1)
            await eventually(lambda: bridge.delivered == 1)
    assert calls == [("shop", {"order_id": 1})]


async def test_a_dead_letter_refused_by_a_redis_out_of_memory_waits_for_room(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis out of memory refuses the dead-letter copy: the bridge goes on, retries later."""
    port = free_port()
    server = await start_redis(port)
    client = aioredis.Redis(port=port)
    stream = f"asyncsignals:{APP}:signal:order_shipped"
    order_shipped: Signal[..., Any] = Signal(providing_args=["order_id"], name="order_shipped")
    try:
        await client.xgroup_create(stream, APP, id="0", mkstream=True)
        await client.xadd(stream, {"not": "an event"})
        await client.xreadgroup(APP, "gone", {stream: ">"})
        bridge = RedisBridge(client, app=APP, block=0.05, claim_idle=0.2)
        bridge.export(order_shipped)
        with caplog.at_level(logging.ERROR, "asyncsignals.redis"):
            async with bridge:
                await client.config_set("maxmemory-policy", "noeviction")
                await client.config_set("maxmemory", "1")
                await eventually(lambda: "could not be moved" in caplog.text)
                assert bridge.healthy
                assert bridge.dead_lettered == 0
                await client.config_set("maxmemory", "0")
                await eventually(lambda: bridge.dead_lettered == 1)
        assert "it stays pending, tried again once idle" in caplog.text
        assert await pending(client, stream) == 0
    finally:
        await client.aclose()
        server.kill()
        await server.wait()
        await server.aclose()


async def blocked_in_a_read(client: aioredis.Redis, name: str) -> bool:
    """Whether the client named ``name`` is blocked in a read (XREAD, XREADGROUP) on Redis."""
    for connection in await client.client_list():
        if connection["name"] == name and "b" in connection["flags"]:
            return True
    return False


async def test_a_stream_deleted_while_the_bridge_waits_in_its_read_is_recreated(
    redis_url: str,
    client: aioredis.Redis,
    prefix: str,
    order_shipped: Signal[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DEL while the bridge blocks in XREADGROUP (its idle state): group recreated, events run."""
    calls = recorder(order_shipped)
    name = f"bridge-{uuid.uuid4().hex}"
    bridges_client = aioredis.from_url(redis_url, client_name=name)
    try:
        bridge = RedisBridge(bridges_client, app=APP, stream_prefix=prefix, block=3)
        bridge.export(order_shipped)
        with caplog.at_level(logging.WARNING, "asyncsignals.redis"):
            async with bridge:
                for order_id in (1, 2):
                    while not await blocked_in_a_read(client, name):  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                    await client.delete(stream_of(prefix))
                    await eventually(
                        lambda n=order_id: caplog.text.count("was deleted") == n  # type: ignore[misc]
                    )
                    await bridge.publish(order_shipped, "shop", order_id=order_id)
                    await eventually(lambda n=order_id: bridge.delivered == n)  # type: ignore[misc]
                assert bridge.healthy
    finally:
        await bridges_client.aclose()
    assert [payload["order_id"] for _, payload in calls] == [1, 2]
    [warning, _] = [record for record in caplog.records if "was deleted" in record.message]
    assert warning.levelno == logging.WARNING
    assert f"consumer group {APP!r} created again" in warning.message


class Fatal(BaseException):
    """A BaseException that is not an Exception, as KeyboardInterrupt is."""


async def test_a_receivers_fatal_error_during_the_drain_is_raised_at_exit(
    redis_url: str, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A receiver's BaseException raised while the bridge drains is raised by the exit."""
    started = anyio.Event()

    async def fatal_late(sender: object, **kwargs: Any) -> None:
        started.set()
        await anyio.sleep(0.05)
        raise Fatal("late")

    order_shipped.connect(fatal_late, dispatch_uid="test")
    bridge = make_bridge(redis_url, prefix, grace_period=5)
    bridge.export(order_shipped)
    with pytest.raises(Fatal, match="late"):  # noqa: PT012
        async with bridge:
            await bridge.publish(order_shipped, "shop", order_id=1)
            await started.wait()
    assert repr(bridge).startswith("<RedisBridge closed")


# -- the group's upkeep -----------------------------------------------------


async def consumer_names(client: aioredis.Redis, stream: str) -> set[str]:
    """The names of the consumers the test's group lists on ``stream``."""
    consumers = await client.xinfo_consumers(stream, APP)
    return {str(each["name"], "utf-8") for each in consumers}


async def test_consumers_long_idle_with_nothing_pending_are_removed_from_the_group(
    redis_url: str,
    client: aioredis.Redis,
    prefix: str,
    order_shipped: Signal[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Consumers idle ten times claim_idle with nothing pending leave the group, logged."""
    stream = stream_of(prefix)
    # A stopped worker's entries: claimed and run, then its name is forgotten.
    await left_pending_by_a_stopped_consumer(redis_url, client, prefix, order_shipped, [1])
    await client.xgroup_createconsumer(stream, APP, "crashed")
    calls = recorder(order_shipped)
    bridge = make_bridge(redis_url, prefix, consumer="bridge", claim_idle=0.1)
    bridge.export(order_shipped)
    with caplog.at_level(logging.INFO, "asyncsignals.redis"):
        async with bridge:
            await eventually_async(lambda: consumer_names(client, stream), {"bridge"})
    assert calls == [("shop", {"order_id": 1})]
    removals = [record.getMessage() for record in caplog.records if "removed" in record.msg]
    assert sorted(name for message in removals for name in message.split(": ")[-1].split(", ")) == [
        "crashed",
        "gone",
    ]
    assert await pending(client, stream) == 0


async def test_removing_idle_consumers_spares_one_with_pending_entries(
    client: aioredis.Redis, prefix: str
) -> None:
    """Only the idle with nothing pending go: never one with entries pending, nor the caller."""
    stream = stream_of(prefix)
    await client.xgroup_create(stream, APP, id="$", mkstream=True)
    await client.xgroup_createconsumer(stream, APP, "idle")
    await client.xadd(stream, {"event": b"{}"})
    await client.xreadgroup(APP, "holder", {stream: ">"}, count=1)
    await client.xgroup_createconsumer(stream, APP, "me")
    assert await remove_idle_consumers(client, stream, APP, 60_000, keep="me") == []
    await anyio.sleep(0.01)
    removed = await remove_idle_consumers(client, stream, APP, 1, keep="me")
    assert removed == ["idle"]
    assert await consumer_names(client, stream) == {"holder", "me"}
    assert await remove_idle_consumers(client, f"{prefix}:missing", APP, 1, keep="me") == []


async def publish_many(
    url: str, prefix: str, signal: Signal[..., Any], count: int, maxlen: int
) -> None:
    """Publish ``count`` events from a bridge that consumes nothing, trimming at ``maxlen``."""
    publisher = make_bridge(url, prefix, consumer="publisher", maxlen=maxlen)
    publisher.export(signal, consume=False)
    async with publisher:
        for order_id in range(count):
            await publisher.publish(signal, "shop", order_id=order_id)


async def test_events_trimmed_while_every_consumer_was_down_are_reported_with_their_count(
    redis_url: str,
    client: aioredis.Redis,
    prefix: str,
    order_shipped: Signal[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A restarted group behind the trimmed head warns how many events maxlen dropped unread."""
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped)
    async with bridge:
        pass  # the group exists: the service ran once, then every worker stopped
    await publish_many(redis_url, prefix, order_shipped, 300, maxlen=100)
    kept = await client.xlen(stream_of(prefix))
    assert kept < 300, "the stream was trimmed"
    with caplog.at_level(logging.WARNING, "asyncsignals.redis"):
        async with bridge:
            await eventually(lambda: bridge.delivered == kept)
            assert f"{300 - kept} events were trimmed" in caplog.text
    assert caplog.text.count("fell behind the trimmed head") == 1


async def test_a_running_group_that_falls_behind_the_trimmed_head_is_reported(
    redis_url: str,
    client: aioredis.Redis,
    prefix: str,
    order_shipped: Signal[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A consumer too slow for its publishers warns once its unread events are trimmed."""
    release = anyio.Event()

    async def slow(**kwargs: Any) -> None:
        await release.wait()

    order_shipped.connect(slow, weak=False, dispatch_uid="test")
    bridge = make_bridge(redis_url, prefix, claim_idle=0.1, batch_size=1, max_concurrent=1)
    bridge.export(order_shipped)
    with caplog.at_level(logging.WARNING, "asyncsignals.redis"):
        async with bridge:
            await publish_many(redis_url, prefix, order_shipped, 300, maxlen=100)
            await eventually(lambda: "fell behind the trimmed head" in caplog.text)
            release.set()
    assert "events were trimmed" in caplog.text


async def test_the_trimming_check_skips_a_missing_stream_or_group_and_fails_on_a_wrong_key(
    client: aioredis.Redis, prefix: str
) -> None:
    """No stream or no group: nothing to report (both are created again); a wrong key raises."""
    stream = stream_of(prefix)
    assert await trimming_of(client, stream, APP) is None
    await client.xadd(stream, {"event": b"{}"})
    assert await trimming_of(client, stream, APP) is None
    await client.set(f"{prefix}:string", "not a stream")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await trimming_of(client, f"{prefix}:string", APP)


@pytest.mark.parametrize(
    ("group", "stream", "lost"),
    [
        # Caught up, or nothing in the stream to be behind.
        ({"last-delivered-id": b"5-0"}, {"first-entry": (b"5-0", {}), "length": 1}, 0),
        ({"last-delivered-id": b"5-0"}, {"first-entry": None, "length": 0}, 0),
        # Redis 7: read counts tell how many were skipped.
        (
            {"last-delivered-id": b"5-0", "entries-read": 10},
            {"first-entry": (b"9-0", {}), "length": 100, "entries-added": 300},
            190,
        ),
        (
            {"last-delivered-id": b"0-0", "entries-read": None},
            {"first-entry": (b"9-0", {}), "length": 100, "entries-added": 300},
            200,
        ),
        (
            {"last-delivered-id": b"5-0", "entries-read": None},
            {"first-entry": (b"9-0", {}), "length": 100, "entries-added": 300},
            None,
        ),
        # Redis 6: no counts; a group that never read may be on an older trim.
        ({"last-delivered-id": b"5-0"}, {"first-entry": (b"9-0", {}), "length": 100}, None),
        ({"last-delivered-id": b"0-0"}, {"first-entry": (b"9-0", {}), "length": 100}, 0),
    ],
)
def test_trimmed_unread_counts_what_the_group_never_read(
    group: dict[str, Any], stream: dict[str, Any], lost: int | None
) -> None:
    """Entries trimmed before the group read them: a count, 0, or None when Redis cannot tell."""
    assert trimmed_unread(group, stream) == lost


# -- the envelope -----------------------------------------------------------


def envelope_recorder(signal: Signal[..., Any]) -> list[Envelope | None]:
    """Connect a receiver that records ``current_event()``; return the records."""
    envelopes: list[Envelope | None] = []

    async def record(**kwargs: Any) -> None:
        envelopes.append(current_event())

    signal.connect(record, weak=False, dispatch_uid="test")
    return envelopes


async def test_receivers_read_the_event_id_time_origin_and_deliveries(
    redis_url: str, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """current_event() gives each receiver its event's envelope; outside them it is None."""
    envelopes = envelope_recorder(order_shipped)
    bridge = make_bridge(redis_url, prefix, consumer="worker-1")
    bridge.export(order_shipped)
    async with bridge:
        before = time.time()
        await bridge.publish(order_shipped, "shop", order_id=1)
        await bridge.publish(order_shipped, "shop", order_id=2)
        after = time.time()
        await eventually(lambda: bridge.delivered == 2)
    first, second = envelopes
    assert first is not None
    assert second is not None
    assert len(first.id) == 32
    assert first.id != second.id
    assert before <= first.published_at <= after
    assert first.origin == Origin(app=APP, consumer="worker-1")
    assert first.deliveries == 1
    assert current_event() is None
    await order_shipped.send(None, order_id=3)
    assert envelopes[-1] is None, "a local send has no envelope"


async def test_an_entry_taken_again_counts_its_deliveries_and_keeps_its_event_id(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """An event claimed from a stopped consumer has the id it had, delivered twice."""
    await left_pending_by_a_stopped_consumer(redis_url, client, prefix, order_shipped, [1])
    [published] = await published_events(client, prefix)
    published_id = published["id"]
    envelopes = envelope_recorder(order_shipped)
    bridge = make_bridge(redis_url, prefix, claim_idle=0.1, max_deliveries=None)
    bridge.export(order_shipped)
    async with bridge:
        await eventually(lambda: bridge.delivered == 1)
    [envelope] = envelopes
    assert envelope is not None
    assert (envelope.id, envelope.deliveries) == (published_id, 2)


async def test_entries_published_before_envelopes_still_run(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """A version 1 entry runs, its envelope made of its entry id and Redis's time."""
    calls = recorder(order_shipped)
    envelopes: list[Envelope | None] = []
    order_shipped.connect(
        lambda **kwargs: envelopes.append(current_event()), weak=False, dispatch_uid="envelope"
    )
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped)
    message = {"v": 1, "signal": "order_shipped", "sender": "shop", "payload": {"order_id": 1}}
    try:
        async with bridge:
            entry_id = text(await client.xadd(stream_of(prefix), {b"event": json.dumps(message)}))
            await eventually(lambda: bridge.delivered == 1)
    finally:
        order_shipped.disconnect(dispatch_uid="envelope")
    assert calls == [("shop", {"order_id": 1})]
    milliseconds = int(entry_id.split("-")[0])
    assert envelopes == [Envelope(entry_id, milliseconds / 1000, None, 1)]


async def published_events(client: aioredis.Redis, prefix: str) -> list[dict[str, Any]]:
    """The JSON object of every entry of the test's order_shipped stream, oldest first."""
    entries: list[tuple[Any, dict[bytes, bytes]]] = await client.xrange(stream_of(prefix))  # type: ignore[assignment]
    return [json.loads(fields[b"event"]) for _, fields in entries]


def v2_event(**changes: Any) -> bytes:
    """A version 2 event of order_shipped, with ``changes`` to its keys."""
    message: dict[str, Any] = {
        "v": 2,
        "signal": "order_shipped",
        "sender": "shop",
        "payload": {"order_id": 1},
        "id": "e1",
        "published_at": 1.5,
        "origin": {"app": "shop", "consumer": "c"},
    }
    message.update(changes)
    return json.dumps({key: value for key, value in message.items() if value is not None}).encode()


async def test_entries_with_a_malformed_envelope_are_dead_lettered(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """An envelope of the wrong shape is refused like any malformed entry; a good one runs."""
    recorder(order_shipped)
    malformed = [
        v2_event(id=7),
        v2_event(published_at="now"),
        v2_event(published_at=True),
        v2_event(origin={"app": "shop"}),
        v2_event(origin={"app": 1, "consumer": "c"}),
        v2_event(origin={"app": None, "consumer": None}),
        v2_event(origin={"app": ["shop"], "consumer": "c"}),
        v2_event(origin={"app": "shop", "consumer": {"c": 1}}),
        v2_event(origin="c"),
        v2_event(trace={"traceparent": 1}),
        v2_event(trace=["x"]),
        v2_event(origin=None),
        json.dumps(
            {"v": 1, "signal": "order_shipped", "sender": None, "payload": {}, "trace": {}}
        ).encode(),
        b'{"signal": "order_shipped"}',
        v2_event(v="2"),
    ]
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped)
    async with bridge:
        for data in malformed:
            await client.xadd(stream_of(prefix), {b"event": data})
        await client.xadd(
            stream_of(prefix), {b"event": v2_event(origin={"app": None, "consumer": "c"})}
        )
        await eventually(lambda: bridge.delivered == 1 and bridge.dead_lettered == len(malformed))
    reasons = [fields[b"reason"].decode() for fields in await dead_letters(client, prefix)]
    assert sum("id must be a string" in reason for reason in reasons) == 11
    assert sum("wire version" in reason for reason in reasons) == 1


@pytest.fixture
async def tracing() -> AsyncIterator[tuple[Any, Any]]:
    """Trace every signal into memory; yield (tracer provider, exporter)."""
    from opentelemetry import context as otel_context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from asyncsignals.opentelemetry import instrument, uninstrument

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(provider)
    # No span current, whatever tests before this one left current in the
    # context that the async tests of a session share.
    token = otel_context.attach(otel_context.Context())
    yield provider, exporter
    otel_context.detach(token)
    uninstrument()


async def test_receivers_spans_join_the_publishers_trace_across_processes(
    redis_url: str,
    prefix: str,
    order_shipped: Signal[..., Any],
    tracing: tuple[Any, Any],
) -> None:
    """With OpenTelemetry, the send and receiver spans here are children of the publisher's span."""
    _, exporter = tracing
    recorder(order_shipped)
    bridge = make_bridge(redis_url, prefix, consumer="worker")
    bridge.export(order_shipped)
    async with bridge:
        published = await anyio.run_process(
            [sys.executable, str(TRACED_PUBLISHER_SCRIPT), redis_url, prefix], stderr=None
        )
        await eventually(lambda: bridge.delivered == 1)
    publisher = json.loads(published.stdout)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    send = spans["send order_shipped"]
    receiver = spans["receiver recorder.<locals>.record"]
    assert f"{send.context.trace_id:032x}" == publisher["trace_id"]
    assert send.parent is not None
    assert send.parent.is_remote
    assert f"{send.parent.span_id:016x}" == publisher["span_id"]
    assert receiver.parent is not None
    assert receiver.parent.span_id == send.context.span_id


def test_the_trace_propagator_is_none_without_opentelemetry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lookup the bridge makes once: None when OpenTelemetry's propagator cannot be imported."""
    monkeypatch.setitem(sys.modules, "opentelemetry.trace.propagation.tracecontext", None)
    assert _redis_envelope._trace_propagator.__wrapped__() is None  # pyright: ignore[reportPrivateUsage]


async def test_without_opentelemetry_events_carry_no_trace_and_still_run(
    redis_url: str,
    client: aioredis.Redis,
    prefix: str,
    order_shipped: Signal[..., Any],
    tracing: tuple[Any, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No OpenTelemetry: nothing is injected, and a traced entry from elsewhere runs untraced."""
    provider, exporter = tracing
    calls = recorder(order_shipped)
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped)
    traced = v2_event(trace={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    # As when its import fails (the lookup is made once per process).
    monkeypatch.setattr(_redis_envelope, "_trace_propagator", lambda: None)
    async with bridge:
        with provider.get_tracer("tests").start_as_current_span("publishing"):
            await bridge.publish(order_shipped, "shop", order_id=1)
        await client.xadd(stream_of(prefix), {b"event": traced})
        await eventually(lambda: bridge.delivered == 2)
    published, _ = await published_events(client, prefix)
    assert "trace" not in published
    assert len(calls) == 2
    sends = [span for span in exporter.get_finished_spans() if span.name.startswith("send")]
    assert all(span.parent is None for span in sends)


async def test_an_event_carries_the_trace_context_of_the_span_current_at_publish(
    redis_url: str,
    client: aioredis.Redis,
    prefix: str,
    order_shipped: Signal[..., Any],
    tracing: tuple[Any, Any],
) -> None:
    """Inside a span the entry carries its W3C traceparent; outside any span, no trace."""
    provider, _ = tracing
    bridge = make_bridge(redis_url, prefix)
    bridge.export(order_shipped, consume=False)
    async with bridge:
        await bridge.publish(order_shipped, "shop", order_id=1)
        with provider.get_tracer("tests").start_as_current_span("publishing") as span:
            await bridge.publish(order_shipped, "shop", order_id=2)
    untraced, traced = await published_events(client, prefix)
    assert "trace" not in untraced
    ids = span.get_span_context()
    parent = f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{ids.trace_flags:02x}"
    assert traced["trace"] == {"traceparent": parent}


def test_deduplicator_says_seen_for_an_id_within_its_window() -> None:
    """seen() is False the first time, True within the window, False once forgotten."""
    seen = Deduplicator(window=2)
    assert [seen.seen(event_id) for event_id in ["a", "a", "b", "c", "a", "c"]] == [
        False,
        True,
        False,
        False,
        False,
        True,
    ]
    assert repr(seen) == "<Deduplicator 2 of window=2>"
    with pytest.raises(ValueError, match="window must be at least 1"):
        Deduplicator(window=0)


class Size(enum.IntEnum):
    SMALL = 1


class Colour(enum.StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"items": (1, 2)}, r"'items' is builtins\.tuple, which JSON turns into a list"),
        ({"names": {1: "a"}}, r"key 1 of 'names' is builtins\.int, which JSON turns into a str"),
        ({"size": Size.SMALL}, r"'size' is test_redis_bridge\.Size, .* into an int"),
        ({"colour": Colour.RED}, r"'colour' is test_redis_bridge\.Colour, .* into a str"),
        (
            {"lines": [{"sizes": [1, Size.SMALL]}]},
            r"'lines'\[0\]\['sizes'\]\[1\] is test_redis_bridge\.Size",
        ),
    ],
)
async def test_publish_refuses_values_json_would_change_before_writing_anything(
    redis_url: str, client: aioredis.Redis, prefix: str, payload: dict[str, Any], message: str
) -> None:
    """A value that JSON would give back as another type is a TypeError naming where it is."""
    open_signal: Signal[..., Any] = Signal(name="open")
    bridge = make_bridge(redis_url, prefix)
    bridge.export(open_signal, consume=False)
    async with bridge:
        with pytest.raises(TypeError, match=message) as refused:
            await bridge.publish(open_signal, "shop", **payload)
        await bridge.publish(open_signal, "shop", fine=[1, "a", {"b": None, "c": 1.5, "d": True}])
    assert (
        f"payload argument {next(iter(payload))!r}" in str(refused.value) or "not JSON" in message
    )
    assert await client.xlen(stream_of(prefix, "open")) == 1


async def test_a_codec_that_converts_what_json_would_change_lets_it_travel(
    redis_url: str, prefix: str
) -> None:
    """The check applies to the codec's output: a codec turning tuples into lists passes."""

    class TupleCodec:
        def encode(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
            return {key: list(value) for key, value in payload.items()}

        def decode(self, data: dict[str, Any]) -> dict[str, Any]:
            return {key: tuple(value) for key, value in data.items()}

    pairs: Signal[..., Any] = Signal(name="pairs")
    calls = recorder(pairs)
    bridge = make_bridge(redis_url, prefix)
    bridge.export(pairs, codec=TupleCodec())
    async with bridge:
        await bridge.publish(pairs, "shop", pair=(1, 2))
        await eventually(lambda: bridge.delivered == 1)
    assert calls == [("shop", {"pair": (1, 2)})]


# -- the TypedJSON codec ------------------------------------------------------


class Color(enum.Enum):
    """A plain enum, carried by value."""

    RED = "red"
    BLUE = "blue"


class Priority(enum.IntEnum):
    """An IntEnum, which plain JSON would turn into an int."""

    LOW = 1
    HIGH = 2


class Permission(enum.Flag):
    """A flag, whose combinations are values too."""

    READ = 1
    WRITE = 2


@dataclasses.dataclass(frozen=True)
class Parcel:
    """A dataclass whose fields are themselves carried by the codec."""

    weight: Decimal
    shipped_at: datetime.datetime
    tags: tuple[str, ...]
    color: Color


class Customer(pydantic.BaseModel):
    """A pydantic model, carried as its JSON dump."""

    name: str
    joined: datetime.date
    balance: Decimal


ZONE = zoneinfo.ZoneInfo("Europe/Paris")
TYPED_PAYLOAD: Final[dict[str, Any]] = {
    "naive": datetime.datetime(2026, 12, 1, 10, 30, 15, 123456),
    "utc": datetime.datetime(2026, 12, 1, 10, 30, tzinfo=datetime.UTC),
    "offset": datetime.datetime(
        2026, 1, 2, 3, 4, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    ),
    # The second 02:30 of the night clocks go back: fold=1, in its zone.
    "zoned": datetime.datetime(2026, 10, 25, 2, 30, tzinfo=ZONE, fold=1),
    "day": datetime.date(2026, 2, 28),
    "clock": datetime.time(23, 59, 59, 999999),
    "clock_offset": datetime.time(8, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=-3))),
    "span": datetime.timedelta(days=-1, seconds=5, microseconds=7),
    "amount": Decimal("-0.000100"),
    "not_a_number": Decimal("NaN"),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "raw": b"\x00\xffbytes",
    "pair": (1, (2, "3")),
    "unique": {1, 2, 3},
    "frozen": frozenset({"a"}),
    "by_number": {1: "a", 2.5: "b", None: "c", (1, 2): "d"},
    "tagged_looking": {"$type": "decimal", "value": "1"},
    "nan": math.nan,
    "inf": -math.inf,
    "color": Color.BLUE,
    "priority": Priority.HIGH,
    "permission": Permission.READ | Permission.WRITE,
    "parcel": Parcel(Decimal("1.5"), datetime.datetime(2026, 1, 1, tzinfo=ZONE), ("x",), Color.RED),
    "customer": Customer(name="Ada", joined=datetime.date(2020, 1, 1), balance=Decimal("10.10")),
    "nested": [{"when": datetime.date(2026, 1, 1)}, [Priority.LOW, None, True, 1.5, "s"]],
}


def assert_same(sent: object, received: object, where: str = "payload") -> None:
    """``received`` equals ``sent`` and has the same type everywhere inside it."""
    assert type(received) is type(sent), where
    if isinstance(sent, float) and math.isnan(sent):
        assert math.isnan(cast("float", received)), where
    elif isinstance(sent, Decimal) and sent.is_nan():
        assert cast("Decimal", received).is_nan(), where
    elif isinstance(sent, dict):
        assert isinstance(received, dict)
        sent_items = cast("dict[object, object]", sent)
        received_items = cast("dict[object, object]", received)
        assert list(received_items) == list(sent_items), where
        for key, value in sent_items.items():
            assert_same(value, received_items[key], f"{where}[{key!r}]")
    elif isinstance(sent, (list, tuple)):
        assert isinstance(received, (list, tuple))
        assert len(received) == len(sent), where
        for index, (one, other) in enumerate(zip(sent, received, strict=True)):
            assert_same(one, other, f"{where}[{index}]")
    else:
        assert received == sent, where
        if isinstance(sent, datetime.datetime | datetime.time):
            assert isinstance(received, datetime.datetime | datetime.time)
            assert received.tzinfo is sent.tzinfo or received.tzinfo == sent.tzinfo, where
            assert received.fold == sent.fold, where
        if dataclasses.is_dataclass(sent):
            for field in dataclasses.fields(sent):
                assert_same(getattr(sent, field.name), getattr(received, field.name), field.name)


async def test_typed_json_brings_back_each_common_type_exactly_through_redis(
    redis_url: str, prefix: str
) -> None:
    """Every type TypedJSON carries comes back in the consumer equal, and of the same type."""
    shipped: Signal[..., Any] = Signal(name="typed")
    calls = recorder(shipped)
    bridge = make_bridge(
        redis_url, prefix, codec=TypedJSON(types=[Color, Priority, Permission, Parcel, Customer])
    )
    bridge.export(shipped)
    async with bridge:
        await bridge.publish(shipped, "shop", **TYPED_PAYLOAD)
        await eventually(lambda: bridge.delivered == 1)
    ((sender, received),) = calls
    assert sender == "shop"
    assert_same(TYPED_PAYLOAD, received)
    assert received["zoned"].tzinfo is ZONE
    assert received["utc"].tzinfo is datetime.UTC


async def test_a_signal_exported_with_a_codec_of_its_own_uses_it_over_the_bridges(
    redis_url: str, client: aioredis.Redis, prefix: str
) -> None:
    """The bridge's codec serves the signals exported without one; export(codec=) overrides."""
    refunded: Signal[..., Any] = Signal(providing_args=["amount"], name="refunded")
    typed: Signal[..., Any] = Signal(name="typed")
    refunds, typed_calls = recorder(refunded), recorder(typed)
    bridge = make_bridge(redis_url, prefix, codec=TypedJSON())
    bridge.export(refunded, codec=DecimalCodec())
    bridge.export(typed)
    async with bridge:
        await bridge.publish(refunded, "shop", amount=Decimal("2.5"))
        await bridge.publish(typed, "shop", amount=Decimal("2.5"), pair=(1, 2))
        await eventually(lambda: bridge.delivered == 2)
    assert refunds == [("shop", {"amount": Decimal("2.5")})]
    assert typed_calls == [("shop", {"amount": Decimal("2.5"), "pair": (1, 2)})]
    # Stored as the signal's own codec wrote it (a string), not as TypedJSON's tagged value.
    entries: list[tuple[Any, dict[bytes, bytes]]] = await client.xrange(
        stream_of(prefix, "refunded")
    )  # type: ignore[assignment]
    [(_, fields)] = entries
    assert json.loads(fields[b"event"])["payload"] == {"amount": "2.5"}


class Subclassed(str):
    """A str subclass, which nothing would bring back as itself."""


class OwnZone(datetime.tzinfo):
    """A time zone of the application's own, which nothing else could rebuild."""

    def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return datetime.timedelta(hours=1)

    def dst(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return datetime.timedelta(0)

    def tzname(self, dt: datetime.datetime | None) -> str:
        return "OWN"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (Color.RED, r"'value' is test_redis_bridge\.Color, which TypedJSON cannot"),
        ([Subclassed("a")], r"'value'\[0\] is test_redis_bridge\.Subclassed"),
        ({"a": {1: object()}}, r"'value'\['a'\]\[1\] is builtins\.object"),
        (
            datetime.time(1, tzinfo=ZONE),
            r"'value' has the time zone zoneinfo\.ZoneInfo\(key='Europe/Paris'\)",
        ),
        (
            datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(0), "Z")),
            "has the time zone",
        ),
        (datetime.datetime(2026, 1, 1, tzinfo=OwnZone()), "has the time zone"),
    ],
)
async def test_typed_json_refuses_at_publish_what_it_would_not_bring_back(
    redis_url: str, client: aioredis.Redis, prefix: str, value: object, message: str
) -> None:
    """A value of a type not named, or in a zone it cannot name, is refused with where it is."""
    open_signal: Signal[..., Any] = Signal(name="open")
    bridge = make_bridge(redis_url, prefix, codec=TypedJSON())
    bridge.export(open_signal, consume=False)
    async with bridge:
        with pytest.raises(TypeError, match=message):
            await bridge.publish(open_signal, "shop", value=value)
    assert await client.exists(stream_of(prefix, "open")) == 0


def test_typed_json_refuses_types_it_cannot_carry_by_name() -> None:
    """Only enums, dataclasses and pydantic models are named, each name once, rebuildable."""

    @dataclasses.dataclass
    class Counted:
        total: int = dataclasses.field(init=False, default=0)

    with pytest.raises(TypeError, match="not <class 'int'>"):
        TypedJSON(types=[int])
    with pytest.raises(TypeError, match=r"not <Color\.RED: 'red'>"):
        TypedJSON(types=[Color.RED])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="init=False"):
        TypedJSON(types=[Counted])

    def twin() -> type[enum.Enum]:
        Twin = enum.Enum("Twin", {"A": 1})  # noqa: N806 - an enum class
        return Twin

    with pytest.raises(ValueError, match="two of the types are named"):
        TypedJSON(types=[twin(), twin()])
    codec = TypedJSON(types=[Color, Color])
    assert codec.types == (Color,)
    assert repr(codec) == "TypedJSON(types=[test_redis_bridge.Color])"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"$type": "test_redis_bridge.Color", "value": "red"}, "unknown type"),
        ({"$type": "pickle", "value": "x"}, "unknown type 'pickle'"),
        ({"$type": "decimal", "value": "1", "extra": 1}, "malformed tagged value"),
        ({"$type": 3, "value": "1"}, "malformed tagged value"),
    ],
)
def test_typed_json_decoding_refuses_tags_it_does_not_carry(
    data: dict[str, Any], message: str
) -> None:
    """A tag naming a type not among this process's, or malformed, raises ValueError."""
    with pytest.raises(ValueError, match=message):
        TypedJSON().decode({"value": data})


async def test_an_entry_whose_codec_decoding_fails_is_dead_lettered(
    redis_url: str, client: aioredis.Redis, prefix: str
) -> None:
    """A tagged value for a type the consumer does not know sends the entry to dead letters."""
    open_signal: Signal[..., Any] = Signal(name="open")
    publisher = make_bridge(redis_url, prefix, codec=TypedJSON(types=[Color]))
    publisher.export(open_signal, consume=False)
    consumer = make_bridge(redis_url, prefix, codec=TypedJSON(), start_from="beginning")
    consumer.export(open_signal)
    async with publisher:
        await publisher.publish(open_signal, "shop", color=Color.RED)
    async with consumer:
        await eventually(lambda: consumer.dead_lettered == 1)
    (dead,) = await dead_letters(client, prefix)
    assert b"does not fit" in dead[b"reason"]
    assert b"unknown type 'test_redis_bridge.Color'" in dead[b"reason"]


async def test_an_acknowledgement_that_fails_for_good_stops_the_bridge(
    redis_url: str, client: aioredis.Redis, prefix: str, order_shipped: Signal[..., Any]
) -> None:
    """An XACK that Redis refuses (here by ACL: NOPERM) is the bridge's failure, not an outage."""
    user = f"no-xack-{uuid.uuid4().hex}"
    await client.acl_setuser(
        user,
        enabled=True,
        passwords=["+secret"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-xack"],
    )
    parts = urlsplit(redis_url)
    url = f"redis://{user}:secret@{parts.hostname}:{parts.port}{parts.path}"
    calls = recorder(order_shipped)
    bridge = make_bridge(url, prefix)
    bridge.export(order_shipped)
    try:
        with pytest.raises(ResponseError, match="no permissions"):  # noqa: PT012
            async with bridge:
                await bridge.publish(order_shipped, "shop", order_id=1)
                await eventually(lambda: not bridge.healthy)
                with pytest.raises(BridgeClosedError) as closed:
                    bridge.raise_if_failed()
                assert isinstance(closed.value.__cause__, ResponseError)
    finally:
        await client.acl_deluser(user)
    assert calls == [("shop", {"order_id": 1})]
    assert await pending(client, stream_of(prefix)) == 1
