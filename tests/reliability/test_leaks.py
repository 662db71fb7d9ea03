"""Leak soak: memory stays flat over many sends and connect/disconnect cycles.

Under ``tracemalloc``: after a warm-up, a long run of sends (sync, async and
``to_thread``-free receivers, for any sender and for a specific one, ``send``
and ``send_robust``) and a long run of connect/disconnect cycles (weak and
strong functions, bound methods, senders, ``dispatch_uid``) must not grow the
traced memory. CI runs a short version; ``-m slow`` runs 1,000,000 sends and
100,000 cycles per backend and prints the figures (``-rP`` shows them).

Also regression tests for two Django bugs: #36939 (each connect leaked
memory: here a connect/disconnect cycle retains 0 bytes) and #35801 (a new
object that reused a dead sender's ``id()`` inherited its receivers).
"""

from __future__ import annotations

import faulthandler
import gc
import os
import time
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncsignals
from asyncsignals import Signal

BACKENDS = ["asyncio", "trio"]
# Growth allowed over a whole run after warm-up: far less than one byte per
# send or cycle, so a per-operation leak of even one small object fails.
FLAT = 16 * 1024


@contextmanager
def traced() -> Iterator[Callable[[], int]]:
    """Trace allocations; yield a function that collects garbage and returns traced bytes."""

    def current() -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        yield current
    finally:
        tracemalloc.stop()


def held_by_asyncsignals() -> int:
    """Bytes still allocated by asyncsignals' own code (tracing must be on)."""
    gc.collect()
    package = os.path.dirname(asyncsignals.__file__)
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, os.path.join(package, "*"))]
    )
    return sum(statistic.size for statistic in snapshot.statistics("filename"))


class Owner:
    """Owns a bound-method receiver."""

    def on_signal(self, sender: object, **kwargs: Any) -> int:
        return 1


class SenderObject:
    """A weakly referenceable sender."""


def sync_receiver(sender: object, value: int = 0, **kwargs: Any) -> int:
    return value


async def async_receiver(sender: object, value: int = 0, **kwargs: Any) -> int:
    await anyio.lowlevel.checkpoint()
    return value


def soak_sends(backend: str, sends: int) -> tuple[int, int, float]:
    """Send ``sends`` times after a warm-up; return bytes after warm-up, after, and seconds."""
    signal = Signal(name="soak")
    sender = SenderObject()
    signal.connect(sync_receiver)
    signal.connect(async_receiver, sender=sender)
    signal.connect(async_receiver)
    owner = Owner()
    signal.connect(owner.on_signal, sender=sender)
    warm_up = max(1000, sends // 10)

    async def run(count: int) -> None:
        for number in range(count):
            if number % 2:
                await signal.send(sender, value=number)
            else:
                await signal.send_robust(None, value=number)

    with traced() as current:
        anyio.run(run, warm_up, backend=backend)
        before = current()
        started = time.perf_counter()
        anyio.run(run, sends, backend=backend)
        elapsed = time.perf_counter() - started
        after = current()
    return before, after, elapsed


def connect_cycle(signal: Signal, number: int, owner: Owner, sender: object) -> None:
    """One connect and disconnect, of a kind chosen by ``number``."""

    def transient(sender: object, **kwargs: Any) -> None:
        pass

    kind = number % 5
    if kind == 0:
        signal.connect(transient)
        assert signal.disconnect(transient)
    elif kind == 1:
        signal.connect(transient, weak=False, sender=sender)
        assert signal.disconnect(transient, sender=sender)
    elif kind == 2:
        signal.connect(owner.on_signal)
        assert signal.disconnect(owner.on_signal)
    elif kind == 3:
        signal.connect(transient, dispatch_uid=("uid", number))
        assert signal.disconnect(dispatch_uid=("uid", number))
    else:
        # A new sender each time, dropped with its receiver still connected.
        dropped = SenderObject()
        signal.connect(transient, sender=dropped)
        assert signal.has_listeners(dropped)


def soak_cycles(cycles: int) -> tuple[int, int, float]:
    """Run ``cycles`` connect/disconnect cycles after a warm-up; return the figures."""
    signal = Signal(name="cycles")
    owner = Owner()
    sender = SenderObject()
    signal.connect(sync_receiver)  # a long-lived connection among the churn
    warm_up = max(1000, cycles // 10)
    with traced() as current:
        for number in range(warm_up):
            connect_cycle(signal, number, owner, sender)
        before = current()
        started = time.perf_counter()
        for number in range(cycles):
            connect_cycle(signal, number, owner, sender)
        elapsed = time.perf_counter() - started
        # A send purges what was collected since the last connect.
        assert signal.receivers_for(sender) == [sync_receiver]
        after = current()
    return before, after, elapsed


def report(what: str, count: int, before: int, after: int, elapsed: float) -> None:
    """Print one soak's figures (shown with -rP or -s)."""
    print(
        f"{what}: {count:,} in {elapsed:.1f} s; traced memory after warm-up {before:,} B, "
        f"after the run {after:,} B, growth {after - before:+,} B"
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_flat_over_sends(backend: str) -> None:
    """20,000 sends after a warm-up leave traced memory flat."""
    before, after, elapsed = soak_sends(backend, 20_000)
    report(f"sends on {backend}", 20_000, before, after, elapsed)
    assert after - before < FLAT


def test_memory_flat_over_connect_cycles() -> None:
    """2,000 connect/disconnect cycles after a warm-up leave traced memory flat."""
    before, after, elapsed = soak_cycles(2_000)
    report("connect/disconnect cycles", 2_000, before, after, elapsed)
    assert after - before < FLAT


@pytest.fixture
def without_watchdog() -> None:
    """Cancel pytest's faulthandler watchdog: pytest-timeout bounds the long soaks."""
    # The watchdog would dump every thread's stack after a minute, which reads
    # as a hang although the soak is only long, and a dump that races a thread
    # changing its frames can crash the interpreter.
    faulthandler.cancel_dump_traceback_later()


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.usefixtures("without_watchdog")
@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_flat_over_a_million_sends(backend: str) -> None:
    """1,000,000 sends after a warm-up leave traced memory flat."""
    before, after, elapsed = soak_sends(backend, 1_000_000)
    report(f"sends on {backend}", 1_000_000, before, after, elapsed)
    assert after - before < FLAT


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.usefixtures("without_watchdog")
def test_memory_flat_over_100_000_connect_cycles() -> None:
    """100,000 connect/disconnect cycles after a warm-up leave traced memory flat."""
    before, after, elapsed = soak_cycles(100_000)
    report("connect/disconnect cycles", 100_000, before, after, elapsed)
    assert after - before < FLAT


@pytest.mark.parametrize(
    "kind",
    ["weak-function", "strong-function", "bound-method", "for-sender", "dispatch-uid"],
)
def test_connect_disconnect_cycle_retains_nothing(kind: str) -> None:
    """Django #36939: after warm-up, connect+disconnect cycles retain exactly 0 bytes."""
    signal = Signal()
    owner = Owner()
    sender = SenderObject()

    def receiver(sender: object, **kwargs: Any) -> None:
        pass

    def cycle() -> None:
        if kind == "weak-function":
            signal.connect(receiver)
            assert signal.disconnect(receiver)
        elif kind == "strong-function":
            signal.connect(receiver, weak=False)
            assert signal.disconnect(receiver)
        elif kind == "bound-method":
            signal.connect(owner.on_signal)
            assert signal.disconnect(owner.on_signal)
        elif kind == "for-sender":
            signal.connect(receiver, sender=sender)
            assert signal.disconnect(receiver, sender=sender)
        else:
            signal.connect(receiver, dispatch_uid="uid")
            assert signal.disconnect(dispatch_uid="uid")

    with traced():
        for _ in range(100):
            cycle()
        before = held_by_asyncsignals()
        for _ in range(1000):
            cycle()
        after = held_by_asyncsignals()
    assert after - before == 0


def test_dropped_receivers_and_senders_are_collected() -> None:
    """Weakly connected receivers, and every sender, are collected once dropped."""
    signal = Signal()

    def receiver(sender: object, **kwargs: Any) -> None:
        pass

    owner = Owner()
    sender = SenderObject()
    strong_for_sender = Owner()
    signal.connect(receiver)
    signal.connect(owner.on_signal, sender=sender)
    signal.connect(strong_for_sender.on_signal, sender=sender, weak=False)
    references = [weakref.ref(each) for each in (receiver, owner, sender, strong_for_sender)]
    del receiver, owner, sender, strong_for_sender
    gc.collect()
    # The strong receiver lives while its sender's connection does: the next
    # lookup drops the dead sender's connections.
    assert signal.receivers_for(None) == []
    gc.collect()
    assert [reference() for reference in references] == [None, None, None, None]


def reuse_id(target: int, make: Callable[[], object]) -> object | None:
    """A new object from ``make`` whose ``id()`` is ``target``, if one turns up soon."""
    keep = []
    for _ in range(10_000):
        candidate = make()
        if id(candidate) == target:
            return candidate
        keep.append(candidate)
    return None


@pytest.mark.parametrize("collect", [True, False], ids=["after-gc", "before-purge"])
@pytest.mark.anyio
async def test_new_sender_with_dead_senders_id_inherits_nothing(collect: bool) -> None:
    """Django #35801: an object reusing a dead sender's id() reaches none of its receivers."""
    signal = Signal()
    calls: list[str] = []

    def receiver(sender: object, **kwargs: Any) -> None:
        calls.append("called")

    sender = SenderObject()
    signal.connect(receiver, sender=sender)
    signal.connect(receiver, sender=sender, weak=False, dispatch_uid="strong")
    old_id = id(sender)
    del sender
    if collect:
        gc.collect()
    newcomer = reuse_id(old_id, SenderObject)
    assert newcomer is not None, "no new object reused the dead sender's id()"
    assert not signal.has_listeners(newcomer)
    assert signal.receivers_for(newcomer) == []
    assert await signal.send(newcomer) == []
    assert signal.send_sync(newcomer) == []
    assert calls == []


@pytest.mark.anyio
async def test_disconnected_strong_receiver_is_released_at_once() -> None:
    """A strongly connected receiver is released by disconnect, not kept by a cached lookup."""
    signal = Signal()
    sender = SenderObject()
    signal.connect(sync_receiver, sender=sender)

    def receiver(sender: object, **kwargs: Any) -> None:
        pass

    signal.connect(receiver, weak=False)
    await signal.send(sender)  # caches the lookup for this sender
    assert signal.disconnect(receiver)
    reference = weakref.ref(receiver)
    del receiver
    gc.collect()
    assert reference() is None
