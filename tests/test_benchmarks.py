"""The benchmark harness measures what it says: its checks, rounds, targets and counts."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import _measure, _report, instructions
from benchmarks._implementations import Implementation, implementations
from benchmarks._measure import Case, Settings, null_logging, smoke_case, time_interleaved
from benchmarks._scenarios import TIMES, Scenario, scenarios

ROOT = Path(__file__).resolve().parent.parent
FAILING = "send_robust/10/failing"


def _implementation(name: str) -> Implementation:
    (found,) = [i for i in implementations() if i.name == name]
    return found


def _scenario(key: str) -> Scenario:
    (found,) = [s for s in scenarios(senders=10) if s.key == key]
    return found


@pytest.mark.parametrize("name", ["loop", "asyncsignals", "django", "async_signals"])
def test_smoke_accepts_each_exception_in_its_own_slot_on_the_failing_row(name: str) -> None:
    """On the failing row each robust dispatcher hands back every receiver's own exception."""
    implementation = _implementation(name)
    if implementation.missing is not None:
        pytest.skip(implementation.missing)
    smoke_case(implementation, _scenario(FAILING), "asyncio")


def test_smoke_rejects_a_failing_row_whose_exceptions_are_not_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A robust send that returns the exceptions but logs nothing fails the smoke check."""
    monkeypatch.setattr("benchmarks._implementations._log_failure", lambda receiver, exc: None)
    with pytest.raises(_measure.SmokeError, match="0 failures logged"):
        smoke_case(_implementation("loop"), _scenario(FAILING), "asyncio")


def test_null_logging_keeps_failure_records_on_but_printed_nowhere() -> None:
    """Inside null_logging the loggers still make ERROR records, handled only by the sink."""
    logger = logging.getLogger("asyncsignals")
    before = (logger.handlers[:], logger.propagate, logger.level)
    records: list[logging.LogRecord] = []

    class Sink(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logging.disable(logging.CRITICAL)
    try:
        with null_logging(Sink()):
            assert logger.isEnabledFor(logging.ERROR)
            assert not logger.propagate
            logger.error("failed")
        assert logging.root.manager.disable == logging.CRITICAL
    finally:
        logging.disable(logging.NOTSET)
    assert [record.getMessage() for record in records] == ["failed"]
    assert (logger.handlers, logger.propagate, logger.level) == before


def test_timing_interleaves_every_case_once_per_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each round times every case once, in an order rotated from round to round."""
    order: list[str] = []
    original = Case.repeat

    def recording(case: Case) -> float:
        order.append(case.implementation.name)
        return original(case)

    monkeypatch.setattr(Case, "repeat", recording)
    scenario = _scenario("send/1/sync")
    cases = [Case(_implementation(name), scenario, "asyncio") for name in ("loop", "asyncsignals")]
    time_interleaved(cases, Settings(repeats=3, repeat_ns=100_000, warmup_ns=0))
    assert order == ["loop", "asyncsignals", "asyncsignals", "loop", "loop", "asyncsignals"]
    assert all(len(case.samples) == 3 and case.median > 0 for case in cases)


def _results(python: str, cells: dict[str, dict[str, float]]) -> dict[str, Any]:
    timings = {
        "asyncio": {
            key: {name: {"median_ns": value} for name, value in row.items()}
            for key, row in cells.items()
        }
    }
    return {
        "python_short": python,
        "timings": timings,
        "versions": {"django": "6.1.3"},
        "missing": {},
        "senders": 10_000,
        "connected": 10_000,
        "memory": {},
        "connect": {},
    }


def _verdicts(results: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {v.target: (v.status, v.measured) for v in _report.targets(results)}


def test_targets_check_the_failing_row_against_django_and_the_instrument_against_send() -> None:
    """The failing-row and no-op-instrument targets read their own rows and bases."""
    results = _results(
        "3.12",
        {
            FAILING: {"asyncsignals": 90.0, "django": 100.0},
            "send/10/sync": {"loop": 10.0, "asyncsignals": 14.0, "asyncsignals-instrumented": 21.0},
        },
    )
    verdicts = _verdicts(results)
    (django,) = [v for k, v in verdicts.items() if "asend_robust" in k]
    (instrument,) = [v for k, v in verdicts.items() if "no-op instrument" in k]
    assert django == ("PASS", f"0.90{TIMES} (Django 6.1.3)")
    assert instrument == ("FAIL", f"1.50{TIMES}")
    ten_sync = verdicts[f"send, 10 sync receivers ≤ 1.5{TIMES} the floor (asyncio)"]
    assert ten_sync == ("PASS", f"1.40{TIMES}")
    assert verdicts[f"send_robust, 1 sync receiver ≤ 2{TIMES} the floor (uvloop)"][0] == "SKIP"


def test_targets_skip_what_this_interpreter_is_not_held_to() -> None:
    """On 3.11 the Python 3.12 target and a Django older than 6.1 are SKIP, with the ratio."""
    results = _results(
        "3.11", {FAILING: {"asyncsignals": 90.0, "django": 100.0}, "send/10/async": {"loop": 1.0}}
    )
    results["versions"] = {"django": "5.2.19"}
    verdicts = _verdicts(results)
    (concurrent,) = [v for k, v in verdicts.items() if f"3.5{TIMES}" in k]
    (django,) = [v for k, v in verdicts.items() if "asend_robust" in k]
    assert concurrent == ("SKIP", "Python 3.11")
    assert django == ("SKIP", f"0.90{TIMES} against Django 5.2.19, not 6.1")


def test_instructions_per_send_subtract_the_shorter_run() -> None:
    """Start-up cost cancels: (Ir(long) - Ir(short)) / (long sends - short sends)."""
    assert instructions.per_send(1_000_000, 3_000_000, 1000, 3000) == 1000.0
    with pytest.raises(ValueError, match="more often"):
        instructions.per_send(1, 2, 3000, 3000)


def test_instructions_read_the_total_from_callgrind_output() -> None:
    """The summary line of a callgrind output file is its total instruction count."""
    text = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 123456789\n"
    assert instructions.parse_total(text) == 123_456_789
    with pytest.raises(ValueError, match="no summary"):
        instructions.parse_total("events: Ir\n")


def test_instruction_child_imports_asyncsignals_from_pythonpath_and_this_harness(
    tmp_path: Path,
) -> None:
    """A revision's tree supplies asyncsignals only: its own benchmarks/ is never imported."""
    shutil.copytree(ROOT / "asyncsignals", tmp_path / "asyncsignals")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("raise ImportError('the old harness')\n")
    completed = subprocess.run(
        [
            sys.executable,
            "-P",
            str(instructions.CHILD),
            "--implementation=asyncsignals",
            "--scenario=send_robust/10/failing",
            "--backend=asyncio",
            "--sends=3",
            "--warmup=1",
        ],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""  # failures logged to a NullHandler, never printed
    report = json.loads(completed.stdout)
    assert Path(report["asyncsignals"]) == (tmp_path / "asyncsignals").resolve()
