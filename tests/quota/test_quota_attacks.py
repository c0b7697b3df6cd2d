"""Attacks on storage quotas from outside, over HTTP against a running 2-worker server.

* A DELETE by digest racing a push of the same manifest: the push finds the manifest counted
  already (it adds nothing), the delete removes the revision and uncounts it, then the push links
  it again — stored, pullable, and counted nowhere, so the quota could be overshot by it.  Each
  round here races the two on the server's two workers and checks that the usage is exactly what
  is stored; and at the end a push the stored manifest leaves no room for is refused.  The same
  race on the filesystem driver answered 500 to about one push or delete in fifty (the delete's
  removal of the revision directory and the push's write of its link into it each found the other's
  work half done): both must succeed.
"""
from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.ops.conftest import tree
from tests.support.registry_client import (
    assert_error,
    make_layer,
    make_manifest,
    push_blob,
    push_manifest,
    put_manifest,
)

from .common import cost

ROUNDS = 400        # a push and a delete racing: about one round in seventy lost the count before the fix


def test_a_delete_racing_a_push_of_the_same_manifest_keeps_the_count(fastreg_factory: Any) -> None:
    m = make_manifest(layers=[make_layer(5000)])
    other = make_manifest(layers=[make_layer(4000)])
    limit = cost(m) + cost(other) - 1                       # m stored leaves no room for other
    srv = fastreg_factory({"fastreg": {"quota": {"rules": [{"repository": "race/**", "limit": limit}]}}},
                          workers=2)
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        for blob in (*m.blobs, *other.blobs):
            push_blob(c, "race/app", blob)

    async def rounds() -> list[tuple[int, bool, int | None]]:
        wrong: list[tuple[int, bool, int | None]] = []
        path, headers = f"/v2/race/app/manifests/{m.digest}", {"Content-Type": m.media_type}
        # no keep-alive: each request on a fresh connection, spread over both workers
        async with httpx.AsyncClient(base_url=srv.url, timeout=30,
                                     limits=httpx.Limits(max_keepalive_connections=0)) as ac:
            for i in range(ROUNDS):
                assert (await ac.put(path, content=m.body, headers=headers)).status_code == 201

                async def push_again(delay: float) -> httpx.Response:
                    await asyncio.sleep(delay)
                    return await ac.put(path, content=m.body, headers=headers)

                put, delete = await asyncio.gather(push_again(0.001 * (i % 5)), ac.delete(path))
                assert (put.status_code, delete.status_code) == (201, 202), (i, put.text, delete.text)
                stored = (await ac.head(path)).status_code == 200
                used = (await ac.get("/v2/_fastreg/usage/race/app")).json()["bytes"]
                if used != (cost(m) if stored else 0):
                    wrong.append((i, stored, used))
                    break
        return wrong

    assert asyncio.run(rounds()) == []                      # (round, stored, bytes counted)
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        push_manifest(c, "race/app", m, "kept")             # m is stored (again, if the last delete won)
        assert c.get("/v2/_fastreg/usage/race/app").json()["bytes"] == cost(m)
        r = put_manifest(c, "race/app", "other", other)
        assert_error(r, 403, "DENIED")
        assert r.json()["errors"][0]["detail"]["usage"] == cost(m)
        assert c.get("/v2/race/app/manifests/other").status_code == 404
        assert c.get("/v2/race/app/tags/list").json()["tags"] == ["kept"]


def test_a_mounted_blob_counts_at_the_manifest_put(fastreg_factory: Any) -> None:
    """A cross-repository mount of a blob larger than the quota stores nothing new and is accepted
    (as documented); the manifest referencing it is what counts, and is refused: DENIED with the
    blob's bytes, nothing stored changed, the usage unchanged."""
    big = make_layer(8000)
    m = make_manifest(layers=[big])
    srv = fastreg_factory({"fastreg": {"quota": {"rules": [{"repository": "team/**", "limit": 5000}]}}})
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        push_manifest(c, "free/app", m, "v1")                   # no quota there
        small = make_manifest()
        push_manifest(c, "team/app", small, "small")
        r = c.post(f"/v2/team/app/blobs/uploads/?mount={big.digest}&from=free/app")
        assert r.status_code == 201 and c.head(f"/v2/team/app/blobs/{big.digest}").status_code == 200
        r = c.post(f"/v2/team/app/blobs/uploads/?mount={m.blobs[0].digest}&from=free/app")
        assert r.status_code == 201
        before = tree(srv.root)
        r = put_manifest(c, "team/app", "v1", m)
        assert_error(r, 403, "DENIED")
        assert r.json()["errors"][0]["detail"] == {"repository": "team/app", "quota": "fastreg.quota.rules.0",
                                                   "usage": cost(small), "adding": cost(m), "limit": 5000}
        assert tree(srv.root) == before
        assert c.get("/v2/team/app/manifests/v1").status_code == 404
        assert c.get("/v2/_fastreg/usage/team/app").json()["bytes"] == cost(small)
