"""examples/token-service.yml runs as documented: gencerts, serve, log in with the demo users."""
from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.interop.conftest import run, skopeo_cmd
from tests.interop.images import ImageLayout
from tests.support.server import REPO_ROOT, checkout_pythonpath, free_port, spawn, stop_group

pytestmark = [pytest.mark.e2e]


def fastreg(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastreg", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)


def test_token_service_example(tmp_path: Path, small_image: ImageLayout) -> None:
    # the example as a user has it after cloning: the yml and the htpasswd beside it
    (tmp_path / "examples").mkdir()
    shutil.copy(REPO_ROOT / "examples" / "token-service.yml", tmp_path / "examples")
    shutil.copytree(REPO_ROOT / "examples" / "token-service", tmp_path / "examples" / "token-service",
                    ignore=shutil.ignore_patterns("*.pem", "*.key", "certs.d"))   # generated, never committed
    port = free_port()
    env = {**os.environ, "PYTHONPATH": checkout_pythonpath(), "FASTREG_HTTP_ADDR": f"127.0.0.1:{port}",
           "FASTREG_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(tmp_path / "data"), "FASTREG_WORKERS": "1"}
    missing = fastreg("serve", "--config", "examples/token-service.yml", cwd=tmp_path, env=env)
    assert missing.returncode == 2 and "fastreg gencerts" in missing.stderr
    gen = fastreg("gencerts", "examples/token-service", cwd=tmp_path, env=env)
    assert gen.returncode == 0, gen.stderr
    certs = tmp_path / "examples" / "token-service" / "certs.d"
    assert (certs / "ca.crt").exists()
    proc = spawn([sys.executable, "-m", "fastreg", "serve", "--config", "examples/token-service.yml"],
                 f"https://127.0.0.1:{port}/v2/", tmp_path / "serve.log", cwd=tmp_path, env=env)
    try:
        host = f"127.0.0.1:{port}"
        run(skopeo_cmd("copy", "--all", "--dest-cert-dir", str(certs), "--dest-creds", "dev:dev-demo-password",
                       small_image.ref, f"docker://{host}/dev/app:v1"))
        denied = run(skopeo_cmd("copy", "--all", "--dest-cert-dir", str(certs), "--dest-creds",
                                "dev:dev-demo-password", small_image.ref, f"docker://{host}/library/app:v1"),
                     check=False)
        assert denied.returncode != 0
        run(skopeo_cmd("copy", "--all", "--dest-cert-dir", str(certs), "--dest-creds", "admin:admin-demo-password",
                       small_image.ref, f"docker://{host}/library/app:v1"))
        run(skopeo_cmd("inspect", "--raw", "--cert-dir", str(certs), f"docker://{host}/library/app:v1"))  # anonymous
        r = httpx.get(f"https://{host}/v2/", verify=ssl.create_default_context(cafile=str(certs / "ca.crt")))
        assert r.headers["www-authenticate"].startswith(f'Bearer realm="https://{host}/token"')
    finally:
        stop_group(proc, timeout=30)
