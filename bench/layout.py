"""Write Distribution's on-disk layout directly (both servers read it): many tags, many
repositories, many blobs, in seconds instead of the hours the HTTP API would take to push them.

Only what both registries read is written: blob data under blobs/sha256/<2>/<hex>/data, layer
links, manifest revision links and tag links (current and index). Every blob's path is its real
SHA-256, so `fastreg check` re-hashes them clean.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import orjson

from .registry import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST

V2 = Path("docker/registry/v2")


# Written "a day ago": older than any gc grace period (fastreg keeps what is younger).
MTIME = time.time() - 86400


def _write(path: Path, data: bytes) -> None:
    try:
        f = open(path, "wb", buffering=0)      # noqa: SIM115
    except FileNotFoundError:
        os.makedirs(path.parent, exist_ok=True)
        f = open(path, "wb", buffering=0)      # noqa: SIM115
    with f:
        f.write(data)
        os.utime(f.fileno(), (MTIME, MTIME))


def blob(root: Path, data: bytes) -> str:
    """Store `data` as a blob; its digest."""
    hexd = hashlib.sha256(data).hexdigest()
    _write(root / V2 / "blobs/sha256" / hexd[:2] / hexd / "data", data)
    return "sha256:" + hexd


def _link(path: Path, digest: str) -> None:
    _write(path / digest.replace(":", "/") / "link", digest.encode())


def manifest(root: Path, repo: str, config: tuple[str, int], layers: list[tuple[str, int]],
             tags: list[str], digest: str | None = None) -> str:
    """A manifest in `repo` (its blob, revision link, layer links) tagged with every name of `tags`
    (`digest`: the manifest blob is already stored)."""
    if digest is None:
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": OCI_CONFIG, "digest": config[0], "size": config[1]},
               "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": s} for d, s in layers]}
        digest = blob(root, orjson.dumps(doc))
    r = root / V2 / "repositories" / repo
    for d, _ in [config, *layers]:
        _link(r / "_layers", d)
    _link(r / "_manifests/revisions", digest)
    for t in tags:
        _write(r / "_manifests/tags" / t / "current/link", digest.encode())
        _link(r / "_manifests/tags" / t / "index", digest)
    return digest


def _config(root: Path, label: str) -> tuple[str, int]:
    data = orjson.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"x": label}},
                         "rootfs": {"type": "layers", "diff_ids": []}})
    return blob(root, data), len(data)


def tags(root: Path, repo: str, names: list[str]) -> None:
    """One repository, one small image, tagged with every name."""
    layer = b"layer\n"
    manifest(root, repo, _config(root, "tags"), [(blob(root, layer), len(layer))], names)


def repositories(root: Path, names: list[str]) -> None:
    """Many repositories sharing one small image, each tagged v1."""
    cfg = _config(root, "catalog")
    layer = b"layer\n"
    lay = (blob(root, layer), len(layer))
    digest = None
    for n in names:
        digest = manifest(root, n, cfg, [lay], ["v1"], digest)


def blobs(root: Path, count: int, per_image: int = 10, garbage: float = 0.1) -> dict[str, int]:
    """About `count` blobs: images of `per_image` blobs (config, layers, manifest) in 100
    repositories, and a `garbage` share of blobs nothing references (what gc deletes)."""
    images = max(1, int(count * (1 - garbage)) // per_image)
    orphans = count - images * per_image
    for i in range(images):
        cfg = _config(root, f"img{i}")
        layers = [(blob(root, d), len(d)) for d in (os.urandom(64) for _ in range(per_image - 2))]
        manifest(root, f"gc/r{i % 100:02d}", cfg, layers, [f"t{i}"])
    for _ in range(orphans):
        blob(root, os.urandom(64))
    return {"images": images, "blobs": images * per_image + orphans, "orphans": orphans}
