"""Real fastreg servers for the tests: `fastreg serve` (granian) as a child process on 127.0.0.1,
started and waited for in one place, stopped with its whole process group."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
TEST_SECRET = "fastreg-test-secret-0123456789abcdef"


def checkout_pythonpath() -> str:
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


def stop_group(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signal the process group `proc` leads (started with start_new_session) and reap it; SIGKILL
    after `timeout` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def spawn(argv: list[str], url: str, log_path: Path, *, cwd: Path, env: dict[str, str],
          timeout: float = 30.0) -> subprocess.Popen[bytes]:
    """Start a server (its own process group, output appended to `log_path`) and wait until `url`
    answers.  A server that dies or does not answer is stopped and the error carries its log."""
    with open(log_path, "ab") as log:                # the child keeps its own copy of the fd
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=str(cwd), env=env,
                                start_new_session=True)
    try:
        wait_http(url, proc, timeout)
    except Exception as exc:
        stop_group(proc)
        raise RuntimeError(f"{argv[0]} failed to start:\n" + log_path.read_text(errors="replace")) from exc
    except BaseException:               # ^C while it starts: no half-started server left behind
        stop_group(proc)
        raise
    return proc


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
        self.proc = spawn([sys.executable, "-m", "fastreg", "serve", "--config", str(self.config_path)],
                          self.url + "/v2/", self.log_path, cwd=self.config_path.parent,
                          env={**os.environ, "PYTHONPATH": checkout_pythonpath(), **self.env})

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        stop_group(self.proc, sig)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def client(self, **kw: Any) -> httpx.Client:
        """An httpx client on this server (the caller closes it)."""
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30.0), **kw)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


def base_config(root: Path, port: int, workers: int = 1) -> dict[str, Any]:
    """The tests' default configuration: filesystem storage under `root`, deletes enabled, blake3 on."""
    return {
        "version": "0.1",
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": TEST_SECRET},
        "fastreg": {"workers": workers, "digest": {"blake3": True}},
    }


def make_fastreg(tmp: Path, config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                 workers: int = 1) -> FastregServer:
    """A server (not started) on tmp/data with `config` merged over the defaults."""
    root = tmp / "data"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = deep_merge(base_config(root, port, workers), config or {})
    cfg_path = tmp / "config.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    scheme = "https" if (cfg.get("http") or {}).get("tls") else "http"
    return FastregServer(root=root, port=port, config_path=cfg_path, env=env or {}, scheme=scheme)


def serve_refused(config: Path, *extra: str, env: dict[str, str] | None = None, pythonpath: str | None = None,
                  wait: float = 40.0) -> subprocess.CompletedProcess[str]:
    """`fastreg [extra] serve --config CONFIG`, expected to refuse to start: its exit status and
    output.  A server that starts instead is stopped after `wait` seconds and the test fails."""
    proc = subprocess.Popen([sys.executable, "-m", "fastreg", *extra, "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": pythonpath or checkout_pythonpath(), **(env or {})},
                            cwd=str(config.parent), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=wait)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"fastreg serve --config {config} did not refuse to start; its output:\n{err}{out}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
