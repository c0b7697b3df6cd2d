"""Only the storage layout module spells out where things live: the pull-through cache and the
maintenance tools (gc, check, purge) build every storage path through ``fastreg.storage.layout``,
so the layout's rules live in one place.  Checked on the code's string literals (docstrings,
which explain the layout, are left out)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.server import REPO_ROOT

FRAGMENTS = ("/_layers", "/_manifests", "/_uploads", "/_referrers", "/docker/registry", "/revisions/", "/current/link")
PACKAGES = ("fastreg/proxy", "fastreg/maintenance")


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_layout_paths_outside_the_layout_module(package: str) -> None:
    files = sorted((REPO_ROOT / package).glob("*.py"))
    assert files
    found = [f"{f.relative_to(REPO_ROOT)}:{line}: {text!r}" for f in files for line, text in _literals(f)
             if any(frag in text for frag in FRAGMENTS)]
    assert found == [], "layout paths spelt out beside storage/layout.py:\n" + "\n".join(found)


def test_the_check_sees_a_path_spelt_out(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('"""a docstring naming /_layers is fine"""\nPATH = f"{ROOT}/_layers/x"\n')
    assert [text for _, text in _literals(bad) if "/_layers" in text] == ["/_layers/x"]
