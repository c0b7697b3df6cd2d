"""The online-GC protocol (fastreg.maintenance.gc docstring), each interleaving forced deterministically.

A real registry (fastreg's services over the filesystem driver, in this process) and a real
collector; the collector's phase hook runs a push at the exact point of the sweep under test.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from fastreg.digest import Digest
from fastreg.errors import RegistryError
from fastreg.maintenance import gc
from fastreg.registry import Registry
from fastreg.storage import layout
from fastreg.storage.driver.backends.filesystem import FilesystemDriver

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPO = "race/app"


def _digest(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


async def _push_blob(reg: Registry, data: bytes) -> Digest:
    async def body() -> AsyncIterator[bytes]:
        yield data

    d = _digest(data)
    st = await reg.uploads.start(REPO)
    await reg.uploads.commit(st, d, body())
    return d


def _manifest(config: bytes, layers: list[bytes]) -> bytes:
    def desc(data: bytes, mt: str) -> dict[str, object]:
        return {"mediaType": mt, "digest": str(_digest(data)), "size": len(data)}
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": desc(config, "application/vnd.oci.image.config.v1+json"),
                       "layers": [desc(x, "application/vnd.oci.image.layer.v1.tar") for x in layers]}).encode()


async def _push_image(reg: Registry, tag: str, old_layer: bytes) -> bytes:
    """A fresh config plus `old_layer`, which the client finds present and does not upload again."""
    config = json.dumps({"nonce": os.urandom(8).hex()}).encode()
    await _push_blob(reg, config)
    body = _manifest(config, [old_layer])
    await reg.manifests.put(REPO, tag, body, OCI_MANIFEST)
    return body


class World:
    def __init__(self, root: Path) -> None:
        self.driver = FilesystemDriver(str(root), fsync=False)
        self.reg = Registry(self.driver, secret=b"s" * 32, delete_enabled=True)
        self.root = root

    async def seed(self) -> tuple[bytes, bytes]:
        """An orphan blob (uploaded, never named) and plain garbage, both a day old."""
        orphan, garbage = os.urandom(4000), os.urandom(3000)
        await _push_blob(self.reg, orphan)
        await _push_blob(self.reg, garbage)
        t = time.time() - 86400
        for p in self.root.rglob("*"):
            os.utime(p, (t, t))
        return orphan, garbage

    async def exists(self, data: bytes) -> bool:
        return await self.reg.blobs.stat_data(_digest(data)) is not None

    async def collect(self, hook: Callable[[str], Awaitable[None]]) -> gc.Report:
        return await gc.Collector(self.driver, gc.Options(grace=0), phase=hook).run()


async def _until(cond: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(1000):                  # bounded: 10 s
        if await cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "data")


@pytest.mark.parametrize("phase", ["marked", "tombstoned"])
def test_push_before_the_second_mark_is_seen_by_it(world: World, phase: str) -> None:
    async def main() -> None:
        orphan, garbage = await world.seed()
        task: list[asyncio.Task[bytes]] = []

        async def hook(now: str) -> None:
            if now != phase:
                return
            # Pass 1 found the orphan unreferenced; now a push names it.
            task.append(asyncio.ensure_future(_push_image(world.reg, "v1", orphan)))
            if phase == "marked":          # no tombstones yet: the push just completes
                await task[0]
            else:                          # it sees the tombstone, vetoes and waits for us
                await _until(lambda: gc._exists(world.driver, gc.veto_path(_digest(orphan))), "the veto")

        report = await world.collect(hook)
        body = await task[0]
        assert await world.exists(orphan) and not await world.exists(garbage)
        assert report.rescued == 1 and report.deleted_blobs == 1
        assert (await world.reg.manifests.get(REPO, "v1")).body == body
    asyncio.run(main())


def test_push_after_the_second_mark_vetoes_the_deletion(world: World) -> None:
    async def main() -> None:
        orphan, garbage = await world.seed()
        task: list[asyncio.Task[bytes]] = []

        async def hook(phase: str) -> None:
            if phase == "remarked":        # too late for pass 2 to see it: only the veto saves it
                task.append(asyncio.ensure_future(_push_image(world.reg, "v1", orphan)))
                await _until(lambda: gc._exists(world.driver, gc.veto_path(_digest(orphan))), "the veto")

        report = await world.collect(hook)
        body = await task[0]               # the push waited for the collection, then succeeded
        assert await world.exists(orphan) and not await world.exists(garbage)
        assert report.rescued == 1
        assert (await world.reg.manifests.get(REPO, "v1")).body == body
        assert not (world.root / layout.GC_TOMBSTONES.lstrip("/")).exists()
    asyncio.run(main())


def test_a_veto_too_late_fails_the_push_and_puts_the_tag_back(world: World) -> None:
    async def main() -> None:
        orphan, garbage = await world.seed()
        before = await _push_image(world.reg, "v1", garbage)   # v1 names the "garbage": now live
        old = time.time() - 86400
        for p in world.root.rglob("*"):
            os.utime(p, (old, old))
        task: list[asyncio.Task[bytes]] = []

        async def hook(phase: str) -> None:
            if phase == "remarked":
                task.append(asyncio.ensure_future(_push_image(world.reg, "v1", orphan)))
                veto = gc.veto_path(_digest(orphan))
                await _until(lambda: gc._exists(world.driver, veto), "the veto")
                await world.driver.delete(veto)    # as if written just after the collector looked

        await world.collect(hook)
        with pytest.raises(RegistryError) as err:
            await task[0]
        assert err.value.code.value == "MANIFEST_BLOB_UNKNOWN"
        assert not await world.exists(orphan)
        world.reg.manifests._cache.clear()
        assert (await world.reg.manifests.get(REPO, "v1")).body == before   # the tag is as it was
    asyncio.run(main())


def test_push_after_the_sweep_is_refused(world: World) -> None:
    async def main() -> None:
        orphan, _ = await world.seed()
        errors: list[str] = []

        async def hook(phase: str) -> None:
            if phase == "swept":
                try:
                    await _push_image(world.reg, "v1", orphan)
                except RegistryError as exc:
                    errors.append(exc.code.value)

        await world.collect(hook)
        assert errors == ["MANIFEST_BLOB_UNKNOWN"]
        with pytest.raises(RegistryError):
            await world.reg.manifests.get(REPO, "v1")
    asyncio.run(main())


def test_a_dead_collection_does_not_block_pushes(world: World) -> None:
    async def main() -> None:
        orphan, _ = await world.seed()
        d = _digest(orphan)
        # A collector that died after writing its tombstone: its heartbeat is stale.
        await world.driver.put_content(gc.ACTIVE, json.dumps({"time": time.time() - gc.STALE - 10}).encode())
        await world.driver.put_content(gc.tombstone_path(d), b"")
        await _push_image(world.reg, "v1", orphan)           # no wait
        # The next collection clears the leftovers and runs.
        report = await world.collect(lambda _p: asyncio.sleep(0))
        assert report.deleted_blobs == 1 and await world.exists(orphan)
        assert not (world.root / layout.GC_TOMBSTONES.lstrip("/")).exists()
    asyncio.run(main())


def test_a_live_collection_is_not_run_twice(world: World) -> None:
    async def main() -> None:
        await world.seed()
        await world.driver.put_content(gc.ACTIVE, json.dumps({"time": time.time()}).encode())
        with pytest.raises(RuntimeError, match="another garbage collection"):
            await world.collect(lambda _p: asyncio.sleep(0))
    asyncio.run(main())


class _PausingDriver(FilesystemDriver):
    """Holds the first revision-link write (step P1) until `release` is set: the push has checked
    what its manifest names (P0) and not yet linked it."""

    def __init__(self, root: str) -> None:
        super().__init__(root, fsync=False)
        self.paused = asyncio.Event()
        self.release = asyncio.Event()

    async def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        if "/_manifests/revisions/" in path and not self.release.is_set():
            self.paused.set()
            await self.release.wait()
        await super().put_content(path, data, durable)


@pytest.mark.parametrize("until", ["swept", "ended"])
def test_a_sweep_between_the_check_and_the_links_fails_the_push(tmp_path: Path, until: str) -> None:
    """The push checked the orphan (present), then a collection swept it — and either still runs
    with its tombstone already gone ("swept") or has ended ("ended") — before the push wrote its
    links.  The push must fail, not succeed naming a deleted blob."""
    async def main() -> None:
        world = World(tmp_path / "data")
        world.driver = _PausingDriver(str(world.root))
        world.reg = Registry(world.driver, secret=b"s" * 32, delete_enabled=True)
        orphan, _ = await world.seed()
        push = asyncio.ensure_future(_push_image(world.reg, "v1", orphan))
        await asyncio.wait_for(world.driver.paused.wait(), 10)

        async def hook(phase: str) -> None:
            if phase == "swept" and until == "swept":
                world.driver.release.set()
                with pytest.raises(RegistryError) as err:
                    await push
                assert err.value.code.value == "MANIFEST_BLOB_UNKNOWN"

        report = await world.collect(hook)
        assert report.deleted_blobs >= 1 and not await world.exists(orphan)
        world.driver.release.set()
        if until == "ended":
            with pytest.raises(RegistryError) as err:
                await push
            assert err.value.code.value == "MANIFEST_BLOB_UNKNOWN"
        with pytest.raises(RegistryError):                       # the tag was put back (never existed)
            await world.reg.manifests.get(REPO, "v1")
    asyncio.run(main())


def test_without_a_collection_a_push_costs_no_second_check(world: World) -> None:
    """P2 with no `active` and an unchanged epoch: no re-check (the common case stays cheap)."""
    async def main() -> None:
        orphan, _ = await world.seed()
        guard = world.reg.manifests.guard
        since = await guard.epoch()
        assert await guard.confirm([_digest(orphan)], since) is False
        await world.collect(lambda _p: asyncio.sleep(0))          # deletes the orphan, new epoch
        assert await guard.confirm([_digest(orphan)], since) is True
        assert await guard.confirm([_digest(orphan)], await guard.epoch()) is False
    asyncio.run(main())
