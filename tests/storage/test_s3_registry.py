"""fastreg on S3 (moto's server on 127.0.0.1): real `fastreg serve` processes sharing one bucket.

* Stateless replicas: a chunked upload whose PATCHes alternate between two processes — one
  with the compiled digest engine, one with the pure-Python twin, which saves no hash states,
  so the other re-hashes the upload in progress from the bucket — completes with the right
  digest; both serve the blob, one by presigned redirect, one by streaming.
* A layer of several part sizes (parts are 256 KiB here; AWS's 5 MiB minimum is the same code).
* What is in the bucket afterwards follows Distribution's layout, with no upload debris.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import (
    OCTET,
    Blob,
    digest_of,
    make_config,
    make_manifest,
    push_blob,
    put_manifest,
    q,
    relative,
    start_upload,
    unique_repo,
)

from .conftest import s3_client
from .services import S3_BUCKET, S3_KEYS, S3_TEST_PART, Service

pytestmark = pytest.mark.e2e


def s3_config(moto: Service, root: str, *, redirect: bool = True) -> dict[str, Any]:
    return {"storage": {
        "filesystem": None,
        "s3": {"bucket": S3_BUCKET, "region": "us-east-1", "regionendpoint": moto.url, "forcepathstyle": True,
               "rootdirectory": f"/{root}", "chunksize": S3_TEST_PART, **S3_KEYS},
        "redirect": {"disable": not redirect},
    }}


def bucket_listing(moto: Service, root: str) -> tuple[list[str], list[str]]:
    async def go() -> tuple[list[str], list[str]]:
        keys: list[str] = []
        async with s3_client(moto.url) as s3:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=root + "/")
            async for page in pages:
                keys += [o["Key"] for o in page.get("Contents", [])]
            mpus = await s3.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=root + "/")
        return keys, [u["Key"] for u in mpus.get("Uploads", [])]
    return asyncio.run(go())


def test_chunked_upload_alternates_between_replicas(fastreg_factory: Any, moto_server: Service) -> None:
    root = f"reg-{uuid.uuid4().hex[:8]}"
    a = fastreg_factory(config=s3_config(moto_server, root))
    b = fastreg_factory(config=s3_config(moto_server, root, redirect=False), env={"FASTREG_NO_EXTENSIONS": "1"})
    repo = unique_repo("s3")
    data = os.urandom(6 * S3_TEST_PART + 4321)
    d = digest_of(data)
    cuts = [0, 100_000, S3_TEST_PART + 5, 3 * S3_TEST_PART, 3 * S3_TEST_PART + 1, 5 * S3_TEST_PART + 7]
    with httpx.Client(base_url=a.url, timeout=60.0) as ca, httpx.Client(base_url=b.url, timeout=60.0) as cb:
        clients = [cb, ca]
        loc = relative(start_upload(ca, repo).headers["Location"])
        for i, (lo, hi) in enumerate(itertools.pairwise(cuts)):
            c = clients[i % 2]
            resp = c.patch(loc, content=data[lo:hi],
                           headers={"Content-Type": OCTET, "Content-Range": f"{lo}-{hi - 1}"})
            assert resp.status_code == 202, (resp.status_code, resp.text, a.log(), b.log())
            assert resp.headers["Range"] == f"0-{hi - 1}"
            loc = relative(resp.headers["Location"])
            status = clients[(i + 1) % 2].get(loc)              # the other replica sees the same offset
            assert status.status_code == 204 and status.headers["Range"] == f"0-{hi - 1}"
        last = cuts[-1]
        resp = cb.put(q(loc, digest=d), content=data[last:],
                      headers={"Content-Type": OCTET, "Content-Range": f"{last}-{len(data) - 1}"})
        assert resp.status_code == 201, (resp.status_code, resp.text, b.log())
        assert resp.headers["Docker-Content-Digest"] == d

        # a: presigned redirect to the bucket; b: streams the bytes itself
        r = ca.get(f"/v2/{repo}/blobs/{d}")
        assert r.status_code == 307 and r.headers["Location"].startswith(moto_server.url + "/"), r.headers
        assert httpx.get(r.headers["Location"], timeout=60.0).content == data
        r = cb.get(f"/v2/{repo}/blobs/{d}")
        assert r.status_code == 200 and r.content == data
        for c in (ca, cb):
            r = c.get(f"/v2/{repo}/blobs/{d}", headers={"Range": "bytes=300000-300009"})
            assert r.status_code == 206 and r.content == data[300_000:300_010]
            assert c.head(f"/v2/{repo}/blobs/{d}").headers["Content-Length"] == str(len(data))

        # an image using it, pushed to b and pulled from a by tag
        config = make_config()
        push_blob(cb, repo, config)
        m = make_manifest(config=config, layers=[Blob(data)])
        assert put_manifest(cb, repo, "v1", m).status_code == 201
        got = ca.get(f"/v2/{repo}/manifests/v1", headers={"Accept": m.media_type})
        assert got.status_code == 200 and got.content == m.body

    keys, mpus = bucket_listing(moto_server, root)
    base = f"{root}/docker/registry/v2"
    hexd = d.split(":")[1]
    assert f"{base}/blobs/sha256/{hexd[:2]}/{hexd}/data" in keys
    assert f"{base}/repositories/{repo}/_layers/sha256/{hexd}/link" in keys
    assert f"{base}/repositories/{repo}/_manifests/tags/v1/current/link" in keys
    assert [k for k in keys if "/_uploads/" in k] == []
    assert mpus == []


def test_cancelled_upload_leaves_nothing(fastreg_factory: Any, moto_server: Service) -> None:
    """DELETE of a session that has whole parts aborts its multipart upload."""
    root = f"reg-{uuid.uuid4().hex[:8]}"
    a = fastreg_factory(config=s3_config(moto_server, root))
    repo = unique_repo("s3")
    data = os.urandom(2 * S3_TEST_PART + 10)
    with httpx.Client(base_url=a.url, timeout=60.0) as c:
        loc = relative(start_upload(c, repo).headers["Location"])
        resp = c.patch(loc, content=data, headers={"Content-Type": OCTET})
        assert resp.status_code == 202
        _, mpus = bucket_listing(moto_server, root)
        assert len(mpus) == 1                                  # the parts are in S3, not in a process
        assert c.delete(relative(resp.headers["Location"])).status_code == 204
    keys, mpus = bucket_listing(moto_server, root)
    assert [k for k in keys if "/_uploads/" in k] == [] and mpus == []
    assert not [k for k in keys if "/blobs/" in k]
