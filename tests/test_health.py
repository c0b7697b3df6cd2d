"""health.storagedriver (Distribution's): every request answers 503 UNAVAILABLE while storage fails."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

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
