"""Connecting receivers: validation, weak and strong references, identity of a connection."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from asyncsignals import Signal
from asyncsignals._signal import connections_of

pytestmark = pytest.mark.anyio


def handler(sender: object, **kwargs: Any) -> str:
    return "handled"


class Unweakrefable:
    """A callable object that cannot be weakly referenced."""

    __slots__ = ()

    def __call__(self, sender: object, **kwargs: Any) -> object:
        return sender


def test_connect_returns_the_receiver() -> None:
    """connect() returns the receiver it was given, unchanged."""
    signal = Signal()
    assert signal.connect(handler) is handler


def test_non_callable_receiver_is_a_type_error() -> None:
    """Connecting something that is not callable raises TypeError and connects nothing."""
    signal = Signal()
    with pytest.raises(TypeError, match="callable"):
        signal.connect(42)  # type: ignore[arg-type]
    assert not signal.has_listeners()


def test_unweakrefable_receiver_error_says_weak_false() -> None:
    """A receiver that cannot be weakly referenced is refused with a hint to pass weak=False."""
    signal = Signal()
    with pytest.raises(TypeError, match="weak=False"):
        signal.connect(Unweakrefable())
    assert not signal.has_listeners()


def test_bound_method_of_unweakrefable_object_error_says_weak_false() -> None:
    """A bound method whose object cannot be weakly referenced also asks for weak=False."""

    class Slotted:
        __slots__ = ()

        def on_event(self, sender: object, **kwargs: Any) -> None:
            pass

    signal = Signal()
    with pytest.raises(TypeError, match="weak=False"):
        signal.connect(Slotted().on_event)


async def test_unweakrefable_receiver_connects_with_weak_false() -> None:
    """With weak=False an unweakrefable receiver connects and is called."""
    signal = Signal()
    unweakrefable = Unweakrefable()
    signal.connect(unweakrefable, weak=False)
    assert await signal.send("me") == [(unweakrefable, "me")]


async def test_same_receiver_connects_once() -> None:
    """Connecting the same receiver twice for the same sender calls it once."""
    signal = Signal()
    signal.connect(handler)
    signal.connect(handler)
    signal.connect(handler, weak=False)
    assert await signal.send(None) == [(handler, "handled")]


async def test_same_bound_method_connects_once() -> None:
    """Two accesses of the same bound method are the same receiver."""

    class Listener:
        def on_event(self, sender: object, **kwargs: Any) -> int:
            return 1

    listener = Listener()
    signal = Signal()
    signal.connect(listener.on_event)
    signal.connect(listener.on_event)
    assert len(await signal.send(None)) == 1


async def test_same_dispatch_uid_keeps_the_first_connection() -> None:
    """A second connect with the same dispatch_uid is ignored; the first receiver stays."""

    def first(sender: object, **kwargs: Any) -> str:
        return "first"

    def second(sender: object, **kwargs: Any) -> str:
        return "second"

    signal = Signal()
    signal.connect(first, dispatch_uid="uid")
    signal.connect(second, dispatch_uid="uid")
    assert await signal.send(None) == [(first, "first")]
    assert signal.receivers_for(None) == [first]


async def test_dispatch_uid_is_per_sender() -> None:
    """The same dispatch_uid for two different senders is two connections."""
    sender_a, sender_b = object(), object()
    signal = Signal()
    signal.connect(handler, sender=sender_a, dispatch_uid="uid")
    signal.connect(handler, sender=sender_b, dispatch_uid="uid")
    assert await signal.send(sender_a) == [(handler, "handled")]
    assert await signal.send(sender_b) == [(handler, "handled")]


async def test_same_receiver_with_different_dispatch_uids_is_two_connections() -> None:
    """dispatch_uid, not the receiver, identifies a connection made with one."""
    signal = Signal()
    signal.connect(handler, dispatch_uid="one")
    signal.connect(handler, dispatch_uid="two")
    assert len(await signal.send(None)) == 2


async def async_handler(sender: object, **kwargs: Any) -> None:
    pass


class AsyncCallable:
    async def __call__(self, sender: object, **kwargs: Any) -> None:
        pass

    async def method(self, sender: object, **kwargs: Any) -> None:
        pass


@pytest.mark.parametrize(
    "make_receiver",
    [
        pytest.param(lambda: async_handler, id="async-def"),
        pytest.param(lambda: AsyncCallable().method, id="bound-async-method"),
        pytest.param(lambda: functools.partial(async_handler), id="partial"),
        pytest.param(AsyncCallable, id="async-call"),
    ],
)
def test_to_thread_on_async_receiver_is_a_type_error(make_receiver: Any) -> None:
    """to_thread=True is only for sync receivers: an async one is a TypeError."""
    signal = Signal()
    with pytest.raises(TypeError, match="to_thread"):
        signal.connect(make_receiver(), weak=False, to_thread=True)
    assert not signal.has_listeners()


def test_receiver_without_sender_parameter_is_refused() -> None:
    """A receiver that cannot take sender= is refused at connect, even without providing_args."""

    def no_sender(order: object) -> None:
        pass

    signal = Signal(name="plain")
    with pytest.raises(TypeError, match=r"cannot accept argument 'sender'.*plain"):
        signal.connect(no_sender)


def test_receiver_missing_a_provided_argument_is_refused() -> None:
    """With providing_args, a receiver without that parameter or **kwargs is refused."""

    def notify(sender: object, order: object) -> None:
        pass

    order_shipped = Signal(providing_args=["order", "tracking_number"], name="order_shipped")
    with pytest.raises(
        TypeError,
        match="notify\\(\\) cannot accept argument 'tracking_number' provided by signal "
        "order_shipped",
    ):
        order_shipped.connect(notify)
    assert not order_shipped.has_listeners()


def test_receiver_requiring_an_argument_the_signal_does_not_provide_is_refused() -> None:
    """With providing_args, a receiver that requires an unprovided argument is refused."""

    def needs_customer(sender: object, customer: object, **kwargs: Any) -> None:
        pass

    signal = Signal(providing_args=["order"], name="order_placed")
    with pytest.raises(TypeError, match=r"requires 'customer'.*order_placed"):
        signal.connect(needs_customer)


def test_receiver_with_optional_unprovided_argument_is_accepted() -> None:
    """An unprovided argument with a default does not stop a receiver from connecting."""

    def optional_customer(sender: object, order: object, customer: object = None) -> None:
        pass

    signal = Signal(providing_args=["order"])
    signal.connect(optional_customer)
    assert signal.receivers_for(None) == [optional_customer]


def test_receiver_taking_exactly_the_provided_arguments_is_accepted() -> None:
    """The seed style `async def f(*, sender, order, tracking_number)` connects."""

    async def exact(*, sender: object, order: object, tracking_number: str) -> None:
        pass

    signal = Signal(providing_args=["order", "tracking_number"])
    signal.connect(exact)
    assert signal.has_listeners()


def test_required_positional_only_receiver_is_refused() -> None:
    """A required positional-only parameter can never be filled by keywords: a TypeError."""

    def positional(sender: object, /, **kwargs: Any) -> None:
        pass

    signal = Signal()
    with pytest.raises(TypeError, match="positional-only parameter 'sender'"):
        signal.connect(positional)


async def test_positional_only_parameter_with_default_is_accepted() -> None:
    """A positional-only parameter with a default is left at its default."""

    def positional(flag: bool = True, /, **kwargs: Any) -> bool:
        return flag

    signal = Signal()
    signal.connect(positional)
    assert await signal.send(None) == [(positional, True)]


async def test_var_positional_parameter_is_ignored() -> None:
    """A receiver with *args still connects and gets only keywords."""

    def variadic(*args: object, sender: object) -> tuple[object, ...]:
        return args

    signal = Signal()
    signal.connect(variadic)
    assert await signal.send(None) == [(variadic, ())]


async def test_signal_argument_passed_only_when_accepted() -> None:
    """signal= goes to receivers with a signal parameter or **kwargs, and to no other."""
    seen: dict[str, dict[str, object]] = {}

    def without(sender: object, value: int) -> None:
        seen["without"] = {"sender": sender, "value": value}

    def named(sender: object, value: int, signal: Signal) -> None:
        seen["named"] = {"sender": sender, "value": value, "signal": signal}

    def catch_all(**kwargs: Any) -> None:
        seen["catch_all"] = kwargs

    async def async_named(*, sender: object, signal: Signal, value: int) -> None:
        seen["async_named"] = {"sender": sender, "value": value, "signal": signal}

    signal = Signal()
    for each in (without, named, catch_all, async_named):
        signal.connect(each)
    await signal.send("me", value=1)
    assert seen == {
        "without": {"sender": "me", "value": 1},
        "named": {"sender": "me", "value": 1, "signal": signal},
        "catch_all": {"sender": "me", "value": 1, "signal": signal},
        "async_named": {"sender": "me", "value": 1, "signal": signal},
    }


async def test_receiver_with_unreadable_signature_gets_no_signal_argument() -> None:
    """A receiver whose signature cannot be read connects and is called without signal=."""
    signal = Signal(providing_args=["value"])
    signal.connect(dict)
    assert await signal.send("me", value=1) == [(dict, {"sender": "me", "value": 1})]


def test_decision_is_made_at_connect_time() -> None:
    """A receiver that cannot take the payload is refused by connect, not by a later send."""

    def narrow(sender: object) -> None:
        pass

    signal = Signal(providing_args=["value"])
    with pytest.raises(TypeError):
        signal.connect(narrow)


def test_failed_connect_leaves_no_sender_behind() -> None:
    """A connect refused for an unhashable dispatch_uid keeps nothing of the sender."""
    signal = Signal()
    sender = object()
    with pytest.raises(TypeError, match="dispatch_uid"):
        signal.connect(handler, sender=sender, dispatch_uid=["not", "hashable"])  # type: ignore[arg-type]
    assert not signal.has_listeners(sender)
    assert connections_of(signal).save() == ({}, {})


def generator_receiver(sender: object, **kwargs: Any) -> Any:
    yield sender


async def async_generator_receiver(sender: object, **kwargs: Any) -> Any:
    yield sender


class GeneratorMethods:
    def generates(self, sender: object, **kwargs: Any) -> Any:
        yield sender


@pytest.mark.parametrize(
    "make_receiver",
    [
        lambda: generator_receiver,
        lambda: async_generator_receiver,
        lambda: functools.partial(generator_receiver),
        lambda: GeneratorMethods().generates,
    ],
    ids=["generator", "async generator", "partial", "method"],
)
def test_generator_receivers_are_refused(make_receiver: Any) -> None:
    """A generator function would never run its body: connect refuses it and says why."""
    receiver = make_receiver()
    with pytest.raises(TypeError, match="generator"):
        Signal().connect(receiver, weak=False)


def test_receiver_decorator_with_no_signal_is_refused() -> None:
    """@receiver([]) would connect nothing: it is refused."""
    from asyncsignals import receiver

    with pytest.raises(TypeError, match="at least one signal"):
        receiver([])


class GeneratorCall:
    def __call__(self, sender: object, **kwargs: Any) -> Any:
        yield sender


class AsyncGeneratorCall:
    async def __call__(self, sender: object, **kwargs: Any) -> Any:
        yield sender


@pytest.mark.parametrize("receiver", [GeneratorCall(), AsyncGeneratorCall()])
def test_objects_whose_call_is_a_generator_are_refused(receiver: Any) -> None:
    """An object whose __call__ is a generator function would never run its body: refused."""
    with pytest.raises(TypeError, match="generator"):
        Signal().connect(receiver, weak=False)


def test_disconnect_with_an_unhashable_dispatch_uid_says_so() -> None:
    """disconnect(dispatch_uid=<unhashable>) raises the same clear TypeError as connect."""
    signal = Signal()
    signal.connect(handler, dispatch_uid="kept")
    with pytest.raises(TypeError, match="dispatch_uid must be hashable"):
        signal.disconnect(dispatch_uid=["not", "hashable"])  # type: ignore[arg-type]
    assert signal.has_listeners()
