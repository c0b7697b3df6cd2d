"""Build fastreg's container image with podman, run it, and push and pull images through it.

    python3 -m tests.deploy.container [--keep DIR] [--base IMAGE]

Needs podman, runc, skopeo, mmdebstrap and python3-pip (apt-get install podman runc skopeo
mmdebstrap python3-pip), root, and the package registries (Debian's through apt, PyPI through pip).
Everything podman stores goes to a
private directory (vfs storage) that is removed at the end unless --keep is given.

1. The base image: `mmdebstrap --variant=apt --include=python3 bookworm` with this machine's apt
   sources, imported with `podman import` (or --base IMAGE).
2. A wheelhouse of fastreg's dependencies and build requirements, made on this machine with its
   pip configuration by a Python of the base image's version (Debian's python3 and python3-pip
   for bookworm), is put in the build context, and the image is built from the Containerfile
   with `--build-arg PIP_OPTIONS="--no-index --find-links /src/wheels"`: fastreg itself is
   compiled inside the build (gcc, libssl-dev), so the image has the compiled engines.
3. `podman run` with the data directory as a volume and REGISTRY_HTTP_ADDR set (registry:2's
   environment overrides), a read-only root filesystem and no capabilities; checks it runs as
   uid 1000, answers /v2/, says "compiled".
4. Pushes the fastreg image into the running fastreg (`skopeo copy` from podman's storage),
   checks the bytes landed in the volume in Distribution's layout, copies it back out with
   skopeo to an OCI layout and compares digests, then pulls it with podman from fastreg and runs
   the pulled image (`fastreg version`).
5. `podman stop` (SIGTERM): the server drains and exits 0.

On a 2-core machine this takes 5 to 6 minutes (most of it the image build: apt and compiling).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
IMAGE = "localhost/fastreg:container-test"
BASE = "localhost/fastreg-base:bookworm"
UID = 1000


def log(msg: str) -> None:
    print(f"[container] {msg}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str], timeout: float = 600, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... exited {proc.returncode}:\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Podman:
    """podman with private vfs storage; Debian's runc (crun fails on some cgroup setups)."""

    def __init__(self, work: Path) -> None:
        for d in ("root", "tmp"):
            (work / d).mkdir(parents=True, exist_ok=True)
        # podman refuses a run root path longer than 50 characters: a short one under /tmp.
        self.runroot = Path(tempfile.mkdtemp(prefix="fastreg-rr-", dir="/tmp"))
        self.storage = f"vfs@{work / 'root'}+{self.runroot}"
        self.glob = ["podman", "--storage-driver", "vfs", "--root", str(work / "root"),
                     "--runroot", str(self.runroot), "--tmpdir", str(work / "tmp"),
                     "--events-backend", "none", "--cgroup-manager", "cgroupfs", "--runtime", "runc"]
        self.env = {**os.environ, "TMPDIR": str(work / "tmp")}

    def close(self) -> None:
        shutil.rmtree(self.runroot, ignore_errors=True)

    def __call__(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([*self.glob, *args], timeout=timeout, check=check, env=self.env)


LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def make_base(podman: Podman, work: Path) -> str:
    rootfs = work / "rootfs.tar"
    log("base image: mmdebstrap bookworm (this machine's apt sources)")
    run(["mmdebstrap", "--quiet", "--variant=apt", "--include=python3", "bookworm", str(rootfs)], timeout=900)
    podman("import", str(rootfs), BASE)
    rootfs.unlink()
    return BASE


def wheel_python(podman: Podman, base: str) -> str:
    """A Python on this machine of the base image's version, with pip: the wheelhouse must be
    resolved for the image's Python (dependencies have markers such as python_full_version <
    "3.11.3").  Debian's own python3 (with python3-pip) is that Python when the base is bookworm."""
    want = podman("run", "--rm", "--network", "host", *LIMITS, base, "python3", "-c",
                  "import platform; print(platform.python_version())").stdout.strip()
    for exe in (sys.executable, "/usr/bin/python3", shutil.which("python3") or ""):
        if not exe or not os.path.exists(exe):
            continue
        probe = run([exe, "-c", "import platform, pip; print(platform.python_version())"], check=False)
        if probe.returncode == 0 and probe.stdout.strip() == want:
            return exe
    raise RuntimeError(f"no Python {want} with pip on this machine for the wheelhouse "
                       f"(Debian: apt-get install python3-pip)")


def make_context(work: Path, python: str) -> Path:
    """This checkout's files (tracked and new, not ignored) plus a wheelhouse in wheels/."""
    ctx = work / "context"
    files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT).stdout
    for name in filter(None, files.split("\0")):
        src = REPO_ROOT / name
        if src.is_file():
            (ctx / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, ctx / name)
    wheels = ctx / "wheels"
    log("wheelhouse: fastreg's dependencies and build requirements (pip, this machine's index)")
    env = {**os.environ, "FASTREG_NO_EXTENSIONS": "1"}     # only the dependencies matter here
    run([python, "-m", "pip", "wheel", "-q", "-w", str(wheels), f"{ctx}[s3,azure,redis]"], env=env, timeout=900)
    for whl in wheels.glob("fastreg-*.whl"):
        whl.unlink()                                      # fastreg itself is compiled in the image
    requires = ["setuptools>=68", "wheel", "Cython>=3.0.10,<3.4"]     # pyproject's [build-system]
    run([python, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(wheels), *requires],
        timeout=600)
    return ctx


def wait_v2(url: str, podman: Podman, name: str, timeout: float = 120) -> None:
    import httpx
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        if not state["Running"]:
            raise RuntimeError(f"the container exited ({state['ExitCode']}):\n{podman('logs', name).stderr}")
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s:\n{podman('logs', name, check=False).stderr}")


def roundtrip(work: Path, base: str | None) -> dict[str, object]:
    """The whole run; returns what it checked (for the test that calls it)."""
    t0 = time.monotonic()
    podman = Podman(work)
    try:
        report = _roundtrip(podman, work, base)
    finally:
        podman.close()
    report["seconds"] = round(time.monotonic() - t0)
    return report


def _roundtrip(podman: Podman, work: Path, base: str | None) -> dict[str, object]:
    report: dict[str, object] = {}
    base = base or make_base(podman, work)
    ctx = make_context(work, wheel_python(podman, base))
    log(f"podman build (BASE={base})")
    # --layers=false: no intermediate images (with vfs storage each is a full copy of the tree).
    podman("build", "--layers=false", "--network", "host", *LIMITS, "--build-arg", f"BASE={base}",
           "--build-arg", "PIP_OPTIONS=--no-index --find-links /src/wheels",
           "-f", str(ctx / "Containerfile"), "-t", IMAGE, str(ctx), timeout=1800)
    info = json.loads(podman("image", "inspect", IMAGE).stdout)[0]["Config"]
    report["user"] = info.get("User")
    report["exposed"] = sorted(info.get("ExposedPorts", {}))
    report["volumes"] = sorted(info.get("Volumes", {}))
    report["stopsignal"] = info.get("StopSignal")
    report["version"] = podman("run", "--rm", "--network", "host", *LIMITS, IMAGE, "version").stdout.strip()

    data = work / "data"
    data.mkdir()
    os.chown(data, UID, UID)        # a host directory as the volume, owned by the image's user
    port = free_port()
    name = "fastreg-container-test"
    podman("rm", "-f", name, check=False)
    log(f"podman run on 127.0.0.1:{port}")
    # As the Kubernetes manifests run it: read-only root filesystem (podman mounts a tmpfs on
    # /tmp, /var/tmp and /run), no capabilities.
    podman("run", "-d", "--name", name, "--network", "host", *LIMITS, "--read-only", "--cap-drop", "all",
           "-e", f"REGISTRY_HTTP_ADDR=127.0.0.1:{port}", "-e", "REGISTRY_HTTP_SECRET=container-test-secret-0123456789",
           "-v", f"{data}:/var/lib/registry", IMAGE)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_v2(url + "/v2/", podman, name)
        top = podman("top", name, "user", "huser", "args").stdout
        report["processes"] = top
        report["uid"] = podman("exec", name, "id", "-u").stdout.strip()

        log("skopeo: the fastreg image into fastreg")
        dest = f"127.0.0.1:{port}/fastreg/fastreg:test"
        run(["skopeo", "copy", "--dest-tls-verify=false", f"containers-storage:[{podman.storage}]{IMAGE}",
             f"docker://{dest}"], timeout=900)
        pushed = json.loads(run(["skopeo", "inspect", "--tls-verify=false", f"docker://{dest}"]).stdout)
        report["pushed_digest"] = pushed["Digest"]
        tags = data / "docker/registry/v2/repositories/fastreg/fastreg/_manifests/tags"
        report["stored_tag"] = (tags / "test/current/link"
                                ).read_text()
        log("skopeo: back out to an OCI layout")
        out = work / "pulled-oci"
        run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{dest}", f"oci:{out}:test"], timeout=900)
        index = json.loads((out / "index.json").read_text())
        report["oci_manifest_digest"] = index["manifests"][0]["digest"]
        log("podman pull from fastreg, and run the pulled image")
        podman("pull", "--tls-verify=false", dest, timeout=900)
        report["pulled_version"] = podman("run", "--rm", "--network", "host", *LIMITS, dest, "version").stdout.strip()
        report["log"] = podman("logs", name).stderr[-2000:]
        log("podman stop (SIGTERM)")
        podman("stop", "--time", "30", name, timeout=120)
        report["exit_code"] = json.loads(podman("inspect", name).stdout)[0]["State"]["ExitCode"]
    finally:
        podman("rm", "-f", name, check=False)
    return report


def check(report: dict[str, object]) -> list[str]:
    """What is wrong with a run's report (empty: all good)."""
    problems = []
    want = {
        "user": "1000:1000", "exposed": ["5000/tcp"], "volumes": ["/var/lib/registry"], "stopsignal": "SIGTERM",
        "uid": "1000", "exit_code": 0,
    }
    for key, value in want.items():
        if report.get(key) != value:
            problems.append(f"{key}: {report.get(key)!r}, expected {value!r}")
    for key in ("version", "pulled_version"):
        if "engine: compiled" not in str(report.get(key)):
            problems.append(f"{key}: {report.get(key)!r} does not say the compiled engine")
    if report.get("stored_tag") != report.get("pushed_digest"):
        problems.append(f"the tag link in the volume {report.get('stored_tag')!r} is not the pushed "
                        f"manifest {report.get('pushed_digest')!r}")
    if report.get("oci_manifest_digest") != report.get("pushed_digest"):
        problems.append(f"skopeo pulled {report.get('oci_manifest_digest')!r}, pushed {report.get('pushed_digest')!r}")
    if " root " in f" {report.get('processes', '')} ".replace("\n", " "):
        problems.append(f"a process runs as root:\n{report.get('processes')}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m tests.deploy.container", description=__doc__.split("\n")[0])
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it (podman storage, wheels)")
    ap.add_argument("--base", help="an existing base image in the work directory's storage (skips mmdebstrap)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root (podman's vfs storage and the volume's owner)", file=sys.stderr)
        return 2
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        report = roundtrip(args.keep, args.base)
    else:
        with tempfile.TemporaryDirectory(prefix="fastreg-container-") as tmp:
            report = roundtrip(Path(tmp), args.base)
    problems = check(report)
    print(json.dumps({k: v for k, v in report.items() if k != "log"}, indent=2))
    for p in problems:
        print("FAIL:", p, file=sys.stderr)
    print(f"{'FAILED' if problems else 'OK'} in {report['seconds']} s", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
