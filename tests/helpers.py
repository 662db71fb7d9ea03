"""Helpers shared by the behaviour tests."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import anyio.to_thread
import trio

# A test that takes longer than this is hung, not slow.
TEST_TIMEOUT = 5.0


def current_backend() -> str:
    """The name of the async backend running the current thread's event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return "trio"
    return "asyncio"


def running_tasks() -> set[object]:
    """Every task alive on the current event loop, on either backend."""
    if current_backend() == "asyncio":
        return set(asyncio.all_tasks())
    tasks: set[object] = set()
    root = trio.lowlevel.current_root_task()
    assert root is not None
    pending = [root]
    while pending:
        task = pending.pop()
        tasks.add(task)
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return tasks


@contextlib.contextmanager
def no_unawaited_coroutines() -> Iterator[None]:
    """Fail when a coroutine created inside the block is dropped without being awaited."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    never_awaited = [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert never_awaited == []


@contextlib.asynccontextmanager
async def native_timeout(seconds: float) -> AsyncIterator[None]:
    """The backend's own timeout: ``asyncio.timeout`` or ``trio.fail_after``."""
    if current_backend() == "asyncio":
        async with asyncio.timeout(seconds):
            yield
    else:
        with trio.fail_after(seconds):
            yield


def native_timeout_error() -> type[BaseException]:
    """What ``native_timeout`` raises when it expires."""
    return TimeoutError if current_backend() == "asyncio" else trio.TooSlowError


def start_thread(function: object) -> threading.Thread:
    """Start ``function`` in a daemon thread and return the thread."""
    assert callable(function)
    thread = threading.Thread(target=function, daemon=True)
    thread.start()
    return thread


async def join_thread(thread: threading.Thread) -> None:
    """Join a thread without blocking the event loop; fail if it does not end."""
    await anyio.to_thread.run_sync(thread.join, TEST_TIMEOUT)
    assert not thread.is_alive()


async def runs_tasks(sender: object, **kwargs: object) -> None:
    """Waits in two tasks of the backend's own group (a trio nursery groups their cancellations)."""
    if current_backend() == "trio":
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            nursery.start_soon(trio.sleep_forever)
    else:
        async with asyncio.TaskGroup() as group:
            group.create_task(asyncio.sleep(3600))
            group.create_task(asyncio.sleep(3600))


async def leave_right_after_a_cancel(
    owner: AbstractAsyncContextManager[Any], begin: Callable[[], Awaitable[None]]
) -> list[str]:
    """In a task of its own: enter ``owner``, ``begin()``, cancel the task and leave at once.

    The cancellation is requested, not yet delivered, when the block ends: it
    arrives inside the exit. Checks that it then propagates out of the task,
    and returns what the task's later cleanup recorded.
    """
    later_cleanup: list[str] = []

    async def serve() -> None:
        try:
            async with owner:
                await begin()
                task = asyncio.current_task()
                assert task is not None
                task.cancel()
        finally:
            later_cleanup.append("ran")

    task = asyncio.get_running_loop().create_task(serve())
    try:
        await task
    except asyncio.CancelledError:
        return later_cleanup
    raise AssertionError("the cancellation did not propagate out of the task")


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds; the test's own timeout bounds the wait.

    Polls: the state lives in counters no event announces (a dispatcher's,
    Redis's).
    """
    while not condition():  # noqa: ASYNC110 - the condition is another object's counter
        await anyio.sleep(0.001)
