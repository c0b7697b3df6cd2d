"""skopeo against fastreg: multi-arch push and pull (OCI and Docker schema2), tags, delete.

skopeo (containers/image) is a real client with its own upload, mount and manifest logic; these
tests push images built on disk (images.py), read them back and require every digest to survive
the round trip unchanged.  Plain HTTP on loopback, hence the --*-tls-verify=false flags.
"""
from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from .images import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    ImageLayout,
    build_oci_image,
    layout_blobs,
    layout_top,
    read_image_dir,
    sha256,
)

pytestmark = [pytest.mark.e2e, pytest.mark.interop]

Skopeo = Callable[..., subprocess.CompletedProcess[str]]
ACCEPT = f"{OCI_INDEX}, {OCI_MANIFEST}, {DOCKER_LIST}, {DOCKER_MANIFEST}"


def push(skopeo: Skopeo, server: Any, src: str, dest: str, *extra: str) -> None:
    skopeo("copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false", *extra,
           src, f"docker://{server.host}/{dest}", server=server)


def raw(skopeo: Skopeo, server: Any, ref: str) -> bytes:
    out = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{server.host}/{ref}", server=server)
    return out.stdout.encode()


@pytest.fixture(scope="module")
def pushed(registry: Any, skopeo: Skopeo, oci_image: ImageLayout) -> ImageLayout:
    """The multi-arch OCI image pushed to multi/arch:v1 (the brief's exact command)."""
    push(skopeo, registry, oci_image.ref, "multi/arch:v1")
    return oci_image


@pytest.fixture(scope="module")
def pushed_docker(registry: Any, skopeo: Skopeo, docker_image: ImageLayout) -> ImageLayout:
    """The Docker schema2 variant pushed to multi/docker:v1, digests preserved (no conversion)."""
    push(skopeo, registry, docker_image.ref, "multi/docker:v1", "--preserve-digests")
    return docker_image


# --- OCI image index --------------------------------------------------------------------------------


def test_inspect_raw_is_the_pushed_index(registry: Any, skopeo: Skopeo, pushed: ImageLayout) -> None:
    body = raw(skopeo, registry, "multi/arch:v1")
    assert sha256(body) == pushed.index_digest
    assert body == pushed.blob_bytes(pushed.index_digest)
    assert json.loads(body)["mediaType"] == OCI_INDEX


def test_inspect_raw_each_platform_manifest(registry: Any, skopeo: Skopeo, pushed: ImageLayout) -> None:
    for img in pushed.images:
        body = raw(skopeo, registry, f"multi/arch@{img.manifest_digest}")
        assert sha256(body) == img.manifest_digest
        assert body == pushed.blob_bytes(img.manifest_digest)


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_inspect_resolves_platform(registry: Any, skopeo: Skopeo, pushed: ImageLayout, arch: str) -> None:
    out = skopeo("--override-os", "linux", "--override-arch", arch, "inspect", "--tls-verify=false",
                 f"docker://{registry.host}/multi/arch:v1", server=registry)
    info = json.loads(out.stdout)
    img = pushed.platform(arch)
    # skopeo 1.9 reports the digest of the reference it was given (the index); newer versions may
    # report the platform manifest's.
    assert info["Digest"] in (pushed.index_digest, img.manifest_digest)
    assert info["Architecture"] == arch
    assert info["Layers"] == img.layer_digests


def test_registry_headers_match_skopeo(registry: Any, pushed: ImageLayout) -> None:
    r = httpx.head(f"{registry.url}/v2/multi/arch/manifests/v1", headers={"Accept": ACCEPT}, timeout=30)
    assert r.status_code == 200
    assert r.headers["Docker-Content-Digest"] == pushed.index_digest
    assert r.headers["Content-Type"] == OCI_INDEX
    assert int(r.headers["Content-Length"]) == pushed.blobs[pushed.index_digest]


def test_copy_back_out_is_identical(registry: Any, skopeo: Skopeo, pushed: ImageLayout,
                                    tmp_path: Path) -> None:
    out = tmp_path / "out"
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{registry.host}/multi/arch:v1",
           f"oci:{out}:v1", server=registry)
    top = layout_top(out, "v1")
    assert top["digest"] == pushed.index_digest
    assert top["mediaType"] == OCI_INDEX
    # Every manifest, config and layer, byte for byte (layout_blobs checks each file's hash).
    assert layout_blobs(out) == pushed.blobs


def test_blobs_on_the_registry(registry: Any, pushed: ImageLayout) -> None:
    """Every layer and config is there, with the exact bytes (the shared layer once, in one repo)."""
    with httpx.Client(base_url=registry.url, timeout=30) as c:
        for digest in pushed.layer_digests | pushed.config_digests:
            r = c.get(f"/v2/multi/arch/blobs/{digest}")
            assert r.status_code == 200, (digest, r.status_code)
            assert r.headers["Docker-Content-Digest"] == digest
            assert sha256(r.content) == digest


# --- Docker schema2 -------------------------------------------------------------------------------


def test_docker_list_preserved(registry: Any, skopeo: Skopeo, pushed_docker: ImageLayout,
                               tmp_path: Path) -> None:
    body = raw(skopeo, registry, "multi/docker:v1")
    assert sha256(body) == pushed_docker.index_digest
    assert json.loads(body)["mediaType"] == DOCKER_LIST
    r = httpx.get(f"{registry.url}/v2/multi/docker/manifests/v1", headers={"Accept": ACCEPT}, timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == DOCKER_LIST
    for img in pushed_docker.images:
        r = httpx.get(f"{registry.url}/v2/multi/docker/manifests/{img.manifest_digest}",
                      headers={"Accept": ACCEPT}, timeout=30)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == DOCKER_MANIFEST
        assert sha256(r.content) == img.manifest_digest

    out = tmp_path / "docker-out"
    skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false",
           f"docker://{registry.host}/multi/docker:v1", f"dir:{out}", server=registry)
    assert read_image_dir(out, "dir") == read_image_dir(pushed_docker.path, "dir")


def test_format_v2s2_conversion(registry: Any, skopeo: Skopeo, oci_image: ImageLayout,
                                tmp_path: Path) -> None:
    """skopeo converts one OCI platform image to Docker schema2 on the way in; the registry must
    store and serve the converted manifest as given (same layers, docker media types)."""
    skopeo("--override-os", "linux", "--override-arch", "arm64", "copy", "--format", "v2s2",
           "--dest-tls-verify=false", oci_image.ref, f"docker://{registry.host}/converted/arm64:v2s2",
           server=registry)
    body = raw(skopeo, registry, "converted/arm64:v2s2")
    m = json.loads(body)
    assert m["mediaType"] == DOCKER_MANIFEST
    assert [layer["digest"] for layer in m["layers"]] == oci_image.platform("arm64").layer_digests
    r = httpx.head(f"{registry.url}/v2/converted/arm64/manifests/v2s2", headers={"Accept": ACCEPT},
                   timeout=30)
    assert r.headers["Docker-Content-Digest"] == sha256(body)
    assert r.headers["Content-Type"] == DOCKER_MANIFEST

    out = tmp_path / "v2s2-out"
    skopeo("copy", "--preserve-digests", "--src-tls-verify=false",
           f"docker://{registry.host}/converted/arm64:v2s2", f"dir:{out}", server=registry)
    assert (out / "manifest.json").read_bytes() == body


# --- registry to registry, tags, delete ----------------------------------------------------------


def test_copy_between_repositories(registry: Any, skopeo: Skopeo, pushed: ImageLayout) -> None:
    """docker:// -> docker:// on the same registry (skopeo tries cross-repository blob mounts)."""
    skopeo("copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
           f"docker://{registry.host}/multi/arch:v1", f"docker://{registry.host}/mirror/arch:copied",
           server=registry)
    assert sha256(raw(skopeo, registry, "mirror/arch:copied")) == pushed.index_digest


def test_list_tags(registry: Any, skopeo: Skopeo, pushed: ImageLayout) -> None:
    for tag in ("v2", "latest"):
        skopeo("copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
               f"docker://{registry.host}/multi/arch:v1", f"docker://{registry.host}/multi/arch:{tag}",
               server=registry)
    out = skopeo("list-tags", "--tls-verify=false", f"docker://{registry.host}/multi/arch", server=registry)
    listing = json.loads(out.stdout)
    assert listing["Repository"] == f"{registry.host}/multi/arch"
    assert sorted(listing["Tags"]) == ["latest", "v1", "v2"]
    for tag in ("v2", "latest"):
        assert sha256(raw(skopeo, registry, f"multi/arch:{tag}")) == pushed.index_digest


def test_delete(registry: Any, skopeo: Skopeo, oci_image: ImageLayout) -> None:
    push(skopeo, registry, oci_image.ref, "multi/delete-me:v1")
    assert sha256(raw(skopeo, registry, "multi/delete-me:v1")) == oci_image.index_digest

    skopeo("delete", "--tls-verify=false", f"docker://{registry.host}/multi/delete-me:v1", server=registry)

    with httpx.Client(base_url=registry.url, timeout=30, headers={"Accept": ACCEPT}) as c:
        r = c.get(f"/v2/multi/delete-me/manifests/{oci_image.index_digest}")
        assert r.status_code == 404, r.text
        assert r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        # Deleting a manifest by digest removes the tags that pointed at it (Distribution's behaviour).
        assert c.get("/v2/multi/delete-me/manifests/v1").status_code == 404
        # The platform manifests were not deleted: only the index was.
        for img in oci_image.images:
            assert c.head(f"/v2/multi/delete-me/manifests/{img.manifest_digest}").status_code == 200
    failed = skopeo("inspect", "--raw", "--tls-verify=false",
                    f"docker://{registry.host}/multi/delete-me:v1", check=False)
    assert failed.returncode != 0
    assert "manifest unknown" in failed.stderr.lower(), failed.stderr
    # The other repository holding the same image is untouched.
    if "multi/arch" in json.loads(httpx.get(f"{registry.url}/v2/_catalog", timeout=30).text)["repositories"]:
        assert httpx.head(f"{registry.url}/v2/multi/arch/manifests/{oci_image.index_digest}",
                          headers={"Accept": ACCEPT}, timeout=30).status_code == 200


# --- other server shapes and encodings -----------------------------------------------------------


def test_several_workers(fastreg_factory: Callable[..., Any], skopeo: Skopeo, oci_image: ImageLayout,
                         docker_image: ImageLayout, tmp_path: Path) -> None:
    """Four granian workers: skopeo's parallel uploads and each session's POST/PATCH/PUT may land
    on different processes (stateless upload sessions)."""
    srv = fastreg_factory(workers=4)
    for _ in range(2):  # the second round finds every blob present (HEAD, skipped uploads)
        push(skopeo, srv, oci_image.ref, "workers/arch:v1")
        push(skopeo, srv, docker_image.ref, "workers/docker:v1", "--preserve-digests")
    out = tmp_path / "out"
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{srv.host}/workers/arch:v1",
           f"oci:{out}:v1", server=srv)
    assert layout_blobs(out) == oci_image.blobs
    out = tmp_path / "docker-out"
    skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false",
           f"docker://{srv.host}/workers/docker:v1", f"dir:{out}", server=srv)
    assert read_image_dir(out, "dir") == read_image_dir(docker_image.path, "dir")


def test_zstd_layers(registry: Any, skopeo: Skopeo, tmp_path: Path) -> None:
    """skopeo recompresses every layer with zstd on the way in (new blobs, OCI tar+zstd media type);
    the registry stores and serves them as any other blob.  A fresh image (own seed): skopeo 1.9
    would rather mount an already-known gzip blob than recompress it."""
    oci_image = build_oci_image(tmp_path / "zstd-src", seed="zstd")
    skopeo("--override-os", "linux", "--override-arch", "amd64", "copy",
           "--dest-compress", "--dest-compress-format", "zstd",
           "--dest-tls-verify=false", oci_image.ref, f"docker://{registry.host}/zstd/amd64:v1",
           server=registry)
    body = raw(skopeo, registry, "zstd/amd64:v1")
    m = json.loads(body)
    assert {layer["mediaType"] for layer in m["layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    out = tmp_path / "zstd-out"
    skopeo("copy", "--preserve-digests", "--src-tls-verify=false", f"docker://{registry.host}/zstd/amd64:v1",
           f"oci:{out}:v1", server=registry)
    assert layout_top(out, "v1")["digest"] == sha256(body)
    got = layout_blobs(out)
    for layer in m["layers"]:
        assert got[layer["digest"]] == layer["size"]
    # The config is untouched: same diff_ids, so the same image.
    assert m["config"]["digest"] == oci_image.platform("amd64").config_digest
