"""HTTP framing attacks on a real fastreg: conflicting Content-Length, Transfer-Encoding with
Content-Length (the request-smuggling pair), oversized heads.  granian refuses what HTTP/1.1
forbids before fastreg sees it; what reaches fastreg is checked against the bytes that arrived."""
from __future__ import annotations

import socket
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from .conftest import Seeded, expect
from .support import digest_of, raw, read_response

Unchanged = Callable[[], AbstractContextManager[None]]


def _send(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(data)
        r = read_response(s)
        return f"{r.status}".encode() + b" " + r.body


@pytest.mark.parametrize("head,status", [
    (b"Content-Length: 5\r\nContent-Length: 6\r\n", b"400"),              # two lengths
    (b"Content-Length: 5, 6\r\n", b"400"),
    (b"Content-Length: -5\r\n", b"400"),
    (b"Content-Length: 0x5\r\n", b"400"),
    (b"Content-Length: \xb2\r\n", b"400"),                              # "²" (isdigit() is True)
])
def test_conflicting_or_malformed_content_length(seeded: Seeded, unchanged: Unchanged, head: bytes,
                                                 status: bytes) -> None:
    d = digest_of(b"hello")
    with unchanged():
        got = _send(seeded.port, f"POST /v2/held/app/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\n".encode()
                    + head + b"Connection: close\r\n\r\nhello!")
    assert got.startswith(status), got
    assert seeded.client.head(f"/v2/held/app/blobs/{d}").status_code == 404


def test_transfer_encoding_with_a_lying_content_length(seeded: Seeded) -> None:
    """Chunked framing wins (RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; granian
    drops the length): the blob is the chunked bytes, which the client's digest names, and the
    connection is closed after the answer, so nothing that follows can be smuggled in as a
    second request."""
    data = b"hello"
    d = digest_of(data)
    with socket.create_connection(("127.0.0.1", seeded.port)) as s:
        s.sendall(f"POST /v2/held/app/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\n"
                  "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                  "GET /v2/held/app/tags/list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        first = read_response(s)
        with pytest.raises(ConnectionError):
            read_response(s)
    assert first.status == 201 and first.headers["docker-content-digest"] == d
    assert seeded.client.get(f"/v2/held/app/blobs/{d}").content == data


def test_transfer_encoding_and_matching_content_length_store_the_chunked_body(seeded: Seeded) -> None:
    data = b"hello, chunked"
    d = digest_of(data)
    got = _send(seeded.port, f"POST /v2/held/app/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Length: {len(data)}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")
    assert got.startswith(b"201"), got
    assert seeded.client.get(f"/v2/held/app/blobs/{d}").content == data


@pytest.mark.parametrize("extra", [b"X-Big: " + b"a" * 1_000_000 + b"\r\n",
                                   b"".join(b"X-%d: a\r\n" % i for i in range(5000))],
                         ids=["one 1 MB header", "5000 headers"])
def test_oversized_request_head(seeded: Seeded, unchanged: Unchanged, extra: bytes) -> None:
    with unchanged():
        got = _send(seeded.port, b"PUT /v2/held/app/manifests/v1 HTTP/1.1\r\nHost: x\r\n" + extra
                    + b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert got.startswith(b"431"), got[:100]


def test_over_long_request_target(seeded: Seeded, unchanged: Unchanged) -> None:
    with unchanged():
        r = raw(seeded.port, "GET", "/v2/held/app/tags/list?n=1&" + "&".join(f"x{i}=y" for i in range(20_000)))
    expect(r, 414, None)
    with unchanged():
        r = raw(seeded.port, "GET", "/v2/held/app/tags/list?n=1&" + "&".join(f"x{i}=y" for i in range(500)))
    expect(r, 200, None)
