"""Slow-loris clients and many concurrent pushes against a real fastreg.

Slow clients: a request head or body trickled byte by byte is cut by fastreg.http.headertimeout /
bodytimeout (2 s here); meanwhile the server keeps answering everyone else.  Concurrent pushes:
20 clients push the same blob (monolithic and chunked) and 20 push different manifests to one
tag; every push succeeds, the blob is byte-exact, and the tag names exactly one complete manifest.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from .conftest import Seeded
from .support import OCI_MANIFEST, assert_pulls, digest_of, image_manifest, push_blob, snapshot

GENEROUS = 30.0      # the only wall-clock bound: "cut eventually", far above the 2 s timeouts


def _trickle(port: int, data: bytes, stop: threading.Event, pause: float = 0.3) -> tuple[bool, bytes]:
    """Send `data` one byte per `pause` until the server closes or answers; (closed, reply)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(pause)
        deadline = time.monotonic() + GENEROUS
        for i in range(len(data)):
            if stop.is_set() or time.monotonic() > deadline:
                return False, b""
            try:
                s.sendall(data[i:i + 1])
            except OSError:
                return True, b""
            try:
                reply = s.recv(65536)
                return True, reply              # an answer (or b"": closed) before we finished
            except TimeoutError:
                continue
            except OSError:
                return True, b""
        return False, b""


def _serves_others(seeded: Seeded, stop: threading.Event) -> int:
    """Full pulls of the held image by other clients while the slow ones hang on; how many."""
    n = 0
    with httpx.Client(base_url=seeded.srv.url, timeout=10.0) as c:
        while not stop.is_set() and n < 200:
            assert_pulls(c, seeded.image)
            n += 1
    return n


def _slow(seeded: Seeded, payloads: list[bytes]) -> tuple[list[tuple[bool, bytes]], int]:
    stop = threading.Event()
    with ThreadPoolExecutor(len(payloads) + 1) as pool:
        slow = [pool.submit(_trickle, seeded.port, p, stop) for p in payloads]
        time.sleep(0.5)
        others = pool.submit(_serves_others, seeded, stop)
        results = [f.result() for f in slow]
        stop.set()
        return results, others.result()


def test_slow_headers_are_cut_and_others_served(seeded: Seeded) -> None:
    head = (b"GET /v2/held/app/manifests/v1 HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n")
    before = snapshot(seeded.srv.root)
    results, served = _slow(seeded, [head] * 5)
    assert all(closed for closed, _ in results), "a slow request head was never cut"
    assert served > 0
    assert snapshot(seeded.srv.root) == before


def test_slow_bodies_are_cut_and_others_served(seeded: Seeded) -> None:
    """Heads sent at once, bodies trickled: each upload is cut with an error (or a close), no blob
    is stored, and the monolithic session is removed; a chunk keeps only bytes it received."""
    data = os.urandom(400)
    d = digest_of(data)
    target = f"/v2/held/app/blobs/uploads/?digest={d}".encode()
    req = b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n"
    blobs = seeded.srv.root / "docker/registry/v2/blobs"
    before = snapshot(blobs)
    stop = threading.Event()
    with ThreadPoolExecutor(6) as pool:
        socks = []
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", seeded.port))
            s.sendall(req)
            socks.append(s)
        others = pool.submit(_serves_others, seeded, stop)
        replies = [pool.submit(_drip_body, s, data) for s in socks]
        got = [f.result() for f in replies]
        stop.set()
        assert others.result() > 0
    for closed, reply in got:
        assert closed, "a trickled body was never cut"
        assert reply == b"" or reply.startswith(b"HTTP/1.1 400"), reply[:200]
    assert snapshot(blobs) == before
    assert seeded.client.head(f"/v2/held/app/blobs/{d}").status_code == 404


def _drip_body(s: socket.socket, data: bytes) -> tuple[bool, bytes]:
    """Body bytes with pauses longer than the body timeout between them."""
    with s:
        s.settimeout(0.5)
        deadline = time.monotonic() + GENEROUS
        i = 0
        while time.monotonic() < deadline:
            if i < len(data) and i < 3:
                try:
                    s.sendall(data[i:i + 1])
                except OSError:
                    return True, b""
                i += 1
            try:
                return True, s.recv(65536)
            except TimeoutError:
                time.sleep(1.0 if i < 3 else 0.0)
            except OSError:
                return True, b""
        return False, b""


def test_twenty_concurrent_pushes_of_one_blob(seeded: Seeded) -> None:
    data = os.urandom(1_500_000)
    d = digest_of(data)

    def push(i: int) -> int:
        with httpx.Client(base_url=seeded.srv.url, timeout=60.0) as c:
            if i % 2 == 0:
                return c.post("/v2/held/app/blobs/uploads/", params={"digest": d}, content=data).status_code
            r = c.post("/v2/held/app/blobs/uploads/")
            loc = r.headers["location"]
            step = 100_000 + 37_000 * i
            for start in range(0, len(data), step):
                chunk = data[start:start + step]
                r = c.patch(loc, content=chunk, headers={"content-range": f"{start}-{start + len(chunk) - 1}"})
                assert r.status_code == 202, r.text
                loc = r.headers["location"]
            sep = "&" if "?" in loc else "?"
            return c.put(f"{loc}{sep}digest={d}").status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(push, range(20)))
    assert statuses == [201] * 20
    r = seeded.client.get(f"/v2/held/app/blobs/{d}")
    assert r.status_code == 200 and r.content == data
    stored = seeded.srv.root / f"docker/registry/v2/blobs/sha256/{d[7:9]}/{d[7:]}/data"
    assert stored.read_bytes() == data
    uploads = seeded.srv.root / "docker/registry/v2/repositories/held/app/_uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == [], "sessions left behind"
    assert_pulls(seeded.client, seeded.image)


def test_twenty_concurrent_pushes_to_one_tag(seeded: Seeded) -> None:
    """Last writer wins, and whatever wins, the tag names one complete, pushed manifest."""
    c = seeded.client
    cfg = push_blob(c, "race/tag", b'{"os":"linux"}')
    assert cfg
    layers = [os.urandom(1000 + i) for i in range(20)]
    for b in layers:
        push_blob(c, "race/tag", b)
    manifests = [image_manifest(b'{"os":"linux"}', [b]) for b in layers]
    barrier = threading.Barrier(20)
    stop = threading.Event()

    def reader() -> None:
        # Per reader: its requests are sequential, so once it saw the tag it must keep seeing
        # it (another reader's 404 may have been answered before this reader's first 200).
        seen: list[str] = []
        with httpx.Client(base_url=seeded.srv.url, timeout=30.0) as rc:
            while not stop.is_set():
                r = rc.get("/v2/race/tag/manifests/latest", headers={"accept": OCI_MANIFEST})
                if r.status_code == 200:
                    assert r.content in manifests, "the tag served a manifest nobody pushed"
                    assert r.headers["docker-content-digest"] == digest_of(r.content)
                    seen.append(r.headers["docker-content-digest"])
                else:
                    assert r.status_code == 404 and not seen, r.text   # before its first 200 only

    def push(m: bytes) -> str:
        with httpx.Client(base_url=seeded.srv.url, timeout=60.0) as pc:
            barrier.wait(timeout=30)
            r = pc.put("/v2/race/tag/manifests/latest", content=m, headers={"content-type": OCI_MANIFEST})
            assert r.status_code == 201, r.text
            return str(r.headers["docker-content-digest"])

    with ThreadPoolExecutor(22) as pool:
        readers = [pool.submit(reader) for _ in range(2)]
        digests = list(pool.map(push, manifests))
        stop.set()
        for f in readers:
            f.result()
    assert sorted(digests) == sorted(digest_of(m) for m in manifests)
    final = c.get("/v2/race/tag/manifests/latest", headers={"accept": OCI_MANIFEST})
    assert final.status_code == 200 and final.content in manifests
    link = (seeded.srv.root / "docker/registry/v2/repositories/race/tag/_manifests/tags/latest/current/link")
    assert link.read_text() == digest_of(final.content)
    for m in manifests:                    # every pushed manifest stays reachable by digest
        r = c.get(f"/v2/race/tag/manifests/{digest_of(m)}", headers={"accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.content == m
    assert json.loads(final.content)["layers"][0]["digest"] in {digest_of(b) for b in layers}
    # After the storm, the last writer wins: each push in turn is what the tag serves.
    for m in (manifests[3], manifests[7]):
        put = c.put("/v2/race/tag/manifests/latest", content=m, headers={"content-type": OCI_MANIFEST})
        assert put.status_code == 201
        assert c.get("/v2/race/tag/manifests/latest", headers={"accept": OCI_MANIFEST}).content == m
