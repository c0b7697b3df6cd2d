"""Distribution's ``validation`` section: layer ``urls`` (foreign / non-distributable layers) and
which children of an index must exist.

Debian's Distribution 2.8 was probed with the same manifests (tests/e2e/test_layer_urls.py's
cases): by default it refuses any layer URL; with ``validation.disabled`` it accepts http(s)
URLs; with ``manifests.urls.allow`` only matching ones; a foreign layer without URLs must exist.
Where 2.8 answers 500 UNKNOWN, fastreg answers 400 MANIFEST_INVALID naming the URL.
"""
from __future__ import annotations

from typing import Any

import httpx
import pytest

from fastreg.app import url_policy
from fastreg.config import ConfigError, load_config
from tests.support.registry_client import (
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    assert_error,
    canonical,
    digest_of,
    make_config,
    make_manifest,
    push_blob,
    push_manifest,
    unique_repo,
)

pytestmark = pytest.mark.e2e
FOREIGN = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
MCR = "https://mcr.microsoft.com/v2/windows/servercore/blobs/sha256:" + "ab" * 32
ABSENT = digest_of(b"a layer this registry never received")


def _manifest(c: httpx.Client, repo: str, layer: dict[str, Any]) -> tuple[bytes, str]:
    cfg = make_config()
    push_blob(c, repo, cfg)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": cfg.media_type, "digest": cfg.digest, "size": cfg.size},
           "layers": [{"digest": ABSENT, "size": 1234, **layer}]}
    body = canonical(doc)
    return body, digest_of(body)


def _put(c: httpx.Client, repo: str, layer: dict[str, Any], tag: str = "t") -> httpx.Response:
    body, _ = _manifest(c, repo, layer)
    return c.put(f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})


def _refused(c: httpx.Client, repo: str, layer: dict[str, Any], code: str) -> None:
    r = _put(c, repo, layer, tag="refused")
    assert_error(r, 400, code)
    assert c.get(f"/v2/{repo}/manifests/refused").status_code == 404    # nothing was tagged


def test_default_refuses_layer_urls(app_factory: Any) -> None:
    srv = app_factory()
    repo = unique_repo("urls")
    with srv.client() as c:
        _refused(c, repo, {"mediaType": FOREIGN, "urls": [MCR]}, "MANIFEST_INVALID")
        r = _put(c, repo, {"mediaType": DOCKER_FOREIGN, "urls": [MCR]})
        assert r.json()["errors"][0]["detail"]["url"] == MCR
        assert "validation.manifests.urls.allow" in r.json()["errors"][0]["detail"]["detail"]
        # a foreign media type without urls is an ordinary reference: the blob must be here
        _refused(c, repo, {"mediaType": FOREIGN}, "MANIFEST_BLOB_UNKNOWN")
        # malformed urls
        _refused(c, repo, {"mediaType": FOREIGN, "urls": "https://x/"}, "MANIFEST_INVALID")
        _refused(c, repo, {"mediaType": FOREIGN, "urls": [7]}, "MANIFEST_INVALID")


def test_allow_and_deny_lists(app_factory: Any) -> None:
    srv = app_factory({"validation": {"manifests": {"urls": {
        "allow": [r"^https://mcr\.microsoft\.com/", r"^https://cdn\.example\.com/"],
        "deny": [r"^https://cdn\.example\.com/private/"]}}}})
    repo = unique_repo("urls")
    with srv.client() as c:
        body, d = _manifest(c, repo, {"mediaType": FOREIGN, "urls": [MCR]})
        r = c.put(f"/v2/{repo}/manifests/win", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text
        got = c.get(f"/v2/{repo}/manifests/win", headers={"Accept": OCI_MANIFEST})
        assert got.content == body and got.headers["docker-content-digest"] == d
        assert c.head(f"/v2/{repo}/blobs/{ABSENT}").status_code == 404      # the layer is not here
        _refused(c, repo, {"mediaType": FOREIGN, "urls": ["https://evil.example.org/x"]}, "MANIFEST_INVALID")
        _refused(c, repo, {"mediaType": FOREIGN, "urls": [MCR, "https://cdn.example.com/private/x"]},
                 "MANIFEST_INVALID")
        assert _put(c, repo, {"mediaType": FOREIGN, "urls": ["https://cdn.example.com/public/x"]}).status_code == 201


def test_validation_disabled_still_wants_http_urls(app_factory: Any) -> None:
    srv = app_factory({"validation": {"disabled": True}})
    repo = unique_repo("urls")
    with srv.client() as c:
        assert _put(c, repo, {"mediaType": FOREIGN, "urls": ["http://anything.example/x"]}).status_code == 201
        _refused(c, repo, {"mediaType": FOREIGN, "urls": ["ftp://example.com/x"]}, "MANIFEST_INVALID")
        _refused(c, repo, {"mediaType": FOREIGN, "urls": ["https://example.com/x#frag"]}, "MANIFEST_INVALID")
        _refused(c, repo, {"mediaType": FOREIGN, "urls": ["/relative/x"]}, "MANIFEST_INVALID")


def test_an_invalid_expression_is_a_config_error(tmp_path: Any) -> None:
    path = tmp_path / "config.yml"
    path.write_text("version: 0.1\nvalidation:\n  manifests:\n    urls:\n      allow: ['^https://(']\n")
    with pytest.raises(ConfigError, match="validation.manifests.urls"):
        url_policy(load_config(str(path)))


def _index(c: httpx.Client, repo: str) -> tuple[bytes, Manifest, Manifest]:
    """An index over a pushed linux/amd64 image and an arm64 image that was never pushed."""
    amd, arm = make_manifest(), make_manifest()
    push_manifest(c, repo, amd)
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        amd.descriptor(platform={"os": "linux", "architecture": "amd64"}),
        arm.descriptor(platform={"os": "linux", "architecture": "arm64"})]}
    return canonical(doc), amd, arm


@pytest.mark.parametrize(("platforms", "accepted"), [
    ({}, False),                                                        # default: all
    ({"platforms": "all"}, False),
    ({"platforms": "none"}, True),
    ({"platforms": "list", "platformlist": [{"os": "linux", "architecture": "amd64"}]}, True),
    ({"platforms": "list", "platformlist": [{"os": "linux", "architecture": "arm64"}]}, False),
])
def test_index_children_that_must_exist(app_factory: Any, platforms: dict[str, Any], accepted: bool) -> None:
    srv = app_factory({"validation": {"manifests": {"indexes": platforms}}} if platforms else None)
    repo = unique_repo("index")
    with srv.client() as c:
        body, _amd, arm = _index(c, repo)
        r = c.put(f"/v2/{repo}/manifests/multi", content=body, headers={"Content-Type": OCI_INDEX})
        if accepted:
            assert r.status_code == 201, r.text
            assert c.get(f"/v2/{repo}/manifests/multi", headers={"Accept": OCI_INDEX}).content == body
        else:
            assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
            assert arm.digest in r.text
            assert c.get(f"/v2/{repo}/manifests/multi", headers={"Accept": OCI_INDEX}).status_code == 404


def test_an_unknown_platforms_mode_is_a_config_error(tmp_path: Any) -> None:
    from fastreg.app import index_policy
    path = tmp_path / "config.yml"
    path.write_text("version: 0.1\nvalidation:\n  manifests:\n    indexes:\n      platforms: some\n")
    with pytest.raises(ConfigError, match="platforms"):
        index_policy(load_config(str(path)))
