"""The public surface: exports, reprs, the receiver decorator and constructor checks."""

from __future__ import annotations

import pydoc
import re
from typing import Any

import pytest
import typing_extensions

import asyncsignals
from asyncsignals import Signal, receiver

pytestmark = pytest.mark.anyio


def test_all_is_exactly_the_public_names_sorted() -> None:
    """asyncsignals.__all__ lists exactly the public names, sorted."""
    assert asyncsignals.__all__ == [
        "BackgroundDispatcher",
        "BackgroundSend",
        "DispatcherClosedError",
        "DispatcherFullError",
        "Instrument",
        "Receiver",
        "ReceiverDecorator",
        "Results",
        "SendEvent",
        "ShutdownReport",
        "Signal",
        "add_instrument",
        "receiver",
        "remove_instrument",
    ]
    assert asyncsignals.__all__ == sorted(asyncsignals.__all__)


def test_public_objects_show_the_public_module() -> None:
    """Every public object reports asyncsignals as its module (type aliases cannot)."""
    for name in asyncsignals.__all__:
        if isinstance(getattr(asyncsignals, name), typing_extensions.TypeAliasType):
            continue
        assert getattr(asyncsignals, name).__module__ == "asyncsignals"


def test_repr_includes_the_name() -> None:
    """A named signal's repr shows its name; an unnamed one its address."""
    assert repr(Signal(name="order_shipped")) == "<Signal order_shipped>"
    unnamed = Signal()
    assert repr(unnamed) == f"<Signal at {id(unnamed):#x}>"


def test_providing_args_is_exposed() -> None:
    """providing_args reads back as the names given, or None."""
    assert Signal(providing_args=["a", "b"]).providing_args == frozenset({"a", "b"})
    assert Signal().providing_args is None


def test_use_caching_is_accepted() -> None:
    """use_caching is accepted for Django compatibility."""
    signal = Signal(use_caching=True)
    assert not signal.has_listeners()


@pytest.mark.parametrize(
    ("providing_args", "message"),
    [
        ("order", "list of names"),
        (["order", "not valid"], "not a valid argument name"),
        ([1], "not a valid argument name"),
        (["order", "sender"], r"cannot include \['sender'\]"),
        (["signal"], r"cannot include \['signal'\]"),
    ],
)
def test_bad_providing_args_are_type_errors(providing_args: Any, message: str) -> None:
    """providing_args must be a collection of identifiers other than sender and signal."""
    with pytest.raises(TypeError, match=message):
        Signal(providing_args=providing_args)


async def test_receiver_decorator_connects_and_returns_function_unchanged() -> None:
    """@receiver(signal) connects the function and returns it as it was."""
    signal = Signal()

    def handler(sender: object, **kwargs: Any) -> str:
        return "handled"

    decorated = receiver(signal)(handler)
    assert decorated is handler
    assert await signal.send(None) == [(handler, "handled")]


async def test_receiver_decorator_with_a_list_connects_to_each() -> None:
    """@receiver([a, b]) connects to every signal in the list."""
    first, second = Signal(), Signal()

    @receiver([first, second])
    def handler(sender: object, **kwargs: Any) -> str:
        return "handled"

    assert await first.send(None) == [(handler, "handled")]
    assert await second.send(None) == [(handler, "handled")]


async def test_receiver_decorator_passes_connect_arguments() -> None:
    """Keyword arguments of @receiver reach connect (sender, dispatch_uid, to_thread)."""
    signal = Signal()
    sender = object()

    @receiver(signal, sender=sender, dispatch_uid="uid")
    def handler(sender: object, **kwargs: Any) -> str:
        return "handled"

    assert await signal.send(None) == []
    assert await signal.send(sender) == [(handler, "handled")]
    assert signal.disconnect(dispatch_uid="uid", sender=sender)


@pytest.mark.parametrize("bad", [["not a signal"], "text", [Signal(), object()]])
def test_receiver_decorator_rejects_non_signals(bad: Any) -> None:
    """@receiver with something that is not a Signal (or a list of them) is a TypeError."""
    with pytest.raises(TypeError, match="expects a Signal"):
        receiver(bad)


def test_receiver_decorator_rejects_non_iterable() -> None:
    """@receiver(42) is a TypeError."""
    with pytest.raises(TypeError):
        receiver(42)  # type: ignore[arg-type]


def test_receiver_decorator_propagates_connect_errors() -> None:
    """A receiver the signal refuses makes the decorator raise the same TypeError."""
    signal = Signal(providing_args=["order"])
    with pytest.raises(TypeError, match="cannot accept argument 'order'"):

        @receiver(signal)
        def narrow(sender: object) -> None:
            pass


async def test_an_empty_name_counts_as_none_everywhere() -> None:
    """Signal(name="") is named by its repr in repr, exception notes and connect errors."""
    signal = Signal(name="")
    assert repr(signal).startswith("<Signal at 0x")

    def fails(sender: object, **kwargs: Any) -> None:
        raise ValueError("boom")

    signal.connect(fails)
    with pytest.raises(ValueError, match="boom") as raised:
        await signal.send(None)
    assert raised.value.__notes__[-1].endswith(f"of signal {signal!r}")
    typed = Signal(name="", providing_args=["order"])
    with pytest.raises(TypeError, match=re.escape(repr(typed))):
        typed.connect(lambda sender: None, weak=False)


@pytest.mark.parametrize("attribute", ["name", "timeout", "max_concurrency", "concurrent"])
def test_public_attributes_have_docstrings(attribute: str) -> None:
    """help(Signal) documents each public attribute."""
    lines = pydoc.plain(pydoc.render_doc(Signal)).splitlines()
    position = lines.index(f" |  {attribute}")
    documented = lines[position + 1].removeprefix(" |  ").strip()
    assert len(documented.split()) > 5
