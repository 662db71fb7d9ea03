"""A publisher in its own process, inside a span, for the test of traces across processes.

Usage: ``python traced_publisher.py URL STREAM_PREFIX``. Publishes one
``order_shipped`` event inside a span ``checkout`` (OpenTelemetry's SDK, no
exporter: only the span's ids matter) and prints that span's trace id and
span id, in hex, as JSON.
"""

from __future__ import annotations

import json
import sys

import anyio
from opentelemetry.sdk.trace import TracerProvider

from asyncsignals import Signal
from asyncsignals.redis import RedisBridge


async def main(url: str, stream_prefix: str) -> None:
    """Publish one event inside a span; print the span's ids."""
    order_shipped = Signal(providing_args=["order_id"], name="order_shipped")
    bridge = RedisBridge(url, app="shop", stream_prefix=stream_prefix, consumer="publisher")
    bridge.export(order_shipped, consume=False)
    tracer = TracerProvider().get_tracer("checkout")
    async with bridge:
        with tracer.start_as_current_span("checkout") as span:
            await bridge.publish(order_shipped, "shop", order_id=42)
    context = span.get_span_context()
    print(
        json.dumps({"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"})
    )


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], backend="asyncio")
