"""OCI distribution-spec v1.1 conformance, "Content Management" (port of 04_management_test.go), and more.

Spec references: "Deleting tags", "Deleting Manifests", "Deleting Blobs" (202 Accepted; 405 with
UNSUPPORTED when deletes are disabled), and the referrers API's view of deleted manifests.
"""
from __future__ import annotations

import httpx
import pytest

from tests.support.registry_client import (
    DUMMY_DIGEST,
    OCI_MANIFEST,
    assert_error,
    make_manifest,
    push_blob,
    push_manifest,
    random_bytes,
    unique_repo,
)

pytestmark = pytest.mark.e2e


def _tags(client: httpx.Client, repo: str) -> list[str]:
    resp = client.get(f"/v2/{repo}/tags/list")
    assert resp.status_code == 200, resp.text
    return list(resp.json()["tags"] or [])


def test_delete_tag_keeps_manifest(client: httpx.Client) -> None:
    repo = unique_repo("mgmt")
    m = make_manifest()
    push_manifest(client, repo, m, "tagtest0")
    push_manifest(client, repo, m, "keep")
    assert _tags(client, repo) == ["keep", "tagtest0"]
    resp = client.delete(f"/v2/{repo}/manifests/tagtest0")
    assert resp.status_code == 202, resp.text
    assert_error(client.get(f"/v2/{repo}/manifests/tagtest0"), 404, "MANIFEST_UNKNOWN")
    assert client.head(f"/v2/{repo}/manifests/tagtest0").status_code == 404
    resp = client.get(f"/v2/{repo}/manifests/{m.digest}", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200
    assert resp.content == m.body
    assert client.get(f"/v2/{repo}/manifests/keep").content == m.body
    assert _tags(client, repo) == ["keep"]


def test_delete_unknown_tag(client: httpx.Client) -> None:
    repo = unique_repo("mgmt")
    push_manifest(client, repo, make_manifest(), "present")
    assert_error(client.delete(f"/v2/{repo}/manifests/absent"), 404, "MANIFEST_UNKNOWN")


def test_delete_manifest_by_digest(client: httpx.Client) -> None:
    repo = unique_repo("mgmt")
    m, other = make_manifest(), make_manifest()
    push_manifest(client, repo, m, "a")
    push_manifest(client, repo, m, "b")
    push_manifest(client, repo, other, "c")
    resp = client.delete(f"/v2/{repo}/manifests/{m.digest}")
    assert resp.status_code == 202, resp.text
    assert_error(client.get(f"/v2/{repo}/manifests/{m.digest}"), 404, "MANIFEST_UNKNOWN")
    assert client.head(f"/v2/{repo}/manifests/{m.digest}").status_code == 404
    for tag in ("a", "b"):
        assert_error(client.get(f"/v2/{repo}/manifests/{tag}"), 404, "MANIFEST_UNKNOWN")
    assert _tags(client, repo) == ["c"]
    assert client.get(f"/v2/{repo}/manifests/c").content == other.body
    # Deleting it again: it is unknown now.
    assert_error(client.delete(f"/v2/{repo}/manifests/{m.digest}"), 404, "MANIFEST_UNKNOWN")
    # The blobs it referenced stay (only garbage collection removes them).
    for b in m.blobs:
        assert client.head(f"/v2/{repo}/blobs/{b.digest}").status_code == 200


def test_delete_manifest_then_push_again(client: httpx.Client) -> None:
    repo = unique_repo("mgmt")
    m = make_manifest()
    push_manifest(client, repo, m, "v1")
    assert client.delete(f"/v2/{repo}/manifests/{m.digest}").status_code == 202
    push_manifest(client, repo, m, "v1", with_blobs=False)
    assert client.get(f"/v2/{repo}/manifests/v1").content == m.body


def test_delete_unknown_manifest_digest(client: httpx.Client) -> None:
    repo = unique_repo("mgmt")
    push_manifest(client, repo, make_manifest(), "x")
    assert_error(client.delete(f"/v2/{repo}/manifests/{DUMMY_DIGEST}"), 404, "MANIFEST_UNKNOWN")


def test_delete_manifest_invalid_digest(client: httpx.Client) -> None:
    repo = unique_repo("mgmt")
    push_manifest(client, repo, make_manifest(), "x")
    assert_error(client.delete(f"/v2/{repo}/manifests/sha256:nothex"), (400, 404),
                 "DIGEST_INVALID", "MANIFEST_UNKNOWN")


def test_deleted_referrer_disappears_from_referrers(client: httpx.Client) -> None:
    repo = unique_repo("mgmt")
    subject = make_manifest()
    push_manifest(client, repo, subject, "base")
    ref1 = make_manifest(subject=subject, artifact_type="application/vnd.example.sig")
    ref2 = make_manifest(subject=subject, artifact_type="application/vnd.example.sig")
    push_manifest(client, repo, ref1)
    push_manifest(client, repo, ref2)
    resp = client.get(f"/v2/{repo}/referrers/{subject.digest}")
    assert {d["digest"] for d in resp.json()["manifests"]} == {ref1.digest, ref2.digest}
    assert client.delete(f"/v2/{repo}/manifests/{ref1.digest}").status_code == 202
    resp = client.get(f"/v2/{repo}/referrers/{subject.digest}")
    assert resp.status_code == 200
    assert [d["digest"] for d in resp.json()["manifests"]] == [ref2.digest]


def test_delete_blob(client: httpx.Client) -> None:
    repo = unique_repo("mgmt")
    data = random_bytes(500)
    d = push_blob(client, repo, data)
    resp = client.delete(f"/v2/{repo}/blobs/{d}")
    assert resp.status_code == 202, resp.text
    assert_error(client.get(f"/v2/{repo}/blobs/{d}"), 404, "BLOB_UNKNOWN")
    assert client.head(f"/v2/{repo}/blobs/{d}").status_code == 404
    assert_error(client.delete(f"/v2/{repo}/blobs/{d}"), 404, "BLOB_UNKNOWN")


def test_delete_blob_only_unlinks_from_that_repository(client: httpx.Client) -> None:
    a, b = unique_repo("mgmt"), unique_repo("mgmt")
    data = random_bytes(256)
    d = push_blob(client, a, data)
    push_blob(client, b, data)
    assert client.delete(f"/v2/{a}/blobs/{d}").status_code == 202
    assert_error(client.get(f"/v2/{a}/blobs/{d}"), 404, "BLOB_UNKNOWN")
    resp = client.get(f"/v2/{b}/blobs/{d}")
    assert resp.status_code == 200
    assert resp.content == data


def test_delete_unknown_blob(client: httpx.Client) -> None:
    repo = unique_repo("mgmt")
    push_blob(client, repo, b"seed")
    assert_error(client.delete(f"/v2/{repo}/blobs/{DUMMY_DIGEST}"), 404, "BLOB_UNKNOWN")


def test_delete_blob_invalid_digest(client: httpx.Client) -> None:
    repo = unique_repo("mgmt")
    push_blob(client, repo, b"seed")
    assert_error(client.delete(f"/v2/{repo}/blobs/sha256:nothex"), 400, "DIGEST_INVALID")


def test_deletes_disabled_answer_405_unsupported(app_factory: object) -> None:
    srv = app_factory(config={"storage": {"delete": {"enabled": False}}})  # type: ignore[operator]
    with srv.client() as c:
        repo = unique_repo("nodelete")
        m = make_manifest()
        push_manifest(c, repo, m, "v1")
        for path in (f"/v2/{repo}/manifests/v1", f"/v2/{repo}/manifests/{m.digest}",
                     f"/v2/{repo}/blobs/{m.blobs[0].digest}"):
            assert_error(c.delete(path), 405, "UNSUPPORTED")
        # Nothing was deleted.
        assert c.get(f"/v2/{repo}/manifests/v1").content == m.body
        assert c.get(f"/v2/{repo}/blobs/{m.blobs[0].digest}").content == m.blobs[0].data
        # Upload sessions can still be cancelled: that is not a content delete.
        loc = c.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
        assert c.delete(loc).status_code == 204
