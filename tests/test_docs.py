"""Every Python block in README.md and docs/ runs, and says what the page says it prints.

How a page is run (the conventions are documented in docs/index.md, "About
these pages"):

- The ```python blocks of one page run in order, in one namespace, in a fresh
  interpreter, like a session of ``python -m asyncio``: a block may use the
  names an earlier block on the page defined, and a block with a top-level
  ``await`` runs on an event loop of its own (asyncio, and trio too unless
  the page says it runs on asyncio only).
- A ```text block right after the comment ``<!-- output of the block above -->``
  is what the block before it prints, exactly.
- A block right after ``<!-- not run: <why> -->`` is a fragment that cannot
  run; the reason is required.
- A block right after ``<!-- type-checked -->`` stands verbatim in a file of
  tests/type_tests, which mypy --strict and pyright strict check.
- ``<!-- runs on asyncio only: <why> -->`` anywhere on a page keeps its
  top-level awaits off trio.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```\n", re.DOTALL | re.MULTILINE)
MARKER = re.compile(r"<!-- ([a-z -]+?)(?:: (.+?))? -->\n*\Z")
ASYNCIO_ONLY = "<!-- runs on asyncio only: "
# Blocks as long as what the page may contain, and no longer.
PAGE_TIMEOUT = 60

# Runs in the child interpreter: the blocks in order, each block's output
# followed by a separator line, so the test can tell which block printed what.
RUNNER = """
import ast, inspect, json, sys
import anyio

blocks, backend, separator = json.loads(sys.stdin.read())
namespace = {"__name__": "__main__"}
for source, where in blocks:
    code = compile(source, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if code.co_flags & inspect.CO_COROUTINE:
        coroutine = eval(code, namespace)
        anyio.run(lambda: coroutine, backend=backend)
    else:
        exec(code, namespace)
    sys.stdout.flush()
    print(separator, flush=True)
"""


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced block of a page, with the marker comment right before it."""

    page: Path
    line: int
    language: str
    source: str
    marker: str | None
    reason: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = MARKER.search(text, 0, match.start())
        line = text.count("\n", 0, match.start()) + 2
        found.append(
            Block(
                page=page,
                line=line,
                language=match.group(2),
                source=textwrap.dedent(match.group(3)),
                marker=before.group(1) if before else None,
                reason=before.group(2) if before else None,
            )
        )
    return found


def runnable(page: Path) -> list[Block]:
    return [
        block
        for block in blocks_of(page)
        if block.language == "python" and block.marker != "not run"
    ]


def expected_outputs(page: Path) -> dict[int, str]:
    """For each runnable block followed by an output block: its index and that output."""
    expected: dict[int, str] = {}
    index = -1
    for block in blocks_of(page):
        if block in runnable(page):
            index += 1
        elif block.marker == "output of the block above":
            assert index >= 0, f"{block.where}: an output block with no Python block before it"
            expected[index] = block.source
    return expected


def run_page(page: Path, backend: str, environment: dict[str, str]) -> list[str]:
    """Each runnable block's output, in order."""
    blocks = runnable(page)
    separator = "-- end of block --"
    completed = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps([[[b.source, b.where] for b in blocks], backend, separator]),
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT,
        check=False,
        cwd=ROOT,
        env={**os.environ, **environment},
    )
    assert completed.returncode == 0, completed.stderr
    outputs = completed.stdout.split(separator + "\n")
    assert len(outputs) == len(blocks) + 1, completed.stdout
    return outputs[:-1]


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def backends_of(page: Path) -> list[str]:
    if ASYNCIO_ONLY in page.read_text():
        return ["asyncio"]
    return ["asyncio", "trio"]


CASES = [
    pytest.param(page, backend, id=f"{page_id(page)}-{backend}")
    for page in PAGES
    for backend in backends_of(page)
]


@pytest.mark.parametrize(("page", "backend"), CASES)
def test_page_runs(page: Path, backend: str, request: pytest.FixtureRequest) -> None:
    """Every Python block of the page runs in order and prints what its output block says."""
    environment = {}
    if "REDIS_URL" in page.read_text():
        environment["REDIS_URL"] = request.getfixturevalue("redis_url")
    outputs = run_page(page, backend, environment)
    for index, text in expected_outputs(page).items():
        assert outputs[index] == text, f"{runnable(page)[index].where} printed:\n{outputs[index]}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_marker_is_known_and_justified(page: Path) -> None:
    """A block opts out of running only with a reason; every marker is one of the known ones."""
    known = {"not run", "output of the block above", "type-checked"}
    for block in blocks_of(page):
        if block.marker is None:
            continue
        assert block.marker in known, f"{block.where}: unknown marker {block.marker!r}"
        if block.marker == "not run":
            assert block.reason, f"{block.where}: a block that does not run must say why"
        if block.marker == "output of the block above":
            assert block.language == "text", f"{block.where}: an output block is ```text"


def test_typed_examples_are_type_checked() -> None:
    """Every block marked type-checked stands verbatim in a file that mypy and pyright check."""
    checked = "\n".join(path.read_text() for path in (ROOT / "tests" / "type_tests").glob("*.py"))
    typed = [block for page in PAGES for block in blocks_of(page) if block.marker == "type-checked"]
    assert typed, "no typed example is marked type-checked"
    for block in typed:
        assert block.source in checked, f"{block.where} is not in tests/type_tests verbatim"


def test_opt_outs_stay_rare() -> None:
    """At most one Python block in ten is left unrun."""
    python = [b for page in PAGES for b in blocks_of(page) if b.language == "python"]
    left_out = [b for b in python if b.marker == "not run"]
    assert len(left_out) * 10 <= len(python), [b.where for b in left_out]


def test_reference_documents_every_public_module() -> None:
    """The API reference renders each public module, whose __all__ mkdocstrings follows."""
    reference = (ROOT / "docs" / "reference.md").read_text()
    modules = [
        "asyncsignals",
        "asyncsignals.testing",
        "asyncsignals.redis",
        "asyncsignals.opentelemetry",
        "asyncsignals.graph",
    ]
    assert [
        line.removeprefix("::: ") for line in reference.splitlines() if line.startswith(":::")
    ] == modules
