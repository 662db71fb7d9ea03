"""An order service on aiohttp: signals inside the request, and after it.

Run it from the repository root (``pip install -e '.[examples]'`` first)::

    python examples/aiohttp_app.py

(or ``python -m aiohttp.web -H 127.0.0.1 -P 8080 examples.aiohttp_app:create_app``)
and try it::

    curl -X POST localhost:8080/orders -H 'content-type: application/json' \\
        -d '{"item": "teapot", "quantity": 2}'
    curl -X POST localhost:8080/orders/1/ship
    curl localhost:8080/stats

The same service as ``examples/fastapi_app.py``: creating an order sends
``order_created``; shipping it sends ``order_shipped`` to an audit receiver
(sync) and a warehouse receiver (async) inside the request, then hands
``order_shipped_background`` (its receiver e-mails the customer, slowly) to
the :class:`~asyncsignals.BackgroundDispatcher` that the application's
cleanup context owns, so that shutdown drains it or reports what it dropped.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
import anyio.lowlevel
from aiohttp import web

from asyncsignals import BackgroundDispatcher, Signal, receiver

logger = logging.getLogger("aiohttp.server")


@dataclasses.dataclass
class Order:
    id: int
    item: str
    quantity: int
    status: str = "created"
    tracking_number: str | None = None


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
        assert self.dispatcher is not None, "the cleanup context starts the dispatcher"
        order.status = "shipped"
        order.tracking_number = f"1Z{order.id:08d}"
        # In the request: a failing receiver fails the request.
        await order_shipped.send(sender=self, order=order, tracking_number=order.tracking_number)
        # After it: waits only if the dispatcher's queue is full (backpressure).
        await self.dispatcher.send_wait(
            order_shipped_background,
            sender=self,
            order=order,
            tracking_number=order.tracking_number,
        )
        return order


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


BOOK = web.AppKey("book", OrderBook)
routes = web.RouteTableDef()


def find(request: web.Request) -> Order:
    order_id = int(request.match_info["order_id"])
    order = request.app[BOOK].orders.get(order_id)
    if order is None:
        raise web.HTTPNotFound(text=f"no order #{order_id}")
    return order


async def read_new_order(request: web.Request) -> tuple[str, int]:
    """The item and quantity of a new order; 400 Bad Request, saying why, for anything else."""
    expected = 'an order is {"item": str, "quantity": int >= 1 (default 1)}'
    try:
        body: object = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text=f"the body is not JSON: {expected}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=expected)
    fields = cast("dict[str, object]", body)
    item, quantity = fields.get("item"), fields.get("quantity", 1)
    if not isinstance(item, str):
        raise web.HTTPBadRequest(text=f"item {item!r}: {expected}")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise web.HTTPBadRequest(text=f"quantity {quantity!r}: {expected}")
    return item, quantity


@routes.post("/orders")
async def create_order(request: web.Request) -> web.Response:
    item, quantity = await read_new_order(request)
    order = await request.app[BOOK].create(item, quantity)
    return web.json_response(dataclasses.asdict(order), status=201)


@routes.get("/orders/{order_id:\\d+}")
async def get_order(request: web.Request) -> web.Response:
    return web.json_response(dataclasses.asdict(find(request)))


@routes.post("/orders/{order_id:\\d+}/ship")
async def ship_order(request: web.Request) -> web.Response:
    order = find(request)
    if order.status == "shipped":
        raise web.HTTPConflict(text=f"order #{order.id} already shipped")
    return web.json_response(dataclasses.asdict(await request.app[BOOK].ship(order)))


@routes.get("/stats")
async def stats(request: web.Request) -> web.Response:
    book = request.app[BOOK]
    dispatcher = book.dispatcher
    assert dispatcher is not None
    return web.json_response(
        {
            "orders": len(book.orders),
            "audited": len(book.audit_log),
            "released": len(book.released),
            "emails_sent": len(book.emails_sent),
            "background_queued": dispatcher.queued,
            "background_running": dispatcher.running,
            "background_completed": dispatcher.completed,
            "background_errors": dispatcher.errors,
        }
    )


def create_app(
    argv: list[str] | None = None,
    *,
    book: OrderBook | None = None,
    grace_period: float = 10.0,
    max_pending: int = 1000,
    max_concurrent: int = 10,
) -> web.Application:
    """The order service; ``book`` holds its state (a new one by default).

    ``argv`` is what ``python -m aiohttp.web`` passes on; it is not used.
    """
    app = web.Application()
    app[BOOK] = OrderBook() if book is None else book

    async def background_dispatcher(app: web.Application) -> AsyncIterator[None]:
        # Entered at startup and left at cleanup (aiohttp may run them in two tasks).
        async with BackgroundDispatcher(
            name="orders",
            # Names each e-mail that did not go out, in the shutdown log.
            describe=lambda send: f"e-mail for order #{send.payload['order'].id}",
            grace_period=grace_period,
            max_pending=max_pending,
            max_concurrent=max_concurrent,
        ) as dispatcher:
            app[BOOK].dispatcher = dispatcher
            yield
        report = dispatcher.report
        assert report is not None
        logger.info(
            "background sends: %d accepted, %d completed, %d did not complete",
            report.accepted,
            report.completed,
            len(report.not_completed),
        )

    app.cleanup_ctx.append(background_dispatcher)
    app.add_routes(routes)
    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    web.run_app(create_app(), host="127.0.0.1", port=8080)
