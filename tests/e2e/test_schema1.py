"""``compatibility.schema1.enabled: true`` (Distribution 2.x): fastreg accepts the config and warns
that it does not do what the key asks — schema1 pushes are refused (as Distribution 3, which
removed schema1), while schema1 manifests already in a Distribution 2.x data directory are
served as they are stored.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e
PRETTYJWS = "application/vnd.docker.distribution.manifest.v1+prettyjws"


def schema1_manifest(name: str, tag: str) -> bytes:
    doc = {"schemaVersion": 1, "name": name, "tag": tag, "architecture": "amd64",
           "fsLayers": [{"blobSum": "sha256:" + "a" * 64}], "history": [{"v1Compatibility": "{}"}],
           "signatures": [{"header": {"alg": "ES256"}, "signature": "c2ln", "protected": "e30"}]}
    return json.dumps(doc, indent=3).encode()


def test_schema1_enabled_warns_refuses_pushes_and_serves_stored(fastreg_factory: Any) -> None:
    srv = fastreg_factory(config={"compatibility": {"schema1": {"enabled": True,
                                                                "signingkeyfile": "/etc/registry/key.json"}}})
    assert "fastreg does not accept schema1 manifests" in srv.log()
    body = schema1_manifest("old/image", "v1")
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        r = c.put("/v2/old/image/manifests/v1", content=body, headers={"Content-Type": PRETTYJWS})
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_INVALID", r.text
        # as Distribution 2.x stored it: the bytes under blobs/, a revision link, a tag link
        hex_ = hashlib.sha256(body).hexdigest()
        v2 = srv.root / "docker" / "registry" / "v2"
        data = v2 / "blobs" / "sha256" / hex_[:2] / hex_ / "data"
        data.parent.mkdir(parents=True)
        data.write_bytes(body)
        repo = v2 / "repositories" / "old" / "image" / "_manifests"
        for link in (repo / "revisions" / "sha256" / hex_ / "link", repo / "tags" / "v1" / "current" / "link",
                     repo / "tags" / "v1" / "index" / "sha256" / hex_ / "link"):
            link.parent.mkdir(parents=True, exist_ok=True)
            link.write_text(f"sha256:{hex_}")
        got = c.get("/v2/old/image/manifests/v1", headers={"Accept": PRETTYJWS})
        assert got.status_code == 200 and got.content == body
        assert got.headers["Content-Type"] == PRETTYJWS
        assert got.headers["Docker-Content-Digest"] == f"sha256:{hex_}"
