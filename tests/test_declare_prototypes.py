"""Signal.declare takes a function: what it does with methods, and refuses in any other callable."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import pytest

from asyncsignals import Signal


class Order:
    pass


class Payloads:
    """Declarations as a class's methods and as an object's __call__."""

    def order_shipped(self, *, sender: object, order: Order) -> str:
        raise NotImplementedError

    async def order_shipped_async(self, *, sender: object, order: Order) -> str:
        raise NotImplementedError

    def __call__(self, *, sender: object, order: Order) -> str:
        raise NotImplementedError


class AsyncPayload:
    async def __call__(self, *, sender: object, order: Order) -> str:
        raise NotImplementedError


def prefixed(prefix: str, *, sender: object, order: Order) -> str:
    raise NotImplementedError


async def prefixed_async(prefix: str, *, sender: object, order: Order) -> str:
    raise NotImplementedError


def test_a_bound_method_declares_a_signal_named_after_it() -> None:
    """A bound method is a function: the signal is named after it and its payload is read."""
    signal = Signal.declare(Payloads().order_shipped)
    assert signal.name == "order_shipped"
    assert signal.providing_args == frozenset({"order"})


def test_an_async_bound_method_is_refused_as_async_def_is() -> None:
    """A bound async method is refused with the message of an async def prototype."""
    with pytest.raises(TypeError, match=r"Payloads\.order_shipped_async\(\) cannot be 'async def'"):
        Signal.declare(Payloads().order_shipped_async)


def test_a_wrapped_function_is_a_function() -> None:
    """A function made by functools.wraps declares the signal of the function it wraps."""

    def order_shipped(*, sender: object, order: Order) -> str:
        raise NotImplementedError

    @functools.wraps(order_shipped)
    def wrapper(**kwargs: Any) -> str:
        raise NotImplementedError

    signal = Signal.declare(wrapper)
    assert signal.name == "order_shipped"
    assert signal.providing_args == frozenset({"order"})


@pytest.mark.parametrize(
    ("prototype", "what"),
    [
        pytest.param(Payloads(), f"a callable {__name__}.Payloads object", id="callable object"),
        pytest.param(AsyncPayload(), f"a callable {__name__}.AsyncPayload object", id="async"),
        pytest.param(
            functools.partial(prefixed, "note: "),
            f"a functools.partial of {__name__}.prefixed()",
            id="partial",
        ),
        pytest.param(
            functools.partial(prefixed_async, "note: "),
            f"a functools.partial of {__name__}.prefixed_async()",
            id="partial of async def",
        ),
        pytest.param(Payloads, f"the class {__name__}.Payloads", id="class"),
        pytest.param(print, "the built-in print()", id="built-in"),
    ],
)
def test_a_callable_that_is_not_a_function_is_refused(
    prototype: Callable[..., Any], what: str
) -> None:
    """Any other callable, which names no signal (an unnamed one would follow), is a TypeError."""
    message = (
        f"Signal.declare() takes a function, not {what}: the function's name is the signal's "
        "and its signature is the payload; declare the payload with 'def' "
        "(def prototype(*, sender: ..., ...) -> ...)"
    )
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        Signal.declare(prototype)
    with pytest.raises(TypeError, match=re.escape(what)):
        Signal.declare(name="named", timeout=1.0)(prototype)
