"""What any ASGI registry on granian could reach on this machine, this round: two ceilings.

**GET/HEAD ceiling** (`get_app`): a bare ASGI app under granian with fastreg's settings (one
worker per core, uvloop, the same HTTP mode and backlog) answers every GET with a fixed manifest
and every HEAD with a fixed blob's headers: the very status, headers and body fastreg answered
for the bench's pull-manifest and head-blob requests, captured from it before round 1. wrk (GET)
and ab (HEAD) load it exactly as those scenarios load the registries; fastreg's figures are
reported as a fraction of it.

**Receive ceilings** (`app`):

A bare ASGI app, served by granian exactly as fastreg is (uvloop, one worker), takes a POST of
the large blob and either drops the body (``/drop``: granian's receive alone) or hashes it with
SHA-256 in 1 MiB batches on a thread, as fastreg's writer does (``/sha256``: the least a registry
must do with a pushed blob); nothing is stored. Its MB/s bound push-large and push-chunked from
above: a registry that verifies digests cannot receive faster than ``/sha256``.

    python -m bench.ceiling     # prints both receive ceilings for a 256 MiB body
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import tools
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


# --- GET/HEAD ceiling -------------------------------------------------------------------------

SPEC_ENV = "BENCH_CEILING_SPEC"
# Hop-by-hop and per-response headers granian writes itself.
_DROP = {"date", "server", "connection", "keep-alive", "transfer-encoding"}
_answers: dict[str, tuple[list[tuple[bytes, bytes]], bytes]] = {}


def _load_spec() -> None:
    spec = json.loads(Path(os.environ[SPEC_ENV]).read_text())
    for method, a in spec.items():
        headers = [(k.lower().encode(), v.encode()) for k, v in a["headers"] if k.lower() not in _DROP]
        _answers[method] = (headers, base64.b64decode(a["body"]))


async def get_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """GET: the captured manifest answer; HEAD: the captured blob HEAD answer (no body)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if not _answers:
        _load_spec()
    headers, body = _answers["HEAD" if scope["method"] == "HEAD" else "GET"]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def capture(url: str, get_path: str, get_headers: dict[str, str], head_path: str) -> dict[str, Any]:
    """The answers a registry gives to the pull-manifest GET and the head-blob HEAD."""
    import urllib.request
    out: dict[str, Any] = {}
    for method, path, hdrs in (("GET", get_path, get_headers), ("HEAD", head_path, {})):
        with urllib.request.urlopen(urllib.request.Request(url + path, method=method, headers=hdrs),
                                    timeout=30) as r:
            out[method] = {"headers": list(r.getheaders()), "body": base64.b64encode(r.read()).decode()}
    return out


def _serve_get(port: int) -> None:
    """granian with fastreg's settings (fastreg/server.py) around get_app."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.log import LogLevels
    Granian("bench.ceiling:get_app", address="127.0.0.1", port=port, interface=Interfaces.ASGI,
            workers=os.cpu_count() or 1, loop=Loops.uvloop, http=HTTPModes.auto, websockets=False, backlog=2048,
            log_level=LogLevels.warning).serve()


class GetCeiling:
    """The GET/HEAD ceiling app, running from `start` to `stop`, measured once per round."""

    def __init__(self, spec: dict[str, Any], workdir: Path) -> None:
        self.spec_path = workdir / "ceiling-spec.json"
        self.spec_path.write_text(json.dumps(spec))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, SPEC_ENV: str(self.spec_path)}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.ceiling", "serve-get", str(self.port)],
                                     cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        _wait_port(self.proc, self.port)
        time.sleep(0.5)     # granian forks its workers

    def pids(self) -> list[int]:
        from .servers import process_tree
        return process_tree(self.proc.pid) if self.proc else []

    def measure(self, get_path: str, get_headers: list[str], head_path: str, connections: int,
                seconds: float) -> dict[str, float]:
        """req/s and p99 of wrk's GET and ab's HEAD, as pull-manifest and head-blob run them; the
        answers are checked against the captured ones first."""
        import urllib.request
        for method, path in (("GET", get_path), ("HEAD", head_path)):
            with urllib.request.urlopen(urllib.request.Request(self.url + path, method=method), timeout=10) as r:
                want = base64.b64decode(self.spec["GET"]["body"]) if method == "GET" else b""
                if r.read() != want:
                    raise RuntimeError(f"GET ceiling app: unexpected {method} answer")
        g = tools.wrk(self.url + get_path, "get.lua", get_headers, connections, seconds)
        h = tools.ab_head(self.url + head_path, connections, seconds)
        if g.failed or h.failed:
            raise RuntimeError(f"GET ceiling app: {g.failed} GET and {h.failed} HEAD failures")
        return {"get_rps": g.rate, "get_p99_ms": g.latency_ms.get("p99", 0.0),
                "head_rps": h.rate, "head_p99_ms": h.latency_ms.get("p99", 0.0)}

    @property
    def spec(self) -> dict[str, Any]:
        return json.loads(self.spec_path.read_text())

    def stop(self) -> None:
        if self.proc is None:
            return
        import signal
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        self.proc = None


def _wait_port(proc: subprocess.Popen[bytes], port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the ceiling app did not start") from None
            time.sleep(0.1)


if __name__ == "__main__" and sys.argv[1:2] == ["serve-get"]:
    _serve_get(int(sys.argv[2]))
elif __name__ == "__main__":
    got = receive_ceilings(os.urandom(256 << 20))
    print(f"granian ASGI receive: {got['recv_MBps']:.0f} MB/s; receive + SHA-256: {got['recv_sha256_MBps']:.0f} MB/s")
