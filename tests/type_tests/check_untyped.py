"""Django-style, untyped signals type-check cleanly in strict mode.

Never run, only type-checked: ordinary code (decorated receivers, ``**kwargs``
receivers, ``functools.partial``, bound methods) needs no ignore comments.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, assert_type

from asyncsignals import Signal, receiver

order_shipped = Signal(providing_args=["order", "tracking_number"], name="order_shipped")
anything = Signal()

assert_type(order_shipped, Signal[..., Any])


@receiver(order_shipped)
def handle_order_shipped(sender: object, **kwargs: Any) -> None:
    print(kwargs["order"], kwargs["tracking_number"])


@receiver([order_shipped, anything], weak=False)
async def notify(*, sender: object, order: object, tracking_number: str) -> str:
    return tracking_number


def with_prefix(prefix: str, sender: object, **kwargs: Any) -> str:
    return prefix


class Handler:
    def on_signal(self, sender: object, **kwargs: Any) -> int:
        return 1

    async def __call__(self, sender: object, **kwargs: Any) -> None:
        pass


order_shipped.connect(functools.partial(with_prefix, "note: "))
order_shipped.connect(Handler().on_signal, sender=Handler)
order_shipped.connect(Handler(), weak=False, to_thread=False)
# A lambda: mypy infers it from what connect takes (a form of Receiver whose
# one result is "R | Awaitable[R]" would make that "Cannot infer type of
# lambda"); pyright strict reports the parameters of any lambda it cannot type.
order_shipped.connect(lambda sender, **kwargs: None, weak=False)  # pyright: ignore[reportUnknownArgumentType, reportUnknownLambdaType]
order_shipped.disconnect(handle_order_shipped)
order_shipped.disconnect(dispatch_uid="x")
assert_type(order_shipped.has_listeners(), bool)
assert_type(order_shipped.receivers_for(None), list[Callable[..., Any]])


async def sends() -> None:
    results = await order_shipped.send(sender=None, order=object(), tracking_number="1Z")
    assert_type(results, list[tuple[Callable[..., Any], Any]])
    for rcv, response in await order_shipped.send_robust(None, order=1, tracking_number="1"):
        if isinstance(response, Exception):
            print(rcv, response)
    order_shipped.send_sync(None, order=1, tracking_number="1")
