"""`pip wheel .` / `pip install .` with and without a working C compiler.

Each test copies this checkout's tracked files (no built extension, no generated C) to a
temporary directory, builds a wheel there with pip (build isolation on, as `pip install .` does),
installs it into a fresh virtualenv and runs the installed `fastreg` from outside the checkout:

* no compiler on PATH, and a compiler that fails (CC=/bin/false): the build succeeds with the
  pure-Python engines and one warning; `fastreg version` says "pure"; `fastreg serve` (no config
  file) stores and serves a pushed image, and its log warns exactly once about the engines;
* the normal build: the wheel holds both extensions and `fastreg version` says "compiled".
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.support.server import REPO_ROOT, free_port, spawn, stop_group

pytestmark = [pytest.mark.e2e, pytest.mark.long]

WARNING = "fastreg's compiled engines could not be built"
RUNTIME_WARNING = "fastreg's compiled engines are not installed"
# Which engine each of the two runs in an installed fastreg.
ENGINES = ("from fastreg import digest; from fastreg.storage.driver.backends import filesystem; "
           "print(digest.EXTENSION, filesystem.FSIO_COMPILED)")


def source_copy(dest: Path) -> Path:
    """The checkout's tracked (and new, not ignored) files: what `pip install .` of a clean clone sees."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO_ROOT, capture_output=True, check=True, timeout=60).stdout
    for name in filter(None, files.decode().split("\0")):
        src = REPO_ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    assert not list((dest / "fastreg").glob("*.so")), "a built extension was copied"
    return dest


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "FASTREG_NO_EXTENSIONS", "CC", "CFLAGS", "LDSHARED")
           and not k.startswith(("FASTREG_", "REGISTRY_", "_FASTREG_"))}
    return {**env, **extra}


def build_wheel(src: Path, out: Path, env: dict[str, str]) -> tuple[Path, str]:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(out), str(src)],
                          check=False, cwd=src, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("fastreg-*.whl")
    return wheel, proc.stdout + proc.stderr


def install(wheel: Path, venv: Path) -> Path:
    """A virtualenv with this wheel in it, seeing fastreg's dependencies where this Python has them.

    Their directories are put on the path by a plain .pth line, so the .pth files in them are not
    run: an editable install of fastreg there (its import hook) stays out of the virtualenv."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    (site_dir,) = venv.glob("lib/python3*/site-packages")
    (site_dir / "fastreg-test-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, timeout=300, env=clean_env())
    return venv / "bin"


def extensions_in(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return sorted(n.split("/")[-1].split(".")[0] for n in zf.namelist() if n.endswith(".so"))


def push_and_pull(url: str) -> None:
    """A blob and a manifest through the installed registry, read back byte-exact."""
    with httpx.Client(base_url=url, timeout=30) as c:
        blob = os.urandom(3 * 1024 * 1024)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        r = c.post("/v2/smoke/app/blobs/uploads/", params={"digest": digest}, content=blob,
                   headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        config = b"{}"
        cdigest = "sha256:" + hashlib.sha256(config).hexdigest()
        assert c.post("/v2/smoke/app/blobs/uploads/", params={"digest": cdigest}, content=config).status_code == 201
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest,
                        "size": len(blob)}],
        }).encode()
        r = c.put("/v2/smoke/app/manifests/v1", content=manifest,
                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 201, r.text
        assert c.get("/v2/smoke/app/manifests/v1",
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).content == manifest
        assert c.get(f"/v2/smoke/app/blobs/{digest}").content == blob


@pytest.mark.parametrize("compiler", ["none-on-path", "failing"])
def test_without_a_compiler_installs_the_pure_engines(tmp_path: Path, compiler: str) -> None:
    src = source_copy(tmp_path / "src")
    if compiler == "none-on-path":
        # Only the Python running pip is reachable (by absolute path): no gcc, cc or anything else.
        empty = tmp_path / "empty-bin"
        empty.mkdir()
        env = clean_env(PATH=str(empty))
        assert shutil.which("gcc", path=str(empty)) is None
    else:
        env = clean_env(CC="/bin/false")
    wheel, log = build_wheel(src, tmp_path / "dist", env)

    assert extensions_in(wheel) == []
    assert log.count(WARNING) == 1, log[-4000:]
    assert "fastreg._digest" in log.split(WARNING)[1][:200] and "FASTREG_NO_EXTENSIONS=1" in log

    bin_ = install(wheel, tmp_path / "venv")
    run_env = clean_env()
    where = subprocess.run([str(bin_ / "python"), "-c", "import fastreg; print(fastreg.__file__)"],
                           cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=60, check=True)
    assert where.stdout.startswith(str(tmp_path / "venv")), where.stdout     # the wheel, not the checkout
    version = subprocess.run([str(bin_ / "fastreg"), "version"], cwd=tmp_path, env=run_env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert version.returncode == 0, version.stderr
    assert "engine: pure" in version.stdout, version.stdout
    assert version.stderr.count(RUNTIME_WARNING) == 1, version.stderr
    engine = subprocess.run([str(bin_ / "python"), "-c", ENGINES],
                            cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=60, check=True)
    assert engine.stdout.split() == ["False", "False"]

    # `fastreg serve` with no config file: the defaults, its data under $XDG_DATA_HOME, two workers.
    port = free_port()
    log_path = tmp_path / "serve.log"
    serve_env = clean_env(XDG_DATA_HOME=str(tmp_path / "xdg"), FASTREG_HTTP_ADDR=f"127.0.0.1:{port}",
                          FASTREG_FASTREG_WORKERS="2")
    proc = spawn([str(bin_ / "fastreg"), "serve"], f"http://127.0.0.1:{port}/v2/", log_path, cwd=tmp_path,
                 env=serve_env, timeout=60)
    try:
        push_and_pull(f"http://127.0.0.1:{port}")
    finally:
        stop_group(proc, timeout=30)
    served = log_path.read_text(errors="replace")
    assert served.count(RUNTIME_WARNING) == 1, served[-4000:]
    assert list((tmp_path / "xdg" / "fastreg").rglob("data")), "nothing was stored under $XDG_DATA_HOME"


def test_with_a_compiler_the_wheel_has_both_extensions(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is not installed (apt-get install gcc libssl-dev)")
    src = source_copy(tmp_path / "src")
    wheel, log = build_wheel(src, tmp_path / "dist", clean_env())
    assert extensions_in(wheel) == ["_digest", "_fsio"], log[-4000:]
    assert WARNING not in log
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert not [n for n in names if n.endswith(".c")], "generated C shipped in the wheel"
    assert any(n.endswith("LICENSE") for n in names), "LICENSE missing from the wheel's metadata"

    bin_ = install(wheel, tmp_path / "venv")
    version = subprocess.run([str(bin_ / "fastreg"), "version"], cwd=tmp_path, env=clean_env(),
                             capture_output=True, text=True, timeout=60, check=False)
    assert version.returncode == 0, version.stderr
    assert "engine: compiled" in version.stdout, version.stdout
    assert RUNTIME_WARNING not in version.stderr
    engine = subprocess.run([str(bin_ / "python"), "-c", ENGINES],
                            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60, check=True)
    assert engine.stdout.split() == ["True", "True"]


def test_fastreg_no_extensions_is_quiet(tmp_path: Path) -> None:
    """FASTREG_NO_EXTENSIONS=1 at build time: no extension, no attempt, no warning."""
    src = source_copy(tmp_path / "src")
    wheel, log = build_wheel(src, tmp_path / "dist", clean_env(FASTREG_NO_EXTENSIONS="1"))
    assert extensions_in(wheel) == []
    assert WARNING not in log and "gcc" not in log
