"""What a send carries: its sender, and the payload names a signal provides.

A signal may say which keyword arguments every send provides
(``providing_args``, or the parameters of a :meth:`Signal.declare`
prototype); the signal checks each send's payload against them before any
receiver runs, and the errors for a payload it refuses are made here. The
signal is passed in only to be named in those errors.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Any

import typing_extensions

from ._receivers import describe, is_async_callable, signal_label

__all__ = [
    "check_names",
    "payload_names",
    "pop_sender",
    "read_prototype",
    "reserved_name_error",
    "sender_given_twice",
]

# Passed by the signal itself: never a payload name.
_RESERVED: frozenset[str] = frozenset({"sender", "signal"})

# Unpack as typing and typing_extensions spell it (the same object on newer Pythons).
_UNPACK: frozenset[object] = frozenset({typing.Unpack, typing_extensions.Unpack})
_REQUIRED: frozenset[object] = frozenset({typing.Required, typing_extensions.Required})
_NOT_REQUIRED: frozenset[object] = frozenset({typing.NotRequired, typing_extensions.NotRequired})


def payload_names(providing_args: Iterable[str] | None) -> frozenset[str] | None:
    """The names of ``providing_args``, checked, or None when it is None.

    Raises:
        TypeError: a string instead of a list, a name that is not an
            identifier, or ``sender``/``signal`` among them.
    """
    if isinstance(providing_args, str):
        raise TypeError(
            f"providing_args must be a list of names, not the string {providing_args!r}"
        )
    if providing_args is None:
        return None
    provided = frozenset(providing_args)
    for argument in provided:
        if not isinstance(argument, str) or not argument.isidentifier():  # pyright: ignore[reportUnnecessaryIsInstance] (checks what callers pass)
            raise TypeError(f"providing_args entry {argument!r} is not a valid argument name")
    reserved = provided & _RESERVED
    if reserved:
        raise TypeError(
            f"providing_args cannot include {sorted(reserved)}: "
            "'sender' and 'signal' are passed by the signal itself"
        )
    return provided


def reserved_name_error(signal: object) -> TypeError:
    """The error for a payload that uses the name ``signal``."""
    return TypeError(
        f"'signal' is reserved: {signal_label(signal)} passes itself as signal=; "
        "rename that payload argument"
    )


def sender_given_twice(signal: object, method: str) -> TypeError:
    """The error for a sender passed by position and as ``sender=`` too (dispatcher, bridge)."""
    return TypeError(
        f"'sender' is reserved: pass the sender once, as the second argument of "
        f"{method}() or as sender=, not also as a payload argument of signal "
        f"{signal_label(signal)}"
    )


def check_names(
    signal: object,
    provided: frozenset[str],
    required: frozenset[str] | None,
    named: dict[str, Any],
) -> None:
    """Check a payload whose names are not exactly ``provided``.

    Only names outside ``required`` (the optional ones of a declared
    signal) may be left out.

    Raises:
        TypeError: the payload uses ``signal``, or has unknown or missing
            names. Raised here, never kept in a local: a frame holding the
            exception it raised would keep it, and the sender, in a cycle.
    """
    if "signal" in named:
        raise reserved_name_error(signal)
    unknown = sorted(named.keys() - provided)
    missing = sorted((provided if required is None else required) - named.keys())
    if not unknown and not missing:
        return
    problems: list[str] = []
    if unknown:
        problems.append(f"unknown argument(s) {unknown}")
    if missing:
        problems.append(f"missing argument(s) {missing}")
    raise TypeError(
        f"signal {signal_label(signal)} was sent with {' and '.join(problems)}; "
        f"it provides {sorted(provided)}"
    )


def read_prototype(prototype: Callable[..., Any]) -> tuple[list[str] | None, frozenset[str]]:
    """The payload a :meth:`Signal.declare` prototype declares.

    Returns its payload names, in order (None for a ``**kwargs: Any``
    prototype, whose payload is open), and those of them a send must provide
    (the ones without a default). A ``**payload: Unpack[SomeTypedDict]``
    prototype declares the keys of that TypedDict (its ``NotRequired`` ones
    may be left out).

    Raises:
        TypeError: a prototype that is not a function (a callable object,
            a ``functools.partial``, a class); an ``async def`` prototype; no
            ``sender`` parameter; a ``signal`` parameter; a payload parameter
            that is not keyword-only; ``*args``; or an ``Unpack`` annotation
            that cannot be resolved.
    """
    if not (inspect.isfunction(prototype) or inspect.ismethod(prototype)):
        raise _not_a_function(prototype)
    if is_async_callable(prototype):
        raise TypeError(
            f"signal prototype {describe(prototype)} cannot be 'async def': its return "
            "annotation is what each receiver returns, so declare it with 'def' "
            "(async receivers still fit it)"
        )
    names: list[str] = []
    required: list[str] = []
    open_payload = False
    has_sender = False
    for parameter in inspect.signature(prototype).parameters.values():
        kind = parameter.kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            typed = _typed_payload(prototype, parameter)
            if typed is None:
                open_payload = True
            else:
                names.extend(typed[0])
                required.extend(typed[1])
        elif kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            what = (
                f"*{parameter.name}"
                if kind is inspect.Parameter.VAR_POSITIONAL
                else f"the positional-only parameter {parameter.name!r}"
            )
            raise TypeError(
                f"signal prototype {describe(prototype)} cannot have {what}: "
                "receivers are called with keyword arguments only"
            )
        elif parameter.name == "sender":
            has_sender = True
        elif parameter.name == "signal":
            raise TypeError(
                f"signal prototype {describe(prototype)} cannot have a 'signal' "
                "parameter: the signal passes itself to receivers that take one"
            )
        elif kind is not inspect.Parameter.KEYWORD_ONLY:
            # A send could pass it by position, which no receiver is called with.
            raise TypeError(
                f"signal prototype {describe(prototype)}: payload parameter "
                f"{parameter.name!r} must be keyword-only: put '*, ' before it "
                "(def prototype(*, sender: ..., ...))"
            )
        else:
            names.append(parameter.name)
            if parameter.default is inspect.Parameter.empty:
                required.append(parameter.name)
    if not has_sender:
        raise TypeError(
            f"signal prototype {describe(prototype)} needs a 'sender' parameter "
            "(keyword-only is best: def prototype(*, sender: ..., ...))"
        )
    return (None if open_payload else names), frozenset(required)


def _not_a_function(prototype: Callable[..., Any]) -> TypeError:
    """The error for a prototype that is not a function, which has no name to give the signal."""
    described = describe(prototype)  # before the check narrows it to partial[Unknown]
    if isinstance(prototype, functools.partial):
        what = f"a {described}"
    elif isinstance(prototype, type):
        what = f"the class {prototype.__module__}.{prototype.__qualname__}"
    elif inspect.isbuiltin(prototype):
        what = f"the built-in {prototype.__qualname__}()"
    else:
        what = f"a callable {type(prototype).__module__}.{type(prototype).__qualname__} object"
    return TypeError(
        f"Signal.declare() takes a function, not {what}: the function's name is the "
        "signal's and its signature is the payload; declare the payload with 'def' "
        "(def prototype(*, sender: ..., ...) -> ...)"
    )


def _typed_payload(
    prototype: Callable[..., Any], parameter: inspect.Parameter
) -> tuple[list[str], list[str]] | None:
    """The names, and the required names, of ``**parameter: Unpack[SomeTypedDict]``.

    None when the parameter is not annotated with ``Unpack``: an open payload.
    """
    hint = parameter.annotation
    while isinstance(hint, str) and "Unpack" in hint:
        # A postponed annotation (from __future__ import annotations; a quoted
        # one under it is postponed twice), resolved alone, as
        # typing.get_type_hints would: other parameters may name local classes.
        try:
            hint = eval(hint, getattr(prototype, "__globals__", {}))
        except NameError as error:
            raise TypeError(
                f"signal prototype {describe(prototype)}: cannot resolve the annotation "
                f"of **{parameter.name} ({error}); define its TypedDict at module level"
            ) from None
    if typing.get_origin(hint) not in _UNPACK:
        return None
    typed_dict: Any = typing.get_args(hint)[0]
    keys = list(typed_dict.__annotations__)
    reserved = sorted(_RESERVED.intersection(keys))
    if reserved:
        raise TypeError(
            f"signal prototype {describe(prototype)}: **{parameter.name} cannot have the "
            f"key(s) {reserved}: 'sender' and 'signal' are passed by the signal itself"
        )
    return keys, [key for key in keys if _is_required(typed_dict, key)]


def _is_required(typed_dict: Any, key: str) -> bool:
    """Whether a send must provide ``key`` of ``typed_dict``.

    ``__required_keys__`` cannot see ``NotRequired`` in a postponed annotation
    on Python 3.11 and 3.12, so the resolved annotations decide when they can.
    """
    try:
        hints = typing_extensions.get_type_hints(typed_dict, include_extras=True)
    except NameError:
        return key in typed_dict.__required_keys__
    qualifier: object = typing.get_origin(hints[key])
    if qualifier in _NOT_REQUIRED:
        return False
    return qualifier in _REQUIRED or key in typed_dict.__required_keys__


def pop_sender(args: tuple[object, ...], kwargs: dict[str, Any], method: str) -> object:
    """The sender of a send, given as its one positional argument or as ``sender=``.

    Takes ``sender`` out of ``kwargs`` when it was given there.
    """
    if len(args) == 1 and "sender" not in kwargs:
        return args[0]
    if not args:
        try:
            return kwargs.pop("sender")
        except KeyError:
            raise TypeError(
                f"{method}() missing the sender: pass sender=... (None for any)"
            ) from None
    raise TypeError(
        f"{method}() takes the sender and keyword arguments only, got {len(args)} "
        "positional argument(s)" + (" and sender=" if "sender" in kwargs else "")
    )
