"""The shared Redis cache (storage/driver/wrappers/rediscache.py) against a real redis-server on 127.0.0.1.

Two cached drivers on one store and one Redis play two replicas.  Writing to the store *behind*
the cache's back (through the inner driver) shows when a read is served by Redis; mutations
through either replica must make every replica see the store again — a deleted link never
comes back — and with Redis gone the drivers keep working on the store alone.
"""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fastreg.storage.driver.backends.inmemory import InMemoryDriver
from fastreg.storage.driver.base import PathNotFound
from fastreg.storage.driver.wrappers.rediscache import RedisCachedDriver

from .services import Service, start_redis

Run = Callable[[Any], Any]
LINK = "/docker/registry/v2/repositories/r/_manifests/tags/t/current/link"
TAGDIR = "/docker/registry/v2/repositories/r/_manifests/tags/t"


def replicas(port: int, n: int = 2) -> tuple[InMemoryDriver, list[RedisCachedDriver]]:
    store = InMemoryDriver()
    prefix = f"fastreg-test-{uuid.uuid4().hex[:8]}:"
    out = []
    for _ in range(n):
        inner = InMemoryDriver()
        inner._objects = store._objects          # one store, as replicas share a bucket
        out.append(RedisCachedDriver(inner, port=port, prefix=prefix, timeout=0.5))
    return store, out


def test_reads_are_served_from_redis_until_a_replica_mutates(redis_server: Service, run: Run) -> None:
    store, (a, b) = replicas(redis_server.port)

    async def go() -> None:
        await a.put_content(LINK, b"sha256:one")
        assert await b.get_content(LINK) == b"sha256:one"       # miss: read the store, fill
        assert (await b.stat(LINK)).size == 10
        await store.put_content(LINK, b"sha256:behind-the-back")
        assert await b.get_content(LINK) == b"sha256:one"       # hit: the store was not read
        assert await a.get_content(LINK) == b"sha256:one"       # the other replica shares it
        assert (await a.stat(LINK)).size == 10
        await a.put_content(LINK, b"sha256:two")                # a mutation through a replica
        assert await b.get_content(LINK) == b"sha256:two"
        assert (await b.stat(LINK)).size == 10
        await a.close()
        await b.close()
    run(go())


def test_delete_of_a_directory_invalidates_everything_below(redis_server: Service, run: Run) -> None:
    _, (a, b) = replicas(redis_server.port)

    async def go() -> None:
        await a.put_content(LINK, b"sha256:one")
        assert await b.get_content(LINK) == b"sha256:one"
        await b.stat(LINK)
        await a.delete(TAGDIR)
        with pytest.raises(PathNotFound):
            await b.get_content(LINK)
        with pytest.raises(PathNotFound):
            await b.stat(LINK)
        await a.close()
        await b.close()
    run(go())


def test_a_fill_that_raced_a_delete_is_refused(redis_server: Service, run: Run) -> None:
    """b looks up (miss), reads the old link, a deletes the tag, then b's fill arrives: refused."""
    _, (a, b) = replicas(redis_server.port)

    async def go() -> None:
        await a.put_content(LINK, b"sha256:old")
        hit, gens = await b._lookup("c", LINK)
        assert hit is None and gens is not None
        old = await b.inner.get_content(LINK)
        await a.delete(TAGDIR)
        await b._fill("c", LINK, gens, old)
        with pytest.raises(PathNotFound):
            await b.get_content(LINK)
        await a.close()
        await b.close()
    run(go())


def test_uploads_and_directories_are_not_cached(redis_server: Service, run: Run) -> None:
    store, (a,) = replicas(redis_server.port, 1)
    up = "/docker/registry/v2/repositories/r/_uploads/u/data"

    async def go() -> None:
        await a.put_content(up, b"12345")
        assert (await a.stat(up)).size == 5
        await store.put_content(up, b"1234567")
        assert (await a.stat(up)).size == 7
        await a.put_content("/d/x", b"1")
        assert (await a.stat("/d")).is_dir
        await store.delete("/d")
        with pytest.raises(PathNotFound):
            await a.stat("/d")
        await a.close()
    run(go())


def test_keeps_working_when_redis_is_down_and_recovers(tmp_path: Path, run: Run) -> None:
    svc = start_redis(tmp_path)
    port = svc.port
    store, (a, b) = replicas(port)
    try:
        async def cached_then_down() -> None:
            await a.put_content(LINK, b"sha256:one")
            assert await b.get_content(LINK) == b"sha256:one"
        run(cached_then_down())
        svc.stop()

        async def while_down() -> None:
            assert await b.get_content(LINK) == b"sha256:one"      # from the store
            await a.put_content(LINK, b"sha256:two")               # invalidation pending
            assert await b.get_content(LINK) == b"sha256:two"
            await a.delete(TAGDIR)
            with pytest.raises(PathNotFound):
                await b.get_content(LINK)
            assert a._pending                                      # a could not tell Redis
        run(while_down())
        svc = start_redis(tmp_path, port=port)

        async def recovered() -> None:
            for _ in range(100):                                  # a's retry loop delivers (bounded)
                if not a._pending:
                    break
                await asyncio.sleep(0.1)
            assert not a._pending
            b._down_until = 0.0                                   # skip b's back-off pause
            await a.put_content(LINK, b"sha256:three")
            assert await b.get_content(LINK) == b"sha256:three"
            await store.put_content(LINK, b"sha256:behind")
            assert await b.get_content(LINK) == b"sha256:three"    # cached again
            await a.close()
            await b.close()
        run(recovered())
    finally:
        svc.stop()


def test_invalidations_pending_through_an_outage_are_bounded(tmp_path: Path, run: Run) -> None:
    """More mutations than ``pending_max`` while Redis is down: the pending set collapses to the
    root, whose generation invalidates every entry once Redis is back — nothing stale is served."""
    svc = start_redis(tmp_path)
    port = svc.port
    _, (a, b) = replicas(port)
    a.pending_max = 10
    try:
        async def cached_then_down() -> None:
            await a.put_content(LINK, b"sha256:one")
            assert await b.get_content(LINK) == b"sha256:one"       # cached by b
        run(cached_then_down())
        svc.stop()

        async def while_down() -> None:
            for i in range(50):
                await a.put_content(f"/docker/registry/v2/repositories/r{i}/_manifests/x", b"y")
            await a.put_content(LINK, b"sha256:two")
            assert a._pending == {"/"}                                # 51 paths, kept as one
        run(while_down())
        svc = start_redis(tmp_path, port=port)

        async def recovered() -> None:
            for _ in range(100):
                if not a._pending:
                    break
                await asyncio.sleep(0.1)
            assert not a._pending
            b._down_until = 0.0
            assert await b.get_content(LINK) == b"sha256:two"         # b's entry was invalidated
            await a.close()
            await b.close()
        run(recovered())
    finally:
        svc.stop()
