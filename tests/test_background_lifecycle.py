"""Owned background work: entered in one task and left in another, cancelled tasks, fatal errors.

A :class:`BackgroundDispatcher` lives as long as an application's lifespan,
which the frameworks and test plugins do not always start and end in one
task: pytest-asyncio runs an async fixture's setup and teardown in two,
aiohttp runs cleanup in a task that is already cancelled.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from helpers import eventually, leave_right_after_a_cancel, running_tasks
from test_testing_plugins import PYPROJECT

from asyncsignals import BackgroundDispatcher, DispatcherClosedError, Signal

pytestmark = pytest.mark.anyio
pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


class Fatal(BaseException):
    """A BaseException that is not an Exception, as KeyboardInterrupt is."""


def background_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "asyncsignals.background"]


def record_senders_after(seconds: float, signal: Signal[..., Any]) -> list[object]:
    """Connect a receiver that takes ``seconds``, then records its sender; the record."""
    finished: list[object] = []

    async def email(sender: object, **kwargs: Any) -> None:
        await anyio.sleep(seconds)
        finished.append(sender)

    signal.connect(email, weak=False)
    return finished


# -- entered in one task, left in another ----------------------------------


async def test_entered_in_one_task_and_exited_in_another() -> None:
    """A dispatcher entered by one task and left by another drains, reports and leaves no task."""
    signal = Signal(name="order_shipped")
    finished = record_senders_after(0.01, signal)
    before = running_tasks()
    dispatcher = BackgroundDispatcher(grace_period=5)

    async def start() -> None:
        await dispatcher.__aenter__()
        dispatcher.send(signal, "order-1")

    async def stop() -> None:
        await dispatcher.__aexit__(None, None, None)

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(start)
    dispatcher.send(signal, "order-2")
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(stop)
    assert sorted(finished) == ["order-1", "order-2"]  # type: ignore[type-var]
    assert dispatcher.report is not None
    assert (dispatcher.report.completed, dispatcher.report.not_completed) == (2, ())
    assert running_tasks() - before == set()


async def test_a_fatal_error_reaches_the_task_that_exits(caplog: pytest.LogCaptureFixture) -> None:
    """A receiver's BaseException is raised, as itself, by the exit in another task; once."""
    signal = Signal(name="order_shipped")

    async def fatal(sender: object, **kwargs: Any) -> None:
        raise Fatal("stop")

    signal.connect(fatal)
    before = running_tasks()
    dispatcher = BackgroundDispatcher()
    caught: list[BaseException] = []

    async def start() -> None:
        await dispatcher.__aenter__()
        dispatcher.send(signal, "shop")

    async def stop() -> None:
        try:
            await dispatcher.__aexit__(None, None, None)
        except Fatal as error:
            caught.append(error)

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(start)
    await eventually(lambda: " stopped: " in repr(dispatcher))
    with pytest.raises(DispatcherClosedError, match="stopped by Fatal"):
        dispatcher.send(signal, "after")
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(stop)
    assert [str(error) for error in caught] == ["stop"]
    assert dispatcher.report is not None
    assert [(s.sender, s.started) for s in dispatcher.report.not_completed] == [("shop", True)]
    assert running_tasks() - before == set()


# -- exiting inside a task that is already being cancelled -----------------


async def test_exit_in_a_cancelled_scope_drains_and_raises_nothing_of_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Left in a cancelled scope, the exit still drains within grace, reports, and returns."""
    signal = Signal(name="order_shipped")
    finished: list[object] = []

    async def email(sender: object, **kwargs: Any) -> None:
        await anyio.sleep(0.05 if sender == "quick" else 60)
        finished.append(sender)

    signal.connect(email)
    dispatcher = BackgroundDispatcher(grace_period=0.3)
    later_cleanup: list[str] = []
    with anyio.CancelScope() as lifespan:
        await dispatcher.__aenter__()
        dispatcher.send(signal, "quick")
        dispatcher.send(signal, "stuck")
        lifespan.cancel()
        try:
            await anyio.sleep_forever()
        finally:
            started = anyio.current_time()
            await dispatcher.__aexit__(None, None, None)
            later_cleanup.append("ran")
            waited = anyio.current_time() - started
    assert lifespan.cancelled_caught
    assert later_cleanup == ["ran"]
    assert finished == ["quick"]
    assert 0.25 < waited < 3
    assert dispatcher.report is not None
    assert [(s.sender, s.started) for s in dispatcher.report.not_completed] == [("stuck", True)]
    assert background_records(caplog)[-1] == (
        "BackgroundDispatcher: 1 of 2 background sends did not complete at shutdown "
        "(grace period 0.3 s)"
    )


async def test_a_block_left_by_cancellation_drains_within_grace() -> None:
    """A block left by cancellation drains within grace; the cancellation then propagates."""
    signal = Signal(name="order_shipped")
    finished = record_senders_after(0.02, signal)
    with anyio.CancelScope() as lifespan:
        async with BackgroundDispatcher(grace_period=5) as dispatcher:
            dispatcher.send(signal, "order-1")
            lifespan.cancel()
            await anyio.sleep_forever()
    assert lifespan.cancelled_caught
    assert finished == ["order-1"]
    assert dispatcher.report is not None
    assert dispatcher.report.not_completed == ()


async def stuck(sender: object, **kwargs: Any) -> None:
    await anyio.sleep_forever()


def serve_until_cancelled(
    dispatcher: BackgroundDispatcher, later_cleanup: list[str]
) -> asyncio.Task[None]:
    """A task that serves as aiohttp's does: cleanup runs once it is cancelled."""
    signal = Signal(name="order_shipped")
    signal.connect(stuck)

    async def serve() -> None:
        await dispatcher.__aenter__()
        dispatcher.send(signal, "order-1")
        try:
            await asyncio.sleep(3600)
        finally:
            await dispatcher.__aexit__(None, None, None)
            later_cleanup.append("ran")

    return asyncio.get_running_loop().create_task(serve())


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_exit_with_a_cancellation_not_yet_delivered_still_drains() -> None:
    """Left right after its task was cancelled, before the cancellation arrived, it drains.

    The cancellation then propagates, as itself, once the drain is done.
    """
    signal = Signal(name="order_shipped")
    finished = record_senders_after(0.02, signal)
    dispatcher = BackgroundDispatcher(grace_period=5)

    async def begin() -> None:
        dispatcher.send(signal, "order-1")
        await eventually(lambda: dispatcher.running == 1)

    later_cleanup = await leave_right_after_a_cancel(dispatcher, begin)
    assert finished == ["order-1"]
    assert dispatcher.report is not None
    assert dispatcher.report.not_completed == ()
    assert later_cleanup == ["ran"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_exit_in_a_natively_cancelled_task_raises_no_cancellation_of_its_own() -> None:
    """In a task asyncio cancelled (aiohttp's cleanup), the grace running out raises nothing."""
    dispatcher = BackgroundDispatcher(grace_period=0.05)
    later_cleanup: list[str] = []
    task = serve_until_cancelled(dispatcher, later_cleanup)
    await eventually(lambda: dispatcher.running == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert later_cleanup == ["ran"]
    assert dispatcher.report is not None
    assert [(s.sender, s.started) for s in dispatcher.report.not_completed] == [("order-1", True)]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_second_cancellation_interrupts_the_drain_and_the_summary_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A cancellation arriving during the drain cancels what is left; the summary tells."""
    before = running_tasks()
    dispatcher = BackgroundDispatcher(grace_period=60)
    later_cleanup: list[str] = []
    task = serve_until_cancelled(dispatcher, later_cleanup)
    await eventually(lambda: dispatcher.running == 1)
    task.cancel()  # the first signal: shutdown begins, the drain waits
    await eventually(lambda: "shutting down" in repr(dispatcher))
    assert not task.done()
    task.cancel()  # the second: stop waiting
    with pytest.raises(asyncio.CancelledError):
        await task
    assert dispatcher.report is not None
    assert [(s.sender, s.started) for s in dispatcher.report.not_completed] == [("order-1", True)]
    summary = background_records(caplog)[-1]
    assert summary.startswith(
        "BackgroundDispatcher: 1 of 1 background sends did not complete at shutdown "
        "(the drain was interrupted by CancelledError after 0."
    ), summary
    assert summary.endswith(" s of the 60 s grace period)"), summary
    assert running_tasks() - before == set()


# -- a receiver's KeyboardInterrupt ------------------------------------------

KEYBOARD_INTERRUPT = """
import sys

import anyio

from asyncsignals import BackgroundDispatcher, Signal

signal = Signal(name="order_shipped")


async def interrupt(sender, **kwargs):
    raise KeyboardInterrupt


signal.connect(interrupt)


async def main():
    try:
        async with BackgroundDispatcher() as dispatcher:
            dispatcher.send(signal, "shop")
            await anyio.sleep(0.2)
    except KeyboardInterrupt:
        print("caught at the async with")
    print("after the async with")


backend = sys.argv[1]
if backend == "uvloop":
    import uvloop

    uvloop.run(main())
else:
    anyio.run(main, backend=backend)
print("the run ended normally")
"""


@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
def test_a_receivers_keyboard_interrupt_reaches_the_async_with_once(backend: str) -> None:
    """A background receiver's KeyboardInterrupt is raised at the async with, not in the loop."""
    result = subprocess.run(
        [sys.executable, "-c", KEYBOARD_INTERRUPT, backend],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "caught at the async with",
        "after the async with",
        "the run ended normally",
    ], result.stderr
    assert "Traceback" not in result.stderr, result.stderr


async def test_a_fatal_error_is_raised_as_itself_once_it_is_left() -> None:
    """A receiver's BaseException stops the dispatcher and is raised as itself at the exit."""
    signal = Signal(name="order_shipped")

    async def fatal(sender: object, **kwargs: Any) -> None:
        raise Fatal("fatal receiver")

    signal.connect(fatal)
    with pytest.raises(Fatal, match="fatal receiver"):  # noqa: PT012
        async with BackgroundDispatcher() as dispatcher:
            dispatcher.send(signal, "shop")
            await eventually(lambda: " stopped: " in repr(dispatcher))
            await anyio.sleep(0.01)
    assert dispatcher.report is not None
    assert [(s.sender, s.started) for s in dispatcher.report.not_completed] == [("shop", True)]


# -- the test plugins users run their lifespans under ------------------------

ASYNC_FIXTURE_TESTS = """
import anyio
import pytest
import pytest_asyncio

from asyncsignals import BackgroundDispatcher, Signal

order_shipped = Signal(name="order_shipped")
emails = []
reports = []


@order_shipped.connect
async def email(sender, **kwargs):
    await anyio.sleep(0.01)
    emails.append(sender)


@pytest_asyncio.fixture
async def dispatcher():
    async with BackgroundDispatcher(grace_period=5) as dispatcher:
        yield dispatcher
    reports.append(dispatcher.report)


@pytest.mark.asyncio
async def test_sends_in_the_background(dispatcher):
    dispatcher.send(order_shipped, "order-1")
    await dispatcher.send_wait(order_shipped, "order-2")


def test_the_fixture_drained_them_at_teardown():
    assert sorted(emails) == ["order-1", "order-2"]
    [report] = reports
    assert (report.accepted, report.completed, report.not_completed) == (2, 2, ())
"""

ANYIO_FIXTURE_TESTS = """
import anyio
import pytest

from asyncsignals import BackgroundDispatcher, Signal

order_shipped = Signal(name="order_shipped")
reports = []


@order_shipped.connect
async def email(sender, **kwargs):
    await anyio.sleep(0.01)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.fixture
async def dispatcher(anyio_backend):
    async with BackgroundDispatcher(grace_period=5) as dispatcher:
        yield dispatcher
    reports.append(dispatcher.report)


@pytest.mark.anyio
async def test_sends_in_the_background(dispatcher):
    dispatcher.send(order_shipped, "order-1")


def test_each_fixture_drained_at_teardown():
    assert [(r.accepted, r.completed) for r in reports] == [(1, 1), (1, 1)]
"""

AIOHTTP_CONFTEST = f"""
import sys

sys.path.insert(0, {str(ROOT / "examples")!r})
"""

AIOHTTP_TESTS = """
import aiohttp_app

books = []


async def test_ship_an_order(aiohttp_client):
    book = aiohttp_app.OrderBook(email_delay=0.01)
    books.append(book)
    client = await aiohttp_client(aiohttp_app.create_app(book=book, grace_period=5))
    assert (await client.post("/orders", json={"item": "teapot"})).status == 201
    assert (await client.post("/orders/1/ship")).status == 200


def test_the_cleanup_context_drained_the_email():
    [book] = books
    assert book.emails_sent == ["order #1 shipped: 1Z00000001"]
    assert book.dispatcher.report.not_completed == ()
"""


@pytest.mark.parametrize(
    ("mode", "tests", "conftest", "passed"),
    [
        pytest.param("strict", ASYNC_FIXTURE_TESTS, "", 2, id="pytest-asyncio-fixture"),
        pytest.param("strict", ANYIO_FIXTURE_TESTS, "", 3, id="anyio-fixture-asyncio-and-trio"),
        pytest.param("auto", AIOHTTP_TESTS, AIOHTTP_CONFTEST, 2, id="pytest-aiohttp-cleanup-ctx"),
    ],
)
def test_a_lifespan_under_the_users_test_plugin(
    pytester: pytest.Pytester, mode: str, tests: str, conftest: str, passed: int
) -> None:
    """Set up in a fixture and torn down by the plugin, the dispatcher drains without error."""
    pytester.makepyprojecttoml(PYPROJECT.format(mode=mode))
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_lifespan=tests)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=passed)


async def test_a_block_left_at_once_by_a_fatal_error_starts_nothing() -> None:
    """Entered and left by a BaseException without a pause: queued sends never start."""
    signal = Signal(name="order_shipped")
    ran: list[object] = []
    signal.connect(lambda sender, **kwargs: ran.append(sender), weak=False)
    dispatcher = BackgroundDispatcher()
    with pytest.raises(Fatal):  # noqa: PT012
        async with dispatcher:
            dispatcher.send(signal, "shop")
            raise Fatal
    assert ran == []
    assert dispatcher.report is not None
    assert [(s.sender, s.started) for s in dispatcher.report.not_completed] == [("shop", False)]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_repeated_cancellations_of_the_drain_still_wait_for_every_send() -> None:
    """Each further cancellation of the drain still waits for the sends to end; none outlives it."""
    signal = Signal(name="order_shipped")
    finished: list[str] = []

    async def slow_to_stop(sender: object, **kwargs: Any) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.1)
            finished.append("stopped")

    signal.connect(slow_to_stop)
    dispatcher = BackgroundDispatcher(grace_period=60)

    async def serve() -> None:
        await dispatcher.__aenter__()
        dispatcher.send(signal, "order-1")
        await dispatcher.__aexit__(None, None, None)

    task = asyncio.get_running_loop().create_task(serve())
    await eventually(lambda: dispatcher.running == 1 and "shutting down" in repr(dispatcher))
    for _ in range(3):
        task.cancel()
        await anyio.sleep(0.02)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == ["stopped"]
    assert dispatcher.report is not None
    assert len(dispatcher.report.not_completed) == 1
