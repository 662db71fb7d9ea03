"""Who listens to what: the wiring of an application's signals, as data or a diagram.

:func:`wiring` reads every signal alive (or the ones given) and returns, per
signal, its live receivers and how each is connected. :func:`to_mermaid`
draws that as a Mermaid flowchart (GitHub and most documentation sites render
it); :func:`to_text` prints it as a plain table. The command line does the
same for the modules it imports::

    python -m asyncsignals graph myapp.signals myapp.receivers
    python -m asyncsignals graph --format text myapp.receivers

Reading the wiring never changes it: no receiver is called, and collected
receivers are simply left out.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal

from ._connections import ASYNC, INLINE, THREAD
from ._receivers import describe, signal_label
from ._signal import Signal, all_signals, connections_of

__all__ = ["ReceiverWiring", "SignalWiring", "to_mermaid", "to_text", "wiring"]

#: How a receiver runs: ``"sync"`` inline on the event loop's thread,
#: ``"async"`` awaited, ``"to_thread"`` in a worker thread.
Kind = Literal["sync", "async", "to_thread"]

# Senders are shown by their repr, kept short: a picture, not a dump.
_SENDER_REPR: Final = reprlib.Repr()
_SENDER_REPR.maxstring = 60
_SENDER_REPR.maxother = 80


@dataclasses.dataclass(frozen=True)
class ReceiverWiring:
    """One connection of a receiver to a signal.

    Attributes:
        name: The receiver's qualified name, as errors and logs show it
            (``"myapp.receivers.send_invoice()"``).
        kind: ``"sync"``, ``"async"`` or ``"to_thread"``: how it runs.
        weak: True when the signal holds it by weak reference.
        sender: None when it listens to every sender; else the sender it is
            connected for, named (a class or function by its qualified name,
            anything else by a shortened repr).
        timeout: The connection's own timeout in seconds, or None (the
            signal's ``timeout``, if any, applies then).
    """

    name: str
    kind: Kind
    weak: bool
    sender: str | None
    timeout: float | None


@dataclasses.dataclass(frozen=True)
class SignalWiring:
    """A signal and its live receivers.

    Attributes:
        name: The signal's name, or its repr when it has none.
        timeout: The signal's ``timeout`` (seconds), or None.
        concurrent: False for a sequential signal, whose receivers run in turn.
        max_concurrency: The signal's ``max_concurrency``, or None.
        receivers: Its live connections, in connection order (the order
            results come back in).
    """

    name: str
    timeout: float | None
    concurrent: bool
    max_concurrency: int | None
    receivers: tuple[ReceiverWiring, ...]


def wiring(signals: Iterable[Signal[..., Any]] | None = None) -> list[SignalWiring]:
    """The wiring of ``signals``, or of every signal alive when None.

    Signals are sorted by name (then by their receivers' names, so the
    result is the same from run to run); each signal's receivers are in
    connection order. Receivers already collected are left out. Safe to call
    from any thread, and from inside a receiver.

    Args:
        signals: The signals to read; None reads every signal alive.

    Returns:
        One :class:`SignalWiring` per signal, signals without receivers too.
    """
    chosen = all_signals() if signals is None else list(signals)
    found = [_wiring_of(signal) for signal in chosen]
    found.sort(key=lambda each: (each.name, [receiver.name for receiver in each.receivers]))
    return found


def to_mermaid(signals: Sequence[SignalWiring]) -> str:
    """A Mermaid flowchart of ``signals``: each signal points at its receivers.

    A signal is a hexagon, a receiver a box; receivers with the same
    qualified name share a box, so a receiver of several signals shows as
    one. Each arrow says how that connection runs, whether it is weak or
    strong, its sender filter and its own timeout, if any.

    Args:
        signals: What :func:`wiring` returned.

    Returns:
        The flowchart's source, ending with a newline.
    """
    lines = ["flowchart LR"]
    receiver_ids: dict[str, str] = {}
    edges: list[str] = []
    for index, signal in enumerate(signals, start=1):
        signal_id = f"signal{index}"
        title = " · ".join([signal.name, *_signal_settings(signal)])
        lines.append(f'    {signal_id}{{{{"{_mermaid_text(title)}"}}}}')
        for connection in signal.receivers:
            receiver_id = receiver_ids.get(connection.name)
            if receiver_id is None:
                receiver_id = f"receiver{len(receiver_ids) + 1}"
                receiver_ids[connection.name] = receiver_id
                lines.append(f'    {receiver_id}["{_mermaid_text(connection.name)}"]')
            label = _mermaid_text(" · ".join(_connection_details(connection)))
            edges.append(f'    {signal_id} -->|"{label}"| {receiver_id}')
    return "\n".join([*lines, *edges]) + "\n"


def to_text(signals: Sequence[SignalWiring]) -> str:
    """A plain table of ``signals``: one row per connection, in columns.

    Columns: signal, receiver, kind, held (weak or strong), sender (``any``
    when it listens to every sender), timeout (``-`` when it has none of its
    own). A signal without receivers has a row of its own, with ``-`` in
    the other columns.

    Args:
        signals: What :func:`wiring` returned.

    Returns:
        The table, ending with a newline.
    """
    rows = [("signal", "receiver", "kind", "held", "sender", "timeout")]
    for signal in signals:
        title = " · ".join([signal.name, *_signal_settings(signal)])
        if not signal.receivers:
            rows.append((title, "-", "-", "-", "-", "-"))
        rows.extend(
            (
                title,
                connection.name,
                connection.kind,
                "weak" if connection.weak else "strong",
                "any" if connection.sender is None else connection.sender,
                "-" if connection.timeout is None else f"{connection.timeout:g} s",
            )
            for connection in signal.receivers
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in rows
    )


def _wiring_of(signal: Signal[..., Any]) -> SignalWiring:
    receivers = tuple(
        ReceiverWiring(
            name=describe(record.receiver),
            kind=_KINDS[record.kind],
            weak=record.weak,
            sender=None if record.sender is None else _sender_name(record.sender),
            timeout=record.timeout,
        )
        for record in connections_of(signal).records()
    )
    return SignalWiring(
        name=signal_label(signal),
        timeout=signal.timeout,
        concurrent=signal.concurrent,
        max_concurrency=signal.max_concurrency,
        receivers=receivers,
    )


_KINDS: Final[dict[int, Kind]] = {INLINE: "sync", ASYNC: "async", THREAD: "to_thread"}


def _sender_name(sender: object) -> str:
    """A class or function by its qualified name; anything else by a short repr."""
    qualname = getattr(sender, "__qualname__", None)
    module = getattr(sender, "__module__", None)
    if isinstance(qualname, str) and isinstance(module, str):
        return qualname if module == "builtins" else f"{module}.{qualname}"
    return _SENDER_REPR.repr(sender)


def _signal_settings(signal: SignalWiring) -> list[str]:
    settings: list[str] = []
    if not signal.concurrent:
        settings.append("sequential")
    if signal.timeout is not None:
        settings.append(f"timeout {signal.timeout:g} s")
    if signal.max_concurrency is not None:
        settings.append(f"at most {signal.max_concurrency} at once")
    return settings


def _connection_details(connection: ReceiverWiring) -> list[str]:
    details = [connection.kind, "weak" if connection.weak else "strong"]
    if connection.sender is not None:
        details.append(f"sender {connection.sender}")
    if connection.timeout is not None:
        details.append(f"timeout {connection.timeout:g} s")
    return details


# Characters that end or change a quoted Mermaid label, as its entity codes.
_MERMAID_ESCAPES: Final = str.maketrans(
    {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "`": "#96;", "\n": " "}
)


def _mermaid_text(text: str) -> str:
    return text.translate(_MERMAID_ESCAPES)
