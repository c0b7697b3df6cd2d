"""The pull-through cache creating a tag is crash-safe: a real `fastreg serve` in front of an
upstream fastreg, SIGKILLed (the faulty wrapper's `crash` action) around the writes of a new tag
it caches, then restarted on the same data directory.

The cache stores through the tag service, whose write order for a new tag is the current link
first, then the index entry: a crash between the two leaves a complete tag, a crash before the
first leaves no tag at all — never a tag directory that is listed but names nothing.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.registry_client import Manifest, assert_pulls, make_layer, make_manifest, push_manifest
from tests.support.server import FastregServer, make_fastreg

from .common import V2, faulty_storage, run_check
from .test_crash import _die

REPO, TAG = "lib/app", "v1"
TAG_DIR = f"{V2}/repositories/{REPO}/_manifests/tags/{TAG}"
POINTS = {
    # id: (crash rule on the cache's storage, is the tag there after the restart?)
    "before-current-link": ({"op": "put_content", "path": f"*/{TAG_DIR}/current/link", "when": "before"}, False),
    "after-current-link": ({"op": "put_content", "path": f"*/{TAG_DIR}/current/link", "when": "after"}, True),
    "before-index-entry": ({"op": "put_content", "path": f"*/{TAG_DIR}/index/*", "when": "before"}, True),
}


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[FastregServer, Manifest]]:
    srv = make_fastreg(tmp_path / "upstream")
    srv.start()
    image = make_manifest(layers=[make_layer(200_000), make_layer(1_000)])
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        push_manifest(c, REPO, image, TAG)
    yield srv, image
    srv.stop()


@pytest.mark.parametrize("point", list(POINTS))
def test_a_crash_while_the_cache_creates_a_tag(point: str, tmp_path: Path,
                                               upstream: tuple[FastregServer, Manifest]) -> None:
    rule, tagged = POINTS[point]
    up, image = upstream
    cache_dir = tmp_path / "cache"
    proxy = {"proxy": {"remoteurl": up.url}}
    srv = make_fastreg(cache_dir, {**faulty_storage(cache_dir / "data", [{**rule, "action": "crash"}]), **proxy})
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            _die(srv, lambda: c.get(f"/v2/{REPO}/manifests/{TAG}", headers={"Accept": image.media_type}))
    finally:
        srv.stop()

    root = srv.root
    tag_dir = root / TAG_DIR
    current = tag_dir / "current" / "link"
    if tagged:          # complete: its current link names the image, whose revision is stored
        assert current.read_text() == image.digest
        alg, hex_ = image.digest.split(":")
        assert (root / V2 / "repositories" / REPO / "_manifests" / "revisions" / alg / hex_ / "link").is_file()
    else:               # absent: not even an empty tag directory
        assert not tag_dir.exists(), sorted(str(p.relative_to(root)) for p in tag_dir.rglob("*"))
    # the data directory exactly as the crash left it, checked as the cache's storage: the layers
    # a cached manifest names are fetched when first pulled
    rc, report = run_check(root, tmp_path, config=proxy)
    assert (rc, report["problems"]) == (0, []), report["problems"]

    srv = make_fastreg(cache_dir, proxy)             # plain filesystem, same data directory
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            assert_pulls(c, REPO, TAG, image)
            assert_pulls(c, REPO, image.digest, image)
    finally:
        srv.stop()
    assert current.read_text() == image.digest
    rc, report = run_check(root, tmp_path)          # every layer pulled: healthy even as a plain registry
    assert (rc, report["problems"]) == (0, []), report["problems"]
