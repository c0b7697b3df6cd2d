"""Floods that must not grow a worker's memory: the worst case pushed many times over, with the
worker's resident size (``VmRSS`` of the granian worker processes) read before and after.

* manifest flood: manifests of the largest accepted size, each pushed and pulled: the manifest
  cache keeps at most ``fastreg.cache.manifestbytes`` of them;
* referrer flood: referrers whose annotations make each descriptor as large as a manifest may
  be, all on one subject, listed again and again: each response is one page of at most
  ``fastreg.referrers.pagebytes`` (or one descriptor), the descriptor cache keeps at most
  ``fastreg.cache.referrerbytes``;
* proxy flood: a pull-through cache in front of an upstream (tests/hostile/upstream.py) that
  answers manifests and tag lists that never end, and valid manifests of the largest size.

The bound checked is the caches' bytes plus ``SLACK`` for the allocator (glibc keeps up to its
trim threshold, 32 MiB as fastreg tunes it, of freed heap) and the request being served; the
flood moves several times that through the worker.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import FastregServer, make_fastreg

from .support import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, digest_of, push_blob
from .upstream import HostileUpstream, answer, digest, endless

MiB = 1 << 20
MAX_MANIFEST = 4 * MiB                  # fastreg.manifest.maxsize's default
CACHES = 32 * MiB + 8 * MiB             # fastreg.cache.manifestbytes + referrerbytes (defaults)
SLACK = 48 * MiB
FLOOD = 60                              # 60 x 4 MiB: 240 MiB through the worker each time


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def worker_rss(srv: FastregServer) -> dict[int, int]:
    """VmRSS in bytes of every process below the server (granian's workers among them)."""
    assert srv.proc is not None
    todo, rss = _children(srv.proc.pid), {}
    while todo:
        pid = todo.pop()
        todo += _children(pid)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        if m:
            rss[pid] = int(m.group(1)) * 1024
    assert rss, "no worker process found below the server"
    return rss


def grown(before: dict[int, int], after: dict[int, int]) -> int:
    """The largest growth of one process that lived through both readings."""
    assert set(before) & set(after), "the workers were replaced during the flood"
    return max(after[p] - before[p] for p in set(before) & set(after))


def big_manifest(config: str, layer: str, i: int, size: int = MAX_MANIFEST, **extra: object) -> bytes:
    """A valid image manifest of exactly `size` bytes: annotations fill it up."""
    doc: dict[str, object] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": 5}], **extra,
        "annotations": {"n": str(i), "fill": ""}}
    body = json.dumps(doc, separators=(",", ":")).encode()
    fill = os.urandom((size - len(body)) // 2 + 1).hex()[: size - len(body)]
    doc["annotations"] = {"n": str(i), "fill": fill}
    body = json.dumps(doc, separators=(",", ":")).encode()
    assert len(body) == size
    return body


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastregServer]:
    srv = make_fastreg(tmp_path_factory.mktemp("memory"), {"log": {"accesslog": {"disabled": True}}})
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: FastregServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


def _blobs(c: httpx.Client, repo: str) -> tuple[str, str]:
    return push_blob(c, repo, b"{}"), push_blob(c, repo, b"layer")


def _put(c: httpx.Client, repo: str, ref: str, body: bytes) -> str:
    r = c.put(f"/v2/{repo}/manifests/{ref}", content=body, headers={"content-type": OCI_MANIFEST})
    assert r.status_code == 201, r.text[:300]
    return r.headers["docker-content-digest"]


def _warm(c: httpx.Client, repo: str, config: str, layer: str) -> None:
    """A few largest manifests first, so the reading before the flood includes what serving one costs."""
    for i in range(3):
        d = _put(c, repo, f"warm{i}", big_manifest(config, layer, -1 - i))
        assert len(c.get(f"/v2/{repo}/manifests/{d}").content) == MAX_MANIFEST


def test_manifest_flood_keeps_worker_memory_flat(server: FastregServer, client: httpx.Client) -> None:
    repo = "flood/manifests"
    config, layer = _blobs(client, repo)
    _warm(client, repo, config, layer)
    before = worker_rss(server)
    pushed = []
    for i in range(FLOOD):
        body = big_manifest(config, layer, i)
        d = _put(client, repo, f"t{i}", body)
        pushed.append((d, body))
        r = client.get(f"/v2/{repo}/manifests/{d}", headers={"accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.content == body
    for d, body in pushed[:5]:      # the first ones, long evicted, are read back from storage
        assert client.get(f"/v2/{repo}/manifests/{d}").content == body
    growth = grown(before, worker_rss(server))
    assert growth < CACHES + SLACK, f"worker grew {growth / MiB:.0f} MiB over {FLOOD * MAX_MANIFEST // MiB} MiB pushed"


def _referrers(c: httpx.Client, repo: str, subject: str) -> tuple[list[str], int, int]:
    """Every referrer digest, following Link; the number of pages and the largest response."""
    path: str | None = f"/v2/{repo}/referrers/{subject}"
    digests: list[str] = []
    pages = largest = 0
    while path is not None and pages <= 2 * FLOOD:
        r = c.get(path)
        assert r.status_code == 200, r.text[:300]
        doc = r.json()
        digests += [m["digest"] for m in doc["manifests"]]
        pages, largest = pages + 1, max(largest, len(r.content))
        m = re.match(r'<([^>]+)>;\s*rel="next"', r.headers.get("link", ""))
        path = m.group(1) if m else None
    assert path is None, "the Link chain did not end"
    return digests, pages, largest


def test_referrer_flood_keeps_worker_memory_flat(server: FastregServer, client: httpx.Client) -> None:
    repo = "flood/referrers"
    config, layer = _blobs(client, repo)
    subject_body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
                               "layers": []}).encode()
    subject = _put(client, repo, "subject", subject_body)
    _warm(client, repo, config, layer)
    descriptor = {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_body)}
    referrers = [_put(client, repo, digest_of(body), body) for body in (
        big_manifest(config, layer, i, artifactType="application/vnd.example.sbom", subject=descriptor)
        for i in range(2))]
    _referrers(client, repo, subject)
    before = worker_rss(server)
    for i in range(2, FLOOD):
        body = big_manifest(config, layer, i, artifactType="application/vnd.example.sbom", subject=descriptor)
        referrers.append(_put(client, repo, digest_of(body), body))
    listings = [_referrers(client, repo, subject) for _ in range(2)]
    growth = grown(before, worker_rss(server))
    assert growth < CACHES + SLACK, f"worker grew {growth / MiB:.0f} MiB listing {FLOOD} referrers of 4 MiB"
    for digests, pages, largest in listings:
        assert sorted(digests) == sorted(referrers)
        assert pages == FLOOD                           # one 4 MiB descriptor per 1 MiB page
        assert largest < MAX_MANIFEST + 4096            # never more than one descriptor's worth


# -- proxy flood: a pull-through cache in front of an upstream that answers the largest bodies --

@pytest.fixture(scope="module")
def upstream() -> Iterator[HostileUpstream]:
    up = HostileUpstream()
    up.start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def proxy_server(tmp_path_factory: pytest.TempPathFactory, upstream: HostileUpstream) -> Iterator[FastregServer]:
    srv = make_fastreg(tmp_path_factory.mktemp("memory-proxy"), {
        "log": {"accesslog": {"disabled": True}},
        "fastreg": {"proxy": {"upstreams": {"up": {"remoteurl": upstream.url}}}}})
    srv.start()
    yield srv
    srv.stop()


def _script_upstream(upstream: HostileUpstream) -> dict[str, bytes]:
    """flood/app on the upstream: manifests that never end (endless<i>), valid manifests of the
    largest size (big<i>), a tag list that never ends.  Returns the valid bodies by tag."""
    config, layer = b"{}", b"layer"
    octet = [("Content-Type", "application/octet-stream")]
    upstream.route("GET", f"/v2/flood/app/blobs/{digest(config)}", answer(200, config, octet))
    upstream.route("GET", f"/v2/flood/app/blobs/{digest(layer)}", answer(200, layer, octet))
    upstream.route("GET", "/v2/flood/app/tags/list", endless([("Content-Type", "application/json")]))
    bodies = {}
    for i in range(-3, FLOOD):
        upstream.route("GET", f"/v2/flood/app/manifests/endless{i}", endless([("Content-Type", OCI_MANIFEST)]))
        body = big_manifest(digest(config), digest(layer), i)
        bodies[f"big{i}"] = body
        hs = [("Content-Type", OCI_MANIFEST), ("Docker-Content-Digest", digest(body))]
        upstream.route("GET", f"/v2/flood/app/manifests/big{i}", answer(200, body, hs))
        upstream.route("GET", f"/v2/flood/app/manifests/{digest(body)}", answer(200, body, hs))
    return bodies


def _proxy_flood(srv: FastregServer, pull: Callable[[httpx.Client, int], None]) -> int:
    with httpx.Client(base_url=srv.url, timeout=60.0) as c:
        for i in range(-3, 0):
            pull(c, i)                                  # warm: each kind served once
        before = worker_rss(srv)
        for i in range(FLOOD // 2):
            pull(c, i)
        return grown(before, worker_rss(srv))


def test_proxy_flood_of_large_manifests_keeps_worker_memory_flat(
        proxy_server: FastregServer, upstream: HostileUpstream) -> None:
    """Valid manifests of the largest size: fetched, validated, stored, served."""
    bodies = _script_upstream(upstream)

    def pull(c: httpx.Client, i: int) -> None:
        r = c.get(f"/v2/up/flood/app/manifests/big{i}", headers={"accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.content == bodies[f"big{i}"], r.text[:300]

    growth = _proxy_flood(proxy_server, pull)
    assert growth < CACHES + SLACK, f"worker grew {growth / MiB:.0f} MiB"


def test_proxy_flood_of_endless_manifests_and_tag_lists_keeps_worker_memory_flat(
        proxy_server: FastregServer, upstream: HostileUpstream) -> None:
    """Manifests that never end, each cut at the manifest limit and refused (502), and tag lists
    that never end (cut at their limit; the local list is served instead)."""
    _script_upstream(upstream)

    def pull(c: httpx.Client, i: int) -> None:
        r = c.get(f"/v2/up/flood/app/manifests/endless{i}")
        assert r.status_code == 502 and r.json()["errors"][0]["code"] == "MANIFEST_INVALID", r.text[:300]
        assert c.get("/v2/up/flood/app/tags/list").status_code in (200, 404)

    growth = _proxy_flood(proxy_server, pull)
    assert growth < CACHES + SLACK, f"worker grew {growth / MiB:.0f} MiB"
