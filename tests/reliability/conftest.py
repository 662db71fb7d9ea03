"""Hypothesis profiles, the ``slow`` marker's default skip, and the uvloop run.

- Hypothesis profiles ``asyncsignals-ci`` (a fixed, small budget) and
  ``asyncsignals-long`` (at least 10,000 examples, for local runs) are
  registered here; the model test picks one by name.
- Tests marked ``slow`` are skipped unless the ``-m`` expression names
  ``slow`` (``pytest -m slow tests/reliability``).
- ``ASYNCSIGNALS_TEST_UVLOOP=1`` makes every asyncio event loop of the run a
  uvloop one (the asyncio backend's tests, the temporary loops of
  ``send_sync``), for the uvloop leg of the CI matrix.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import HealthCheck, Phase, settings

# No explain phase: tracing every step of a failing state machine takes minutes.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink)

CI_PROFILE = "asyncsignals-ci"
LONG_PROFILE = "asyncsignals-long"

settings.register_profile(
    CI_PROFILE,
    max_examples=500,
    stateful_step_count=30,
    deadline=None,
    database=None,
    derandomize=True,
    print_blob=True,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    LONG_PROFILE,
    max_examples=10_000,
    stateful_step_count=50,
    deadline=None,
    database=None,
    print_blob=True,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow],
)

UVLOOP = os.environ.get("ASYNCSIGNALS_TEST_UVLOOP") == "1"

if UVLOOP:  # pragma: no cover (only the uvloop leg of the CI matrix)
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` tests unless the ``-m`` expression selects them."""
    if "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow: select with -m slow")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)
