"""The planning layer is arithmetic: NumPy and the standard library; no torch, files, upper layer"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fastload.plan

PLAN = Path(fastload.plan.__file__).parent
ALLOWED = {"__future__", "dataclasses", "importlib", "itertools", "numbers", "os", "sys",
           "typing", "numpy"}
IO_NAMES = {"open", "Path", "fromfile", "memmap", "load", "save", "tofile", "urlopen"}


@pytest.mark.parametrize("path", sorted(PLAN.glob("*.py")), ids=lambda p: p.name)
def test_imports_and_calls(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # relative imports stay inside plan/: level 2 would reach format/, loader/, ...
            assert node.level <= 1, f"{path.name}:{node.lineno} imports outside plan/"
            modules = [] if node.level else [node.module.split(".")[0]]
        else:
            modules = []
        for module in modules:
            assert module in ALLOWED, f"{path.name}:{node.lineno} imports {module}"
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            assert name not in IO_NAMES, f"{path.name}:{node.lineno} calls {name}"
