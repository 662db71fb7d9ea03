"""The Redis bridge's wire format: what a stream entry holds, and how it is checked.

One stream per signal, ``<stream_prefix>:signal:<signal name>``, whose
entries have one field, ``event``, holding UTF-8 JSON ``{"v": 2, "signal":
name, "sender": name or null, "payload": {...}, "id": event id,
"published_at": seconds since the epoch, "origin": {"app": name or null,
"consumer": name}}``, with ``"trace": {"traceparent": ..., "tracestate":
...}`` when the publisher ran in a trace. Entries of version 1 (no event
id, time, origin nor trace) still decode. This module turns a send into
that field and an entry back into a send and its :class:`Envelope`,
refusing (with :class:`RejectedMessageError`, saying why) whatever it
cannot trust. It never imports redis: it handles bytes, strings and the
shapes of Redis replies, never a connection; nor does it need
OpenTelemetry, whose trace context it carries when it is installed.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, Protocol, cast

from ._payload import sender_given_twice
from ._redis_envelope import Envelope, Origin, trace_context
from ._signal import Signal, check_payload

if TYPE_CHECKING:
    from redis.typing import EncodableT, FieldT

__all__ = [
    "FIELD",
    "OVERSIZED",
    "Codec",
    "Entry",
    "Export",
    "Message",
    "Mode",
    "RejectedMessageError",
    "Start",
    "dead_letter_copy",
    "decode",
    "delivery_counts",
    "encode",
    "export_of",
    "id_order",
    "stream_entries",
    "text",
    "trimmed_unread",
]

Mode = Literal["work", "broadcast"]
# Where a new consumer group starts reading: events from now on, or all.
Start = Literal["new", "beginning"]

_WIRE_VERSION: Final = 2
# What each version's JSON object holds; a version 2 one may add "trace".
_KEYS: Final = {
    1: frozenset({"v", "signal", "sender", "payload"}),
    2: frozenset({"v", "signal", "sender", "payload", "id", "published_at", "origin"}),
}
_TRACE: Final = "trace"
# The one field of an entry: the event, as JSON.
FIELD: Final = b"event"
# The one field of what a bounded read hands back instead of an entry too
# large to transfer: its size. No entry written to Redis can have it.
OVERSIZED: Final = b"\x00oversized"


class RejectedMessageError(ValueError):
    """An entry read from Redis that the bridge cannot deliver; the reason is the message."""


class Codec(Protocol):
    """Turns a signal's payload into JSON values and back (``TypedJSON`` is one).

    The bridge always sends JSON; a codec lets a payload carry values JSON
    has no type for (dataclasses, ``Decimal``, ``datetime``), or that JSON
    would change (tuples, dict keys that are not strings, enum members):
    ``encode`` must return plain JSON types (``dict`` with ``str`` keys,
    ``list``, ``str``, ``int``, ``float``, ``bool``, None), or ``publish``
    refuses the payload. ``decode`` gets only what ``json.loads`` produced,
    never anything executable. An exception from ``decode`` sends the entry
    to the dead-letter stream.
    """

    def encode(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        """The payload as a mapping of JSON-serializable values."""
        ...

    def decode(self, data: dict[str, Any]) -> dict[str, Any]:
        """The payload rebuilt from the JSON object ``encode`` made."""
        ...


class _PlainJSON:
    """The default codec: payload values must be JSON values already."""

    def encode(self, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        return payload

    def decode(self, data: dict[str, Any]) -> dict[str, Any]:
        return data


@dataclasses.dataclass(frozen=True, eq=False)
class Export:
    """A signal carried over Redis: its stream, and how its events travel."""

    signal: Signal[..., Any]
    name: str
    stream: str
    mode: Mode
    codec: Codec
    consume: bool
    senders: Mapping[str, object] | None
    sender_names: Mapping[int, str]


def export_of(
    signal: Signal[..., Any],
    stream_prefix: str,
    *,
    mode: Mode,
    codec: Codec | None,
    senders: Mapping[str, object] | None,
    consume: bool,
) -> Export:
    """How ``signal`` travels under ``stream_prefix``.

    Raises:
        ValueError: ``mode`` is unknown, or the signal has no name.
    """
    if mode not in ("work", "broadcast"):
        raise ValueError(f"mode must be 'work' or 'broadcast', got {mode!r}")
    name = signal.name
    if name is None:
        raise ValueError(
            f"{signal!r} has no name; give it one (Signal(name=...) or Signal.declare): "
            "the name is what travels between processes"
        )
    return Export(
        signal=signal,
        name=name,
        stream=f"{stream_prefix}:signal:{name}",
        mode=mode,
        codec=codec if codec is not None else _PlainJSON(),
        consume=consume,
        senders=dict(senders) if senders is not None else None,
        sender_names={id(obj): key for key, obj in (senders or {}).items()},
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Entry:
    """An entry read from an exported signal's stream; ``fields`` None once trimmed."""

    export: Export
    id: str
    fields: Mapping[bytes, bytes] | None
    deliveries: int = 1


class Message(NamedTuple):
    """A decoded entry: the send to make, what receivers may know of it, its trace.

    A named tuple, read by name: one per entry, made in half the time of a
    frozen dataclass.
    """

    sender: object
    payload: dict[str, Any]
    envelope: Envelope
    trace: Mapping[str, str]


def text(value: bytes | str) -> str:
    """A name or id from Redis (bytes: the client does not decode responses) as a str."""
    return value.decode() if isinstance(value, bytes) else value


def id_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id as what orders it: (milliseconds, sequence)."""
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence)


def _reject_constant(constant: str) -> Any:
    raise RejectedMessageError(f"malformed: {constant} is not JSON")


# One decoder for every entry: json.loads with an option makes a new one each call.
_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


def stream_entries(response: Any) -> list[tuple[str, list[tuple[Any, Any]]]]:
    """``[(stream, [(id, fields), ...]), ...]`` from an XREAD or XREADGROUP reply.

    The reply's shape depends on the protocol and on redis-py's version: a
    list of ``[stream, entries]`` pairs (RESP2, and RESP3 as redis-py 8
    returns it by default), or a mapping of stream to entries (RESP3), whose
    entries redis-py 5 to 7 wrap in one more list.
    """
    # hasattr, not isinstance: the reply is untyped, and stays so.
    pairs: Any = response.items() if hasattr(response, "items") else response or ()
    return [(text(stream), _unwrapped(list(entries))) for stream, entries in pairs]


def _unwrapped(entries: list[Any]) -> list[tuple[Any, Any]]:
    # An entry is (id, fields) with an id of bytes; a wrapped reply has a
    # list of entries where an entry should be.
    first: Any = entries[0] if entries else None
    if type(first) is list and (not first or not isinstance(first[0], (bytes, str))):
        return [entry for chunk in entries for entry in chunk]
    return entries


def delivery_counts(pending: Any) -> dict[str, int]:
    """How many times each entry was delivered, by id, from an XPENDING reply."""
    # Ids come back as bytes (the client does not decode responses).
    return {
        text(cast("bytes | str", item["message_id"])): int(item["times_delivered"])
        for item in pending
    }


def trimmed_unread(group: Mapping[Any, Any], stream: Mapping[Any, Any]) -> int | None:
    """How many entries were trimmed from a stream before its consumer group read them.

    From the group's XINFO GROUPS record and the stream's XINFO STREAM
    reply: 0 when the group has read up to the stream's first entry (or
    nothing says otherwise), None when it has fallen behind it but Redis
    does not tell how many it skipped (Redis before 7, or a group whose
    read count Redis lost track of).
    """
    group = {text(key): value for key, value in group.items()}
    stream = {text(key): value for key, value in stream.items()}
    first_entry: Any = stream.get("first-entry")
    last_delivered = text(group["last-delivered-id"])
    if not first_entry or id_order(last_delivered) >= id_order(text(first_entry[0])):
        return 0
    added: int | None = stream.get("entries-added")
    read: int | None = group.get("entries-read")
    never_read = last_delivered == "0-0"
    if added is None:
        # Redis before 7: a group that read nothing may have been created
        # on a stream trimmed before, which lost it nothing.
        return 0 if never_read else None
    if read is None:
        if not never_read:
            return None
        read = 0
    # Every entry the stream holds comes after what the group has read.
    return max(added - read - int(stream["length"]), 0)


def encode(
    export: Export,
    sender: object,
    payload: dict[str, Any],
    max_message_bytes: int,
    origin: Origin,
) -> bytes:
    """The ``event`` field of an entry for a send of ``export``'s signal, from ``origin``.

    The event gets a new id, the time, and the trace context current here
    (when OpenTelemetry is installed and a span is current).

    Raises:
        TypeError: the payload does not match the signal or is not JSON
            (after the codec), or would not come back from JSON as the same
            types, or the sender is not a name.
        ValueError: the event is larger than ``max_message_bytes``.
    """
    if "sender" in payload:
        raise sender_given_twice(export.signal, "publish")
    check_payload(export.signal, payload)
    if export.senders is not None:
        sender_name = export.sender_names.get(id(sender))
        if sender_name is None and isinstance(sender, str) and sender in export.senders:
            sender_name = sender
        if sender_name is None and sender is not None:
            raise TypeError(
                f"sender {sender!r} of signal {export.name} is none of the senders "
                f"exported with it: {sorted(export.senders)}"
            )
    elif sender is None or isinstance(sender, str):
        sender_name = sender
    else:
        raise TypeError(
            f"signal {export.name} travels with its sender's name: publish a str (or "
            f"None), not {sender!r}, or export the signal with senders={{name: object}}"
        )
    message: dict[str, Any] = {
        "v": _WIRE_VERSION,
        "signal": export.name,
        "sender": sender_name,
        "payload": dict(export.codec.encode(payload)),
        # Random, not secret: ids only tell events apart, and this is a
        # fraction of the cost of os.urandom's system call (uuid4) per event.
        # CPython reseeds random in a forked child, so workers do not repeat.
        "id": f"{random.getrandbits(128):032x}",
        "published_at": time.time(),
        "origin": {"app": origin.app, "consumer": origin.consumer},
    }
    carrier = trace_context()
    if carrier:
        message[_TRACE] = carrier
    try:
        data = json.dumps(
            message, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the payload of signal {export.name} is not JSON ({exc}); "
            "export the signal with a codec that converts it, such as TypedJSON"
        ) from exc
    for key, value in message["payload"].items():
        changed = _changed_by_json(value, repr(key))
        if changed is not None:
            where, kind, arrives_as = changed
            raise TypeError(
                f"payload argument {key!r} of signal {export.name} would not arrive as sent: "
                f"{where} is {kind.__module__}.{kind.__qualname__}, which JSON turns into "
                f"{arrives_as}. Pass {arrives_as} yourself, or export the signal with a codec "
                "that converts it (and back), such as TypedJSON"
            )
    if len(data) > max_message_bytes:
        raise ValueError(
            f"an event of signal {export.name} is {len(data)} bytes of JSON, more than "
            f"max_message_bytes={max_message_bytes}"
        )
    return data


# What JSON turns each kind it accepts into, most specific first: a subclass
# (an IntEnum, a NamedTuple, an OrderedDict) arrives as its JSON base type.
_ARRIVES_AS: Final = (
    (int, "an int"),
    (float, "a float"),
    (str, "a str"),
    ((list, tuple), "a list"),
    (dict, "a dict"),
)


def _changed_by_json(value: object, where: str) -> tuple[str, type, str] | None:
    """The first place in ``value`` (JSON-serializable) that JSON would not give back as is.

    Returns (where, its type, what it would arrive as), or None when the whole
    value comes back equal and of the same types.
    """
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return None
    if kind is list:
        inside: list[tuple[str, object]] = [
            (f"{where}[{index}]", item) for index, item in enumerate(cast("list[object]", value))
        ]
    elif kind is dict:
        inside = []
        for key, item in cast("dict[object, object]", value).items():
            if type(key) is not str:
                return f"key {key!r} of {where}", type(key), "a str"
            inside.append((f"{where}[{key!r}]", item))
    else:
        return where, kind, next(name for base, name in _ARRIVES_AS if isinstance(value, base))
    for place, item in inside:
        changed = _changed_by_json(item, place)
        if changed is not None:
            return changed
    return None


def decode(entry: Entry, max_message_bytes: int) -> Message:
    """The send an entry asks for, or RejectedMessageError saying why not."""
    export = entry.export
    fields = entry.fields
    if not fields:  # an entry always has a field: this one was deleted
        raise RejectedMessageError("trimmed from the stream before it was delivered")
    size = fields.get(OVERSIZED)
    if size is not None:
        raise RejectedMessageError(
            f"oversized: {text(size)} bytes of fields, more than max_message_bytes="
            f"{max_message_bytes} (left in Redis unread)"
        )
    data = fields.get(FIELD)
    if data is None or len(fields) != 1:
        raise RejectedMessageError(
            f"malformed: expected one field 'event', got {sorted(map(text, fields))[:10]}"
        )
    if len(data) > max_message_bytes:
        raise RejectedMessageError(
            f"oversized: {len(data)} bytes, more than max_message_bytes={max_message_bytes}"
        )
    try:
        message = _DECODER.decode(data.decode())
    except (ValueError, RecursionError) as exc:
        raise RejectedMessageError(f"malformed: not JSON ({exc})") from None
    if not isinstance(message, dict) or "v" not in message:
        raise RejectedMessageError("malformed: expected a JSON object with a version, v")
    checked = cast("dict[str, object]", message)
    version = checked["v"]
    keys = _KEYS.get(version) if type(version) is int else None
    if keys is None:
        raise RejectedMessageError(f"unknown wire version {version!r}")
    # The common case (no trace) compared as is, without a set made for it.
    if checked.keys() != keys and (
        version == 1 or _TRACE not in checked or frozenset(checked.keys() - {_TRACE}) != keys
    ):
        raise RejectedMessageError(
            f"malformed: expected a JSON object with keys {', '.join(sorted(keys))}"
        )
    name = checked["signal"]
    sender = checked["sender"]
    payload = checked["payload"]
    if name != export.name:
        raise RejectedMessageError(f"unknown signal {name!r} on the stream of signal {export.name}")
    if not (sender is None or isinstance(sender, str)) or not isinstance(payload, dict):
        raise RejectedMessageError("malformed: sender must be a string or null, payload an object")
    envelope, trace = _envelope(entry, checked)
    if export.senders is not None and sender is not None:
        if sender not in export.senders:
            raise RejectedMessageError(f"unknown sender {sender!r} of signal {export.name}")
        sender = export.senders[sender]
    elif sender is not None:
        sender = sys.intern(sender)
    try:
        named = export.codec.decode(payload)  # pyright: ignore[reportUnknownArgumentType]
        check_payload(export.signal, named)
    except Exception as exc:
        raise RejectedMessageError(
            f"payload does not fit signal {export.name}: {type(exc).__name__}: {exc}"
        ) from None
    if "sender" in named:
        raise RejectedMessageError("malformed: the payload cannot carry 'sender'")
    return Message(sender, named, envelope, trace)


def _envelope(entry: Entry, message: dict[str, object]) -> tuple[Envelope, Mapping[str, str]]:
    """The envelope and trace context of a checked message of ``entry``."""
    if message["v"] == 1:
        milliseconds, _ = id_order(entry.id)
        return Envelope(entry.id, milliseconds / 1000, None, entry.deliveries), {}
    event_id = message["id"]
    published_at = message["published_at"]
    origin = cast("dict[str, object]", message["origin"])
    trace = cast("dict[str, object]", message.get(_TRACE, _NO_TRACE))
    if not (
        isinstance(event_id, str)
        and type(published_at) in (int, float)
        and type(origin) is dict
        and origin.keys() == _ORIGIN_KEYS
        and type(trace) is dict
        and (not trace or all(type(value) is str for value in trace.values()))
    ):
        raise RejectedMessageError(_MALFORMED_ENVELOPE)
    app = origin["app"]
    consumer = origin["consumer"]
    if not ((app is None or type(app) is str) and type(consumer) is str):
        raise RejectedMessageError(_MALFORMED_ENVELOPE)
    sent_by = _origins.get((app, consumer)) or _origin(app, consumer)
    return (
        Envelope(event_id, float(cast("float", published_at)), sent_by, entry.deliveries),
        cast("dict[str, str]", trace),
    )


_NO_TRACE: Final[dict[str, str]] = {}
_ORIGIN_KEYS: Final = frozenset({"app", "consumer"})
_MALFORMED_ENVELOPE: Final = (
    "malformed: id must be a string, published_at a number, origin an object "
    "with app and consumer, trace an object of strings"
)
# The publishers' origins, made once each: a consumer reads the events of
# a few publishers (an Origin is immutable, so one serves every event).
_origins: dict[tuple[str | None, str], Origin] = {}
_MOST_ORIGINS: Final = 1024


def _origin(app: str | None, consumer: str) -> Origin:
    if len(_origins) >= _MOST_ORIGINS:
        _origins.clear()  # publishers restarted under new names: start over
    origin = _origins[app, consumer] = Origin(app, consumer)
    return origin


def dead_letter_copy(
    entry: Entry, consumer: str, reason: str, max_message_bytes: int
) -> dict[FieldT, EncodableT]:
    """The fields of the dead-letter entry for ``entry``, refused by ``consumer`` for ``reason``."""
    fields = entry.fields or {}
    if OVERSIZED in fields:
        fields = {}  # never read: the reason says how large it is
    copy: dict[FieldT, EncodableT] = {
        "stream": entry.export.stream,
        "id": entry.id,
        "consumer": consumer,
        "reason": reason,
    }
    for field, value in list(fields.items())[:10]:
        copy[b"field:" + field[:100]] = value[:max_message_bytes]
    return copy


# Public names show their public path in reprs and tracebacks.
for _public in (Codec, RejectedMessageError):
    _public.__module__ = "asyncsignals.redis"
del _public
