"""What any ASGI registry on granian could reach for a large push on this machine, this round.

A bare ASGI app, served by granian exactly as fastreg is (uvloop, one worker), takes a POST of
the large blob and either drops the body (``/drop``: granian's receive alone) or hashes it with
SHA-256 in 1 MiB batches on a thread, as fastreg's writer does (``/sha256``: the least a registry
must do with a pushed blob); nothing is stored. Its MB/s bound push-large and push-chunked from
above: a registry that verifies digests cannot receive faster than ``/sha256``.

    python -m bench.ceiling     # prints both ceilings for a 256 MiB body
"""
from __future__ import annotations

import asyncio
import hashlib
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .client import Body
from .servers import REPO_ROOT, free_port

_pool = ThreadPoolExecutor(2)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI app under granian (bench.ceiling:app)."""
    if scope["type"] != "http":
        return
    h = hashlib.sha256() if scope["path"] == "/sha256" else None
    loop = asyncio.get_running_loop()
    batch: list[bytes] = []
    batched = n = 0
    pending: asyncio.Future[None] | None = None

    def digest(chunks: list[bytes]) -> None:
        for c in chunks:
            h.update(c)     # type: ignore[union-attr]

    while True:
        msg = await receive()
        body = msg.get("body", b"")
        n += len(body)
        if h is not None and body:
            batch.append(body)
            batched += len(body)
            if batched >= 1 << 20:
                if pending is not None:
                    await pending
                pending = loop.run_in_executor(_pool, digest, batch)
                batch, batched = [], 0
        if not msg.get("more_body"):
            break
    if pending is not None:
        await pending
    if h is not None:
        digest(batch)
    out = (h.hexdigest() if h is not None else str(n)).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


def _post(port: int, path: str, data: Body) -> tuple[float, bytes]:
    """Seconds to POST `data` and read the answer (raw socket, 1 MiB sends, no copies)."""
    view = memoryview(data)
    with socket.create_connection(("127.0.0.1", port)) as s:
        t = time.perf_counter()
        s.sendall(b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n" % (path.encode(), len(data)))
        for off in range(0, len(data), 1 << 20):
            s.sendall(view[off:off + (1 << 20)])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.split(b"\r\n\r\n", 1)[1]:
            got = s.recv(65536)
            if not got:
                break
            answer += got
        return time.perf_counter() - t, answer


def receive_ceilings(data: Body, tries: int = 2) -> dict[str, float]:
    """MB/s (best of `tries`) of granian receiving `data`: dropped, and SHA-256'd on a thread."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop",
                             "--workers", "1", "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning", "bench.ceiling:app"],
                            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the ceiling app did not start") from None
                time.sleep(0.1)
        expect = {"/drop": str(len(data)).encode(), "/sha256": hashlib.sha256(data).hexdigest().encode()}
        out: dict[str, float] = {}
        for path, key in (("/drop", "recv_MBps"), ("/sha256", "recv_sha256_MBps")):
            best = float("inf")
            for _ in range(tries):
                dt, answer = _post(port, path, data)
                if not answer.endswith(expect[path]):
                    raise RuntimeError(f"ceiling app {path}: unexpected answer {answer[-80:]!r}")
                best = min(best, dt)
            out[key] = len(data) / best / 1e6
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    import os
    got = receive_ceilings(os.urandom(256 << 20))
    print(f"granian ASGI receive: {got['recv_MBps']:.0f} MB/s; receive + SHA-256: {got['recv_sha256_MBps']:.0f} MB/s")
