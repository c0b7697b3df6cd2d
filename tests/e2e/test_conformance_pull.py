"""OCI distribution-spec v1.1 conformance, "Pull" (port of conformance/01_pull_test.go), and more.

Spec references: "Pulling manifests", "Pulling blobs", "Fetching blobs in chunks" (RFC 9110 ranges),
"Error Codes".  One image is pushed once per module; every test reads it back.
"""
from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.support.registry_client import (
    DUMMY_DIGEST,
    OCI_MANIFEST,
    Blob,
    Manifest,
    assert_error,
    digest_of,
    make_config,
    make_layer,
    make_manifest,
    push_blob,
    push_manifest,
    random_bytes,
    unique_repo,
)

pytestmark = pytest.mark.e2e

# Through granian: blob GETs by pathsend, ranges and HEAD framing on the wire (the other e2e
# modules run the app in-process; E2E_REAL_SERVERS=1 runs them all like this one).
REAL_SERVER = True

TAG = "tagtest0"


@dataclass
class Pulled:
    repo: str
    config: Blob
    layer: Blob
    manifest: Manifest


@pytest.fixture(scope="module")
def image(mclient: httpx.Client) -> Pulled:
    repo = unique_repo("pull")
    config = make_config()
    layer = make_layer(4096)
    manifest = make_manifest(config, [layer])
    push_manifest(mclient, repo, manifest, TAG)
    return Pulled(repo, config, layer, manifest)


# -- blobs ------------------------------------------------------------------------------------
def test_head_nonexistent_blob_is_404_without_body(client: httpx.Client, image: Pulled) -> None:
    resp = client.head(f"/v2/{image.repo}/blobs/{DUMMY_DIGEST}")
    assert resp.status_code == 404
    assert resp.content == b""


def test_get_nonexistent_blob_is_404_blob_unknown(client: httpx.Client, image: Pulled) -> None:
    resp = client.get(f"/v2/{image.repo}/blobs/{DUMMY_DIGEST}")
    assert_error(resp, 404, "BLOB_UNKNOWN")


def test_blob_unknown_in_unknown_repository(client: httpx.Client, image: Pulled) -> None:
    resp = client.get(f"/v2/{unique_repo('nobody')}/blobs/{image.layer.digest}")
    assert_error(resp, 404, "BLOB_UNKNOWN", "NAME_UNKNOWN")


def test_blob_of_other_repository_is_not_visible(client: httpx.Client, image: Pulled) -> None:
    """Blobs are linked per repository: the layer exists, but not in a repository that never got it."""
    other = unique_repo("other")
    push_blob(client, other, random_bytes(32))
    resp = client.get(f"/v2/{other}/blobs/{image.layer.digest}")
    assert_error(resp, 404, "BLOB_UNKNOWN")


def test_head_existing_blob(client: httpx.Client, image: Pulled) -> None:
    resp = client.head(f"/v2/{image.repo}/blobs/{image.config.digest}")
    assert resp.status_code == 200
    assert resp.headers["Docker-Content-Digest"] == image.config.digest
    assert int(resp.headers["Content-Length"]) == image.config.size
    assert resp.content == b""


def test_get_existing_blob(client: httpx.Client, image: Pulled) -> None:
    for blob in (image.config, image.layer):
        resp = client.get(f"/v2/{image.repo}/blobs/{blob.digest}")
        assert resp.status_code == 200
        assert resp.content == blob.data
        assert resp.headers["Docker-Content-Digest"] == blob.digest
        assert int(resp.headers["Content-Length"]) == blob.size


def test_get_blob_range_first_ten_bytes(client: httpx.Client, image: Pulled) -> None:
    layer = image.layer
    resp = client.get(f"/v2/{image.repo}/blobs/{layer.digest}", headers={"Range": "bytes=0-9"})
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes 0-9/{layer.size}"
    assert resp.headers["Content-Length"] == "10"
    assert resp.content == layer.data[:10]


def test_get_blob_range_middle(client: httpx.Client, image: Pulled) -> None:
    layer = image.layer
    resp = client.get(f"/v2/{image.repo}/blobs/{layer.digest}", headers={"Range": "bytes=100-1123"})
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes 100-1123/{layer.size}"
    assert resp.content == layer.data[100:1124]


def test_get_blob_suffix_range(client: httpx.Client, image: Pulled) -> None:
    layer = image.layer
    resp = client.get(f"/v2/{image.repo}/blobs/{layer.digest}", headers={"Range": "bytes=-10"})
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes {layer.size - 10}-{layer.size - 1}/{layer.size}"
    assert resp.content == layer.data[-10:]


def test_get_blob_open_ended_range(client: httpx.Client, image: Pulled) -> None:
    layer = image.layer
    resp = client.get(f"/v2/{image.repo}/blobs/{layer.digest}", headers={"Range": "bytes=4000-"})
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes 4000-{layer.size - 1}/{layer.size}"
    assert resp.content == layer.data[4000:]


def test_get_blob_range_end_past_size_is_clamped(client: httpx.Client, image: Pulled) -> None:
    """RFC 9110 14.1.2: a last-pos at or past the length means "to the end"."""
    layer = image.layer
    resp = client.get(f"/v2/{image.repo}/blobs/{layer.digest}",
                      headers={"Range": f"bytes=4090-{layer.size + 1000}"})
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == f"bytes 4090-{layer.size - 1}/{layer.size}"
    assert resp.content == layer.data[4090:]


def test_get_blob_unsatisfiable_range_is_416(client: httpx.Client, image: Pulled) -> None:
    layer = image.layer
    resp = client.get(f"/v2/{image.repo}/blobs/{layer.digest}",
                      headers={"Range": f"bytes={layer.size}-{layer.size + 10}"})
    assert resp.status_code == 416
    assert resp.headers["Content-Range"] == f"bytes */{layer.size}"


def test_invalid_digest_in_blob_url(client: httpx.Client, image: Pulled) -> None:
    """A read of a malformed digest names no blob that can exist: the spec's 404 (its endpoint table
    lists only 404 for a blob GET/HEAD); a delete says what is wrong with it (400, as Distribution)."""
    for bad in ("sha256:totallywrong", "sha256:" + "a" * 63, "sha256:" + "A" * 64, "md5:" + "a" * 32):
        assert_error(client.get(f"/v2/{image.repo}/blobs/{bad}"), 404, "BLOB_UNKNOWN")
        assert client.head(f"/v2/{image.repo}/blobs/{bad}").status_code == 404
        assert_error(client.delete(f"/v2/{image.repo}/blobs/{bad}"), 400, "DIGEST_INVALID")


def test_sha512_blob_round_trip(client: httpx.Client, image: Pulled) -> None:
    data = random_bytes(3000)
    d = digest_of(data, "sha512")
    assert push_blob(client, image.repo, data, "sha512") == d
    resp = client.get(f"/v2/{image.repo}/blobs/{d}")
    assert resp.status_code == 200
    assert resp.headers["Docker-Content-Digest"] == d
    assert resp.content == data
    resp = client.get(f"/v2/{image.repo}/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert resp.status_code == 206
    assert resp.content == data[10:20]


def test_blake3_blob_round_trip(client: httpx.Client, image: Pulled) -> None:
    data = random_bytes(2048)
    d = digest_of(data, "blake3")
    assert push_blob(client, image.repo, data, "blake3") == d
    resp = client.get(f"/v2/{image.repo}/blobs/{d}")
    assert resp.status_code == 200
    assert resp.headers["Docker-Content-Digest"] == d
    assert resp.content == data


# -- manifests --------------------------------------------------------------------------------
def _assert_manifest_headers(resp: httpx.Response, m: Manifest) -> None:
    assert resp.headers["Docker-Content-Digest"] == m.digest
    assert resp.headers["Content-Type"] == m.media_type
    assert int(resp.headers["Content-Length"]) == m.size


def test_head_nonexistent_manifest_is_404(client: httpx.Client, image: Pulled) -> None:
    for ref in ("does-not-exist", DUMMY_DIGEST):
        resp = client.head(f"/v2/{image.repo}/manifests/{ref}")
        assert resp.status_code == 404
        assert resp.content == b""


def test_get_nonexistent_manifest_is_404_manifest_unknown(client: httpx.Client, image: Pulled) -> None:
    for ref in ("does-not-exist", DUMMY_DIGEST):
        resp = client.get(f"/v2/{image.repo}/manifests/{ref}")
        assert_error(resp, 404, "MANIFEST_UNKNOWN")


def test_get_manifest_in_unknown_repository(client: httpx.Client) -> None:
    resp = client.get(f"/v2/{unique_repo('nobody')}/manifests/latest")
    assert_error(resp, 404, "MANIFEST_UNKNOWN", "NAME_UNKNOWN")


def test_head_manifest_by_digest(client: httpx.Client, image: Pulled) -> None:
    resp = client.head(f"/v2/{image.repo}/manifests/{image.manifest.digest}",
                       headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200
    _assert_manifest_headers(resp, image.manifest)
    assert resp.content == b""


def test_head_manifest_by_tag(client: httpx.Client, image: Pulled) -> None:
    resp = client.head(f"/v2/{image.repo}/manifests/{TAG}", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200
    _assert_manifest_headers(resp, image.manifest)
    assert resp.content == b""


def test_get_manifest_by_digest(client: httpx.Client, image: Pulled) -> None:
    resp = client.get(f"/v2/{image.repo}/manifests/{image.manifest.digest}",
                      headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200
    _assert_manifest_headers(resp, image.manifest)
    assert resp.content == image.manifest.body


def test_get_manifest_by_tag(client: httpx.Client, image: Pulled) -> None:
    resp = client.get(f"/v2/{image.repo}/manifests/{TAG}", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200
    _assert_manifest_headers(resp, image.manifest)
    assert resp.content == image.manifest.body


def test_get_manifest_without_accept(client: httpx.Client, image: Pulled) -> None:
    """OCI types are returned as stored even when the client states no preference."""
    resp = client.get(f"/v2/{image.repo}/manifests/{TAG}")
    assert resp.status_code == 200
    _assert_manifest_headers(resp, image.manifest)
    assert resp.content == image.manifest.body


def test_invalid_digest_reference_for_manifest(client: httpx.Client, image: Pulled) -> None:
    """conformance "400 response body should contain OCI-conforming JSON message"."""
    resp = client.put(f"/v2/{image.repo}/manifests/sha256:totallywrong", content=b"{}",
                      headers={"Content-Type": OCI_MANIFEST})
    assert resp.status_code in (400, 404), resp.text
    assert_error(resp, resp.status_code)
    resp = client.get(f"/v2/{image.repo}/manifests/sha256:totallywrong")
    assert_error(resp, 404, "MANIFEST_UNKNOWN")


# -- repository names -------------------------------------------------------------------------
def test_uppercase_repository_name(client: httpx.Client) -> None:
    """Reads of a name outside the grammar: 404 NAME_UNKNOWN (the spec's endpoint table lists 404
    for them); writes: 400 NAME_INVALID."""
    for path in ("/v2/Upper/manifests/latest", "/v2/library/UPPER/tags/list",
                 f"/v2/Upper/blobs/{DUMMY_DIGEST}"):
        resp = client.get(path)
        assert_error(resp, 404, "NAME_UNKNOWN")
    resp = client.post("/v2/Upper/blobs/uploads/")
    assert_error(resp, 400, "NAME_INVALID")


def test_bad_name_grammar_is_rejected(client: httpx.Client) -> None:
    for name in ("foo..bar", "-foo", "foo-", "foo/", "a//b", "foo_-bar", "a/.b"):
        resp = client.get(f"/v2/{name}/manifests/latest")
        assert_error(resp, (400, 404), "NAME_INVALID", "NAME_UNKNOWN")


def test_too_long_repository_name(client: httpx.Client) -> None:
    name = "/".join(["a" * 60] * 5)          # 304 characters: over Distribution's 255
    resp = client.get(f"/v2/{name}/manifests/latest")
    assert_error(resp, (400, 404), "NAME_INVALID", "NAME_UNKNOWN")
    resp = client.post(f"/v2/{name}/blobs/uploads/")
    assert_error(resp, (400, 404), "NAME_INVALID", "NAME_UNKNOWN")


def test_nested_repository_names_work(client: httpx.Client) -> None:
    repo = unique_repo("nested") + "/with/many/levels/a.b_c__d--e"
    m = make_manifest()
    push_manifest(client, repo, m, "v1")
    resp = client.get(f"/v2/{repo}/manifests/v1")
    assert resp.status_code == 200
    assert resp.content == m.body
