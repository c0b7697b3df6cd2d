"""Endpoints that answer garbage: a status line or a header line of 200 KB, a head that never
ends, no HTTP at all.  Each is a failed delivery, retried after the endpoint's backoff (here:
threshold 1, backoff 2 s, so tries at about 0 s, 2 s, 6 s), the event stays in the outbox, and the
deliverer itself never fails (before, a line over asyncio's 64 KiB limit raised out of the
deliverer, which was restarted and tried again every second)."""
from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastreg.notify.outbox import Outbox
from fastreg.notify.webhooks import Dispatcher, EndpointSpec

WINDOW = 5.0
ANSWERS = {
    "long-status-line": b"HTTP/1.1 200 " + b"O" * 200_000 + b"\r\n\r\n",
    "long-header-line": b"HTTP/1.1 200 OK\r\nX-Fill: " + b"f" * 200_000 + b"\r\n\r\n",
    "endless-head": b"HTTP/1.1 200 OK\r\n" + b"X-Fill: 0123456789abcdef\r\n" * 8000,
    "not-http": b"\x00\x01garbage" * 100 + b"\n",
}


class GarbageServer:
    """A TCP server on loopback that reads the request head, writes `answer` and closes; counts connections."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(2.0)
                try:
                    got = b""
                    while b"\r\n\r\n" not in got and len(got) < 1 << 20:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        got += chunk
                    conn.sendall(self.answer)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def servers() -> Iterator[dict[str, GarbageServer]]:
    started = {name: GarbageServer(answer) for name, answer in ANSWERS.items()}
    yield started
    for s in started.values():
        s.close()


def test_garbage_answers_are_failed_deliveries_with_backoff(tmp_path: Path, servers: dict[str, GarbageServer],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    specs = [EndpointSpec(name=name, url=f"http://127.0.0.1:{s.port}/hook", timeout=3.0, threshold=1,
                          backoff=2.0, allow_private=True) for name, s in servers.items()]

    async def scenario() -> tuple[dict[str, int], dict[str, int]]:
        outbox = Outbox(tmp_path / "outbox", maxevents=100)
        await outbox.add([(spec.name, f"event-{spec.name}", b'{"id":"x"}') for spec in specs])
        dispatcher = Dispatcher(outbox, specs, poll=0.1)
        dispatcher.start()
        await asyncio.sleep(WINDOW)
        failures = {d.spec.name: d.failures for d in dispatcher.deliverers}
        await dispatcher.close()
        depth = await outbox.depth()
        await outbox.close()
        return failures, depth

    with caplog.at_level(logging.WARNING, logger="fastreg.notify"):
        started = time.monotonic()
        failures, depth = asyncio.run(scenario())
    assert time.monotonic() - started < WINDOW + 10
    for name, s in servers.items():
        # tries at ~0 s and ~2 s, the third not before ~6 s; every second would be 5 or 6 in the window
        assert 1 <= s.connections <= 3, (name, s.connections)
        assert failures[name] == s.connections, (name, failures[name], s.connections)   # each one a failure
        assert depth.get(name) == 1, name                                          # and the event kept
    assert "delivery task failed" not in caplog.text
    assert "retrying in 2.00s" in caplog.text
