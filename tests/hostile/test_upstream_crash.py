"""The pull-through cache's tag writes are crash-safe: a real `fastreg serve` in front of an upstream
(tests/hostile/upstream.py), on the faulty storage wrapper that SIGKILLs the whole server right
after the *first* of a new tag's two writes (whichever the code does first: the tag service writes
its current link first).  After the restart, with the upstream gone, the tag is either absent or
whole — never listed while naming nothing — and `fastreg check` finds no damage."""
from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.faults.common import faulty_storage, run_check, server

from .upstream import OCI_MANIFEST, HostileUpstream, answer, digest, manifest_of

pytestmark = pytest.mark.e2e
REPO = "crash/app"


def test_sigkill_between_a_new_tags_two_writes_leaves_no_tag_naming_nothing(tmp_path: Path) -> None:
    up = HostileUpstream()
    up.start()
    config = b'{"architecture":"amd64","os":"linux"}'
    body = manifest_of(config, [])
    hdrs = [("Content-Type", OCI_MANIFEST), ("Docker-Content-Digest", digest(body))]
    up.route("GET", f"/v2/{REPO}/manifests/fresh", answer(200, body, hdrs))
    up.route("GET", f"/v2/{REPO}/blobs/{digest(config)}", answer(200, config))
    rule = {"op": "put_content", "path": f"*/repositories/{REPO}/_manifests/tags/fresh/*", "when": "after",
            "action": "crash"}
    storage = faulty_storage(tmp_path / "data", [rule])
    storage["proxy"] = {"remoteurl": up.url}
    srv = server(tmp_path, storage)
    try:
        # the config blob first, so that the manifest names nothing missing (check would say so)
        assert httpx.get(f"{srv.url}/v2/{REPO}/blobs/{digest(config)}", timeout=30).content == config
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{srv.url}/v2/{REPO}/manifests/fresh", headers={"Accept": OCI_MANIFEST}, timeout=30)
        assert srv.proc is not None
        assert srv.proc.wait(timeout=20) == -signal.SIGKILL, srv.log()
        srv.proc = None
    finally:
        srv.stop()
        up.stop()                                   # the cache alone from here: what did it keep?
    rc, report = run_check(srv.root, tmp_path)
    assert (rc, report["problems"]) == (0, []), report["problems"]
    srv = server(tmp_path, {"proxy": {"remoteurl": up.url}})
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            listed = c.get(f"/v2/{REPO}/tags/list").json()["tags"]     # upstream down: the local list
            r = c.get(f"/v2/{REPO}/manifests/fresh", headers={"Accept": OCI_MANIFEST})
            if "fresh" in listed:
                assert r.status_code == 200 and r.content == body, (listed, r.status_code, r.text)
            else:
                assert r.status_code == 503, r.text
            # the tag service writes the current link first: the tag survived whole
            assert listed == ["fresh"] and r.content == body
    finally:
        srv.stop()
