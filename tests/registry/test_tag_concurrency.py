"""``storage.tag.concurrencylimit`` (Distribution 3): deleting a manifest by digest looks up and
removes the tags naming it, at most `limit` storage calls at a time.

The driver here is the real in-memory driver with a probe that counts calls in flight (each call
yields to the loop before and after, so calls overlap whenever the caller allows it).
"""
from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import pytest

from fastreg.digest import digest_bytes
from fastreg.errors import RegistryError
from fastreg.registry.tags import TagStore
from fastreg.storage.driver.backends.inmemory import InMemoryDriver
from fastreg.storage.driver.base import StorageError
from tests.support.registry_client import make_manifest, push_manifest, put_manifest, unique_repo


class Probe(InMemoryDriver):
    def __init__(self, broken: str | None = None) -> None:
        super().__init__()
        self.in_flight = 0
        self.peak = 0
        self.broken = broken       # a path whose reads fail (not a missing path: a storage error)

    async def _counted(self, coro: Any) -> Any:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0)
            result = await coro
            await asyncio.sleep(0)
            return result
        finally:
            self.in_flight -= 1

    async def get_content(self, path: str) -> bytes:
        if path == self.broken:
            await asyncio.sleep(0)
            raise StorageError(path, "injected read failure")
        return await self._counted(super().get_content(path))  # type: ignore[no-any-return]

    async def delete(self, path: str) -> None:
        await self._counted(super().delete(path))


async def tagged(driver: Probe, limit: int) -> tuple[TagStore, Any, Any, list[str], list[str]]:
    tags = TagStore(driver, concurrency=limit)
    d1, d2 = digest_bytes(b"one", "sha256"), digest_bytes(b"two", "sha256")
    ones = [f"a{i:02d}" for i in range(25)]
    twos = [f"b{i:02d}" for i in range(7)]
    for t in ones:
        await tags.tag("repo", t, d1, new=True)
    for t in twos:
        await tags.tag("repo", t, d2, new=True)
    driver.peak = 0
    return tags, d1, d2, ones, twos


@pytest.mark.parametrize("limit", [1, 3, 8])
def test_lookup_and_removal_are_bounded(limit: int) -> None:
    async def go() -> None:
        driver = Probe()
        tags, d1, d2, ones, twos = await tagged(driver, limit)
        assert await tags.pointing_at("repo", d1) == ones
        assert driver.peak == limit             # bounded, and the bound is used
        driver.peak = 0
        await tags.remove("repo", ones)
        assert driver.peak == limit
        assert await tags.all("repo") == twos
        assert await tags.pointing_at("repo", d2) == twos
        assert await tags.pointing_at("repo", d1) == []

    asyncio.run(go())


def test_default_limit_is_the_cpu_count() -> None:
    assert TagStore(InMemoryDriver()).concurrency == (os.cpu_count() or 1)
    assert TagStore(InMemoryDriver(), concurrency=-1).concurrency == (os.cpu_count() or 1)


def test_a_storage_error_is_raised_as_it_is() -> None:
    async def go() -> None:
        from fastreg.storage import layout
        driver = Probe(broken=layout.tag_current_link("repo", "a07"))
        tags, d1, *_ = await tagged(driver, 4)
        with pytest.raises(StorageError, match="injected read failure"):
            await tags.pointing_at("repo", d1)
        await asyncio.sleep(0.01)
        assert driver.in_flight == 0            # the other lookups were cancelled or finished
        with pytest.raises(RegistryError, match="NAME_UNKNOWN"):
            await tags.all("nope")
        assert await tags.pointing_at("nope", d1) == []     # no tags: none names d1 (Distribution's Lookup)

    asyncio.run(go())


@pytest.mark.e2e
def test_delete_by_digest_removes_every_tag(fastreg_factory: Any) -> None:
    srv = fastreg_factory(config={"storage": {"tag": {"concurrencylimit": 2}}})
    repo = unique_repo("tagdelete")
    doomed, kept = make_manifest(), make_manifest()
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        push_manifest(c, repo, doomed, "t00")
        push_manifest(c, repo, kept, "keep0")
        for i in range(1, 30):
            assert put_manifest(c, repo, f"t{i:02d}", doomed).status_code == 201
        for i in range(1, 4):
            assert put_manifest(c, repo, f"keep{i}", kept).status_code == 201
        r = c.delete(f"/v2/{repo}/manifests/{doomed.digest}")
        assert r.status_code == 202, r.text
        assert c.get(f"/v2/{repo}/tags/list").json()["tags"] == ["keep0", "keep1", "keep2", "keep3"]
        assert c.get(f"/v2/{repo}/manifests/t17", headers={"Accept": doomed.media_type}).status_code == 404
        got = c.get(f"/v2/{repo}/manifests/keep2", headers={"Accept": kept.media_type})
        assert got.status_code == 200 and got.content == kept.body
    assert "storage.tag" not in srv.log()       # no "not used" warning
