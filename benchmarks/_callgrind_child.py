"""One instruction-count run: ``sends`` sends of one case, run under callgrind.

Run as a script with ``python -P``, by ``benchmarks.instructions`` only, so
that ``asyncsignals`` is imported from ``PYTHONPATH`` (the working tree, or a
revision checked out elsewhere) while the harness is always this one: the
package is imported first, and only then is this harness put on the path.
Prints, as JSON, where ``asyncsignals`` came from, so the caller can check.

The case is a dispatcher of the main harness on one of its scenarios
(``--implementation``, ``--scenario``), or a rung of one row of the costs
ladder (``--costs-row``, ``--implementation``: the rung's name).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path
from typing import Any, cast


def main() -> int:
    """Send ``--warmup`` times, then ``--sends`` times with the collector off."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--implementation", required=True)
    parser.add_argument("--scenario")
    parser.add_argument("--costs-row")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--sends", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    arguments = parser.parse_args()

    import asyncsignals  # the revision under test, from PYTHONPATH

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks._backends import BACKENDS, Backend, run_on
    from benchmarks._implementations import implementations
    from benchmarks._measure import null_logging, prepare
    from benchmarks._scenarios import ORDER, scenarios

    assert arguments.backend in BACKENDS
    backend = cast(Backend, arguments.backend)
    if arguments.costs_row is not None:
        from benchmarks.costs import rung_case

        implementation, scenario = rung_case(arguments.costs_row, arguments.implementation)
    else:
        (implementation,) = [i for i in implementations() if i.name == arguments.implementation]
        (scenario,) = [s for s in scenarios() if s.key == arguments.scenario]
    send, senders, receivers = prepare(implementation, scenario, backend)

    async def run() -> None:
        # The warm-up is the same in every run, so it cancels out with the rest
        # of the start-up when two runs' counts are subtracted.
        for index in range(arguments.warmup):
            await send(senders[index % len(senders)], order=ORDER)
        gc.collect()
        gc.disable()
        for index in range(arguments.sends):
            await send(senders[index % len(senders)], order=ORDER)
        gc.enable()

    # As in a timed run: failures logged, to a handler that drops the records.
    with null_logging():
        run_on(backend, run)
    del receivers
    report: dict[str, Any] = {"asyncsignals": str(Path(asyncsignals.__file__).resolve().parent)}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
