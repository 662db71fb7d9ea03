"""The typed examples of README.md and docs/typed-signals.md, as they stand there.

Never run, only type-checked (tests/test_docs.py checks that each block
marked type-checked stands here verbatim; test_docs runs the pages). After
the examples: the mistakes the page says both checkers catch, each with that
checker's ignore comment.
"""

# The blocks follow one another as on the page, each with its own imports.
# ruff: noqa: E402

import asyncio
from dataclasses import dataclass

from asyncsignals import Signal, receiver


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


@receiver(order_shipped)
async def email_customer(*, sender: Shop, order: Order, tracking_number: str) -> str:
    return f"mailed order {order.id}: {tracking_number}"


async def main() -> None:
    shop, order = Shop("tea"), Order(42)
    results = await order_shipped.send(sender=shop, order=order, tracking_number="1Z")
    for rcv, note in results:  # note is a str
        print(rcv.__name__, note.upper())


asyncio.run(main())

from asyncsignals import Signal


@Signal.declare(timeout=2.0, concurrent=False)
def checkout_step(*, sender: object, total: int) -> None:
    """One step of the checkout, run in turn; never called."""
    raise NotImplementedError


print(checkout_step.name, checkout_step.timeout, checkout_step.concurrent)

from typing import Any


@Signal.declare
def order_returned(*, sender: Shop, order: Order, reason: str = "") -> str:
    """A customer sent an order back; the reason may be left out. Never called."""
    raise NotImplementedError


@receiver(order_shipped)
async def text_customer(*, sender: Shop, order: Order, tracking_number: str) -> str:
    return f"texted about order {order.id}"


@receiver(order_shipped)
@receiver(order_returned)
def log_order(sender: Shop, order: Order, **kwargs: Any) -> str:
    return f"logged order {order.id}"


async def check_receivers() -> None:
    print(await text_customer(sender=Shop("tea"), order=Order(7), tracking_number="1Z"))
    for rcv, note in await order_returned.send(sender=Shop("tea"), order=Order(7)):
        print(rcv.__name__, note)


asyncio.run(check_receivers())

from typing import NotRequired

from typing_extensions import TypedDict, Unpack


class Refund(TypedDict):
    order: Order
    amount: int
    note: NotRequired[str]


@Signal.declare
def refund_issued(*, sender: Shop, **payload: Unpack[Refund]) -> None:
    """The payload is Refund's keys, and note may be left out; never called."""


@receiver(refund_issued)
def book_refund(*, sender: Shop, **payload: Unpack[Refund]) -> None:
    print(f"refund of {payload['amount']} for order {payload['order'].id}")


print(sorted(refund_issued.providing_args or ()))

from asyncsignals import BackgroundDispatcher
from asyncsignals.testing import capture


async def ship_in_the_background() -> None:
    with capture(order_shipped) as shipped:
        async with BackgroundDispatcher() as dispatcher:
            dispatcher.send(order_shipped, sender=Shop("tea"), order=Order(3), tracking_number="9")
        send = shipped.assert_sent(tracking_number="9")
    print([note for _, note in send.results or []])


asyncio.run(ship_in_the_background())


# -- the mistakes docs/typed-signals.md shows --------------------------------


async def forgets_the_tracking_number() -> None:
    await order_shipped.send(sender=Shop("tea"), order=Order(1))  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


def notify(*, sender: Shop, order: Order) -> str:
    return "notified"


order_shipped.connect(notify)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


@receiver(order_shipped)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType, reportCallIssue, reportUntypedFunctionDecorator]
def count(sender: Shop, **kwargs: Any) -> int:
    return 1
