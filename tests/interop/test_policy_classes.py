"""``policy.repository.classes`` (Distribution 2.x): which manifest classes may be pushed.

Differential: the same pushes to fastreg and to Distribution 2.8 (Debian's docker-registry) with
the same policy must get the same status, error code and message — an image manifest is accepted,
a plugin manifest (Docker schema2 with a plugin config) is refused unless ``plugin`` is listed, an
OCI artifact (any other config type) is an unknown class, and indexes have no class.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.registry_client import (
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_EMPTY,
    OCI_INDEX,
    Blob,
    Manifest,
    canonical,
    make_config,
    make_layer,
    make_manifest,
    push_blob,
    put_manifest,
)

from .conftest import make_distribution

pytestmark = [pytest.mark.e2e, pytest.mark.interop]
PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"


def cases() -> list[tuple[str, Manifest]]:
    image = make_manifest()
    plugin = make_manifest(config=make_config(PLUGIN_CONFIG), layers=[make_layer(300, DOCKER_LAYER)],
                           media_type=DOCKER_MANIFEST)
    artifact = make_manifest(config=Blob(b"{}", OCI_EMPTY), layers=[make_layer(200)])
    index_body = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        image.descriptor(platform={"os": "linux", "architecture": "amd64"})]})
    index = Manifest(index_body, OCI_INDEX, children=[image])
    return [("image", image), ("plugin", plugin), ("artifact", artifact), ("index", index)]


def answers(base: str, repo: str, pushes: list[tuple[str, Manifest]]) -> dict[str, tuple[int, str, str]]:
    out = {}
    with httpx.Client(base_url=base, timeout=30.0) as c:
        for name, m in pushes:
            for blob in m.blobs:
                push_blob(c, repo, blob)
            for child in m.children:        # the index's image was pushed (as "image") before it
                r = c.head(f"/v2/{repo}/manifests/{child.digest}", headers={"Accept": child.media_type})
                assert r.status_code == 200
            r = put_manifest(c, repo, name, m)
            err = r.json()["errors"][0] if r.status_code >= 400 else {}
            out[name] = (r.status_code, err.get("code", ""), err.get("message", ""))
    return out


@pytest.mark.parametrize("classes", [["image"], ["image", "plugin"]])
def test_manifest_classes_as_distribution(fastreg_factory: Any, tmp_path: Path, classes: list[str]) -> None:
    pushes = cases()
    policy = {"policy": {"repository": {"classes": classes}}}
    srv = fastreg_factory(config=policy)
    dist = make_distribution(tmp_path / "distribution", extra=policy)
    dist.start()
    try:
        theirs = answers(dist.url, "policy/classes", pushes)
    finally:
        dist.stop()
    ours = answers(srv.url, "policy/classes", pushes)
    assert ours == theirs, dist.log()[-3000:]
    assert ours["image"][0] == 201 and ours["index"][0] == 201
    assert ours["artifact"] == (403, "DENIED", f"unknown manifest class for {OCI_EMPTY}")
    assert ours["plugin"] == ((201, "", "") if "plugin" in classes
                              else (403, "DENIED", "registry does not allow plugin manifest"))


def test_no_classes_allows_every_manifest(fastreg_factory: Any) -> None:
    srv = fastreg_factory()
    got = answers(srv.url, "policy/none", cases())
    assert {name: status for name, (status, _, _) in got.items()} == dict.fromkeys(
        ("image", "plugin", "artifact", "index"), 201)
