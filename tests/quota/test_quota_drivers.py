"""Storage quotas on the filesystem, in memory and on moto's S3 server, through the registry
services: usage counts each blob once per repository; a manifest PUT past the limit is refused with
DENIED (usage and limit in the message) before anything is written, and accepted after a delete
and gc; a blob alone past the limit is refused at the upload's end and not stored; racing pushes
from two registries on one storage never take a quota past its limit; gc's recount heals drift."""
from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from fastreg.digest import parse_digest
from fastreg.errors import RegistryError
from fastreg.maintenance import gc
from fastreg.retention.quota import TOTALS, Quotas, Usage, recompute, record_path
from fastreg.storage.driver.base import StorageDriver, StorageError
from tests.storage.conftest import _backend
from tests.support.direct_push import push_blob, push_manifest
from tests.support.registry_client import make_layer, make_manifest

from .common import cost, registry

DAY = 86400.0
KINDS = ["filesystem", "inmemory", "s3"]


async def usage_of(q: Quotas, name: str) -> int:
    doc = await q.usage(name)
    return int(doc["bytes"])


@pytest.mark.parametrize("kind", KINDS)
def test_refused_past_the_limit_accepted_after_delete_and_gc(request: pytest.FixtureRequest, tmp_path: Path,
                                                             kind: str) -> None:
    backend = _backend(request, kind, tmp_path)
    root = f"quota-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        driver: StorageDriver = backend.make(root)
        base = make_layer(3000)
        a = make_manifest(layers=[base, make_layer(2000)])
        a2 = make_manifest(layers=[base, make_layer(10)])       # shares the base layer with a
        b = make_manifest(layers=[make_layer(2500)])
        limit = cost(a, a2) + cost(b) - 1                       # a and a2 fit; b on top does not
        reg = registry(driver, tmp_path, {"rules": [{"repository": "team/**", "limit": limit}]})
        q = reg.manifests.quota
        assert isinstance(q, Quotas)
        await push_manifest(reg, "team/app", a, "v1")
        await push_manifest(reg, "team/app", a, "v1-again")      # the same manifest again: no change
        assert await usage_of(q, "team/app") == cost(a)
        await push_manifest(reg, "team/app", a2, "v2")
        assert await usage_of(q, "team/app") == cost(a, a2)     # the base layer counted once
        for blob in b.blobs:                                    # each blob fits on its own
            await push_blob(reg, "team/app", blob)
        before = sorted(await backend.leftovers(root))
        with pytest.raises(RegistryError) as refused:
            await reg.manifests.put("team/app", "v3", b.body, b.media_type)
        err = refused.value
        assert err.code.value == "DENIED"
        used = cost(a, a2)
        assert f"use {used} bytes" in err.message and f"of {limit} " in err.message, err.message
        assert f"would add {cost(b)} bytes" in err.message and "fastreg.quota.rules.0" in err.message
        assert err.detail == {"repository": "team/app", "quota": "fastreg.quota.rules.0", "usage": used,
                              "adding": cost(b), "limit": limit}
        assert sorted(await backend.leftovers(root)) == before  # nothing written, nothing visible
        with pytest.raises(RegistryError):
            await reg.manifests.get("team/app", "v3")
        assert await usage_of(q, "team/app") == used
        # another repository is not covered by the rule
        await push_manifest(reg, "dev/app", b, "v3")
        # delete a (and its tags), collect: b fits now
        await reg.manifests.delete("team/app", a.digest)
        assert await usage_of(q, "team/app") == cost(a2)
        await gc.collect(driver, gc.Options(now=time.time() + DAY))
        await push_manifest(reg, "team/app", b, "v3")
        assert (await reg.manifests.get("team/app", "v3")).body == b.body
        assert await usage_of(q, "team/app") == cost(a2, b)
        doc = await q.usage("team/app")
        assert doc["quotas"] == [{"scope": "team/**", "key": "fastreg.quota.rules.0", "limit": limit,
                                  "usage": cost(a2, b)}]
        await driver.close()

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_a_blob_alone_past_the_limit_is_refused_at_upload(request: pytest.FixtureRequest, tmp_path: Path,
                                                          kind: str) -> None:
    backend = _backend(request, kind, tmp_path)
    root = f"quota-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        driver: StorageDriver = backend.make(root)
        small = make_manifest(layers=[make_layer(100)])
        reg = registry(driver, tmp_path, {"limit": cost(small) + 4000})
        await push_manifest(reg, "any/app", small, "v1")
        before = sorted(await backend.leftovers(root))
        big = make_layer(4001)
        with pytest.raises(RegistryError) as refused:
            await push_blob(reg, "any/app", big)
        assert refused.value.code.value == "DENIED"
        assert "the registry use" in refused.value.message and "this blob would add 4001 bytes" in refused.value.message
        assert sorted(await backend.leftovers(root)) == before  # not stored, the session removed
        assert await reg.blobs.stat_data(parse_digest(big.digest)) is None
        await push_blob(reg, "any/app", make_layer(4000))       # exactly up to the limit: accepted
        await driver.close()

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["filesystem", "s3"])
def test_two_registries_racing_for_the_last_bytes(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    """Two registries (two drivers on one storage, as two replicas) push 8 manifests each at once;
    the quota leaves room for exactly 5: exactly 5 are admitted, the rest refused, and what is
    stored and counted is exactly those 5."""
    backend = _backend(request, kind, tmp_path)
    root = f"quota-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        drivers = [backend.make(root), backend.make(root)]
        images = [make_manifest(layers=[make_layer(1000)]) for _ in range(16)]
        each = cost(images[0])
        assert all(cost(m) == each for m in images)
        limit = 5 * each + each // 2
        regs = [registry(d, tmp_path, {"rules": [{"repository": "race/**", "limit": limit}]}) for d in drivers]
        for i, m in enumerate(images):
            for blob in m.blobs:
                await push_blob(regs[i % 2], "race/app", blob)

        async def put(i: int) -> str:
            m = images[i]
            try:
                await regs[i % 2].manifests.put("race/app", f"t{i}", m.body, m.media_type)
                return "ok"
            except RegistryError as exc:
                return exc.code.value

        outcomes = await asyncio.gather(*(put(i) for i in range(16)))
        assert sorted(outcomes) == ["DENIED"] * 11 + ["ok"] * 5, outcomes
        admitted = [images[i] for i, o in enumerate(outcomes) if o == "ok"]
        assert sorted(await regs[0].tags.all("race/app")) == sorted(f"t{i}" for i, o in enumerate(outcomes)
                                                                     if o == "ok")
        q = regs[1].manifests.quota
        assert isinstance(q, Quotas)
        assert await usage_of(q, "race/app") == cost(*admitted) <= limit
        assert (await q.usage("race/app"))["quotas"][0]["usage"] == cost(*admitted)
        for d in drivers:
            await d.close()

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_recount_heals_drift(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    """A record that lost a manifest (an undercount) and totals that were lost are recounted from
    the manifests; the recount reports the drift; a missing record is rebuilt at the next push."""
    backend = _backend(request, kind, tmp_path)
    root = f"quota-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        driver: StorageDriver = backend.make(root)
        a, b = make_manifest(layers=[make_layer(700)]), make_manifest(layers=[make_layer(800)])
        reg = registry(driver, tmp_path, {"rules": [{"repository": "x/**", "limit": 10**6}]})
        q = reg.manifests.quota
        assert isinstance(q, Quotas)
        await push_manifest(reg, "x/app", a, "a")
        await push_manifest(reg, "x/app", b, "b")
        rec = Usage.loads(await driver.get_content(record_path("x/app")))
        rec.remove(b.digest, [(b.digest, b.size), *((x.digest, x.size) for x in b.blobs)])
        await driver.put_content(record_path("x/app"), rec.dumps())        # drift: b forgotten
        await driver.delete(TOTALS)
        dry = await recompute(driver, ["x/**"], dry_run=True)
        assert dry.drifted == [("x/app", cost(a), cost(a, b))] and dry.drift == -cost(b)
        assert await usage_of(q, "x/app") == cost(a)                          # a dry run writes nothing
        done = await recompute(driver, ["x/**"])
        assert done.repositories == 1 and done.bytes == cost(a, b)
        assert await usage_of(q, "x/app") == cost(a, b)
        assert (await q.usage("x/app"))["quotas"][0]["usage"] == cost(a, b)
        # a record lost altogether: the next push counts the repository again, and the totals
        # count it twice (drift errs on the side of refusing early) until the next recount
        await driver.delete(record_path("x/app"))
        c = make_manifest(layers=[make_layer(900)])
        await push_manifest(reg, "x/app", c, "c")
        assert await usage_of(q, "x/app") == cost(a, b, c)
        assert (await q.usage("x/app"))["quotas"][0]["usage"] == cost(a, b, c) + cost(a, b)
        await recompute(driver, ["x/**"])
        assert (await q.usage("x/app"))["quotas"][0]["usage"] == cost(a, b, c)
        await driver.close()

    asyncio.run(main())


def test_a_failed_push_gives_its_count_back(tmp_path: Path) -> None:
    """A push that fails after it was counted: if its revision link was never written, the count is
    given back (the same push then succeeds within the limit); if the failure came after the link
    (the tag), the manifest is in the repository and stays counted."""
    from fastreg.storage.driver.backends.filesystem import FilesystemDriver
    from fastreg.storage.driver.wrappers.faulty import FaultyDriver, Rule

    async def main() -> None:
        rules = [Rule(frozenset({"put_content"}), path="*/_manifests/revisions/*/link", action="eio", times=1)]
        driver = FaultyDriver(FilesystemDriver(str(tmp_path / "data")), rules)
        a, b = make_manifest(layers=[make_layer(1000)]), make_manifest(layers=[make_layer(1000)])
        reg = registry(driver, tmp_path, {"limit": cost(a) + 10})
        q = reg.manifests.quota
        assert isinstance(q, Quotas)
        for blob in a.blobs:
            await push_blob(reg, "f/app", blob)
        with pytest.raises(StorageError):
            await reg.manifests.put("f/app", "v1", a.body, a.media_type)      # the revision link fails
        assert await usage_of(q, "f/app") == 0
        await reg.manifests.put("f/app", "v1", a.body, a.media_type)          # fits again
        assert await usage_of(q, "f/app") == cost(a)
        # the tag's write fails after the revision link: counted, as the manifest is there
        await reg.manifests.delete("f/app", a.digest)
        driver.rules = [Rule(frozenset({"put_content"}), path="*/_manifests/tags/*/current/link", action="eio",
                             times=1)]
        with pytest.raises(StorageError):
            await reg.manifests.put("f/app", "v1", a.body, a.media_type)
        assert await reg.manifests.get("f/app", a.digest)
        assert await usage_of(q, "f/app") == cost(a)
        for blob in b.blobs:                                                   # no room left for b
            with pytest.raises(RegistryError):
                await push_blob(reg, "f/app", blob)

    asyncio.run(main())
