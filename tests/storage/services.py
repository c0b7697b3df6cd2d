"""Real storage services on 127.0.0.1 for the tests: moto (S3), Ceph RGW (S3, a single-node
cluster from Debian's packages), Azurite (Azure Blob), the GCS emulator, redis-server.

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


def start(name: str, argv: list[str], logdir: Path, port: int, env: dict[str, str] | None = None,
          timeout: float = 60.0) -> Service:
    log = logdir / f"{name}.log"
    with open(log, "ab") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=str(logdir),
                                env={**os.environ, **(env or {})}, start_new_session=True)
    svc = Service(name, proc, port, log)
    _wait_port(svc, timeout)
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


# -- Ceph RGW (a real S3 implementation, Debian's radosgw) -------------------------------------

RGW_KEYS = {"accesskey": "fastreg-rgw-key", "secretkey": "fastreg-rgw-secret"}
RGW_PROGRAMS = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph")


@dataclass
class Cluster:
    """A single-node Ceph cluster (one mon, one memstore OSD) and its S3 gateway."""

    daemons: list[Service]
    conf: Path

    @property
    def gateway(self) -> Service:
        return self.daemons[-1]

    def stop(self) -> None:
        for svc in reversed(self.daemons):
            svc.stop()


def _ceph_conf(d: Path, fsid: str, mon_port: int, rgw_port: int, part: int, memstore: int) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "ceph.conf"
    conf.write_text(f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
ms bind msgr1 = false
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = {memstore}
run dir = {d}/run
admin socket = {d}/run/$name.asok
log file = {d}/log/$name.log
mon data = {d}/mon/$id
osd data = {d}/osd/$id
rgw frontends = beast endpoint=127.0.0.1:{rgw_port} tcp_nodelay=1
rgw data = {d}/rgw
rgw multipart min part size = {part}
rgw enable usage log = false
rgw dns name = 127.0.0.1
""")
    for sub in ("run", "log", "mon/a", "osd/0", "rgw"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    return conf


def _run(argv: list[str], log: Path, timeout: float = 60.0) -> str:
    r = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(argv)}\n{r.stdout}{r.stderr}")
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r.stdout


def start_rgw(d: Path, part: int = S3_TEST_PART, keys: dict[str, str] = RGW_KEYS,
              memstore: int = 2 << 30) -> Cluster:
    """Make and start the cluster in `d` (its data in RAM, at most `memstore` bytes; its files
    under `d`); ~15 s.  `part`: the gateway's smallest multipart part (AWS: 5 MiB)."""
    missing = [p for p in RGW_PROGRAMS if shutil.which(p) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (bash .ci/run installs Debian's ceph-mon, "
                    "ceph-osd, radosgw and ceph-common)")
    import uuid
    fsid = str(uuid.uuid4())
    mon_port, rgw_port = free_port(), free_port()
    conf = _ceph_conf(d, fsid, mon_port, rgw_port, part, memstore)
    setup = d / "setup.log"
    c = ["-c", str(conf)]
    _run(["monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{mon_port}]", "--fsid", fsid,
          str(d / "monmap")], setup)
    _run(["ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", str(d / "monmap")], setup)
    cluster = Cluster([], conf)
    try:
        cluster.daemons.append(start("ceph-mon", ["ceph-mon", *c, "-f", "-i", "a"], d, mon_port))
        osd_uuid = str(uuid.uuid4())
        osd_id = _run(["ceph", *c, "osd", "new", osd_uuid], setup).strip()
        _run(["ceph-osd", *c, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid], setup)
        osd = start_daemon("ceph-osd", ["ceph-osd", *c, "-f", "-i", osd_id], d)
        cluster.daemons.append(osd)
        deadline = time.monotonic() + 60
        while "1 up" not in _run(["ceph", *c, "osd", "stat"], setup):
            if osd.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ceph-osd did not come up:\n{osd.logtext()}")
            time.sleep(0.3)
        cluster.daemons.append(start("radosgw", ["radosgw", *c, "-f", "-n", "client.rgw"], d, rgw_port,
                                     timeout=90.0))
        _run(["radosgw-admin", *c, "user", "create", "--uid", "fastreg", "--display-name", "fastreg",
              "--access-key", keys["accesskey"], "--secret", keys["secretkey"]], setup)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def start_daemon(name: str, argv: list[str], logdir: Path) -> Service:
    """A child that listens on no port we choose (its readiness is checked by the caller)."""
    log = logdir / f"{name}.log"
    with open(log, "ab") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, cwd=str(logdir),
                                start_new_session=True)
    return Service(name, proc, 0, log)
