"""format/ is the bottom layer: it imports only errors, _sizes and _native from the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fastload.format

FORMAT = Path(fastload.format.__file__).parent
ALLOWED = {"errors", "_sizes", "_native"}


@pytest.mark.parametrize("path", sorted(FORMAT.glob("*.py")), ids=lambda p: p.name)
def test_format_imports_nothing_above_it(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level >= 2:
            target = (node.module or "").split(".")[0]
            names = [target] if target else [a.name for a in node.names]
            for name in names:
                assert name in ALLOWED, f"{path.name}:{node.lineno} imports fastload.{name}"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            assert not (module or "").startswith("fastload"), f"{path.name}:{node.lineno} imports {module}"
