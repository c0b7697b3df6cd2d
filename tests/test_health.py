"""health.storagedriver (Distribution's): every request answers 503 UNAVAILABLE while storage fails."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.server import free_port

pytestmark = pytest.mark.e2e


def wait_until(pred: Callable[[], bool], what: str, log: Callable[[], str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    pytest.fail(f"{what} within {timeout}s\n--- server log\n{log()[-3000:]}")


def test_requests_fail_while_storage_is_unreachable(fastreg_factory: Any) -> None:
    srv = fastreg_factory({"health": {"storagedriver": {"enabled": True, "interval": "100ms", "threshold": 2}}})
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert c.get("/v2/").status_code == 200
        root = srv.root
        moved = root.with_name("data-moved")
        os.rename(root, moved)
        os.symlink(root, root)                 # a symlink loop: every storage call fails (ELOOP)
        try:
            wait_until(lambda: c.get("/v2/").status_code == 503, "no 503 from /v2/", srv.log)
            r = c.get("/v2/library/x/tags/list")
            assert r.status_code == 503
            err = r.json()["errors"][0]
            assert err["code"] == "UNAVAILABLE"
            assert "storagedriver_filesystem" in err["detail"]
            assert "unhealthy after" in srv.log()
        finally:
            os.unlink(root)
            os.rename(moved, root)
        wait_until(lambda: c.get("/v2/").status_code == 200, "not healthy again", srv.log)
        assert "healthy again" in srv.log()


def test_no_gate_without_the_check(fastreg_factory: Any) -> None:
    srv = fastreg_factory()
    root = srv.root
    moved = root.with_name("data-moved")
    os.rename(root, moved)
    os.symlink(root, root)
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            assert c.get("/v2/").status_code == 200     # /v2/ does not touch storage
    finally:
        os.unlink(root)
        os.rename(moved, root)


def test_a_maintenance_file_takes_the_registry_out_and_back(fastreg_factory: Any, tmp_path: Any) -> None:
    """health.file: while the file exists every request answers 503 naming it (Distribution's
    way to drain one replica); removing it brings the registry back."""
    down = tmp_path / "down"
    srv = fastreg_factory({"health": {"file": [{"file": str(down), "interval": "100ms"}]}})
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        assert c.get("/v2/").status_code == 200
        down.write_text("maintenance\n")
        wait_until(lambda: c.get("/v2/").status_code == 503, "no 503 while the file exists", srv.log)
        err = c.get("/v2/x/tags/list").json()["errors"][0]
        assert err["code"] == "UNAVAILABLE" and err["detail"] == {str(down): "file exists"}
        down.unlink()
        wait_until(lambda: c.get("/v2/").status_code == 200, "not healthy after the file went", srv.log)


def test_tcp_and_http_checks_follow_the_services_they_watch(fastreg_factory: Any) -> None:
    """health.tcp and health.http against real listeners of the test: a closed port or an
    unexpected status (after `threshold` failures) turns the registry 503; it recovers."""
    import http.server
    import socket
    import threading

    status = {"code": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(status["code"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    tcp_port = free_port()

    def listen() -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", tcp_port))
        s.listen(16)
        return s

    lsock = listen()
    uri = f"http://127.0.0.1:{web.server_address[1]}/ping"
    addr = f"127.0.0.1:{tcp_port}"
    srv = fastreg_factory({"health": {
        "http": [{"uri": uri, "interval": "100ms", "threshold": 2, "statuscode": 200}],
        "tcp": [{"addr": addr, "interval": "100ms", "threshold": 2, "timeout": "500ms"}]}})
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            assert c.get("/v2/").status_code == 200
            status["code"] = 500
            wait_until(lambda: c.get("/v2/").status_code == 503, "no 503 on a failing http check", srv.log)
            detail = c.get("/v2/").json()["errors"][0]["detail"]
            assert set(detail) == {uri} and "500" in detail[uri]
            status["code"] = 200
            wait_until(lambda: c.get("/v2/").status_code == 200, "http check did not recover", srv.log)
            lsock.close()
            wait_until(lambda: c.get("/v2/").status_code == 503, "no 503 on a closed port", srv.log)
            assert set(c.get("/v2/").json()["errors"][0]["detail"]) == {addr}
            lsock = listen()
            wait_until(lambda: c.get("/v2/").status_code == 200, "tcp check did not recover", srv.log)
    finally:
        lsock.close()
        web.shutdown()
        web.server_close()
