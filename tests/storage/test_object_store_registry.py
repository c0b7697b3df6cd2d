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

from .conftest import AzureBackend, Backend, GcsBackend, S3Backend

pytestmark = pytest.mark.e2e
PART = 256 * 1024


@pytest.fixture(params=["s3", "azure", "gcs"])
def store(request: pytest.FixtureRequest) -> Backend:
    if request.param == "s3":
        return S3Backend(request.getfixturevalue("moto_server"))
    if request.param == "azure":
        return AzureBackend(request.getfixturevalue("azurite"))
    return GcsBackend(request.getfixturevalue("gcs_emulator"))


def serve(factory: Any, store: Backend, root: str, *, redirect: bool = True,
          env: dict[str, str] | None = None) -> Any:
    env = dict(env or {})
    if isinstance(store, GcsBackend):
        env["STORAGE_EMULATOR_HOST"] = store.svc.url
    return factory(config={"storage": {"filesystem": None, store.name: store.params(root),
                                       "redirect": {"disable": not redirect}}}, env=env)


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
