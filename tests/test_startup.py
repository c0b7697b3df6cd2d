"""`fastreg serve` starts and stops like a server: a failure to start is one line on stderr, a
non-zero exit status and no traceback (unless --debug), and "listening on" is logged once the
socket is bound.  Every test runs the real command (`python -m fastreg serve`)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import REPO_ROOT, TEST_SECRET, FastregServer, _pythonpath, free_port

DEBIAN_CONFIG = Path("/etc/docker/registry/config.yml")


def write_config(tmp: Path, port: int, extra: dict[str, Any] | None = None, name: str = "config.yml") -> Path:
    from tests.conftest import deep_merge
    cfg = deep_merge({
        "version": "0.1",
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": str(tmp / "data")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": TEST_SECRET},
        "fastreg": {"workers": 1},
    }, extra or {})
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def serve(config: Path, *extra: str, env: dict[str, str] | None = None, pythonpath: str | None = None,
          wait: float = 40.0) -> subprocess.CompletedProcess[str]:
    """`fastreg serve` expected to fail: its exit status and output.  A server that starts
    instead (the old behaviour) is stopped after `wait` seconds and the test fails."""
    proc = subprocess.Popen([sys.executable, "-m", "fastreg", *extra, "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": pythonpath or _pythonpath(), **(env or {})},
                            cwd=str(config.parent), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=wait)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"fastreg serve did not refuse to start; its output:\n{err}{out}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")


def one_line(p: subprocess.CompletedProcess[str], logs: bool = False) -> str:
    """The single line a failed command printed (stderr), having checked there is one and no
    traceback; with `logs`, log records (say, warnings about the config) may come before it."""
    assert p.returncode != 0, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout and "backtrace" not in p.stderr, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip() and not (logs and LOG_LINE.match(line))]
    assert len(lines) == 1, p.stderr
    assert "listening" not in p.stderr
    return lines[0]


def test_a_second_fastreg_on_the_same_port_refuses_to_start(fastreg_factory: Any, tmp_path: Path) -> None:
    first: FastregServer = fastreg_factory()
    # the same port (the first server's own config), another data directory
    cfg = write_config(tmp_path, first.port)
    line = one_line(serve(cfg))
    assert line == (f"fastreg: http.addr: port {first.port} is in use on 127.0.0.1 (by another fastreg or another "
                    "program): stop it, or choose another port")
    # the first one still answers every request: nobody took half of its connections
    for _ in range(20):
        assert httpx.get(first.url + "/v2/", timeout=10).status_code == 200


def test_a_port_held_by_another_program(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        p = serve(write_config(tmp_path, port))
    assert one_line(p) == (f"fastreg: http.addr: port {port} is in use on 127.0.0.1 (by another fastreg or "
                           "another program): stop it, or choose another port")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        p = serve(write_config(tmp_path, other.getsockname()[1]), "--debug")
    assert p.returncode != 0
    assert "Traceback" in p.stderr and "StartupError: http.addr: port" in p.stderr


def test_the_debug_listener_port_held(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        dport = other.getsockname()[1]
        p = serve(write_config(tmp_path, free_port(), {"http": {"debug": {"addr": f"127.0.0.1:{dport}"}}}))
    assert one_line(p) == (f"fastreg: http.debug.addr: port {dport} is in use on 127.0.0.1: stop what holds it, "
                           "or choose another port")


def _unwritable_dir(tmp: Path) -> str:
    if os.geteuid() != 0:
        d = tmp / "readonly"
        d.mkdir()
        d.chmod(0o555)
        return str(d)
    return "/sys"          # a directory even root cannot write in (sysfs)


def test_a_data_directory_that_cannot_be_written(tmp_path: Path) -> None:
    root = _unwritable_dir(tmp_path)
    p = serve(write_config(tmp_path, free_port(), {"storage": {"filesystem": {"rootdirectory": root}}}))
    line = one_line(p)
    assert line.startswith(f"fastreg: storage.filesystem.rootdirectory: cannot write in {root}: "), line
    assert "give the user fastreg runs as write access to it" in line


def test_a_read_only_registry_serves_a_directory_it_cannot_write(tmp_path: Path) -> None:
    from tests.conftest import make_fastreg
    srv = make_fastreg(tmp_path, {"storage": {"filesystem": {"rootdirectory": _unwritable_dir(tmp_path)},
                                              "maintenance": {"readonly": {"enabled": True}}}})
    srv.start()
    try:
        assert httpx.get(srv.url + "/v2/_catalog", timeout=10).status_code == 200
    finally:
        srv.stop()


def test_a_data_directory_that_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    root = tmp_path / "file" / "data"
    p = serve(write_config(tmp_path, free_port(), {"storage": {"filesystem": {"rootdirectory": str(root)}}}))
    assert one_line(p) == (f"fastreg: storage.filesystem.rootdirectory: cannot create {root}: Not a directory: "
                           "create it, or choose another directory")
    assert not root.exists()


def test_a_missing_data_directory_is_made(tmp_path: Path) -> None:
    """As Distribution does: a data directory that does not exist yet is created."""
    from tests.conftest import make_fastreg
    srv = make_fastreg(tmp_path)
    srv.root.rmdir()
    srv.start()
    try:
        assert srv.root.is_dir()
    finally:
        srv.stop()


@pytest.mark.parametrize("which", ["certificate", "key"])
def test_tls_files_that_cannot_be_read(tmp_path: Path, which: str) -> None:
    from fastreg.auth.pki import generate
    certs = tmp_path / "certs"
    generate(str(certs), ["127.0.0.1"])
    tls = {"certificate": str(certs / "server.pem"), "key": str(certs / "server.key")}
    missing = tmp_path / "nowhere" / f"tls.{which}"
    tls[which] = str(missing)
    p = serve(write_config(tmp_path, free_port(), {"http": {"tls": tls}}))
    assert one_line(p) == (f"fastreg: http.tls.{which}: {missing} does not exist: check the path (fastreg "
                           "gencerts DIR makes a certificate and its key)")
    assert p.returncode == 2


def test_a_tls_key_that_is_a_directory(tmp_path: Path) -> None:
    from fastreg.auth.pki import generate
    certs = tmp_path / "certs"
    generate(str(certs), ["127.0.0.1"])
    p = serve(write_config(tmp_path, free_port(), {"http": {"tls": {"certificate": str(certs / "server.pem"),
                                                                     "key": str(certs)}}}))
    assert one_line(p) == f"fastreg: http.tls.key: {certs} is a directory: name the file"


def test_debians_config_with_its_htpasswd_directory(tmp_path: Path) -> None:
    """Debian's docker-registry package ships a config whose auth.htpasswd.path is a directory."""
    if not DEBIAN_CONFIG.exists():
        pytest.skip("Debian's docker-registry is not installed")
    htdir = tmp_path / "registry"
    htdir.mkdir()
    text = DEBIAN_CONFIG.read_text()
    assert "path: /etc/docker/registry\n" in text
    cfg = tmp_path / "config.yml"
    cfg.write_text(text.replace("path: /etc/docker/registry\n", f"path: {htdir}\n"))
    p = serve(cfg, env={"FASTREG_HTTP_ADDR": f"127.0.0.1:{free_port()}",
                        "FASTREG_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path / "data")})
    assert one_line(p, logs=True) == (f"fastreg: auth.htpasswd.path: {htdir} is a directory, "
                                      f"not an htpasswd file: point it "
                           f"at a file, e.g. fastreg htpasswd add USER --file {htdir}/htpasswd")


def test_a_storage_extra_that_is_not_installed(tmp_path: Path) -> None:
    """fastreg[s3] missing: aiobotocore cannot be imported (a package on the path that says so)."""
    shadow = tmp_path / "shadow" / "aiobotocore"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'aiobotocore'\")\n")
    cfg = write_config(tmp_path, free_port(), {"storage": {"filesystem": None, "s3": {
        "bucket": "b", "region": "us-east-1", "regionendpoint": "http://127.0.0.1:9"}}})
    p = serve(cfg, pythonpath=f"{REPO_ROOT}{os.pathsep}{tmp_path / 'shadow'}")
    assert one_line(p) == "fastreg: storage driver s3 is not installed: pip install 'fastreg[s3]'"


@pytest.mark.parametrize("formatter", ["text", "json"])
def test_one_log_format_and_listening_once_bound(fastreg_factory: Any, formatter: str) -> None:
    srv: FastregServer = fastreg_factory({"log": {"level": "info", "formatter": formatter}}, workers=2)
    httpx.get(srv.url + "/v2/", timeout=10)
    srv.stop()
    lines = [line for line in srv.log().splitlines() if line.strip()]
    assert "Traceback" not in srv.log()
    listening = [line for line in lines if "listening on" in line.lower() or "Listening at" in line]
    assert len(listening) == 1, listening
    if formatter == "json":
        records = [json.loads(line) for line in lines]      # every line, granian's too, is JSON
        (rec,) = [r for r in records if "listening on" in r["msg"]]
        assert rec["level"] == "info" and rec["logger"] == "fastreg.server"
        assert {r["logger"] for r in records} >= {"granian", "fastreg.server"}
        starting = [i for i, r in enumerate(records) if r["msg"].startswith("Starting granian")]
    else:
        text = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")
        access = re.compile(r'^127\.0\.0\.1 - - \[[^]]+\] "GET /v2/ HTTP/1\.1" ')
        for line in lines:
            assert text.match(line) or access.match(line), line
        assert re.match(r"^\S+ \S+ INFO fastreg.server: fastreg listening on "
                        rf"http://127\.0\.0\.1:{srv.port} \(2 workers, filesystem storage at {srv.root}\)$",
                        listening[0]), listening[0]
        assert any(" INFO granian: Starting granian" in line for line in lines)
        starting = [i for i, line in enumerate(lines) if "Starting granian" in line]
    # granian binds the socket after "Starting granian": "listening" comes after it
    assert starting and starting[0] < lines.index(listening[0])


def test_durations_are_logged_as_the_config_writes_them(fastreg_factory: Any) -> None:
    srv: FastregServer = fastreg_factory({"log": {"level": "info"}, "storage": {"maintenance": {
        "uploadpurging": {"enabled": True, "age": "168h", "interval": "24h", "dryrun": False}}}})
    srv.stop()
    assert "upload purging every 24h for sessions older than 168h, first in " in srv.log(), srv.log()
