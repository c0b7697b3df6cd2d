"""fastreg's ASGI app in-process: no server, no sockets.

* `call`: one request as a scope plus body frames, the response collected from the messages the
  app sends (the fuzzers' fast path, on the caller's event loop);
* `InProcessRegistry`: a real `App` of a full configuration on a temporary data directory, its
  lifespan run as a server runs it, on an event loop in a thread of its own, and an
  ``httpx.Client`` whose transport hands each request to it: the API tests' fast path, with the
  same client code as against a real server.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import yaml

from fastreg.app import App
from fastreg.config import load_config
from tests.support.server import base_config, deep_merge

FRAME = 65536           # request body frames, as a server hands them over


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str | None:
        try:
            return str(json.loads(self.body)["errors"][0]["code"])
        except (ValueError, KeyError, IndexError, TypeError):
            return None

    def location(self) -> tuple[str, str]:
        """(path, query) of the Location header."""
        u = urlsplit(self.headers["location"])
        return u.path, u.query


def make_app(tmp: Path, storage: str) -> App:
    store = {"inmemory": {}} if storage == "inmemory" else {"filesystem": {"rootdirectory": str(tmp / "data")}}
    cfg = tmp / "config.yml"
    cfg.write_text(json.dumps({"version": "0.1", "log": {"level": "error", "accesslog": {"disabled": True}},
                               "storage": {**store, "delete": {"enabled": True},
                                           "maintenance": {"uploadpurging": {"enabled": False}}},
                               "http": {"secret": "fuzz-secret"}}))
    app = App(load_config(cfg, env={}))
    app.open()
    return app


async def call(app: App, method: str, target: str, headers: dict[str, str] | None = None,
               frames: list[bytes] | None = None, pause: float = 0.0) -> Reply:
    """One request; `pause` seconds pass before each body frame (to interleave requests)."""
    path, _, query = target.partition("?")
    frames = frames if frames else [b""]
    pending = [{"type": "http.request", "body": f, "more_body": i < len(frames) - 1} for i, f in enumerate(frames)]
    hdrs = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    scope: dict[str, Any] = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
                             "headers": [(b"host", b"fuzz.local"), *hdrs], "client": ("127.0.0.1", 1),
                             "server": ("127.0.0.1", 80)}

    async def receive() -> dict[str, Any]:
        if pause:
            await asyncio.sleep(pause)
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    out: dict[str, Any] = {"body": b""}

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            out["status"] = msg["status"]
            out["headers"] = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in msg["headers"]}
        elif msg["type"] == "http.response.body":
            out["body"] += msg.get("body", b"")

    await app(scope, receive, send)
    return Reply(out["status"], out["headers"], out["body"])


def state_of(query: str) -> str:
    return parse_qs(query)["_state"][0]


# -- an App in-process behind an httpx transport --------------------------------------------------

class _Loop:
    """An event loop running in a daemon thread; coroutines are submitted from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="asgi-app", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class ASGITransport(httpx.BaseTransport):
    """Hands each httpx request to the app as an HTTP/1.1 ASGI request (body in 64 KiB frames;
    after the body, `receive` waits until the response is sent, as a connected client does) and
    returns the response it sends, headers exactly as sent (no Content-Length added)."""

    def __init__(self, app: App, loop: _Loop) -> None:
        self.app, self.loop = app, loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        status, headers, body = self.loop.run(self._call(request, request.read()))
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body), request=request)

    async def _call(self, request: httpx.Request, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        raw_path, _, query = request.url.raw_path.partition(b"?")
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request.method,
            "scheme": request.url.scheme, "path": unquote(raw_path.decode("ascii")), "raw_path": raw_path,
            "query_string": query, "root_path": "",
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", port)}
        frames = [body[i:i + FRAME] for i in range(0, len(body), FRAME)] or [b""]
        pending = [{"type": "http.request", "body": f, "more_body": i < len(frames) - 1}
                   for i, f in enumerate(frames)]
        done = asyncio.Event()
        out: dict[str, Any] = {"body": []}

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop(0)
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                out["status"], out["headers"] = msg["status"], list(msg.get("headers", []))
            elif msg["type"] == "http.response.body":
                out["body"].append(msg.get("body", b""))
                if not msg.get("more_body", False):
                    done.set()

        try:
            await self.app(scope, receive, send)
        finally:
            done.set()
        if "status" not in out:
            raise RuntimeError(f"the app sent no response to {request.method} {request.url}")
        return out["status"], out["headers"], b"".join(out["body"])


@dataclass
class InProcessRegistry:
    """fastreg's App on `root`, in-process.  The same surface as tests/support/server.py's
    FastregServer where a test needs no socket: `url`, `host`, `root`, `config_path`, `client()`."""

    root: Path
    config_path: Path
    url: str = "http://127.0.0.1:5000"        # in Host headers and absolute Locations; nothing listens
    app: App | None = None
    _loop: _Loop | None = None
    _lifespan: Any = None
    _to_app: asyncio.Queue[dict[str, Any]] | None = None
    _from_app: asyncio.Queue[dict[str, Any]] | None = None
    clients: list[httpx.Client] = field(default_factory=list)
    _gc_threshold: tuple[int, int, int] | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    def start(self) -> None:
        self._gc_threshold = gc.get_threshold()     # the app's startup tunes the collector (quiet_gc)
        self.app = App(load_config(self.config_path, env={}))
        self._loop = _Loop()
        msg = self._loop.run(self._start_lifespan())
        if msg["type"] != "lifespan.startup.complete":
            self.stop()
            raise RuntimeError(f"fastreg failed to start in-process: {msg}")

    async def _start_lifespan(self) -> dict[str, Any]:
        assert self.app is not None
        self._to_app, self._from_app = asyncio.Queue(), asyncio.Queue()
        self._lifespan = asyncio.ensure_future(
            self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": "lifespan.startup"})
        return await self._from_app.get()

    async def _stop_lifespan(self) -> None:
        assert self._to_app is not None and self._from_app is not None
        if not self._lifespan.done():
            await self._to_app.put({"type": "lifespan.shutdown"})
            await self._lifespan

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        self.clients.clear()
        if self._loop is not None:
            if self._lifespan is not None:
                self._loop.run(self._stop_lifespan())
            self._loop.close()
            self._loop = None
        if self._gc_threshold is not None:             # the test process's collector as it was
            gc.unfreeze()
            gc.set_threshold(*self._gc_threshold)
            self._gc_threshold = None

    def client(self, **kw: Any) -> httpx.Client:
        """An httpx client on the app (closed by `stop` if still open)."""
        assert self.app is not None and self._loop is not None, "not started"
        c = httpx.Client(base_url=self.url, transport=ASGITransport(self.app, self._loop),
                         timeout=kw.pop("timeout", 30.0), **kw)
        self.clients.append(c)
        return c


def make_inprocess(tmp: Path, config: dict[str, Any] | None = None) -> InProcessRegistry:
    """An in-process registry (not started) on tmp/data, with tests/support/server.py's default
    configuration and `config` merged over it, as make_fastreg does for a real server."""
    root = tmp / "data"
    root.mkdir(parents=True, exist_ok=True)
    cfg = deep_merge(base_config(root, 5000), config or {})
    cfg_path = tmp / "config.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    return InProcessRegistry(root=root, config_path=cfg_path)


@contextlib.contextmanager
def inprocess(tmp: Path, config: dict[str, Any] | None = None) -> Iterator[InProcessRegistry]:
    reg = make_inprocess(tmp, config)
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()
