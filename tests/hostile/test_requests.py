"""Hostile request lines and headers against a real fastreg: path traversal in names, tags,
digests and upload ids (raw and percent-encoded), malformed digests, listing parameters, Range.

Each row: what is sent → the status and OCI error code expected (a read of something malformed
answers the spec's 404 with the *_UNKNOWN code: it names nothing that can exist; a write or delete
answers 400 with the *_INVALID code); every request runs inside
`unchanged()`, which fails if anything stored changed or the held image stopped pulling.
Requests go over a raw socket so `..`, `%2e`, `%00` and `\\` reach the server as written.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from .conftest import Seeded, expect
from .support import raw

H64 = "a" * 64
EMPTY_SHA = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
Unchanged = Callable[[], AbstractContextManager[None]]

# (method, target, status, code)
PATHS: list[tuple[str, str, int, str]] = [
    # repository names
    ("GET", "/v2/held/../app/tags/list", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/held/%2e%2e/app/tags/list", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/held/%2E%2E/app/tags/list", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/%2e%2e/%2e%2e/etc/tags/list", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/held/app/%2e%2e/%2e%2e/%2e%2e/tags/list", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/held%2fapp%2f..%2f..%2fx/tags/list", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/held/./app/tags/list", 404, "NAME_UNKNOWN"),
    ("GET", "/v2//held/app/tags/list", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/held/app%2f/tags/list", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/held%00/tags/list", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/held\\app/tags/list", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/held%5capp/tags/list", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/Held/App/tags/list", 404, "NAME_UNKNOWN"),
    ("GET", "/v2/" + "a" * 256 + "/tags/list", 404, "NAME_UNKNOWN"),
    ("POST", "/v2/../blobs/uploads/", 400, "NAME_INVALID"),
    ("POST", "/v2/held/%2e%2e/blobs/uploads/", 400, "NAME_INVALID"),
    ("POST", f"/v2/%2e%2e/x/blobs/uploads/?digest={EMPTY_SHA}", 400, "NAME_INVALID"),
    ("PUT", "/v2/held/%2e%2e/manifests/v1", 400, "NAME_INVALID"),
    ("DELETE", f"/v2/held/%2e%2e/blobs/{EMPTY_SHA}", 400, "NAME_INVALID"),
    # tags
    ("GET", "/v2/held/app/manifests/..", 404, "MANIFEST_UNKNOWN"),
    ("GET", "/v2/held/app/manifests/%2e%2e", 404, "MANIFEST_UNKNOWN"),
    ("GET", "/v2/held/app/manifests/.hidden", 404, "MANIFEST_UNKNOWN"),
    ("GET", "/v2/held/app/manifests/v1%00", 404, "MANIFEST_UNKNOWN"),
    ("GET", "/v2/held/app/manifests/v%5c1", 404, "MANIFEST_UNKNOWN"),
    ("GET", "/v2/held/app/manifests/" + "t" * 129, 404, "MANIFEST_UNKNOWN"),
    ("PUT", "/v2/held/app/manifests/%2e%2e", 400, "TAG_INVALID"),
    ("DELETE", "/v2/held/app/manifests/..", 400, "TAG_INVALID"),
    # an encoded '/' stays inside its path segment, where the grammar refuses it
    ("DELETE", "/v2/held/app/manifests/%2e%2e%2f%2e%2e", 400, "TAG_INVALID"),
    ("PUT", "/v2/held/app/manifests/..%2fx", 400, "TAG_INVALID"),
    ("GET", "/v2/held/app/manifests/..%2Fx", 404, "MANIFEST_UNKNOWN"),
    # digests
    ("GET", "/v2/held/app/blobs/..", 404, "BLOB_UNKNOWN"),
    ("GET", "/v2/held/app/blobs/sha256:..", 404, "BLOB_UNKNOWN"),
    ("GET", "/v2/held/app/blobs/sha256:%2e%2e", 404, "BLOB_UNKNOWN"),
    ("GET", "/v2/held/app/blobs/sha256:..%2f..%2f" + H64, 404, "BLOB_UNKNOWN"),
    ("DELETE", "/v2/held/app/blobs/sha256:..%2F..%2F" + H64, 400, "DIGEST_INVALID"),
    ("GET", f"/v2/held/app/blobs/sha256:{H64[:-1]}%00", 404, "BLOB_UNKNOWN"),
    ("GET", f"/v2/held/app/blobs/sha256:{H64[:-1]}%5c", 404, "BLOB_UNKNOWN"),
    ("GET", f"/v2/held/app/blobs/sha256:{H64.upper()}", 404, "BLOB_UNKNOWN"),
    ("GET", f"/v2/held/app/blobs/SHA256:{H64}", 404, "BLOB_UNKNOWN"),
    ("GET", "/v2/held/app/blobs/sha256:abc", 404, "BLOB_UNKNOWN"),
    ("GET", f"/v2/held/app/blobs/sha256:{H64}a", 404, "BLOB_UNKNOWN"),
    ("GET", "/v2/held/app/blobs/sha256:" + "a" * 400, 404, "BLOB_UNKNOWN"),
    ("GET", "/v2/held/app/blobs/sha512:" + H64, 404, "BLOB_UNKNOWN"),
    ("GET", "/v2/held/app/blobs/md5:" + "a" * 32, 404, "BLOB_UNKNOWN"),
    ("GET", "/v2/held/app/blobs/sha256+evil:" + H64, 404, "BLOB_UNKNOWN"),
    ("GET", "/v2/held/app/blobs/sha256:", 404, "BLOB_UNKNOWN"),
    ("GET", "/v2/held/app/blobs/:" + H64, 404, "BLOB_UNKNOWN"),
    ("HEAD", "/v2/held/app/blobs/sha256:%2e%2e", 404, ""),        # HEAD: no body, status only
    ("DELETE", "/v2/held/app/blobs/sha256:..", 400, "DIGEST_INVALID"),
    ("GET", "/v2/held/app/manifests/sha256:..", 404, "MANIFEST_UNKNOWN"),
    ("GET", f"/v2/held/app/manifests/sha256:{H64.upper()}", 404, "MANIFEST_UNKNOWN"),
    ("PUT", "/v2/held/app/manifests/sha256:%2e%2e", 400, "DIGEST_INVALID"),
    ("DELETE", "/v2/held/app/manifests/md5:" + "a" * 32, 400, "DIGEST_INVALID"),
    ("GET", "/v2/held/app/referrers/sha256:..", 400, "DIGEST_INVALID"),
    ("POST", "/v2/held/app/blobs/uploads/?digest=sha256:..", 400, "DIGEST_INVALID"),
    ("POST", "/v2/held/app/blobs/uploads/?digest=sha256:%2e%2e%2f" + H64, 400, "DIGEST_INVALID"),
    ("POST", "/v2/held/app/blobs/uploads/?mount=sha256:..&from=held/app", 400, "DIGEST_INVALID"),
    ("POST", f"/v2/held/app/blobs/uploads/?mount={EMPTY_SHA}&from=..", 400, "NAME_INVALID"),
    ("POST", f"/v2/held/app/blobs/uploads/?mount={EMPTY_SHA}&from=held/%2e%2e/app", 400, "NAME_INVALID"),
    # upload session ids (fixed: '..' used to reach the storage layer and answer 500)
    ("GET", "/v2/held/app/blobs/uploads/..", 404, "BLOB_UPLOAD_UNKNOWN"),
    ("PATCH", "/v2/held/app/blobs/uploads/..", 404, "BLOB_UPLOAD_UNKNOWN"),
    ("PATCH", "/v2/held/app/blobs/uploads/%2e%2e?_state=x", 404, "BLOB_UPLOAD_UNKNOWN"),
    ("PUT", f"/v2/held/app/blobs/uploads/%2e?digest={EMPTY_SHA}", 404, "BLOB_UPLOAD_UNKNOWN"),
    ("DELETE", "/v2/held/app/blobs/uploads/..", 404, "BLOB_UPLOAD_UNKNOWN"),
    ("GET", "/v2/held/app/blobs/uploads/a%5cb", 404, "BLOB_UPLOAD_UNKNOWN"),
    ("GET", "/v2/held/app/blobs/uploads/a%00b", 404, "BLOB_UPLOAD_UNKNOWN"),
    # a well-formed session id without _state: refused before the session is looked up (as Distribution)
    ("PATCH", "/v2/held/app/blobs/uploads/00000000-0000-4000-8000-000000000000", 400, "BLOB_UPLOAD_INVALID"),
    # paths outside the API: a plain 404, as Distribution answers (no error code: no route)
    ("GET", "/v2/../../../etc/passwd", 404, ""),
    ("GET", "/%2e%2e/%2e%2e/etc/passwd", 404, ""),
]


@pytest.mark.parametrize("method,target,status,code", PATHS, ids=[f"{m} {t[:70]}" for m, t, _, _ in PATHS])
def test_hostile_paths(seeded: Seeded, unchanged: Unchanged, method: str, target: str, status: int,
                       code: str) -> None:
    body = b'{"schemaVersion":2}' if method in ("PUT", "PATCH", "POST") else b""
    with unchanged():
        r = raw(seeded.port, method, target, body=body)
    expect(r, status, code or None)
    if method != "HEAD" and code:
        assert r.headers.get("content-type", "").startswith("application/json")
    elif method != "HEAD":      # no route: Distribution's plain answer, never an error code
        assert r.status == 404 and r.body == b"404 page not found\n", r.body[:200]


# Listing parameters: (target, status, code)
LISTINGS: list[tuple[str, int, str | None]] = [
    ("/v2/_catalog?n=99999999999999999999999", 400, "PAGINATION_NUMBER_INVALID"),
    ("/v2/_catalog?n=1001", 400, "PAGINATION_NUMBER_INVALID"),        # over fastreg.catalog.maxentries
    ("/v2/_catalog?n=-1", 400, "PAGINATION_NUMBER_INVALID"),
    ("/v2/_catalog?n=abc", 400, "PAGINATION_NUMBER_INVALID"),
    ("/v2/_catalog?n=1e3", 400, "PAGINATION_NUMBER_INVALID"),
    ("/v2/_catalog?n=0x10", 400, "PAGINATION_NUMBER_INVALID"),
    ("/v2/_catalog?n=+5", 400, "PAGINATION_NUMBER_INVALID"),
    ("/v2/_catalog?n=%C2%B2", 400, "PAGINATION_NUMBER_INVALID"),       # "²": was a 500 (isdigit)
    ("/v2/_catalog?n=%D9%A1", 400, "PAGINATION_NUMBER_INVALID"),       # Arabic-Indic one: was n=1
    ("/v2/_catalog?n=%00", 400, "PAGINATION_NUMBER_INVALID"),
    ("/v2/_catalog?n=5&n=abc", 400, "PAGINATION_NUMBER_INVALID"),      # the last value counts
    ("/v2/_catalog?last=%00%ff%2e%2e%2f", 200, None),
    ("/v2/_catalog?last=" + "z" * 5000, 200, None),
    ("/v2/held/app/tags/list?n=99999999999999999999999", 400, "PAGINATION_NUMBER_INVALID"),
    ("/v2/held/app/tags/list?n=%C2%B2", 400, "PAGINATION_NUMBER_INVALID"),
    ("/v2/held/app/tags/list?n=-5", 400, "PAGINATION_NUMBER_INVALID"),
    ("/v2/held/app/tags/list?n=999999999999999999", 200, None),        # clamped to fastreg.tags.maxentries
    ("/v2/held/app/tags/list?last=..%2f..%2f", 200, None),
    ("/v2/held/app/referrers/sha256:" + H64 + "?artifactType=%00%2e%2e", 200, None),
]


@pytest.mark.parametrize("target,status,code", LISTINGS, ids=[t[:70] for t, _, _ in LISTINGS])
def test_hostile_listing_parameters(seeded: Seeded, unchanged: Unchanged, target: str, status: int,
                                    code: str | None) -> None:
    with unchanged():
        r = raw(seeded.port, "GET", target)
    expect(r, status, code)
    if status == 200 and "/tags/list" in target and "last=" not in target:
        assert r.json()["tags"] == ["v1"]


def _blob(seeded: Seeded) -> tuple[str, bytes]:
    d, data = max(seeded.image.blobs.items(), key=lambda kv: len(kv[1]))
    return d, data


# Range on GET: (header, status, expected slice as (start, end_exclusive) or None for the whole blob)
def _ranges(size: int) -> list[tuple[str, int, Any]]:
    return [
        ("bytes=0-9", 206, (0, 10)),
        ("bytes=-10", 206, (size - 10, size)),
        (f"bytes=-{size * 10}", 206, (0, size)),                   # suffix longer than the blob
        (f"bytes={size - 1}-99999999999999", 206, (size - 1, size)),
        ("bytes=9-5", 200, None),                                  # invalid: ignored (RFC 9110)
        ("bytes=0-99999999999999999999999", 200, None),            # beyond int64: ignored
        ("bytes=0-1,5-6", 200, None),                              # several ranges: whole blob
        ("bytes=abc", 200, None),
        ("items=0-5", 200, None),
        ("bytes=%00-1", 200, None),
        ("bytes=\u0661-5".encode().decode("latin-1"), 200, None),  # non-ASCII digit
        (f"bytes={size}-", 416, "RANGE_INVALID"),
        ("bytes=-0", 416, "RANGE_INVALID"),
        (f"bytes={2**62}-", 416, "RANGE_INVALID"),
    ]


def test_hostile_ranges(seeded: Seeded, unchanged: Unchanged) -> None:
    d, data = _blob(seeded)
    size = len(data)
    for header, status, want in _ranges(size):
        with unchanged():
            r = raw(seeded.port, "GET", f"/v2/held/app/blobs/{d}", headers={"Range": header})
        assert r.status == status, (header, r.status, r.body[:200])
        if status == 416:
            assert r.code == want and r.headers["content-range"] == f"bytes */{size}", header
        elif want is None:
            assert r.body == data, header
        else:
            start, stop = want
            assert r.body == data[start:stop], header
            assert r.headers["content-range"] == f"bytes {start}-{stop - 1}/{size}", header
