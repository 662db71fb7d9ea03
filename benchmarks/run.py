"""The benchmark command: ``python -m benchmarks [--quick | --smoke] [--python X.Y ...]``.

Without ``--python`` everything runs in this interpreter, in one process:
every dispatcher, every scenario, on every backend. With ``--python`` (once
per interpreter) the same harness runs under each one, in a virtual
environment of its own under ``benchmarks/.venvs``, and the reports are merged.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import _report
from benchmarks._backends import BACKENDS, Backend, available
from benchmarks._implementations import Implementation, implementations
from benchmarks._measure import (
    DEFAULT,
    QUICK,
    Case,
    Settings,
    connect_cost,
    memory_cost,
    null_logging,
    smoke_case,
    smoke_robust_failures,
    supports,
    time_interleaved,
)
from benchmarks._scenarios import INSTRUMENT_SCENARIOS, Scenario, scenarios

BENCHMARKS = Path(__file__).resolve().parent
REPOSITORY = BENCHMARKS.parent
RESULTS = BENCHMARKS / "results"
VENVS = BENCHMARKS / ".venvs"

SENDERS = 10_000  # the many-senders case, and receivers connected for connect cost
MEMORY_RECEIVERS = 1_000
MEMORY_CYCLES = 10_000
PEERS = (
    "asyncsignals",
    "django",
    "blinker",
    "aiosignal",
    "async-signals",
    "anyio",
    "trio",
    "uvloop",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="asyncsignals side by side with Django, blinker, aiosignal, async-signals "
        "and hand-written floors, on asyncio, uvloop and trio.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer, shorter repeats (~1 minute)")
    mode.add_argument(
        "--smoke",
        action="store_true",
        help="run every case once, untimed, checking each dispatcher's results (CI)",
    )
    parser.add_argument(
        "--backend",
        action="append",
        choices=BACKENDS,
        help="only this backend (repeatable; default: every one installed)",
    )
    parser.add_argument(
        "--python",
        action="append",
        metavar="VERSION_OR_PATH",
        help="run under this interpreter (e.g. 3.12) in a venv under benchmarks/.venvs "
        "(repeatable; the reports are merged)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        metavar="KEY",
        help="only this dispatch scenario, e.g. send/10/sync (repeatable; skips the registry "
        "and memory measurements)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    parser.add_argument(
        "--no-write", action="store_true", help="print the report; write nothing to results/"
    )
    return parser


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _backends(requested: list[Backend] | None) -> list[Backend]:
    chosen = list(requested) if requested else list(BACKENDS)
    missing = [backend for backend in chosen if not available(backend)]
    if requested and missing:
        raise SystemExit(f"backend(s) not installed: {', '.join(missing)}")
    return [backend for backend in chosen if backend not in missing]


def _versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in PEERS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _source() -> str:
    """The commit asyncsignals was measured at, and whether its files had local changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPOSITORY,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "status", "--porcelain", "--", "asyncsignals"],
            cwd=REPOSITORY,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit} with uncommitted changes" if changes else commit


def smoke(backends: list[Backend]) -> int:
    """Every case once, no timing; each wrong result or error is reported, then exit 1."""
    started = time.perf_counter()
    checks: list[tuple[str, Callable[[], object]]] = []
    everything = implementations()
    quick_settings = Settings(repeats=1, repeat_ns=0, warmup_ns=0)
    for backend in backends:
        for scenario in scenarios(senders=100):
            for implementation in everything:
                if supports(implementation, scenario, backend):
                    checks.append(
                        (
                            f"{implementation.label}: {scenario.label} on {backend}",
                            functools.partial(smoke_case, implementation, scenario, backend),
                        )
                    )
        for implementation in everything:
            if implementation.missing is None and backend in implementation.backends:
                checks.append(
                    (
                        f"{implementation.label}: send_robust with failing receivers on {backend}",
                        functools.partial(smoke_robust_failures, implementation, backend),
                    )
                )
    for implementation in everything:
        if implementation.registry is not None and implementation.missing is None:
            checks.append(
                (
                    f"{implementation.label}: connect and disconnect",
                    functools.partial(connect_cost, implementation, 100, quick_settings, 20),
                )
            )
            checks.append(
                (
                    f"{implementation.label}: memory",
                    functools.partial(memory_cost, implementation, 10, 10),
                )
            )
    failures = 0
    for label, check in checks:
        try:
            check()
        except Exception as exc:
            failures += 1
            print(f"FAIL {label}: {type(exc).__name__}: {exc}")
    elapsed = time.perf_counter() - started
    passed = len(checks) - failures
    print(f"smoke: {passed} of {len(checks)} checks passed in {elapsed:.1f} s")
    return 1 if failures else 0


def _chosen(keys: list[str] | None) -> list[Scenario]:
    rows = scenarios(senders=SENDERS)
    if not keys:
        return rows
    known = {row.key for row in rows}
    unknown = [key for key in keys if key not in known]
    if unknown:
        raise SystemExit(
            f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return [row for row in rows if row.key in keys]


def _measure_scenario(
    everything: list[Implementation], scenario: Scenario, backend: Backend, settings: Settings
) -> dict[str, Any]:
    """Every dispatcher that supports ``scenario`` on ``backend``, timed interleaved."""
    cases: list[Case] = []
    for implementation in everything:
        if not supports(implementation, scenario, backend):
            continue
        try:
            cases.append(Case(implementation, scenario, backend))
        except Exception as exc:
            _progress(f"ERROR {implementation.label} {scenario.label} on {backend}: {exc!r}")
    time_interleaved(cases, settings)
    cells: dict[str, Any] = {}
    for case in cases:
        if case.error is not None:
            _progress(
                f"ERROR {case.implementation.label} {scenario.label} on {backend}: {case.error!r}"
            )
            continue
        cells[case.implementation.name] = {
            "median_ns": case.median,
            "samples_ns": case.samples,
            "iterations": case.iterations,
        }
    _progress(
        f"{backend:8} {scenario.label:48} "
        + "  ".join(f"{k}={_report.format_ns(v['median_ns'])}" for k, v in cells.items())
    )
    return cells


def measure(
    backends: list[Backend],
    settings: Settings,
    mode: str,
    command: str,
    only: list[str] | None = None,
) -> dict[str, Any]:
    """Run every timed case (or the ``only`` scenarios) and return the results as plain data."""
    everything = implementations()
    rows = _chosen(only)
    timings: dict[str, dict[str, dict[str, Any]]] = {}
    with null_logging():
        for backend in backends:
            timings[backend] = {}
            for scenario in rows:
                timings[backend][scenario.key] = _measure_scenario(
                    everything, scenario, backend, settings
                )
    registries = [
        i for i in everything if i.registry is not None and i.missing is None and not only
    ]
    connect: dict[str, Any] = {}
    memory: dict[str, Any] = {}
    for implementation in registries:
        cost = connect_cost(implementation, SENDERS, settings)
        connect[implementation.name] = vars(cost)
        memory[implementation.name] = vars(
            memory_cost(implementation, MEMORY_RECEIVERS, MEMORY_CYCLES)
        )
        _progress(f"registry {implementation.label}: {connect[implementation.name]}")
    version = platform.python_version()
    return {
        "interpreter": f"{platform.python_implementation()} {version}",
        "python_short": ".".join(version.split(".")[:2]),
        "date": datetime.date.today().isoformat(),
        "mode": mode,
        "command": command,
        "platform": f"{platform.platform()}, {platform.machine()}",
        "versions": _versions(),
        "source": _source(),
        "labels": {i.name: i.label for i in everything},
        "instrument_columns": [i.name for i in everything if i.instrument_column],
        "main_columns": [i.name for i in everything if i.main_column],
        "instrument_scenarios": sorted(INSTRUMENT_SCENARIOS),
        "partial": bool(only),
        "missing": {i.name: i.missing for i in everything if i.missing is not None},
        "scenarios": [{"key": s.key, "label": s.label} for s in rows],
        "senders": SENDERS,
        "connected": SENDERS,
        "timings": timings,
        "connect": connect,
        "memory": memory,
    }


def _stem(results: dict[str, Any]) -> str:
    interpreter = results["interpreter"].split()[0].lower()
    suffix = "-quick" if results["mode"] == "quick" else ""
    # A run of chosen scenarios never overwrites a whole run's report.
    suffix += "-partial" if results.get("partial") else ""
    return f"{interpreter}-{results['python_short']}-{results['date']}{suffix}"


def write_report(results: dict[str, Any], write: bool) -> str:
    """Write the markdown, the chart and the raw JSON to results/; return the markdown."""
    chart_name: str | None = None
    if write:
        RESULTS.mkdir(exist_ok=True)
        stem = _stem(results)
        # The chart's headline scenarios are only all there in a whole run.
        if not results.get("partial") and _report.chart(results, RESULTS / f"{stem}.png"):
            chart_name = f"{stem}.png"
        (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    text = _report.markdown(results, chart_name)
    if write:
        (RESULTS / f"{_stem(results)}.md").write_text(text)
    return text


def _runs(python: str, spec: str) -> bool:
    check = f"import sys; sys.exit(sys.version.startswith('{spec}.') is False)"
    return subprocess.run([python, "-c", check], check=False, capture_output=True).returncode == 0


def _interpreter(spec: str) -> str:
    """A Python executable for ``spec``: a path, or a version like ``3.12``."""
    if Path(spec).exists():
        return spec
    if spec == f"{sys.version_info.major}.{sys.version_info.minor}":
        return sys.executable
    # pyenv's own builds first: its shims fail for versions that are not selected.
    candidates = sorted((Path.home() / ".pyenv" / "versions").glob(f"{spec}*/bin/python{spec}"))
    found = shutil.which(f"python{spec}")
    for candidate in [*reversed([str(c) for c in candidates]), *([found] if found else [])]:
        if _runs(candidate, spec):
            return candidate
    raise SystemExit(f"no working interpreter found for Python {spec}")


def _environment(spec: str) -> str:
    """The interpreter to benchmark ``spec`` with, in a venv with the bench extra."""
    interpreter = _interpreter(spec)
    if interpreter == sys.executable:
        return interpreter
    name = "python" + spec if not Path(spec).exists() else Path(spec).name
    venv = VENVS / name
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    if not python.exists():
        _progress(f"creating {venv.relative_to(REPOSITORY)}")
        subprocess.run([interpreter, "-m", "venv", str(venv)], check=True)
    probe = "import asyncsignals, django, blinker, aiosignal, async_signals, trio, matplotlib"
    if subprocess.run([str(python), "-c", probe], check=False, capture_output=True).returncode:
        _progress(f"installing asyncsignals[bench] into {venv.relative_to(REPOSITORY)}")
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-e", f"{REPOSITORY}[bench]"], check=True
        )
    return str(python)


def drive(arguments: argparse.Namespace, passthrough: list[str], command: str) -> int:
    """Run the harness under each ``--python`` and merge the reports.

    Each report records ``command``, the one the user ran, rather than the
    child's own arguments (no ``--python``, and the driver's ``--no-write``).
    """
    merged: list[dict[str, Any]] = []
    for spec in arguments.python:
        python = _environment(spec)
        with tempfile.TemporaryDirectory() as directory:
            output = Path(directory) / "results.json"
            child = [python, "-m", "benchmarks", *passthrough, "--json", str(output)]
            _progress(f"== Python {spec}")
            # The child's report is printed once, merged, below.
            completed = subprocess.run(
                child,
                check=False,
                cwd=REPOSITORY,
                stdout=None if arguments.smoke else subprocess.DEVNULL,
            )
            if completed.returncode:
                return completed.returncode
            if arguments.smoke:
                continue
            results = json.loads(output.read_text())
            results["command"] = command
            merged.append(results)
    if arguments.smoke:
        return 0
    sections = [write_report(results, not arguments.no_write) for results in merged]
    # Each interpreter's report becomes a section: headings one level down.
    demoted = [("\n" + section).replace("\n#", "\n##") for section in sections]
    text = "# asyncsignals benchmarks across interpreters\n" + "".join(demoted)
    if not arguments.no_write:
        names = "+".join(results["python_short"] for results in merged)
        suffix = "-quick" if arguments.quick else ""
        suffix += "-partial" if arguments.scenario else ""
        (RESULTS / f"merged-{names}-{datetime.date.today().isoformat()}{suffix}.md").write_text(
            text
        )
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks``."""
    raw = sys.argv[1:] if argv is None else argv
    arguments = _parser().parse_args(raw)
    command = " ".join(["python -m benchmarks", *_without_json(raw)])
    if arguments.python:
        passthrough = [a for a in raw if a not in {"--quick", "--smoke", "--no-write"}]
        passthrough = _without_python(passthrough)
        passthrough += [
            flag for flag, on in (("--quick", arguments.quick), ("--smoke", arguments.smoke)) if on
        ]
        passthrough += ["--no-write"]  # the driver writes the reports itself
        return drive(arguments, passthrough, command)
    backends = _backends(arguments.backend)
    if arguments.smoke:
        return smoke(backends)
    _chosen(arguments.scenario)  # an unknown name fails before anything is measured
    settings = QUICK if arguments.quick else DEFAULT
    started = time.perf_counter()
    results = measure(
        backends, settings, "quick" if arguments.quick else "full", command, arguments.scenario
    )
    _progress(f"measured in {time.perf_counter() - started:.0f} s")
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(results) + "\n")
    text = write_report(results, not arguments.no_write)
    print(text)
    return 0


def _without_python(arguments: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
            continue
        if argument == "--python":
            skip = True
            continue
        if argument.startswith("--python="):
            continue
        kept.append(argument)
    return _without_json(kept)


def _without_json(arguments: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
            continue
        if argument == "--json":
            skip = True
            continue
        if argument.startswith("--json="):
            continue
        kept.append(argument)
    return kept


__all__ = ["Implementation", "main"]
