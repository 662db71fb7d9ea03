"""Running a coroutine function on one event loop, with nothing else installed.

asyncio runs on ``asyncio.Runner``, uvloop on a ``Runner`` with uvloop's loop
factory, trio on ``trio.run``: the floors and the peers see the loop a user's
application would give them, not one prepared by a benchmark framework.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

T = TypeVar("T")

Backend = Literal["asyncio", "uvloop", "trio"]
BACKENDS: tuple[Backend, ...] = ("asyncio", "uvloop", "trio")


def run_on(backend: Backend, function: Callable[[], Awaitable[T]]) -> T:
    """Run ``function()`` to completion on a fresh event loop of ``backend``."""

    async def main() -> T:
        return await function()

    if backend == "trio":
        import trio

        return trio.run(main)
    if backend == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    with asyncio.Runner() as runner:
        return runner.run(main())


def available(backend: Backend) -> bool:
    """True when ``backend``'s package can be imported here."""
    try:
        if backend == "trio":
            import trio  # noqa: F401
        elif backend == "uvloop":
            import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
