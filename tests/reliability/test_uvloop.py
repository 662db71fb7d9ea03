"""The uvloop leg of the CI matrix really runs on uvloop, and the others do not."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from .conftest import UVLOOP


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_asyncio_loop_is_uvloop_exactly_when_asked() -> None:
    """With ASYNCSIGNALS_TEST_UVLOOP=1 the asyncio tests run on uvloop; otherwise they do not."""
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop) is UVLOOP
