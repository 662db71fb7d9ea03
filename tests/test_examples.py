"""The README's example and every example program run, and say what they should."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_python(*arguments: str) -> str:
    completed = subprocess.run(
        [sys.executable, *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_readme_example_runs() -> None:
    """The README's first Python block runs as written and prints the result list."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, re.DOTALL)
    assert block is not None
    assert len(block.group(1).splitlines()) <= 15
    output = run_python("-c", block.group(1))
    assert "'mailed #42: 1Z999')]" in output
    assert "email_customer" in output


def test_order_shipped_example() -> None:
    """examples/order_shipped.py shows robust results, a fail-fast error and a disconnect."""
    output = run_python("examples/order_shipped.py")
    robust, fail_fast, after_disconnect = output.split("== ")[1:]
    assert "update_loyalty_points: FAILED with ConnectionError" in robust
    assert "log: ERROR receiver __main__.update_loyalty_points()" in robust
    assert "email_confirmation: 'mail to ada@example.com'" in robust
    # send fails fast on the sync receiver, before the async ones start.
    assert "raised ConnectionError('loyalty service unreachable')" in fail_fast
    assert "note: raised by receiver __main__.update_loyalty_points()" in fail_fast
    assert "warehouse:" not in fail_fast
    assert "update_loyalty_points" not in after_disconnect
    assert "notify_warehouse: 'released'" in after_disconnect


def test_examples_are_typed_and_type_checked() -> None:
    """The examples declare their signals, and mypy --strict and pyright strict check them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    assert "examples" in config["mypy"]["files"]
    assert "examples" in config["pyright"]["include"]
    for example in sorted((ROOT / "examples").glob("*.py")):
        source = example.read_text()
        assert "@Signal.declare" in source, f"{example.name} declares no signal"
        assert "Signal(" not in source, f"{example.name} makes an untyped signal"
