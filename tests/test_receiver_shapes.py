"""Which receivers connect is decided by their signatures, however they are made."""

from __future__ import annotations

import functools
import gc
import types
import weakref
from collections.abc import Callable, Generator
from typing import Any

import anyio
import pytest

from asyncsignals import Signal, _receivers

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


# -- the same code, another receiver ----------------------------------------
# A signature is read once per code object (every function one `def` makes
# shares it); what else a shape depends on must still be told apart.


def make_with_defaults() -> Any:
    """A new function from the same `def` each call: all share one code object."""

    def receiver(sender: object, order: object = None, *, extra: object = None) -> str:
        return "ok"

    return receiver


def drop_positional_defaults(function: Any) -> None:
    function.__defaults__ = None


def drop_keyword_defaults(function: Any) -> None:
    function.__kwdefaults__ = None


def empty_keyword_defaults(function: Any) -> None:
    function.__kwdefaults__ = {}


@pytest.mark.parametrize("changed_first", [False, True])
@pytest.mark.parametrize(
    ("change", "now_required"),
    [
        (drop_positional_defaults, "order"),
        (drop_keyword_defaults, "extra"),
        (empty_keyword_defaults, "extra"),
    ],
)
def test_functions_sharing_code_but_not_defaults_are_checked_apart(
    change: Callable[[Any], None], now_required: str, changed_first: bool
) -> None:
    """A function's defaults count, not just its code: either one connects as it should."""
    signal = Signal(providing_args=[], name="ping")
    unchanged, changed = make_with_defaults(), make_with_defaults()
    assert unchanged.__code__ is changed.__code__
    change(changed)

    def connect_changed() -> None:
        with pytest.raises(TypeError, match=f"requires '{now_required}'"):
            signal.connect(changed)

    if changed_first:
        connect_changed()
    signal.connect(unchanged)
    connect_changed()
    assert signal.receivers_for(None) == [unchanged]


def test_partial_of_a_function_is_checked_apart_from_it() -> None:
    """A partial that fills a required argument connects; the function alone does not."""
    signal = Signal(providing_args=[], name="ping")

    def needs_order(sender: object, order: object) -> str:
        return "ok"

    filled = functools.partial(needs_order, order=1)
    signal.connect(filled, weak=False)
    with pytest.raises(TypeError, match="requires 'order'"):
        signal.connect(needs_order)
    signal.connect(functools.partial(needs_order, order=2), weak=False)
    assert len(signal.receivers_for(None)) == 2


@pytest.mark.parametrize("bound_first", [False, True])
def test_method_bound_and_not_are_checked_apart(bound_first: bool) -> None:
    """A bound method's object fills its first parameter; the bare function must be given it."""

    class Listener:
        def on_ping(self, sender: object) -> str:
            return "ok"

    signal = Signal(providing_args=[], name="ping")
    listener = Listener()

    def connect_bare() -> None:
        with pytest.raises(TypeError, match="requires 'self'"):
            signal.connect(Listener.on_ping)

    if not bound_first:
        connect_bare()
    signal.connect(listener.on_ping)
    connect_bare()
    assert signal.receivers_for(None) == [listener.on_ping]


def test_positional_only_error_names_each_receiver() -> None:
    """The refusal names the receiver being connected, not another with the same code."""
    namespace: dict[str, Any] = {}
    source = "def make():\n    def receiver(flag=0, /, *, sender): return 'ok'\n    return receiver"
    exec(source, namespace)
    accepted, refused = namespace["make"](), namespace["make"]()
    refused.__defaults__ = None
    refused.__qualname__ = "refused"
    signal = Signal()
    signal.connect(accepted)
    for _ in range(2):
        with pytest.raises(TypeError, match=r"receiver refused\(\) has a positional-only"):
            signal.connect(refused)


class Payload:
    """Something a receiver holds on to, to tell when it is collected."""


@pytest.mark.parametrize("weak", [True, False])
@pytest.mark.parametrize("form", ["function", "bound method"])
def test_connecting_keeps_nothing_alive_after_disconnect(form: str, weak: bool) -> None:
    """Once disconnected, a receiver and what it holds are collected: nothing caches them."""

    class Listener:
        def __init__(self, payload: Payload) -> None:
            self.payload = payload

        def on_ping(self, sender: object) -> object:
            return self.payload

    def make(payload: Payload) -> Callable[..., Any]:
        if form == "bound method":
            return Listener(payload).on_ping

        def on_ping(sender: object) -> object:
            return payload

        return on_ping

    signal = Signal()
    payloads = [Payload() for _ in range(3)]
    collected = [weakref.ref(payload) for payload in payloads]
    for payload in payloads:
        receiver = make(payload)
        signal.connect(receiver, weak=weak)
        signal.disconnect(receiver)
    del payloads, payload, receiver
    gc.collect()
    assert [ref() for ref in collected] == [None, None, None]


def test_shapes_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Code objects of functions that are gone cannot pile up in the shapes cache."""
    shapes: dict[object, object] = {}
    monkeypatch.setattr(_receivers, "_CODE_SHAPES", shapes)
    monkeypatch.setattr(_receivers, "_CODE_SHAPES_LIMIT", 3)
    signal = Signal()
    for _ in range(10):
        receiver = build("sender, **kwargs", "function")
        signal.connect(receiver)
        assert 1 <= len(shapes) <= 3
        assert signal.send_sync(None) == [(receiver, "ok")]
        signal.disconnect(receiver)


class _IteratorAwaitable:
    """An awaitable whose __await__ returns a plain iterator, not a generator."""

    def __await__(self) -> Any:
        return iter(())


@pytest.mark.anyio
@pytest.mark.parametrize("others", [0, 1])
@pytest.mark.parametrize("concurrent", [True, False])
async def test_awaitable_with_a_plain_iterator_is_awaited(others: int, concurrent: bool) -> None:
    """A sync receiver's awaitable whose __await__ returns a plain iterator is awaited."""

    def returns_awaitable(sender: object, **kwargs: Any) -> object:
        return _IteratorAwaitable()

    async def other(sender: object, **kwargs: Any) -> str:
        return "other"

    signal = Signal(concurrent=concurrent)
    signal.connect(returns_awaitable)
    if others:
        signal.connect(other)
    results = await signal.send(None)
    assert [value for _, value in results] == [None, "other"][: 1 + others]


@types.coroutine
def _generator_based() -> Generator[Any, Any, str]:
    yield from ()
    return "generator-based"


@pytest.mark.anyio
@pytest.mark.parametrize(("concurrent", "others"), [(True, 0), (False, 0), (True, 1), (False, 1)])
@pytest.mark.parametrize("receiver_timeout", [None, 5.0])
async def test_a_generator_based_coroutine_a_sync_receiver_returns_is_awaited(
    concurrent: bool, others: int, receiver_timeout: float | None
) -> None:
    """An awaitable made by a ``types.coroutine`` generator is awaited on every path."""

    def returns_generator_based(sender: object, **kwargs: Any) -> object:
        return _generator_based()

    async def other(sender: object, **kwargs: Any) -> str:
        return "other"

    signal = Signal(concurrent=concurrent, timeout=receiver_timeout)
    signal.connect(returns_generator_based)
    for _ in range(others):
        signal.connect(other)
    with anyio.fail_after(5):
        results = await signal.send(None)
    assert [value for _, value in results] == ["generator-based"] + ["other"] * others
