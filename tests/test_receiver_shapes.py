"""Which receivers connect is decided by their signatures, however they are made."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

from asyncsignals import Signal

# Signatures, each with whether a signal providing 'order' accepts it.
# Written as source so that each can be built as a function, a bound method,
# a callable object and a wrapped function.
SIGNATURES = {
    "sender, **kwargs": True,
    "sender, order": True,
    "*args, sender, order": True,
    "sender, order=None, extra=1": True,
    "sender, /, order": False,  # sender is positional-only: never passed by keyword
    "flag=0, /, *, sender, order": True,  # a positional-only parameter with a default
    "*, sender, order, extra": False,  # requires 'extra', never provided
    "*, sender, order, extra=None": True,
    "sender": False,  # cannot take 'order'
    "order, **kwargs": True,
    "*args": False,  # cannot take anything by keyword
}


def build(signature: str, form: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {}
    if form == "function":
        exec(f"def receiver({signature}): return 'ok'", namespace)
        function: Callable[..., Any] = namespace["receiver"]
        return function
    exec(
        f"class Receiver:\n"
        f"    def method(self, {signature}): return 'ok'\n"
        f"    def __call__(self, {signature}): return 'ok'\n",
        namespace,
    )
    instance = namespace["Receiver"]()
    if form == "bound method":
        method: Callable[..., Any] = instance.method
        return method
    if form == "callable object":
        obj: Callable[..., Any] = instance
        return obj
    exec(f"def inner({signature}): return 'ok'", namespace)
    inner = namespace["inner"]
    if form == "partial":
        return functools.partial(inner)

    @functools.wraps(inner)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return inner(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize(
    "form", ["function", "bound method", "callable object", "partial", "wrapped function"]
)
@pytest.mark.parametrize(("signature", "accepted"), list(SIGNATURES.items()))
def test_connect_accepts_exactly_the_receivers_that_can_take_the_payload(
    signature: str, accepted: bool, form: str
) -> None:
    """connect checks a receiver's signature the same way whatever kind of callable it is."""
    signal = Signal(providing_args=["order"], name="order_shipped")
    receiver = build(signature, form)
    if accepted:
        signal.connect(receiver, weak=False)
        assert signal.send_sync(None, order=1) == [(receiver, "ok")]
    else:
        with pytest.raises(TypeError, match=r"receiver .*\(\) "):
            signal.connect(receiver, weak=False)
        assert not signal.has_listeners()


def test_signature_that_cannot_be_read_is_not_checked() -> None:
    """A callable without a readable signature connects and gets no signal= argument."""
    signal = Signal(providing_args=["order"])
    received: list[dict[str, Any]] = []

    class Opaque:
        __signature__ = "not a signature"  # inspect.signature raises TypeError on it

        def __call__(self, **kwargs: Any) -> None:
            received.append(kwargs)

    receiver = Opaque()
    signal.connect(receiver, weak=False)
    signal.send_sync("sender", order=1)
    assert received == [{"sender": "sender", "order": 1}]
