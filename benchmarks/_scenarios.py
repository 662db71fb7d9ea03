"""What is measured: the dispatch scenarios, in table row order."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks._receivers import Kind

TIMES = "\N{MULTIPLICATION SIGN}"
ORDER = object()  # the payload every send carries: order=ORDER

KIND_LABELS: dict[Kind, str] = {
    "async": "async, no suspend",
    "suspend": "async, suspend once",
    "sync": "sync",
    "mixed": "mixed async/sync",
    "sleep": "async, sleep 10 ms",
    "failing": "async, raising (logged)",
}


@dataclass(frozen=True)
class Scenario:
    """One row of the dispatch table."""

    key: str
    count: int  # receivers reached by one send
    kind: Kind
    robust: bool = False
    senders: int = 0  # > 0: that many senders, each with its own receiver
    wall: bool = False  # dominated by sleeping: a wall-time measurement

    @property
    def label(self) -> str:
        method = "send_robust" if self.robust else "send"
        if self.senders:
            many = f"{self.senders:,} senders" if self.senders > 1 else "1 sender"
            return f"{method} · {many}, own receiver each"
        if self.count == 0:
            return f"{method} · 0 receivers"
        return f"{method} · {self.count} {TIMES} {KIND_LABELS[self.kind]}"


# The rows the instrument columns run on: what a send costs with no instrument,
# with one on another signal, and with one on the signal itself.
INSTRUMENT_SCENARIOS = frozenset({"send/10/sync", "send/1/async"})


def scenarios(senders: int = 10_000) -> list[Scenario]:
    """Every dispatch scenario; ``senders`` is the size of the many-senders case."""
    rows: list[Scenario] = []
    for robust in (False, True):
        method = "send_robust" if robust else "send"
        rows.append(Scenario(f"{method}/0", 0, "async", robust))
        for count in (1, 10, 100):
            kinds: tuple[Kind, ...] = ("async", "suspend", "sync")
            if count > 1:
                kinds += ("mixed",)
            for kind in kinds:
                rows.append(Scenario(f"{method}/{count}/{kind}", count, kind, robust))
    # Every receiver raises: what a robust send costs when it has to catch, keep
    # and log the exceptions (logging on, to a handler that drops the records).
    rows.append(Scenario("send_robust/10/failing", 10, "failing", robust=True))
    rows.append(Scenario("send/100/sleep", 100, "sleep", wall=True))
    rows.append(Scenario("send/senders/1", 1, "async", senders=1))
    rows.append(Scenario("send/senders/many", 1, "async", senders=senders))
    return rows
