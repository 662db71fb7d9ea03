"""Thread stress: threads connect and disconnect while the loop sends at full speed.

Churning threads connect and disconnect short-lived receivers (sync and
async, weak and strong, by receiver and by ``dispatch_uid``, for any sender
and for the sender) or simply drop weakly connected ones, while the event
loop sends without pause for a bounded time. Every step is stamped from one
global counter, so each send can be checked against the receiver set: a
receiver connected before the send started and not removed before it ended
is in its result, a receiver in its result was connected before it ended and
not removed before it started, the always-connected receivers are in every
result, and results are in connection order.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from helpers import join_thread, start_thread

from asyncsignals import Signal

pytestmark = pytest.mark.anyio

# How long the loop sends while the threads churn.
DURATION = 1.0
CHURNERS = 3
MIN_SENDS = 100
# How many sends are checked against every receiver's lifetime.
SAMPLED_SENDS = 200

stamp = itertools.count().__next__  # atomic under the GIL


@dataclass
class Lifetime:
    """When one transient receiver was connected and removed, in global stamps."""

    connect_start: int
    connect_end: int = -1
    remove_start: int | None = None
    remove_end: int | None = None


@dataclass
class SendRecord:
    """What one send returned, and when it started and ended."""

    start: int
    end: int
    born: list[Any]


def transient(born: int, is_async: bool) -> Callable[..., Any]:
    """A new receiver that returns its birth number."""
    if is_async:

        async def receiver_async(sender: object, **kwargs: Any) -> int:
            await anyio.lowlevel.checkpoint()
            return born

        return receiver_async

    def receiver(sender: object, **kwargs: Any) -> int:
        return born

    return receiver


async def test_sends_agree_with_concurrent_connects_and_disconnects() -> None:
    """Sends under thread churn raise nothing and each matches a snapshot of the receivers."""
    signal = Signal(name="stress")
    sender = object()

    def steady_first(sender: object, **kwargs: Any) -> int:
        return -2

    async def steady_async(sender: object, **kwargs: Any) -> int:
        await anyio.lowlevel.checkpoint()
        return -1

    signal.connect(steady_first)
    signal.connect(steady_async, sender=sender)
    lifetimes: dict[int, Lifetime] = {}
    # Birth numbers follow connection order: taken and connected under one lock.
    connect_lock = threading.Lock()
    births = itertools.count()
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn(seed: int) -> None:
        try:
            for round_number in itertools.count():
                if stop.is_set():
                    return
                kept: list[tuple[int, Callable[..., Any], dict[str, Any]]] = []
                for step in range(8):
                    options: dict[str, Any] = {
                        "weak": (round_number + step) % 3 != 0,
                        "sender": sender if step % 2 else None,
                        "dispatch_uid": (seed, round_number, step) if step % 4 == 1 else None,
                    }
                    with connect_lock:
                        born = next(births)
                        receiver = transient(born, is_async=step % 3 == 0)
                        lifetimes[born] = Lifetime(stamp())
                        signal.connect(receiver, **options)
                        lifetimes[born].connect_end = stamp()
                    kept.append((born, receiver, options))
                for born, receiver, options in kept:
                    lifetime = lifetimes[born]
                    lifetime.remove_start = stamp()
                    if options["weak"] and born % 2:
                        # Dropped below instead: its weak connection dies with
                        # it, whenever the last reference (maybe a result) goes.
                        continue
                    if options["dispatch_uid"] is not None:
                        assert signal.disconnect(
                            sender=options["sender"], dispatch_uid=options["dispatch_uid"]
                        )
                    else:
                        assert signal.disconnect(receiver, sender=options["sender"])
                    lifetime.remove_end = stamp()
                del kept, receiver
        except BaseException as error:  # reported by the test
            errors.append(error)

    threads = [start_thread(lambda seed=seed: churn(seed)) for seed in range(CHURNERS)]
    records: list[SendRecord] = []
    try:
        deadline = anyio.current_time() + DURATION
        robust = False
        # A second of churn and at least MIN_SENDS sends, however slow the machine.
        while anyio.current_time() < deadline or len(records) < MIN_SENDS:
            start = stamp()
            send = signal.send_robust if robust else signal.send
            results = await send(sender)
            records.append(SendRecord(start, stamp(), [value for _, value in results]))
            robust = not robust
        del results  # it holds the last send's receivers
    finally:
        stop.set()
        for thread in threads:
            await join_thread(thread)
    assert errors == []

    for record in records:
        born = record.born
        assert born[0] == -2, "the receiver connected first comes first"
        assert -1 in born
        transients = [number for number in born if number >= 0]
        assert transients == sorted(transients), "results are in connection order"
        assert len(set(transients)) == len(transients)
        for number in transients:
            lifetime = lifetimes[number]
            assert lifetime.connect_start < record.end
            assert lifetime.remove_end is None or lifetime.remove_end > record.start
    # A receiver connected throughout a send is in its result (on a sample
    # of the sends: checking all of them is quadratic).
    for record in records[:: max(1, len(records) // SAMPLED_SENDS)]:
        for number, lifetime in lifetimes.items():
            connected_throughout = lifetime.connect_end < record.start and (
                lifetime.remove_start is None or lifetime.remove_start > record.end
            )
            if connected_throughout:
                assert number in record.born
    # Receivers dropped by the churn are gone already: nothing keeps them in
    # reference cycles for the garbage collector to find (test_reference_cycles).
    assert signal.receivers_for(sender) == [steady_first, steady_async]
