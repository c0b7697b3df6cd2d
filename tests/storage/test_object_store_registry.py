"""fastreg on object stores (moto, Azurite, the GCS emulator on 127.0.0.1): real `fastreg serve`
processes sharing one bucket/container.

* Stateless replicas: a chunked upload whose PATCHes alternate between two processes — one
  with the compiled digest engine, one with the pure-Python twin, which saves no hash states,
  so the other re-hashes the upload in progress from the store — completes with the right
  digest; both serve the blob (by presigned redirect where the store has them, else streamed).
* A layer of several part sizes (parts are 256 KiB here; AWS's 5 MiB minimum is the same code).
* What is stored afterwards follows Distribution's layout, with no upload debris (no objects
  under _uploads, no multipart uploads, no staged blocks, no pieces).
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

from .conftest import AzureBackend, Backend, GcsBackend, RgwBackend, S3Backend
from .services import Service

pytestmark = pytest.mark.e2e
PART = 256 * 1024


@pytest.fixture(params=["s3", "rgw", "s3+redis", "azure", "gcs"])
def store(request: pytest.FixtureRequest) -> Backend:
    if request.param == "s3":
        return S3Backend(request.getfixturevalue("moto_server"))
    if request.param == "rgw":
        return RgwBackend(request.getfixturevalue("rgw_server"))
    if request.param == "s3+redis":                 # the replicas also share one Redis cache
        b = S3Backend(request.getfixturevalue("moto_server"))
        b.redis = request.getfixturevalue("redis_server")  # type: ignore[attr-defined]
        return b
    if request.param == "azure":
        return AzureBackend(request.getfixturevalue("azurite"))
    return GcsBackend(request.getfixturevalue("gcs_emulator"))


def serve(factory: Any, store: Backend, root: str, *, redirect: bool = True,
          env: dict[str, str] | None = None) -> Any:
    env = dict(env or {})
    if isinstance(store, GcsBackend):
        env["STORAGE_EMULATOR_HOST"] = store.svc.url
    config: dict[str, Any] = {"storage": {"filesystem": None, store.name: store.params(root),
                                          "redirect": {"disable": not redirect}}}
    redis = getattr(store, "redis", None)
    if redis is not None:
        config["storage"]["cache"] = {"blobdescriptor": "redis"}
        config["redis"] = {"addr": f"127.0.0.1:{redis.port}"}
    return factory(config=config, env=env)


def stored(store: Backend, root: str) -> list[str]:
    return asyncio.run(store.leftovers(root))


def test_chunked_upload_alternates_between_replicas(fastreg_factory: Any, store: Backend) -> None:
    root = f"reg-{uuid.uuid4().hex[:8]}"
    a = serve(fastreg_factory, store, root)
    b = serve(fastreg_factory, store, root, redirect=False, env={"FASTREG_NO_EXTENSIONS": "1"})
    repo = unique_repo(store.name)
    data = os.urandom(6 * PART + 4321)
    d = digest_of(data)
    cuts = [0, 100_000, PART + 5, 3 * PART, 3 * PART + 1, 5 * PART + 7]
    with httpx.Client(base_url=a.url, timeout=60.0) as ca, httpx.Client(base_url=b.url, timeout=60.0) as cb:
        clients = [cb, ca]
        loc = relative(start_upload(ca, repo).headers["Location"])
        for i, (lo, hi) in enumerate(itertools.pairwise(cuts)):
            resp = clients[i % 2].patch(loc, content=data[lo:hi],
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

        # a: a presigned URL on the store where it has them; b (redirect disabled): streamed
        r = ca.get(f"/v2/{repo}/blobs/{d}")
        if store.name in ("s3", "azure"):
            assert r.status_code == 307 and r.headers["Location"].startswith(store.svc.url + "/"), r.headers
            assert httpx.get(r.headers["Location"], timeout=60.0).content == data
        else:
            assert r.status_code == 200 and r.content == data
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

    keys = stored(store, root)
    base = f"{root}/docker/registry/v2"
    hexd = d.split(":")[1]
    assert f"{base}/blobs/sha256/{hexd[:2]}/{hexd}/data" in keys
    assert f"{base}/repositories/{repo}/_layers/sha256/{hexd}/link" in keys
    assert f"{base}/repositories/{repo}/_manifests/tags/v1/current/link" in keys
    assert [k for k in keys if "/_uploads/" in k or "multipart" in k or ".fastreg-" in k] == []


def test_cancelled_upload_leaves_nothing(fastreg_factory: Any, store: Backend) -> None:
    """DELETE of a session that stored whole parts/blocks removes them from the store."""
    root = f"reg-{uuid.uuid4().hex[:8]}"
    a = serve(fastreg_factory, store, root)
    repo = unique_repo(store.name)
    data = os.urandom(2 * PART + 10)
    with httpx.Client(base_url=a.url, timeout=60.0) as c:
        loc = relative(start_upload(c, repo).headers["Location"])
        resp = c.patch(loc, content=data, headers={"Content-Type": OCTET})
        assert resp.status_code == 202
        during = stored(store, root)
        assert [k for k in during if "/_uploads/" in k and k.endswith("/data")], during
        if store.name == "s3":                           # the parts are in S3, not in a process
            assert [k for k in during if k.startswith("multipart upload")], during
        assert c.delete(relative(resp.headers["Location"])).status_code == 204
    keys = stored(store, root)
    assert [k for k in keys if "/_uploads/" in k or "multipart" in k or "/blobs/" in k] == [], keys


def test_deletes_are_seen_by_every_replica_through_the_cache(fastreg_factory: Any, moto_server: Service,
                                                             redis_server: Service) -> None:
    """With a shared Redis: b has a tag and a blob cached; a deletes them; b answers 404 — a deleted
    tag or blob never comes back through the cache."""
    store = S3Backend(moto_server)
    store.redis = redis_server  # type: ignore[attr-defined]
    root = f"reg-{uuid.uuid4().hex[:8]}"
    a = serve(fastreg_factory, store, root, redirect=False)
    b = serve(fastreg_factory, store, root, redirect=False)
    repo = unique_repo("cache")
    with httpx.Client(base_url=a.url, timeout=60.0) as ca, httpx.Client(base_url=b.url, timeout=60.0) as cb:
        config = make_config()
        layer = Blob(os.urandom(1000))
        push_blob(ca, repo, config)
        push_blob(ca, repo, layer)
        m = make_manifest(config=config, layers=[layer])
        assert put_manifest(ca, repo, "v1", m).status_code == 201
        for _ in range(2):                                   # fill, then hit
            assert cb.get(f"/v2/{repo}/manifests/v1", headers={"Accept": m.media_type}).content == m.body
            assert cb.head(f"/v2/{repo}/blobs/{layer.digest}").status_code == 200
        keys = asyncio.run(_redis_keys(redis_server.port))
        assert any(k.startswith("fastreg:c:") and k.endswith("/_manifests/tags/v1/current/link") for k in keys)
        assert ca.delete(f"/v2/{repo}/manifests/v1").status_code == 202     # deletes the tag
        assert cb.get(f"/v2/{repo}/manifests/v1", headers={"Accept": m.media_type}).status_code == 404
        assert ca.delete(f"/v2/{repo}/blobs/{layer.digest}").status_code == 202
        assert cb.head(f"/v2/{repo}/blobs/{layer.digest}").status_code == 404


async def _redis_keys(port: int) -> list[str]:
    import redis.asyncio as aioredis
    r = aioredis.Redis(port=port)
    try:
        return [k.decode() async for k in r.scan_iter(match="fastreg:*", count=1000)]
    finally:
        await r.aclose()


def test_keeps_serving_when_redis_is_down(fastreg_factory: Any, moto_server: Service) -> None:
    """Redis configured but not there: pushes and pulls work, from storage."""
    from tests.conftest import free_port
    store = S3Backend(moto_server)
    store.redis = Service("redis", None, free_port(), None)  # type: ignore[arg-type, attr-defined]
    a = serve(fastreg_factory, store, f"reg-{uuid.uuid4().hex[:8]}", redirect=False)
    repo = unique_repo("nocache")
    with httpx.Client(base_url=a.url, timeout=60.0) as c:
        layer = Blob(os.urandom(5000))
        push_blob(c, repo, layer)
        assert c.head(f"/v2/{repo}/blobs/{layer.digest}").status_code == 200
        assert c.get(f"/v2/{repo}/blobs/{layer.digest}").content == layer.data
        assert c.delete(f"/v2/{repo}/blobs/{layer.digest}").status_code == 202
        assert c.head(f"/v2/{repo}/blobs/{layer.digest}").status_code == 404
