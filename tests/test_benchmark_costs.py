"""The costs ladder's rungs keep the guarantees they claim, and its report reads right."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import importlib.util
from typing import Any

import pytest

from benchmarks import _rungs, costs
from benchmarks._backends import Backend, run_on
from benchmarks._measure import Sender
from benchmarks._receivers import Receiver, make_receivers
from benchmarks._scenarios import ORDER, TIMES

BACKENDS: list[Backend] = ["asyncio"]
if importlib.util.find_spec("trio") is not None:
    BACKENDS.append("trio")

HAND_RUNGS = [
    rung
    for row in costs.ROWS
    if row.runs_here()
    for rung in row.rungs
    if not rung.library and rung.name not in ("wrapped", "observed")
]
KINDS = ("sync", "async")


def _send(backend: Backend, send: Any, *args: Any, **named: Any) -> Any:
    return run_on(backend, functools.partial(send, *args, **named))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "row", [row for row in costs.ROWS if row.runs_here()], ids=lambda row: row.key
)
def test_every_rung_of_a_row_returns_each_receivers_result_in_order(
    row: costs.Row, backend: Backend
) -> None:
    """Each rung, the library's included, returns (receiver, its value) in connection order."""
    if backend not in row.backends:
        pytest.skip(f"{row.key} runs on {', '.join(row.backends)}")
    assert costs.check_row(row, backend) == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "rung", [r for r in HAND_RUNGS if r not in (costs.FLOOR, costs.TASKS, costs.TASK_RULES)]
)
def test_a_collected_receiver_costs_a_weak_rung_nothing(rung: costs.Rung, kind: str) -> None:
    """From the weak rung on, a receiver collected after connecting is skipped."""
    if rung is costs.AWAITABLES and kind == "async":
        pytest.skip("a sync-row rung")
    receivers = make_receivers(kind, 2, "asyncio")  # type: ignore[arg-type]
    send = rung.build(receivers, "asyncio")
    kept = receivers[0]
    del receivers
    gc.collect()
    assert _send("asyncio", send, Sender(0), order=ORDER) == [(kept, 0)]


@pytest.mark.parametrize("rung", [r for r in HAND_RUNGS if r not in (costs.FLOOR, costs.WEAK)])
def test_a_rung_with_signal_passes_it_and_refuses_it_as_a_payload_name(rung: costs.Rung) -> None:
    """From the signal= rung on, receivers get signal=, and a payload named signal is refused."""
    seen: list[object] = []

    async def receiver(sender: object, **named: Any) -> int:
        seen.append(named["signal"])
        return 0

    def sync_receiver(sender: object, **named: Any) -> int:
        seen.append(named["signal"])
        return 0

    chosen = sync_receiver if rung is costs.AWAITABLES else receiver
    send = rung.build([chosen], "asyncio")
    assert _send("asyncio", send, Sender(0), order=ORDER) == [(chosen, 0)]
    assert seen == [_rungs.SIGNAL]
    with pytest.raises(TypeError, match="reserved"):
        _send("asyncio", send, Sender(0), signal=1)
    assert seen == [_rungs.SIGNAL]


def test_the_lookup_adds_a_senders_own_receivers_and_matches_it_by_identity() -> None:
    """The snapshot for a sender holds its own receivers after the any-sender ones; another
    sender, even an equal one, gets the any-sender ones only."""
    (everyone,) = make_receivers("async", 1, "asyncio")

    async def own(sender: object, **named: Any) -> str:
        return "own"

    store = _rungs.Store([everyone])
    sender, other = Sender(0), Sender(0)
    store.connect(own, sender)
    reached = [reference() for reference, _ in store.lookup(sender)]
    assert reached == [everyone, own]
    assert [reference() for reference, _ in store.lookup(other)] == [everyone]
    assert [reference() for reference, _ in store.lookup(None)] == [everyone]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("count", [1, 3])
def test_the_context_rung_runs_receivers_in_a_copy_of_the_senders_context(
    backend: Backend, kind: str, count: int
) -> None:
    """Receivers see the sender's context variables; what they set stays in their copy."""
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("costs_test", default="")

    async def async_receiver(sender: object, **named: Any) -> str:
        seen = variable.get()
        variable.set("receiver")
        return seen

    def sync_receiver(sender: object, **named: Any) -> str:
        seen = variable.get()
        variable.set("receiver")
        return seen

    receiver = async_receiver if kind == "async" else sync_receiver
    receivers = [receiver] * count
    send = costs.CONTEXT.build(receivers, backend)

    async def main() -> tuple[Any, str]:
        variable.set("sender")
        results = await send(Sender(0), order=ORDER)
        return results, variable.get()

    results, after = run_on(backend, main)
    assert results[0] == (receiver, "sender")
    assert after == "sender"


class ReceiverFailedError(Exception):
    """What the failing receivers raise."""


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("count", [1, 3])
def test_the_error_rung_raises_a_receivers_error_as_itself_with_a_note(
    backend: Backend, kind: str, count: int
) -> None:
    """A receiver's exception propagates as itself, with a note naming it and the signal."""

    async def async_failing(sender: object, **named: Any) -> int:
        raise ReceiverFailedError

    def sync_failing(sender: object, **named: Any) -> int:
        raise ReceiverFailedError

    failing = async_failing if kind == "async" else sync_failing
    receivers: list[Receiver] = [*make_receivers(kind, count - 1, backend), failing]  # type: ignore[arg-type]
    for rung in (costs.ERRORS, costs.AWAITABLES) if kind == "sync" else (costs.ERRORS,):
        send = rung.build(receivers, backend)
        with pytest.raises(ReceiverFailedError) as raised:
            _send(backend, send, Sender(0), order=ORDER)
        assert raised.value.__notes__ == [
            f"raised by receiver {failing.__qualname__} of signal costs"
        ]


def test_the_awaitables_rung_awaits_what_a_sync_receiver_returns() -> None:
    """A sync receiver's awaitable is awaited in its slot, never dropped."""

    async def later() -> str:
        await asyncio.sleep(0)
        return "awaited"

    def returns_awaitable(sender: object, **named: Any) -> Any:
        return later()

    send = costs.AWAITABLES.build([returns_awaitable], "asyncio")
    assert _send("asyncio", send, Sender(0), order=ORDER) == [(returns_awaitable, "awaited")]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("count", [1, 3])
def test_the_error_rung_lets_the_callers_cancellation_win_over_a_returned_value(
    backend: Backend, count: int
) -> None:
    """A receiver that absorbs the caller's cancellation and returns does not end it."""
    import anyio

    async def absorbing(sender: object, **named: Any) -> str:
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class():
            return "absorbed"
        return "slept"

    receivers: list[Receiver] = [*make_receivers("async", count - 1, backend), absorbing]
    send = costs.ERRORS.build(receivers, backend)
    after: list[str] = []

    async def main() -> None:
        with anyio.move_on_after(0.01):
            await send(Sender(0), order=ORDER)
            after.append("went on")

    run_on(backend, main)
    assert after == []


def test_the_ladder_gives_each_rung_its_ratio_and_the_librarys_gap() -> None:
    """A ladder's report: each rung's ratio to the first, what it adds, and the library's gap."""
    row = costs.ROWS[1]
    values = [100.0 * (1 + index / 10) for index in range(len(row.rungs))]
    lines = costs.ladder_lines(row, values, lambda value: f"{value:,.0f}")
    assert lines[0] == f"## {row.title}"
    assert f"| {row.rungs[1].label} | 110 | 1.10{TIMES} | 10 |" in lines
    last_hand, library = values[-2], values[-1]
    assert any(
        line.startswith(f"asyncsignals beyond the last hand rung: {library - last_hand:,.0f}")
        for line in lines
    )
