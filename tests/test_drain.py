"""SIGTERM: granian stops accepting and lets requests in flight finish; Distribution's
``http.draintimeout`` bounds that wait."""
from __future__ import annotations

import os
import signal
import time
from typing import Any

import httpx
import pytest

from tests.support.registry_client import Blob, push_blob

pytestmark = pytest.mark.e2e


def _download_with_sigterm(srv: Any, size: int, pause: float) -> tuple[int, BaseException | None]:
    """Stream a blob of `size` bytes, reading 1 MiB every `pause` s; SIGTERM the server after
    the first 2 MiB.  Returns (bytes received, the error that ended the stream or None)."""
    blob = Blob(os.urandom(size))
    got = 0
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        push_blob(c, "drain/app", blob)
        try:
            with c.stream("GET", f"/v2/drain/app/blobs/{blob.digest}") as r:
                assert r.status_code == 200
                for i, chunk in enumerate(r.iter_raw(1 << 20)):
                    got += len(chunk)
                    if i == 1:
                        os.kill(srv.proc.pid, signal.SIGTERM)
                    time.sleep(pause)
        except httpx.HTTPError as exc:
            return got, exc
    return got, None


def test_requests_in_flight_finish_after_sigterm(fastreg_factory: Any) -> None:
    srv = fastreg_factory()
    got, error = _download_with_sigterm(srv, 16 << 20, 0.02)
    assert error is None and got == 16 << 20
    srv.proc.wait(timeout=30)
    assert srv.proc.returncode == 0


def test_draintimeout_bounds_the_wait(fastreg_factory: Any) -> None:
    srv = fastreg_factory({"http": {"draintimeout": "1s"}})
    size = 128 << 20                      # at 1 MiB per 0.2 s: ~25 s if the drain were unbounded
    got, error = _download_with_sigterm(srv, size, 0.2)
    assert isinstance(error, httpx.RemoteProtocolError), error
    assert got < size
    srv.proc.wait(timeout=30)
    assert srv.proc.poll() is not None
