"""Only the storage modules spell out where things live: the registry's services (blobs,
uploads, manifests, tags, catalog, the pull-through cache's leases), the pull-through cache, the
maintenance tools (gc, check, purge) and the retention features (history, quotas, immutability)
build every storage path through ``fastreg.storage.layout``
and walk the tree through ``fastreg.storage.walk``, so the layout's rules live in one place.

Checked on the code itself (docstrings, which explain the layout, are left out):

* no string literal holds a piece of a layout path (``/_layers``, ``/link``, ``/data``,
  ``/startedat``, ``/index/``, ``_fastreg_gc``, ...);
* no f-string puts a ``layout.`` name or call in front of a literal ``/`` (a path built on a
  layout path);
* no f-string starts a path on a value of its own: ``f"{base}/{alg}"`` (only a URL may);
* no path is cut back at its last ``/`` (``path.rsplit("/", 1)[0]``: the entry directory of a
  link is ``walk.Link.dir``).

And the configuration travels typed: no parameter ``cfg`` or ``config`` in ``fastreg/`` is
annotated ``Any`` (it is ``Config`` or one of its sections)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.server import REPO_ROOT

FRAGMENTS = ("/_layers", "/_manifests", "/_uploads", "/_referrers", "/docker/registry", "/revisions/",
             "/current/link", "/link", "/data", "/startedat", "/hashstates", "/index/",
             "_fastreg_gc", "_fastreg_quarantine", "_fastreg_history", "_fastreg_quota", "_fastreg_proxy",
             "/tombstones", "/vetoes", "/active", "/epoch")
PACKAGES = ("fastreg/registry", "fastreg/proxy", "fastreg/maintenance", "fastreg/retention")
URL_MARK = "/v2/"            # f"{remote}/v2/{repo}/...": a URL on the network, not a storage path


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docstrings = _docstrings(tree)
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def _names_layout(node: ast.AST) -> bool:
    """`node` is ``layout.X``, ``layout.f(...)`` or something derived from them (``layout.X.y``)."""
    while isinstance(node, ast.Call | ast.Attribute | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
        if isinstance(node, ast.Name) and node.id == "layout":
            return True
    return False


def _path_joins(path: Path) -> list[tuple[int, str]]:
    """The f-strings that build a path: a layout name or call followed by a literal '/', or one
    that starts with a value of its own followed by '/' (not a URL)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.JoinedStr):
            continue
        parts = node.values
        text = ast.unparse(node)
        for before, after in zip(parts, parts[1:], strict=False):
            if (isinstance(before, ast.FormattedValue) and _names_layout(before.value)
                    and isinstance(after, ast.Constant) and str(after.value).startswith("/")):
                found.append((node.lineno, text))
                break
        else:
            if (len(parts) > 1 and isinstance(parts[0], ast.FormattedValue) and isinstance(parts[1], ast.Constant)
                    and str(parts[1].value).startswith("/") and URL_MARK not in text):
                found.append((node.lineno, text))
    return found


def _cut_at_slash(path: Path) -> list[tuple[int, str]]:
    """``x.rsplit("/", ...)``, ``x.rpartition("/")``, ``x.rindex("/")``, ``x.rfind("/")``."""
    return [(n.lineno, ast.unparse(n)) for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("rsplit", "rpartition", "rindex", "rfind")
            and n.args and isinstance(n.args[0], ast.Constant) and n.args[0].value == "/"]


def _files(package: str) -> list[Path]:
    files = sorted((REPO_ROOT / package).glob("*.py"))
    assert files
    return files


@pytest.mark.parametrize("package", PACKAGES)
def test_no_layout_paths_outside_the_layout_module(package: str) -> None:
    found = [f"{f.relative_to(REPO_ROOT)}:{line}: {text!r}" for f in _files(package) for line, text in _literals(f)
             if any(frag in text for frag in FRAGMENTS)]
    assert found == [], "layout paths spelt out beside storage/layout.py:\n" + "\n".join(found)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_paths_built_outside_the_layout_module(package: str) -> None:
    found = [f"{f.relative_to(REPO_ROOT)}:{line}: {text}" for f in _files(package)
             for line, text in _path_joins(f) + _cut_at_slash(f)]
    assert found == [], "storage paths built beside storage/layout.py and storage/walk.py:\n" + "\n".join(found)


def test_the_checks_see_a_path_spelt_out(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('"""a docstring naming /_layers is fine"""\nPATH = f"{ROOT}/_layers/x"\n'
                   'GC = f"{layout.ROOT}/_fastreg_gc"\n'
                   'TAG = f"{layout.tag_dir(name, tag)}/index/{alg}"\n'
                   'ENTRY = f"{base}/{alg}/{hex_}"\n'
                   'UP = path.rsplit("/", 1)[0]\n'
                   'URL = f"{remote}/v2/{repo}/blobs/{d}"\n'
                   'STEP = f"gc: [{i}/{n}] {name}"\n')
    assert [text for _, text in _literals(bad) if any(frag in text for frag in FRAGMENTS)] == [
        "/_layers/x", "/_fastreg_gc", "/index/"]
    assert [line for line, _ in _path_joins(bad)] == [2, 3, 4, 5]
    assert [text for _, text in _cut_at_slash(bad)] == ["path.rsplit('/', 1)"]


def _untyped_config_parameters(path: Path) -> list[str]:
    """Parameters named ``cfg`` or ``config`` annotated ``Any`` (the config is typed: ``Config``)."""
    tree = ast.parse(path.read_text())
    return [f"{path.name}:{a.lineno}: {a.arg}" for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)
            if a.arg in ("cfg", "config") and isinstance(a.annotation, ast.Name | ast.Constant)
            and getattr(a.annotation, "id", getattr(a.annotation, "value", None)) == "Any"]


def test_the_config_is_passed_typed() -> None:
    files = sorted((REPO_ROOT / "fastreg").rglob("*.py"))
    assert len(files) > 50
    found = [hit for f in files for hit in _untyped_config_parameters(f)]
    assert found == [], "configuration parameters typed Any:\n" + "\n".join(found)


def test_the_config_check_sees_any(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from typing import Any\ndef f(cfg: Any) -> None: ...\n"
                   "async def g(x: int, config: 'Any') -> None: ...\n")
    assert _untyped_config_parameters(bad) == ["bad.py:2: cfg", "bad.py:3: config"]
