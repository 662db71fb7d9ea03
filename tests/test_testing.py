"""asyncsignals.testing: capture, wait, stream, mute and connect, on asyncio and trio."""

from __future__ import annotations

import gc
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any
from unittest import mock

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from anyio import wait_all_tasks_blocked
from helpers import join_thread, start_thread

import asyncsignals.testing
from asyncsignals import Signal
from asyncsignals._signal import hooks_of
from asyncsignals.testing import (
    Send,
    SendTimeoutError,
    SignalCapture,
    capture,
    connected_to,
    muted,
    sends,
    wait_for_send,
)

pytest_plugins = ["asyncsignals.testing"]
pytestmark = pytest.mark.anyio


class Shop:
    """A sender that is not a string, shown by its repr."""

    def __repr__(self) -> str:
        return "<Shop>"

    def handle(self, sender: object, **kwargs: Any) -> str:
        return "shop handled"


def record(calls: list[object]) -> Callable[..., str]:
    """A sync receiver that appends each payload to ``calls``."""

    def receiver(sender: object, signal: object = None, **kwargs: Any) -> str:
        calls.append(kwargs)
        return "recorded"

    return receiver


# -- the public surface -------------------------------------------------------


def test_all_is_sorted_and_public_objects_show_their_module() -> None:
    """asyncsignals.testing.__all__ is sorted and names only objects defined there."""
    assert asyncsignals.testing.__all__ == sorted(asyncsignals.testing.__all__)
    for name in asyncsignals.testing.__all__:
        assert getattr(asyncsignals.testing, name).__module__ == "asyncsignals.testing"


def test_signatures_show_the_any_sender_default() -> None:
    """help() shows the default sender filter as <any sender>, not an opaque object."""
    signature = inspect.signature(wait_for_send)
    assert str(signature.parameters["sender"]) == "sender: 'object' = <any sender>"


@pytest.mark.parametrize(
    "helper",
    [
        lambda: capture(object()),  # type: ignore[arg-type]
        lambda: muted(object()).__enter__(),  # type: ignore[arg-type]
        lambda: connected_to(object(), print).__enter__(),  # type: ignore[arg-type]
    ],
)
def test_helpers_refuse_what_is_not_a_signal(helper: Callable[[], object]) -> None:
    """Passing something other than a Signal is a TypeError naming it."""
    with pytest.raises(TypeError, match="expects an asyncsignals Signal, got <object"):
        helper()


async def test_sends_refuses_what_is_not_a_signal_and_an_empty_buffer() -> None:
    """sends() needs a Signal and a buffer of at least one send."""
    with pytest.raises(TypeError, match="expects an asyncsignals Signal"):
        async with sends(object()):  # type: ignore[arg-type]
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="max_buffer must be at least 1, got 0"):
        async with sends(Signal(), max_buffer=0):
            pass  # pragma: no cover


# -- capture --------------------------------------------------------------------


async def test_capture_records_sender_payload_order_receivers_and_results() -> None:
    """Each send is recorded in order with its sender, payload, receivers and results."""
    signal = Signal(name="order_shipped")
    calls: list[object] = []
    receiver = signal.connect(record(calls))
    shop = Shop()
    with capture(signal) as captured:
        await signal.send(None, order="#1")
        await signal.send(shop, order="#2")
    first, second = captured.sends
    assert (first.sender, first.payload, first.signal) == (None, {"order": "#1"}, signal)
    assert second.sender is shop
    assert first.receivers == (receiver,)
    assert first.results == [(receiver, "recorded")]
    assert first.error is None
    assert first.done
    assert not first.muted
    assert repr(second) == "<Send of order_shipped: sender=<Shop>, order='#2'>"


async def test_capture_records_a_send_that_raised() -> None:
    """A send that raises is recorded with its error and the receivers it called."""
    signal = Signal(name="payment")

    def fails(sender: object, **kwargs: Any) -> None:
        raise ValueError("card declined")

    signal.connect(fails)
    with capture(signal) as captured, pytest.raises(ValueError, match="card declined"):
        await signal.send(None, amount=3)
    (sent,) = captured.sends
    assert sent.results is None
    assert isinstance(sent.error, ValueError)
    assert sent.receivers == (fails,)
    assert sent.describe() == "sender=None, amount=3 (raised ValueError: card declined)"


async def test_capture_shows_a_send_still_running() -> None:
    """A send whose receivers are still running is recorded and described as such."""
    signal = Signal(name="slow")
    gate = anyio.Event()

    async def waits(sender: object, **kwargs: Any) -> None:
        await gate.wait()

    signal.connect(waits)
    with capture(signal) as captured:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(signal.send, None)
            await wait_all_tasks_blocked()
            (sent,) = captured.sends
            assert not sent.done
            assert sent.results is None
            assert sent.describe() == "sender=None (still running)"
            gate.set()
    assert sent.results == [(waits, None)]


def test_capture_works_in_sync_code_and_after_its_block() -> None:
    """A capture records send_sync calls and stays readable after the block."""
    signal = Signal(name="saved")
    with capture(signal) as captured:
        signal.send_sync("a", pk=1)
    signal.send_sync("b", pk=2)
    assert [sent.sender for sent in captured.sends] == ["a"]
    captured.assert_sent_once_with(sender="a", pk=1)


def test_a_capture_is_used_once() -> None:
    """Entering a capture a second time is a RuntimeError."""
    captured = capture(Signal(name="once"))
    with captured:
        pass
    with pytest.raises(RuntimeError, match="capture of once was already used"):
        captured.__enter__()


def test_a_capture_leaves_no_hook_behind() -> None:
    """Once every helper has exited, the signal has no hook left to pay for."""
    signal = Signal()
    with capture(signal), capture(signal), muted(signal):
        assert len(hooks_of(signal)) == 1
    assert not hooks_of(signal)


async def test_assertions_pass_when_the_sends_match() -> None:
    """assert_sent, assert_sent_times, assert_not_sent and assert_sent_once_with accept matches."""
    signal = Signal(name="order_shipped")
    shop = Shop()
    with capture(signal) as captured:
        captured.assert_not_sent()
        captured.assert_sent_times(0)
        await signal.send(shop, order="#1", tracking="1Z")
    assert captured.assert_sent(order="#1").sender is shop
    captured.assert_sent(sender=shop, order=mock.ANY)
    captured.assert_sent_times(1, sender=shop)
    captured.assert_not_sent(order="#2")
    captured.assert_not_sent(sender=Shop())
    assert captured.assert_sent_once_with(sender=shop, order="#1", tracking="1Z").sender is shop
    captured.assert_sent_once_with(order="#1", tracking=mock.ANY)


async def test_failing_assertions_list_every_send() -> None:
    """Each assertion's failure message names the expectation and lists every send."""
    signal = Signal(name="order_shipped")
    with capture(signal) as captured:
        await signal.send(None, order="#1")
        await signal.send(Shop(), order="#2")
    sent = "it was sent 2 times:\n  1. sender=None, order='#1'\n  2. sender=<Shop>, order='#2'"
    with pytest.raises(AssertionError) as failure:
        captured.assert_sent(order="#3")
    assert str(failure.value) == f"expected order_shipped to be sent with order='#3'; {sent}"
    with pytest.raises(AssertionError) as failure:
        captured.assert_not_sent(order="#2")
    assert str(failure.value) == (
        f"expected order_shipped not to be sent with order='#2' (1 send matched); {sent}"
    )
    with pytest.raises(AssertionError) as failure:
        captured.assert_sent_times(1)
    assert str(failure.value) == (
        f"expected order_shipped to be sent 1 time (2 sends matched); {sent}"
    )
    with pytest.raises(AssertionError) as failure:
        captured.assert_sent_once_with(sender=None, order="#1")
    assert str(failure.value) == (
        f"expected order_shipped to be sent once with sender=None, order='#1'; {sent}"
    )


def test_assert_sent_once_with_compares_the_whole_payload() -> None:
    """assert_sent_once_with fails on a missing or an extra payload name, like mock."""
    signal = Signal(name="saved")
    with capture(signal) as captured:
        signal.send_sync(None, pk=1, created=True)
    with pytest.raises(AssertionError, match=r"with pk=1; it was sent 1 time:\n  1\. "):
        captured.assert_sent_once_with(pk=1)
    with pytest.raises(AssertionError, match="it was sent 1 time"):
        captured.assert_sent_once_with(pk=1, created=True, extra=None)
    with pytest.raises(AssertionError, match="to be sent once with pk=2, created=True"):
        captured.assert_sent_once_with(pk=2, created=True)


def test_an_assertion_on_a_signal_never_sent_says_so() -> None:
    """With no send at all, the message says the signal was never sent."""
    with capture(Signal(name="quiet")) as captured:
        pass
    with pytest.raises(AssertionError, match=r"^expected quiet to be sent; it was never sent$"):
        captured.assert_sent()


def test_long_payload_values_are_shortened_in_messages() -> None:
    """A huge payload value is shortened so the message stays readable."""
    signal = Signal(name="bulk")
    with capture(signal) as captured:
        signal.send_sync(None, rows=list(range(1000)))
    with pytest.raises(AssertionError) as failure:
        captured.assert_not_sent()
    assert "rows=[0, 1, 2," in str(failure.value)
    assert len(str(failure.value)) < 300


# -- receivers run as without the capture ----------------------------------------


class OutOfStockError(Exception):
    pass


async def test_a_failing_receiver_with_its_own_timeout_is_named_by_its_own_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Under capture, a timed receiver's error note and ERROR log name that receiver."""
    signal = Signal(name="order_shipped")

    async def reserve_stock(sender: object, **kwargs: Any) -> None:
        await anyio.lowlevel.checkpoint()
        raise OutOfStockError("none left")

    signal.connect(reserve_stock, timeout=5)
    name = f"{__name__}.{reserve_stock.__qualname__}()"
    with capture(signal) as captured:
        with pytest.raises(OutOfStockError) as raised:
            await signal.send(None)
        with caplog.at_level(logging.ERROR, logger="asyncsignals"):
            ((receiver, result),) = await signal.send_robust(None)
    assert raised.value.__notes__ == [f"raised by receiver {name} of signal order_shipped"]
    assert receiver is reserve_stock
    assert isinstance(result, OutOfStockError)
    (record,) = [each for each in caplog.records if each.levelno == logging.ERROR]
    assert record.getMessage().startswith(f"receiver {name} of signal order_shipped raised")
    assert [sent.receivers for sent in captured.sends] == [(reserve_stock,), (reserve_stock,)]


class Steps:
    """Async receivers of several shapes, each noting when it starts and ends."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def step(self, name: str) -> str:
        self.events.append(f"{name} started")
        await anyio.lowlevel.checkpoint()
        await anyio.sleep(0.001)
        self.events.append(f"{name} ended")
        return name

    async def sender_only(self, sender: object) -> str:
        return await self.step("sender_only")

    async def sender_keyword(self, *, sender: object) -> str:
        return await self.step("sender_keyword")

    async def takes_signal(self, sender: object, signal: object) -> str:
        assert isinstance(signal, Signal)
        return await self.step("takes_signal")

    async def named_only(self, *, sender: object, order: int) -> str:
        return await self.step(f"named_only {order}")

    async def order_first(self, order: int, sender: object) -> str:
        return await self.step(f"order_first {order}")

    async def takes_kwargs(self, sender: object, **kwargs: Any) -> str:
        return await self.step(f"takes_kwargs {sorted(kwargs)}")


@pytest.mark.parametrize(
    ("shapes", "payload", "expected"),
    [
        pytest.param(
            ["sender_only", "sender_keyword"],
            {},
            ["sender_only", "sender_keyword"],
            id="sender-only",
        ),
        pytest.param(
            ["named_only", "order_first"],
            {"order": 7},
            ["named_only 7", "order_first 7"],
            id="named-payload",
        ),
        pytest.param(
            ["takes_signal", "takes_kwargs"],
            {},
            ["takes_signal", "takes_kwargs ['signal']"],
            id="signal-and-kwargs",
        ),
    ],
)
@pytest.mark.parametrize("own_timeout", [None, 5.0], ids=["untimed", "timed"])
async def test_a_sequential_signal_runs_receivers_one_after_another_under_capture(
    shapes: list[str], payload: dict[str, Any], expected: list[str], own_timeout: float | None
) -> None:
    """Under capture, concurrent=False still runs async receivers in turn, whatever they accept."""
    signal = Signal(name="order_shipped", concurrent=False)
    steps = Steps()
    receivers = [getattr(steps, shape) for shape in shapes]
    for receiver in receivers:
        signal.connect(receiver, timeout=own_timeout)
    with capture(signal) as captured:
        results = await signal.send(None, **payload)
    assert results == list(zip(receivers, expected, strict=True))
    assert steps.events == [
        event for name in expected for event in (f"{name} started", f"{name} ended")
    ]
    assert captured.sends[0].results == results


# -- waiting --------------------------------------------------------------------


async def test_wait_for_send_returns_the_next_matching_send_once_finished() -> None:
    """wait_for_send skips sends that do not match and returns one with its results."""
    signal = Signal(name="payment_settled")
    signal.connect(record([]), weak=False)
    shop = Shop()

    async def settle() -> None:
        await signal.send(None, amount=1)
        await signal.send(shop, amount=2)
        await signal.send(shop, amount=3)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(settle)
        sent = await wait_for_send(signal, lambda s: s.payload["amount"] > 2, sender=shop)
    assert sent.payload == {"amount": 3}
    assert sent.results is not None
    assert sent.done


async def test_wait_for_send_timeout_lists_what_was_sent_meanwhile() -> None:
    """On timeout wait_for_send raises SendTimeoutError listing every send it saw."""
    signal = Signal(name="payment_settled")

    async def send_the_wrong_one() -> None:
        await signal.send(None, amount=1)

    def big(sent: Send) -> bool:
        return bool(sent.payload["amount"] > 100)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(send_the_wrong_one)
        with pytest.raises(SendTimeoutError) as failure:
            await wait_for_send(signal, big, amount=mock.ANY, timeout=0.05)
    assert str(failure.value) == (
        "payment_settled was not sent with amount=<ANY>, matching "
        "test_wait_for_send_timeout_lists_what_was_sent_meanwhile.<locals>.big within 0.05 s; "
        "it was sent 1 time:\n  1. sender=None, amount=1"
    )
    assert [sent.payload for sent in failure.value.sends] == [{"amount": 1}]
    assert isinstance(failure.value, AssertionError)
    assert isinstance(failure.value, TimeoutError)


async def test_wait_for_describes_a_predicate_without_a_name() -> None:
    """A predicate without __qualname__ is shown by its repr in the timeout message."""
    signal = Signal(name="quiet")
    with pytest.raises(SendTimeoutError, match=r"matching <Mock id=.*it was never sent"):
        await wait_for_send(signal, mock.Mock(return_value=False), timeout=0)


async def test_capture_wait_for_sees_sends_made_before_the_wait() -> None:
    """capture().wait_for finds a send made between entering the capture and awaiting."""
    signal = Signal(name="order_shipped")
    with capture(signal) as captured:
        await signal.send(None, order="#1")
        await signal.send(None, order="#2")
        assert (await captured.wait_for(order="#2")).payload == {"order": "#2"}
        assert (await captured.wait_for()).payload == {"order": "#1"}
        with pytest.raises(SendTimeoutError, match="it was sent 2 times"):
            await captured.wait_for(timeout=0.01)


async def test_capture_wait_for_without_timeout_waits() -> None:
    """timeout=None waits until the send comes."""
    signal = Signal()
    with capture(signal) as captured:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(signal.send, None)
            assert (await captured.wait_for(timeout=None)).sender is None


async def test_capture_wait_for_outside_the_block_is_an_error() -> None:
    """wait_for on a capture not entered, or already exited, raises RuntimeError."""
    captured = capture(Signal(name="late"))
    with pytest.raises(RuntimeError, match="capture of late is not active"):
        await captured.wait_for()
    with captured:
        pass
    with pytest.raises(RuntimeError, match="not active"):
        await captured.wait_for()


async def test_cancelling_a_wait_consumes_no_send() -> None:
    """A cancelled wait leaves the send for the next wait."""
    signal = Signal()
    with capture(signal) as captured:
        with anyio.move_on_after(0.01):
            await captured.wait_for(timeout=None)
        await signal.send(None, n=1)
        assert (await captured.wait_for()).payload == {"n": 1}


async def test_wait_sees_sends_from_worker_threads() -> None:
    """A send_sync from an anyio worker thread or a plain thread wakes the wait."""
    signal = Signal()

    async def send_from_worker() -> None:
        await anyio.to_thread.run_sync(lambda: signal.send_sync("worker"))

    with capture(signal) as captured:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(send_from_worker)
            assert (await captured.wait_for()).sender == "worker"
        thread: threading.Thread | None = None

        async def send_from_thread() -> None:
            nonlocal thread
            await wait_all_tasks_blocked()
            thread = start_thread(lambda: signal.send_sync("thread"))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(send_from_thread)
            assert (await captured.wait_for()).sender == "thread"
        assert thread is not None
        await join_thread(thread)


async def test_a_thread_sending_during_a_wait_never_waits_for_the_waiting_loop() -> None:
    """send_sync in a thread completes while the loop waiting for it is blocked joining it."""
    signal = Signal()
    waited: list[Send] = []

    async def wait() -> None:
        waited.append(await captured.wait_for(timeout=2))

    with capture(signal) as captured:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait)
            await wait_all_tasks_blocked()
            thread = start_thread(lambda: signal.send_sync("thread"))
            # Blocks the event loop, as code under test may (a sync join).
            thread.join(1)
            assert not thread.is_alive(), "send_sync waited for the capture's event loop"
    assert [sent.sender for sent in waited] == ["thread"]


async def test_a_thread_sending_to_a_stream_never_waits_for_the_reading_loop() -> None:
    """send_sync in a thread completes while the loop reading the stream is blocked joining it."""
    signal = Signal()
    received: list[Send] = []

    async def read(stream: asyncsignals.testing.SendStream) -> None:
        received.append(await stream.__anext__())

    async with sends(signal) as stream, anyio.create_task_group() as tasks:
        tasks.start_soon(read, stream)
        await wait_all_tasks_blocked()
        thread = start_thread(lambda: signal.send_sync("thread"))
        thread.join(1)
        assert not thread.is_alive(), "send_sync waited for the stream's event loop"
    assert [sent.sender for sent in received] == ["thread"]


def test_a_send_finishing_after_the_waiting_loop_ended_is_ignored() -> None:
    """A thread's send that ends after the stream's event loop has finished raises nothing."""
    signal = Signal()
    entered, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def blocks(sender: object, **kwargs: Any) -> None:
        entered.set()
        release.wait(5)

    def send() -> None:
        try:
            signal.send_sync(None)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    signal.connect(blocks)
    thread: threading.Thread | None = None

    async def main() -> None:
        nonlocal thread
        async with sends(signal):
            thread = start_thread(send)
            await anyio.to_thread.run_sync(entered.wait, 5)

    anyio.run(main)
    release.set()
    assert thread is not None
    thread.join(5)
    assert errors == []


# -- streams --------------------------------------------------------------------


async def test_sends_streams_matching_sends_in_order() -> None:
    """async for over sends() yields each matching send, none missed, in order."""
    signal = Signal(name="tick")

    async def tick() -> None:
        for number in range(6):
            await signal.send(None, number=number)

    received: list[int] = []
    async with sends(signal, lambda sent: sent.payload["number"] % 2 == 0) as stream:
        # Sent before the loop starts: still delivered.
        await signal.send(None, number=0)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(tick)
            async for sent in stream:
                received.append(sent.payload["number"])
                if len(received) == 4:
                    break
    assert received == [0, 0, 2, 4]


async def test_sends_filters_by_sender_and_payload() -> None:
    """sends(sender=..., **payload) delivers only those sends."""
    signal = Signal()
    shop = Shop()
    async with sends(signal, sender=shop, kind="a") as stream:
        await signal.send(None, kind="a")
        await signal.send(shop, kind="b")
        await signal.send(shop, kind="a")
        sent = await stream.__anext__()
    assert (sent.sender, sent.payload) == (shop, {"kind": "a"})


async def test_a_full_stream_buffer_drops_and_then_fails_the_loop() -> None:
    """Sends that find the buffer full are dropped, never blocked; the loop then raises."""
    signal = Signal(name="flood")
    received: list[object] = []
    async with sends(signal, max_buffer=1) as stream:
        for number in range(3):
            assert await signal.send(None, number=number) == []
        received.append((await stream.__anext__()).payload["number"])
        with pytest.raises(AssertionError) as failure:
            await stream.__anext__()
    assert received == [0]
    assert str(failure.value) == (
        "2 sends of flood found the stream's buffer of 1 full and were dropped; "
        "read faster or pass a larger max_buffer"
    )


async def test_a_stream_ends_when_its_block_exits() -> None:
    """A loop waiting on the stream ends when the block exits; reading after it ends too."""
    signal = Signal()
    received: list[object] = []

    async def consume(stream: asyncsignals.testing.SendStream) -> None:
        received.extend([sent async for sent in stream])

    async with anyio.create_task_group() as tasks, sends(signal) as stream:
        tasks.start_soon(consume, stream)
        await wait_all_tasks_blocked()
    assert received == []
    assert [sent async for sent in stream] == []


async def test_a_send_finishing_after_the_stream_closed_is_dropped() -> None:
    """A send still running when the stream's block exits finishes normally."""
    signal = Signal()
    gate = anyio.Event()

    async def waits(sender: object, **kwargs: Any) -> str:
        await gate.wait()
        return "done"

    signal.connect(waits)
    results: list[object] = []

    async def send() -> None:
        results.append(await signal.send(None))

    async with anyio.create_task_group() as tasks:
        async with sends(signal):
            tasks.start_soon(send)
            await wait_all_tasks_blocked()
        gate.set()
    assert results == [[(waits, "done")]]


# -- muting -----------------------------------------------------------------------


async def test_muted_sends_run_no_receiver_and_are_still_captured() -> None:
    """Inside muted() a send returns [] without calling anyone; a capture marks it muted."""
    signal = Signal(name="email")
    calls: list[object] = []
    signal.connect(record(calls), weak=False)
    with capture(signal) as captured:
        with muted(signal):
            assert await signal.send(None, to="a") == []
        assert await signal.send(None, to="b") != []
    assert calls == [{"to": "b"}]
    first, second = captured.sends
    assert first.muted
    assert first.receivers == ()
    assert first.results == []
    assert first.describe() == "sender=None, to='a' (muted)"
    assert not second.muted


async def test_muting_one_receiver_skips_only_that_one() -> None:
    """muted(signal, receiver) leaves the other receivers running, bound methods included."""
    signal = Signal()
    calls: list[object] = []
    other = signal.connect(record(calls))
    shop = Shop()
    signal.connect(shop.handle)
    with capture(signal) as captured, muted(signal, shop.handle):
        results = await signal.send(None)
    assert results == [(other, "recorded")]
    assert captured.sends[0].receivers == (other,)
    assert len(await signal.send(None)) == 2


async def test_muting_does_not_reach_concurrent_tasks() -> None:
    """A task that was already running when the block was entered is not muted."""
    signal = Signal()
    calls: list[object] = []
    signal.connect(record(calls), weak=False)
    entered = anyio.Event()
    sent = anyio.Event()

    async def outside() -> None:
        await entered.wait()
        await signal.send(None, who="outside")
        sent.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(outside)
        with muted(signal):
            entered.set()
            await sent.wait()
            await signal.send(None, who="inside")
    assert calls == [{"who": "outside"}]


async def test_tasks_started_in_a_muted_block_are_muted_until_it_exits() -> None:
    """A task started inside the block inherits the muting, which ends when the block does."""
    signal = Signal()
    calls: list[object] = []
    signal.connect(record(calls), weak=False)
    exited = anyio.Event()

    async def child() -> None:
        await signal.send(None, when="inside")
        await exited.wait()
        await signal.send(None, when="after")

    async with anyio.create_task_group() as tasks:
        with muted(signal):
            tasks.start_soon(child)
            await wait_all_tasks_blocked()
        with muted(Signal()):  # another signal's muting keeps the hook machinery busy
            exited.set()
            await wait_all_tasks_blocked()
    assert calls == [{"when": "after"}]


def test_muted_blocks_nest() -> None:
    """An inner block's exit leaves the outer muting in force."""
    signal = Signal()
    calls: list[object] = []
    signal.connect(record(calls), weak=False)
    with muted(signal):
        with muted(signal):
            signal.send_sync(None)
        signal.send_sync(None)
    signal.send_sync(None)
    assert len(calls) == 1


# -- connected_to ---------------------------------------------------------------


async def test_connected_to_connects_for_the_block_only() -> None:
    """The receiver runs inside the block and is gone after it."""
    signal = Signal()
    calls: list[object] = []
    with connected_to(signal, record(calls)) as receiver:
        assert await signal.send(None) == [(receiver, "recorded")]
    assert not signal.has_listeners()


def test_connected_to_disconnects_when_the_block_raises() -> None:
    """An exception in the block still disconnects the receiver, and propagates."""
    signal = Signal()
    shop = Shop()
    listening: list[bool] = []

    def fail_inside() -> None:
        with connected_to(signal, shop.handle, sender=shop):
            listening.append(signal.has_listeners(shop))
            raise KeyError("boom")

    with pytest.raises(KeyError):
        fail_inside()
    assert listening == [True]
    assert not signal.has_listeners(shop)


def test_connected_to_passes_connect_arguments() -> None:
    """dispatch_uid and weak are passed to connect, and the dispatch_uid is disconnected."""
    signal = Signal()
    with connected_to(signal, lambda sender, **kwargs: 1, weak=False, dispatch_uid="uid"):
        gc.collect()
        assert signal.send_sync(None)[0][1] == 1
    assert not signal.has_listeners()


def test_connected_to_leaves_an_existing_connection_in_place() -> None:
    """When the receiver was already connected, the block does not disconnect it."""
    signal = Signal()
    receiver = signal.connect(record([]))
    with connected_to(signal, receiver):
        pass
    assert signal.receivers_for(None) == [receiver]


# -- muted and connected_to as decorators ---------------------------------------


async def test_muted_decorates_an_async_function_for_each_call() -> None:
    """@muted(signal) on an async function mutes the signal while each call runs, not after."""
    signal = Signal()
    calls: list[object] = []
    signal.connect(record(calls), weak=False)

    @muted(signal)
    async def quiet(number: int) -> object:
        await anyio.lowlevel.checkpoint()
        return await signal.send(None, number=number)

    assert inspect.iscoroutinefunction(quiet)
    assert quiet.__name__ == "quiet"
    assert await quiet(1) == []
    assert await quiet(2) == []
    await signal.send(None, number=3)
    assert calls == [{"number": 3}]


def test_muted_decorates_a_sync_function() -> None:
    """@muted(signal, receiver) on a sync function skips that receiver during each call."""
    signal = Signal()
    calls: list[object] = []
    skipped = signal.connect(record([]), weak=False)
    signal.connect(record(calls), weak=False)

    @muted(signal, skipped)
    def quiet() -> int:
        return len(signal.send_sync(None, when="inside"))

    assert quiet() == 1
    assert quiet() == 1
    assert len(signal.send_sync(None, when="after")) == 2
    assert calls == [{"when": "inside"}, {"when": "inside"}, {"when": "after"}]


async def test_connected_to_decorates_an_async_function_for_each_call() -> None:
    """@connected_to(signal, receiver) on an async function connects it while each call runs."""
    signal = Signal()
    calls: list[object] = []
    receiver = record(calls)

    @connected_to(signal, receiver)
    async def sending(number: int) -> bool:
        await anyio.lowlevel.checkpoint()
        await signal.send(None, number=number)
        return signal.has_listeners()

    assert signal.has_listeners() is False
    assert await sending(1) is True
    assert await sending(2) is True
    assert signal.has_listeners() is False
    assert calls == [{"number": 1}, {"number": 2}]


def test_connected_to_decorates_a_sync_function() -> None:
    """@connected_to on a sync function connects the receiver during each call only."""
    signal = Signal()
    calls: list[object] = []

    @connected_to(signal, record(calls), weak=False)
    def sending() -> None:
        signal.send_sync(None)

    sending()
    signal.send_sync(None)
    sending()
    assert len(calls) == 2


def test_a_block_cannot_be_entered_again_while_open() -> None:
    """Entering an open muted() block again is a RuntimeError; once exited it may be reused."""
    signal = Signal()
    calls: list[object] = []
    signal.connect(record(calls), weak=False)
    block = muted(signal)
    with block:
        with pytest.raises(RuntimeError, match=r"this muted\(\) block is already open"):
            block.__enter__()
        signal.send_sync(None)
    with block:
        signal.send_sync(None)
    signal.send_sync(None)
    assert len(calls) == 1


@pytest.mark.parametrize("decorator", ["muted", "connected_to"])
def test_generator_functions_are_refused_as_decorated_functions(decorator: str) -> None:
    """@muted and @connected_to refuse generator and async generator functions with a TypeError."""
    signal = Signal()
    block = muted(signal) if decorator == "muted" else connected_to(signal, record([]))

    def numbers() -> Any:
        yield 1

    async def async_numbers() -> Any:
        yield 1

    for function in (numbers, async_numbers):
        with pytest.raises(TypeError, match=rf"{decorator}\(\) cannot decorate .*generator"):
            block(function)
    assert not signal.has_listeners()


# -- the pytest fixtures ----------------------------------------------------------


_SIGNAL_FOR_FIXTURES = Signal(name="fixture_signal")


@pytest.fixture
def doomed_signal() -> list[Signal]:
    """A signal that exists when the isolation snapshot is taken; the test may drop it."""
    return [Signal(name="doomed")]


def test_signal_capture_fixture_records_until_the_test_ends(
    signal_capture: Callable[[Signal], SignalCapture],
) -> None:
    """signal_capture(signal) returns an active capture."""
    captured = signal_capture(_SIGNAL_FOR_FIXTURES)
    _SIGNAL_FOR_FIXTURES.send_sync(None, n=1)
    captured.assert_sent_once_with(n=1)


def test_signal_isolation_restores_receivers(
    doomed_signal: list[Signal], signal_isolation: None
) -> None:
    """Connections made under signal_isolation are undone at teardown, even for dead signals."""
    _SIGNAL_FOR_FIXTURES.connect(record([]), weak=False)
    doomed_signal.clear()
    gc.collect()


def test_signal_isolation_restored_the_previous_test() -> None:
    """The connection the previous test made is gone (runs after it, in file order)."""
    assert not _SIGNAL_FOR_FIXTURES.has_listeners()
