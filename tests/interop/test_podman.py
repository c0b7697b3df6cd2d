"""podman against fastreg: pull a multi-arch image (each platform), push it to another repository.

podman runs daemonless and rootful here, with its own throwaway storage (vfs driver, --root and
--runroot in tmp, no events journal, cgroupfs), so it needs no system service and touches no
system image store.  The image is put on the registry with skopeo first (see test_skopeo.py).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import run
from .images import OCI_INDEX, OCI_MANIFEST, ImageLayout, sha256

pytestmark = [pytest.mark.e2e, pytest.mark.interop]

Skopeo = Callable[..., subprocess.CompletedProcess[str]]
ACCEPT = f"{OCI_INDEX}, {OCI_MANIFEST}"
PODMAN_TIMEOUT = 180.0


@pytest.fixture(scope="module")
def podman() -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """`podman(*args, server=...)`: podman with private vfs storage in a short /tmp directory
    (podman refuses a runroot longer than 50 characters), removed afterwards."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (apt-get install podman)")
    base = Path(tempfile.mkdtemp(prefix="fr-pm-", dir="/tmp"))
    (base / "tmp").mkdir()
    glob = ["podman", "--storage-driver", "vfs", "--root", str(base / "root"), "--runroot",
            str(base / "runroot"), "--tmpdir", str(base / "tmp"), "--events-backend", "none",
            "--cgroup-manager", "cgroupfs"]

    def call(*args: str, server: Any = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([*glob, *args], timeout=PODMAN_TIMEOUT, server=server, check=check)

    yield call
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def pushed(registry: Any, skopeo: Skopeo, oci_image: ImageLayout) -> ImageLayout:
    skopeo("copy", "--all", "--dest-tls-verify=false", oci_image.ref,
           f"docker://{registry.host}/multi/arch:v1", server=registry)
    return oci_image


def test_pull(registry: Any, podman: Callable[..., Any], pushed: ImageLayout) -> None:
    ref = f"{registry.host}/multi/arch:v1"
    podman("pull", "--tls-verify=false", ref, server=registry)
    info = json.loads(podman("image", "inspect", ref, server=registry).stdout)[0]
    amd64 = pushed.platform("amd64")
    # The image ID is the config digest; the digest podman records is the index's.
    assert "sha256:" + info["Id"] == amd64.config_digest
    assert info["Digest"] == pushed.index_digest
    assert f"{registry.host}/multi/arch@{amd64.manifest_digest}" in info["RepoDigests"]
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    config = json.loads(pushed.blob_bytes(amd64.config_digest))
    assert info["RootFS"]["Layers"] == config["rootfs"]["diff_ids"]


def test_pull_other_platform_by_digest(registry: Any, podman: Callable[..., Any], pushed: ImageLayout) -> None:
    arm64 = pushed.platform("arm64")
    podman("pull", "--tls-verify=false", "--platform", "linux/arm64",
           f"{registry.host}/multi/arch@{pushed.index_digest}", server=registry)
    info = json.loads(podman("image", "inspect", arm64.config_digest.split(":", 1)[1],
                             server=registry).stdout)[0]
    assert info["Architecture"] == "arm64"
    assert info["Digest"] == pushed.index_digest


def test_push_to_another_repository(registry: Any, podman: Callable[..., Any], skopeo: Skopeo,
                                    pushed: ImageLayout, tmp_path: Path) -> None:
    src = f"{registry.host}/multi/arch:v1"
    podman("pull", "--tls-verify=false", src, server=registry)
    dest = f"{registry.host}/podman/pushed:v1"
    podman("push", "--tls-verify=false", src, dest, server=registry)

    amd64 = pushed.platform("amd64")
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{dest}", server=registry).stdout.encode()
    manifest = json.loads(raw)
    assert manifest["mediaType"] in (OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json")
    # podman may reuse the registry's compressed layers or recompress its own copies, so the layer
    # digests may differ; the config (hence image ID) and the uncompressed layers may not.
    assert manifest["config"]["digest"] == amd64.config_digest
    diff_ids = json.loads(pushed.blob_bytes(amd64.config_digest))["rootfs"]["diff_ids"]
    with httpx.Client(base_url=registry.url, timeout=60) as c:
        r = c.head("/v2/podman/pushed/manifests/v1", headers={"Accept": ACCEPT})
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == sha256(raw)
        got = []
        for layer in manifest["layers"]:
            r = c.get(f"/v2/podman/pushed/blobs/{layer['digest']}")
            assert r.status_code == 200 and sha256(r.content) == layer["digest"]
            assert len(r.content) == layer["size"]
            got.append("sha256:" + hashlib.sha256(gzip.decompress(r.content)).hexdigest())
        assert got == diff_ids

    # A fresh pull of what podman pushed yields the same image (`push SRC DEST` tags nothing locally).
    podman("rmi", "--force", src, server=registry)
    podman("pull", "--tls-verify=false", dest, server=registry)
    info = json.loads(podman("image", "inspect", dest, server=registry).stdout)[0]
    assert "sha256:" + info["Id"] == amd64.config_digest
    assert info["Digest"] == sha256(raw)
