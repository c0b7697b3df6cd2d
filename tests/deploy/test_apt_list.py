"""The README's list of what the test suite needs from apt is the list `.ci/run` installs."""
from __future__ import annotations

import re

from tests.support.server import REPO_ROOT


def ci_packages() -> set[str]:
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    loops = re.findall(r"^for pkg in (.+); do$", ci, flags=re.MULTILINE)      # the main list, Ceph's
    assert len(loops) >= 2, loops
    extra = re.findall(r"\|\| need\+=\(([a-z0-9 .+-]+)\)", ci)          # e.g. nodejs npm when npm is missing
    return {p for loop in loops for p in loop.split()} | {p for group in extra for p in group.split()}


def readme_packages(page: str) -> set[str]:
    text = (REPO_ROOT / page).read_text()
    start = text.index("Run the whole test suite (needs, from apt:")
    paragraph = text[start:text.index("```", start)]
    return set(re.findall(r"`([a-z0-9][a-z0-9.+-]+)`", paragraph)) - {"systemd-analyze"}


def test_readme_lists_what_ci_installs() -> None:
    packages = ci_packages()
    assert {"skopeo", "podman", "gcc", "libssl-dev", "systemd", "nodejs", "npm", "radosgw"} <= packages
    for page in ("README.md", "docs/install.md"):
        assert readme_packages(page) == packages, page
