"""Tag immutability against a running server, over HTTP: an immutable tag refuses a move and a
delete (403 DENIED naming the rule, nothing stored changed), accepts the same push again, and is
never deleted by a retention policy; the refusals are counted in the metrics."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.ops.conftest import tree
from tests.support.registry_client import assert_error, make_manifest, push_manifest, put_manifest
from tests.support.server import free_port
from tests.test_metrics import debug_config, scrape, value

RULES = {"immutability": {"rules": [{"repository": "prod/**", "tags": ["v*", "stable"]}]}}


def test_immutable_tag_refuses_move_and_delete(fastreg_factory: Any, tmp_path: Path) -> None:
    dport = free_port()
    srv = fastreg_factory(debug_config(dport, fastreg=RULES), env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")})
    a, b = make_manifest(), make_manifest()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        push_manifest(c, "prod/app", a, "v1")                      # the first push
        push_manifest(c, "prod/app", a, "v1")                      # the same push again changes nothing
        push_manifest(c, "prod/app", b, "latest")                  # not immutable: b's blobs are stored
        before = tree(srv.root)
        r = put_manifest(c, "prod/app", "v1", b)                   # a move
        assert_error(r, 403, "DENIED")
        msg = r.json()["errors"][0]["message"]
        assert "prod/app:v1 is immutable" in msg and "fastreg.immutability.rules.0" in msg and "moved" in msg
        assert r.json()["errors"][0]["detail"]["rule"].startswith("fastreg.immutability.rules.0")
        r = c.delete("/v2/prod/app/manifests/v1")
        assert_error(r, 403, "DENIED")
        assert "deleted" in r.json()["errors"][0]["message"]
        r = c.delete(f"/v2/prod/app/manifests/{a.digest}")         # by digest: it would remove v1
        assert_error(r, 403, "DENIED")
        assert tree(srv.root) == before                            # nothing stored changed
        assert c.get("/v2/prod/app/manifests/v1").headers["Docker-Content-Digest"] == a.digest
        assert c.delete("/v2/prod/app/manifests/v9").status_code == 404     # no such tag: MANIFEST_UNKNOWN
        # other tags and other repositories are not concerned
        push_manifest(c, "prod/app", a, "latest")
        assert c.delete("/v2/prod/app/manifests/latest").status_code == 202
        push_manifest(c, "dev/app", a, "v1")
        push_manifest(c, "dev/app", b, "v1")
        assert c.delete("/v2/dev/app/manifests/v1").status_code == 202
        # a repository the rules cover that has no tags: its manifests delete by digest
        push_manifest(c, "prod/loose", b)
        assert c.delete(f"/v2/prod/loose/manifests/{b.digest}").status_code == 202
        assert_error(c.get(f"/v2/prod/loose/manifests/{b.digest}"), 404, "MANIFEST_UNKNOWN")
    samples = scrape(f"http://127.0.0.1:{dport}/metrics")
    assert value(samples, "fastreg_immutability_refusals_total", action="move") == 1
    assert value(samples, "fastreg_immutability_refusals_total", action="delete") == 2
