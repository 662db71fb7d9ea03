"""What a receiver is, decided once at connect time.

Everything here runs at ``connect``, never on the send path: how a receiver is
called (does it take ``signal=``?), whether it is async, how it is held (weakly
or strongly) and the key that identifies it for ``disconnect``.
"""

from __future__ import annotations

import asyncio.coroutines
import functools
import inspect
import types
import weakref
from collections.abc import Callable, Collection, Hashable
from typing import Any

# asyncio's pre-3.12 marker (set by asgiref's ``markcoroutinefunction`` and by
# ``asyncio.coroutine``-era helpers); ``inspect.iscoroutinefunction`` only knows
# the 3.12+ marker.
_ASYNCIO_MARKER = getattr(asyncio.coroutines, "_is_coroutine", None)


def _is_marked_async(obj: object) -> bool:
    if inspect.iscoroutinefunction(obj):
        return True
    return _ASYNCIO_MARKER is not None and getattr(obj, "_is_coroutine", None) is _ASYNCIO_MARKER


def is_async_callable(obj: object) -> bool:
    """True when calling ``obj`` returns a coroutine, as far as can be told statically.

    Covers ``async def`` functions and bound methods, ``functools.partial``
    of them (nested too), objects whose ``__call__`` is ``async def``, and
    callables marked with ``inspect.markcoroutinefunction`` (or asgiref's).
    """
    while isinstance(obj, functools.partial):
        obj = obj.func
    if _is_marked_async(obj):
        return True
    if isinstance(obj, (types.FunctionType, types.MethodType, type)):
        return False
    # Only ever asked of callables (connect checks first), so __call__ exists.
    return _is_marked_async(type(obj).__call__)


class ReceiverShape:
    """How a receiver accepts keyword arguments, from its signature."""

    __slots__ = ("accepts_any", "keywords", "required")

    def __init__(
        self, accepts_any: bool, keywords: frozenset[str], required: frozenset[str]
    ) -> None:
        self.accepts_any = accepts_any
        self.keywords = keywords
        self.required = required

    def accepts(self, name: str) -> bool:
        return self.accepts_any or name in self.keywords


def inspect_receiver(receiver: Callable[..., Any]) -> ReceiverShape | None:
    """The receiver's keyword shape, or None when its signature cannot be read.

    Raises:
        TypeError: the receiver has a positional-only parameter without a
            default, which a keyword-only call can never fill.
    """
    try:
        signature = inspect.signature(receiver)
    except (TypeError, ValueError):
        return None
    accepts_any = False
    keywords: set[str] = set()
    required: set[str] = set()
    for parameter in signature.parameters.values():
        kind = parameter.kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            accepts_any = True
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        elif kind is inspect.Parameter.POSITIONAL_ONLY:
            if parameter.default is inspect.Parameter.empty:
                raise TypeError(
                    f"receiver {describe(receiver)} has a positional-only parameter "
                    f"{parameter.name!r}; receivers are called with keyword arguments only"
                )
        else:
            keywords.add(parameter.name)
            if parameter.default is inspect.Parameter.empty:
                required.add(parameter.name)
    return ReceiverShape(accepts_any, frozenset(keywords), frozenset(required))


def check_accepts(
    receiver: Callable[..., Any],
    shape: ReceiverShape | None,
    provided: Collection[str] | None,
    signal_name: str,
) -> None:
    """Raise TypeError when ``receiver`` cannot take what the signal sends it."""
    if shape is None:
        return
    if not shape.accepts("sender"):
        raise TypeError(
            f"receiver {describe(receiver)} cannot accept argument 'sender', which "
            f"signal {signal_name} always passes; add a 'sender' parameter or '**kwargs'"
        )
    if provided is None:
        return
    for name in provided:
        if not shape.accepts(name):
            raise TypeError(
                f"receiver {describe(receiver)} cannot accept argument {name!r} "
                f"provided by signal {signal_name}; add a {name!r} parameter or '**kwargs'"
            )
    missing = sorted(shape.required - {"sender", "signal"} - set(provided))
    if missing:
        names = ", ".join(repr(name) for name in missing)
        raise TypeError(
            f"receiver {describe(receiver)} requires {names}, which signal "
            f"{signal_name} does not provide (it provides {sorted(provided)})"
        )


def receiver_key(receiver: Callable[..., Any]) -> Hashable:
    """Identity of a receiver for duplicate detection and ``disconnect``.

    A bound method is identified by its object and function, since every
    attribute access creates a new method object.
    """
    if isinstance(receiver, types.MethodType):
        return (id(receiver.__self__), id(receiver.__func__))
    return id(receiver)


def reference(
    receiver: Callable[..., Any],
    on_collected: Callable[[Any], object],
) -> weakref.ref[Any]:
    """A weak reference to ``receiver``: ``WeakMethod`` for bound methods.

    Raises:
        TypeError: the receiver cannot be weakly referenced.
    """
    try:
        if isinstance(receiver, types.MethodType):
            return weakref.WeakMethod(receiver, on_collected)
        return weakref.ref(receiver, on_collected)
    except TypeError:
        raise TypeError(
            f"receiver {describe(receiver)} cannot be weakly referenced; connect it with weak=False"
        ) from None


def describe(receiver: object) -> str:
    """A receiver's qualified name, for errors, notes and logs."""
    if isinstance(receiver, functools.partial):
        return f"functools.partial({describe(receiver.func)})"
    target = receiver.__func__ if isinstance(receiver, types.MethodType) else receiver
    qualname = getattr(target, "__qualname__", None)
    if qualname is None:
        # A callable object: name its class.
        target = type(receiver)
        qualname = target.__qualname__
    module = getattr(target, "__module__", None)
    name = qualname if module in (None, "builtins") else f"{module}.{qualname}"
    return f"{name}()"
