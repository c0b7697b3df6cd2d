"""Call fastreg's ASGI app in-process: a request is a scope plus body frames, the response is
collected from the messages it sends.  No server, no sockets: the fuzzers' fast path."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastreg.app import App
from fastreg.config import load_config


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
