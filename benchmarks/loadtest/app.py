"""The FastAPI example, with N receivers on ``order_shipped`` or the same N called directly.

``python -m benchmarks.loadtest.app --receivers N --mode signal|direct --port P``
serves it with uvicorn on 127.0.0.1 until SIGINT, then prints, as one JSON
line on stdout, what the background dispatcher did in its lifetime (the
``ShutdownReport``) and how many e-mails went out.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

import fastapi_app

MODES = ("signal", "direct")


def make_receivers(count: int) -> list[Callable[..., Any]]:
    """``count`` receivers, sync and async alternating, each doing a little bookkeeping."""
    receivers: list[Callable[..., Any]] = []
    for number in range(count):
        if number % 2 == 0:

            def audit(
                sender: fastapi_app.OrderBook, order: fastapi_app.Order, **kwargs: Any
            ) -> None:
                sender.audit_log.append(f"order_shipped #{order.id}")

            receivers.append(audit)
        else:

            async def release(
                sender: fastapi_app.OrderBook, order: fastapi_app.Order, **kwargs: Any
            ) -> None:
                sender.released.append(order.id)

            receivers.append(release)
    return receivers


class DirectOrderBook(fastapi_app.OrderBook):
    """The same service, calling the receivers itself instead of sending ``order_shipped``."""

    def __init__(self, receivers: list[Callable[..., Any]], email_delay: float) -> None:
        super().__init__(email_delay)
        self.receivers = [
            (receiver, inspect.iscoroutinefunction(receiver)) for receiver in receivers
        ]

    async def announce_shipped(self, order: fastapi_app.Order, tracking_number: str) -> None:
        for receiver, is_async in self.receivers:
            result = receiver(sender=self, order=order, tracking_number=tracking_number)
            if is_async:
                await result


def make_book(mode: str, receivers: int, email_delay: float) -> fastapi_app.OrderBook:
    """The example's order book; ``receivers`` new receivers replace order_shipped's."""
    signal = fastapi_app.order_shipped
    signal.disconnect(fastapi_app.audit)
    signal.disconnect(fastapi_app.release_from_warehouse)
    made = make_receivers(receivers)
    if mode == "direct":
        return DirectOrderBook(made, email_delay)
    for receiver in made:
        signal.connect(receiver, weak=False)
    return fastapi_app.OrderBook(email_delay)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--receivers", type=int, required=True)
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--email-delay", type=float, default=0.001)
    arguments = parser.parse_args()
    book = make_book(arguments.mode, arguments.receivers, arguments.email_delay)
    app = fastapi_app.create_app(book, grace_period=30, max_pending=100_000, max_concurrent=100)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=arguments.port, log_level="warning", access_log=False
    )
    # uvicorn shuts down gracefully on SIGINT, lifespan included, then raises
    # the signal again for its default behaviour.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run()
    assert book.dispatcher is not None
    report = book.dispatcher.report
    assert report is not None
    print(
        json.dumps(
            {
                "accepted": report.accepted,
                "completed": report.completed,
                "errors": report.errors,
                "not_completed": len(report.not_completed),
                "emails_sent": len(book.emails_sent),
                "loop": "uvloop" if "uvloop" in sys.modules else "asyncio",
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
