"""Turning results into the markdown table, the ratio targets and a PNG chart."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Results = dict[str, Any]

TIMES = "\N{MULTIPLICATION SIGN}"

CHART_SCENARIOS = (
    "send/1/async",
    "send/10/async",
    "send/100/async",
    "send/10/sync",
    "send/10/mixed",
    "send/100/suspend",
    "send_robust/10/async",
)


def format_ns(nanoseconds: float) -> str:
    """A duration with a unit that keeps three significant figures readable."""
    if nanoseconds < 1_000:
        return f"{nanoseconds:.0f} ns"
    if nanoseconds < 1_000_000:
        return f"{nanoseconds / 1_000:.3g} µs"
    return f"{nanoseconds / 1_000_000:.4g} ms"


def _median(results: Results, backend: str, scenario: str, name: str) -> float | None:
    cell = results["timings"].get(backend, {}).get(scenario, {}).get(name)
    return None if cell is None else float(cell["median_ns"])


def _ratio(results: Results, backend: str, scenario: str, name: str, base: str) -> float | None:
    value = _median(results, backend, scenario, name)
    floor = _median(results, backend, scenario, base)
    if value is None or floor is None or floor <= 0:
        return None
    return value / floor


def _group_name(backend: str) -> tuple[str, str]:
    return ("nursery", "trio nursery") if backend == "trio" else ("taskgroup", "TaskGroup")


def dispatch_table(results: Results, backend: str) -> list[str]:
    """The markdown table of one backend: a row per scenario, a column per dispatcher."""
    timings = results["timings"].get(backend, {})
    labels: dict[str, str] = results["labels"]
    # Results written before the main_columns key kept every instrument aside.
    aside = set(results.get("instrument_columns", ()))
    main = set(results.get("main_columns", set(labels) - aside))
    present = [
        name for name in labels if name in main and any(name in row for row in timings.values())
    ]
    group, group_label = _group_name(backend)
    header = ["scenario", *(labels[name] for name in present)]
    header.append(f"asyncsignals ÷ {group_label}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for scenario in results["scenarios"]:
        key = scenario["key"]
        if key not in timings:
            continue
        cells = [scenario["label"]]
        for name in present:
            value = _median(results, backend, key, name)
            ratio = _ratio(results, backend, key, name, "loop")
            if value is None:
                cells.append("—")
            elif ratio is None or name == "loop":
                cells.append(format_ns(value))
            else:
                cells.append(f"{format_ns(value)} · {ratio:.2f}{TIMES}")
        against_group = _ratio(results, backend, key, "asyncsignals", group)
        cells.append("—" if against_group is None else f"{against_group:.2f}{TIMES}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def instruments_table(results: Results) -> list[str]:
    """asyncsignals' send with no instrument, one on another signal, and one on it."""
    columns = ["asyncsignals", *results.get("instrument_columns", ())]
    labels: dict[str, str] = results["labels"]
    scenario_labels = {row["key"]: row["label"] for row in results["scenarios"]}
    rows = set(results.get("instrument_scenarios", scenario_labels))
    header = [
        "backend",
        "scenario",
        "asyncsignals, no instrument",
        *(labels[name] for name in columns[1:]),
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for backend, timings in results["timings"].items():
        for key, cells in timings.items():
            if key not in rows or not any(name in cells for name in columns[1:]):
                continue
            row = [backend, scenario_labels[key]]
            for name in columns:
                value = _median(results, backend, key, name)
                ratio = _ratio(results, backend, key, name, "asyncsignals")
                if value is None:
                    row.append("—")
                elif ratio is None or name == "asyncsignals":
                    row.append(format_ns(value))
                else:
                    row.append(f"{format_ns(value)} · {ratio:.2f}{TIMES}")
            lines.append("| " + " | ".join(row) + " |")
    return lines if len(lines) > 2 else []


def connect_table(results: Results) -> list[str]:
    """Connect/disconnect cost with many receivers already connected."""
    labels: dict[str, str] = results["labels"]
    connected = int(results["connected"])
    lines = [
        f"| registry ({connected:,} receivers connected) | connect | disconnect |",
        "|---|---|---|",
    ]
    for name, cost in results["connect"].items():
        lines.append(
            f"| {labels[name]} | {format_ns(cost['connect_ns'])} | "
            f"{format_ns(cost['disconnect_ns'])} |"
        )
    return lines


def memory_table(results: Results) -> list[str]:
    """tracemalloc bytes per connected receiver and retained per connect+disconnect."""
    labels: dict[str, str] = results["labels"]
    lines = [
        "| registry | bytes per function receiver | bytes per bound-method receiver "
        "| bytes retained per connect+disconnect |",
        "|---|---|---|---|",
    ]
    for name, cost in results["memory"].items():
        lines.append(
            f"| {labels[name]} | {cost['function_bytes']:.0f} | {cost['method_bytes']:.0f} "
            f"| {cost['retained_bytes']:.1f} |"
        )
    return lines


@dataclass(frozen=True)
class Verdict:
    """One ratio target, checked."""

    target: str
    status: str  # PASS, FAIL or SKIP
    measured: str


def _ratio_target(
    target: str,
    results: Results,
    backend: str,
    scenario: str,
    base: str,
    limit: float,
    name: str = "asyncsignals",
) -> Verdict:
    if backend not in results["timings"]:
        return Verdict(target, "SKIP", f"{backend} not measured")
    missing = results.get("missing", {}).get(name)
    if missing:
        return Verdict(target, "FAIL", f"not measured: {missing}")
    ratio = _ratio(results, backend, scenario, name, base)
    if ratio is None:
        return Verdict(target, "SKIP", "not measured")
    return Verdict(target, "PASS" if ratio <= limit else "FAIL", f"{ratio:.2f}{TIMES}")


def _django_target(results: Results) -> Verdict:
    """A failing robust send is no slower than Django 6.1's ``asend_robust``."""
    target = (
        f"send_robust, 10 failing async receivers (logged to a NullHandler) ≤ 1{TIMES} "
        "Django 6.1's asend_robust (asyncio)"
    )
    verdict = _ratio_target(target, results, "asyncio", "send_robust/10/failing", "django", 1.0)
    version = results.get("versions", {}).get("django")
    if verdict.status == "SKIP" or version is None:
        return verdict
    release = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if release < (6, 1):
        # Django 6.x needs Python 3.12: an older Django is a different peer.
        return Verdict(target, "SKIP", f"{verdict.measured} against Django {version}, not 6.1")
    return Verdict(target, verdict.status, f"{verdict.measured} (Django {version})")


def targets(results: Results) -> list[Verdict]:
    """Every ratio target, checked against one interpreter's results."""
    python = tuple(int(part) for part in results["python_short"].split("."))
    verdicts: list[Verdict] = []
    for backend in ("asyncio", "uvloop", "trio"):
        for method in ("send", "send_robust"):
            for count, limit in ((1, 2.0), (10, 1.5)):
                verdicts.append(
                    _ratio_target(
                        f"{method}, {count} sync receiver{'s' * (count > 1)} ≤ {limit:g}{TIMES} "
                        f"the floor ({backend})",
                        results,
                        backend,
                        f"{method}/{count}/sync",
                        "loop",
                        limit,
                    )
                )
    for backend in ("asyncio", "uvloop", "trio"):
        verdicts.append(
            _ratio_target(
                f"1 async receiver, no suspend ≤ 2{TIMES} the floor ({backend})",
                results,
                backend,
                "send/1/async",
                "loop",
                2.0,
            )
        )
    verdicts.append(
        _ratio_target(
            f"sequential mode, 10 async receivers, no suspend ≤ 1.3{TIMES} the floor (asyncio)",
            results,
            "asyncio",
            "send/10/async",
            "loop",
            1.3,
            name="asyncsignals-sequential",
        )
    )
    concurrent_ten = (
        f"10 async receivers, no suspend, concurrent ≤ 3.5{TIMES} the floor "
        "(asyncio, Python ≥ 3.12)"
    )
    if python >= (3, 12):
        verdicts.append(
            _ratio_target(concurrent_ten, results, "asyncio", "send/10/async", "loop", 3.5)
        )
    else:
        verdicts.append(Verdict(concurrent_ten, "SKIP", f"Python {results['python_short']}"))
    against_group = (
        f"10 async receivers, no suspend ≤ 1.1{TIMES} asyncio.TaskGroup (asyncio, Python 3.11)"
    )
    if python[:2] == (3, 11):
        verdicts.append(
            _ratio_target(against_group, results, "asyncio", "send/10/async", "taskgroup", 1.1)
        )
    else:
        verdicts.append(Verdict(against_group, "SKIP", f"Python {results['python_short']}"))
    verdicts += [
        _ratio_target(
            f"100 async receivers, suspend once ≤ 1.1{TIMES} asyncio.TaskGroup (asyncio)",
            results,
            "asyncio",
            "send/100/suspend",
            "taskgroup",
            1.1,
        ),
        _ratio_target(
            f"100 receivers sleeping 10 ms: wall time ≤ 1.05{TIMES} asyncio.TaskGroup (asyncio)",
            results,
            "asyncio",
            "send/100/sleep",
            "taskgroup",
            1.05,
        ),
        _ratio_target(
            f"trio, 10 async receivers, no suspend ≤ 1.2{TIMES} a trio nursery",
            results,
            "trio",
            "send/10/async",
            "nursery",
            1.2,
        ),
        _django_target(results),
        _ratio_target(
            f"a no-op instrument on the signal, 10 sync receivers ≤ 1.3{TIMES} the plain "
            "send (asyncio)",
            results,
            "asyncio",
            "send/10/sync",
            "asyncsignals",
            1.3,
            name="asyncsignals-instrumented",
        ),
    ]
    # Compares asyncsignals with itself: the many-senders send over the 1-sender one.
    many = _median(results, "asyncio", "send/senders/many", "asyncsignals")
    one = _median(results, "asyncio", "send/senders/1", "asyncsignals")
    growth = (
        f"one sender's send does not grow with other senders' receivers: {results['senders']:,} "
        f"senders ≤ 1.5{TIMES} 1 sender (asyncio; 1.5 is this harness's reading of 'not grow')"
    )
    if many is None or one is None:
        verdicts.append(Verdict(growth, "SKIP", "not measured"))
    else:
        status = "PASS" if many <= 1.5 * one else "FAIL"
        verdicts.append(Verdict(growth, status, f"{many / one:.2f}{TIMES}"))
    memory = results["memory"].get("asyncsignals")
    connect = results["connect"].get("asyncsignals")

    def bound(target: str, value: float | None, limit: float, unit: str) -> Verdict:
        if value is None:
            return Verdict(target, "SKIP", "not measured")
        return Verdict(target, "PASS" if value <= limit else "FAIL", f"{value:.1f} {unit}")

    verdicts += [
        bound(
            "≤ 250 bytes per weakly held function receiver",
            None if memory is None else memory["function_bytes"],
            250,
            "bytes",
        ),
        bound(
            "≤ 350 bytes per weakly held bound-method receiver",
            None if memory is None else memory["method_bytes"],
            350,
            "bytes",
        ),
        bound(
            "0 bytes retained per connect+disconnect cycle (< 0.5 rounds to 0)",
            None if memory is None else memory["retained_bytes"],
            0.49,
            "bytes",
        ),
        bound(
            f"connect ≤ 2 µs with {results['connected']:,} receivers connected",
            None if connect is None else connect["connect_ns"] / 1000,
            2.0,
            "µs",
        ),
    ]
    return verdicts


def targets_lines(results: Results) -> list[str]:
    """The targets section: one line per target with its verdict and measurement."""
    return [f"- **{v.status}** {v.target}: {v.measured}" for v in targets(results)]


def run_kind(results: Results) -> str:
    """How a run was made: full or quick repeats, every row or the chosen ones."""
    if results.get("partial"):
        return f"partial run, {results['mode']} repeats: the chosen scenarios only"
    return f"{results['mode']} run"


def markdown(results: Results, chart: str | None) -> str:
    """The whole report for one interpreter's results."""
    lines = [
        f"# asyncsignals benchmarks: {results['interpreter']}, {results['date']}",
        "",
        f"Command: `{results['command']}` ({run_kind(results)})  ",
        f"Platform: {results['platform']}  ",
        f"asyncsignals source: {results.get('source', 'unknown')}  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()),
        "",
        "Each cell: median time per send (per send in a batch; wall time for the "
        "sleeping case) · its ratio to the hand loop (the floor) on the same backend "
        "and scenario. The last column divides asyncsignals by a raw asyncio.TaskGroup "
        "(trio: a raw nursery). — : the dispatcher does not support that case. "
        "Every round times every dispatcher once, interleaved; a cell is the median of "
        "the rounds.",
        "",
        "The failing row (send_robust, every receiver raising) times failure logging as "
        "it runs in an application: logging is on, and each dispatcher's logger (the "
        "`asyncsignals` logger, Django's `django.dispatch`, async-signals' and the "
        "floors') sends its records to a `logging.NullHandler` with propagation off, so "
        "every record is made and none is printed (not `logging.disable`, which would "
        "skip making them). The no-op instrument column is asyncsignals' send with a "
        "base `Instrument()` installed on the signal.",
    ]
    missing = results.get("missing", {})
    if missing:
        lines.append("")
        lines += [f"Not measured: {results['labels'][k]} ({why})." for k, why in missing.items()]
    for backend in results["timings"]:
        lines += ["", f"## Dispatch on {backend}", "", *dispatch_table(results, backend)]
    instruments = instruments_table(results)
    if instruments:
        lines += [
            "",
            "## Instruments",
            "",
            "asyncsignals' own send: with no instrument anywhere, with one installed on "
            "another signal, and with one installed on this signal (a no-op instrument: the "
            "cost of the hook itself; OpenTelemetry: a span per send and per receiver, SDK "
            "tracer provider with no exporter). Ratios are to the send with no instrument.",
            "",
            *instruments,
        ]
    lines += ["", "## Connect and disconnect", "", *connect_table(results)]
    lines += ["", "## Memory (tracemalloc)", "", *memory_table(results)]
    lines += ["", "## Targets", "", *targets_lines(results)]
    if chart is not None:
        lines += ["", f"![ratio to the floor]({chart})"]
    return "\n".join(lines) + "\n"


def chart(results: Results, path: Path) -> bool:
    """A PNG of ratios to the floor for the headline scenarios; False without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no chart (pip install -e '.[bench]')", file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = list(results["timings"])
    labels: dict[str, str] = results["labels"]
    aside = set(results.get("instrument_columns", ()))
    names = [
        name
        for name in labels
        if name != "loop"
        and name not in aside
        and any(name in results["timings"][b].get(s, {}) for b in backends for s in CHART_SCENARIOS)
    ]
    figure, axes = plt.subplots(
        len(backends), 1, figsize=(13, 4.2 * len(backends)), squeeze=False, sharey=True
    )
    width = 0.8 / max(len(names), 1)
    scenario_labels = {row["key"]: row["label"] for row in results["scenarios"]}
    for axis, backend in zip(axes[:, 0], backends, strict=True):
        for offset, name in enumerate(names):
            heights = []
            for scenario in CHART_SCENARIOS:
                ratio = _ratio(results, backend, scenario, name, "loop")
                heights.append(ratio if ratio is not None else 0.0)
            positions = [i + offset * width for i in range(len(CHART_SCENARIOS))]
            axis.bar(positions, heights, width, label=labels[name])
        axis.axhline(1.0, color="black", linewidth=0.8)
        axis.set_yscale("log")
        axis.set_ylabel(f"{TIMES} hand loop (log)")
        axis.set_title(f"{results['interpreter']} · {backend}")
        axis.set_xticks([i + 0.4 - width / 2 for i in range(len(CHART_SCENARIOS))])
        axis.set_xticklabels(
            [scenario_labels[s].replace(" · ", "\n") for s in CHART_SCENARIOS], fontsize=8
        )
    axes[0, 0].legend(fontsize=8, ncol=3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
