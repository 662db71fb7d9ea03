"""asyncsignals.testing in a user's suite: pytest-asyncio (strict and auto) and anyio's plugin.

Each test writes a small project (an app module, a conftest and a test file
written the way a user would) and runs pytest on it in a subprocess, so
that every plugin and mode starts from a clean interpreter.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

APP = '''
"""A shop whose orders are shipped with a signal."""

import anyio

from asyncsignals import Signal

order_shipped = Signal(providing_args=["order", "tracking_number"], name="order_shipped")
emails: list[str] = []


def email_customer(sender, order, tracking_number, **kwargs):
    emails.append(order)
    return f"mailed {order}"


order_shipped.connect(email_customer)


async def ship(order, tracking_number="1Z"):
    await anyio.sleep(0.01)
    await order_shipped.send(sender=None, order=order, tracking_number=tracking_number)
'''

CONFTEST = """
# Imported before pytest loads it as a plugin: that must not warn.
from asyncsignals.testing import capture  # noqa: F401

pytest_plugins = ["asyncsignals.testing"]
"""

ANYIO_CONFTEST = """
import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""

TESTS = """
import anyio
import pytest

from asyncsignals.testing import capture, connected_to, muted, sends, wait_for_send
from shop import email_customer, emails, order_shipped, ship


{marker}
async def test_capture_asserts_what_was_sent():
    with capture(order_shipped) as shipped:
        await ship("#1")
    shipped.assert_sent_once_with(sender=None, order="#1", tracking_number="1Z")
    shipped.assert_not_sent(order="#2")
    assert shipped.sends[0].results == [(email_customer, "mailed #1")]


{marker}
async def test_wait_for_send_returns_the_send():
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(ship, "#2")
        sent = await wait_for_send(order_shipped, order="#2", timeout=2)
    assert sent.results == [(email_customer, "mailed #2")]


{marker}
async def test_sends_streams_every_send():
    orders = set()
    async with sends(order_shipped) as stream:
        async with anyio.create_task_group() as tasks:
            for number in range(3):
                tasks.start_soon(ship, f"#{{number}}")
            async for sent in stream:
                orders.add(sent.payload["order"])
                if len(orders) == 3:
                    break
    assert orders == {{"#0", "#1", "#2"}}


{marker}
async def test_muted_receiver_in_this_task_only():
    emails.clear()
    started = anyio.Event()
    shipped = anyio.Event()

    async def elsewhere():
        await started.wait()
        await ship("#elsewhere")
        shipped.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(elsewhere)
        with muted(order_shipped, email_customer):
            started.set()
            await ship("#muted")
            await shipped.wait()
    assert emails == ["#elsewhere"]


{marker}
async def test_connected_to_for_the_block():
    audited = []

    async def audit(sender, order, **kwargs):
        audited.append(order)

    with connected_to(order_shipped, audit):
        await ship("#a")
    await ship("#b")
    assert audited == ["#a"]


{marker}
async def test_fixtures(signal_capture, signal_isolation):
    shipped = signal_capture(order_shipped)
    order_shipped.disconnect(email_customer)
    await ship("#f")
    shipped.assert_sent_times(1)
    assert shipped.sends[0].receivers == ()


def test_isolation_put_the_receiver_back():
    assert order_shipped.receivers_for(None) == [email_customer]


audited = []


def audit_order(sender, order, **kwargs):
    audited.append(order)


{marker}
@muted(order_shipped, email_customer)
@connected_to(order_shipped, audit_order)
async def test_decorated_with_muted_and_connected_to(signal_capture):
    emails.clear()
    shipped = signal_capture(order_shipped)
    await ship("#d")
    assert emails == []
    assert audited[-1] == "#d"
    assert shipped.sends[0].receivers == (audit_order,)


def test_the_decorators_blocks_ended_with_the_test():
    assert order_shipped.receivers_for(None) == [email_customer]


{marker}
async def test_wrong_payload_fails():
    with capture(order_shipped) as shipped:
        await ship("#1")
        await ship("#2", "2Z")
    shipped.assert_sent_once_with(sender=None, order="#3", tracking_number="1Z")


{marker}
async def test_wait_times_out():
    with capture(order_shipped) as shipped:
        await ship("#1")
        await shipped.wait_for(order="#404", timeout=0.2)
"""

PYPROJECT = """
[tool.pytest.ini_options]
asyncio_mode = "{mode}"
asyncio_default_fixture_loop_scope = "function"
filterwarnings = ["error"]
timeout = 60
addopts = ["-p", "no:cacheprovider", "--strict-markers", "--strict-config"]
"""

MODES = {
    # mode: (asyncio_mode, marker on each async test, conftest addition, runs per test)
    "pytest-asyncio-strict": ("strict", "@pytest.mark.asyncio", "", 1),
    "pytest-asyncio-auto": ("auto", "", "", 1),
    "anyio-asyncio-and-trio": ("strict", "@pytest.mark.anyio", ANYIO_CONFTEST, 2),
}


def make_project(pytester: pytest.Pytester, mode: str) -> int:
    """Write the user's project for ``mode``; return how many times each async test runs."""
    asyncio_mode, marker, conftest_extra, runs = MODES[mode]
    pytester.makepyprojecttoml(PYPROJECT.format(mode=asyncio_mode))
    pytester.makepyfile(shop=APP)
    pytester.makeconftest(CONFTEST + conftest_extra)
    pytester.makepyfile(test_orders=TESTS.format(marker=marker))
    return runs


@pytest.mark.parametrize("mode", list(MODES))
def test_helpers_work_and_explain_failures(pytester: pytest.Pytester, mode: str) -> None:
    """Every helper passes in a user's suite, and failures list what was actually sent."""
    runs = make_project(pytester, mode)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=7 * runs + 2, failed=2 * runs)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: expected order_shipped to be sent once with sender=None, "
            "order='#3', tracking_number='1Z'; it was sent 2 times:",
            "*  1. sender=None, order='#1', tracking_number='1Z'",
            "*  2. sender=None, order='#2', tracking_number='2Z'",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*SendTimeoutError: order_shipped was not sent with order='#404' within 0.2 s; "
            "it was sent 1 time:",
            "*  1. sender=None, order='#1', tracking_number='1Z'",
        ]
    )
    # The helpers' own frames are hidden: the traceback ends in the user's test.
    result.stdout.no_fnmatch_line("*asyncsignals/testing.py:*")


UNUSED = """
from shop import email_customer, order_shipped

from asyncsignals._signal import hooks_of


def audit(sender, **kwargs):
    return "audited"


def test_connects_without_isolation():
    order_shipped.connect(audit)
    assert not hooks_of(order_shipped)


def test_connection_is_still_there():
    assert order_shipped.receivers_for(None) == [email_customer, audit]
"""


def test_the_plugin_changes_nothing_when_its_fixtures_are_unused(
    pytester: pytest.Pytester,
) -> None:
    """With the plugin enabled but no fixture requested, signals behave as without it."""
    make_project(pytester, "pytest-asyncio-strict")
    pytester.makepyfile(test_orders=UNUSED)
    pytester.runpytest_subprocess().assert_outcomes(passed=2)


def test_usefixtures_isolates_every_test(pytester: pytest.Pytester) -> None:
    """usefixtures = ["signal_isolation"] in the configuration isolates every test."""
    make_project(pytester, "pytest-asyncio-strict")
    pytester.makepyprojecttoml(
        PYPROJECT.format(mode="strict") + 'usefixtures = ["signal_isolation"]\n'
    )
    pytester.makepyfile(test_orders=UNUSED)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_connection_is_still_there*"])
