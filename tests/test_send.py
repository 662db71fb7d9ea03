"""send(): who is called, how, in what order, and what comes back."""

from __future__ import annotations

import asyncio.coroutines
import functools
import inspect
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

import anyio
import pytest
import sniffio
from helpers import TEST_TIMEOUT, no_unawaited_coroutines

from asyncsignals import Signal

pytestmark = pytest.mark.anyio


async def test_seed_example_runs_as_written() -> None:
    """The design's seed example works with await added."""
    from asyncsignals import receiver

    class Order:
        id = 7

    printed: list[str] = []
    order_shipped = Signal(providing_args=["order", "tracking_number"])

    @receiver(order_shipped)
    def handle_order_shipped(sender: object, **kwargs: Any) -> None:
        order = kwargs.get("order")
        assert order is not None
        printed.append(
            f"Order {order.id} has been shipped with tracking number: {kwargs['tracking_number']}"
        )

    my_order = Order()
    await order_shipped.send(sender=None, order=my_order, tracking_number="1234567890")
    assert printed == ["Order 7 has been shipped with tracking number: 1234567890"]
    assert order_shipped.disconnect(handle_order_shipped)
    result = await order_shipped.send_robust(sender=None, order=my_order, tracking_number="1")
    assert result == []
    assert len(printed) == 1


async def test_send_without_receivers_returns_empty_list() -> None:
    """A send that reaches nobody returns []."""
    assert await Signal().send(None) == []
    assert await Signal().send_robust(None) == []


async def test_results_in_connection_order_with_mixed_receivers() -> None:
    """Results follow connection order even when async receivers finish in reverse order."""
    finished: list[str] = []
    second_done = anyio.Event()

    async def slow(sender: object, **kwargs: Any) -> str:
        await second_done.wait()
        finished.append("slow")
        return "slow"

    def inline(sender: object, **kwargs: Any) -> str:
        finished.append("inline")
        return "inline"

    async def fast(sender: object, **kwargs: Any) -> str:
        finished.append("fast")
        second_done.set()
        return "fast"

    def threaded(sender: object, **kwargs: Any) -> str:
        return "threaded"

    signal = Signal()
    signal.connect(slow)
    signal.connect(inline)
    signal.connect(fast)
    signal.connect(threaded, to_thread=True)
    results = await signal.send(None)
    assert results == [
        (slow, "slow"),
        (inline, "inline"),
        (fast, "fast"),
        (threaded, "threaded"),
    ]
    assert finished.index("fast") < finished.index("slow")


async def test_sync_receivers_run_inline_in_order_on_loop_thread() -> None:
    """Sync receivers run one after another on the event loop's thread."""
    calls: list[tuple[int, int]] = []
    signal = Signal()
    receivers = []
    for number in range(5):

        def sync_receiver(sender: object, _number: int = number, **kwargs: Any) -> int:
            calls.append((_number, threading.get_ident()))
            return _number

        receivers.append(sync_receiver)
        signal.connect(sync_receiver)
    results = await signal.send(None)
    assert [result for _, result in results] == [0, 1, 2, 3, 4]
    assert calls == [(number, threading.get_ident()) for number in range(5)]


async def test_async_receivers_run_concurrently() -> None:
    """Async receivers run at the same time: each can wait for the other."""
    first_in, second_in = anyio.Event(), anyio.Event()

    async def first(sender: object, **kwargs: Any) -> str:
        first_in.set()
        await second_in.wait()
        return "first"

    async def second(sender: object, **kwargs: Any) -> str:
        second_in.set()
        await first_in.wait()
        return "second"

    signal = Signal()
    signal.connect(first)
    signal.connect(second)
    assert await signal.send(None) == [(first, "first"), (second, "second")]


async def test_to_thread_receiver_runs_in_worker_concurrently_with_async() -> None:
    """A to_thread receiver runs in a worker thread while async receivers run on the loop."""
    released = threading.Event()
    loop_thread = threading.get_ident()

    def blocking(sender: object, **kwargs: Any) -> int:
        assert released.wait(5)
        return threading.get_ident()

    async def releaser(sender: object, **kwargs: Any) -> int:
        released.set()
        return threading.get_ident()

    signal = Signal()
    signal.connect(blocking, to_thread=True)
    signal.connect(releaser)
    [(_, worker_thread), (_, async_thread)] = await signal.send(None)
    assert worker_thread != loop_thread
    assert async_thread == loop_thread


async def test_single_to_thread_receiver_runs_in_worker_thread() -> None:
    """A lone to_thread receiver also runs off the loop's thread."""

    def blocking(sender: object, **kwargs: Any) -> int:
        return threading.get_ident()

    signal = Signal()
    signal.connect(blocking, to_thread=True)
    [(_, worker_thread)] = await signal.send(None)
    assert worker_thread != threading.get_ident()


async def async_receiver(sender: object, **kwargs: Any) -> str:
    await anyio.lowlevel.checkpoint()
    return "async"


class AsyncCallable:
    async def __call__(self, sender: object, **kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        return "async"

    async def method(self, sender: object, **kwargs: Any) -> str:
        await anyio.lowlevel.checkpoint()
        return "async"


def marked_by_asgiref_style(sender: object, **kwargs: Any) -> Coroutine[Any, Any, str]:
    return async_receiver(sender)


# What asgiref.sync.markcoroutinefunction does before Python 3.12.
marked_by_asgiref_style._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]

ASYNC_RECEIVERS: list[Any] = [
    pytest.param(lambda: async_receiver, id="async-def"),
    pytest.param(lambda: AsyncCallable().method, id="bound-async-method"),
    pytest.param(lambda: functools.partial(async_receiver), id="partial"),
    pytest.param(lambda: functools.partial(functools.partial(async_receiver)), id="nested-partial"),
    pytest.param(AsyncCallable, id="async-call-object"),
    pytest.param(lambda: functools.partial(AsyncCallable()), id="partial-of-async-call-object"),
    pytest.param(lambda: marked_by_asgiref_style, id="asgiref-marker"),
]


@pytest.mark.parametrize("make_receiver", ASYNC_RECEIVERS)
async def test_async_receivers_detected_at_connect(make_receiver: Callable[[], Any]) -> None:
    """Each kind of async callable is detected as async when it connects, and awaited."""
    receiver = make_receiver()
    signal = Signal()
    with pytest.raises(TypeError, match="to_thread"):
        signal.connect(receiver, weak=False, to_thread=True)
    signal.connect(receiver, weak=False)
    # send_sync refuses async receivers on the loop's thread before calling any.
    with pytest.raises(RuntimeError, match="async receivers"):
        signal.send_sync(None)
    assert await signal.send(None) == [(receiver, "async")]


@pytest.mark.skipif(
    sys.version_info < (3, 12), reason="inspect.markcoroutinefunction is new in Python 3.12"
)
async def test_markcoroutinefunction_receiver_is_async() -> None:
    """A callable marked with inspect.markcoroutinefunction is detected as async."""

    def marked(sender: object, **kwargs: Any) -> Coroutine[Any, Any, str]:
        return async_receiver(sender)

    mark = inspect.markcoroutinefunction  # type: ignore[attr-defined,unused-ignore]
    receiver = mark(marked)
    signal = Signal()
    with pytest.raises(TypeError, match="to_thread"):
        signal.connect(receiver, to_thread=True)
    signal.connect(receiver)
    assert await signal.send(None) == [(receiver, "async")]


class CustomAwaitable:
    """An awaitable that is not a coroutine and has no close()."""

    def __await__(self) -> Generator[Any, Any, str]:
        yield from anyio.lowlevel.checkpoint().__await__()
        return "custom"


def returns_coroutine(sender: object, **kwargs: Any) -> Awaitable[str]:
    return async_receiver(sender)


def returns_custom_awaitable(sender: object, **kwargs: Any) -> Awaitable[str]:
    return CustomAwaitable()


@pytest.mark.parametrize("method", ["send", "send_robust"])
@pytest.mark.parametrize("sync_receiver", [returns_coroutine, returns_custom_awaitable])
async def test_awaitable_returned_by_sync_receiver_is_awaited(
    sync_receiver: Callable[..., Awaitable[str]], method: str
) -> None:
    """A sync receiver's awaitable result is awaited, alone and alongside async receivers."""
    expected = "async" if sync_receiver is returns_coroutine else "custom"
    with no_unawaited_coroutines():
        alone = Signal()
        alone.connect(sync_receiver)
        assert await getattr(alone, method)(None) == [(sync_receiver, expected)]
        together = Signal()
        together.connect(sync_receiver)
        together.connect(async_receiver)
        assert await getattr(together, method)(None) == [
            (sync_receiver, expected),
            (async_receiver, "async"),
        ]


async def test_awaitable_returned_by_to_thread_receiver_is_awaited() -> None:
    """A to_thread receiver that returns an awaitable gets it awaited, not dropped."""
    signal = Signal()
    signal.connect(returns_coroutine, to_thread=True)
    [(_, value)] = await signal.send(None)
    if inspect.iscoroutine(value):
        value.close()  # keep the failure from leaking a warning into later tests
    assert value == "async"


async def test_payload_reaches_every_kind_of_receiver() -> None:
    """sender and the named payload arrive as keyword arguments."""
    received: list[tuple[str, object, object]] = []

    def sync_receiver(*, sender: object, order: object) -> None:
        received.append(("sync", sender, order))

    async def async_one(*, sender: object, order: object) -> None:
        received.append(("async", sender, order))

    def threaded(*, sender: object, order: object) -> None:
        received.append(("thread", sender, order))

    signal = Signal(providing_args=["order"])
    signal.connect(sync_receiver)
    signal.connect(async_one)
    signal.connect(threaded, to_thread=True)
    await signal.send("shop", order=42)
    assert sorted(received) == [
        ("async", "shop", 42),
        ("sync", "shop", 42),
        ("thread", "shop", 42),
    ]


@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_reserved_signal_payload_is_a_type_error_before_any_receiver(method: str) -> None:
    """send(None, signal=...) is a TypeError raised before any receiver runs."""
    calls: list[str] = []
    signal = Signal(name="reserved")

    def sync_receiver(**kwargs: Any) -> None:
        calls.append("sync")

    signal.connect(sync_receiver)
    with pytest.raises(TypeError, match="'signal' is reserved"):
        await getattr(signal, method)(None, signal=1)
    assert calls == []


async def test_reserved_signal_payload_is_a_type_error_without_receivers() -> None:
    """The reserved name is refused even when nothing is connected."""
    with pytest.raises(TypeError, match="'signal' is reserved"):
        await Signal().send(None, signal=1)


@pytest.mark.parametrize("method", ["send", "send_robust"])
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"order": 1}, r"missing argument\(s\) \['tracking_number'\]"),
        (
            {"order": 1, "tracking_number": 2, "extra": 3},
            r"unknown argument\(s\) \['extra'\]",
        ),
        (
            {"order": 1, "colour": 2},
            r"unknown argument\(s\) \['colour'\] and missing argument\(s\) "
            r"\['tracking_number'\]",
        ),
    ],
)
async def test_payload_must_match_providing_args_before_any_receiver(
    method: str, payload: dict[str, int], message: str
) -> None:
    """An unknown or missing name is a TypeError naming it, before any receiver runs."""
    calls: list[str] = []

    def sync_receiver(**kwargs: Any) -> None:
        calls.append("sync")

    async def async_one(**kwargs: Any) -> None:
        calls.append("async")

    signal = Signal(providing_args=["order", "tracking_number"], name="order_shipped")
    signal.connect(sync_receiver)
    signal.connect(async_one)
    with pytest.raises(TypeError, match=message):
        await getattr(signal, method)(None, **payload)
    assert calls == []


async def test_payload_checked_even_without_receivers() -> None:
    """A send that reaches nobody still checks its payload against providing_args."""
    signal = Signal(providing_args=["order"])
    with pytest.raises(TypeError, match="missing"):
        await signal.send(None)


async def test_matching_payload_is_accepted() -> None:
    """A payload with exactly the provided names is sent."""
    signal = Signal(providing_args=["order"])

    def echo(sender: object, order: int) -> int:
        return order

    signal.connect(echo)
    assert await signal.send(None, order=3) == [(echo, 3)]


async def test_receiver_that_can_call_with_any_arguments_gets_everything() -> None:
    """Without providing_args, any payload is passed on as given."""

    def catch_all(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    signal = Signal()
    signal.connect(catch_all)
    [(_, received)] = await signal.send("me", a=1, b=2)
    assert received == {"sender": "me", "signal": signal, "a": 1, "b": 2}


@pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")]
)
async def test_send_on_uvloop() -> None:
    """Mixed sync, async and threaded receivers work on uvloop."""

    def sync_receiver(sender: object, **kwargs: Any) -> str:
        return "sync"

    def threaded(sender: object, **kwargs: Any) -> str:
        return "thread"

    signal = Signal()
    signal.connect(sync_receiver)
    signal.connect(async_receiver)
    signal.connect(threaded, to_thread=True)
    assert await signal.send(None) == [
        (sync_receiver, "sync"),
        (async_receiver, "async"),
        (threaded, "thread"),
    ]


def test_sends_from_asyncio_and_from_trio_while_trio_runs_as_a_guest() -> None:
    """trio in guest mode on an asyncio loop: each side's sends run on its own backend."""
    import trio
    import trio.lowlevel

    signal = Signal()
    seen: list[str] = []

    async def on_event(sender: object, **kwargs: Any) -> str:
        name = sniffio.current_async_library()
        await anyio.lowlevel.checkpoint()
        seen.append(name)
        return name

    signal.connect(on_event, weak=False)

    trio_started = asyncio.Event()
    trio_may_send = trio.Event()
    tokens: list[trio.lowlevel.TrioToken] = []

    async def trio_side() -> list[tuple[Any, Any]]:
        tokens.append(trio.lowlevel.current_trio_token())
        trio_started.set()
        await trio_may_send.wait()
        return await signal.send("trio")

    async def asyncio_side() -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        guest_done: asyncio.Future[Any] = loop.create_future()
        trio.lowlevel.start_guest_run(
            trio_side,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=guest_done.set_result,
            # uvloop sets the signal wake-up fd that trio would otherwise take
            host_uses_signal_set_wakeup_fd=True,
        )
        # Between trio's ticks, while its run waits in trio_may_send.
        await trio_started.wait()
        from_asyncio = await signal.send("asyncio")
        tokens[0].run_sync_soon(trio_may_send.set)
        outcome = await guest_done
        return from_asyncio, outcome.unwrap()

    from_asyncio, from_trio = asyncio.run(asyncio.wait_for(asyncio_side(), TEST_TIMEOUT))
    assert from_asyncio == [(on_event, "asyncio")]
    assert from_trio == [(on_event, "trio")]
    assert sorted(seen) == ["asyncio", "trio"]


# -- one async receiver, the shortest path --------------------------------


def marked_raising(sender: object, **kwargs: Any) -> Coroutine[Any, Any, str]:
    raise LookupError("raised by the call itself")


marked_raising._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]


def marked_custom(sender: object, **kwargs: Any) -> Awaitable[str]:
    return CustomAwaitable()


marked_custom._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]


async def raises_at_once(sender: object, **kwargs: Any) -> str:
    raise LookupError("raised before suspending")


@pytest.mark.parametrize("receiver", [marked_raising, raises_at_once], ids=["call", "first-step"])
async def test_a_lone_async_receiver_failing_before_it_suspends(receiver: Any) -> None:
    """Alone, an async receiver that fails before suspending: raised with its note, or returned."""
    signal = Signal(name="lone")
    signal.connect(receiver)
    with pytest.raises(LookupError) as caught:
        await signal.send(None)
    assert caught.value.__notes__ == [
        f"raised by receiver {receiver.__module__}.{receiver.__qualname__}() of signal lone"
    ]
    [(slot, error)] = await signal.send_robust(None)
    assert slot is receiver
    assert isinstance(error, LookupError)


async def test_a_lone_async_receiver_that_returns_another_awaitable() -> None:
    """Alone, an async-marked receiver returning an awaitable that is not a coroutine: awaited."""
    signal = Signal()
    signal.connect(marked_custom)
    assert await signal.send(None) == [(marked_custom, "custom")]
    assert await signal.send_robust(None) == [(marked_custom, "custom")]


@pytest.mark.parametrize("weak", [True, False], ids=["weak", "strong"])
async def test_a_lone_async_receiver_takes_signal_only_when_it_accepts_it(weak: bool) -> None:
    """Alone, a receiver is given ``signal=`` exactly when its signature takes it."""
    signal = Signal()
    seen: list[dict[str, Any]] = []

    async def with_kwargs(sender: object, **kwargs: Any) -> str:
        seen.append(kwargs)
        return "kwargs"

    async def named_only(sender: object, value: int) -> str:
        seen.append({"value": value})
        return "named"

    signal.connect(with_kwargs, weak=weak)
    assert await signal.send(None, value=1) == [(with_kwargs, "kwargs")]
    signal.disconnect(with_kwargs)
    signal.connect(named_only, weak=weak)
    assert await signal.send_robust(None, value=2) == [(named_only, "named")]
    assert seen == [{"signal": signal, "value": 1}, {"value": 2}]


@pytest.mark.parametrize("concurrent", [True, False], ids=["concurrent", "sequential"])
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_receivers_that_take_signal_and_ones_that_do_not_each_get_their_keywords(
    kind: str, concurrent: bool
) -> None:
    """In one send, each receiver gets ``signal=`` exactly when it takes it, in any order."""
    signal = Signal(concurrent=concurrent)
    seen: list[tuple[str, dict[str, Any]]] = []

    def make(name: str, takes_signal: bool) -> Callable[..., Any]:
        if kind == "sync":
            if takes_signal:

                def receiver(sender: object, **kwargs: Any) -> str:
                    seen.append((name, kwargs))
                    return name
            else:

                def receiver(sender: object, value: int) -> str:  # type: ignore[misc]
                    seen.append((name, {"value": value}))
                    return name

            return receiver
        if takes_signal:

            async def async_receiver(sender: object, **kwargs: Any) -> str:
                seen.append((name, kwargs))
                return name
        else:

            async def async_receiver(sender: object, value: int) -> str:  # type: ignore[misc]
                seen.append((name, {"value": value}))
                return name

        return async_receiver

    shapes = [("plain 1", False), ("takes 1", True), ("plain 2", False), ("takes 2", True)]
    receivers = [make(name, takes) for name, takes in shapes]
    for each in receivers:
        signal.connect(each, weak=False)
    for send in (signal.send, signal.send_robust):
        seen.clear()
        results = await send(None, value=7)
        assert results == [(r, name) for r, (name, _) in zip(receivers, shapes, strict=True)]
        expected = [
            (name, {"signal": signal, "value": 7} if takes else {"value": 7})
            for name, takes in shapes
        ]
        assert sorted(seen, key=lambda pair: pair[0]) == sorted(expected, key=lambda pair: pair[0])
