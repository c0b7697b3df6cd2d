"""Shared fixtures: real fastreg servers (granian, started as `python -m fastreg serve`)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = "fastreg-test-secret-0123456789abcdef"


def _pythonpath() -> str:
    """This checkout first, so servers run the code under test whatever is installed."""
    rest = os.environ.get("PYTHONPATH")
    return f"{REPO_ROOT}{os.pathsep}{rest}" if rest else str(REPO_ROOT)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0) -> None:
    """Poll `url` until it answers (any status), failing early if `proc` died."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            httpx.get(url, timeout=1.0, verify=False)   # readiness only: any answer, any cert
            return
        except httpx.ReadError as exc:
            if "CERTIFICATE_REQUIRED" in str(exc):      # TLS server asking for a client certificate
                return
            last = exc
            time.sleep(0.1)
        except httpx.HTTPError as exc:
            last = exc
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`; a None value removes the key (e.g. storage.filesystem for another driver)."""
    out = dict(base)
    for k, v in extra.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


@dataclass
class FastregServer:
    """A running `fastreg serve` process on 127.0.0.1."""

    root: Path
    port: int
    config_path: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    scheme: str = "http"        # "https" when the config has http.tls

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.proc is None
        self.log_path = self.config_path.with_suffix(".log")
        with open(self.log_path, "ab") as log:       # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fastreg", "serve", "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, cwd=str(self.config_path.parent),
                env={**os.environ, "PYTHONPATH": _pythonpath(), **self.env}, start_new_session=True,
            )
        try:
            wait_http(self.url + "/v2/", self.proc)
        except Exception as exc:
            self.stop()
            raise RuntimeError("fastreg failed to start:\n" + self.log()) from exc
        except BaseException:           # ^C while it starts: no half-started server left behind
            self.stop()
            raise

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


def make_fastreg(tmp: Path, config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                 workers: int = 1) -> FastregServer:
    root = tmp / "data"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": TEST_SECRET},
        "fastreg": {"workers": workers, "digest": {"blake3": True}},
    }
    cfg = deep_merge(base, config or {})
    cfg_path = tmp / "config.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    scheme = "https" if (cfg.get("http") or {}).get("tls") else "http"
    return FastregServer(root=root, port=port, config_path=cfg_path, env=env or {}, scheme=scheme)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastregServer]:
    """One fastreg server per test module (filesystem storage, deletes enabled, blake3 on)."""
    srv = make_fastreg(tmp_path_factory.mktemp("fastreg"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def fastreg_factory(tmp_path: Path) -> Iterator[Any]:
    """Start fastreg servers with custom config; all are stopped at the end of the test."""
    started: list[FastregServer] = []

    def factory(config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                workers: int = 1, subdir: str = "srv") -> FastregServer:
        srv = make_fastreg(tmp_path / f"{subdir}{len(started)}", config, env, workers)
        srv.start()
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()


@pytest.fixture
def client(registry: FastregServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=30.0) as c:
        yield c


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With CI_FORBID_SKIPS=1 (set by .ci/run, which installs every tool the tests need), a
    skipped test fails: a missing service must never turn a CI run green by skipping."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and os.environ.get("CI_FORBID_SKIPS") == "1" and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in a run that allows no skips (CI_FORBID_SKIPS=1): {report.longrepr}"
