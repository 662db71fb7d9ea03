"""What each of a send's guarantees costs: the floor, built up one guarantee at a time.

``python -m benchmarks.costs`` measures, on each row where asyncsignals misses
one of its ratio targets, a ladder of hand-written dispatchers
(benchmarks._rungs): each rung adds one thing DESIGN.md requires of a send to
the rung before it, written the cheapest correct way we know, and the last
rung is asyncsignals itself. What a hand rung adds is what that guarantee
costs any implementation; what the last step adds is what the library spends
beyond its guarantees.

The instrument row is a ladder of its own: it starts from asyncsignals' plain
send (its target is a ratio to that send) and adds what observing a send
takes.

    python -m benchmarks.costs --instructions --write   # callgrind counts, written to results/
    python -m benchmarks.costs --instructions --row send/1/async   # one row
    python -m benchmarks.costs                  # timed, asyncio and trio
    python -m benchmarks.costs --quick          # timed, shorter repeats
    python -m benchmarks.costs --smoke          # every rung once, results checked (CI)

Instruction counts repeat to well under 1 % on a shared machine; timings move
by 10-40 %, so the counts are what the ladder is read from.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import platform
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncsignals
from benchmarks import _rungs
from benchmarks._backends import Backend, run_on
from benchmarks._implementations import Implementation, Send
from benchmarks._measure import DEFAULT, QUICK, Case, Sender, Settings, time_interleaved
from benchmarks._receivers import Receiver, make_receivers
from benchmarks._report import format_ns
from benchmarks._scenarios import ORDER, TIMES, Scenario
from benchmarks.instructions import Counting, check_valgrind, count_per_send, working_tree

RESULTS = Path(__file__).resolve().parent / "results"

# Builds a rung's send from the receivers and the backend.
Build = Callable[[Sequence[Receiver], Backend], Send]


@dataclass(frozen=True)
class Rung:
    """One step of a ladder: a name (for the command line), what it adds, its builder."""

    name: str
    label: str
    build: Build
    library: bool = False  # asyncsignals' own send, not a hand-written one


@dataclass(frozen=True)
class Row:
    """A row that misses a target, and its ladder."""

    key: str
    detail: str  # what the row is, beyond its scenario
    scenario: Scenario
    target: str  # the limit, as a multiple of the first rung
    rungs: tuple[Rung, ...]
    backends: tuple[Backend, ...] = ("asyncio", "trio")
    python: tuple[int, int] = (3, 11)  # the oldest interpreter it is measured on

    @property
    def title(self) -> str:
        """The row's heading: its scenario, and what this row adds to it."""
        return f"{self.scenario.label}{self.detail}"

    def runs_here(self) -> bool:
        """Whether this interpreter is one the row is measured on."""
        return sys.version_info >= self.python


def _library(**options: Any) -> Build:
    def build(receivers: Sequence[Receiver], backend: Backend) -> Send:
        signal = asyncsignals.Signal(name="bench", **options)
        for receiver in receivers:
            signal.connect(receiver)
        return signal.send

    return build


def _instrumented(receivers: Sequence[Receiver], backend: Backend) -> Send:
    signal = asyncsignals.Signal(name="bench")
    for receiver in receivers:
        signal.connect(receiver)
    asyncsignals.add_instrument(asyncsignals.Instrument(), signal)
    return signal.send


def _around_plain(wrap: Callable[[Send], Send]) -> Build:
    def build(receivers: Sequence[Receiver], backend: Backend) -> Send:
        return wrap(_library()(receivers, backend))

    return build


FLOOR = Rung("floor", "floor: call or await each receiver, (receiver, result) pairs", _rungs.floor)
WEAK = Rung("weak", "+ receivers held weakly", _rungs.weak)
SIGNAL = Rung("signal", "+ signal= where accepted, refused in the payload", _rungs.with_signal)
LOOKUP = Rung("lookup", "+ the cached snapshot per sender", _rungs.looked_up)
CONTEXT = Rung("context", "+ a copy of the sender's context", _rungs.isolated)
ERRORS = Rung("errors", "+ per-receiver error rules, cancellation wins", _rungs.ruled)
AWAITABLES = Rung("awaitables", "+ an awaitable result awaited", _rungs.awaiting_results)
TASKS = Rung("tasks", "+ a task per receiver, started eagerly (own context)", _rungs.in_tasks)
TASK_RULES = Rung(
    "task-rules", "+ outcomes read per task, fail fast, wait for all", _rungs.ruled_tasks
)


def _asyncsignals(**options: Any) -> Rung:
    return Rung("asyncsignals", "asyncsignals send", _library(**options), library=True)


ROWS: tuple[Row, ...] = (
    Row(
        "send/1/sync",
        "",
        Scenario("send/1/sync", 1, "sync"),
        "2.0",
        (FLOOR, WEAK, SIGNAL, LOOKUP, CONTEXT, ERRORS, AWAITABLES, _asyncsignals()),
    ),
    Row(
        "send/1/async",
        "",
        Scenario("send/1/async", 1, "async"),
        "2.0",
        (FLOOR, WEAK, SIGNAL, LOOKUP, CONTEXT, ERRORS, _asyncsignals()),
    ),
    Row(
        "send/10/async/sequential",
        ", concurrent=False",
        Scenario("send/10/async", 10, "async"),
        "1.3",
        (FLOOR, WEAK, SIGNAL, LOOKUP, CONTEXT, ERRORS, _asyncsignals(concurrent=False)),
    ),
    Row(
        "send/10/async/eager",
        ", concurrent (eager tasks)",
        Scenario("send/10/async", 10, "async"),
        "3.5",
        (FLOOR, WEAK, SIGNAL, LOOKUP, TASKS, TASK_RULES, _asyncsignals()),
        backends=("asyncio",),
        python=(3, 12),
    ),
    Row(
        "send/10/sync/instrument",
        ", a no-op Instrument() on the signal",
        Scenario("send/10/sync", 10, "sync"),
        "1.3",
        (
            Rung("plain", "asyncsignals send, no instrument", _library(), library=True),
            Rung(
                "wrapped", "+ a coroutine around it (the rungs' own)", _around_plain(_rungs.wrapped)
            ),
            Rung("observed", "+ a send event begun and ended", _around_plain(_rungs.observed)),
            Rung("instrumented", "asyncsignals send + Instrument()", _instrumented, library=True),
        ),
    ),
)


def _row(key: str) -> Row:
    (row,) = [row for row in ROWS if row.key == key]
    return row


def _implementation(rung: Rung) -> Implementation:
    def build(receivers: Sequence[Receiver], robust: bool, backend: Backend) -> Send:
        return rung.build(receivers, backend)

    return Implementation(rung.name, rung.label, frozenset({"asyncio", "uvloop", "trio"}), build)


def rung_case(row_key: str, rung_name: str) -> tuple[Implementation, Scenario]:
    """The rung ``rung_name`` of row ``row_key``, as the main harness's cases are given."""
    row = _row(row_key)
    (rung,) = [rung for rung in row.rungs if rung.name == rung_name]
    return _implementation(rung), row.scenario


# -- smoke ------------------------------------------------------------------


def check_row(row: Row, backend: Backend) -> list[str]:
    """Send once through every rung of ``row``: what each got wrong (nothing, if all is right)."""
    failures: list[str] = []
    scenario = row.scenario
    receivers = make_receivers(scenario.kind, scenario.count, backend)
    for rung in row.rungs:
        send = rung.build(receivers, backend)
        results: list[tuple[Receiver, Any]] = run_on(
            backend, functools.partial(send, Sender(0), order=ORDER)
        )
        if results != [(receiver, index) for index, receiver in enumerate(receivers)]:
            failures.append(f"{row.key} {rung.name} on {backend}: {results!r}")
        if not rung.library and row.rungs[0] is FLOOR and rung not in (FLOOR, WEAK):
            # From the signal= rung on, the reserved name is refused before any receiver runs.
            try:
                run_on(backend, functools.partial(send, Sender(0), signal=1))
            except TypeError:
                pass
            else:
                failures.append(f"{row.key} {rung.name} on {backend}: took signal= as payload")
    return failures


# -- timing -----------------------------------------------------------------


def _timed(row: Row, backend: Backend, settings: Settings) -> list[float]:
    # The rungs are timed interleaved, round by round, as the main harness does.
    cases = [Case(_implementation(rung), row.scenario, backend) for rung in row.rungs]
    time_interleaved(cases, settings)
    for case in cases:
        if case.error is not None:
            raise case.error
    return [case.median for case in cases]


# -- instructions -----------------------------------------------------------


def _counted(rows: Sequence[Row], counting: Counting, jobs: int) -> dict[tuple[str, str], float]:
    source = working_tree()
    work = [(row, rung) for row in rows for rung in row.rungs]

    def count(item: tuple[Row, Rung]) -> float:
        row, rung = item
        case = [f"--costs-row={row.key}", f"--implementation={rung.name}"]
        value = count_per_send(source, case, "asyncio", counting)
        print(f"{row.key:26} {rung.name:14} {value:12,.0f} Ir/send", file=sys.stderr, flush=True)
        return value

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        values = list(pool.map(count, work))
    return {(row.key, rung.name): value for (row, rung), value in zip(work, values, strict=True)}


def ladder_lines(row: Row, values: list[float], unit: Callable[[float], str]) -> list[str]:
    """Markdown: each rung's value, its ratio to the first rung, what it adds, the library's gap."""
    first = values[0]
    lines = [
        f"## {row.title}",
        "",
        f"Target: ≤ {row.target}{TIMES} the first rung.",
        "",
        f"| rung | per send | {TIMES} first rung | added |",
        "|---|---|---|---|",
    ]
    for position, (rung, value) in enumerate(zip(row.rungs, values, strict=True)):
        added = unit(value - values[position - 1]) if position else "—"
        lines.append(f"| {rung.label} | {unit(value)} | {value / first:.2f}{TIMES} | {added} |")
    last_hand = max(i for i, rung in enumerate(row.rungs) if not rung.library)
    library = values[-1]
    lines += [
        "",
        f"asyncsignals beyond the last hand rung: {unit(library - values[last_hand])} "
        f"({library / values[last_hand]:.2f}{TIMES} it).",
        "",
    ]
    return lines


def _instructions_report(rows: Sequence[Row], options: argparse.Namespace, command: str) -> str:
    check_valgrind()
    counting = Counting(options.sends, options.baseline, options.warmup)
    values = _counted(rows, counting, options.jobs)
    lines = [
        f"# What a send's guarantees cost: {platform.python_implementation()} "
        f"{platform.python_version()}, instructions (asyncio, callgrind)",
        "",
        f"Command: `{command}`  ",
        f"asyncsignals: {working_tree().label}; " + counting.describe(),
        "",
    ]
    for row in rows:
        lines += ladder_lines(
            row, [values[row.key, rung.name] for rung in row.rungs], lambda n: f"{n:,.0f}"
        )
    return "\n".join(lines)


def _timed_report(rows: Sequence[Row], options: argparse.Namespace, command: str) -> str:
    settings = QUICK if options.quick else DEFAULT
    lines = [
        f"# What a send's guarantees cost: {platform.python_implementation()} "
        f"{platform.python_version()}, timed",
        "",
        f"Command: `{command}`. Median time per send; ratio to the first rung; what the rung adds.",
        "",
    ]
    for row in rows:
        for backend in options.backend or row.backends:
            if backend not in row.backends:
                continue
            ladder = ladder_lines(row, _timed(row, backend, settings), format_ns)
            ladder[0] = f"## {backend}: {row.title}"
            lines += ladder
            print("\n".join(ladder), file=sys.stderr, flush=True)
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.costs",
        description="What each of a send's guarantees costs, rung by rung up from the floor.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--instructions", action="store_true", help="count with callgrind")
    mode.add_argument("--quick", action="store_true", help="timed, fewer and shorter repeats")
    mode.add_argument("--smoke", action="store_true", help="every rung once, results checked")
    parser.add_argument(
        "--row",
        action="append",
        choices=[row.key for row in ROWS],
        help="only this row (repeatable; default: every row this interpreter runs)",
    )
    parser.add_argument(
        "--backend", action="append", choices=("asyncio", "trio"), help="timed: repeatable"
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="also write the report to benchmarks/results/costs-<python>-<date>.md",
    )
    counting = Counting()
    parser.add_argument("--sends", type=int, default=counting.sends, help="instructions")
    parser.add_argument("--baseline", type=int, default=counting.baseline, help="instructions")
    parser.add_argument("--warmup", type=int, default=counting.warmup, help="instructions")
    parser.add_argument("--jobs", type=int, default=1, help="instructions: callgrind runs at once")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print each row's ladder as markdown (``--smoke``: check every rung's results)."""
    options = _parser().parse_args(argv)
    chosen = [_row(key) for key in options.row] if options.row else list(ROWS)
    rows = [row for row in chosen if row.runs_here()]
    for row in chosen:
        if not row.runs_here():
            print(f"{row.key}: not on Python {platform.python_version()}", file=sys.stderr)
    if options.smoke:
        failures = [
            failure
            for row in rows
            for backend in options.backend or row.backends
            if backend in row.backends
            for failure in check_row(row, backend)
        ]
        for failure in failures:
            print(f"FAIL {failure}")
        names = ", ".join(row.key for row in rows)
        print(f"costs: {len(failures)} failure(s); every rung of {names} checked")
        return 1 if failures else 0
    command = " ".join(["python -m benchmarks.costs", *(sys.argv[1:] if argv is None else argv)])
    if options.instructions:
        report = _instructions_report(rows, options, command)
    else:
        report = _timed_report(rows, options, command)
    print(report)
    if options.write:
        version = ".".join(platform.python_version_tuple()[:2])
        suffix = "" if options.instructions else "-timed"
        name = f"costs-{platform.python_implementation().lower()}-{version}-"
        path = RESULTS / f"{name}{datetime.date.today().isoformat()}{suffix}.md"
        path.write_text(report + "\n")
        print(f"written to {path.relative_to(RESULTS.parent.parent)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
