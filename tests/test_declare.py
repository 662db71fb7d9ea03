"""Signal.declare: one declaration drives the type checker and the runtime checks."""

from __future__ import annotations

from typing import Any, NotRequired, Required

import pytest
from typing_extensions import TypedDict, Unpack

from asyncsignals import BackgroundDispatcher, Signal

pytestmark = pytest.mark.anyio


class Order:
    pass


class Shipment(TypedDict):
    order: Order
    tracking_number: str
    carrier: NotRequired[str]


class ReservedKeys(TypedDict):
    signal: str


class PartlyRequired(TypedDict, total=False):
    order: Required[Order]
    note: str


class AllOptional(TypedDict, total=False):
    page: int
    query: str


# Its annotation names a class that does not exist: NotRequired cannot be read from it.
class Unresolvable(TypedDict):
    order: Nowhere  # type: ignore[name-defined]  # noqa: F821


@Signal.declare
def order_shipped(*, sender: object, order: Order, tracking_number: str) -> str:
    """An order left the warehouse."""
    raise NotImplementedError


@Signal.declare
def order_cancelled(*, sender: object, order: Order, reason: str = "") -> None:
    """An order was cancelled; the reason may be left out."""
    raise NotImplementedError


def test_declared_signal_is_named_after_its_prototype() -> None:
    """The prototype's name is the signal's name, and its payload names are provided."""
    assert order_shipped.name == "order_shipped"
    assert repr(order_shipped) == "<Signal order_shipped>"
    assert order_shipped.providing_args == frozenset({"order", "tracking_number"})


def test_declared_signal_can_be_sequential() -> None:
    """Signal.declare passes concurrent= through."""

    def hook(*, sender: object) -> None:
        raise NotImplementedError

    assert Signal.declare(hook, concurrent=False).concurrent is False


async def test_send_checks_the_declared_payload() -> None:
    """A send missing a required name, or with an unknown one, fails before any receiver runs."""
    calls: list[str] = []

    def receiver(sender: object, **kwargs: Any) -> str:
        calls.append("ran")
        return "ran"

    order_shipped.connect(receiver)
    try:
        with pytest.raises(TypeError, match=r"missing argument\(s\) \['tracking_number'\]"):
            await order_shipped.send(sender=None, order=Order())  # type: ignore[call-arg]
        with pytest.raises(TypeError, match=r"unknown argument\(s\) \['extra'\]"):
            await order_shipped.send(  # type: ignore[call-arg]
                sender=None, order=Order(), tracking_number="1", extra=1
            )
        assert calls == []
        results = await order_shipped.send(sender=None, order=Order(), tracking_number="1")
        assert results == [(receiver, "ran")]
    finally:
        order_shipped.disconnect(receiver)


async def test_optional_payload_names_may_be_left_out() -> None:
    """A prototype parameter with a default is a payload name a send may omit."""
    received: list[dict[str, Any]] = []

    def receiver(sender: object, **kwargs: Any) -> None:
        received.append(kwargs)

    order = Order()
    order_cancelled.connect(receiver)
    try:
        await order_cancelled.send(sender=None, order=order)
        await order_cancelled.send(sender=None, order=order, reason="late")
        with pytest.raises(TypeError, match=r"missing argument\(s\) \['order'\]"):
            await order_cancelled.send(sender=None, reason="late")  # type: ignore[call-arg]
    finally:
        order_cancelled.disconnect(receiver)
    assert received == [
        {"signal": order_cancelled, "order": order},
        {"signal": order_cancelled, "order": order, "reason": "late"},
    ]


async def test_a_payload_of_optional_names_only_may_be_left_out_whole() -> None:
    """Every payload name optional: a send may give some of them, or none."""

    @Signal.declare
    def page_viewed(*, sender: object, page: int = 1, query: str = "") -> None:
        raise NotImplementedError

    received: list[dict[str, Any]] = []

    def receiver(sender: object, page: int = 1, query: str = "") -> None:
        received.append({"page": page, "query": query})

    @Signal.declare
    def filtered(*, sender: object, **payload: Unpack[AllOptional]) -> None:
        raise NotImplementedError

    page_viewed.connect(receiver)
    await page_viewed.send(sender=None)
    await page_viewed.send_robust(sender=None, page=2)
    page_viewed.send_sync(sender=None, query="tea")
    async with BackgroundDispatcher() as dispatcher:
        await dispatcher.send_wait(page_viewed, sender=None)
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['pages'\]"):
        await page_viewed.send(sender=None, pages=2)  # type: ignore[call-arg]
    assert received == [
        {"page": 1, "query": ""},
        {"page": 2, "query": ""},
        {"page": 1, "query": "tea"},
        {"page": 1, "query": ""},
    ]
    # A TypedDict payload whose keys are all optional.
    assert await filtered.send(sender=None) == []


def test_connect_refuses_a_receiver_that_needs_an_optional_name() -> None:
    """A receiver requiring a name that a send may leave out is refused at connect."""

    def needs_reason(*, sender: object, order: Order, reason: str) -> None:
        pass

    with pytest.raises(TypeError, match=r"requires 'reason', which signal order_cancelled"):
        order_cancelled.connect(needs_reason)  # type: ignore[arg-type]


def test_connect_refuses_a_receiver_that_cannot_take_the_payload() -> None:
    """The runtime refuses at connect what the type checker refuses statically."""

    def misses_tracking_number(*, sender: object, order: Order) -> str:
        return "?"

    with pytest.raises(TypeError, match="cannot accept argument 'tracking_number'"):
        order_shipped.connect(misses_tracking_number)  # type: ignore[arg-type]


async def test_open_prototype_leaves_the_payload_unchecked() -> None:
    """A prototype with **kwargs declares an open payload: any names may be sent."""

    @Signal.declare
    def audit_event(*, sender: object, **details: Any) -> dict[str, Any]:
        raise NotImplementedError

    assert audit_event.providing_args is None
    audit_event.connect(lambda **kwargs: kwargs, weak=False)
    results = await audit_event.send(sender=None, user="ada", action="login")
    assert results[0][1] == {
        "sender": None,
        "signal": audit_event,
        "user": "ada",
        "action": "login",
    }


@pytest.mark.parametrize(
    ("prototype_source", "message"),
    [
        ("def p(*, order): ...", "needs a 'sender' parameter"),
        ("def p(sender, /, *, order): ...", "cannot have the positional-only parameter 'sender'"),
        ("def p(*args, sender): ...", r"cannot have \*args"),
        ("def p(*, sender, signal): ...", "cannot have a 'signal' parameter"),
        ("def p(sender, order): ...", "payload parameter 'order' must be keyword-only"),
        ("def p(order, *, sender): ...", "payload parameter 'order' must be keyword-only"),
        ("async def p(*, sender, order): ...", "cannot be 'async def'"),
    ],
)
def test_bad_prototypes_are_refused(prototype_source: str, message: str) -> None:
    """A prototype that receivers could not be called by is a clear TypeError."""
    namespace: dict[str, Any] = {}
    exec(prototype_source, namespace)
    with pytest.raises(TypeError, match=message):
        Signal.declare(namespace["p"])


@pytest.mark.parametrize("method", ["send_sync", "send_robust_sync"])
def test_sender_by_position_or_by_keyword(method: str) -> None:
    """Every send takes the sender as its one positional argument or as sender=."""
    signal = Signal()
    signal.connect(lambda sender, **kwargs: sender, weak=False)
    send = getattr(signal, method)
    assert [value for _, value in send("by position")] == ["by position"]
    assert [value for _, value in send(sender="by keyword")] == ["by keyword"]
    with pytest.raises(TypeError, match=rf"{method}\(\) missing the sender"):
        send()
    with pytest.raises(TypeError, match=r"got 2 positional argument\(s\)$"):
        send("one", "two")
    with pytest.raises(TypeError, match=r"got 1 positional argument\(s\) and sender="):
        send("one", sender="two")


def test_declare_takes_the_options_of_signal() -> None:
    """Signal.declare(prototype, name=, timeout=, max_concurrency=, concurrent=) sets them."""

    def checkout_step(*, sender: object, total: int) -> None:
        raise NotImplementedError

    signal = Signal.declare(
        checkout_step, name="checkout", timeout=2.0, max_concurrency=3, concurrent=False
    )
    assert (signal.name, signal.timeout, signal.max_concurrency, signal.concurrent) == (
        "checkout",
        2.0,
        3,
        False,
    )
    assert signal.providing_args == frozenset({"total"})


async def test_declare_with_options_is_a_decorator_factory() -> None:
    """@Signal.declare(...) declares the signal it decorates, named after it by default."""

    @Signal.declare(timeout=2.0, concurrent=False)
    def checkout_step(*, sender: object, total: int) -> int:
        raise NotImplementedError

    def double(sender: object, total: int) -> int:
        return total * 2

    assert (checkout_step.name, checkout_step.timeout, checkout_step.concurrent) == (
        "checkout_step",
        2.0,
        False,
    )
    checkout_step.connect(double)
    assert await checkout_step.send(sender=None, total=21) == [(double, 42)]
    with pytest.raises(TypeError, match="missing argument"):
        await checkout_step.send(sender=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("options", "error"),
    [({"timeout": -1}, ValueError), ({"max_concurrency": True}, ValueError)],
)
def test_declare_checks_its_options_like_signal(
    options: dict[str, Any], error: type[Exception]
) -> None:
    """Bad options are refused as Signal(...) refuses them, before any signal exists."""

    def prototype(*, sender: object) -> None:
        raise NotImplementedError

    with pytest.raises(error):
        Signal.declare(prototype, **options)
    with pytest.raises(error):
        Signal.declare(**options)(prototype)


def test_sender_may_be_an_ordinary_parameter() -> None:
    """Only the payload must be keyword-only: an ordinary ``sender`` parameter is accepted."""

    def order_placed(sender: object, *, order: Order) -> None:
        raise NotImplementedError

    assert Signal.declare(order_placed).providing_args == frozenset({"order"})


async def test_unpacked_typeddict_payload_names_are_enforced() -> None:
    """A ``**payload: Unpack[TypedDict]`` prototype provides the TypedDict's keys, no others."""

    @Signal.declare
    def order_shipped(*, sender: object, **payload: Unpack[Shipment]) -> str:
        raise NotImplementedError

    def note(sender: object, **kwargs: Any) -> str:
        return ",".join(sorted(kwargs))

    assert order_shipped.providing_args == frozenset({"order", "tracking_number", "carrier"})
    order_shipped.connect(note)
    try:
        results = await order_shipped.send(sender=None, order=Order(), tracking_number="1Z")
        assert results == [(note, "order,signal,tracking_number")]
        await order_shipped.send(sender=None, order=Order(), tracking_number="1Z", carrier="ups")
        with pytest.raises(TypeError, match=r"missing argument\(s\) \['tracking_number'\]"):
            await order_shipped.send(sender=None, order=Order())  # type: ignore[call-arg]
        with pytest.raises(TypeError, match=r"unknown argument\(s\) \['extra'\]"):
            await order_shipped.send(  # type: ignore[call-arg]
                sender=None, order=Order(), tracking_number="1Z", extra=1
            )
    finally:
        order_shipped.disconnect(note)


def test_unpacked_typeddict_in_a_postponed_annotation_is_read() -> None:
    """``**payload: "Unpack[Shipment]"`` (postponed annotations) is resolved like a live one."""
    namespace: dict[str, Any] = {"Unpack": Unpack, "Shipment": Shipment}
    exec("def p(*, sender: 'Local', **payload: 'Unpack[Shipment]') -> None: ...", namespace)
    assert Signal.declare(namespace["p"]).providing_args == frozenset(
        {"order", "tracking_number", "carrier"}
    )


def test_unresolvable_unpack_annotation_is_refused() -> None:
    """An ``Unpack`` annotation naming a TypedDict that cannot be found is a clear TypeError."""
    namespace: dict[str, Any] = {"Unpack": Unpack}
    exec("def p(*, sender, **payload: 'Unpack[Missing]') -> None: ...", namespace)
    with pytest.raises(TypeError, match=r"cannot resolve the annotation of \*\*payload"):
        Signal.declare(namespace["p"])


def test_unpacked_typeddict_cannot_use_reserved_names() -> None:
    """A TypedDict payload with a ``signal`` or ``sender`` key is refused."""

    def p(*, sender: object, **payload: Unpack[ReservedKeys]) -> None:
        raise NotImplementedError

    with pytest.raises(TypeError, match=r"\*\*payload cannot have the key\(s\) \['signal'\]"):
        Signal.declare(p)


def test_open_payload_annotation_other_than_unpack() -> None:
    """``**kwargs`` annotated with a plain type, or a postponed one, leaves the payload open."""

    def live(*, sender: object, **details: int) -> None:
        raise NotImplementedError

    namespace: dict[str, Any] = {}
    exec("def postponed(*, sender, **details: 'int') -> None: ...", namespace)
    assert Signal.declare(live).providing_args is None
    assert Signal.declare(namespace["postponed"]).providing_args is None


@pytest.mark.parametrize(
    ("payload", "required"),
    [(PartlyRequired, {"order"}), (Unresolvable, {"order"})],
    ids=["total-false-with-required", "unresolvable-annotations"],
)
def test_unpacked_typeddict_required_keys(payload: Any, required: set[str]) -> None:
    """``Required`` in a ``total=False`` TypedDict is required; so is a key of unknown type."""
    namespace: dict[str, Any] = {"Unpack": Unpack, "Payload": payload}
    exec("def p(*, sender, **payload: Unpack[Payload]) -> None: ...", namespace)
    signal = Signal.declare(namespace["p"])
    with pytest.raises(TypeError) as missing:
        signal.send_sync(sender=None)
    assert f"missing argument(s) {sorted(required)}" in str(missing.value)
