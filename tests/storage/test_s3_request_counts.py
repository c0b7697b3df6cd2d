"""How many S3 requests the registry's common operations cost, against moto, pinned.

Each S3 request costs a worker CPU in aiobotocore (0.6–0.9 ms on small objects, see
``python -m bench.s3_requests``), and on a real store a round trip: on small pushes and manifest
pulls the request count *is* the cost.  The registry runs
in-process on moto with an event hook on its S3 client counting every HTTP request it sends, by
operation; the counts per operation of these are pinned (at most), so a change that adds a
request shows here:

* a monolithic upload of a 4 KiB blob (POST, then PUT ?digest= with the body);
* the same in one request (POST ?digest= with the body);
* a blob HEAD, a cross-repository mount, a manifest PUT by tag (a CI push's other requests);
* a manifest GET by tag.

Run it with ``-s`` to see the counts (``FASTREG_REQUEST_COUNTS=1``), and every request with its
key (``FASTREG_REQUEST_TRACE=1``).
"""
from __future__ import annotations

import asyncio
import collections
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastreg.storage.driver.backends import s3 as s3mod
from tests.support.asgi import InProcessRegistry, inprocess
from tests.support.registry_client import (
    OCTET,
    Blob,
    make_config,
    make_manifest,
    put_manifest,
    q,
    relative,
    start_upload,
    unique_repo,
)

from .conftest import S3Backend
from .services import Service

pytestmark = pytest.mark.e2e

# At most this many requests of each kind, per operation (24 for a small upload before the
# small-body commit, the one look at the session under its lock and the lock's release by delete).
SMALL_UPLOAD = {"PutObject": 5, "HeadObject": 2, "ListObjectsV2": 1, "ListMultipartUploads": 1,
                "DeleteObjects": 2}
MONOLITHIC_POST = {"PutObject": 2}                  # the blob's data and its link: no session
BLOB_HEAD = {"HeadObject": 2}
MOUNT = {"HeadObject": 2, "PutObject": 1}
MANIFEST_GET_BY_TAG = {"GetObject": 1, "HeadObject": 1}
# (19 before the manifest's bytes were written without asking first and the new-repository check
# became one listing): the epoch and gc's marker, a HEAD of each blob's link and data, the
# manifest's bytes, the listing, the revision, the catalog validator, the tag read and written
MANIFEST_PUT_NEW_REPOSITORY = {"GetObject": 4, "HeadObject": 6, "ListObjectsV2": 1, "PutObject": 5}


class Counter:
    """Every HTTP request the registry's S3 clients send, by operation (retries included)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.on = False

    def __call__(self, event_name: str = "", **kw: Any) -> None:
        if self.on:
            self.counts[event_name.rsplit(".", 1)[-1]] += 1
            if os.environ.get("FASTREG_REQUEST_TRACE"):
                r = kw.get("request")
                print("  ", event_name.rsplit(".", 1)[-1], r.method, r.url.split("/fastreg-test/", 1)[-1][:140],
                      {k: v for k, v in r.headers.items() if k.lower().startswith("if-")})

    def take(self) -> dict[str, int]:
        out = dict(self.counts)
        self.counts.clear()
        return out


@pytest.fixture
def counted(moto_server: Service, tmp_path: Path) -> Iterator[tuple[InProcessRegistry, Counter]]:
    counter = Counter()
    session = s3mod._session()
    session.register("before-send.s3", counter)        # copied into every client created from now on
    store = S3Backend(moto_server)
    root = f"req-{uuid.uuid4().hex[:8]}"
    config = {"storage": {"filesystem": None, "s3": store.params(root),
                          "redirect": {"disable": True},
                          "maintenance": {"uploadpurging": {"enabled": False}}},
              "log": {"level": "error", "accesslog": {"disabled": True}}}
    try:
        with inprocess(tmp_path, config) as reg:
            reg.stored = lambda: asyncio.run(store.leftovers(root))  # type: ignore[attr-defined]
            yield reg, counter
    finally:
        session.unregister("before-send.s3", counter)


def _report(what: str, got: dict[str, int]) -> None:
    if os.environ.get("FASTREG_REQUEST_COUNTS"):
        print(f"\n{what}: {sum(got.values())} requests {dict(sorted(got.items()))}")


def _check(what: str, got: dict[str, int], limit: dict[str, int]) -> None:
    _report(what, got)
    over = {op: n for op, n in got.items() if n > limit.get(op, 0)}
    assert not over and sum(got.values()) <= sum(limit.values()), f"{what}: more S3 requests than {limit}: {got}"


def _upload(c: httpx.Client, repo: str, b: Blob) -> None:
    loc = relative(start_upload(c, repo).headers["Location"])
    r = c.put(q(loc, digest=b.digest), content=b.data, headers={"Content-Type": OCTET})
    assert r.status_code == 201, (r.status_code, r.text)


def test_small_monolithic_upload(counted: tuple[InProcessRegistry, Counter]) -> None:
    reg, counter = counted
    c = reg.client()
    repo = unique_repo("req")
    _upload(c, repo, Blob(os.urandom(4096)))            # the first lock probes the store's conditions
    counter.on = True
    for _ in range(3):
        b = Blob(os.urandom(4096))
        _upload(c, repo, b)
        _check("POST + PUT ?digest= of 4 KiB", counter.take(), SMALL_UPLOAD)
        assert c.get(f"/v2/{repo}/blobs/{b.digest}").content == b.data
        counter.take()
    b = Blob(os.urandom(4096))
    r = c.post(f"/v2/{repo}/blobs/uploads/?digest={b.digest}", content=b.data, headers={"Content-Type": OCTET})
    assert r.status_code == 201, r.text
    _check("POST ?digest= of 4 KiB", counter.take(), MONOLITHIC_POST)
    assert c.get(f"/v2/{repo}/blobs/{b.digest}").content == b.data
    keys = reg.stored()  # type: ignore[attr-defined]
    assert [k for k in keys if "/_uploads/" in k or k.startswith("multipart")] == []
    assert any(k.endswith(f"/_layers/sha256/{b.digest.split(':')[1]}/link") for k in keys)


def test_small_bodies_that_do_not_match_their_digest(counted: tuple[InProcessRegistry, Counter]) -> None:
    """Refused with DIGEST_INVALID, by POST ?digest= and by PUT ?digest=; nothing is stored (no
    blob, no link, no session left)."""
    reg, _ = counted
    c = reg.client()
    repo = unique_repo("req")
    b, other = Blob(os.urandom(4096)), Blob(os.urandom(4096))
    _upload(c, repo, Blob(os.urandom(4096)))            # (once the store's conditions are probed)
    before = reg.stored()  # type: ignore[attr-defined]
    r = c.post(f"/v2/{repo}/blobs/uploads/?digest={other.digest}", content=b.data, headers={"Content-Type": OCTET})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID", r.text
    loc = relative(start_upload(c, repo).headers["Location"])
    r = c.put(q(loc, digest=other.digest), content=b.data, headers={"Content-Type": OCTET})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID", r.text
    assert reg.stored() == before  # type: ignore[attr-defined]
    assert c.put(q(loc, digest=b.digest), content=b.data, headers={"Content-Type": OCTET}).status_code == 404


def test_ci_push_and_pull(counted: tuple[InProcessRegistry, Counter]) -> None:
    reg, counter = counted
    c = reg.client()
    base, repo = unique_repo("base"), unique_repo("img")
    shared = Blob(os.urandom(4096))
    _upload(c, base, shared)
    config, layer = make_config(), Blob(os.urandom(4096))
    _upload(c, repo, config)
    _upload(c, repo, layer)
    counter.on = True
    assert c.head(f"/v2/{repo}/blobs/{shared.digest}").status_code == 404
    counter.take()
    assert c.head(f"/v2/{repo}/blobs/{layer.digest}").status_code == 200
    _check("HEAD of a blob", counter.take(), BLOB_HEAD)
    r = c.post(f"/v2/{repo}/blobs/uploads/?mount={shared.digest}&from={base}")
    assert r.status_code == 201, r.text
    _check("mount from another repository", counter.take(), MOUNT)
    m = make_manifest(config=config, layers=[shared, layer])
    assert put_manifest(c, repo, "v1", m).status_code == 201
    _check("manifest PUT by tag", counter.take(), MANIFEST_PUT_NEW_REPOSITORY)
    for _ in range(2):
        r = c.get(f"/v2/{repo}/manifests/v1", headers={"Accept": m.media_type})
        assert r.status_code == 200 and r.content == m.body
        _check("manifest GET by tag", counter.take(), MANIFEST_GET_BY_TAG)
