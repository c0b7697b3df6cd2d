"""Fixtures for the ops tests (gc, purge, proxy): data directories built by a real fastreg,
and helpers to run `fastreg gc` and Distribution's `docker-registry garbage-collect` on copies."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.server import REPO_ROOT, TEST_SECRET, FastregServer, make_fastreg

from .scenario import Scenario, build

DISTRIBUTION_BIN = "/usr/bin/docker-registry"
V2 = ("docker", "registry", "v2")
DAY = 86400.0


def blob_set(root: Path) -> set[str]:
    """Every blob with data under `root` (a storage root directory), as "alg:hex"."""
    base = root.joinpath(*V2, "blobs")
    return {f"{p.parent.parent.parent.name}:{p.parent.name}" for p in base.glob("*/*/*/data")}


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes (to prove nothing changed)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def backdate(root: Path, seconds: float) -> None:
    """Make everything under `root` look `seconds` old (the grace period counts from mtimes)."""
    t = time.time() - seconds
    for p in root.rglob("*"):
        os.utime(p, (t, t), follow_symlinks=False)


def gc_config(tmp: Path, root: Path, extra: dict[str, Any] | None = None) -> Path:
    cfg: dict[str, Any] = {"version": "0.1", "log": {"level": "warn"},
                           "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
                           "http": {"addr": "127.0.0.1:5999", "secret": TEST_SECRET}}
    cfg.update(extra or {})
    path = tmp / "gc.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_fastreg_gc(config: Path, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "fastreg", "gc", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL,
                          check=False)


def run_distribution_gc(root: Path, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not os.path.exists(DISTRIBUTION_BIN):
        pytest.skip(f"{DISTRIBUTION_BIN} is not installed (apt-get install docker-registry)")
    cfg = {"version": 0.1, "log": {"level": "warn"},
           "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
           "http": {"addr": "127.0.0.1:5998"}}
    path = workdir / "distribution-gc.yml"
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    proc = subprocess.run([DISTRIBUTION_BIN, "garbage-collect", *args, str(path)], capture_output=True,
                          text=True, timeout=120, env=env, stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@dataclass
class Template:
    root: Path              # a storage root directory, everything a day old
    scenario: Scenario

    def copy(self, dest: Path) -> Path:
        shutil.copytree(self.root, dest, symlinks=True)     # copy2: mtimes are kept
        return dest


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    srv = make_fastreg(tmp_path_factory.mktemp("gc-template"))
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30.0) as c:
            scenario = build(c)
    finally:
        srv.stop()
    backdate(srv.root, DAY)
    yield Template(srv.root, scenario)


def serve_copy(tmp: Path, template: Template) -> tuple[FastregServer, Path]:
    """A fastreg server (not started) on a fresh copy of the template's data."""
    srv = make_fastreg(tmp)
    shutil.rmtree(srv.root)
    template.copy(srv.root)
    return srv, srv.root
