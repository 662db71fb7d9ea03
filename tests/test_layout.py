"""The package's layout stays readable: no module or class grows past its bound."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "asyncsignals"
MODULES = sorted(PACKAGE.glob("*.py"))

# A module does one job; a class past this size does several.
MAX_MODULE_LINES = 650
MAX_CLASS_LINES = 450


@pytest.mark.parametrize("module", MODULES, ids=[module.name for module in MODULES])
def test_modules_and_their_classes_stay_within_their_bounds(module: Path) -> None:
    """Each module has at most 650 lines, and each of its classes at most 450."""
    source = module.read_text()
    assert source.count("\n") <= MAX_MODULE_LINES, f"{module.name}: split it by job"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            assert node.end_lineno is not None
            lines = node.end_lineno - node.lineno + 1
            assert lines <= MAX_CLASS_LINES, f"{module.name}: class {node.name} has {lines} lines"
