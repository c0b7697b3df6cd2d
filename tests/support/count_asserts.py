"""Count the checks in the test tree: `assert` statements and calls of assert helpers (any call
whose function name starts with ``assert``, plus ``pytest.raises``), split between test modules
(``test_*.py``) and the helpers beside them.

    python3 -m tests.support.count_asserts [tests]
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def count(path: Path) -> tuple[int, int]:
    """(assert statements, assertion-function calls) in one file."""
    tree = ast.parse(path.read_text(), str(path))
    asserts = helpers = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            asserts += 1
        elif isinstance(node, ast.Call):
            name = _name(node.func)
            if name.startswith("assert") or name == "raises":
                helpers += 1
    return asserts, helpers


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "tests")
    totals = {"test modules": [0, 0, 0], "helpers": [0, 0, 0]}
    for path in sorted(root.rglob("*.py")):
        if path.name == "count_asserts.py":
            continue
        a, h = count(path)
        row = totals["test modules" if path.name.startswith("test_") else "helpers"]
        row[0] += 1
        row[1] += a
        row[2] += h
    for kind, (files, a, h) in totals.items():
        print(f"{kind:13} {files:4} files  {a:5} assert statements  {h:5} assertion-function calls")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
