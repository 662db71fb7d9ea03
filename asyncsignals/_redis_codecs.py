"""The Redis bridge's codec for the common Python types: each comes back as it was sent.

:class:`TypedJSON` turns a payload into JSON values, writing each value JSON
has no type for (or would change) as a tagged object ``{"$type": kind,
"value": ...}``, and turns those back: ``datetime``, ``date``, ``time``,
``timedelta``, ``Decimal``, ``UUID``, ``bytes``, tuples, sets, dicts whose
keys are not strings, floats JSON cannot write (``nan``, ``inf``), and the
classes it is given by name: enums (by value), dataclasses and pydantic
models. What it cannot bring back exactly it refuses at publish. Pydantic is
never imported: a model is recognised by its ``model_dump`` and
``model_validate``. Never imports redis.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, cast

__all__ = ["TypedJSON"]

# The key that marks a tagged object; a payload's own dict with this key is
# tagged itself ("dict"), so that no value is ever mistaken for a tag.
_TAG: Final = "$type"
_PLAIN: Final = (bool, int, float, str)


def _qualified(cls: type[object]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class TypedJSON:
    """A codec that carries the common Python types over the bridge, and brings them back exact.

    Pass it to ``RedisBridge(codec=...)`` (every exported signal) or to
    ``export(signal, codec=...)``, with the same ``types`` in every process::

        bridge = RedisBridge(url, app="shop", codec=TypedJSON(types=[Order, Status]))

    Carried without being named: ``datetime`` (naive, with a fixed offset
    or with a ``zoneinfo.ZoneInfo`` zone, ``fold`` kept), ``date``, ``time``
    (naive or with a fixed offset), ``timedelta``, ``Decimal``, ``UUID``,
    ``bytes``, ``tuple``, ``set``, ``frozenset``, dicts with keys of any of
    these types, and ``float`` ``nan`` and infinities. Carried once named
    in ``types``: ``Enum`` subclasses (``IntEnum``, ``StrEnum``, flags),
    sent by value; dataclasses, sent field by field (each field's value
    carried the same way), rebuilt by calling the class with them; and
    pydantic (v2) models, sent as ``model_dump(mode="json")`` and rebuilt
    with ``model_validate`` (pydantic itself is never imported: install it
    for your models, the bridge needs no extra). Types are named by module
    and qualified name, so each process must import the same classes.

    Anything else (a class not named, a subclass of ``str``, ``int``,
    ``list`` or ``dict`` that is neither an enum nor named, a zone that is
    not a ``ZoneInfo``) is refused by ``publish`` with a ``TypeError``
    saying where in the payload it is: nothing arrives as another type.

    Args:
        types: The enums, dataclasses and pydantic models the payloads may
            hold.

    Raises:
        TypeError: one of ``types`` is none of those, or a dataclass has a
            field that its constructor does not take (it could not be
            rebuilt).
        ValueError: two of ``types`` have the same qualified name.
    """

    def __init__(self, types: Iterable[type[object]] = ()) -> None:
        self._types: dict[str, type[object]] = {}
        for cls in types:
            if not _is_named_kind(cls):
                raise TypeError(
                    f"TypedJSON carries enums, dataclasses and pydantic models by name, not {cls!r}"
                )
            if dataclasses.is_dataclass(cls) and not all(
                field.init for field in dataclasses.fields(cls)
            ):
                raise TypeError(
                    f"dataclass {_qualified(cls)} has a field with init=False: it could not "
                    "be rebuilt from its fields"
                )
            name = _qualified(cls)
            if self._types.get(name, cls) is not cls:
                raise ValueError(f"two of the types are named {name}")
            self._types[name] = cls

    @property
    def types(self) -> tuple[type[object], ...]:
        """The enums, dataclasses and pydantic models carried by name."""
        return tuple(self._types.values())

    def __repr__(self) -> str:
        return f"TypedJSON(types=[{', '.join(self._types)}])"

    # -- encoding -----------------------------------------------------------

    def encode(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        """The payload as JSON values, each value JSON would not bring back tagged.

        Raises:
            TypeError: a value cannot be carried exactly; the message says
                which payload argument, where in it, and its type.
        """
        return {key: self._encode(value, repr(key)) for key, value in payload.items()}

    def _encode(self, value: object, where: str) -> object:
        kind = type(value)
        if value is None or kind in _PLAIN:
            if kind is float and not math.isfinite(cast("float", value)):
                return {_TAG: "float", "value": repr(value)}
            return value
        if kind is list:
            items = cast("list[object]", value)
            return [self._encode(item, f"{where}[{index}]") for index, item in enumerate(items)]
        if kind is dict:
            return self._encode_dict(cast("dict[object, object]", value), where)
        name = _qualified(kind)
        if self._types.get(name) is kind:
            return {_TAG: name, "value": self._encode_named(value, where)}
        encoder = _ENCODERS.get(kind)
        if encoder is None:
            raise TypeError(
                f"{where} is {name}, which TypedJSON cannot bring back as it is: name its "
                "class in TypedJSON(types=[...]) if it is an enum, a dataclass or a pydantic "
                "model, or pass a value of a type it carries"
            )
        return {_TAG: encoder.tag, "value": encoder.encode(value, where, self._encode)}

    def _encode_dict(self, value: dict[object, object], where: str) -> object:
        if all(type(key) is str for key in value) and _TAG not in value:
            return {
                cast("str", key): self._encode(item, f"{where}[{key!r}]")
                for key, item in value.items()
            }
        return {
            _TAG: "dict",
            "value": [
                [
                    self._encode(key, f"key {key!r} of {where}"),
                    self._encode(item, f"{where}[{key!r}]"),
                ]
                for key, item in value.items()
            ],
        }

    def _encode_named(self, value: object, where: str) -> object:
        if isinstance(value, enum.Enum):
            return self._encode(value.value, f"{where}.value")
        if dataclasses.is_dataclass(value):
            return {
                field.name: self._encode(getattr(value, field.name), f"{where}.{field.name}")
                for field in dataclasses.fields(value)
            }
        dump: Callable[..., object] = getattr(value, "model_dump")  # noqa: B009
        return dump(mode="json")

    # -- decoding -----------------------------------------------------------

    def decode(self, data: dict[str, Any]) -> dict[str, Any]:
        """The payload rebuilt from what :meth:`encode` made.

        Raises:
            ValueError: a tagged value names a type this codec does not
                carry, or does not hold what that type needs.
        """
        return {key: self._decode(value) for key, value in data.items()}

    def _decode(self, value: object) -> Any:
        if type(value) is list:
            return [self._decode(item) for item in cast("list[object]", value)]
        if type(value) is not dict:
            return value
        data = cast("dict[str, object]", value)
        tag = data.get(_TAG)
        if tag is None:
            return {key: self._decode(item) for key, item in data.items()}
        if not isinstance(tag, str) or data.keys() != {_TAG, "value"}:
            raise ValueError(f"malformed tagged value: {sorted(data)}")
        inner = data["value"]
        cls = self._types.get(tag)
        if cls is not None:
            return self._decode_named(cls, inner)
        decoder = _DECODERS.get(tag)
        if decoder is None:
            raise ValueError(f"unknown type {tag!r}: not among TypedJSON's types here")
        return decoder(inner, self._decode)

    def _decode_named(self, cls: type[object], value: object) -> object:
        if issubclass(cls, enum.Enum):
            return cls(self._decode(value))
        if dataclasses.is_dataclass(cls):
            fields = cast("dict[str, object]", value)
            return cls(**{key: self._decode(item) for key, item in fields.items()})
        validate: Callable[[object], object] = getattr(cls, "model_validate")  # noqa: B009
        return validate(value)


def _is_named_kind(cls: object) -> bool:
    if not isinstance(cls, type):
        return False
    kind = cast("type[object]", cls)
    return (
        issubclass(kind, enum.Enum)
        or dataclasses.is_dataclass(kind)
        or (callable(getattr(kind, "model_validate", None)) and hasattr(kind, "model_dump"))
    )


# Carries one value inside another: (value, where it is) -> JSON; and back.
_EncodeItem = Callable[[object, str], object]
_DecodeItem = Callable[[object], Any]


@dataclasses.dataclass(frozen=True)
class _Encoder:
    tag: str
    encode: Callable[[Any, str, _EncodeItem], object]


def _items(value: Iterable[object], where: str, encode_item: _EncodeItem) -> list[object]:
    return [encode_item(item, f"{where}[{index}]") for index, item in enumerate(value)]


def _zone(value: datetime.datetime | datetime.time, where: str) -> str | None:
    """The key of a ZoneInfo zone; None for a naive value or a plain offset; else refused."""
    zone = value.tzinfo
    if zone is None:
        return None
    if type(zone) is datetime.timezone:
        offset = zone.utcoffset(None)
        if zone.tzname(None) == datetime.timezone(offset).tzname(None):
            return None
    elif (
        isinstance(value, datetime.datetime)
        and _is_zoneinfo(zone)
        # A zone read from a file of its own (ZoneInfo.from_file) has no key.
        and isinstance(key := getattr(zone, "key", None), str)
    ):
        return key
    raise TypeError(
        f"{where} has the time zone {zone!r}, which TypedJSON cannot bring back as it is: "
        "use a datetime.timezone offset without a name of its own, or (for a datetime) a "
        "zoneinfo.ZoneInfo made from its key"
    )


def _is_zoneinfo(zone: datetime.tzinfo) -> bool:
    import zoneinfo  # noqa: PLC0415

    return type(zone) is zoneinfo.ZoneInfo


def _encode_datetime(value: datetime.datetime, where: str, encode_item: _EncodeItem) -> object:
    zone = _zone(value, where)
    if zone is None:
        return [value.isoformat(), value.fold]
    return [value.replace(tzinfo=None).isoformat(), value.fold, zone]


def _decode_datetime(value: Any, decode_item: _DecodeItem) -> datetime.datetime:
    text, fold, *zone = value
    moment = datetime.datetime.fromisoformat(text).replace(fold=fold)
    if zone:
        import zoneinfo  # noqa: PLC0415

        moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(zone[0]))
    return moment


def _encode_time(value: datetime.time, where: str, encode_item: _EncodeItem) -> object:
    _zone(value, where)
    return [value.isoformat(), value.fold]


def _decode_time(value: Any, decode_item: _DecodeItem) -> datetime.time:
    text, fold = value
    return datetime.time.fromisoformat(text).replace(fold=fold)


_ENCODERS: Final[dict[type, _Encoder]] = {
    datetime.datetime: _Encoder("datetime", _encode_datetime),
    datetime.date: _Encoder("date", lambda value, where, encode_item: value.isoformat()),
    datetime.time: _Encoder("time", _encode_time),
    datetime.timedelta: _Encoder(
        "timedelta",
        lambda value, where, encode_item: [value.days, value.seconds, value.microseconds],
    ),
    decimal.Decimal: _Encoder("decimal", lambda value, where, encode_item: str(value)),
    uuid.UUID: _Encoder("uuid", lambda value, where, encode_item: str(value)),
    bytes: _Encoder(
        "bytes", lambda value, where, encode_item: base64.b64encode(value).decode("ascii")
    ),
    tuple: _Encoder("tuple", _items),
    set: _Encoder("set", _items),
    frozenset: _Encoder("frozenset", _items),
}

_DECODERS: Final[dict[str, Callable[[Any, _DecodeItem], object]]] = {
    "float": lambda value, decode_item: float(value),
    "dict": lambda value, decode_item: {decode_item(key): decode_item(item) for key, item in value},
    "datetime": _decode_datetime,
    "date": lambda value, decode_item: datetime.date.fromisoformat(value),
    "time": _decode_time,
    "timedelta": lambda value, decode_item: datetime.timedelta(*value),
    "decimal": lambda value, decode_item: decimal.Decimal(value),
    "uuid": lambda value, decode_item: uuid.UUID(value),
    "bytes": lambda value, decode_item: base64.b64decode(value, validate=True),
    "tuple": lambda value, decode_item: tuple(map(decode_item, value)),
    "set": lambda value, decode_item: set(map(decode_item, value)),
    "frozenset": lambda value, decode_item: frozenset(map(decode_item, value)),
}

# Public names show their public path in reprs and tracebacks.
TypedJSON.__module__ = "asyncsignals.redis"
