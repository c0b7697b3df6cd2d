"""Read-only mode (storage.maintenance.readonly.enabled): pulls work; every write answers 405
UNSUPPORTED, as Distribution does; and the background upload purger stays off."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.registry_client import OCTET, assert_error, digest_of, make_manifest, push_manifest, relative

pytestmark = pytest.mark.e2e


def test_readonly_serves_pulls_and_refuses_writes(fastreg_factory: Callable[..., Any]) -> None:
    rw = fastreg_factory()
    with httpx.Client(base_url=rw.url, timeout=30.0) as c:
        m = make_manifest()
        push_manifest(c, "ro/app", m, "v1")
        r = c.post("/v2/ro/app/blobs/uploads/")
        assert r.status_code == 202
        session = r.headers["Location"]
    rw.stop()
    ro = fastreg_factory({"log": {"level": "info"}, "storage": {"maintenance": {
        "readonly": {"enabled": True}, "uploadpurging": {"enabled": True, "age": "1s", "interval": "1s"}}}})
    # The second server uses its own directory: point it at the first one's data.
    ro.stop()
    ro.config_path.write_text(ro.config_path.read_text().replace(str(ro.root), str(rw.root)))
    ro.root = rw.root
    ro.start()
    with httpx.Client(base_url=ro.url, timeout=30.0) as c:
        r = c.get("/v2/ro/app/manifests/v1", headers={"Accept": m.media_type})
        assert r.status_code == 200 and r.content == m.body
        for b in m.blobs:
            assert c.get(f"/v2/ro/app/blobs/{b.digest}").content == b.data
        data = b"new"
        refused = [
            c.post("/v2/ro/app/blobs/uploads/"),
            c.post(f"/v2/ro/app/blobs/uploads/?digest={digest_of(data)}", content=data,
                   headers={"Content-Type": OCTET}),
            c.post(f"/v2/ro/other/blobs/uploads/?mount={m.blobs[0].digest}&from=ro/app"),
            c.patch(relative(session), content=b"x", headers={"Content-Type": OCTET}),
            c.put(relative(session) + f"&digest={digest_of(b'')}"),
            c.delete(relative(session)),
            c.put("/v2/ro/app/manifests/v2", content=m.body, headers={"Content-Type": m.media_type}),
            c.delete(f"/v2/ro/app/manifests/{m.digest}"),
            c.delete("/v2/ro/app/manifests/v1"),
            c.delete(f"/v2/ro/app/blobs/{m.blobs[0].digest}"),
        ]
        for r in refused:
            assert_error(r, 405, "UNSUPPORTED")
        assert c.get("/v2/ro/app/manifests/v1", headers={"Accept": m.media_type}).content == m.body
    assert "upload purging every" not in ro.log()
    assert list(rw.root.rglob("_uploads/*/startedat"))     # the open session was left alone
