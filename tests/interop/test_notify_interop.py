"""Webhook events under real clients, and side by side with Distribution's own.

* skopeo round trip (push, copy to another repository, pull, delete) against fastreg with a
  receiver on 127.0.0.1: every blob and manifest shows up in a push event with its size, the
  copy mounts or pushes into the new repository, the pull sends pull events, the delete a
  delete event.
* Debian's Distribution 2.8 and fastreg get the same pushes and pulls with the same endpoint
  config; their envelopes must have the same shape (keys, media type, header, actions, targets).
"""
from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.notify.conftest import Receiver
from tests.support.registry_client import make_manifest, push_manifest

from .conftest import make_distribution
from .images import ImageLayout

pytestmark = [pytest.mark.e2e, pytest.mark.interop]

Skopeo = Callable[..., subprocess.CompletedProcess[str]]


def _hook(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    return {"endpoints": [{"name": "hook", "url": receiver.url, "timeout": "2s", "threshold": 3,
                           "backoff": "100ms", **extra}]}


def test_skopeo_round_trip_events(fastreg_factory: Any, skopeo: Skopeo, oci_image: ImageLayout,
                                  tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.start()
    try:
        srv = fastreg_factory({"notifications": _hook(receiver),
                               "fastreg": {"notifications": {"allowprivate": True}}},
                              env={"XDG_STATE_HOME": str(tmp_path / "state")})
        tls = ("--src-tls-verify=false", "--dest-tls-verify=false")
        skopeo("copy", "--all", *tls, oci_image.ref, f"docker://{srv.host}/multi/arch:v1", server=srv)
        n_objects = len(oci_image.blobs)            # every blob and manifest of the layout
        pushes = receiver.wait_for(lambda e: len(e) >= n_objects, log=srv.log)
        assert all(e["action"] == "push" for e in pushes)
        assert {e["target"]["digest"]: e["target"]["size"] for e in pushes} == oci_image.blobs
        top = [e for e in pushes if e["target"]["digest"] == oci_image.index_digest]
        assert top[0]["target"]["tag"] == "v1"
        assert top[0]["target"]["mediaType"] == oci_image.index_media_type
        assert top[0]["request"]["useragent"].startswith("skopeo")

        skopeo("copy", "--all", *tls, f"docker://{srv.host}/multi/arch:v1", f"docker://{srv.host}/other/arch:v1",
               server=srv)
        skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{srv.host}/multi/arch:v1",
               f"oci:{tmp_path / 'pulled'}:v1", server=srv)
        skopeo("delete", "--tls-verify=false", f"docker://{srv.host}/other/arch@{oci_image.index_digest}",
               server=srv)
        evs = receiver.wait_for(lambda e: any(x["action"] == "delete" for x in e), log=srv.log)
        later = evs[len(pushes):]
        into_other = {e["target"]["digest"] for e in later
                      if e["target"]["repository"] == "other/arch" and e["action"] in ("push", "mount")}
        assert into_other == set(oci_image.blobs)    # every object reached the new repository
        mounts = [e for e in later if e["action"] == "mount"]
        assert all(e["target"]["fromRepository"] == "multi/arch" for e in mounts)
        pulled = {e["target"]["digest"] for e in later if e["action"] == "pull"}
        assert set(oci_image.blobs) <= pulled        # both copies read everything from multi/arch
        deletes = [e for e in later if e["action"] == "delete"]
        assert [(d["target"]["repository"], d["target"]["digest"]) for d in deletes] == \
            [("other/arch", oci_image.index_digest)]
        assert len({e["id"] for e in evs}) == len(evs)
    finally:
        receiver.stop()


def _shape(obj: Any) -> Any:
    """Keys (recursively) and value types, not values."""
    if isinstance(obj, dict):
        return {k: _shape(v) for k, v in obj.items()}
    return type(obj).__name__


def test_envelope_matches_distribution(fastreg_factory: Any, tmp_path: Path) -> None:
    ours, theirs = Receiver(), Receiver()
    ours.start()
    theirs.start()
    dist = make_distribution(tmp_path / "distribution", extra={"notifications": _hook(theirs)})
    dist.start()
    try:
        srv = fastreg_factory({"notifications": _hook(ours), "fastreg": {"notifications": {"allowprivate": True}}},
                              env={"XDG_STATE_HOME": str(tmp_path / "state")})
        m = make_manifest()
        for server in (srv, dist):
            with httpx.Client(base_url=server.url, timeout=30, headers={"User-Agent": "same/1"}) as c:
                push_manifest(c, "diff/repo", m, "v1")
                assert c.get("/v2/diff/repo/manifests/v1", headers={"Accept": m.media_type}).status_code == 200
                assert c.get(f"/v2/diff/repo/blobs/{m.blobs[1].digest}").status_code == 200
        for r, s in ((ours, srv), (theirs, dist)):
            r.wait_for(lambda e: sum(x["action"] == "pull" for x in e) >= 2, log=s.log)
        assert ours.posts[0].headers["content-type"] == theirs.posts[0].headers["content-type"]

        def key(e: dict[str, Any]) -> tuple[str, str]:
            return e["action"], e["target"]["digest"]

        a = {key(e): e for e in ours.events}
        b = {key(e): e for e in theirs.events}
        assert a.keys() == b.keys()
        assert Counter(k[0] for k in a) == {"push": 3, "pull": 2}
        for k, ea in a.items():
            eb = b[k]
            assert _shape(ea) == _shape(eb), k
            for field in ("mediaType", "size", "length", "repository", "tag"):
                assert ea["target"].get(field) == eb["target"].get(field), (k, field)
            assert ea["target"]["url"].replace(srv.host, dist.host) == eb["target"]["url"], k
            for field in ("method", "useragent"):
                assert ea["request"][field] == eb["request"][field], (k, field)
    finally:
        dist.stop()
        ours.stop()
        theirs.stop()
