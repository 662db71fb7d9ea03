"""The typed examples of docs/testing.md, as they stand there.

Never run, only type-checked (tests/test_docs.py checks that each block
marked type-checked stands here verbatim, and runs the page).
"""

# The blocks follow one another as on the page.
# ruff: noqa: E402

from typing import Any

import anyio

from asyncsignals import Signal, receiver
from asyncsignals.testing import capture, connected_to, muted, sends, wait_for_send


@Signal.declare
def order_shipped(*, sender: object, order: str, tracking_number: str) -> str:
    """An order left the warehouse; each receiver returns a note. Never called."""
    raise NotImplementedError


mails: list[str] = []


@receiver(order_shipped)
async def email_customer(sender: object, order: str, **kwargs: Any) -> str:
    mails.append(order)  # talks to the mail server in real life
    return "mailed"


async def ship(order: str) -> None:
    await order_shipped.send(sender=None, order=order, tracking_number="1Z")


async def test_ship_sends_order_shipped() -> None:
    with capture(order_shipped) as shipped:
        await ship("#42")
    shipped.assert_sent_once_with(sender=None, order="#42", tracking_number="1Z")
    shipped.assert_sent(order="#42")  # a subset of the payload is enough
    assert shipped.sends[0].results == [(email_customer, "mailed")]


async def test_the_worker_ships() -> None:
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(ship, "#7")
        sent = await wait_for_send(order_shipped, order="#7", timeout=2)
        assert sent.results == [(email_customer, "mailed")]


async def test_stream_of_sends() -> None:
    seen: set[str] = set()
    async with sends(order_shipped) as stream, anyio.create_task_group() as tasks:
        for order in ("#1", "#2", "#3"):
            tasks.start_soon(ship, order)
        async for sent in stream:
            seen.add(sent.payload["order"])
            if len(seen) == 3:
                break
    assert seen == {"#1", "#2", "#3"}


async def test_no_mail_is_sent() -> None:
    mails.clear()
    with muted(order_shipped, email_customer), capture(order_shipped) as shipped:
        await ship("#42")
    assert mails == []
    shipped.assert_sent_times(1, order="#42")


async def test_audit_hears_the_shipment() -> None:
    heard: list[str] = []

    def audit(sender: object, order: str, **kwargs: Any) -> str:
        heard.append(order)
        return "audited"

    with connected_to(order_shipped, audit):
        await ship("#42")
    await ship("#43")  # disconnected again, even if the block had raised
    assert heard == ["#42"]


@muted(order_shipped)
async def test_ship_without_receivers() -> None:
    mails.clear()
    await ship("#42")
    assert mails == []


import pytest


@pytest.mark.asyncio
async def test_under_pytest_asyncio() -> None:
    with capture(order_shipped) as shipped:
        await ship("#42")
    shipped.assert_sent_times(1)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_under_anyio() -> None:
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(ship, "#42")
        sent = await wait_for_send(order_shipped, order="#42")
        assert sent.sender is None
