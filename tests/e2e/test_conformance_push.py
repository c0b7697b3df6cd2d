"""OCI distribution-spec v1.1 conformance, "Push" (port of conformance/02_push_test.go), and more.

Spec references: "Pushing blobs" (monolithic POST+PUT, single POST, chunked POST/PATCH*/PUT, streamed),
"Mounting a blob from another repository", "Pushing Manifests" (incl. "Pushing Manifests with
Subject"), "Error Codes"; plus what Docker clients rely on from Distribution (Range "0-<end>",
Docker-Upload-UUID, Docker-Content-Digest, a fresh Location after every PATCH).
"""
from __future__ import annotations

import json
import socket
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from tests.support.registry_client import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    OCTET,
    assert_error,
    digest_of,
    make_config,
    make_index,
    make_manifest,
    push_blob,
    push_manifest,
    put_manifest,
    q,
    random_bytes,
    relative,
    start_upload,
    unique_repo,
)

pytestmark = pytest.mark.e2e


def _blob_is_absent(client: httpx.Client, repo: str, digest: str) -> None:
    resp = client.head(f"/v2/{repo}/blobs/{digest}")
    assert resp.status_code == 404, (digest, resp.status_code)
    assert_error(client.get(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def _assert_blob(client: httpx.Client, repo: str, data: bytes, digest: str | None = None) -> None:
    d = digest or digest_of(data)
    resp = client.get(f"/v2/{repo}/blobs/{d}")
    assert resp.status_code == 200, resp.text
    assert resp.content == data
    assert resp.headers["Docker-Content-Digest"] == d


def _assert_blob_created(resp: httpx.Response, repo: str, digest: str) -> None:
    assert resp.status_code == 201, (resp.status_code, resp.text)
    assert relative(resp.headers["Location"]) == f"/v2/{repo}/blobs/{digest}"
    assert resp.headers["Docker-Content-Digest"] == digest


def _assert_session(resp: httpx.Response, status: int, repo: str, end: int | None) -> str:
    """A session response: status, Location under the repo's uploads, UUID, Range; returns Location."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    loc = relative(resp.headers["Location"])
    uuid = resp.headers["Docker-Upload-UUID"]
    assert uuid
    assert urlsplit(loc).path == f"/v2/{repo}/blobs/uploads/{uuid}"
    assert resp.headers["Range"] == ("0-0" if end is None else f"0-{end}")
    return loc


# -- monolithic ---------------------------------------------------------------------------------
def test_post_then_put_monolithic(client: httpx.Client) -> None:
    repo = unique_repo("push")
    data = random_bytes(5000)
    d = digest_of(data)
    resp = client.post(f"/v2/{repo}/blobs/uploads/")
    loc = _assert_session(resp, 202, repo, None)
    resp = client.put(q(loc, digest=d), content=data,
                      headers={"Content-Type": OCTET, "Content-Length": str(len(data))})
    _assert_blob_created(resp, repo, d)
    _assert_blob(client, repo, data)


def test_single_post_with_digest(client: httpx.Client) -> None:
    repo = unique_repo("push")
    data = random_bytes(777)
    d = digest_of(data)
    resp = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=data,
                       headers={"Content-Type": OCTET, "Content-Length": str(len(data))})
    _assert_blob_created(resp, repo, d)
    _assert_blob(client, repo, data)


def test_single_post_with_wrong_digest(client: httpx.Client) -> None:
    repo = unique_repo("push")
    data = random_bytes(100)
    wrong = digest_of(b"something else")
    resp = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": wrong}, content=data,
                       headers={"Content-Type": OCTET})
    assert_error(resp, 400, "DIGEST_INVALID")
    _blob_is_absent(client, repo, wrong)
    _blob_is_absent(client, repo, digest_of(data))


def test_empty_blob(client: httpx.Client) -> None:
    repo = unique_repo("push")
    d = digest_of(b"")
    loc = relative(start_upload(client, repo).headers["Location"])
    resp = client.put(q(loc, digest=d), content=b"", headers={"Content-Type": OCTET})
    _assert_blob_created(resp, repo, d)
    resp = client.get(f"/v2/{repo}/blobs/{d}")
    assert resp.status_code == 200
    assert resp.content == b""
    assert resp.headers["Content-Length"] == "0"


def test_push_existing_blob_again_succeeds(client: httpx.Client) -> None:
    repo = unique_repo("push")
    data = random_bytes(300)
    push_blob(client, repo, data)
    push_blob(client, repo, data)
    other = unique_repo("push")
    push_blob(client, other, data)
    _assert_blob(client, repo, data)
    _assert_blob(client, other, data)


def test_put_without_digest_is_rejected(client: httpx.Client) -> None:
    repo = unique_repo("push")
    loc = relative(start_upload(client, repo).headers["Location"])
    resp = client.put(loc, content=b"abc", headers={"Content-Type": OCTET})
    assert_error(resp, 400, "DIGEST_INVALID")


def test_put_with_wrong_digest_is_400_and_blob_not_created(client: httpx.Client) -> None:
    repo = unique_repo("push")
    data = random_bytes(1000)
    wrong = digest_of(data + b"x")
    loc = relative(start_upload(client, repo).headers["Location"])
    resp = client.put(q(loc, digest=wrong), content=data, headers={"Content-Type": OCTET})
    assert_error(resp, 400, "DIGEST_INVALID")
    _blob_is_absent(client, repo, wrong)
    _blob_is_absent(client, repo, digest_of(data))


def test_put_with_malformed_digest_is_400(client: httpx.Client) -> None:
    repo = unique_repo("push")
    loc = relative(start_upload(client, repo).headers["Location"])
    resp = client.put(q(loc, digest="sha256:nothex"), content=b"abc",
                      headers={"Content-Type": OCTET})
    assert_error(resp, 400, "DIGEST_INVALID")


def test_sha512_monolithic_and_chunked(client: httpx.Client) -> None:
    repo = unique_repo("push")
    data = random_bytes(4000)
    d = digest_of(data, "sha512")
    loc = relative(start_upload(client, repo).headers["Location"])
    resp = client.patch(loc, content=data[:1500], headers={
        "Content-Type": OCTET, "Content-Range": "0-1499", "Content-Length": "1500"})
    loc = _assert_session(resp, 202, repo, 1499)
    resp = client.put(q(loc, digest=d), content=data[1500:], headers={
        "Content-Type": OCTET, "Content-Range": f"1500-{len(data) - 1}"})
    _assert_blob_created(resp, repo, d)
    _assert_blob(client, repo, data, d)


def test_blake3_chunked(client: httpx.Client) -> None:
    repo = unique_repo("push")
    data = random_bytes(3000)
    d = digest_of(data, "blake3")
    loc = relative(start_upload(client, repo).headers["Location"])
    resp = client.patch(loc, content=data[:1000], headers={"Content-Type": OCTET, "Content-Range": "0-999"})
    loc = _assert_session(resp, 202, repo, 999)
    resp = client.patch(loc, content=data[1000:], headers={"Content-Type": OCTET, "Content-Range": "1000-2999"})
    loc = _assert_session(resp, 202, repo, 2999)
    resp = client.put(q(loc, digest=d))
    _assert_blob_created(resp, repo, d)
    _assert_blob(client, repo, data, d)


# -- streamed and chunked -----------------------------------------------------------------------
def test_streamed_patch_without_content_range(client: httpx.Client) -> None:
    """conformance "Blob Upload Streamed": PATCH the whole body, then PUT ?digest= with no body."""
    repo = unique_repo("push")
    data = random_bytes(200_000)
    d = digest_of(data)
    loc = relative(start_upload(client, repo).headers["Location"])
    resp = client.patch(loc, content=data, headers={"Content-Type": OCTET})
    loc = _assert_session(resp, 202, repo, len(data) - 1)
    resp = client.put(q(loc, digest=d), headers={"Content-Type": OCTET, "Content-Length": "0"})
    _assert_blob_created(resp, repo, d)
    _assert_blob(client, repo, data)


def test_streamed_patch_with_chunked_transfer_encoding(client: httpx.Client) -> None:
    repo = unique_repo("push")
    parts = [random_bytes(70_000) for _ in range(5)]
    data = b"".join(parts)
    loc = relative(start_upload(client, repo).headers["Location"])
    resp = client.patch(loc, content=iter(parts), headers={"Content-Type": OCTET})
    loc = _assert_session(resp, 202, repo, len(data) - 1)
    resp = client.put(q(loc, digest=digest_of(data)))
    _assert_blob_created(resp, repo, digest_of(data))
    _assert_blob(client, repo, data)


def test_chunked_upload_full_flow(client: httpx.Client) -> None:
    repo = unique_repo("push")
    data = random_bytes(3 * 65536 + 123)
    d = digest_of(data)
    resp = client.post(f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    loc = _assert_session(resp, 202, repo, None)
    uuid = resp.headers["Docker-Upload-UUID"]
    chunks = [data[i:i + 65536] for i in range(0, len(data), 65536)]
    offset = 0
    for chunk in chunks:
        end = offset + len(chunk) - 1
        resp = client.patch(loc, content=chunk, headers={
            "Content-Type": OCTET, "Content-Range": f"{offset}-{end}", "Content-Length": str(len(chunk))})
        new_loc = _assert_session(resp, 202, repo, end)
        assert resp.headers["Docker-Upload-UUID"] == uuid
        assert new_loc != loc, "every PATCH must hand out a fresh Location"
        loc = new_loc
        offset = end + 1
        # GET on the session reports progress.
        status = client.get(loc)
        assert _assert_session(status, 204, repo, end)
        assert status.headers["Docker-Upload-UUID"] == uuid
        assert status.content == b""
    resp = client.put(q(loc, digest=d), headers={"Content-Type": OCTET})
    _assert_blob_created(resp, repo, d)
    _assert_blob(client, repo, data)
    # The session is gone once committed.
    assert_error(client.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")


def test_get_upload_status_of_fresh_session(client: httpx.Client) -> None:
    repo = unique_repo("push")
    loc = relative(start_upload(client, repo).headers["Location"])
    resp = client.get(loc)
    _assert_session(resp, 204, repo, None)


def test_put_with_final_chunk(client: httpx.Client) -> None:
    """conformance "PUT request with final chunk should return 201"."""
    repo = unique_repo("push")
    data = random_bytes(2000)
    d = digest_of(data)
    loc = relative(start_upload(client, repo).headers["Location"])
    resp = client.patch(loc, content=data[:1200], headers={
        "Content-Type": OCTET, "Content-Range": "0-1199", "Content-Length": "1200"})
    loc = _assert_session(resp, 202, repo, 1199)
    resp = client.put(q(loc, digest=d), content=data[1200:], headers={
        "Content-Type": OCTET, "Content-Range": "1200-1999", "Content-Length": "800"})
    _assert_blob_created(resp, repo, d)
    _assert_blob(client, repo, data)


def test_out_of_order_chunk_is_416(client: httpx.Client) -> None:
    """conformance "Out-of-order blob upload should return 416"."""
    repo = unique_repo("push")
    data = random_bytes(100)
    loc = relative(start_upload(client, repo).headers["Location"])
    resp = client.patch(loc, content=data[50:], headers={
        "Content-Type": OCTET, "Content-Range": "50-99", "Content-Length": "50"})
    assert_error(resp, 416, "BLOB_UPLOAD_INVALID", "RANGE_INVALID")
    # The session is unharmed: the right first chunk is still accepted.
    resp = client.patch(loc, content=data[:50], headers={
        "Content-Type": OCTET, "Content-Range": "0-49", "Content-Length": "50"})
    loc = _assert_session(resp, 202, repo, 49)
    # Re-sending an overlapping chunk is out of order too.
    resp = client.patch(loc, content=data[40:], headers={
        "Content-Type": OCTET, "Content-Range": "40-99", "Content-Length": "60"})
    assert_error(resp, 416, "BLOB_UPLOAD_INVALID", "RANGE_INVALID")
    resp = client.patch(loc, content=data[50:], headers={
        "Content-Type": OCTET, "Content-Range": "50-99", "Content-Length": "50"})
    loc = _assert_session(resp, 202, repo, 99)
    resp = client.put(q(loc, digest=digest_of(data)))
    _assert_blob_created(resp, repo, digest_of(data))
    _assert_blob(client, repo, data)


def test_malformed_content_range_is_rejected(client: httpx.Client) -> None:
    repo = unique_repo("push")
    loc = relative(start_upload(client, repo).headers["Location"])
    resp = client.patch(loc, content=b"abcd", headers={"Content-Type": OCTET, "Content-Range": "garbage"})
    assert_error(resp, (400, 416), "BLOB_UPLOAD_INVALID", "RANGE_INVALID")
    # Content-Range disagreeing with the body length.
    resp = client.patch(loc, content=b"abcd", headers={"Content-Type": OCTET, "Content-Range": "0-9"})
    assert_error(resp, (400, 416), "BLOB_UPLOAD_INVALID", "RANGE_INVALID", "SIZE_INVALID")


def test_stale_location_after_patch_is_refused(client: httpx.Client) -> None:
    """Reusing a Location from before a PATCH must not corrupt the upload."""
    repo = unique_repo("push")
    data = random_bytes(64)
    old = relative(start_upload(client, repo).headers["Location"])
    resp = client.patch(old, content=data[:32], headers={"Content-Type": OCTET, "Content-Range": "0-31"})
    new = _assert_session(resp, 202, repo, 31)
    resp = client.patch(old, content=b"X" * 32, headers={"Content-Type": OCTET})
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    assert_error(resp, resp.status_code, "BLOB_UPLOAD_INVALID", "RANGE_INVALID")
    resp = client.patch(new, content=data[32:], headers={"Content-Type": OCTET, "Content-Range": "32-63"})
    new = _assert_session(resp, 202, repo, 63)
    _assert_blob_created(client.put(q(new, digest=digest_of(data))), repo, digest_of(data))
    _assert_blob(client, repo, data)


def test_delete_upload_session(client: httpx.Client) -> None:
    repo = unique_repo("push")
    loc = relative(start_upload(client, repo).headers["Location"])
    resp = client.patch(loc, content=b"hello", headers={"Content-Type": OCTET})
    loc = _assert_session(resp, 202, repo, 4)
    resp = client.delete(loc)
    assert resp.status_code == 204
    assert_error(client.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.patch(loc, content=b"more", headers={"Content-Type": OCTET}), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.put(q(loc, digest=digest_of(b"hello"))), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.delete(loc), 404, "BLOB_UPLOAD_UNKNOWN")


def test_unknown_upload_uuid(client: httpx.Client) -> None:
    repo = unique_repo("push")
    start_upload(client, repo)   # the repository exists; the session does not
    resp = client.get(f"/v2/{repo}/blobs/uploads/5e1c1bb1-0000-4000-8000-000000000000")
    assert_error(resp, (400, 404), "BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID")
    resp = client.patch(f"/v2/{repo}/blobs/uploads/not-a-uuid", content=b"x", headers={"Content-Type": OCTET})
    assert_error(resp, (400, 404), "BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID")


def _with_state(loc: str, state: str) -> str:
    parts = urlsplit(loc)
    q = [(k, state if k == "_state" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return parts.path + "?" + urlencode(q)


def test_tampered_state_token_is_refused(client: httpx.Client) -> None:
    repo = unique_repo("push")
    loc = relative(start_upload(client, repo).headers["Location"])
    state = dict(parse_qsl(urlsplit(loc).query)).get("_state")
    assert state, f"expected a _state query parameter in {loc}"
    variants = {
        state[:-1] + ("A" if state[-1] != "A" else "B"),         # last character changed
        ("A" if state[0] != "A" else "B") + state[1:],           # first character changed
        state[: len(state) // 2],                                # truncated
        "garbage", "%00%ff", ".",
    }
    for bad in variants:
        tampered = _with_state(loc, bad)
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            kw: dict[str, object] = {}
            if method in ("PATCH", "PUT"):
                kw = {"content": b"data", "headers": {"Content-Type": OCTET}}
            tampered_url = q(tampered, digest=digest_of(b"data")) if method == "PUT" else tampered
            resp = client.request(method, tampered_url, **kw)  # type: ignore[arg-type]
            assert 400 <= resp.status_code < 500, (method, bad, resp.status_code, resp.text)
            assert_error(resp, resp.status_code, "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN")
    # The genuine session still works afterwards.
    resp = client.put(q(loc, digest=digest_of(b"ok")), content=b"ok")
    _assert_blob_created(resp, repo, digest_of(b"ok"))


def test_session_of_another_repository_is_refused(client: httpx.Client) -> None:
    repo_a, repo_b = unique_repo("push"), unique_repo("push")
    start_upload(client, repo_b)
    loc_a = relative(start_upload(client, repo_a).headers["Location"])
    parts = urlsplit(loc_a)
    uuid = parts.path.rsplit("/", 1)[1]
    for target in (f"/v2/{repo_b}/blobs/uploads/{uuid}?{parts.query}",
                   f"/v2/{repo_b}/blobs/uploads/{uuid}"):
        resp = client.patch(target, content=b"data", headers={"Content-Type": OCTET})
        assert 400 <= resp.status_code < 500, (target, resp.status_code, resp.text)
        assert_error(resp, resp.status_code, "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN")
        resp = client.put(q(target, digest=digest_of(b"data")), content=b"data")
        assert 400 <= resp.status_code < 500, (target, resp.status_code, resp.text)
        assert_error(resp, resp.status_code, "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN")
    _blob_is_absent(client, repo_b, digest_of(b"data"))


# -- cross-repository mount ---------------------------------------------------------------------
def test_mount_blob_from_another_repository(client: httpx.Client) -> None:
    src, dst = unique_repo("mount"), unique_repo("mount")
    data = random_bytes(1234)
    d = push_blob(client, src, data)
    resp = client.post(f"/v2/{dst}/blobs/uploads/", params={"mount": d, "from": src})
    _assert_blob_created(resp, dst, d)
    _assert_blob(client, dst, data)


def test_mount_missing_blob_falls_back_to_upload(client: httpx.Client) -> None:
    src, dst = unique_repo("mount"), unique_repo("mount")
    push_blob(client, src, random_bytes(10))
    data = random_bytes(99)
    d = digest_of(data)
    resp = client.post(f"/v2/{dst}/blobs/uploads/", params={"mount": d, "from": src})
    loc = _assert_session(resp, 202, dst, None)
    resp = client.put(q(loc, digest=d), content=data, headers={"Content-Type": OCTET})
    _assert_blob_created(resp, dst, d)
    _assert_blob(client, dst, data)


def test_mount_from_repository_without_the_blob_is_not_a_mount(client: httpx.Client) -> None:
    """A blob that exists in the registry but not in `from` must not be mountable through `from`."""
    owner, bystander, dst = unique_repo("mount"), unique_repo("mount"), unique_repo("mount")
    d = push_blob(client, owner, random_bytes(50))
    push_blob(client, bystander, random_bytes(50))
    resp = client.post(f"/v2/{dst}/blobs/uploads/", params={"mount": d, "from": bystander})
    _assert_session(resp, 202, dst, None)
    _blob_is_absent(client, dst, d)


def test_mount_without_from(client: httpx.Client) -> None:
    """Spec: without `from` the registry MAY mount a blob it has (201) or start an upload (202)."""
    src, dst = unique_repo("mount"), unique_repo("mount")
    data = random_bytes(64)
    d = push_blob(client, src, data)
    resp = client.post(f"/v2/{dst}/blobs/uploads/", params={"mount": d})
    if resp.status_code == 201:
        _assert_blob_created(resp, dst, d)
        _assert_blob(client, dst, data)
    else:
        _assert_session(resp, 202, dst, None)


def test_mount_with_invalid_digest(client: httpx.Client) -> None:
    src, dst = unique_repo("mount"), unique_repo("mount")
    push_blob(client, src, b"x")
    resp = client.post(f"/v2/{dst}/blobs/uploads/", params={"mount": "sha256:zzz", "from": src})
    assert resp.status_code in (400, 202), resp.text
    if resp.status_code == 400:
        assert_error(resp, 400, "DIGEST_INVALID")


# -- manifests ----------------------------------------------------------------------------------
def _assert_manifest_created(resp: httpx.Response, repo: str, digest: str) -> None:
    assert resp.status_code == 201, (resp.status_code, resp.text)
    assert relative(resp.headers["Location"]) == f"/v2/{repo}/manifests/{digest}"
    assert resp.headers["Docker-Content-Digest"] == digest


def _assert_pull(client: httpx.Client, repo: str, ref: str, body: bytes, media_type: str,
                 accept: str | None = None) -> None:
    headers = {"Accept": accept or media_type}
    resp = client.get(f"/v2/{repo}/manifests/{ref}", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.content == body
    assert resp.headers["Content-Type"] == media_type
    assert resp.headers["Docker-Content-Digest"] == digest_of(body)
    assert int(resp.headers["Content-Length"]) == len(body)


def test_get_nonexistent_manifest_before_push(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    push_blob(client, repo, b"seed")
    assert_error(client.get(f"/v2/{repo}/manifests/test0"), 404, "MANIFEST_UNKNOWN")


def test_put_oci_image_manifest_by_tag(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    m = make_manifest()
    for b in m.blobs:
        push_blob(client, repo, b)
    for i in range(4):   # conformance "PUT should accept a manifest upload" (4 tags)
        resp = put_manifest(client, repo, f"test{i}", m)
        _assert_manifest_created(resp, repo, m.digest)
        assert "OCI-Subject" not in resp.headers
    for ref in ("test0", "test3", m.digest):
        _assert_pull(client, repo, ref, m.body, OCI_MANIFEST)


def test_put_manifest_by_digest(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    m = make_manifest()
    for b in m.blobs:
        push_blob(client, repo, b)
    resp = put_manifest(client, repo, m.digest, m)
    _assert_manifest_created(resp, repo, m.digest)
    _assert_pull(client, repo, m.digest, m.body, OCI_MANIFEST)
    # no tag: the repository is unknown to the tag list (as Distribution answers)
    assert_error(client.get(f"/v2/{repo}/tags/list"), 404, "NAME_UNKNOWN")


def test_put_manifest_digest_mismatch(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    m = make_manifest()
    for b in m.blobs:
        push_blob(client, repo, b)
    wrong = digest_of(m.body + b" ")
    resp = put_manifest(client, repo, wrong, m)
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_error(client.get(f"/v2/{repo}/manifests/{wrong}"), 404, "MANIFEST_UNKNOWN")
    assert_error(client.get(f"/v2/{repo}/manifests/{m.digest}"), 404, "MANIFEST_UNKNOWN")


def test_put_manifest_by_sha512_digest(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    m = make_manifest()
    for b in m.blobs:
        push_blob(client, repo, b)
    d512 = digest_of(m.body, "sha512")
    resp = put_manifest(client, repo, d512, m)
    assert resp.status_code == 201, resp.text
    assert resp.headers["Docker-Content-Digest"] == d512
    got = client.get(f"/v2/{repo}/manifests/{d512}")
    assert got.status_code == 200
    assert got.content == m.body
    assert got.headers["Docker-Content-Digest"] == d512


def test_put_oci_index(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    children = [make_manifest(), make_manifest()]
    for c in children:
        push_manifest(client, repo, c)
    idx = make_index(children)
    resp = put_manifest(client, repo, "multi", idx)
    _assert_manifest_created(resp, repo, idx.digest)
    _assert_pull(client, repo, "multi", idx.body, OCI_INDEX)
    _assert_pull(client, repo, idx.digest, idx.body, OCI_INDEX)


def test_put_docker_schema2_manifest(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    m = make_manifest(media_type=DOCKER_MANIFEST)
    assert m.blobs[0].media_type == DOCKER_CONFIG and m.blobs[1].media_type == DOCKER_LAYER
    for b in m.blobs:
        push_blob(client, repo, b)
    resp = put_manifest(client, repo, "latest", m)
    _assert_manifest_created(resp, repo, m.digest)
    _assert_pull(client, repo, "latest", m.body, DOCKER_MANIFEST)
    # What docker pull sends: a list of acceptable types.
    accept = f"{DOCKER_MANIFEST}, {DOCKER_LIST}, {OCI_MANIFEST}, {OCI_INDEX}"
    _assert_pull(client, repo, "latest", m.body, DOCKER_MANIFEST, accept=accept)


def test_put_docker_manifest_list(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    children = [make_manifest(media_type=DOCKER_MANIFEST) for _ in range(2)]
    for c in children:
        push_manifest(client, repo, c)
    lst = make_index(children, media_type=DOCKER_LIST)
    resp = put_manifest(client, repo, "latest", lst)
    _assert_manifest_created(resp, repo, lst.digest)
    accept = f"{DOCKER_MANIFEST}, {DOCKER_LIST}, {OCI_MANIFEST}, {OCI_INDEX}"
    _assert_pull(client, repo, "latest", lst.body, DOCKER_LIST, accept=accept)


def test_oci_manifest_without_media_type_field(client: httpx.Client) -> None:
    """OCI image-spec: mediaType is a SHOULD; the Content-Type header decides."""
    repo = unique_repo("manifest")
    m = make_manifest(include_media_type=False)
    for b in m.blobs:
        push_blob(client, repo, b)
    resp = put_manifest(client, repo, "nomt", m, content_type=OCI_MANIFEST)
    _assert_manifest_created(resp, repo, m.digest)
    _assert_pull(client, repo, "nomt", m.body, OCI_MANIFEST)


def test_retag_moves_the_tag(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    a, b = make_manifest(), make_manifest()
    push_manifest(client, repo, a, "v1")
    push_manifest(client, repo, b, "v1")
    _assert_pull(client, repo, "v1", b.body, OCI_MANIFEST)
    _assert_pull(client, repo, a.digest, a.body, OCI_MANIFEST)


def test_manifest_with_missing_layer_is_manifest_blob_unknown(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    m = make_manifest()
    push_blob(client, repo, m.blobs[0])            # config only; the layer is missing
    resp = put_manifest(client, repo, "broken", m)
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_error(client.get(f"/v2/{repo}/manifests/broken"), 404, "MANIFEST_UNKNOWN")


def test_manifest_with_missing_config_is_manifest_blob_unknown(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    m = make_manifest()
    push_blob(client, repo, m.blobs[1])            # layer only; the config is missing
    resp = put_manifest(client, repo, "broken", m)
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")


def test_manifest_blob_of_another_repository_is_unknown(client: httpx.Client) -> None:
    repo, other = unique_repo("manifest"), unique_repo("manifest")
    m = make_manifest()
    for b in m.blobs:
        push_blob(client, other, b)
    assert_error(put_manifest(client, repo, "x", m), 400, "MANIFEST_BLOB_UNKNOWN")


def test_index_with_missing_child_is_manifest_blob_unknown(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    present, missing = make_manifest(), make_manifest()
    push_manifest(client, repo, present)
    for b in missing.blobs:          # blobs present, but the child manifest itself never pushed
        push_blob(client, repo, b)
    idx = make_index([present, missing])
    assert_error(put_manifest(client, repo, "idx", idx), 400, "MANIFEST_BLOB_UNKNOWN")
    lst = make_index([present, missing], media_type=DOCKER_LIST)
    assert_error(put_manifest(client, repo, "lst", lst), 400, "MANIFEST_BLOB_UNKNOWN")


def test_media_type_disagreeing_with_content_type(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    m = make_manifest()
    for b in m.blobs:
        push_blob(client, repo, b)
    assert_error(put_manifest(client, repo, "x", m, content_type=DOCKER_MANIFEST), 400, "MANIFEST_INVALID")
    assert_error(put_manifest(client, repo, "x", m, content_type=OCI_INDEX), 400, "MANIFEST_INVALID")


def test_malformed_manifest_json(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    push_blob(client, repo, b"seed")
    for body in (b"{not json", b"", b"[]", b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode()
                 + b'", "config": "nope", "layers": []}', b'{"schemaVersion": 1}'):
        resp = client.put(f"/v2/{repo}/manifests/bad", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert_error(resp, 400, "MANIFEST_INVALID")


def test_manifest_over_4mib_is_413(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    config = make_config()
    push_blob(client, repo, config)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(), "layers": [],
           "annotations": {"pad": "x" * (4 * 1024 * 1024)}}
    body = json.dumps(doc).encode()
    assert len(body) > 4 * 1024 * 1024
    try:
        resp = client.put(f"/v2/{repo}/manifests/big", content=body, headers={"Content-Type": OCI_MANIFEST})
    except httpx.TransportError:   # the server may answer early and close; then check nothing was stored
        resp = None
    if resp is not None:
        assert_error(resp, 413, "SIZE_INVALID", "MANIFEST_INVALID")
    assert_error(client.get(f"/v2/{repo}/manifests/big"), 404, "MANIFEST_UNKNOWN")


def test_manifest_with_missing_subject_is_accepted_with_oci_subject(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    ghost = make_manifest()                 # never pushed
    m = make_manifest(subject=ghost, artifact_type="application/vnd.example.sbom")
    for b in m.blobs:
        push_blob(client, repo, b)
    resp = put_manifest(client, repo, m.digest, m)
    _assert_manifest_created(resp, repo, m.digest)
    assert resp.headers["OCI-Subject"] == ghost.digest


def test_index_with_subject_returns_oci_subject(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    base = make_manifest()
    push_manifest(client, repo, base, "base")
    child = make_manifest()
    push_manifest(client, repo, child)
    idx = make_index([child], subject=base, artifact_type="application/vnd.example.idx")
    resp = put_manifest(client, repo, idx.digest, idx)
    _assert_manifest_created(resp, repo, idx.digest)
    assert resp.headers["OCI-Subject"] == base.digest


def test_accept_negotiation_returns_stored_oci_index(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    child = make_manifest()
    push_manifest(client, repo, child)
    idx = make_index([child])
    push_manifest(client, repo, idx, "idx")
    _assert_pull(client, repo, "idx", idx.body, OCI_INDEX, accept=OCI_MANIFEST)
    resp = client.head(f"/v2/{repo}/manifests/idx", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == OCI_INDEX
    assert resp.headers["Docker-Content-Digest"] == idx.digest


def test_invalid_tag_is_rejected(client: httpx.Client) -> None:
    repo = unique_repo("manifest")
    m = make_manifest()
    for b in m.blobs:
        push_blob(client, repo, b)
    for tag in ("-leadingdash", ".dot", "t" * 129):
        resp = put_manifest(client, repo, tag, m)
        assert_error(resp, (400, 404), "TAG_INVALID", "MANIFEST_INVALID", "NAME_INVALID", "MANIFEST_UNKNOWN")
    resp = put_manifest(client, repo, "T" * 128, m)   # exactly at the limit, uppercase allowed
    _assert_manifest_created(resp, repo, m.digest)


# -- concurrency and robustness -----------------------------------------------------------------
def test_concurrent_uploads_of_the_same_blob(registry: object) -> None:
    repo = unique_repo("race")
    data = random_bytes(600_000)
    d = digest_of(data)
    results: list[object] = []
    barrier = threading.Barrier(4)

    def worker(chunked: bool) -> None:
        try:
            with registry.client() as c:  # type: ignore[attr-defined]
                loc = relative(c.post(f"/v2/{repo}/blobs/uploads/").headers["Location"])
                barrier.wait()
                if chunked:
                    half = len(data) // 2
                    r = c.patch(loc, content=data[:half], headers={
                        "Content-Type": OCTET, "Content-Range": f"0-{half - 1}"})
                    assert r.status_code == 202, r.text
                    r = c.put(q(relative(r.headers["Location"]), digest=d), content=data[half:],
                              headers={"Content-Type": OCTET, "Content-Range": f"{half}-{len(data) - 1}"})
                else:
                    r = c.put(q(loc, digest=d), content=data, headers={"Content-Type": OCTET})
                results.append(r.status_code)
        except Exception as exc:  # noqa: BLE001 - reported below
            results.append(exc)

    threads = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [201, 201, 201, 201], results
    with registry.client() as c:  # type: ignore[attr-defined]
        _assert_blob(c, repo, data)


def _raw_request(port: int, head: bytes, body: bytes) -> bytes:
    """Send a request whose body is shorter than its Content-Length, then hang up."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def test_truncated_put_does_not_create_blob(real_registry: object, real_client: httpx.Client) -> None:
    repo = unique_repo("trunc")
    port = real_registry.port  # type: ignore[attr-defined]
    data = random_bytes(100_000)
    d = digest_of(data)
    loc = relative(start_upload(real_client, repo).headers["Location"])
    sep = "&" if "?" in loc else "?"
    head = (f"PUT {loc}{sep}digest={d} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    reply = _raw_request(port, head, data[: len(data) // 2])
    assert not reply.startswith(b"HTTP/1.1 201"), reply[:200]
    _blob_is_absent(real_client, repo, d)
    # Nor through a single POST ?digest=.
    head = (f"POST /v2/{repo}/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    reply = _raw_request(port, head, data[:1000])
    assert not reply.startswith(b"HTTP/1.1 201"), reply[:200]
    _blob_is_absent(real_client, repo, d)
    # The registry still works, and the same blob can then be pushed whole.
    push_blob(real_client, repo, data)
    _assert_blob(real_client, repo, data)


def test_truncated_patch_then_resume_from_reported_range(real_registry: object, real_client: httpx.Client) -> None:
    """After an interrupted PATCH, GET on the session tells where to resume; the result is intact."""
    repo = unique_repo("trunc")
    port = real_registry.port  # type: ignore[attr-defined]
    data = random_bytes(50_000)
    d = digest_of(data)
    loc = relative(start_upload(real_client, repo).headers["Location"])
    head = (f"PATCH {loc} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n").encode()
    _raw_request(port, head, data[:20_000])
    status = real_client.get(loc)
    if status.status_code == 204:
        end = int(status.headers["Range"].split("-")[1])
        offset = 0 if status.headers["Range"] == "0-0" else end + 1
        assert offset <= 20_000
        cur = relative(status.headers["Location"])
        resp = real_client.patch(cur, content=data[offset:], headers={
            "Content-Type": OCTET, "Content-Range": f"{offset}-{len(data) - 1}"})
        assert resp.status_code == 202, resp.text
        resp = real_client.put(q(relative(resp.headers["Location"]), digest=d))
        _assert_blob_created(resp, repo, d)
        _assert_blob(real_client, repo, data)
    else:
        # A server may drop the whole session on an interrupted body; it must say so cleanly.
        assert_error(status, (400, 404), "BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID")
        _blob_is_absent(real_client, repo, d)


def test_put_blob_with_json_content_type_still_works(client: httpx.Client) -> None:
    """Some clients send no or other Content-Type on blob PUT; Distribution accepts it."""
    repo = unique_repo("push")
    data = b'{"a": 1}'
    loc = relative(start_upload(client, repo).headers["Location"])
    resp = client.put(q(loc, digest=digest_of(data)), content=data)
    _assert_blob_created(resp, repo, digest_of(data))
    _assert_blob(client, repo, data)



def test_upload_continues_on_another_replica_and_the_pure_twin(fastreg_factory: object,
                                                                tmp_path: object) -> None:
    """Stateless servers: a session begun on one server continues on another sharing storage and
    http.secret — here one with the compiled digest engine, one with FASTREG_NO_EXTENSIONS=1."""
    root = tmp_path / "shared"  # type: ignore[operator]
    root.mkdir()
    shared = {"storage": {"filesystem": {"rootdirectory": str(root)}}}
    a = fastreg_factory(config=shared)  # type: ignore[operator]
    b = fastreg_factory(config=shared, env={"FASTREG_NO_EXTENSIONS": "1"})  # type: ignore[operator]
    repo = unique_repo("replica")
    data = random_bytes(300_000)
    d = digest_of(data)
    with httpx.Client(base_url=a.url, timeout=30.0) as ca, httpx.Client(base_url=b.url, timeout=30.0) as cb:
        loc = relative(start_upload(ca, repo).headers["Location"])
        resp = ca.patch(loc, content=data[:100_000], headers={"Content-Type": OCTET, "Content-Range": "0-99999"})
        loc = _assert_session(resp, 202, repo, 99_999)
        status = cb.get(loc)
        _assert_session(status, 204, repo, 99_999)
        resp = cb.patch(loc, content=data[100_000:200_000],
                        headers={"Content-Type": OCTET, "Content-Range": "100000-199999"})
        loc = _assert_session(resp, 202, repo, 199_999)
        resp = ca.put(q(loc, digest=d), content=data[200_000:],
                      headers={"Content-Type": OCTET, "Content-Range": f"200000-{len(data) - 1}"})
        _assert_blob_created(resp, repo, d)
        _assert_blob(cb, repo, data)
        _assert_blob(ca, repo, data)
