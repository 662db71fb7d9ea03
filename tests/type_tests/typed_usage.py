"""Typed signals used as a service would use them: what both checkers accept, and it runs.

mypy --strict and pyright strict check this file with no ignore comment, and
tests/test_typed_usage.py runs :func:`main` on asyncio and trio, so what the
checkers accept is proven to work. Its mistakes' twins are in check_declared.py.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NotRequired, assert_type

import anyio
from typing_extensions import TypedDict, Unpack

from asyncsignals import BackgroundDispatcher, Signal, receiver
from asyncsignals.testing import capture, sends, wait_for_send


@dataclass
class Shop:
    name: str


@dataclass
class Order:
    id: int


@Signal.declare
def order_shipped(*, sender: Shop, order: Order, tracking_number: str) -> str:
    """The payload of the signal; never called."""
    raise NotImplementedError


@Signal.declare
def order_cancelled(*, sender: Shop, order: Order, reason: str = "") -> str:
    """An order was cancelled; the reason may be left out."""
    raise NotImplementedError


# A signal whose receivers return nothing may keep the body "...": mypy's
# empty-body check only concerns a function that must return a value.
@Signal.declare
def stock_changed(*, sender: Shop, sku: str, quantity: int) -> None: ...


class Refund(TypedDict):
    order: Order
    amount: int
    note: NotRequired[str]


@Signal.declare
def refund_issued(*, sender: Shop, **payload: Unpack[Refund]) -> int:
    """The payload is the TypedDict's keys; ``note`` may be left out."""
    raise NotImplementedError


# -- receivers keep their own type ------------------------------------------


@receiver(order_shipped)
async def email_customer(*, sender: Shop, order: Order, tracking_number: str) -> str:
    return f"mailed {order.id}"


@receiver(order_shipped)
def audit(sender: Shop, **kwargs: Any) -> str:
    return f"audited {sender.name}"


# Stacked: one function connected to two signals whose payloads differ.
@receiver(order_shipped)
@receiver(order_cancelled)
def log_order(sender: Shop, order: Order, **kwargs: Any) -> str:
    return f"logged {order.id}"


# A list of signals whose payloads differ: the receiver takes any payload.
@receiver([order_shipped, order_cancelled])
async def count_order_events(sender: Shop, **kwargs: Any) -> str:
    return "counted"


# A receiver that wants the signal takes it with a default (or in **kwargs).
@receiver(order_shipped)
def which_signal(sender: Shop, signal: object = None, **kwargs: Any) -> str:
    return "order_shipped" if signal is order_shipped else "?"


@receiver(stock_changed)
def restock(*, sender: Shop, sku: str, quantity: int) -> None:
    RESTOCKED.append((sku, quantity))


# A TypedDict payload is received the same way (or with **kwargs: Any).
@receiver(refund_issued)
def refund_amount(*, sender: Shop, **payload: Unpack[Refund]) -> int:
    return payload["amount"]


RESTOCKED: list[tuple[str, int]] = []


def sync_receiver_result_is_its_own() -> None:
    shop, order = Shop("tea"), Order(1)
    assert_type(audit(sender=shop, order=order, tracking_number="1Z"), str)


async def async_receiver_is_awaited_directly() -> str:
    shop, order = Shop("tea"), Order(1)
    assert_type(email_customer, Callable[..., Awaitable[str]])
    return await email_customer(sender=shop, order=order, tracking_number="1Z")


def connect_returns_the_receiver() -> Callable[..., Any]:
    def notify(*, sender: Shop, order: Order, tracking_number: str) -> str:
        return "notified"

    connected = order_shipped.connect(notify, weak=False)
    order_shipped.disconnect(notify)
    return connected


async def main() -> None:
    """Sends to every signal above; each assertion is what the types promise."""
    RESTOCKED.clear()
    shop, order = Shop("tea"), Order(42)
    results = await order_shipped.send(sender=shop, order=order, tracking_number="1Z")
    notes = sorted(note.upper() for _, note in results)
    assert notes == ["AUDITED TEA", "COUNTED", "LOGGED 42", "MAILED 42", "ORDER_SHIPPED"], notes
    cancelled = await order_cancelled.send(sender=shop, order=order)
    assert sorted(note for _, note in cancelled) == ["counted", "logged 42"]
    assert await async_receiver_is_awaited_directly() == "mailed 1"
    sync_receiver_result_is_its_own()
    assert connect_returns_the_receiver()(sender=shop, order=order, tracking_number="") == (
        "notified"
    )
    await stock_changed.send(sender=shop, sku="green", quantity=3)
    assert RESTOCKED == [("green", 3)]
    refunds = await refund_issued.send(sender=shop, order=order, amount=5)
    assert [amount + 1 for _, amount in refunds] == [6]
    await helpers_are_typed_from_the_signal(shop, order)


async def helpers_are_typed_from_the_signal(shop: Shop, order: Order) -> None:
    """The background dispatcher and the test helpers take and give the signal's types."""
    with capture(order_shipped) as shipped:
        async with BackgroundDispatcher() as dispatcher:
            dispatcher.send(order_shipped, sender=shop, order=order, tracking_number="1Z")
            await dispatcher.send_wait(order_shipped, sender=shop, order=order, tracking_number="2")
            first = await shipped.wait_for(tracking_number="1Z")
    results = first.results
    assert results is not None
    assert_type(results, list[tuple[Callable[..., Any], str | Exception]])
    assert sorted(str(note) for _, note in results)[0] == "audited tea"
    assert len(shipped.sends) == 2

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(functools.partial(stock_changed.send, sender=shop, sku="blue", quantity=1))
        restocked = await wait_for_send(stock_changed, sku="blue")
        assert_type(restocked.results, list[tuple[Callable[..., Any], Exception | None]] | None)
        assert restocked.payload == {"sku": "blue", "quantity": 1}

    async with sends(order_shipped, lambda send: send.payload["order"] is order) as stream:
        await order_shipped.send(sender=shop, order=order, tracking_number="3")
        streamed = await anext(stream)
    assert_type(streamed.results, list[tuple[Callable[..., Any], str | Exception]] | None)
    assert streamed.results is not None
    assert sorted(str(note).upper() for _, note in streamed.results)[0] == "AUDITED TEA"
