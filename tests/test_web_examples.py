"""The FastAPI and aiohttp order services: signals in the request, e-mails after it.

Each app runs in-process with its lifespan (FastAPI through httpx's ASGI
transport, aiohttp through its test server), including a graceful shutdown
with background sends still in flight.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer

ROOT = Path(__file__).resolve().parent.parent
# The example programs are scripts, not a package: import them as such.
sys.path.insert(0, str(ROOT / "examples"))

import aiohttp_app  # noqa: E402
import fastapi_app  # noqa: E402

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def fastapi_client(
    book: fastapi_app.OrderBook, grace_period: float = 5.0
) -> AsyncIterator[httpx.AsyncClient]:
    """The FastAPI app with its lifespan entered, and a client talking to it in-process."""
    app = fastapi_app.create_app(book, grace_period=grace_period)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://orders") as client,
    ):
        yield client


def background_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "asyncsignals.background"]


async def test_fastapi_order_flow_runs_receivers_in_and_after_the_request() -> None:
    """Audit and warehouse run before the response; the e-mail after it, in the background."""
    book = fastapi_app.OrderBook(email_delay=0.05)
    async with fastapi_client(book) as client:
        created = await client.post("/orders", json={"item": "teapot", "quantity": 2})
        assert created.status_code == 201
        assert created.json() == {
            "id": 1,
            "item": "teapot",
            "quantity": 2,
            "status": "created",
            "tracking_number": None,
        }
        shipped = await client.post("/orders/1/ship")
        assert shipped.status_code == 200
        assert shipped.json()["tracking_number"] == "1Z00000001"
        assert book.audit_log == ["order_created #1", "order_shipped #1"]
        assert book.released == [1]
        assert book.emails_sent == []  # the response did not wait for the mail server
        stats = (await client.get("/stats")).json()
        assert stats["background_queued"] + stats["background_running"] == 1
        assert (await client.post("/orders/1/ship")).status_code == 409
        assert (await client.get("/orders/7")).status_code == 404
        assert (await client.get("/orders/1")).json()["status"] == "shipped"
        while book.emails_sent == []:  # noqa: ASYNC110 - the app's state, not ours to signal
            await anyio.sleep(0.01)
        assert (await client.get("/stats")).json()["emails_sent"] == 1
    assert book.emails_sent == ["order #1 shipped: 1Z00000001"]


async def test_fastapi_shutdown_drains_emails_in_flight(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Leaving the lifespan with e-mails queued and running sends all of them within grace."""
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    book = fastapi_app.OrderBook(email_delay=0.05)
    async with fastapi_client(book, grace_period=5) as client:
        for _ in range(15):
            await client.post("/orders", json={"item": "teapot"})
        for number in range(1, 16):
            assert (await client.post(f"/orders/{number}/ship")).status_code == 200
        assert len(book.emails_sent) < 15
    assert len(book.emails_sent) == 15
    assert book.dispatcher is not None
    report = book.dispatcher.report
    assert report is not None
    assert (report.accepted, report.completed, report.not_completed) == (15, 15, ())
    assert background_records(caplog) == []
    assert "background sends: 15 accepted, 15 completed, 0 did not complete" in caplog.text


async def test_fastapi_shutdown_reports_emails_cut_off_by_the_grace_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """E-mails still running or queued when the grace period ends are counted and logged."""
    book = fastapi_app.OrderBook(email_delay=60)
    async with fastapi_client(book, grace_period=0.05) as client:
        await client.post("/orders", json={"item": "teapot"})
        await client.post("/orders/1/ship")
    assert book.emails_sent == []
    assert book.dispatcher is not None
    report = book.dispatcher.report
    assert report is not None
    assert [(s.signal.name, s.sender, s.started) for s in report.not_completed] == [
        ("order_shipped_background", book, True)
    ]
    assert background_records(caplog)[0] == (
        "background send of signal order_shipped_background from sender "
        "<OrderBook: 1 orders> did not complete: cancelled while running; "
        "e-mail for order #1"
    )


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_aiohttp_order_flow_and_graceful_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The aiohttp service: receivers in the request, e-mails drained at cleanup (asyncio)."""
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    book = aiohttp_app.OrderBook(email_delay=0.05)
    app = aiohttp_app.create_app(book=book, grace_period=5)
    async with TestClient(TestServer(app)) as client:
        created = await client.post("/orders", json={"item": "teapot", "quantity": 2})
        assert created.status == 201
        assert (await created.json())["status"] == "created"
        shipped = await client.post("/orders/1/ship")
        assert shipped.status == 200
        assert (await shipped.json())["tracking_number"] == "1Z00000001"
        assert book.audit_log == ["order_created #1", "order_shipped #1"]
        assert book.released == [1]
        assert book.emails_sent == []
        stats = await (await client.get("/stats")).json()
        assert stats["background_queued"] + stats["background_running"] == 1
        assert (await client.post("/orders/1/ship")).status == 409
        assert (await client.get("/orders/7")).status == 404
        assert (await (await client.get("/orders/1")).json())["status"] == "shipped"
        for _ in range(4):
            await client.post("/orders", json={"item": "cup"})
        for number in range(2, 6):
            assert (await client.post(f"/orders/{number}/ship")).status == 200
        assert len(book.emails_sent) < 5
    assert len(book.emails_sent) == 5
    assert book.dispatcher is not None
    assert book.dispatcher.report is not None
    assert book.dispatcher.report.not_completed == ()
    assert "background sends: 5 accepted, 5 completed, 0 did not complete" in caplog.text


BAD_ORDERS = [
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"[1]", id="not-an-object"),
    pytest.param(b'{"quantity": 2}', id="no-item"),
    pytest.param(b'{"item": "cup", "quantity": "many"}', id="quantity-not-an-int"),
    pytest.param(b'{"item": "cup", "quantity": -3}', id="quantity-not-positive"),
]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("body", BAD_ORDERS)
async def test_both_services_refuse_a_bad_order_before_any_signal_is_sent(body: bytes) -> None:
    """A malformed order is a client error (422, 400), and creates nothing."""
    book = fastapi_app.OrderBook(email_delay=0.05)
    async with fastapi_client(book) as client:
        response = await client.post(
            "/orders", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422
    assert book.orders == {}
    aiohttp_book = aiohttp_app.OrderBook(email_delay=0.05)
    app = aiohttp_app.create_app(book=aiohttp_book, grace_period=5)
    async with TestClient(TestServer(app)) as aiohttp_client:
        refused = await aiohttp_client.post(
            "/orders", data=body, headers={"content-type": "application/json"}
        )
        assert refused.status == 400
        assert "order" in (await refused.text())
    assert aiohttp_book.orders == {}
    assert aiohttp_book.audit_log == []


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_aiohttp_shutdown_reports_emails_cut_off_by_the_grace_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """aiohttp cleanup after the grace period reports the e-mails that did not go out."""
    book = aiohttp_app.OrderBook(email_delay=60)
    app = aiohttp_app.create_app(book=book, grace_period=0.05, max_concurrent=1)
    async with TestClient(TestServer(app)) as client:
        for _ in range(2):
            await client.post("/orders", json={"item": "teapot"})
        await client.post("/orders/1/ship")
        await client.post("/orders/2/ship")
    assert book.dispatcher is not None
    report = book.dispatcher.report
    assert report is not None
    assert [
        (s.sender, dict(s.payload)["tracking_number"], s.started) for s in report.not_completed
    ] == [
        (book, "1Z00000001", True),
        (book, "1Z00000002", False),
    ]
    assert "2 of 2 background sends did not complete" in caplog.text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ship_one_order_then_interrupt(arguments: list[str], port: int) -> tuple[int, str]:
    """Run the server, create and ship an order, press Ctrl+C; its exit code and output."""
    with subprocess.Popen(
        [sys.executable, *arguments],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as server:
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                for _ in range(200):
                    try:
                        created = client.post("/orders", json={"item": "teapot"})
                        break
                    except httpx.TransportError:
                        time.sleep(0.05)
                else:
                    pytest.fail("the server did not start")
                assert created.status_code == 201
                assert client.post("/orders/1/ship").status_code == 200
        finally:
            server.send_signal(signal.SIGINT)  # as Ctrl+C
            output, _ = server.communicate(timeout=30)
    return server.returncode, output


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}", "examples.fastapi_app:app"],
        ["-m", "aiohttp.web", "-H", "127.0.0.1", "-P", "{port}", "examples.aiohttp_app:create_app"],
    ],
    ids=["uvicorn", "aiohttp"],
)
def test_the_documented_commands_serve_the_app(command: list[str]) -> None:
    """The README's command starts the service; it answers and shuts down gracefully."""
    port = free_port()
    arguments = [part.format(port=port) for part in command]
    returncode, output = ship_one_order_then_interrupt(arguments, port)
    assert returncode == 0, output
    # A send that did not complete would be logged at ERROR, shown without any set-up.
    assert "did not complete:" not in output
    if "uvicorn" in command:
        assert "background sends: 1 accepted, 1 completed, 0 did not complete" in output


RUN_APP_GRACE_RUNS_OUT = """
import logging
import sys

from aiohttp import web

sys.path.insert(0, "examples")
import aiohttp_app

logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
app = aiohttp_app.create_app(book=aiohttp_app.OrderBook(email_delay=60), grace_period=0.2)


async def database(app):
    yield
    # Entered before the dispatcher: cleaned up after it.
    print("database closed", flush=True)


async def on_cleanup(app):
    print("on_cleanup ran", flush=True)


app.cleanup_ctx.insert(0, database)
app.on_cleanup.append(on_cleanup)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), shutdown_timeout=1)
"""


def test_run_app_shutdown_whose_grace_runs_out_still_runs_later_cleanup() -> None:
    """Under run_app, a Ctrl+C whose grace period runs out reports; the cleanup after it runs."""
    port = free_port()
    returncode, output = ship_one_order_then_interrupt(
        ["-c", RUN_APP_GRACE_RUNS_OUT, str(port)], port
    )
    assert returncode == 0, output
    assert "did not complete: cancelled while running; e-mail for order #1" in output, output
    assert "background sends: 1 accepted, 0 completed, 1 did not complete" in output, output
    assert "database closed" in output, output
    assert "on_cleanup ran" in output, output
    assert "Traceback" not in output, output
