"""pytest fixtures for suites that test code using asyncsignals.

Loaded by ``pytest_plugins = ["asyncsignals.testing"]`` in the top-level
``conftest.py`` (or ``-p asyncsignals.testing``). It only defines fixtures,
none of them autouse: a suite that does not ask for them runs exactly as
without the plugin.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator

import pytest

from ._signal import Signal, all_signals, connections_of
from .testing import SignalCapture, capture

__all__ = ["signal_capture", "signal_isolation"]


@pytest.fixture
def signal_capture() -> Iterator[Callable[[Signal], SignalCapture]]:
    """A factory: ``signal_capture(signal)`` starts a capture that lasts until the test ends.

    The same as ``with capture(signal) as captured:`` around the whole test,
    for tests that would rather not indent; see ``asyncsignals.testing.capture``.
    """
    with contextlib.ExitStack() as stack:

        def start(signal: Signal) -> SignalCapture:
            return stack.enter_context(capture(signal))

        yield start


@pytest.fixture
def signal_isolation() -> Iterator[None]:
    """Put back every signal's receivers after the test, as they were before it.

    Receivers the test connects are removed and receivers it disconnects
    come back, for every live ``Signal`` (signals created during the test
    are left alone). Sends during the test are unaffected. To isolate every
    test, add ``usefixtures = ["signal_isolation"]`` to the pytest
    configuration.
    """
    saved = [(weakref.ref(signal), connections_of(signal).save()) for signal in all_signals()]
    yield
    for reference, connections in saved:
        signal = reference()
        if signal is not None:
            connections_of(signal).restore(connections)
