"""Answers given before the request's body was read to its end close the connection, and say so.

granian (hyper) does not wait for the rest of a body the application does not read: it takes what
has already arrived and, unless that was the whole body, closes the connection after the answer.
The answer must then carry `Connection: close`, or an HTTP/1.1 client that keeps connections
alive sends its next request into the closed connection.  Whether granian added the header
itself was a matter of timing (a race with the end of the application's call, which work after
the answer, such as the access log at the default level, info, loses more often).  Answers after
the whole body keep the connection, refusals included.

The first two tests run in-process by default (the headers fastreg sends); the others through a
real `fastreg serve` at the default log level, over raw sockets and a pooled httpx client.
"""
from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.registry_client import (
    OCTET,
    assert_error,
    digest_of,
    make_manifest,
    push_blob,
    q,
    random_bytes,
    relative,
    unique_repo,
    upload_location,
)
from tests.support.server import FastregServer, make_fastreg

pytestmark = pytest.mark.e2e

LIMIT = 1024                    # fastreg.manifest.maxsize of these registries
BIG = 1 << 20                   # a body far past what a server reads ahead
CONFIG = {"fastreg": {"manifest": {"maxsize": LIMIT}}}


def _chunks(data: bytes, size: int = 16384) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


# -- each refusal answered before the body is read: (name, request, status, code) -----------------

Refusal = Callable[[httpx.Client, str], httpx.Response]


def _range_not_at_offset(c: httpx.Client, repo: str) -> httpx.Response:
    return c.patch(upload_location(c, repo), content=random_bytes(BIG),
                   headers={"Content-Range": f"5-{BIG + 4}", "Content-Type": OCTET})


def _forged_state(c: httpx.Client, repo: str) -> httpx.Response:
    loc = upload_location(c, repo)
    return c.patch(q(loc.split("?")[0], _state="forged"), content=random_bytes(BIG),
                   headers={"Content-Type": OCTET})


def _put_without_digest(c: httpx.Client, repo: str) -> httpx.Response:
    return c.put(upload_location(c, repo), content=random_bytes(BIG), headers={"Content-Type": OCTET})


def _manifest_length_over_limit(c: httpx.Client, repo: str) -> httpx.Response:
    return c.put(f"/v2/{repo}/manifests/t", content=b" " * BIG,
                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})


def _manifest_chunked_over_limit(c: httpx.Client, repo: str) -> httpx.Response:
    """No length: refused midway, after the first bytes past the limit."""
    return c.put(f"/v2/{repo}/manifests/t", content=_chunks(b" " * BIG),
                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})


def _unknown_path(c: httpx.Client, repo: str) -> httpx.Response:
    return c.post(f"/v2/{repo}/not-a-route", content=random_bytes(BIG))


REFUSALS: list[tuple[str, Refusal, int, str | None]] = [
    ("patch-range-not-at-offset", _range_not_at_offset, 416, "RANGE_INVALID"),
    ("patch-forged-state", _forged_state, 400, "BLOB_UPLOAD_INVALID"),
    ("put-without-digest", _put_without_digest, 400, "DIGEST_INVALID"),
    ("manifest-length-over-limit", _manifest_length_over_limit, 413, "SIZE_INVALID"),
    ("manifest-chunked-over-limit", _manifest_chunked_over_limit, 413, "SIZE_INVALID"),
    ("unknown-path", _unknown_path, 404, None),
]


@pytest.fixture
def c(app_factory: Any) -> Iterator[httpx.Client]:
    with app_factory(CONFIG).client() as client:
        yield client


@pytest.mark.parametrize("name,refusal,status,code", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusal_before_the_body_is_read_closes_the_connection(c: httpx.Client, name: str, refusal: Refusal,
                                                               status: int, code: str | None) -> None:
    r = refusal(c, unique_repo("close"))
    if code is not None:
        assert_error(r, status, code)
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers.get("connection") == "close", r.headers
    assert len(r.headers.get_list("connection")) == 1, r.headers
    assert c.get("/v2/").status_code == 200         # the next request (through granian: a new connection)


def test_answers_after_the_whole_body_keep_the_connection(c: httpx.Client) -> None:
    repo = unique_repo("keep")
    data = random_bytes(BIG)
    d = digest_of(data)
    loc = upload_location(c, repo)
    r = c.patch(loc, content=data, headers={"Content-Range": f"0-{BIG - 1}", "Content-Type": OCTET})
    assert r.status_code == 202, r.text
    r = c.put(q(r.headers["Location"], digest=d))               # Content-Length: 0
    assert r.status_code == 201, r.text
    m = make_manifest()
    for b in m.blobs:
        push_blob(c, repo, b)
    answers = [
        c.put(f"/v2/{repo}/manifests/t", content=m.body, headers={"Content-Type": m.media_type}),
        c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=_chunks(data)),  # chunked, whole
        c.get(f"/v2/{repo}/blobs/{d}"),
        c.head(f"/v2/{repo}/manifests/t"),
        c.get("/v2/does/not/exist/manifests/t"),                # a refusal without a body
    ]
    assert [a.status_code for a in answers] == [201, 201, 200, 200, 404], [a.text for a in answers]
    # a refusal after the whole body was read: the digest does not match
    loc = upload_location(c, repo)
    wrong = c.put(q(loc, digest=digest_of(b"other")), content=data, headers={"Content-Type": OCTET})
    assert_error(wrong, 400, "DIGEST_INVALID")
    for a in [*answers, wrong]:
        assert "connection" not in a.headers, (a.request.method, a.request.url, a.headers)


# -- through granian, on the wire ------------------------------------------------------------------

@dataclass
class Wire:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


def _read_answer(s: socket.socket) -> Wire:
    s.settimeout(20)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before an answer: {buf!r}")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [(k.strip().lower(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:])]
    n = int(next(v for k, v in headers if k == "content-length"))
    while len(body) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside an answer")
        body += chunk
    assert len(body) == n, "bytes after the answer"
    return Wire(int(lines[0].split(" ")[1]), headers, body)


def _closed_by_server(s: socket.socket) -> bool:
    s.settimeout(20)
    try:
        return s.recv(65536) == b""
    except ConnectionResetError:
        return True


def _request(method: str, target: str, headers: dict[str, str] | None = None) -> bytes:
    h = {"Host": "registry", **(headers or {})}
    return (f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastregServer]:
    """A real server at the default log level (info: the access log is written after each answer)."""
    srv = make_fastreg(tmp_path_factory.mktemp("connclose"), {**CONFIG, "log": {"level": "info"}})
    srv.start()
    yield srv
    srv.stop()


def _sessions(srv: FastregServer, repo: str, n: int) -> list[str]:
    with srv.client() as c:
        return [upload_location(c, repo) for _ in range(n)]


def test_early_refusals_on_the_wire(served: FastregServer) -> None:
    """The client sends the head and the first 64 KiB of a 1 MiB body, then waits (or the first
    chunk of a manifest past the limit, without its end): the answer says `Connection: close`
    (once), the server closes the connection after it, and a new connection is served.  Each
    refusal four times: whether granian said so itself was a matter of timing."""
    repo = unique_repo("wire")
    octet = {"Content-Type": OCTET, "Content-Length": str(BIG)}
    chunked = (_request("PUT", f"/v2/{repo}/manifests/t", {"Transfer-Encoding": "chunked"})
               + b"%x\r\n" % (2 * LIMIT) + b" " * (2 * LIMIT) + b"\r\n")
    for _ in range(4):
        locs = _sessions(served, repo, 3)
        cases = [
            (_request("PATCH", locs[0], {**octet, "Content-Range": f"5-{BIG + 4}"}) + b"x" * 65536, 416),
            (_request("PATCH", q(locs[1].split("?")[0], _state="forged"), octet) + b"x" * 65536, 400),
            (_request("PUT", locs[2], octet) + b"x" * 65536, 400),
            (_request("PUT", f"/v2/{repo}/manifests/t", {"Content-Length": str(BIG)}) + b" " * 65536, 413),
            (_request("POST", f"/v2/{repo}/not-a-route", octet) + b"x" * 65536, 404),
            (chunked, 413),         # refused midway
        ]
        for sent, status in cases:
            with socket.create_connection(("127.0.0.1", served.port)) as s:
                s.sendall(sent)
                a = _read_answer(s)
                assert a.status == status, (sent[:200], a)
                assert a.header("connection") == ["close"], (sent[:200], a.headers)
                assert _closed_by_server(s), sent[:200]
    with socket.create_connection(("127.0.0.1", served.port)) as s:
        s.sendall(_request("GET", "/v2/"))
        assert _read_answer(s).status == 200


def test_pooled_client_after_an_early_refusal(served: FastregServer) -> None:
    """httpx keeps connections alive: after the refusal of a 1 MiB PATCH, or of a manifest sent
    chunked past the limit, its next requests are answered (it opens a new connection instead of
    reusing the closed one)."""
    repo = unique_repo("pool")
    with served.client() as c:
        for _ in range(10):
            r = _forged_state(c, repo)
            assert r.status_code == 400 and r.headers.get("connection") == "close", r.headers
            assert c.get("/v2/").status_code == 200
            r = _manifest_chunked_over_limit(c, repo)
            assert r.status_code == 413 and r.headers.get("connection") == "close", r.headers
            assert c.get(f"/v2/{repo}/tags/list").status_code == 404


def test_whole_push_on_one_connection(served: FastregServer) -> None:
    """A push reads every body to its end: its answers keep the connection, which serves them all,
    a refusal after the whole body (a wrong digest) included."""
    repo = unique_repo("onewire")
    data = random_bytes(BIG)
    d = digest_of(data)
    with served.client() as c:
        loc = upload_location(c, repo)
        wrong_loc = upload_location(c, repo)
    with socket.create_connection(("127.0.0.1", served.port)) as s:
        s.sendall(_request("PATCH", loc, {"Content-Type": OCTET, "Content-Length": str(BIG),
                                          "Content-Range": f"0-{BIG - 1}"}) + data)
        a = _read_answer(s)
        assert a.status == 202 and not a.header("connection"), a
        loc = relative(a.header("location")[0])
        s.sendall(_request("PUT", q(loc, digest=d), {"Content-Length": "0"}))
        a = _read_answer(s)
        assert a.status == 201 and not a.header("connection"), a
        s.sendall(_request("PUT", q(wrong_loc, digest=digest_of(b"other")),
                           {"Content-Type": OCTET, "Content-Length": str(BIG)}) + data)
        a = _read_answer(s)
        assert a.status == 400 and not a.header("connection"), a
        s.sendall(_request("GET", f"/v2/{repo}/blobs/{d}"))
        a = _read_answer(s)
        assert a.status == 200 and a.body == data and not a.header("connection")
