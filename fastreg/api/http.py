"""Thin request/response helpers over raw ASGI (no framework)."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from ..errors import BodyInterrupted
from ..hooks import request_state
from ..storage.driver.base import Chunk
from .errors import RegistryError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Request:
    __slots__ = ("_consumed", "_query", "body_timeout", "method", "params", "path", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive, params: dict[str, str]) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.params = params
        self._query: dict[str, str] | None = None
        self._consumed = False
        self.body_timeout: float | None = None     # fastreg.http.bodytimeout: longest wait for body bytes

    def header(self, name: bytes) -> str | None:
        """The last value of a (lower-case) header, or None."""
        value = None
        for k, v in self.scope["headers"]:
            if k == name:
                value = v
        return value.decode("latin-1") if value is not None else None

    def header_all(self, name: bytes) -> list[str]:
        return [v.decode("latin-1") for k, v in self.scope["headers"] if k == name]

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            qs = self.scope.get("query_string", b"")
            self._query = dict(parse_qsl(qs.decode("latin-1"), keep_blank_values=True)) if qs else {}
        return self._query

    def content_length(self) -> int | None:
        raw = self.header(b"content-length")
        if raw is None:
            return None
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:     # "²".isdigit() is True
            raise RegistryError("SIZE_INVALID", "Content-Length is not a number")
        return int(raw)

    async def body(self) -> AsyncIterator[bytes]:
        """The request body, chunk by chunk as the server hands it over (never joined).

        Raises BodyInterrupted if the client goes away, sends fewer bytes than it announced, or
        sends nothing for `body_timeout` seconds (a slow-loris client must not hold a request open
        forever; the time the caller spends on each chunk does not count)."""
        self._consumed = True
        expected = self.content_length()
        seen = 0
        ended = False
        receive = self.receive
        timeout = self.body_timeout
        try:
            while True:
                if timeout is None:
                    msg = await receive()
                else:
                    try:
                        async with asyncio.timeout(timeout):
                            msg = await receive()
                    except TimeoutError:
                        raise BodyInterrupted(f"no request body bytes for {timeout:g}s") from None
                if msg["type"] != "http.request":
                    raise BodyInterrupted("client disconnected")
                chunk = msg.get("body", b"")
                if chunk:
                    seen += len(chunk)
                    if expected is not None and seen > expected:
                        raise BodyInterrupted("body longer than Content-Length")
                    yield chunk
                if not msg.get("more_body", False):
                    ended = True
                    break
        finally:
            st = request_state(self.scope)
            st.bytes_in = seen              # for metrics (App.http)
            st.body_read = ended            # the connection stays usable (unread_body)
        if expected is not None and seen != expected:
            raise BodyInterrupted(f"body ended after {seen} of {expected} bytes")

    async def read(self, limit: int) -> bytes:
        """A small body whole (manifests); SIZE_INVALID/413 past `limit` bytes."""
        cl = self.content_length()
        if cl is not None and cl > limit:
            raise RegistryError("SIZE_INVALID", f"body of {cl} bytes exceeds the limit of {limit}",
                                status=413, message="payload too large")
        parts: list[bytes] = []
        total = 0
        async for chunk in self.body():
            total += len(chunk)
            if total > limit:
                raise RegistryError("SIZE_INVALID", f"body exceeds the limit of {limit} bytes",
                                    status=413, message="payload too large")
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    @property
    def consumed(self) -> bool:
        return self._consumed


CONNECTION_CLOSE = (b"connection", b"close")


def unread_body(scope: Scope) -> bool:
    """Whether an HTTP/1 request's body may have bytes the app did not read: a Content-Length
    other than 0 or a chunked body, not read to its end (`Request.body`).  Its answer must carry
    `Connection: close`: granian (hyper) does not wait for the rest of a body nobody reads; it
    takes what has already arrived and closes the connection after the answer, and a client that
    keeps connections alive would send its next request into the closed connection.  (HTTP/2
    ends the stream alone, with no such header.)  Requests without a body cost a look at their
    headers; a body read to its end, one attribute."""
    st = scope.get("fastreg")
    if st is not None and st.body_read:
        return False
    if scope.get("http_version") == "2":
        return False
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for k, v in headers:
        if k == b"content-length":
            return v != b"0"
        if k == b"transfer-encoding":
            return True
    return False


class ResponseAborted(Exception):
    """Raised by a response's stream when its body must not be completed (bytes that failed
    verification, a source that failed midway): the server aborts the connection (HTTP/2: resets
    the stream) before the final byte, so that no client can take the body as complete."""


class Response:
    """What a handler answers: bytes, a local file (pathsend), or a stream of chunks."""

    __slots__ = ("body", "file", "headers", "status", "stream")

    def __init__(self, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None,
                 body: bytes = b"", file: str | None = None,
                 stream: AsyncIterator[Chunk] | None = None) -> None:
        self.status = status
        self.headers = headers if headers is not None else []
        self.body = body
        self.file = file
        self.stream = stream


def h(name: str, value: str | int) -> tuple[bytes, bytes]:
    return name.encode("latin-1"), str(value).encode("latin-1")
