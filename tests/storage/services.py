"""Real storage services on 127.0.0.1 for the tests: moto (S3), Azurite (Azure Blob), the GCS emulator.

Each runs as a child process on a free port and is stopped by PID.  A service whose program
is truly absent makes its tests skip (``.ci/run`` installs them all, so CI never skips).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    from tests.conftest import REPO_ROOT, free_port
except ImportError:  # pragma: no cover - pytest imported tests/conftest.py as "conftest"
    from conftest import REPO_ROOT, free_port  # type: ignore[no-redef]

# Small parts keep the suite fast; moto enforces this minimum like AWS enforces 5 MiB.
S3_TEST_PART = 256 * 1024
S3_BUCKET = "fastreg-test"
S3_KEYS = {"accesskey": "fastreg-test-key", "secretkey": "fastreg-test-secret"}

# Azurite's well-known development account (public, documented by Microsoft).
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURE_CONTAINER = "fastreg-test"
GCS_BUCKET = "fastreg-test"


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def logtext(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _wait_port(svc: Service, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if svc.proc.poll() is not None:
            raise RuntimeError(f"{svc.name} exited with {svc.proc.returncode}:\n{svc.logtext()}")
        try:
            with socket.create_connection(("127.0.0.1", svc.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    svc.stop()
    raise TimeoutError(f"{svc.name} did not listen on {svc.port} within {timeout}s:\n{svc.logtext()}")


def start(name: str, argv: list[str], logdir: Path, port: int, env: dict[str, str] | None = None) -> Service:
    log = logdir / f"{name}.log"
    with open(log, "ab") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=str(logdir),
                                env={**os.environ, **(env or {})}, start_new_session=True)
    svc = Service(name, proc, port, log)
    _wait_port(svc)
    return svc


def start_moto(logdir: Path) -> Service:
    port = free_port()
    return start("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], logdir, port,
                 env={"S3_UPLOAD_PART_MIN_SIZE": str(S3_TEST_PART)})


def azurite_binary() -> str | None:
    local = REPO_ROOT / ".ci" / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return str(local)
    return shutil.which("azurite-blob")


def start_azurite(logdir: Path) -> Service:
    exe = azurite_binary()
    if exe is None:
        pytest.skip("azurite-blob not installed (bash .ci/run installs it)")
    port = free_port()
    return start("azurite", [exe, "--inMemoryPersistence", "--blobHost", "127.0.0.1", "--blobPort", str(port),
                             "--skipApiVersionCheck", "--loose",
                             "--disableTelemetry", "--silent"],
                 logdir, port)


def start_gcs(logdir: Path) -> Service:
    port = free_port()
    return start("gcs", [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                         "--port", str(port), "--in-memory"], logdir, port)


def start_redis(logdir: Path, port: int | None = None) -> Service:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed (bash .ci/run installs Debian's redis-server)")
    port = port or free_port()
    return start("redis", [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                           "--dir", str(logdir)], logdir, port)
