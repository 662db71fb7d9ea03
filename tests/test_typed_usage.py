"""What the type checkers accept of typed signals runs: tests/type_tests/typed_usage.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from asyncsignals import Signal

pytestmark = pytest.mark.anyio

USAGE = Path(__file__).resolve().parent / "type_tests" / "typed_usage.py"


@pytest.fixture(scope="module")
def typed_usage() -> ModuleType:
    """The valid-usage file, imported once (its signals and receivers are module-level)."""
    spec = importlib.util.spec_from_file_location("typed_usage", USAGE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs, as an import would: its dataclasses look it up.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


async def test_typed_usage_runs(typed_usage: ModuleType) -> None:
    """Every send, receiver and helper the checkers accept in typed_usage.py works as typed."""
    await typed_usage.main()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the Redis bridge is asyncio only
async def test_publish_takes_the_sender_as_the_signal_send_does(anyio_backend: str) -> None:
    """RedisBridge.publish takes sender= by keyword (a declared signal's form) or by position."""
    from asyncsignals.redis import BridgeClosedError, RedisBridge

    bridge = RedisBridge("redis://127.0.0.1:1/0", app="shop")
    signal = Signal(name="order_shipped")
    # Read before the bridge's own checks: a send without a sender never gets that far.
    with pytest.raises(TypeError, match=r"publish\(\) missing the sender"):
        await bridge.publish(signal)
    with pytest.raises(BridgeClosedError):
        await bridge.publish(signal, sender="shop", order=1)
    with pytest.raises(BridgeClosedError):
        await bridge.publish(signal, "shop", order=1)
