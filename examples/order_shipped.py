"""An order is shipped: four receivers react, one of them fails.

Run it with ``python examples/order_shipped.py``.

- ``log_shipment`` (sync) writes an audit line,
- ``notify_warehouse`` (async) tells the warehouse to release the parcel,
- ``email_confirmation`` (async) sends the customer an e-mail,
- ``update_loyalty_points`` (sync) fails: the points service is down.

``send_robust`` runs them all and hands back the failure in its slot;
``send`` fails fast and raises it. Then the failing receiver is disconnected
and the signal sent again.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from typing import Any

from asyncsignals import Signal, receiver


@dataclass
class Order:
    id: int
    customer: str


# The declaration is the payload: mypy and pyright check every send and
# receiver against it, and the runtime enforces the same names.
@Signal.declare
def order_shipped(*, sender: object, order: Order, tracking_number: str) -> str:
    """An order left the warehouse; each receiver returns a note. Never called."""
    raise NotImplementedError


@receiver(order_shipped)
def log_shipment(*, sender: object, order: Order, tracking_number: str) -> str:
    print(f"audit: order {order.id} shipped, tracking {tracking_number}")
    return "logged"


@receiver(order_shipped)
async def notify_warehouse(*, sender: object, order: Order, tracking_number: str) -> str:
    await asyncio.sleep(0.01)  # the warehouse API call
    print(f"warehouse: release parcel for order {order.id}")
    return "released"


@receiver(order_shipped)
async def email_confirmation(sender: object, order: Order, **kwargs: Any) -> str:
    await asyncio.sleep(0.02)  # the mail server
    print(f"email: told {order.customer} that order {order.id} is on its way")
    return f"mail to {order.customer}"


@receiver(order_shipped)
def update_loyalty_points(sender: object, order: Order, **kwargs: Any) -> str:
    raise ConnectionError("loyalty service unreachable")


class OneLineFormatter(logging.Formatter):
    """Log records on one line: the example prints the exceptions itself."""

    def formatException(self, ei: object) -> str:  # noqa: N802 (logging's name)
        return ""


async def main() -> None:
    # send_robust logs each failure, with its traceback, on the "asyncsignals"
    # logger; here it is shown on one line.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(OneLineFormatter("log: %(levelname)s %(message)s"))
    logging.getLogger("asyncsignals").addHandler(handler)
    order = Order(id=42, customer="ada@example.com")

    print("== send_robust: every receiver runs, failures come back as results")
    results = await order_shipped.send_robust(sender=None, order=order, tracking_number="1Z999")
    for rcv, response in results:
        if isinstance(response, Exception):
            print(f"  {rcv.__name__}: FAILED with {response!r}")
        else:
            print(f"  {rcv.__name__}: {response!r}")

    print("== send: fails fast, the error is raised as itself")
    try:
        await order_shipped.send(sender=None, order=order, tracking_number="1Z999")
    except ConnectionError as error:
        print(f"  raised {error!r}")
        for note in error.__notes__:
            print(f"  note: {note}")

    print("== disconnect the failing receiver and send again")
    order_shipped.disconnect(update_loyalty_points)
    for rcv, note in await order_shipped.send(sender=None, order=order, tracking_number="1Z999"):
        print(f"  {rcv.__name__}: {note!r}")


if __name__ == "__main__":
    asyncio.run(main())
