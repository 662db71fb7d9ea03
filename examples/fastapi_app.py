"""An order service on FastAPI: signals inside the request, and after it.

Run it from the repository root (``pip install -e '.[examples]'`` first)::

    uvicorn examples.fastapi_app:app

and try it::

    curl -X POST localhost:8000/orders -H 'content-type: application/json' \\
        -d '{"item": "teapot", "quantity": 2}'
    curl -X POST localhost:8000/orders/1/ship
    curl localhost:8000/stats

Creating an order sends ``order_created``; shipping it sends ``order_shipped``
to an audit receiver (sync) and a warehouse receiver (async) inside the
request, then hands ``order_shipped_background`` (its receiver e-mails the
customer, slowly) to the :class:`~asyncsignals.BackgroundDispatcher` that the
app's lifespan owns: the response does not wait for the mail server, and at
shutdown (Ctrl+C) the e-mails still queued get ``grace_period`` seconds to go
out; any that cannot are logged by signal and sender.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from asyncsignals import BackgroundDispatcher, Signal, receiver

# uvicorn shows this logger's INFO records; a bare logger's would be dropped.
logger = logging.getLogger("uvicorn.error")


@dataclasses.dataclass
class Order:
    id: int
    item: str
    quantity: int
    status: str = "created"
    tracking_number: str | None = None


class NewOrder(BaseModel):
    item: str
    quantity: int = Field(default=1, ge=1)


# The signals, declared: each signature is the payload, which mypy and pyright
# check at every send and receiver and the runtime enforces. The bodies never run.
@Signal.declare
def order_created(*, sender: OrderBook, order: Order) -> None: ...


@Signal.declare
def order_shipped(*, sender: OrderBook, order: Order, tracking_number: str) -> None: ...


# Receivers that must not hold up the response: sent by the background dispatcher.
@Signal.declare
def order_shipped_background(*, sender: OrderBook, order: Order, tracking_number: str) -> None: ...


class OrderBook:
    """The orders, and what the receivers did with them: the sender of every signal."""

    def __init__(self, email_delay: float = 0.5) -> None:
        self.email_delay = email_delay
        self.orders: dict[int, Order] = {}
        self.audit_log: list[str] = []
        self.released: list[int] = []
        self.emails_sent: list[str] = []
        self.dispatcher: BackgroundDispatcher | None = None

    def __repr__(self) -> str:
        return f"<OrderBook: {len(self.orders)} orders>"

    async def create(self, item: str, quantity: int) -> Order:
        order = Order(id=len(self.orders) + 1, item=item, quantity=quantity)
        self.orders[order.id] = order
        await order_created.send(sender=self, order=order)
        return order

    async def ship(self, order: Order) -> Order:
        assert self.dispatcher is not None, "the app's lifespan starts the dispatcher"
        order.status = "shipped"
        order.tracking_number = f"1Z{order.id:08d}"
        # In the request: a failing receiver fails the request.
        await self.announce_shipped(order, order.tracking_number)
        # After it: waits only if the dispatcher's queue is full (backpressure).
        await self.dispatcher.send_wait(
            order_shipped_background,
            sender=self,
            order=order,
            tracking_number=order.tracking_number,
        )
        return order

    async def announce_shipped(self, order: Order, tracking_number: str) -> None:
        await order_shipped.send(sender=self, order=order, tracking_number=tracking_number)


# Stacked rather than @receiver([order_created, order_shipped]): the checkers
# check the function against each signal (a list is checked only at connect).
@receiver(order_created)
@receiver(order_shipped)
def audit(sender: OrderBook, order: Order, signal: Signal | None = None, **kwargs: Any) -> None:
    """Sync: runs inline, in the request. Each signal passes itself as signal=."""
    sender.audit_log.append(f"{signal.name if signal else '?'} #{order.id}")


@receiver(order_shipped)
async def release_from_warehouse(sender: OrderBook, order: Order, **kwargs: Any) -> None:
    """Async: runs in the request, concurrently with other async receivers."""
    await anyio.lowlevel.checkpoint()  # a call to the warehouse service
    sender.released.append(order.id)


@receiver(order_shipped_background)
async def email_customer(
    sender: OrderBook, order: Order, tracking_number: str, **kwargs: Any
) -> None:
    """Slow: run by the background dispatcher, after the response."""
    await anyio.sleep(sender.email_delay)  # the mail server takes its time
    sender.emails_sent.append(f"order #{order.id} shipped: {tracking_number}")


def create_app(
    book: OrderBook | None = None,
    *,
    grace_period: float = 10.0,
    max_pending: int = 1000,
    max_concurrent: int = 10,
) -> FastAPI:
    """The order service; ``book`` holds its state (a new one by default)."""
    book = OrderBook() if book is None else book

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncGenerator[None, None]:
        async with BackgroundDispatcher(
            name="orders",
            # Names each e-mail that did not go out, in the shutdown log.
            describe=lambda send: f"e-mail for order #{send.payload['order'].id}",
            grace_period=grace_period,
            max_pending=max_pending,
            max_concurrent=max_concurrent,
        ) as dispatcher:
            book.dispatcher = dispatcher
            yield
        report = dispatcher.report
        assert report is not None
        logger.info(
            "background sends: %d accepted, %d completed, %d did not complete",
            report.accepted,
            report.completed,
            len(report.not_completed),
        )

    app = FastAPI(title="orders", lifespan=lifespan)
    app.state.book = book

    def find(order_id: int) -> Order:
        order = book.orders.get(order_id)
        if order is None:
            raise HTTPException(status_code=404, detail=f"no order #{order_id}")
        return order

    @app.post("/orders", status_code=201)
    async def create_order(new: NewOrder) -> Order:
        return await book.create(new.item, new.quantity)

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int) -> Order:
        return find(order_id)

    @app.post("/orders/{order_id}/ship")
    async def ship_order(order_id: int) -> Order:
        order = find(order_id)
        if order.status == "shipped":
            raise HTTPException(status_code=409, detail=f"order #{order_id} already shipped")
        return await book.ship(order)

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        dispatcher = book.dispatcher
        assert dispatcher is not None
        return {
            "orders": len(book.orders),
            "audited": len(book.audit_log),
            "released": len(book.released),
            "emails_sent": len(book.emails_sent),
            "background_queued": dispatcher.queued,
            "background_running": dispatcher.running,
            "background_completed": dispatcher.completed,
            "background_errors": dispatcher.errors,
        }

    return app


app = create_app()
