"""Pull history recorded by a running 2-worker server: GETs and HEADs by tag count for the tag, GETs
for the manifest, every worker's pulls add up, and the history endpoint shows them."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from fastreg.retention import pulls
from fastreg.storage.driver.backends.filesystem import FilesystemDriver
from tests.support.registry_client import make_manifest, push_manifest


def test_pulls_recorded_across_workers(fastreg_factory: Any) -> None:
    srv = fastreg_factory({"fastreg": {"history": {"pulls": True, "flushinterval": "200ms"}}}, workers=2)
    m, other = make_manifest(), make_manifest()
    # a new connection per request: the pulls spread over both workers
    with httpx.Client(base_url=srv.url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as c:
        push_manifest(c, "ci/app", m, "x")
        push_manifest(c, "ci/app", other, "y")
        doc = c.get("/v2/_fastreg/history/ci/app").json()
        assert [(t["tag"], t["pulled"], t["pulls"]) for t in doc["tags"]] == [("x", None, 0), ("y", None, 0)]
        for _ in range(10):
            assert c.get("/v2/ci/app/manifests/x").status_code == 200
        for _ in range(5):
            assert c.head("/v2/ci/app/manifests/x").status_code == 200
        for _ in range(3):
            assert c.get(f"/v2/ci/app/manifests/{m.digest}").status_code == 200
            assert c.head(f"/v2/ci/app/manifests/{other.digest}").status_code == 200   # not a pull
        # each worker writes what it saw within a flush interval: wait for both counts
        driver = FilesystemDriver(str(srv.root))
        deadline = time.monotonic() + 30
        rows: dict[str, Any] = {}
        counts: dict[str, float] = {}
        while time.monotonic() < deadline:
            rows = {t["tag"]: t for t in c.get("/v2/_fastreg/history/ci/app").json()["tags"]}
            counts = {d: e[1] for d, e in asyncio.run(pulls.read(driver, "ci/app")).manifests.items()}
            if rows["x"]["pulls"] >= 15 and counts.get(m.digest, 0) >= 13:
                break
            time.sleep(0.1)
        assert rows["x"]["pulls"] == 15 and rows["x"]["pulled"] is not None, rows
        assert rows["y"]["pulls"] == 0
        assert counts == {m.digest: 13}
