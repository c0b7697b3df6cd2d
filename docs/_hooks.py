"""mkdocs hooks: bring a few files from outside docs/ into the site.

The pages in docs/ link to files elsewhere in the repository with relative paths
(``../tests/README.md``, ``../bench/RESULTS.md``, ``../examples/config.yml``), which is what
works when the repository is read on a forge.  For the site, those files are added to the build
under the same paths (``tests/README.md`` becomes the page ``tests/``) and the ``../`` of the
links to them is dropped, so ``mkdocs build --strict`` checks these links like any other: a
link to a file that is neither in docs/ nor listed here fails the build.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

# Paths from the repository root (globs allowed), copied into the site as they are.
BROUGHT_IN = (
    "tests/README.md",
    "bench/RESULTS.md",
    "bench/results-latest.png",
    "bench/scaling-latest.png",
    "bench/scaling-tags-latest.png",
    "loadtests/README.md",
    "loadtests/results/*.png",
    "examples/config.yml",
    "examples/token-service.yml",
)
# Brought in when present (a link to one that is absent still fails the build).
OPTIONAL = ("LICENSE", "CHANGELOG.md")

_LINK = re.compile(r"(\]\(|\]: |src=\")\.\./([^)\s\"#]+)")


def _root(config: Any) -> Path:
    return Path(config["config_file_path"]).resolve().parent


def _brought_in(config: Any) -> list[str]:
    root = _root(config)
    found: list[str] = []
    for pattern in BROUGHT_IN:
        matches = sorted(p.relative_to(root).as_posix() for p in root.glob(pattern) if p.is_file())
        if not matches:
            raise FileNotFoundError(f"mkdocs hook: {pattern} matches no file in {root}")
        found.extend(matches)
    found.extend(rel for rel in OPTIONAL if (root / rel).is_file())
    return found


def on_files(files: Files, config: Any) -> Files:
    root = _root(config)
    for rel in _brought_in(config):
        files.append(File.generated(config, rel, abs_src_path=str(root / rel)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if page.file.abs_src_path is None or Path(config["docs_dir"]).resolve() not in \
            Path(page.file.abs_src_path).resolve().parents:
        return markdown
    depth = page.file.src_uri.count("/")
    if depth:
        return markdown   # every page of docs/ lives at its top level
    brought = set(_brought_in(config))

    def strip(m: re.Match[str]) -> str:
        target = m.group(2)
        return m.group(1) + target if target.split("#")[0] in brought else m.group(0)

    return _LINK.sub(strip, markdown)
