"""A lean HTTP/1.1 keep-alive client on raw non-blocking sockets (asyncio/uvloop `sock_*` calls).

Used where wrk/ab cannot go: uploads (POST, PATCH with Content-Range, PUT), mounts, the CI push
sequence, and large downloads counted without copying. One `Conn` is one keep-alive connection;
callers run N of them concurrently. No TLS, no redirects, no pipelining: this measures servers, so
it does as little as a client can.
"""
from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

Body = bytes | bytearray | memoryview
SCRATCH = 1 << 20


class HTTPError(Exception):
    pass


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    length: int          # body bytes received (== len(body) unless the body was only counted)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Conn:
    def __init__(self, base_url: str) -> None:
        u = urlsplit(base_url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 80
        self.hostport = f"{self.host}:{self.port}"
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.scratch = bytearray(SCRATCH)
        self.loop = asyncio.get_running_loop()

    async def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await self.loop.sock_connect(s, (self.host, self.port))
        self.sock, self.buf = s, bytearray()
        return s

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def _fill(self) -> None:
        assert self.sock is not None
        n = await self.loop.sock_recv_into(self.sock, self.scratch)
        if n == 0:
            raise HTTPError("connection closed by server")
        self.buf += memoryview(self.scratch)[:n]

    async def _read_until(self, sep: bytes) -> bytes:
        while (i := self.buf.find(sep)) < 0:
            await self._fill()
        out = bytes(self.buf[:i])
        del self.buf[:i + len(sep)]
        return out

    async def _read_body(self, n: int, keep: bool) -> tuple[bytes, int]:
        """Read exactly n body bytes; keep them, or only count them (no copy beyond the socket)."""
        assert self.sock is not None
        take = min(n, len(self.buf))
        kept = bytearray(self.buf[:take]) if keep else None
        del self.buf[:take]
        got = take
        mv = memoryview(self.scratch)
        while got < n:
            r = await self.loop.sock_recv_into(self.sock, mv[:min(SCRATCH, n - got)])
            if r == 0:
                raise HTTPError(f"connection closed after {got} of {n} body bytes")
            if kept is not None:
                kept += mv[:r]
            got += r
        return (bytes(kept) if kept is not None else b""), got

    async def request(self, method: str, target: str, headers: dict[str, str] | None = None,
                      body: Body | None = None, keep_body: bool = True,
                      body_mode: Literal["length", "none"] = "length") -> Response:
        """Send one request and read its response. `target` is a path+query or an absolute URL."""
        if target.startswith("http"):
            u = urlsplit(target)
            target = u.path + ("?" + u.query if u.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.hostport}"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body is not None or method in ("PUT", "POST", "PATCH"):
            lines.append(f"Content-Length: {len(body) if body is not None else 0}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        for attempt in (0, 1):
            fresh = self.sock is None
            sock = self.sock or await self._connect()
            try:
                if body is not None and len(body) <= 65536:
                    await self.loop.sock_sendall(sock, head + bytes(body))
                else:
                    await self.loop.sock_sendall(sock, head)
                    if body is not None:
                        await self.loop.sock_sendall(sock, body)
                return await self._response(method, keep_body)
            except (HTTPError, ConnectionError) as exc:
                self.close()
                # A keep-alive connection the server closed while idle: retry once on a new one.
                if fresh or attempt or not isinstance(exc, (HTTPError, ConnectionResetError, BrokenPipeError)):
                    raise
        raise AssertionError("unreachable")

    async def _response(self, method: str, keep_body: bool) -> Response:
        head = await self._read_until(b"\r\n\r\n")
        status_line, *rest = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in rest:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        body, length = b"", 0
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            pass
        elif "content-length" in headers:
            body, length = await self._read_body(int(headers["content-length"]), keep_body)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = bytearray()
            while True:
                size = int((await self._read_until(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while await self._read_until(b"\r\n"):   # trailers until the empty line
                        pass
                    break
                data, got = await self._read_body(size, keep_body)
                chunks += data
                length += got
                await self._read_until(b"\r\n")
            body = bytes(chunks)
        else:   # body until close
            while True:
                try:
                    await self._fill()
                except HTTPError:
                    break
            body, length = bytes(self.buf), len(self.buf)
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, body, length)


def expect(resp: Response, *statuses: int, what: str = "") -> Response:
    if resp.status not in statuses:
        raise HTTPError(f"{what}: expected {statuses}, got {resp.status}: {resp.body[:300]!r}")
    return resp
