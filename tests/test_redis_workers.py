"""The Redis bridge's local queue and workers, without Redis: waiting for room, deadlines.

The bridge runs on asyncio only (redis-py's async client), and so do these.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio
import pytest

from asyncsignals._redis_wire import Entry
from asyncsignals._redis_workers import SendTimer, Workers

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """The bridge's backend."""
    return "asyncio"


class Recorder:
    """The callbacks a consumer gives its workers, recording what they are told."""

    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.timed_out: list[str] = []
        self.done: list[str] = []
        self.stopped = 0
        self.hang: set[str] = set()
        self.shielded: set[str] = set()
        self.next_delivered = anyio.Event()

    async def deliver(self, entry: Entry, timer: SendTimer) -> None:
        name = cast("str", entry)
        timer.start()
        try:
            if name in self.hang:
                await anyio.sleep_forever()
            if name in self.shielded:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(0.2)
            self.delivered.append(name)
            if name == "next":
                self.next_delivered.set()
        finally:
            timer.stop()

    def time_out(self, entry: Entry) -> None:
        self.timed_out.append(cast("str", entry))

    def finished(self, entry: Entry) -> None:
        self.done.append(cast("str", entry))

    def stop(self) -> None:
        self.stopped += 1

    def workers(self) -> Workers:
        return Workers(self.deliver, self.time_out, self.finished, self.stop)


def entries(*names: str) -> list[Entry]:
    return [cast("Entry", name) for name in names]


async def call(task: Callable[[], Awaitable[None]]) -> None:
    await task()


async def run(workers: Workers, tasks: list[Any], *, then: Any = None) -> None:
    async with anyio.create_task_group() as group:
        for task in tasks:
            group.start_soon(call, task)
        if then is not None:
            await then()
        workers.close()


async def test_without_a_send_timeout_there_is_no_watchdog() -> None:
    """send_timeout=None: only the workers run, and they take every entry."""
    recorder = Recorder()
    workers = recorder.workers()
    tasks = workers.open(capacity=4, count=2, send_timeout=None)
    assert len(tasks) == 2

    async def put_all() -> None:
        for entry in entries("a", "b", "c"):
            await workers.put(entry)

    await run(workers, tasks, then=put_all)
    assert sorted(recorder.delivered) == ["a", "b", "c"]
    assert recorder.stopped == 1


async def test_readers_waiting_for_room_all_get_it() -> None:
    """Two readers wait while the queue is full; both are let in once a worker takes from it."""
    recorder = Recorder()
    workers = recorder.workers()
    tasks = workers.open(capacity=1, count=1, send_timeout=None)
    (first, second, third) = entries("first", "second", "third")
    await workers.put(first)  # full: no worker runs yet
    let_in: list[str] = []
    both_in = anyio.Event()

    async def put(entry: Entry) -> None:
        await workers.put(entry)
        let_in.append(cast("str", entry))
        if len(let_in) == 2:
            both_in.set()

    async with anyio.create_task_group() as group:
        group.start_soon(put, second)
        group.start_soon(put, third)
        await anyio.wait_all_tasks_blocked()
        assert let_in == []  # both wait for room
        for task in tasks:
            group.start_soon(call, task)
        with anyio.fail_after(5):
            await both_in.wait()
        workers.close()
    assert sorted(let_in) == ["second", "third"]
    assert recorder.delivered == ["first", "second", "third"]


@pytest.mark.parametrize(
    ("first", "timed_out", "delivered"),
    [("hangs", ["hangs"], ["next"]), ("shielded", [], ["shielded", "next"])],
    ids=["hangs", "shields-itself"],
)
async def test_past_its_deadline_a_send_is_cancelled_and_its_worker_goes_on(
    first: str, timed_out: list[str], delivered: list[str]
) -> None:
    """A hung send is timed out; one that shields itself and completes counts as delivered.

    Either way the same worker, with a new scope, delivers the next entry.
    """
    recorder = Recorder()
    recorder.hang.add("hangs")
    recorder.shielded.add("shielded")
    workers = recorder.workers()
    tasks = workers.open(capacity=4, count=1, send_timeout=0.05)

    async def put_all() -> None:
        for entry in entries(first, "next"):
            await workers.put(entry)
        with anyio.fail_after(5):
            await recorder.next_delivered.wait()

    await run(workers, tasks, then=put_all)
    assert recorder.timed_out == timed_out
    assert recorder.delivered == delivered
    assert recorder.done == [first, "next"]
