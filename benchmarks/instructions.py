"""Instructions per send, counted by callgrind: a measure that noise does not move.

``python -m benchmarks.instructions --scenario KEY [--rev REV ...]`` runs each
chosen scenario (the keys of ``python -m benchmarks --scenario``) for
asyncsignals and for the hand loop (the floor) under
``valgrind --tool=callgrind``, twice: with ``--baseline`` sends and with
``--sends`` sends. Start-up, imports and warm-up are the same in both runs, so

    instructions per send = (Ir(sends) - Ir(baseline)) / (sends - baseline)

counts the sends alone. ``--rev REV`` (repeatable) also measures asyncsignals
at a git revision, checked out into a temporary ``git worktree`` and imported
from there through ``PYTHONPATH`` (the harness stays this one), so two
versions of the hot path are compared in one command. Timings on a shared
machine move by 10-40 % between runs; these counts move by well under 1 %.

    python -m benchmarks.instructions --scenario send/1/async --scenario send/10/sync
    python -m benchmarks.instructions --scenario send/10/sync --rev main --rev HEAD~1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks._backends import BACKENDS, Backend
from benchmarks._implementations import implementations
from benchmarks._measure import supports
from benchmarks._scenarios import TIMES, scenarios

BENCHMARKS = Path(__file__).resolve().parent
REPOSITORY = BENCHMARKS.parent
CHILD = BENCHMARKS / "_callgrind_child.py"
# The timed run's columns that are asyncsignals itself: the plain send, the
# sequential mode, and the send under a no-op instrument.
ASYNCSIGNALS_DISPATCHERS = ("asyncsignals", "asyncsignals-sequential", "asyncsignals-instrumented")
DEFAULT_SCENARIOS = ("send/1/async", "send/10/sync")


@dataclass(frozen=True)
class Source:
    """Where asyncsignals is imported from: the working tree or a checked-out revision."""

    label: str
    path: Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions",
        description="Instructions per send (callgrind) for asyncsignals and the floor, "
        "on the working tree and on chosen git revisions.",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        metavar="KEY",
        help="a dispatch scenario, e.g. send/10/sync (repeatable; default: "
        + ", ".join(DEFAULT_SCENARIOS)
        + ")",
    )
    parser.add_argument(
        "--rev",
        action="append",
        default=[],
        metavar="REV",
        help="also measure asyncsignals at this git revision (repeatable)",
    )
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio")
    parser.add_argument(
        "--dispatcher",
        choices=ASYNCSIGNALS_DISPATCHERS,
        default="asyncsignals",
        help="which of asyncsignals' columns to count (default: asyncsignals, the plain send)",
    )
    parser.add_argument(
        "--sends", type=int, default=3000, help="sends in the longer run (default 3000)"
    )
    parser.add_argument(
        "--baseline", type=int, default=1000, help="sends in the shorter run (default 1000)"
    )
    parser.add_argument(
        "--warmup", type=int, default=200, help="untimed sends before either run (default 200)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="callgrind runs at once (default 1; counts do not depend on it, wall time does)",
    )
    return parser


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _git(*arguments: str, cwd: Path = REPOSITORY) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def _working_tree_label() -> str:
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        changed = _git("status", "--porcelain", "--", "asyncsignals")
    except (OSError, subprocess.CalledProcessError):
        return "working tree"
    return f"working tree ({commit}{' + changes' if changed else ''})"


@contextmanager
def _checked_out(revision: str, directory: Path) -> Iterator[Source]:
    """``revision`` in a temporary git worktree under ``directory``, removed afterwards."""
    commit = _git("rev-parse", "--verify", "--short", f"{revision}^{{commit}}")
    tree = directory / f"rev-{commit}"
    _git("worktree", "add", "--detach", "--quiet", str(tree), commit)
    try:
        yield Source(f"{revision} ({commit})" if revision != commit else commit, tree)
    finally:
        _git("worktree", "remove", "--force", str(tree))


def parse_total(callgrind_output: str) -> int:
    """The total instruction count (Ir) of a callgrind output file's text."""
    for line in callgrind_output.splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError("no summary line in the callgrind output")


def per_send(short: int, long: int, short_sends: int, long_sends: int) -> float:
    """Instructions per send from two runs that differ only in their number of sends."""
    if long_sends <= short_sends:
        raise ValueError("the longer run must send more often than the shorter one")
    return (long - short) / (long_sends - short_sends)


@dataclass(frozen=True)
class Counting:
    """How many sends each of a count's two callgrind runs makes."""

    sends: int = 3000
    baseline: int = 1000
    warmup: int = 200

    def describe(self) -> str:
        """The method, in a sentence, for a report's header."""
        return (
            f"per send = (Ir({self.sends} sends) - Ir({self.baseline} sends)) / "
            f"{self.sends - self.baseline}, after {self.warmup} warm-up sends, "
            "PYTHONHASHSEED=0, collector off."
        )


def working_tree() -> Source:
    """This checkout's own asyncsignals."""
    return Source(_working_tree_label(), REPOSITORY)


def check_valgrind() -> None:
    """Exit with a message when valgrind cannot be run."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (callgrind counts the instructions)")


def _count(
    source: Source,
    case: list[str],
    backend: Backend,
    sends: int,
    warmup: int,
    keep: Path | None = None,
) -> int:
    """Ir of one child run under callgrind; checks the child imported ``source``'s package.

    ``case``: the child's arguments that name what it sends through
    (``--implementation=...``, ``--scenario=...`` or ``--costs-row=...``).
    ``keep``: where to copy callgrind's output file, for callgrind_annotate.
    """
    with tempfile.TemporaryDirectory() as directory:
        output = Path(directory) / "callgrind.out"
        environment = {
            **os.environ,
            "PYTHONPATH": str(source.path),
            "PYTHONHASHSEED": "0",  # the same dict layouts in both runs
        }
        completed = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--quiet",
                f"--callgrind-out-file={output}",
                sys.executable,
                "-P",  # no script directory on sys.path: asyncsignals from PYTHONPATH
                str(CHILD),
                *case,
                f"--backend={backend}",
                f"--sends={sends}",
                f"--warmup={warmup}",
            ],
            cwd=directory,
            env=environment,
            check=False,
            capture_output=True,
            text=True,
        )
        if completed.returncode:
            raise RuntimeError(f"{' '.join(case)} failed under callgrind:\n{completed.stderr}")
        imported = Path(json.loads(completed.stdout.splitlines()[-1])["asyncsignals"])
        if imported != (source.path / "asyncsignals").resolve():
            raise RuntimeError(f"asyncsignals came from {imported}, not from {source.path}")
        if keep is not None:
            shutil.copyfile(output, keep)
        return parse_total(output.read_text())


def count_per_send(
    source: Source,
    case: list[str],
    backend: Backend,
    counting: Counting,
    keep: Path | None = None,
) -> float:
    """Instructions per send of ``case``: two callgrind runs, subtracted.

    ``keep``: a path stem; the two runs' output files are copied to
    ``keep.short`` and ``keep.long``.
    """
    counts = [
        _count(
            source,
            case,
            backend,
            sends,
            counting.warmup,
            None if keep is None else keep.with_name(f"{keep.name}.{length}"),
        )
        for sends, length in ((counting.baseline, "short"), (counting.sends, "long"))
    ]
    return per_send(counts[0], counts[1], counting.baseline, counting.sends)


@dataclass(frozen=True)
class Job:
    """One quantity to count: an implementation on a scenario, with one source's package."""

    source: Source
    implementation: str
    scenario: str


def measure_one(job: Job, arguments: argparse.Namespace) -> float:
    """Instructions per send of ``job``: two callgrind runs, subtracted."""
    counting = Counting(arguments.sends, arguments.baseline, arguments.warmup)
    case = [f"--implementation={job.implementation}", f"--scenario={job.scenario}"]
    value = count_per_send(job.source, case, arguments.backend, counting)
    _progress(
        f"{job.source.label:32} {job.implementation:14} {job.scenario:26} {value:12,.0f} Ir/send"
    )
    return value


def table(
    keys: list[str],
    floor: dict[str, float],
    sources: list[Source],
    counts: dict[str, list[float]],
    dispatcher: str = "asyncsignals",
) -> list[str]:
    """Markdown: instructions per send, ÷ the floor, and ÷ the first source for the others."""
    header = ["scenario", "floor (hand loop)"]
    for index, source in enumerate(sources):
        header += [f"{dispatcher}, {source.label}", "÷ floor"]
        if index:
            header.append(f"÷ {sources[0].label}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in keys:
        row = [key, f"{floor[key]:,.0f}"]
        for index, value in enumerate(counts[key]):
            row += [f"{value:,.0f}", f"{value / floor[key]:.2f}{TIMES}"]
            if index:
                row.append(f"{value / counts[key][0]:.3f}{TIMES}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.instructions``."""
    arguments = _parser().parse_args(argv)
    check_valgrind()
    if arguments.sends <= arguments.baseline:
        raise SystemExit("--sends must be larger than --baseline")
    keys: list[str] = arguments.scenario or list(DEFAULT_SCENARIOS)
    rows = {row.key: row for row in scenarios()}
    unknown = [key for key in keys if key not in rows]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(rows)}")
    waiting = [key for key in keys if rows[key].wall]
    if waiting:
        raise SystemExit(f"{', '.join(waiting)}: a wall-time row, which sleeps; nothing to count")
    by_name = {i.name: i for i in implementations()}
    backend: Backend = arguments.backend
    for key in keys:
        for name in ("loop", arguments.dispatcher):
            if not supports(by_name[name], rows[key], backend):
                raise SystemExit(f"{name} does not run {key} on {backend}")
    working = working_tree()
    with tempfile.TemporaryDirectory() as directory, ExitStack() as trees:
        sources = [working]
        sources += [
            trees.enter_context(_checked_out(revision, Path(directory)))
            for revision in arguments.rev
        ]
        # The floor is the harness's own code: counted once, whatever the revision.
        jobs = [Job(working, "loop", key) for key in keys]
        jobs += [Job(source, arguments.dispatcher, key) for source in sources for key in keys]
        with ThreadPoolExecutor(max(1, arguments.jobs)) as pool:
            values = dict(
                zip(jobs, pool.map(lambda job: measure_one(job, arguments), jobs), strict=True)
            )
    floor = {key: values[Job(working, "loop", key)] for key in keys}
    counts = {
        key: [values[Job(source, arguments.dispatcher, key)] for source in sources] for key in keys
    }
    command = " ".join(["python -m benchmarks.instructions", *(argv or sys.argv[1:])])
    lines = [
        f"# Instructions per send ({backend}, callgrind)",
        "",
        f"Command: `{command}`  ",
        f"Python {sys.version.split()[0]}; "
        + Counting(arguments.sends, arguments.baseline, arguments.warmup).describe(),
        "",
        *table(keys, floor, sources, counts, arguments.dispatcher),
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
