"""The typed examples of README.md and docs/typed-signals.md, as they stand there.

Never run, only type-checked (tests/test_docs.py checks that each block
marked type-checked stands here verbatim). After the examples: the mistakes
the page says both checkers catch, each with that checker's ignore comment.
"""

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


# -- the mistakes docs/typed-signals.md shows --------------------------------


async def forgets_the_tracking_number() -> None:
    await order_shipped.send(sender=Shop("tea"), order=Order(1))  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


def notify(*, sender: Shop, order: Order) -> str:
    return "notified"


order_shipped.connect(notify)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
