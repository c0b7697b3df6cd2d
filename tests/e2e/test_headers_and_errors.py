"""The API base, routing errors, the error envelope and the headers Docker clients rely on.

Spec references: "Determining support" (GET /v2/), "Error Codes" (the JSON envelope), RFC 9110
15.5.6 (405 carries Allow); Docker Registry HTTP API v2 (Docker-Distribution-API-Version).
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

API_VERSION = "registry/2.0"


def test_base_endpoint(client: httpx.Client) -> None:
    resp = client.get("/v2/")
    assert resp.status_code == 200
    assert resp.headers["Docker-Distribution-API-Version"] == API_VERSION
    resp = client.head("/v2/")
    assert resp.status_code == 200
    assert resp.headers["Docker-Distribution-API-Version"] == API_VERSION
    assert resp.content == b""


def test_api_version_header_on_every_response(client: httpx.Client) -> None:
    repo = unique_repo("headers")
    responses = [
        client.get("/v2/does/not/exist/anywhere"),
        client.get(f"/v2/{repo}/manifests/nope"),
        client.post(f"/v2/{repo}/blobs/uploads/"),
        client.delete("/v2/"),
    ]
    for resp in responses:
        assert resp.headers.get("Docker-Distribution-API-Version") == API_VERSION, (
            resp.request.method, resp.request.url, resp.status_code)


@pytest.mark.parametrize("path", [
    "/", "/v1/", "/v3/", "/v2/foo/bar", "/v2/foo/unknown/thing", "/v2/_catalogue",
    "/v2/foo/blobs", "/v2/foo/manifests", "/v2/foo/manifests/", "/v2/foo/tags/lists",
])
def test_unknown_paths_are_a_plain_404(client: httpx.Client, path: str) -> None:
    """No route: Distribution's plain 404, not an OCI error code (UNSUPPORTED is for an operation
    the registry does not support, answered 405 on a route it has)."""
    resp = client.get(path)
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text == "404 page not found\n"
    assert resp.headers.get("Docker-Distribution-API-Version") == API_VERSION


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("DELETE", "/v2/", {"GET", "HEAD"}),
    ("POST", "/v2/", {"GET", "HEAD"}),
    ("POST", "/v2/_catalog", {"GET"}),
    ("PUT", "/v2/r/tags/list", {"GET"}),
    ("POST", "/v2/r/manifests/latest", {"GET", "HEAD", "PUT", "DELETE"}),
    ("PATCH", "/v2/r/manifests/latest", {"GET", "HEAD", "PUT", "DELETE"}),
    ("PUT", f"/v2/r/blobs/{DUMMY_DIGEST}", {"GET", "HEAD", "DELETE"}),
    ("PATCH", f"/v2/r/blobs/{DUMMY_DIGEST}", {"GET", "HEAD", "DELETE"}),
    ("GET", "/v2/r/blobs/uploads/", {"POST"}),
    ("DELETE", f"/v2/r/referrers/{DUMMY_DIGEST}", {"GET"}),
])
def test_wrong_method_is_405_unsupported(client: httpx.Client, method: str, path: str,
                                         allowed: set[str]) -> None:
    resp = client.request(method, path)
    assert_error(resp, 405, "UNSUPPORTED")
    allow = {m.strip() for m in resp.headers["Allow"].split(",")}
    assert allow == allowed


def test_error_envelope_shape(client: httpx.Client) -> None:
    repo = unique_repo("headers")
    push_blob(client, repo, b"seed")
    resp = client.get(f"/v2/{repo}/manifests/missing")
    assert_error(resp, 404, "MANIFEST_UNKNOWN")
    body = resp.json()
    assert len(body["errors"]) == 1
    err = body["errors"][0]
    assert set(err) == {"code", "message", "detail"}
    assert err["message"]
    assert int(resp.headers["Content-Length"]) == len(resp.content)


def test_head_error_has_no_body(client: httpx.Client) -> None:
    resp = client.head(f"/v2/{unique_repo('headers')}/blobs/{DUMMY_DIGEST}")
    assert resp.status_code == 404
    assert resp.content == b""


def test_blob_headers_for_docker_clients(client: httpx.Client) -> None:
    repo = unique_repo("headers")
    data = random_bytes(1000)
    d = push_blob(client, repo, data)
    resp = client.get(f"/v2/{repo}/blobs/{d}")
    assert resp.status_code == 200
    assert resp.headers["Docker-Content-Digest"] == d
    assert resp.headers["Content-Length"] == "1000"
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["ETag"] == f'"{d}"'


def test_conditional_get_with_etag(client: httpx.Client) -> None:
    repo = unique_repo("headers")
    m = make_manifest()
    push_manifest(client, repo, m, "v1")
    resp = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    etag = resp.headers["ETag"]
    assert etag == f'"{m.digest}"'
    resp = client.get(f"/v2/{repo}/manifests/v1", headers={"If-None-Match": etag})
    assert resp.status_code == 304
    assert resp.content == b""
    d = m.blobs[1].digest
    resp = client.get(f"/v2/{repo}/blobs/{d}", headers={"If-None-Match": f'"{d}"'})
    assert resp.status_code == 304
    assert resp.content == b""


def test_listings_carry_an_etag_that_changes_with_the_listing(client: httpx.Client) -> None:
    """Tags, catalog and referrers answer 304 to a current If-None-Match, 200 once changed."""
    repo = unique_repo("headers")
    m = make_manifest()
    push_manifest(client, repo, m, "v1")
    url = f"/v2/{repo}/tags/list"
    first = client.get(url)
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["ETag"] == etag
    push_manifest(client, repo, m, "v2")
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["tags"] == ["v1", "v2"]
    assert changed.headers["ETag"] != etag
    for other in ("/v2/_catalog", f"/v2/{repo}/referrers/{m.digest}"):
        resp = client.get(other)
        assert resp.status_code == 200
        assert client.get(other, headers={"If-None-Match": resp.headers["ETag"]}).status_code == 304
        assert client.get(other, headers={"If-None-Match": '"0000"'}).status_code == 200


def test_upload_post_headers(client: httpx.Client) -> None:
    repo = unique_repo("headers")
    resp = client.post(f"/v2/{repo}/blobs/uploads/")
    assert resp.status_code == 202
    assert resp.headers["Content-Length"] == "0"
    assert resp.headers["Range"] == "0-0"
    uuid = resp.headers["Docker-Upload-UUID"]
    assert f"/v2/{repo}/blobs/uploads/{uuid}" in resp.headers["Location"]


def test_location_is_absolute_for_the_requested_host(client: httpx.Client) -> None:
    """Distribution builds absolute URLs from the Host header (relativeurls off by default)."""
    repo = unique_repo("headers")
    resp = client.post(f"/v2/{repo}/blobs/uploads/", headers={"Host": "registry.example.com:5000"})
    assert resp.status_code == 202
    assert resp.headers["Location"].startswith(f"http://registry.example.com:5000/v2/{repo}/blobs/uploads/")
    resp = client.post(f"/v2/{repo}/blobs/uploads/",
                       headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "reg.example.org"})
    assert resp.headers["Location"].startswith(f"https://reg.example.org/v2/{repo}/blobs/uploads/")


def test_manifest_put_response_headers(client: httpx.Client) -> None:
    repo = unique_repo("headers")
    m = make_manifest()
    resp = push_manifest(client, repo, m, "v1")
    assert resp.headers["Content-Length"] == "0"
    assert resp.headers["Location"].endswith(f"/v2/{repo}/manifests/{m.digest}")
