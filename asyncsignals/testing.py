"""Helpers for async test suites: capture, wait for, stream, mute and connect signals.

Every helper works on asyncio and trio (through anyio), from sync and async
tests alike, and never touches a signal's receivers except
:func:`connected_to`, which connects one for the length of a block.

- :func:`capture` records every send of a signal, with assertions whose
  failure messages list what was actually sent.
- :func:`wait_for_send` and :meth:`SignalCapture.wait_for` wait for the next
  matching send, with a timeout; :func:`sends` streams sends to an
  ``async for`` loop through a bounded buffer.
- :func:`muted` silences a signal, or one receiver, in the current task's
  context only.
- :func:`connected_to` connects a receiver for the length of a block.

The pytest fixtures ``signal_capture`` and ``signal_isolation`` are enabled
with one line in the top-level ``conftest.py``::

    pytest_plugins = ["asyncsignals.testing"]

(PYTEST_DONT_REWRITE: pytest leaves this module's asserts alone, so it may be
imported before pytest loads it as a plugin without a warning.)
"""

from __future__ import annotations

# The reference page shows these names in the order they are imported here,
# the order of the module docstring.
# isort: off
from ._send_record import Send
from ._capture import SignalCapture, capture, SendTimeoutError, wait_for_send
from ._streaming import SendStream, sends
from ._mute_and_connect import muted, connected_to

# isort: on

__all__ = [
    "Send",
    "SendStream",
    "SendTimeoutError",
    "SignalCapture",
    "capture",
    "connected_to",
    "muted",
    "sends",
    "wait_for_send",
]

# Loading this module as a pytest plugin (pytest_plugins = ["asyncsignals.testing"])
# loads the fixtures too, while importing it never imports pytest.
pytest_plugins: list[str] = ["asyncsignals._pytest_plugin"]

# Public names show their public path in reprs, tracebacks and help().
for _public in (
    Send,
    SendStream,
    SendTimeoutError,
    SignalCapture,
    capture,
    connected_to,
    muted,
    sends,
    wait_for_send,
):
    _public.__module__ = "asyncsignals.testing"
del _public
