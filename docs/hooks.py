"""MkDocs hook: publish the benchmark results beside the pages that cite them.

The results live in ``benchmarks/results/`` (written by the benchmark
runners), not in ``docs/``; this hook adds them to the site as
``results/<file>`` so the benchmarks page can link them and show the chart
without a copy that could drift.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
PUBLISHED = (".md", ".png")


def on_files(files: Files, config: Any) -> Files:
    """Add every Markdown report and chart in benchmarks/results to the site."""
    for path in sorted(RESULTS.iterdir()):
        if path.suffix in PUBLISHED:
            files.append(File.generated(config, f"results/{path.name}", abs_src_path=str(path)))
    return files
