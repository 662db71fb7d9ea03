"""Every async test runs on asyncio and on trio, and fails instead of hanging."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Generator
from typing import Any

import anyio
import pytest
from helpers import TEST_TIMEOUT


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Both backends, named explicitly so that a missing trio fails instead of skipping."""
    backend: str = request.param
    return backend


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
