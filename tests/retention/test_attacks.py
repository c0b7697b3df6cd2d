"""Attacks on immutable tags, quotas, retention and the history endpoints, from outside, over HTTP
against running servers: each refusal answers its status and the spec's error code and leaves
every stored file as it was.

* An immutable tag protects what it names, not only its name: a DELETE by digest of a manifest an
  immutable index lists, and a DELETE of a blob an immutable image uses, would each break the
  tag's pulls while the tag itself stays; both are refused as a delete of the tag is.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.ops.conftest import tree
from tests.support.registry_client import (
    assert_error,
    assert_pulls,
    make_index,
    make_layer,
    make_manifest,
    push_manifest,
)
from tests.support.server import free_port
from tests.test_metrics import debug_config, scrape, value

RULES = {"immutability": {"rules": [{"repository": "prod/**", "tags": ["v*"]}]}}


def test_immutable_tag_protects_its_index_children_and_blobs(fastreg_factory: Any, tmp_path: Path) -> None:
    dport = free_port()
    srv = fastreg_factory(debug_config(dport, fastreg=RULES), env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")})
    shared = make_layer(700)
    amd, arm = make_manifest(layers=[shared]), make_manifest()
    idx = make_index([amd, arm])
    img = make_manifest()
    loose = make_manifest(layers=[shared])          # a mutable image sharing a layer with an immutable one
    nested = make_index([make_index([arm])])        # an index of an index of arm
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        for child in (amd, arm):
            push_manifest(c, "prod/app", child)
        push_manifest(c, "prod/app", idx, "v1")
        push_manifest(c, "prod/app", img, "v2")
        push_manifest(c, "prod/app", loose, "latest")
        push_manifest(c, "prod/app", nested.children[0])
        push_manifest(c, "prod/app", nested, "v3")
        before = tree(srv.root)
        refusals = (
            (f"/v2/prod/app/manifests/{amd.digest}", f"manifest {amd.digest}", "v1"),     # a child of v1
            (f"/v2/prod/app/manifests/{nested.children[0].digest}", "manifest", "v3"),   # v3's child
            (f"/v2/prod/app/blobs/{img.blobs[1].digest}", f"blob {img.blobs[1].digest}", "v2"),     # v2's layer
            (f"/v2/prod/app/blobs/{img.blobs[0].digest}", "blob", "v2"),                  # v2's config
            (f"/v2/prod/app/blobs/{shared.digest}", f"blob {shared.digest}", "v1"),       # through v1's index
            (f"/v2/prod/app/blobs/{arm.blobs[1].digest}", "blob", "v"),                   # v1 (or v3, nested)
        )
        for path, what, tag in refusals:
            r = c.delete(path)
            assert_error(r, 403, "DENIED")
            err = r.json()["errors"][0]
            assert err["message"].startswith(what) and "is used by immutable tag prod/app:" + tag in err["message"]
            assert "fastreg.immutability.rules.0" in err["message"] and "cannot be deleted" in err["message"]
            assert err["detail"]["rule"].startswith("fastreg.immutability.rules.0")
        assert tree(srv.root) == before                                  # nothing stored changed
        assert_pulls(c, "prod/app", "v1", idx)
        assert_pulls(c, "prod/app", "v2", img)
        assert_pulls(c, "prod/app", amd.digest, amd)
        # what no immutable tag names is free: the mutable image's own layer, then the image itself
        assert c.delete(f"/v2/prod/app/blobs/{loose.blobs[0].digest}").status_code == 202
        assert c.delete(f"/v2/prod/app/manifests/{loose.digest}").status_code == 202
        # and in a repository no rule covers, the same deletes are accepted
        push_manifest(c, "dev/app", amd)
        push_manifest(c, "dev/app", make_index([amd]), "v1")
        assert c.delete(f"/v2/dev/app/blobs/{shared.digest}").status_code == 202
        assert c.delete(f"/v2/dev/app/manifests/{amd.digest}").status_code == 202
    samples = scrape(f"http://127.0.0.1:{dport}/metrics")
    assert value(samples, "fastreg_immutability_refusals_total", action="delete") == len(refusals)
