"""Interop fixtures: real clients (skopeo, oras, podman) and Debian's Distribution (`docker-registry`).

* ``distribution``: a Distribution 2.8 server on 127.0.0.1:<free port>, filesystem storage in tmp,
  deletes enabled; stopped by PID at teardown.
* ``distribution_factory(rootdir)``: start Distribution on an existing data directory (a fastreg
  data directory, to check the shared storage layout).
* ``oci_image`` / ``docker_image``: the multi-arch test image written as OCI layouts (see images.py).
* ``skopeo(...)``: run skopeo with a timeout; a failure shows skopeo's output and the server log.

Nothing is mocked; every server listens on 127.0.0.1 only, and every subprocess has a timeout.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import yaml

try:
    from tests.conftest import TEST_SECRET, free_port, wait_http
except ImportError:  # pragma: no cover - pytest imported tests/conftest.py as "conftest"
    from conftest import TEST_SECRET, free_port, wait_http  # type: ignore[no-redef]

from .images import ImageLayout, build_docker_image, build_oci_image

DISTRIBUTION_BIN = "/usr/bin/docker-registry"
SKOPEO_TIMEOUT = 180.0


class HasLog(Protocol):
    def log(self) -> str: ...


# --- subprocess helpers ---------------------------------------------------------------------------


def run(cmd: list[str], *, timeout: float = SKOPEO_TIMEOUT, server: HasLog | None = None,
        check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `cmd` (never through a shell) with a timeout; on failure, fail with its output and the
    tail of `server`'s log, so a server bug is reported with its evidence."""
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"timed out after {timeout}s: {' '.join(cmd)}\n{_server_log(server)}")
        raise AssertionError from exc  # unreachable; keeps type checkers happy
    if check and proc.returncode != 0:
        pytest.fail(f"exit {proc.returncode}: {' '.join(cmd)}\n--- stdout\n{proc.stdout}\n"
                    f"--- stderr\n{proc.stderr}\n{_server_log(server)}")
    return proc


def _server_log(server: HasLog | None, tail: int = 60) -> str:
    if server is None:
        return ""
    lines = server.log().splitlines()
    return "--- server log (tail)\n" + "\n".join(lines[-tail:])


def skopeo_cmd(*args: str) -> list[str]:
    # --insecure-policy: do not depend on /etc/containers/policy.json being present or permissive.
    return ["skopeo", "--insecure-policy", *args]


@pytest.fixture(scope="session")
def skopeo() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`skopeo(*args, server=srv, timeout=..., check=True)` runs skopeo and returns the result."""
    if shutil.which("skopeo") is None:
        pytest.fail("skopeo is not installed (apt-get install skopeo)")

    def call(*args: str, server: HasLog | None = None, timeout: float = SKOPEO_TIMEOUT,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(skopeo_cmd(*args), timeout=timeout, server=server, check=check)

    return call


# --- test images -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def oci_image(tmp_path_factory: pytest.TempPathFactory) -> ImageLayout:
    return build_oci_image(tmp_path_factory.mktemp("images") / "oci", tag="latest")


@pytest.fixture(scope="session")
def docker_image(tmp_path_factory: pytest.TempPathFactory) -> ImageLayout:
    return build_docker_image(tmp_path_factory.mktemp("images") / "docker", tag="latest")


# --- Distribution (Debian's docker-registry) --------------------------------------------------------


@dataclass
class DistributionServer:
    """A running `docker-registry serve CONFIG.yml` on 127.0.0.1."""

    root: Path
    port: int
    config_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.config_path.with_suffix(".log")

    def start(self) -> None:
        assert self.proc is None
        with open(self.log_path, "ab") as log:
            # A clean environment: Distribution reads REGISTRY_* overrides from it.
            env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
            self.proc = subprocess.Popen([DISTRIBUTION_BIN, "serve", str(self.config_path)],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=str(self.config_path.parent), env=env)
        try:
            wait_http(self.url + "/v2/", self.proc)
        except (RuntimeError, TimeoutError):
            self.stop()
            raise RuntimeError("docker-registry failed to start:\n" + self.log()) from None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def make_distribution(workdir: Path, rootdir: Path | None = None,
                      extra: dict[str, Any] | None = None) -> DistributionServer:
    """Write a Distribution config into `workdir` (storage in `rootdir`, default workdir/data)."""
    if not os.path.exists(DISTRIBUTION_BIN):
        pytest.skip(f"{DISTRIBUTION_BIN} is not installed (apt-get install docker-registry)")
    workdir.mkdir(parents=True, exist_ok=True)
    root = rootdir or workdir / "data"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": TEST_SECRET},
    }
    cfg.update(extra or {})
    cfg_path = workdir / "distribution.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    return DistributionServer(root=root, port=port, config_path=cfg_path)


@pytest.fixture(scope="module")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionServer]:
    """One Distribution server per module (filesystem storage in tmp, deletes enabled)."""
    srv = make_distribution(tmp_path_factory.mktemp("distribution"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def distribution_factory(tmp_path: Path) -> Iterator[Callable[..., DistributionServer]]:
    """`distribution_factory(rootdir=None)` starts Distribution (on an existing data directory if
    given); every server started is stopped at the end of the test."""
    started: list[DistributionServer] = []

    def factory(rootdir: Path | None = None) -> DistributionServer:
        srv = make_distribution(tmp_path / f"distribution{len(started)}", rootdir)
        srv.start()
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()


# --- small HTTP helpers ---------------------------------------------------------------------------


def get_json(url: str, **kw: Any) -> Any:
    r = httpx.get(url, timeout=30.0, **kw)
    assert r.status_code == 200, (url, r.status_code, r.text)
    return r.json()
