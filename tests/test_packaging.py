"""What the installed package says about itself, and the extras it asks for."""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

import pytest

import asyncsignals

PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"


def test_version_is_the_one_pyproject_declares() -> None:
    """asyncsignals.__version__ is the version in pyproject.toml."""
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert asyncsignals.__version__ == declared


@pytest.mark.parametrize(
    ("module", "dependency", "extra"),
    [
        ("asyncsignals.redis", "redis", "redis"),
        ("asyncsignals.opentelemetry", "opentelemetry", "opentelemetry"),
    ],
)
def test_an_optional_module_without_its_dependency_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, dependency: str, extra: str
) -> None:
    """Importing a module whose dependency is missing raises ImportError naming the extra."""
    for name in list(sys.modules):
        if name == dependency or name.startswith(f"{dependency}."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, dependency, None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ImportError) as caught:
        importlib.import_module(module)
    assert f"pip install 'asyncsignals[{extra}]'" in str(caught.value)
    assert isinstance(caught.value.__cause__, ImportError)
