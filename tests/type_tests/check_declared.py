"""Typed signals: what mypy and pyright must accept, and what they must reject.

Never run, only type-checked. Each line a checker must reject carries that
checker's own ignore comment; both report unused ignores, so an expected
error that disappears fails the check.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, assert_type

from asyncsignals import BackgroundDispatcher, Signal, receiver
from asyncsignals.redis import RedisBridge
from asyncsignals.testing import Send, SendStream, capture, sends, wait_for_send


class Order:
    pass


class Shop:
    pass


@Signal.declare
def order_shipped(*, sender: Shop, order: Order, tracking_number: str) -> str:
    """An order left the warehouse; each receiver returns a note."""
    raise NotImplementedError


@Signal.declare
def order_cancelled(*, sender: Shop, order: Order, reason: str = "") -> None:
    """An order was cancelled; the reason may be left out."""
    raise NotImplementedError


# -- receivers that fit ---------------------------------------------------


def audit(sender: Shop, **kwargs: Any) -> str:
    return "audited"


async def notify_warehouse(*, sender: Shop, order: Order, tracking_number: str) -> str:
    return "released"


class Mailer:
    async def on_shipped(self, *, sender: object, order: Order, **kwargs: Any) -> str:
        return "mailed"


def with_prefix(prefix: str, *, sender: Shop, order: Order, tracking_number: str) -> str:
    return prefix + tracking_number


order_shipped.connect(audit)
order_shipped.connect(notify_warehouse, sender=Shop(), dispatch_uid="warehouse")
order_shipped.connect(Mailer().on_shipped)
order_shipped.connect(functools.partial(with_prefix, "note: "))


@receiver(order_shipped)
def decorated(*, sender: Shop, order: Order, tracking_number: str) -> str:
    return tracking_number


@receiver([order_shipped])
async def decorated_async(sender: Shop, **kwargs: Any) -> str:
    return "ok"


def forgets_reason(*, sender: Shop, order: Order, **kwargs: Any) -> None:
    pass


order_cancelled.connect(forgets_reason)

# -- receivers that do not fit ---------------------------------------------


def misses_tracking_number(*, sender: Shop, order: Order) -> str:
    return "?"


def returns_a_number(sender: Shop, **kwargs: Any) -> int:
    return 1


def wants_another_sender(*, sender: Order, order: Order, tracking_number: str) -> str:
    return "?"


order_shipped.connect(misses_tracking_number)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
order_shipped.connect(returns_a_number)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
order_shipped.connect(wants_another_sender)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


@receiver(order_shipped)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType, reportCallIssue, reportUntypedFunctionDecorator]
def decorated_wrongly(*, sender: Shop) -> str:
    return "?"


@receiver(order_shipped)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType, reportCallIssue, reportUntypedFunctionDecorator]
async def decorated_async_wrongly(*, sender: Shop, order: Order, tracking_number: int) -> str:
    return "?"


# -- what a decorated receiver is -------------------------------------------


# Stacked: checked against each signal (order_cancelled's receivers return None).
@receiver(order_cancelled)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType, reportCallIssue, reportUntypedFunctionDecorator]
@receiver(order_shipped)
def stacked_on_a_signal_returning_none(sender: Shop, **kwargs: Any) -> str:
    return "?"


@receiver(order_shipped)
async def awaitable(*, sender: Shop, order: Order, tracking_number: str) -> str:
    return tracking_number


async def decorated_receivers_keep_their_kind(shop: Shop, order: Order) -> None:
    assert_type(decorated(sender=shop, order=order, tracking_number="1Z"), str)
    assert_type(await awaitable(sender=shop, order=order, tracking_number="1Z"), str)
    # Decorated for a list: checked at connect only, and of any result for mypy.
    assert_type(decorated_async, Callable[..., Awaitable[str]])  # type: ignore[assert-type]
    await decorated(sender=shop, order=order, tracking_number="1Z")  # type: ignore[misc]  # pyright: ignore[reportGeneralTypeIssues]


# -- a list of signals --------------------------------------------------------


@Signal.declare
def order_returned(*, sender: Shop, order: Order, reason: str = "") -> str:
    """A customer sent an order back; each receiver returns a note, as for order_shipped."""
    raise NotImplementedError


untyped = Signal(name="untyped")


# Payloads that differ and one result: a **kwargs receiver of that result fits.
@receiver([order_shipped, order_returned])
def noted_for_both(sender: Shop, **kwargs: Any) -> str:
    return "noted"


@receiver([order_shipped, order_returned, untyped])
async def noted_for_all(sender: Shop, **kwargs: Any) -> str:
    return "noted"


# A result that is not the one the signals share: pyright infers that result
# and catches it; mypy checks nothing for a list (nor a tuple) of signals.
@receiver([order_shipped, order_returned])  # pyright: ignore[reportArgumentType, reportCallIssue, reportUntypedFunctionDecorator]
def returns_nothing_to_a_list(sender: Shop, **kwargs: Any) -> None:
    pass


@receiver((order_shipped, untyped))  # pyright: ignore[reportArgumentType, reportCallIssue, reportUntypedFunctionDecorator]
async def returns_a_number_to_a_tuple(sender: Shop, **kwargs: Any) -> int:
    return 1


# The hole: signals whose results differ (str and None) have no one result
# to check, so neither checker checks this one, although order_shipped's
# results then hold a None that its type says is a str.
@receiver([order_shipped, order_cancelled])
def returns_nothing_to_signals_that_differ(sender: Shop, **kwargs: Any) -> None:
    pass


# Stacked instead, each signal checks it: both checkers reject it.
@receiver(order_shipped)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType, reportCallIssue, reportUntypedFunctionDecorator]
@receiver(order_cancelled)
def stacked_returns_nothing(sender: Shop, **kwargs: Any) -> None:
    pass


# -- the limits of a signature as a declaration ----------------------------


# The body "..." of a prototype that returns a value is mypy's empty-body error
# (mypy allows it only in protocols, abstract methods, overloads and stubs):
# hence "raise NotImplementedError" in the documented form.
@Signal.declare
def with_an_empty_body(*, sender: Shop, order: Order) -> str: ...  # type: ignore[empty-body]


@Signal.declare
def order_placed(sender: Shop, *, order: Order) -> None:
    """An ordinary sender: send(shop, order=...) type-checks, but see below."""
    raise NotImplementedError


async def sends_by_position(shop: Shop, order: Order) -> None:
    await order_placed.send(shop, order=order)
    await order_shipped.send(shop, order=order, tracking_number="1Z")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


def takes_sender_by_keyword(*, sender: Shop, order: Order) -> None:
    pass


def takes_sender_either_way(sender: Shop, order: Order) -> None:
    pass


# A prototype's ordinary sender asks receivers for an ordinary one too.
order_placed.connect(takes_sender_either_way)
order_placed.connect(takes_sender_by_keyword)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def takes_the_signal(sender: Shop, signal: object, **kwargs: Any) -> str:
    return "?"


def takes_the_signal_if_given(sender: Shop, signal: object = None, **kwargs: Any) -> str:
    return "?"


# A declared payload has no 'signal': a receiver takes it with a default.
order_shipped.connect(takes_the_signal_if_given)
order_shipped.connect(takes_the_signal)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


class CallablePayload:
    def __call__(self, *, sender: Shop, order: Order) -> str:
        raise NotImplementedError


def declares_from_a_callable_object() -> None:
    # The checkers take any callable as a prototype; the runtime refuses, with a
    # TypeError, one that is not a function (an object, a functools.partial).
    declared = Signal.declare(CallablePayload())
    assert_type(
        declared.send_sync(sender=Shop(), order=Order()), list[tuple[Callable[..., Any], str]]
    )
    Signal.declare(functools.partial(with_prefix, "note: "))


# -- sending -----------------------------------------------------------------


async def sending(shop: Shop, order: Order) -> None:
    results = await order_shipped.send(sender=shop, order=order, tracking_number="1Z")
    assert_type(results, list[tuple[Callable[..., Any], str]])
    robust = await order_shipped.send_robust(sender=shop, order=order, tracking_number="1Z")
    assert_type(robust, list[tuple[Callable[..., Any], str | Exception]])
    assert_type(
        order_shipped.send_sync(sender=shop, order=order, tracking_number="1Z"),
        list[tuple[Callable[..., Any], str]],
    )
    assert_type(
        order_shipped.send_robust_sync(sender=shop, order=order, tracking_number="1Z"),
        list[tuple[Callable[..., Any], str | Exception]],
    )
    await order_cancelled.send(sender=shop, order=order)
    await order_cancelled.send(sender=shop, order=order, reason="out of stock")

    await order_shipped.send(sender=shop, order=order)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await order_shipped.send(sender=shop, order=order, tracking_number=1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await order_shipped.send(sender=shop, order=order, tracking_number="1Z", extra=1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await order_shipped.send(sender=order, order=order, tracking_number="1Z")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    order_shipped.send_sync(sender=shop, order=order)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await order_shipped.send_robust(sender=shop, order="#42", tracking_number="1Z")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


# -- options, and the decorator factory ------------------------------------


@Signal.declare(timeout=2.0, concurrent=False)
def checkout_step(*, sender: Shop, total: int) -> int:
    """A step of the checkout hook; each receiver returns an amount."""
    raise NotImplementedError


def refund(*, sender: Shop, amount: int) -> None:
    raise NotImplementedError


refund_issued = Signal.declare(refund, name="refund_issued", max_concurrency=4)


async def check_the_options() -> None:
    results = await checkout_step.send(sender=Shop(), total=3)
    assert_type(results, list[tuple[Callable[..., Any], int]])
    await checkout_step.send(sender=Shop(), total="3")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await refund_issued.send(sender=Shop(), amount=5)
    await refund_issued.send(sender=Shop(), total=5)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


# -- the helpers around signals take the signal's types ---------------------


async def helpers(dispatcher: BackgroundDispatcher, bridge: RedisBridge, shop: Shop) -> None:
    order = Order()
    dispatcher.send(order_shipped, sender=shop, order=order, tracking_number="1Z")
    dispatcher.send(order_shipped, sender=shop, order=order)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await dispatcher.send_wait(order_shipped, sender=shop, order=order, tracking_number=1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    # The sender goes by keyword, as to the signal's own send.
    dispatcher.send(order_shipped, shop, order=order, tracking_number="1Z")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await bridge.publish(order_shipped, sender=shop, order=order, tracking_number="1Z")
    await bridge.publish(order_shipped, sender=shop, order="#1", tracking_number="1Z")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

    with capture(order_shipped) as shipped:
        assert_type(shipped.sends, list[Send[str]])
        sent = shipped.assert_sent(tracking_number="1Z")
        assert_type(sent, Send[str])
        assert_type(await shipped.wait_for(), Send[str])
    waited = await wait_for_send(order_cancelled, lambda send: send.results == [])
    assert_type(waited, Send[None])
    assert_type(waited.results, list[tuple[Callable[..., Any], Exception | None]] | None)
    await wait_for_send(order_cancelled, lambda send: send.results[0][1] is None)  # type: ignore[index]  # pyright: ignore[reportOptionalSubscript]


async def streams(shop: Shop) -> None:
    async with sends(order_shipped, lambda send: send.results is not None) as stream:
        async for sent in stream:
            assert_type(sent, Send[str])
            assert_type(sent.results, list[tuple[Callable[..., Any], str | Exception]] | None)
    async with sends(order_cancelled, sender=shop, max_buffer=5) as cancellations:
        assert_type(await anext(cancellations), Send[None])
    async with sends(order_cancelled, lambda send: send.results[0][1] is None):  # type: ignore[index]  # pyright: ignore[reportOptionalSubscript]
        pass
    # The stream of an untyped signal, or one not parametrized, takes any result.
    untyped_stream: SendStream = cancellations
    async for untyped in untyped_stream:
        assert_type(untyped, Send[Any])
