"""The command line: ``python -m asyncsignals graph MODULE [MODULE ...]``."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Sequence

from .graph import to_mermaid, to_text, wiring


def main(arguments: Sequence[str] | None = None) -> int:
    """Run the command line with ``arguments`` (default: ``sys.argv[1:]``); the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m asyncsignals",
        description="Tools for applications that use asyncsignals.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    graph = commands.add_parser(
        "graph",
        help="show which receivers listen to which signals",
        description=(
            "Import the modules, then print every signal alive and its receivers: "
            "how each runs (sync, async, to_thread), weak or strong, its sender "
            "filter and its own timeout."
        ),
    )
    graph.add_argument(
        "modules", nargs="+", metavar="MODULE", help="a module to import, e.g. myapp.signals"
    )
    graph.add_argument(
        "--format",
        choices=["mermaid", "text"],
        default="mermaid",
        help="a Mermaid flowchart (the default) or a plain table",
    )
    options = parser.parse_args(arguments)
    # The modules are the user's: found from the current directory, as with python -m.
    if "" not in sys.path:
        sys.path.insert(0, "")
    for module in options.modules:
        try:
            # What a module prints as it loads goes to stderr: stdout is the
            # graph alone, ready to be redirected into a file.
            with contextlib.redirect_stdout(sys.stderr):
                importlib.import_module(module)
        except Exception as error:
            print(
                f"python -m asyncsignals graph: cannot import {module!r}: "
                f"{type(error).__name__}: {error}",
                file=sys.stderr,
            )
            return 2
    found = wiring()
    sys.stdout.write(to_text(found) if options.format == "text" else to_mermaid(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
