"""The wiring graph: who listens to what, as data, a Mermaid flowchart, a table, a command."""

from __future__ import annotations

import gc
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import asyncsignals.graph
from asyncsignals import Signal
from asyncsignals.__main__ import main
from asyncsignals.graph import ReceiverWiring, SignalWiring, to_mermaid, to_text, wiring

ROOT = Path(__file__).resolve().parent.parent


def audit(sender: object, **kwargs: Any) -> None:
    pass


async def notify(sender: object, **kwargs: Any) -> None:
    pass


def archive(sender: object, **kwargs: Any) -> None:
    pass


class Shop:
    pass


class Listener:
    def on_event(self, sender: object, **kwargs: Any) -> None:
        pass


def make_transient() -> Any:
    def transient(sender: object, **kwargs: Any) -> None:
        pass

    return transient


def shop_signals() -> tuple[Signal, Signal]:
    """A signal with one receiver of each kind and filter, and one sequential signal."""
    shipped = Signal(name="shipped")
    shipped.connect(audit)
    shipped.connect(notify, sender=Shop, weak=False, timeout=2.5)
    shipped.connect(archive, to_thread=True, sender="main-shop")
    created = Signal(name="created", timeout=1.0, concurrent=False, max_concurrency=3)
    created.connect(audit)
    return shipped, created


NAME = __name__


def shop_wiring(module: str) -> list[SignalWiring]:
    """What wiring() says of shop_signals(), for receivers defined in ``module``."""
    return [
        SignalWiring(
            name="created",
            timeout=1.0,
            concurrent=False,
            max_concurrency=3,
            receivers=(ReceiverWiring(f"{module}.audit()", "sync", True, None, None),),
        ),
        SignalWiring(
            name="shipped",
            timeout=None,
            concurrent=True,
            max_concurrency=None,
            receivers=(
                ReceiverWiring(f"{module}.audit()", "sync", True, None, None),
                ReceiverWiring(f"{module}.notify()", "async", False, f"{module}.Shop", 2.5),
                ReceiverWiring(f"{module}.archive()", "to_thread", True, "'main-shop'", None),
            ),
        ),
    ]


def test_wiring_reports_kind_holding_sender_and_timeout_in_connection_order() -> None:
    """Each signal's receivers come back in connection order with how each is connected."""
    assert wiring(shop_signals()) == shop_wiring(NAME)


def test_wiring_of_every_signal_includes_a_new_one() -> None:
    """Without arguments, wiring reads every signal alive."""
    lonely = Signal(name="lonely signal of the graph test")
    lonely.connect(audit)
    found = [each for each in wiring() if each.name == lonely.name]
    assert [each.receivers for each in found] == [
        (ReceiverWiring(f"{NAME}.audit()", "sync", True, None, None),)
    ]


def test_wiring_leaves_out_collected_receivers_and_senders() -> None:
    """A collected receiver, or a receiver of a collected sender, is not in the wiring."""
    signal = Signal(name="transient")
    listener = Listener()
    sender = Shop()
    signal.connect(make_transient())
    signal.connect(listener.on_event)
    signal.connect(audit, sender=sender)
    del listener, sender
    gc.collect()
    assert wiring([signal]) == [SignalWiring("transient", None, True, None, ())]


def test_wiring_names_a_bound_method_and_an_unnamed_signal() -> None:
    """A bound method is named by its class; a signal without a name by its repr."""
    signal = Signal()
    listener = Listener()
    signal.connect(listener.on_event, sender=listener)
    (found,) = wiring([signal])
    assert found.name == repr(signal)
    (connection,) = found.receivers
    assert connection.name == f"{NAME}.Listener.on_event()"
    assert connection.sender is not None
    assert connection.sender.startswith(f"<{NAME}.Listener object at")


def test_wiring_shortens_a_long_sender_repr() -> None:
    """A sender's repr is cut short, so a picture stays readable."""
    signal = Signal(name="long")
    signal.connect(audit, sender="x" * 500)
    (found,) = wiring([signal])
    (connection,) = found.receivers
    assert connection.sender is not None
    assert len(connection.sender) <= 60
    assert "..." in connection.sender


def test_wiring_names_a_builtin_sender_without_its_module() -> None:
    """A builtin class as sender is named as Python spells it."""
    signal = Signal(name="builtin")
    signal.connect(audit, sender=int)
    assert wiring([signal])[0].receivers[0].sender == "int"


# A golden picture of shop_signals() and an empty signal, as if defined in "shop".
CREATED, SHIPPED = shop_wiring("shop")
SHOP = [CREATED, SignalWiring("empty", None, True, None, ()), SHIPPED]


def test_to_mermaid_draws_signals_receivers_and_connections() -> None:
    """The flowchart has a hexagon per signal, one box per receiver, an arrow per connection."""
    assert to_mermaid(SHOP) == textwrap.dedent(
        """\
        flowchart LR
            signal1{{"created · sequential · timeout 1 s · at most 3 at once"}}
            receiver1["shop.audit()"]
            signal2{{"empty"}}
            signal3{{"shipped"}}
            receiver2["shop.notify()"]
            receiver3["shop.archive()"]
            signal1 -->|"sync · weak"| receiver1
            signal3 -->|"sync · weak"| receiver1
            signal3 -->|"async · strong · sender shop.Shop · timeout 2.5 s"| receiver2
            signal3 -->|"to_thread · weak · sender 'main-shop'"| receiver3
        """
    )


def test_to_mermaid_escapes_what_would_end_a_label() -> None:
    """Quotes, angle brackets, hashes and backticks in names become Mermaid entity codes."""
    signal = SignalWiring('say "hi" <now> #1 `x`', None, True, None, ())
    assert to_mermaid([signal]) == (
        'flowchart LR\n    signal1{{"say #quot;hi#quot; #lt;now#gt; #35;1 #96;x#96;"}}\n'
    )


def test_to_text_prints_one_row_per_connection() -> None:
    """The table has a row per connection and one for a signal with no receivers."""
    assert to_text(SHOP) == textwrap.dedent(
        """\
        signal                                                  receiver        kind       held    sender       timeout
        created · sequential · timeout 1 s · at most 3 at once  shop.audit()    sync       weak    any          -
        empty                                                   -               -          -       -            -
        shipped                                                 shop.audit()    sync       weak    any          -
        shipped                                                 shop.notify()   async      strong  shop.Shop    2.5 s
        shipped                                                 shop.archive()  to_thread  weak    'main-shop'  -
        """  # noqa: E501 (a table as wide as it prints)
    )


def test_public_names_are_listed_and_belong_to_the_module() -> None:
    """asyncsignals.graph.__all__ is sorted and names only objects defined there."""
    assert asyncsignals.graph.__all__ == sorted(asyncsignals.graph.__all__)
    for name in asyncsignals.graph.__all__:
        assert getattr(asyncsignals.graph, name).__module__ == "asyncsignals.graph"


def run_command(*arguments: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncsignals", *arguments],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=cwd,
    )


def test_command_draws_the_example_as_mermaid() -> None:
    """The command imports the module and prints its signal's flowchart."""
    completed = run_command("graph", "examples.order_shipped")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == textwrap.dedent(
        """\
        flowchart LR
            signal1{{"order_shipped"}}
            receiver1["examples.order_shipped.log_shipment()"]
            receiver2["examples.order_shipped.notify_warehouse()"]
            receiver3["examples.order_shipped.email_confirmation()"]
            receiver4["examples.order_shipped.update_loyalty_points()"]
            signal1 -->|"sync · weak"| receiver1
            signal1 -->|"async · weak"| receiver2
            signal1 -->|"async · weak"| receiver3
            signal1 -->|"sync · weak"| receiver4
        """
    )


def test_command_prints_a_table_of_a_module_in_the_current_directory(tmp_path: Path) -> None:
    """--format text prints the table of a module found where it runs; its prints go to stderr."""
    (tmp_path / "shop_wiring.py").write_text(
        textwrap.dedent(
            """\
            from asyncsignals import Signal

            paid = Signal(name="paid")

            async def ship(sender, **kwargs):
                pass

            paid.connect(ship, timeout=3)
            print("connected")
            """
        )
    )
    completed = run_command("graph", "--format", "text", "shop_wiring", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == (
        "signal  receiver            kind   held  sender  timeout\n"
        "paid    shop_wiring.ship()  async  weak  any     3 s\n"
    )
    assert completed.stderr == "connected\n"


def test_command_reports_a_module_that_cannot_be_imported(tmp_path: Path) -> None:
    """A module that fails to import: exit status 2 and a message naming it on stderr."""
    (tmp_path / "broken_wiring.py").write_text("raise RuntimeError('no database')\n")
    completed = run_command("graph", "broken_wiring", cwd=tmp_path)
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr == (
        "python -m asyncsignals graph: cannot import 'broken_wiring': RuntimeError: no database\n"
    )


def test_command_without_a_module_shows_usage() -> None:
    """Without a module, the command prints its usage and exits with status 2."""
    completed = run_command("graph")
    assert completed.returncode == 2
    assert "usage: python -m asyncsignals graph" in completed.stderr


def test_help_describes_the_graph_command() -> None:
    """--help describes the graph command and its format option."""
    completed = run_command("graph", "--help")
    assert completed.returncode == 0
    assert "--format {mermaid,text}" in completed.stdout


def test_module_run_in_process_prints_the_table_and_exits_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run as ``python -m asyncsignals``, the command exits with status 0 after printing."""
    monkeypatch.setattr(
        sys, "argv", ["asyncsignals", "graph", "--format", "text", "examples.order_shipped"]
    )
    monkeypatch.setattr(sys, "path", ["", *sys.path])
    # Run afresh, as the interpreter's -m does, not the copy the tests imported.
    monkeypatch.delitem(sys.modules, "asyncsignals.__main__")
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("asyncsignals", run_name="__main__")
    assert exited.value.code == 0
    assert "examples.order_shipped.log_shipment()" in capsys.readouterr().out


def test_main_finds_modules_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() imports a module from the current directory and reports one it cannot import."""
    (tmp_path / "unimportable_wiring.py").write_text("import no_such_module_anywhere\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry])
    assert main(["graph", "unimportable_wiring"]) == 2
    assert capsys.readouterr().err == (
        "python -m asyncsignals graph: cannot import 'unimportable_wiring': "
        "ModuleNotFoundError: No module named 'no_such_module_anywhere'\n"
    )
