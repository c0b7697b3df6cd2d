"""Hostile uploads against a real fastreg: tampered state tokens, another repository's upload
URL, malformed Content-Range, lying Content-Length, and bodies that stop halfway (a raw socket
closed mid-body).  A refused request leaves stored data unchanged; a session survives it and
still completes byte-exact; an interrupted one keeps only whole received bytes and resumes."""
from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from .conftest import Seeded, _code, expect
from .support import digest_of, raw, read_response, request_bytes, snapshot, wait_unchanged

Unchanged = Callable[[], AbstractContextManager[None]]


def _session(c: httpx.Client, repo: str = "held/app") -> tuple[str, str, str]:
    """(path without query, uuid, token) of a fresh upload session."""
    r = c.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    u = urlsplit(r.headers["location"])
    return u.path, u.path.rsplit("/", 1)[1], parse_qs(u.query)["_state"][0]


def _next(r: httpx.Response) -> tuple[str, str]:
    u = urlsplit(r.headers["location"])
    return u.path, parse_qs(u.query)["_state"][0]


def _finish(c: httpx.Client, path: str, token: str, sent: bytes, rest: bytes) -> None:
    """Complete a session with `rest` and check the blob is exactly sent + rest."""
    whole = sent + rest
    r = c.put(path, params={"_state": token, "digest": digest_of(whole)}, content=rest)
    assert r.status_code == 201, r.text
    assert c.get(f"/v2/held/app/blobs/{digest_of(whole)}").content == whole


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _tampered(token: str, uuid: str, other_token: str) -> list[tuple[str, str]]:
    p64, m64 = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(p64 + "=" * (-len(p64) % 4)))
    forged = _b64(json.dumps([payload[0], uuid, 10**6, payload[3]]).encode())
    flip = {"A": "B"}.get(m64[5], "A")
    return [
        ("mac flipped", f"{p64}.{m64[:5]}{flip}{m64[6:]}"),
        ("mac last char (unused base64 bits)", f"{p64}.{m64[:-1]}{'B' if m64[-1] == 'A' else 'A'}"),
        ("payload forged, old mac", f"{forged}.{m64}"),
        ("payload forged, no mac", forged),
        ("payload with padding", f"{p64}==.{m64}"),
        ("mac only", f".{m64}"),
        ("empty", ""),
        ("garbage", "%00%2e%2e/..\\"),
        ("three parts", f"{token}.{m64}"),
        ("another session's token", other_token),
        ("huge", "A" * 60_000),
    ]


def test_tampered_state_tokens(seeded: Seeded, unchanged: Unchanged) -> None:
    c = seeded.client
    path, uuid, token = _session(c)
    _, _, other = _session(c)
    first = os.urandom(1000)
    r = c.patch(path, params={"_state": token}, content=first)
    assert r.status_code == 202
    path, token2 = _next(r)
    cases = [*_tampered(token2, uuid, other), ("stale token (offset 0)", token)]
    for label, bad in cases:
        # A stale but authentic token still names its session: GET answers its real state
        # and DELETE may cancel it; writing at the stale offset is refused.
        for method in ("PATCH", "PUT") if label.startswith("stale") else ("PATCH", "PUT", "GET", "DELETE"):
            params = {"_state": bad}
            if method == "PUT":
                params["digest"] = digest_of(first + b"x")
            with unchanged():
                r = c.request(method, path, params=params, content=b"x" if method in ("PATCH", "PUT") else None)
            assert (r.status_code, _code(r)) == (400, "BLOB_UPLOAD_INVALID"), (label, method, r.text[:200])
    _finish(c, path, token2, first, os.urandom(500))


def test_foreign_repository_upload_url(seeded: Seeded, unchanged: Unchanged) -> None:
    """A session of one repository used through another's URL (or its token on another's session)."""
    c = seeded.client
    a_path, a_uuid, a_token = _session(c, "other/repo")
    h_path, _, h_token = _session(c, "held/app")
    for method in ("PATCH", "PUT", "GET", "DELETE"):
        params = {"_state": a_token, **({"digest": digest_of(b"x")} if method == "PUT" else {})}
        with unchanged():       # the token names other/repo: refused before the session is looked up
            r = c.request(method, f"/v2/held/app/blobs/uploads/{a_uuid}", params=params,
                          content=b"x" if method in ("PATCH", "PUT") else None)
        expect(r, 400, "BLOB_UPLOAD_INVALID")
        with unchanged():
            r = c.request(method, h_path, params=params, content=b"x" if method in ("PATCH", "PUT") else None)
        expect(r, 400, "BLOB_UPLOAD_INVALID")
    for path, token in ((a_path, a_token), (h_path, h_token)):
        data = os.urandom(100)
        r = c.put(path, params={"_state": token, "digest": digest_of(data)}, content=data)
        assert r.status_code == 201, r.text


CONTENT_RANGES = [
    ("bytes=x-y", None), ("-5", None), ("5-", None), ("3-1", None), ("0-99999999999999999999999", None),
    ("bytes 0-2", None), ("bytes=0-2/3", None), ("0-2/2", None), ("%00", None), ("0 - 2", None),
    ("\u0660-2".encode().decode("latin-1"), None), ("0-2,3-5", None), ("", None),
    ("5-7", "0-999"),           # not at the session's offset: 416 with the current Range
    ("1000-1002", None),        # right offset but Content-Length 1
]


@pytest.mark.parametrize("value,range_header", CONTENT_RANGES, ids=[v for v, _ in CONTENT_RANGES])
def test_malformed_content_range(seeded: Seeded, unchanged: Unchanged, value: str, range_header: str | None) -> None:
    c = seeded.client
    path, _, token = _session(c)
    first = os.urandom(1000)
    r = c.patch(path, params={"_state": token}, content=first)
    path, token = _next(r)
    with unchanged():
        bad = raw(seeded.port, "PATCH", f"{path}?_state={token}", headers={"Content-Range": value}, body=b"x")
    expect(bad, 416, "RANGE_INVALID")
    if range_header is not None:
        assert bad.headers.get("range") == range_header
    _finish(c, path, token, first, b"tail")


def _send_half(port: int, method: str, target: str, body: bytes, announced: int,
               headers: dict[str, str] | None = None) -> None:
    """Send the head announcing `announced` bytes, then `body`, then close the connection."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(request_bytes(method, target, f"127.0.0.1:{port}", headers, body, content_length=announced))
        time.sleep(0.2)                      # let the server start on the body
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST


def _settled_session(c: httpx.Client, path: str, token: str) -> tuple[int, str]:
    """(size, token) of the session once the server has finished with the broken request, asked
    with the last token the client holds (an older offset's: GET answers the stored state): the
    size is read from the same answer as the token, and twice alike 0.3 s apart (the cut request
    may still be writing its last batch; a PATCH meanwhile would get 416, "another request")."""
    deadline = time.monotonic() + 15
    last = None
    while True:
        r = c.get(path, params={"_state": token})
        assert r.status_code == 204, r.text
        rng = r.headers["range"]
        size = 0 if rng == "0-0" else int(rng.split("-")[1]) + 1
        if size == last or time.monotonic() > deadline:
            return size, _next(r)[1]
        last = size
        time.sleep(0.3)


def test_monolithic_body_stops_halfway(seeded: Seeded, unchanged: Unchanged) -> None:
    """POST ?digest= whose client vanishes mid-body: no blob, no link, no session left."""
    data = os.urandom(300_000)
    with unchanged():
        _send_half(seeded.port, "POST", f"/v2/held/app/blobs/uploads/?digest={digest_of(data)}",
                   data[:100_000], len(data))
    assert seeded.client.head(f"/v2/held/app/blobs/{digest_of(data)}").status_code == 404


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_chunk_stops_halfway_then_resumes(seeded: Seeded, method: str) -> None:
    """A PATCH (or final PUT) cut mid-body: no blob appears; the session keeps a prefix of what
    was sent (never more, never other bytes) and completes byte-exact from where it says it is."""
    c = seeded.client
    path, _, token = _session(c)
    data = os.urandom(600_000)
    r = c.patch(path, params={"_state": token}, content=data[:100_000])
    path, token = _next(r)
    blobs = seeded.srv.root / "docker/registry/v2/blobs"
    before = snapshot(blobs)
    target = f"{path}?_state={token}" + (f"&digest={digest_of(data)}" if method == "PUT" else "")
    _send_half(seeded.port, method, target, data[100_000:400_000], len(data) - 100_000)
    size, token = _settled_session(c, path, token)
    assert 100_000 <= size <= 400_000
    wait_unchanged(blobs, before)                     # nothing committed
    assert c.head(f"/v2/held/app/blobs/{digest_of(data)}").status_code == 404
    _finish(c, path, token, data[:size], data[size:])


def test_patch_body_longer_than_content_length(seeded: Seeded) -> None:
    """Only the announced bytes belong to the chunk; the rest is a (garbage) next request."""
    c = seeded.client
    path, _, token = _session(c)
    data = os.urandom(5000)
    with socket.create_connection(("127.0.0.1", seeded.port)) as s:
        s.sendall(request_bytes("PATCH", f"{path}?_state={token}", "x", {"Connection": "keep-alive"},
                                data, content_length=1000))
        first = read_response(s)
    assert first.status == 202 and first.headers["range"] == "0-999"
    _, token = _next(httpx.Response(202, headers={"location": first.headers["location"]}))
    _finish(c, path, token, data[:1000], b"")


def test_digest_mismatch_removes_session(seeded: Seeded, unchanged: Unchanged) -> None:
    c = seeded.client
    with unchanged():
        path, _, token = _session(c)
        r = c.put(path, params={"_state": token, "digest": "sha256:" + "0" * 64}, content=b"not that")
        expect(r, 400, "DIGEST_INVALID")
    expect(c.get(path, params={"_state": token}), 404, "BLOB_UPLOAD_UNKNOWN")
