"""Two requests writing to one upload session at the same time (a client retrying a PATCH
while the first is still streaming, or two clients sharing a Location URL).

Whatever the interleaving, the server must never commit a blob whose bytes differ from its
digest: one of the writers is refused (416, the session's current Range) or the final PUT fails
its digest check; a blob that is accepted is byte-exact.
"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from .conftest import Seeded
from .support import assert_blobs_intact, digest_of, read_response, request_bytes

L = 1 << 20            # large enough that the server writes it in several frames, off the loop


def _patch_head(path: str, token: str, start: int, n: int) -> bytes:
    return request_bytes("PATCH", f"{path}?_state={token}", "x",
                         {"Content-Range": f"{start}-{start + n - 1}", "Connection": "close"}, b"", content_length=n)


def _send(s: socket.socket, data: bytes) -> None:
    try:
        s.sendall(data)
    except OSError:
        pass                          # the server answered early and closed


@pytest.mark.parametrize("offset", [0, 4096])
def test_two_patches_racing_on_one_session(seeded: Seeded, offset: int) -> None:
    _race(seeded.client, seeded.port, seeded.srv.root, offset)


def test_racing_patches_across_two_workers(fastreg_factory: Any) -> None:
    """Two granian workers: the racing requests may land in different processes, where only the
    storage lock (flock) stands between them."""
    srv = fastreg_factory(workers=2)
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        for i in range(3):
            _race(c, srv.port, srv.root, 1000 * i, repo="two/workers")


def _race(c: httpx.Client, port: int, root: Path, offset: int, repo: str = "held/app") -> None:
    r = c.post(f"/v2/{repo}/blobs/uploads/")
    u = urlsplit(r.headers["location"])
    path, token = u.path, parse_qs(u.query)["_state"][0]
    prefix = os.urandom(offset)
    if offset:
        r = c.patch(path, params={"_state": token}, content=prefix)
        assert r.status_code == 202
        token = parse_qs(urlsplit(r.headers["location"]).query)["_state"][0]
    a, b = os.urandom(L), os.urandom(L)
    with socket.create_connection(("127.0.0.1", port)) as sa, \
            socket.create_connection(("127.0.0.1", port)) as sb:
        # Both heads first: each request has checked the session and opened it before any byte
        # arrives; then A's first half, all of B, A's second half.
        sa.sendall(_patch_head(path, token, offset, L))
        sb.sendall(_patch_head(path, token, offset, L))
        time.sleep(0.5)
        _send(sa, a[:L // 2])
        time.sleep(0.5)
        _send(sb, b)                  # may be refused (and closed) before it is all sent
        rb = read_response(sb)
        _send(sa, a[L // 2:])
        ra = read_response(sa)
    # One of them holds the session; the other is refused at once (416, "another request ...").
    assert sorted((ra.status, rb.status)) == [202, 416], (ra.status, rb.status, ra.body, rb.body)
    loser = ra if ra.status == 416 else rb
    assert loser.code == "RANGE_INVALID" and b"another request" in loser.body
    # Each client now finishes with the digest of what it sent.
    st = c.get(path)
    if st.status_code == 204:
        tok = parse_qs(urlsplit(st.headers["location"]).query)["_state"][0]
        for mine in (a, b):
            whole = prefix + mine
            put = c.put(path, params={"_state": tok, "digest": digest_of(whole)})
            if put.status_code == 201:
                got = c.get(f"/v2/{repo}/blobs/{digest_of(whole)}").content
                assert got == whole, "a blob was committed with bytes other than its digest's"
                break
            assert put.status_code in (400, 404), put.text
    assert_blobs_intact(root)


def test_session_lock_holds_across_processes(tmp_path: Path) -> None:
    """The filesystem driver's `exclusive` is an flock of the session directory: held by another
    process (another granian worker), the caller is refused with Busy; released, it gets it;
    it follows the directory through a rename (a commit moving it into blobs/); a path with
    nothing there is PathNotFound and nothing is created."""
    from fastreg.storage.driver.backends.filesystem import FilesystemDriver
    from fastreg.storage.driver.base import Busy, PathNotFound

    d = FilesystemDriver(str(tmp_path))
    (tmp_path / "s").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
        "print('held', flush=True); sys.stdin.readline(); os.rename(sys.argv[1], sys.argv[1] + '-moved'); "
        "print('moved', flush=True); sys.stdin.read()"), str(tmp_path / "s")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    async def attempt(path: str) -> bool:
        try:
            async with d.exclusive(path):
                return True
        except Busy:
            return False

    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == b"held\n"
        assert asyncio.run(attempt("/s")) is False
        holder.stdin.write(b"go\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == b"moved\n"
        assert asyncio.run(attempt("/s-moved")) is False          # the lock moved with the directory
        with pytest.raises(PathNotFound):
            asyncio.run(attempt("/s"))
        assert not (tmp_path / "s").exists()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    assert asyncio.run(attempt("/s-moved")) is True
    asyncio.run(d.close())


@pytest.mark.parametrize("storage", ["inmemory", "filesystem"])
def test_interleaved_patches_in_process(tmp_path: Path, storage: str) -> None:
    """The same race inside one process (ASGI called directly): frames of two PATCHes to one
    session interleave; one is refused, and no blob other than its digest's bytes is committed."""
    from tests.support.asgi import call, make_app, state_of

    async def scenario() -> None:
        app = make_app(tmp_path, storage)
        try:
            r = await call(app, "POST", "/v2/race/mem/blobs/uploads/")
            path, q = r.location()
            token = state_of(q)
            a, b = os.urandom(300_000), os.urandom(300_000)
            frames = [a[i:i + 50_000] for i in range(0, len(a), 50_000)]
            frames_b = [b[i:i + 50_000] for i in range(0, len(b), 50_000)]
            ra, rb = await asyncio.gather(
                call(app, "PATCH", f"{path}?_state={token}", {"content-length": str(len(a))}, frames, pause=0.005),
                call(app, "PATCH", f"{path}?_state={token}", {"content-length": str(len(b))}, frames_b, pause=0.005))
            assert sorted((ra.status, rb.status)) == [202, 416], (ra.body, rb.body)
            won = a if ra.status == 202 else b
            st = await call(app, "GET", f"{path}?_state={token}")
            _, q = st.location()
            for mine in (a, b):
                put = await call(app, "PUT", f"{path}?_state={state_of(q)}&digest={digest_of(mine)}")
                if put.status == 201:
                    got = await call(app, "GET", f"/v2/race/mem/blobs/{digest_of(mine)}")
                    assert got.body == mine == won
                    break
                assert put.status == 400
            else:
                raise AssertionError("the winner's bytes could not be committed")
        finally:
            await app.close()

    asyncio.run(scenario())
