"""Every async test runs on asyncio and on trio, and fails instead of hanging.

The Redis tests get their server from ``redis_url``: the configured Redis
when it answers, else a throwaway ``redis-server`` for the session.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Generator, Iterator
from typing import Any

import anyio
import pytest
from helpers import TEST_TIMEOUT


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Both backends, named explicitly so that a missing trio fails instead of skipping."""
    backend: str = request.param
    return backend


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis that answers: ASYNCSIGNALS_TEST_REDIS's, else one started for the session."""
    # Imported here: only the Redis tests need redis-py.
    from redis_helpers.server import RedisUnavailableError, redis_for_tests

    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(redis_for_tests())
        except RedisUnavailableError as exc:
            pytest.fail(f"no Redis for the tests: {exc}")
        yield url


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """Run every async test inside ``anyio.fail_after`` so that a hang fails the test."""
    original = pyfuncitem.obj
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def bounded(*args: Any, **kwargs: Any) -> Any:
            with anyio.fail_after(TEST_TIMEOUT):
                return await original(*args, **kwargs)

        pyfuncitem.obj = bounded
    try:
        return (yield)
    finally:
        pyfuncitem.obj = original
