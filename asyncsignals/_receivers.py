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
from collections.abc import Awaitable, Callable, Collection, Hashable
from typing import Any, Protocol, overload

from typing_extensions import ParamSpec, TypeAliasType, TypeVar

from ._connections import ASYNC, INLINE, STRONG, THREAD, WEAK, WEAK_METHOD

# The payload receivers of a Signal[P, R] are called with, and what they return.
P = ParamSpec("P", default=...)
R = TypeVar("R", default=Any)

#: A receiver of a ``Signal[P, R]``: called with the payload, returns R or an awaitable of R.
Receiver = TypeAliasType("Receiver", Callable[P, Awaitable[R]] | Callable[P, R], type_params=(P, R))


class ReceiverDecorator(Protocol[P, R]):
    """What ``receiver(signal)`` returns: connects a function that fits ``signal``.

    The function must fit the signal's payload and result; it comes back
    with its own kind of result (a sync receiver returns ``R``, an async one
    an awaitable of ``R``) and parameters left open, so that it can be
    awaited, called as its own signature allows, and decorated again for a
    signal whose payload differs.
    """

    # Two variants rather than one union, so that the result keeps the
    # function's kind. mypy reports a function that fits neither against the
    # first, pyright against the last.
    @overload
    def __call__(self, function: Callable[P, R], /) -> Callable[..., R]: ...
    @overload
    def __call__(self, function: Callable[P, Awaitable[R]], /) -> Callable[..., Awaitable[R]]: ...


# asyncio's pre-3.12 marker (set by asgiref's ``markcoroutinefunction`` and by
# ``asyncio.coroutine``-era helpers); ``inspect.iscoroutinefunction`` only knows
# the 3.12+ marker.
_ASYNCIO_MARKER = getattr(asyncio.coroutines, "_is_coroutine", None)


def _is_marked_async(obj: object) -> bool:
    if type(obj) is types.FunctionType and obj.__code__.co_flags & inspect.CO_COROUTINE:
        return True  # the common case, without inspect's unwrapping
    return inspect.iscoroutinefunction(obj) or (
        _ASYNCIO_MARKER is not None and getattr(obj, "_is_coroutine", None) is _ASYNCIO_MARKER
    )


def is_async_callable(obj: object) -> bool:
    """True when calling ``obj`` returns a coroutine, as far as can be told statically.

    Covers ``async def`` functions and bound methods, ``functools.partial``
    of them (nested too), objects whose ``__call__`` is ``async def``, and
    callables marked with ``inspect.markcoroutinefunction`` (or asgiref's).
    """
    if type(obj) is types.FunctionType and obj.__code__.co_flags & inspect.CO_COROUTINE:
        return True  # the common case, before looking for anything to unwrap
    while isinstance(obj, functools.partial):
        obj = obj.func
    if isinstance(obj, types.MethodType):
        obj = obj.__func__
    if _is_marked_async(obj):
        return True
    if isinstance(obj, (types.FunctionType, type)):
        return False
    # Only ever asked of callables (connect checks first), so __call__ exists.
    return _is_marked_async(type(obj).__call__)


class ReceiverShape:
    """How a receiver accepts keyword arguments, from its signature.

    Shared by every receiver with the same signature (see ``_code_shape``),
    so it is never changed after it is made.
    """

    __slots__ = (
        "accepts_any",
        "keywords",
        "payload_required",
        "required",
        "takes_sender",
        "takes_signal",
    )

    def __init__(
        self, accepts_any: bool, keywords: frozenset[str], required: frozenset[str]
    ) -> None:
        self.accepts_any = accepts_any
        self.keywords = keywords
        self.required = required
        # What connect asks of every receiver, answered once per shape.
        self.takes_sender = self.accepts("sender")
        self.takes_signal = self.accepts("signal")
        # What a send's payload must provide: the signal passes these two itself.
        self.payload_required = required - {"sender", "signal"}

    def accepts(self, name: str) -> bool:
        return self.accepts_any or name in self.keywords


def inspect_receiver(receiver: Callable[..., Any]) -> ReceiverShape | None:
    """The receiver's keyword shape, or None when its signature cannot be read.

    Plain functions and bound methods are read straight from their code
    object (a tenth of the cost of ``inspect.signature``, which matters to
    ``connect``), once per code object (see ``_code_shape``); anything
    else, or a function whose signature was rewritten
    (``__wrapped__``, ``__signature__``), goes through ``inspect.signature``.

    Raises:
        TypeError: the receiver has a positional-only parameter without a
            default, which a keyword-only call can never fill.
    """
    function: object = receiver
    bound = False
    if isinstance(receiver, types.MethodType):
        function = receiver.__func__
        bound = True
    if type(function) is types.FunctionType and not (
        hasattr(function, "__wrapped__") or hasattr(function, "__signature__")
    ):
        return _code_shape(receiver, function, skip_first=bound)
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
                raise _positional_only_error(receiver, parameter.name)
        else:
            keywords.add(parameter.name)
            if parameter.default is inspect.Parameter.empty:
                required.add(parameter.name)
    return ReceiverShape(accepts_any, frozenset(keywords), frozenset(required))


# Shapes read from code objects, so that the receivers one ``def`` makes (its
# closures, its method bound to each instance) are read once, not at every
# connect. Keyed by ``id(code)`` rather than the code object, whose hash reads
# its constants (and, from 3.12, its bytecode); each entry holds its code
# object, so no other code object can have that id while the entry exists.
# The key also has what the shape depends on beyond the code: whether the
# first parameter is bound, how many positional defaults there are and which
# keyword-only ones have a default. A code object references no function,
# closure or instance, so the cache never keeps a receiver alive; and it is
# emptied when full, so the code of functions long gone (made by exec, say)
# cannot pile up in it. Its reads and writes are single dict operations,
# atomic without a lock: threads connecting at once at worst read one code
# object twice.
_CodeShapeKey = tuple[int, bool, int, tuple[str, ...] | None]
_CODE_SHAPES: dict[_CodeShapeKey, tuple[types.CodeType, ReceiverShape]] = {}
_CODE_SHAPES_LIMIT = 1024


def _code_shape(
    receiver: Callable[..., Any], function: types.FunctionType, skip_first: bool
) -> ReceiverShape:
    """``function``'s shape, from the cache or read from its code object."""
    code = function.__code__
    keyword_defaults = function.__kwdefaults__
    key = (
        id(code),
        skip_first,
        len(function.__defaults__ or ()),
        None if keyword_defaults is None else tuple(keyword_defaults),
    )
    cached = _CODE_SHAPES.get(key)
    if cached is not None:
        return cached[1]
    shape = _shape_from_code(receiver, function, skip_first)
    if len(_CODE_SHAPES) >= _CODE_SHAPES_LIMIT:
        _CODE_SHAPES.clear()
    _CODE_SHAPES[key] = (code, shape)
    return shape


def _shape_from_code(
    receiver: Callable[..., Any], function: types.FunctionType, skip_first: bool
) -> ReceiverShape:
    code = function.__code__
    positional = code.co_argcount
    names = code.co_varnames[: positional + code.co_kwonlyargcount]
    first_with_default = positional - len(function.__defaults__ or ())
    keyword_defaults = function.__kwdefaults__ or {}
    keywords: set[str] = set()
    required: set[str] = set()
    # A bound method's first parameter is filled by the object itself.
    for index in range(1 if skip_first and positional else 0, positional):
        name = names[index]
        if index < code.co_posonlyargcount:
            if index < first_with_default:
                raise _positional_only_error(receiver, name)
            continue
        keywords.add(name)
        if index < first_with_default:
            required.add(name)
    for name in names[positional:]:
        keywords.add(name)
        if name not in keyword_defaults:
            required.add(name)
    accepts_any = bool(code.co_flags & inspect.CO_VARKEYWORDS)
    return ReceiverShape(accepts_any, frozenset(keywords), frozenset(required))


def _positional_only_error(receiver: Callable[..., Any], name: str) -> TypeError:
    return TypeError(
        f"receiver {describe(receiver)} has a positional-only parameter {name!r}; "
        "receivers are called with keyword arguments only"
    )


def check_accepts(
    receiver: Callable[..., Any],
    shape: ReceiverShape | None,
    provided: Collection[str] | None,
    required: Collection[str] | None,
    signal: object,
) -> None:
    """Raise TypeError when ``receiver`` cannot take what ``signal`` sends it."""
    if shape is None:
        return
    if not shape.takes_sender:
        raise TypeError(
            f"receiver {describe(receiver)} cannot accept argument 'sender', which "
            f"signal {signal_label(signal)} always passes; add a 'sender' parameter or '**kwargs'"
        )
    if provided is None:
        return
    if not shape.accepts_any:
        for name in provided:
            if name not in shape.keywords:
                raise TypeError(
                    f"receiver {describe(receiver)} cannot accept argument {name!r} provided "
                    f"by signal {signal_label(signal)}; add a {name!r} parameter or '**kwargs'"
                )
    if not shape.payload_required.issubset(required or ()):
        missing = sorted(shape.payload_required.difference(required or ()))
        names = ", ".join(repr(name) for name in missing)
        raise TypeError(
            f"receiver {describe(receiver)} requires {names}, which signal "
            f"{signal_label(signal)} does not provide (it provides {sorted(provided)})"
        )


def signal_label(signal: object) -> str:
    """How messages, exception notes and logs name a signal: its name, else its repr.

    The one rule for it: an empty name counts as none.
    """
    name = getattr(signal, "name", None)
    return name if name else repr(signal)


def dispatch_uid_key(dispatch_uid: Hashable) -> Hashable:
    """The key a connection made with ``dispatch_uid`` is stored under.

    Raises:
        TypeError: ``dispatch_uid`` is not hashable (raised before anything is stored).
    """
    try:
        hash(dispatch_uid)
    except TypeError:
        raise TypeError(
            f"dispatch_uid must be hashable, got {type(dispatch_uid).__name__} {dispatch_uid!r}"
        ) from None
    return ("dispatch_uid", dispatch_uid)


def is_generator_function(receiver: object) -> bool:
    """A (sync or async) generator function, a bound method or partial of one, or an
    object whose ``__call__`` is one."""
    if inspect.isgeneratorfunction(receiver) or inspect.isasyncgenfunction(receiver):
        return True
    if inspect.isfunction(receiver) or inspect.ismethod(receiver):
        return False
    call = getattr(type(receiver), "__call__", None)  # noqa: B004 (the class's, not a callable check)
    return inspect.isgeneratorfunction(call) or inspect.isasyncgenfunction(call)


def receiver_key(receiver: Callable[..., Any]) -> Hashable:
    """Identity of a receiver for duplicate detection and ``disconnect``.

    A plain function is its own weak reference: functions hash and compare
    by identity, a weak reference hashes and compares like its referent, and
    it needs no extra object in the signal (a weakly connected function's
    reference is its key). A bound method is identified by its object and
    function, since every attribute access creates a new method object: one
    int packing both ids (an id fits in 64 bits). Anything else, whose own
    ``__eq__`` might say two receivers are one, by ``id()``.
    """
    if type(receiver) is types.FunctionType:
        return weakref.ref(receiver)
    if isinstance(receiver, types.MethodType):
        return id(receiver.__self__) << 64 | id(receiver.__func__)
    return id(receiver)


class WeakMethodRef(weakref.ref[Any]):
    """A weak reference to a bound method's object, with its function beside it.

    Smaller than ``weakref.WeakMethod`` (no second weak reference and no
    closure per method). The function is held strongly: it lives on the
    object's class, which the object keeps alive anyway.
    """

    __slots__ = ("function",)
    function: Callable[..., Any]

    def method(self) -> Callable[..., Any] | None:
        bound_to = self()
        return None if bound_to is None else types.MethodType(self.function, bound_to)


def reference(
    receiver: Callable[..., Any],
    on_collected: Callable[[Any], object],
) -> weakref.ref[Any]:
    """A weak reference to ``receiver``; a :class:`WeakMethodRef` for a bound method.

    Raises:
        TypeError: the receiver cannot be weakly referenced.
    """
    try:
        if isinstance(receiver, types.MethodType):
            method_ref = WeakMethodRef(receiver.__self__, on_collected)
            method_ref.function = receiver.__func__
            return method_ref
        return weakref.ref(receiver, on_collected)
    except TypeError:
        raise TypeError(
            f"receiver {describe(receiver)} cannot be weakly referenced; connect it with weak=False"
        ) from None


def refuse_generator(receiver: Callable[..., Any]) -> None:
    """Raise TypeError for a generator function: calling it would run nothing."""
    if is_generator_function(receiver):
        raise TypeError(
            f"receiver {describe(receiver)} is a generator function: calling it only "
            "creates a generator, so its body would never run; make it a plain "
            "function or an async def that returns"
        )


def receiver_kind(receiver: Callable[..., Any], to_thread: bool, timed: bool) -> int:
    """How ``receiver`` runs: ASYNC, THREAD (sync, ``to_thread``) or INLINE.

    Raises:
        TypeError: async with ``to_thread``, or ``timed`` (given its own
            timeout) but not async.
    """
    is_async = is_async_callable(receiver)
    if to_thread and is_async:
        raise TypeError(
            f"receiver {describe(receiver)} is async; to_thread=True is only for sync receivers"
        )
    if timed and not is_async:
        raise TypeError(
            f"receiver {describe(receiver)} is not async, so it cannot be timed out: "
            "sync receivers run inline and threads cannot be interrupted"
        )
    return ASYNC if is_async else THREAD if to_thread else INLINE


def stored_as(
    receiver: Callable[..., Any],
    weak: bool,
    uid_key: Hashable | None,
    on_collected: Callable[[Any], object],
) -> tuple[Hashable, Any, int]:
    """How a connection holds ``receiver``: ``(key, target, hold)``.

    ``target`` is the receiver or a weak reference to it, ``hold`` says
    which (STRONG, WEAK, WEAK_METHOD), and ``key`` identifies the connection:
    ``uid_key`` when a ``dispatch_uid`` was given, else the receiver's key.

    Raises:
        TypeError: ``weak`` and the receiver cannot be weakly referenced.
    """
    target: Any = reference(receiver, on_collected) if weak else receiver
    hold = STRONG if not weak else WEAK_METHOD if isinstance(target, WeakMethodRef) else WEAK
    if uid_key is not None:
        return uid_key, target, hold
    if hold == WEAK and type(receiver) is types.FunctionType:
        return target, target, hold  # the weak reference is the key: see receiver_key
    return receiver_key(receiver), target, hold


def describe(receiver: object) -> str:
    """A receiver's qualified name, for errors, notes and logs.

    A wrapper an instrument put around a receiver for one send names the
    receiver it wraps (its ``__asyncsignals_receiver__``).
    """
    receiver = getattr(receiver, "__asyncsignals_receiver__", receiver)
    if isinstance(receiver, functools.partial):
        return f"functools.partial of {describe(receiver.func)}"
    target = receiver.__func__ if isinstance(receiver, types.MethodType) else receiver
    qualname = getattr(target, "__qualname__", None)
    if qualname is None:
        # A callable object: name its class.
        target = type(receiver)
        qualname = target.__qualname__
    module = getattr(target, "__module__", None)
    name = qualname if module in (None, "builtins") else f"{module}.{qualname}"
    return f"{name}()"


# Public names (exported by asyncsignals) show their public path.
ReceiverDecorator.__module__ = "asyncsignals"
