"""MkDocs hooks: content the build makes from the repository, so it cannot drift.

- The benchmark results live in ``benchmarks/results/`` (written by the
  benchmark runners), not in ``docs/``; they are added to the site as
  ``results/<file>`` so the benchmarks page can link them and show the chart.
- A line ``<!-- wiring of MODULE -->`` in a page becomes the Mermaid
  flowchart of the signals that MODULE defines, drawn by
  ``asyncsignals.graph`` from the module as it is now.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

from asyncsignals import Signal
from asyncsignals.graph import to_mermaid, wiring

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WIRING = re.compile(r"^<!-- wiring of ([\w.]+) -->$", re.MULTILINE)
PUBLISHED = (".md", ".png")


def on_files(files: Files, config: Any) -> Files:
    """Add every Markdown report and chart in benchmarks/results to the site."""
    for path in sorted(RESULTS.iterdir()):
        if path.suffix in PUBLISHED:
            files.append(File.generated(config, f"results/{path.name}", abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace each ``<!-- wiring of MODULE -->`` line with MODULE's wiring, in Mermaid."""
    return WIRING.sub(lambda match: _wiring_of(match.group(1)), markdown)


def _wiring_of(module_name: str) -> str:
    # The examples are found in the checkout, wherever mkdocs runs from.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    module = importlib.import_module(module_name)
    signals: list[Signal[..., Any]] = [
        value for value in vars(module).values() if isinstance(value, Signal)
    ]
    return f"```mermaid\n{to_mermaid(wiring(signals))}```"
