"""One data directory, two registries: Distribution (Debian's docker-registry 2.8) and fastreg.

DESIGN.md promises a storage layout compatible with Distribution's, so that an existing
`registry:2` data directory is served as it is, and back again.  Here a real client (skopeo)
pushes into one registry, that registry is stopped, the other is started on the same directory,
and skopeo pulls: every manifest and blob digest must be identical, and the tag lists and the
catalog must match what the first registry answered.
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
    layout_blobs,
    layout_top,
    read_image_dir,
    sha256,
)

pytestmark = [pytest.mark.e2e, pytest.mark.interop]

Skopeo = Callable[..., subprocess.CompletedProcess[str]]
ACCEPT = f"{OCI_INDEX}, {OCI_MANIFEST}, {DOCKER_LIST}, {DOCKER_MANIFEST}"
REPOS = {"multi/arch": ["latest", "v1"], "multi/docker": ["v1"]}


def push_images(skopeo: Skopeo, server: Any, oci: ImageLayout, docker: ImageLayout) -> None:
    for src, dest in ((oci.ref, "multi/arch:v1"), (docker.ref, "multi/docker:v1")):
        skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false", src,
               f"docker://{server.host}/{dest}", server=server)
    # A second tag, registry to registry.
    skopeo("copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
           f"docker://{server.host}/multi/arch:v1", f"docker://{server.host}/multi/arch:latest", server=server)


def snapshot(server: Any, sort_tags: bool = False) -> dict[str, Any]:
    """What a client sees: catalog, tag lists, and each tag's digest, media type and size.

    Distribution 2.8 lists tags in directory order (it sorts only from 3.0), so its lists are
    compared sorted (`sort_tags`); fastreg's must already be in lexical order."""
    out: dict[str, Any] = {}
    with httpx.Client(base_url=server.url, timeout=30, headers={"Accept": ACCEPT}) as c:
        r = c.get("/v2/_catalog")
        assert r.status_code == 200, r.text
        out["catalog"] = r.json()
        for repo, tags in REPOS.items():
            r = c.get(f"/v2/{repo}/tags/list")
            assert r.status_code == 200, (repo, r.status_code, r.text)
            listing = r.json()
            if sort_tags:
                listing["tags"] = sorted(listing["tags"])
            out[f"tags {repo}"] = listing
            for tag in tags:
                r = c.head(f"/v2/{repo}/manifests/{tag}")
                assert r.status_code == 200, (repo, tag, r.status_code)
                out[f"manifest {repo}:{tag}"] = (r.headers["Docker-Content-Digest"],
                                                 r.headers["Content-Type"], r.headers["Content-Length"])
    return out


def pull_and_compare(skopeo: Skopeo, server: Any, oci: ImageLayout, docker: ImageLayout, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for tag in REPOS["multi/arch"]:
        dest = out / f"arch-{tag}"
        skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{server.host}/multi/arch:{tag}",
               f"oci:{dest}:{tag}", server=server)
        assert layout_top(dest, tag)["digest"] == oci.index_digest
        assert layout_blobs(dest) == oci.blobs
    dest = out / "docker-v1"
    skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false",
           f"docker://{server.host}/multi/docker:v1", f"dir:{dest}", server=server)
    assert read_image_dir(dest, "dir") == read_image_dir(docker.path, "dir")
    # Every blob and manifest by digest, straight from the registry too.
    with httpx.Client(base_url=server.url, timeout=30, headers={"Accept": ACCEPT}) as c:
        for repo, image in (("multi/arch", oci), ("multi/docker", docker)):
            for digest in image.manifest_digests:
                r = c.get(f"/v2/{repo}/manifests/{digest}")
                assert r.status_code == 200 and sha256(r.content) == digest, (repo, digest, r.status_code)
            for digest in image.layer_digests | image.config_digests:
                r = c.get(f"/v2/{repo}/blobs/{digest}")
                assert r.status_code == 200 and sha256(r.content) == digest, (repo, digest, r.status_code)


def expected_snapshot(oci: ImageLayout, docker: ImageLayout) -> dict[str, Any]:
    return {
        "catalog": {"repositories": sorted(REPOS)},
        "tags multi/arch": {"name": "multi/arch", "tags": sorted(REPOS["multi/arch"])},
        "tags multi/docker": {"name": "multi/docker", "tags": ["v1"]},
        **{f"manifest multi/arch:{t}": (oci.index_digest, OCI_INDEX, str(oci.blobs[oci.index_digest]))
           for t in REPOS["multi/arch"]},
        "manifest multi/docker:v1": (docker.index_digest, DOCKER_LIST, str(docker.blobs[docker.index_digest])),
    }


def test_fastreg_serves_a_distribution_datadir(
        distribution_factory: Callable[..., Any], fastreg_factory: Callable[..., Any], skopeo: Skopeo,
        oci_image: ImageLayout, docker_image: ImageLayout, tmp_path: Path) -> None:
    dist = distribution_factory()
    datadir = dist.root
    push_images(skopeo, dist, oci_image, docker_image)
    before = snapshot(dist, sort_tags=True)
    assert before == expected_snapshot(oci_image, docker_image)
    dist.stop()

    srv = fastreg_factory(config={"storage": {"filesystem": {"rootdirectory": str(datadir)}}})
    after = snapshot(srv)
    assert after == before, f"fastreg on Distribution's data dir differs\n{srv.log()[-4000:]}"
    pull_and_compare(skopeo, srv, oci_image, docker_image, tmp_path / "pulled")

    # ... and back again: a tag written by fastreg is read by Distribution.
    skopeo("copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
           f"docker://{srv.host}/multi/arch:v1", f"docker://{srv.host}/multi/arch:from-fastreg", server=srv)
    srv.stop()
    dist2 = distribution_factory(datadir)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{dist2.host}/multi/arch:from-fastreg",
                 server=dist2).stdout.encode()
    assert sha256(raw) == oci_image.index_digest
    r = httpx.get(f"{dist2.url}/v2/multi/arch/tags/list", timeout=30)
    assert sorted(r.json()["tags"]) == ["from-fastreg", "latest", "v1"]


def test_distribution_serves_a_fastreg_datadir(
        distribution_factory: Callable[..., Any], fastreg_factory: Callable[..., Any], skopeo: Skopeo,
        oci_image: ImageLayout, docker_image: ImageLayout, tmp_path: Path) -> None:
    srv = fastreg_factory()
    datadir = srv.root
    push_images(skopeo, srv, oci_image, docker_image)
    before = snapshot(srv)
    assert before == expected_snapshot(oci_image, docker_image)
    srv.stop()

    dist = distribution_factory(datadir)
    after = snapshot(dist, sort_tags=True)
    assert after == before, f"Distribution on fastreg's data dir differs\n{dist.log()[-4000:]}"
    pull_and_compare(skopeo, dist, oci_image, docker_image, tmp_path / "pulled")


def test_datadir_listing_matches(distribution_factory: Callable[..., Any], fastreg_factory: Callable[..., Any],
                                 skopeo: Skopeo, oci_image: ImageLayout, docker_image: ImageLayout) -> None:
    """The same pushes into each registry leave the same repository metadata on disk: the same
    link files under repositories/ and the same blob paths (upload leftovers aside).  fastreg's
    own bookkeeping lives apart, under v2/fastreg/, where Distribution never looks."""
    dist = distribution_factory()
    push_images(skopeo, dist, oci_image, docker_image)
    dist.stop()
    srv = fastreg_factory()
    push_images(skopeo, srv, oci_image, docker_image)
    srv.stop()

    def tree(root: Path) -> dict[str, str]:
        base = root / "docker" / "registry" / "v2"
        out = {}
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(base).as_posix()
            if p.is_dir() or "/_uploads" in rel or rel.startswith("fastreg/"):
                continue
            # Link files hold a digest; data files are compared by name (their digest) only.
            out[rel] = p.read_text() if p.name == "link" else "data"
        return out

    dist_tree, fastreg_tree = tree(dist.root), tree(srv.root)
    assert (srv.root / "docker/registry/v2/fastreg/catalog-generation").is_file()
    assert sum(k.startswith("blobs/") for k in dist_tree) == len(set(oci_image.blobs) | set(docker_image.blobs))
    assert any(k.endswith("/_manifests/tags/latest/current/link") for k in dist_tree)
    assert fastreg_tree == dist_tree, json.dumps(
        {"only in distribution": sorted(set(dist_tree) - set(fastreg_tree)),
         "only in fastreg": sorted(set(fastreg_tree) - set(dist_tree)),
         "different": sorted(k for k in set(dist_tree) & set(fastreg_tree) if dist_tree[k] != fastreg_tree[k])},
        indent=1)
