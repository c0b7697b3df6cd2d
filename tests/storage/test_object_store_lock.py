"""``exclusive(path)`` on object stores (lease.py) against the real emulators (moto, Azurite).

Two drivers on one root stand for two replicas: each has its own client and connections, and
only the store decides between them.
* Of two ``exclusive`` at once exactly one wins, the other is ``Busy``; released, it is free.
* Nothing at the path: ``PathNotFound``, and no lock object is left behind.
* The lock is invisible to ``list`` and ``delete`` of the session removes it.
* Upload purging removes a session directory holding nothing but a lock (its request died),
  and leaves a young session with its lock alone.
* A holder renews its lease; a lock not renewed for longer than its lease (its holder died) is
  broken, by exactly one of two breakers at once.
* Two `fastreg serve` replicas on one bucket/container: a PATCH held open on A (part of its body
  sent) and a PATCH of the same session sent to B: B answers 416 RANGE_INVALID with the session's
  Range and stores nothing; A finishes and the upload commits with A's digest.
"""
from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastreg.maintenance.purge import purge_uploads
from fastreg.storage import layout
from fastreg.storage.driver import lease
from fastreg.storage.driver.base import Busy, PathNotFound
from tests.hostile.support import read_response, request_bytes
from tests.support.registry_client import OCTET, digest_of, q, relative, start_upload, unique_repo

from .conftest import S3_BUCKET, AzureBackend, Backend, S3Backend, _backend, azure_container, s3_client
from .test_object_store_registry import serve

SESSION = "/repositories/r/_uploads/u1"


@pytest.fixture(params=["s3", "rgw", "azure"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return _backend(request, request.param, tmp_path)


@pytest.fixture
def pair(store: Backend, root: str, run: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
    a, b = store.make(root), store.make(root)
    yield a, b

    async def teardown() -> list[str]:
        try:
            await a.delete("/")
        except PathNotFound:
            pass
        await a.close()
        await b.close()
        return await store.leftovers(root)

    assert run(teardown()) == []


async def _try(d: Any, path: str, hold: asyncio.Event | None = None) -> bool:
    try:
        async with d.exclusive(path):
            if hold is not None:
                await hold.wait()
            return True
    except Busy:
        return False


def _lock_key(store: Backend, root: str, path: str = SESSION) -> str:
    return f"{root}{path}/{lease.LOCK}"


async def _free(d: Any, store: Backend, root: str, path: str = SESSION) -> bool:
    """The session's lock is released: gone, or (where the store ignores a conditional delete)
    overwritten with the released state."""
    got = await d._lease_read(d.key(f"{path}/{lease.LOCK}"))
    return got is None or lease._parse(got[1])[2]


def test_one_of_two_at_once_wins(pair: tuple[Any, Any], store: Backend, root: str,
                                 run: Callable[[Any], Any]) -> None:
    a, b = pair

    async def scenario() -> None:
        await a.put_content(f"{SESSION}/data", b"x")
        for _ in range(10):
            release = asyncio.Event()
            ta = asyncio.create_task(_try(a, SESSION, release))
            tb = asyncio.create_task(_try(b, SESSION, release))
            done, _ = await asyncio.wait({ta, tb}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            held = _lock_key(store, root) in await store.leftovers(root)
            release.set()             # (if both won, neither returns before this)
            assert [t.result() for t in done] == [False]            # the loser returns at once
            assert held
            assert sorted([await ta, await tb]) == [False, True]
            assert await _free(a, store, root)                       # released
        assert await a.list(SESSION) == ["data"]                   # the lock is never listed

    run(scenario())


def test_missing_path_is_not_found_and_leaves_nothing(pair: tuple[Any, Any], store: Backend, root: str,
                                                      run: Callable[[Any], Any]) -> None:
    a, _ = pair

    async def scenario() -> None:
        with pytest.raises(PathNotFound):
            async with a.exclusive(SESSION):
                raise AssertionError("locked nothing")
        assert await store.leftovers(root) == []

    run(scenario())


def test_deleting_the_session_under_the_lock(pair: tuple[Any, Any], store: Backend, root: str,
                                             run: Callable[[Any], Any]) -> None:
    """What a commit does: the holder deletes the session, lock included; the release is quiet,
    and the next request finds nothing (PathNotFound), creating nothing."""
    a, b = pair

    async def scenario() -> None:
        await a.put_content(f"{SESSION}/data", b"x")
        await a.put_content(f"{SESSION}/startedat", b"t")
        async with a.exclusive(SESSION):
            assert not await _try(b, SESSION)
            await a.delete(SESSION)
        with pytest.raises(PathNotFound):
            await _try(b, SESSION)
        assert await store.leftovers(root) == []

    run(scenario())


def test_a_holder_that_deleted_the_session_releases_nothing(pair: tuple[Any, Any], store: Backend, root: str,
                                                              run: Callable[[Any], Any]) -> None:
    """The holder deleted the session, lock included, and before it leaves the block another
    request makes the session again and locks it: leaving sends no release (nothing of the holder's
    is left), so the new holder keeps its lock and no lost lock is reported."""
    a, b = pair

    async def scenario() -> None:
        await a.put_content(f"{SESSION}/data", b"x")
        failures = dict(lease.failures)
        inside, leave = asyncio.Event(), asyncio.Event()

        async def second() -> None:
            await b.put_content(f"{SESSION}/data", b"y")
            async with b.exclusive(SESSION):
                inside.set()
                await leave.wait()

        async with a.exclusive(SESSION):
            await a.delete(SESSION)
            task = asyncio.create_task(second())
            await asyncio.wait_for(inside.wait(), 10)
        assert not await _try(a, SESSION)            # b still holds it
        leave.set()
        await task
        assert lease.failures == failures
        assert await _free(a, store, root)
        assert await a.list(SESSION) == ["data"]

    run(scenario())


def test_the_holder_may_look_for_the_path_itself(pair: tuple[Any, Any], store: Backend, root: str,
                                                 run: Callable[[Any], Any]) -> None:
    """``check_exists=False``: the lock does not look for the session; the holder does, and a
    PathNotFound it raises inside the block leaves no lock behind.  Two at once: one wins."""
    a, b = pair

    async def scenario() -> None:
        with pytest.raises(PathNotFound):
            async with a.exclusive(SESSION, check_exists=False):
                await a.stat(f"{SESSION}/data")
        assert await store.leftovers(root) == []
        await a.put_content(f"{SESSION}/data", b"x")
        async with a.exclusive(SESSION, check_exists=False):
            assert (await a.stat(f"{SESSION}/data")).size == 1
            assert not await _try(b, SESSION)
        assert await _free(a, store, root)

    run(scenario())


def test_purging_removes_a_lone_lock(pair: tuple[Any, Any], store: Backend, root: str,
                                     run: Callable[[Any], Any]) -> None:
    a, _ = pair
    live, dead = layout.upload_dir("r", "live"), layout.upload_dir("r", "dead")

    async def scenario() -> None:
        await a.put_content(f"{live}/startedat", b"2999-01-01T00:00:00Z")
        await a.put_content(f"{live}/data", b"x")
        await a.put_content(f"{dead}/data", b"x")
        async with a.exclusive(dead):
            await a.delete(f"{dead}/data")       # a request that died here leaves only its lock
            async with a.exclusive(live):
                assert await a.list(layout.uploads_dir("r")) == ["dead", "live"]
                report = await purge_uploads(a, 3600.0)
                assert report.purged == [dead]
                left = await store.leftovers(root)
                assert sorted(k.removeprefix(root) for k in left) == [
                    f"{live}/{lease.LOCK}", f"{live}/data", f"{live}/startedat"]

    run(scenario())


def test_holder_renews_its_lease(pair: tuple[Any, Any], store: Backend, root: str,
                                 run: Callable[[Any], Any]) -> None:
    """A live holder with a short lease keeps its lock well past the lease: it rewrites it."""
    a, b = pair
    a.lease_seconds = 2.0

    async def scenario() -> None:
        await a.put_content(f"{SESSION}/data", b"x")
        key = _lock_key(store, root).removeprefix(root)
        async with a.exclusive(SESSION):
            first = await a._lease_read(a.key(key))
            versions = {first[0]}
            for _ in range(16):                     # 8 s: four leases
                await asyncio.sleep(0.5)
                assert not await _try(b, SESSION)
                got = await a._lease_read(a.key(key))
                versions.add(got[0])
                assert got[2] <= 2.0 + 1.0          # (the store's clock counts whole seconds)
            assert len(versions) >= 4, versions     # renewed, each time a new version
        assert await _try(b, SESSION)

    run(scenario())


def test_expired_lease_is_broken_by_one(pair: tuple[Any, Any], store: Backend, root: str,
                                        run: Callable[[Any], Any]) -> None:
    """A holder that died (its lock stays, never renewed, lease 1 s): at first the lock is busy;
    once older than its lease, of two breakers at once exactly one takes it."""
    a, b = pair

    async def scenario() -> None:
        await a.put_content(f"{SESSION}/data", b"x")
        dead = b'{"owner": "dead", "lease": 1, "n": 0}'
        assert await a._lease_create(a.key(SESSION + "/" + lease.LOCK), dead) is not None
        assert not await _try(b, SESSION)
        for _ in range(40):                          # bounded: 20 s
            await asyncio.sleep(0.5)
            release = asyncio.Event()
            ta = asyncio.create_task(_try(a, SESSION, release))
            tb = asyncio.create_task(_try(b, SESSION, release))
            done, _ = await asyncio.wait({ta, tb}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            assert done, "both hold the lock"
            if any(t.result() is False for t in done) and len(done) == 2:
                continue                             # both refused: not expired yet
            release.set()
            results = sorted([await ta, await tb])
            if results == [False, False]:
                continue
            assert results == [False, True]
            break
        else:
            raise AssertionError("the expired lock was never broken")
        assert await _free(a, store, root)

    run(scenario())


# -- two replicas ---------------------------------------------------------------------------------

async def _versions(store: Backend, root: str) -> dict[str, tuple[str, int]]:
    """Every object under root with its version and size, as the service lists it (uncommitted
    Azure blocks and S3 multipart uploads included)."""
    if isinstance(store, AzureBackend):
        async with azure_container(store.svc.url) as cc:
            return {b.name: (str(b.etag), int(b.size)) async for b in
                    cc.list_blobs(name_starts_with=root + "/", include=["uncommittedblobs"])}
    assert isinstance(store, S3Backend)
    async with s3_client(store.svc.url, store.keys) as s3:
        objs = await s3.list_objects_v2(Bucket=S3_BUCKET, Prefix=root + "/")
        mpus = await s3.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=root + "/")
    out = {o["Key"]: (o["ETag"], o["Size"]) for o in objs.get("Contents", [])}
    out.update({f"mpu {u['UploadId']}": (u["Key"], 0) for u in mpus.get("Uploads", [])})
    return out


def _wait_for_lock(store: Backend, root: str) -> dict[str, tuple[str, int]]:
    for _ in range(200):                              # bounded: 20 s
        now = asyncio.run(_versions(store, root))
        if any(k.endswith("/" + lease.LOCK) for k in now):
            return now
        time.sleep(0.1)
    raise AssertionError(f"replica A never took the session's lock: {now}")


def test_second_replica_is_refused_while_the_first_writes(fastreg_factory: Any, store: Backend) -> None:
    root = f"reg-{uuid.uuid4().hex[:8]}"
    a = serve(fastreg_factory, store, root, redirect=False)
    b = serve(fastreg_factory, store, root, redirect=False)
    repo = unique_repo("lock")
    first = os.urandom(100_000)                       # stored before the race: the offset is not 0
    mine, theirs = os.urandom(300_000), os.urandom(300_000)
    held = 30_000                                     # A's bytes sent before B's PATCH (< one part)
    with httpx.Client(base_url=a.url, timeout=60.0) as ca, httpx.Client(base_url=b.url, timeout=60.0) as cb:
        loc = relative(start_upload(ca, repo).headers["Location"])
        r = cb.patch(loc, content=first, headers={"Content-Type": OCTET, "Content-Range": f"0-{len(first) - 1}"})
        assert r.status_code == 202, r.text
        loc = relative(r.headers["Location"])
        end = len(first) + len(mine) - 1
        head = {"Content-Type": OCTET, "Content-Range": f"{len(first)}-{end}"}
        with socket.create_connection(("127.0.0.1", a.port)) as sa:
            sa.sendall(request_bytes("PATCH", loc, "a", head, b"", content_length=len(mine)))
            sa.sendall(mine[:held])
            before = _wait_for_lock(store, root)
            rb = cb.patch(loc, content=theirs, headers=head)
            assert rb.status_code == 416, (rb.status_code, rb.text, b.log())
            assert [e["code"] for e in rb.json()["errors"]] == ["RANGE_INVALID"], rb.text
            assert rb.headers["Range"] == f"0-{len(first) - 1}"
            assert asyncio.run(_versions(store, root)) == before     # B stored nothing
            sa.sendall(mine[held:])
            ra = read_response(sa)
        assert ra.status == 202, (ra.status, ra.body, a.log())
        assert ra.headers["range"] == f"0-{end}"
        loc = relative(ra.headers["location"])
        whole = first + mine
        put = cb.put(q(loc, digest=digest_of(whole)))
        assert put.status_code == 201, (put.status_code, put.text, b.log())
        assert ca.get(f"/v2/{repo}/blobs/{digest_of(whole)}").content == whole
        assert cb.get(f"/v2/{repo}/blobs/{digest_of(whole)}").content == whole
    left = asyncio.run(_versions(store, root))
    assert [k for k in left if "/_uploads/" in k or k.startswith("mpu ") or ".fastreg-" in k] == [], left
