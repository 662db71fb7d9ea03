"""What the type checkers accept of typed signals runs: tests/type_tests/typed_usage.py."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from asyncsignals import Signal

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
USAGE = ROOT / "tests" / "type_tests" / "typed_usage.py"


@pytest.fixture(scope="module")
def typed_usage() -> ModuleType:
    """The valid-usage file, imported once (its signals and receivers are module-level)."""
    spec = importlib.util.spec_from_file_location("typed_usage", USAGE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs, as an import would: its dataclasses look it up.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


async def test_typed_usage_runs(typed_usage: ModuleType) -> None:
    """Every send, receiver and helper the checkers accept in typed_usage.py works as typed."""
    await typed_usage.main()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the Redis bridge is asyncio only
async def test_publish_takes_the_sender_as_the_signal_send_does(anyio_backend: str) -> None:
    """RedisBridge.publish takes sender= by keyword (a declared signal's form) or by position."""
    from asyncsignals.redis import BridgeClosedError, RedisBridge

    bridge = RedisBridge("redis://127.0.0.1:1/0", app="shop")
    signal = Signal(name="order_shipped")
    # Read before the bridge's own checks: a send without a sender never gets that far.
    with pytest.raises(TypeError, match=r"publish\(\) missing the sender"):
        await bridge.publish(signal)
    with pytest.raises(BridgeClosedError):
        await bridge.publish(signal, sender="shop", order=1)
    with pytest.raises(BridgeClosedError):
        await bridge.publish(signal, "shop", order=1)


def _shown_messages(page: str, intro: str) -> list[str]:
    """The message lines the page shows after ``intro`` (its next ```text block), "..." left out."""
    block = page.split(intro, 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip() not in ("", "...")]


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_the_messages_the_docs_show_are_the_checkers_own(checker: str, tmp_path: Path) -> None:
    """docs/typed-signals.md shows what mypy and pyright really say about its mistakes."""
    if importlib.util.find_spec(checker) is None:
        pytest.skip(f"{checker} is not installed here (the typing extra)")
    # The page's examples and mistakes, without the comments that expect the errors.
    examples = (USAGE.parent / "check_docs_examples.py").read_text()
    source = re.sub(r"  # type: ignore\[[^]]*\]  # pyright: ignore\[[^]]*\]", "", examples)
    (tmp_path / "mistakes.py").write_text(source)
    if checker == "mypy":
        command = ["-m", "mypy", "--strict", "--no-incremental", "--config-file=", "mistakes.py"]
    else:
        (tmp_path / "pyrightconfig.json").write_text('{"typeCheckingMode": "strict"}')
        command = ["-m", "pyright", "--pythonpath", sys.executable, "mistakes.py"]
    result = subprocess.run(
        [sys.executable, *command],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    said = result.stdout
    page = (ROOT / "docs" / "typed-signals.md").read_text()
    intro = "mypy `--strict` says:" if checker == "mypy" else "and pyright (strict):"
    shown = _shown_messages(page, intro)
    assert shown
    for line in shown:
        assert line in said, f"{checker} no longer says {line!r}; it says:\n{said}"
