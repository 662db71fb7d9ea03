"""A failed send leaves no reference cycle behind.

An exception's traceback holds every frame it passed through, and each of
those frames its locals. A frame of the dispatcher that still refers to the
exception (or to the results holding it) forms a cycle with it, and the
cycle keeps the receiver and the sender alive until the garbage collector's
next pass, long after the caller let go: dropped receivers linger, senders'
connections stay, and a test that checks either fails at random.

Each test here runs a failing send with the cyclic garbage collector off,
lets go of everything, and checks that the receivers and the sender are
already gone. When one is not, the message lists the frames caught in
cyclic garbage.
"""

from __future__ import annotations

import gc
import logging
import types
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest

from asyncsignals import BackgroundDispatcher, Instrument, Signal, add_instrument

pytestmark = pytest.mark.anyio


class ReceiverError(Exception):
    """What the failing receivers raise."""


class FailingReceiver:
    """A sync receiver object that raises: its own frame refers to it."""

    def __call__(self, sender: object, **kwargs: Any) -> None:
        raise ReceiverError("sync")


class FailingAsyncReceiver:
    """An async receiver object that raises after a checkpoint."""

    async def __call__(self, sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise ReceiverError("async")


class ImmediatelyFailingAsyncReceiver:
    """An async receiver object that raises without suspending."""

    async def __call__(self, sender: object, **kwargs: Any) -> None:
        raise ReceiverError("async, at once")


class SlowAsyncReceiver:
    """An async receiver object that outlives any timeout given to it."""

    async def __call__(self, sender: object, **kwargs: Any) -> None:
        await anyio.sleep(60)


class SucceedingAsyncReceiver:
    """An async receiver object that returns after a checkpoint."""

    async def __call__(self, sender: object, **kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        return "done"


class Sender:
    """A weakly referenceable sender."""


# name: (signal options, [(receiver class, connect options)])
SETUPS: dict[str, tuple[dict[str, Any], list[tuple[type, dict[str, Any]]]]] = {
    "one sync receiver": ({}, [(FailingReceiver, {})]),
    "one async receiver": ({}, [(FailingAsyncReceiver, {})]),
    "two async receivers": ({}, [(FailingAsyncReceiver, {}), (FailingAsyncReceiver, {})]),
    "async receivers failing at once": (
        {},
        [(ImmediatelyFailingAsyncReceiver, {}), (ImmediatelyFailingAsyncReceiver, {})],
    ),
    "a failing and a succeeding async receiver": (
        {},
        [(FailingAsyncReceiver, {}), (SucceedingAsyncReceiver, {})],
    ),
    "sync and async receivers": (
        {},
        [(FailingReceiver, {}), (FailingAsyncReceiver, {}), (FailingAsyncReceiver, {})],
    ),
    "a to_thread receiver": (
        {},
        [(FailingReceiver, {"to_thread": True}), (FailingAsyncReceiver, {})],
    ),
    "sequential": (
        {"concurrent": False},
        [(FailingReceiver, {}), (FailingAsyncReceiver, {}), (FailingReceiver, {"to_thread": True})],
    ),
    "a timed-out receiver": ({}, [(SlowAsyncReceiver, {"timeout": 0.01})]),
    "timed-out receivers": (
        {"timeout": 0.01},
        [(SlowAsyncReceiver, {}), (SlowAsyncReceiver, {})],
    ),
    "a concurrency limit": (
        {"max_concurrency": 1},
        [(FailingAsyncReceiver, {}), (FailingAsyncReceiver, {})],
    ),
}


@pytest.fixture(autouse=True)
def log_nothing() -> Iterator[None]:
    """send_robust logs each failure: keep the records (and their exceptions) nowhere.

    pytest's log capture keeps every record, with its exception, until the
    test ends; it attaches to loggers that do not propagate too.
    """
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


@contextmanager
def cyclic_gc_off() -> Iterator[None]:
    """No cyclic garbage collection inside: only reference counting frees objects."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def frames_in_cyclic_garbage() -> list[str]:
    """The functions whose frames are caught in reference cycles right now (collects them)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return sorted(
            {
                f"{item.f_code.co_name} ({item.f_code.co_filename.rsplit('/', 1)[-1]})"
                for item in gc.garbage
                if isinstance(item, types.FrameType)
            }
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def assert_all_freed(references: list[weakref.ref[Any]]) -> None:
    """Every object behind ``references`` is gone without the cyclic collector's help."""
    alive = [str(reference()) for reference in references if reference() is not None]
    if alive:
        pytest.fail(
            f"still alive after the send: {alive}; frames in cyclic garbage: "
            f"{frames_in_cyclic_garbage()}"
        )


async def let_the_loop_settle() -> None:
    """Let the event loop let go of what it holds until its next turn.

    A receiver cancelled by its timeout is cancelled through the loop, which
    holds the cancellation (and so the receiver's frame) until it next runs.
    """
    for _ in range(2):
        await anyio.lowlevel.checkpoint()


def build(setup: str) -> tuple[Signal, list[object], list[weakref.ref[Any]], Sender]:
    """The signal of ``setup``, its receivers (connected weakly), weak references, a sender."""
    options, kinds = SETUPS[setup]
    signal = Signal(**options)
    receivers: list[object] = []
    for kind, connect_options in kinds:
        receivers.append(signal.connect(kind(), **connect_options))
    sender = Sender()
    references = [weakref.ref(each) for each in (*receivers, sender)]
    return signal, receivers, references, sender


@pytest.mark.parametrize("setup", SETUPS)
async def test_send_that_raises_leaves_no_cycle(setup: str) -> None:
    """After send raises and the caller drops the error, receivers and sender are freed."""
    signal, receivers, references, sender = build(setup)
    with cyclic_gc_off():
        try:
            await signal.send(sender, value=1)
        except (ReceiverError, TimeoutError, BaseExceptionGroup):
            pass  # let go of at once
        else:
            pytest.fail("the send did not raise")
        await let_the_loop_settle()
        del receivers, sender
        assert_all_freed(references)


@pytest.mark.parametrize("setup", SETUPS)
async def test_send_robust_results_leave_no_cycle(setup: str) -> None:
    """After the caller drops send_robust's results, receivers and sender are freed."""
    signal, receivers, references, sender = build(setup)
    with cyclic_gc_off():
        results = await signal.send_robust(sender, value=1)
        assert any(isinstance(value, ReceiverError | TimeoutError) for _, value in results)
        await let_the_loop_settle()
        del results, receivers, sender
        assert_all_freed(references)


@pytest.mark.parametrize("robust", [False, True], ids=["send_sync", "send_robust_sync"])
@pytest.mark.parametrize("setup", SETUPS)
def test_send_sync_without_a_loop_leaves_no_cycle(setup: str, robust: bool) -> None:
    """send_sync on a temporary event loop leaves no cycle, raising or returning errors."""
    signal, receivers, references, sender = build(setup)
    with cyclic_gc_off():
        outcome = send_sync_outcome(signal.send_robust_sync if robust else signal.send_sync, sender)
        assert outcome in {"raised", "returned an error"}
        del receivers, sender
        assert_all_freed(references)


@pytest.mark.parametrize("robust", [False, True], ids=["send_sync", "send_robust_sync"])
async def test_send_sync_from_a_worker_thread_leaves_no_cycle(robust: bool) -> None:
    """send_sync from an anyio worker thread (its loop is the caller's) leaves no cycle."""
    signal, receivers, references, sender = build("two async receivers")
    send = signal.send_robust_sync if robust else signal.send_sync
    with cyclic_gc_off():
        # Handed over in a list the thread empties: a worker thread holds its
        # job's arguments for a moment after it has returned.
        outcome = await anyio.to_thread.run_sync(send_sync_outcome_of, [send, sender])
        assert outcome in {"raised", "returned an error"}
        del receivers, sender
        assert_all_freed(references)


def send_sync_outcome_of(call: list[Any]) -> str:
    """send_sync_outcome of the entry point and sender in ``call``, which it empties."""
    send, sender = call
    call.clear()
    return send_sync_outcome(send, sender)


def send_sync_outcome(send: Callable[..., list[tuple[Any, Any]]], sender: object) -> str:
    """Call a sync entry point and say how it failed, keeping nothing of it."""
    try:
        results = send(sender, value=1)
    except (ReceiverError, TimeoutError, BaseExceptionGroup):
        return "raised"
    failed = any(isinstance(value, ReceiverError | TimeoutError) for _, value in results)
    del results
    return "returned an error" if failed else "succeeded"


class Payload:
    """A weakly referenceable payload value."""


@pytest.mark.parametrize("method", ["send", "send_robust", "send_sync", "send_robust_sync"])
@pytest.mark.parametrize(
    "extra", [{"extra": 1}, {"signal": 1}], ids=["unknown name", "reserved name"]
)
async def test_refused_payload_leaves_no_cycle(method: str, extra: dict[str, Any]) -> None:
    """A payload refused before any receiver runs keeps neither sender nor payload alive."""
    signal = Signal(providing_args=["order"])
    sender, payload = Sender(), Payload()
    references: list[weakref.ref[Any]] = [weakref.ref(sender), weakref.ref(payload)]
    with cyclic_gc_off():
        try:
            send = getattr(signal, method)
            outcome = send(sender, order=payload, **extra)
            if method in {"send", "send_robust"}:
                await outcome
        except TypeError:
            pass
        else:  # pragma: no cover (the send must be refused)
            pytest.fail("the payload was not refused")
        del sender, payload
        assert_all_freed(references)


@pytest.mark.parametrize("setup", ["one sync receiver", "two async receivers"])
async def test_instrumented_send_leaves_no_cycle(setup: str) -> None:
    """With an instrument wrapping every receiver, a failed send still leaves no cycle."""
    signal, receivers, references, sender = build(setup)
    add_instrument(Instrument(), signal)
    with cyclic_gc_off():
        results = await signal.send_robust(sender, value=1)
        del results
        try:
            await signal.send(sender, value=1)
        except (ReceiverError, BaseExceptionGroup):
            pass
        else:
            pytest.fail("the send did not raise")
        await let_the_loop_settle()
        del receivers, sender
        assert_all_freed(references)


async def test_background_send_leaves_no_cycle() -> None:
    """A background send whose receivers fail lets go of them and of its sender."""
    signal, receivers, references, sender = build("sync and async receivers")
    with cyclic_gc_off():
        async with BackgroundDispatcher() as dispatcher:
            await dispatcher.send_wait(signal, sender, value=1)
        assert dispatcher.errors == len(receivers)
        await let_the_loop_settle()
        del receivers, sender
        assert_all_freed(references)


@pytest.mark.parametrize("used", [False, True])
async def test_dropped_signal_is_freed_without_the_cyclic_collector(used: bool) -> None:
    """A signal nobody refers to is freed by reference counting alone."""

    def sync_receiver(sender: object, **kwargs: Any) -> None:
        pass

    with cyclic_gc_off():
        signal = Signal(max_concurrency=2)
        signal.connect(sync_receiver)
        if used:
            sender = object()
            signal.connect(sync_receiver, sender=sender)
            await signal.send(sender)
            await signal.send(None)
        dropped = weakref.ref(signal)
        del signal
        assert dropped() is None


class AbsorbingAsyncReceiver:
    """An async receiver object that catches its cancellation and returns."""

    async def __call__(self, sender: object, **kwargs: Any) -> str:
        try:
            await anyio.sleep(60)
        except BaseException:
            return "absorbed"
        raise AssertionError("not reached")  # pragma: no cover


class RaisingWhileCancelledReceiver:
    """An async receiver object that raises from its finally when cancelled."""

    async def __call__(self, sender: object, **kwargs: Any) -> None:
        try:
            await anyio.sleep(60)
        finally:
            raise ReceiverError("while cancelled")


@pytest.mark.parametrize("concurrent", [True, False])
@pytest.mark.parametrize(
    "receiver_class", [SlowAsyncReceiver, AbsorbingAsyncReceiver, RaisingWhileCancelledReceiver]
)
@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_cancelled_send_leaves_no_cycle(
    concurrent: bool, receiver_class: type, method: str
) -> None:
    """After the caller's deadline cancels a send, its receiver and sender are freed."""
    signal = Signal(concurrent=concurrent)
    receiver = signal.connect(receiver_class())
    sender = Sender()
    references: list[weakref.ref[Any]] = [weakref.ref(receiver), weakref.ref(sender)]
    with cyclic_gc_off():
        with anyio.move_on_after(0.01) as scope:
            await getattr(signal, method)(sender)
        assert scope.cancelled_caught
        await let_the_loop_settle()
        del receiver, sender
        assert_all_freed(references)
