"""A hostile upstream registry for the pull-through cache's tests: a small real HTTP/1.1 server on
127.0.0.1, in a thread, that answers each path as a test scripts it — wrong bytes under a digest,
redirects to an internal listener, HTML or CR/LF media types, bodies that never end, a token realm
on another host.  Written on raw sockets so that it can send what no well-behaved server library
would (CR/LF inside a header value, a body longer than its Content-Length).  Every request it
gets is recorded, so a test can show what reached it."""
from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


Handler = Callable[[Seen, asyncio.StreamWriter], Awaitable[None]]


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_of(config: bytes, layers: list[bytes], media_type: str = OCI_MANIFEST) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": media_type,
           "config": {"mediaType": OCI_CONFIG, "digest": digest(config), "size": len(config)},
           "layers": [{"mediaType": OCI_LAYER, "digest": digest(x), "size": len(x)} for x in layers]}
    return json.dumps(doc).encode()


def head_bytes(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def answer(status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
           length: int | None = None) -> Handler:
    """A fixed answer; `length` overrides the Content-Length sent (a lie, when it differs: then
    the connection is closed after the body, as a dropped connection would)."""
    async def handle(req: Seen, w: asyncio.StreamWriter) -> None:
        hs = [("Content-Length", str(len(body) if length is None else length)), *(headers or [])]
        w.write(head_bytes(status, hs) + (b"" if req.method == "HEAD" else body))
        await w.drain()
        if length is not None and length != len(body) and req.method != "HEAD":
            raise ConnectionResetError("short body sent")
    return handle


def endless(headers: list[tuple[str, str]], chunk: bytes = b"[" * 65536, length: int | None = None) -> Handler:
    """A body that never ends (chunked, or past a Content-Length of `length`) until the reader goes."""
    async def handle(req: Seen, w: asyncio.StreamWriter) -> None:
        hs = [*headers, ("Transfer-Encoding", "chunked") if length is None else ("Content-Length", str(length))]
        w.write(head_bytes(200, hs))
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if length is None else chunk
        for _ in range(1 << 16):                 # 4 GiB at most: bounded, but far past any limit
            w.write(frame)
            await w.drain()
    return handle


def trickle(headers: list[tuple[str, str]], body: bytes, pause: float) -> Handler:
    """`body` one byte at a time, `pause` seconds apart (each read is quick; the whole is slow)."""
    async def handle(req: Seen, w: asyncio.StreamWriter) -> None:
        w.write(head_bytes(200, [*headers, ("Content-Length", str(len(body)))]))
        for i in range(len(body)):
            w.write(body[i:i + 1])
            await w.drain()
            await asyncio.sleep(pause)
    return handle


@dataclass
class HostileUpstream:
    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler
        if method == "GET":
            self.routes.setdefault(("HEAD", path), handler)

    def hits(self, path: str) -> int:
        return sum(1 for s in self.seen if s.path.split("?")[0] == path)

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await r.readline()
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await r.readline()) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                req = Seen(method, target, headers)
                self.seen.append(req)
                path = target.split("?")[0]
                handler = self.routes.get((method, path)) or answer(404, b'{"errors":[{"code":"NOT_FOUND"}]}')
                await handler(req, w)
        except (ConnectionError, ValueError):
            return
        finally:
            w.close()

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(asyncio.start_server(self._serve, self.host, self.port))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
