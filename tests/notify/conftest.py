"""A real webhook receiver: an HTTP server on 127.0.0.1 that records every POST.

``Receiver`` can be stopped and started again on the same port (an endpoint outage); it answers
``status`` (200 by default) and keeps each request's headers and JSON body.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

try:
    from tests.support.server import free_port
except ImportError:  # pragma: no cover
    from conftest import free_port  # type: ignore[no-redef]


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    status: int = 200
    fail_first: int = 0          # answer 500 to this many POSTs first (they are recorded all the same)
    posts: list[Post] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                with receiver._lock:
                    receiver.posts.append(Post(self.path, {k.lower(): v for k, v in self.headers.items()},
                                               json.loads(raw)))
                    status = 500 if len(receiver.posts) <= receiver.fail_first else receiver.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e for p in self.posts for e in p.body["events"]]

    def wait_for(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0,
                 log: Callable[[], str] | None = None) -> list[dict[str, Any]]:
        """Poll until ``pred(events)``; fail with what arrived (and the server log) otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evs = self.events
            if pred(evs):
                return evs
            time.sleep(0.05)
        evs = self.events
        pytest.fail(f"events did not arrive within {timeout}s; got {len(evs)}:\n"
                    + "\n".join(f"{e['action']} {e['target']}" for e in evs)
                    + (f"\n--- server log\n{log()[-4000:]}" if log else ""))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()
