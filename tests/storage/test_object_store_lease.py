"""Upload locks on the S3s people run: moto and Ceph RGW 16.2 (Debian's radosgw), both real servers.

RGW 16.2 matches ``If-Match`` only against the *unquoted* ETag and ignores the condition of a
``DELETE``; moto honours both as AWS does.  fastreg probes the store and uses what works:
* The probe's result per store (and the startup line of `fastreg serve` that reports it).
* A lock with a wrong spelling of its version is not silently lost: the refused renewal is
  logged and counted, and once its lease has passed another replica takes the lock over.
* A holder whose lock was broken cannot remove its successor's lock (on RGW, where a
  conditional delete would delete anyway, the lock is released by a conditional overwrite).
* Two `fastreg serve` replicas (lease 4 s, renewed every second): a PATCH on A lasting longer
  than two renewal periods, then the next PATCH on B at the right offset is accepted and the
  upload commits byte-exact; a replica killed with SIGKILL in the middle of a PATCH leaves an
  upload that the other continues once the lease has passed.
* A replica whose lock another process took logs it and counts it in
  ``registry_storage_lock_failures_total``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastreg.storage.driver import lease
from fastreg.storage.driver.base import Busy, PathNotFound
from tests.conftest import free_port
from tests.e2e.helpers import OCTET, digest_of, q, relative, start_upload, unique_repo
from tests.hostile.support import read_response, request_bytes

from .conftest import S3_BUCKET, S3Backend, _backend, s3_client
from .test_object_store_lock import _free, _versions, _wait_for_lock

SESSION = "/repositories/r/_uploads/u1"
LEASE = 4                       # seconds: renewed every second
EXPECTED = {"s3": lease.Conditions(create=True, replace=True, delete=True, form="quoted"),
            "rgw": lease.Conditions(create=True, replace=True, delete=False, form="unquoted")}


@pytest.fixture(params=["s3", "rgw"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> S3Backend:
    b = _backend(request, request.param, tmp_path)
    assert isinstance(b, S3Backend)
    b.kind = request.param  # type: ignore[attr-defined]
    return b


@pytest.fixture
def pair(store: S3Backend, root: str, run: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
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


def test_probe_finds_what_the_store_honours(pair: tuple[Any, Any], store: S3Backend, root: str,
                                             run: Callable[[Any], Any]) -> None:
    a, _ = pair
    assert run(a.lock_conditions()) == EXPECTED[store.kind]  # type: ignore[attr-defined]
    assert run(store.leftovers(root)) == []                  # the scratch key is gone


async def _holds(d: Any, path: str = SESSION) -> bool:
    try:
        async with d.exclusive(path):
            return True
    except Busy:
        return False


@pytest.mark.parametrize("store", ["rgw"], indirect=True)      # moto matches either spelling
def test_a_refused_renewal_is_logged_counted_and_the_lock_is_taken_over(
        pair: tuple[Any, Any], store: S3Backend, root: str, run: Callable[[Any], Any],
        caplog: pytest.LogCaptureFixture) -> None:
    """A holder whose renewals the store refuses (here: it spells its version in the form the
    store does not match, as fastreg did on RGW before probing) says so; the lock is not stuck."""
    a, b = pair
    a.lease_seconds = 2.0
    other = {"quoted": "unquoted", "unquoted": "quoted"}

    async def scenario() -> None:
        await a.put_content(f"{SESSION}/data", b"x")
        await a.lock_conditions()
        a.lease_form = other[a.lease_form]          # every conditional write of A is now refused
        before = lease.failures["renew"]
        release = asyncio.Event()
        holder = asyncio.create_task(_try_hold(a, release))
        taken = False
        for _ in range(40):                         # bounded: 20 s
            await asyncio.sleep(0.5)
            if await _holds(b):
                taken = True
                break
        release.set()
        await holder
        assert taken, "the lock whose renewals were refused was never taken over"
        assert lease.failures["renew"] > before
        assert await _free(b, store, root)

    with caplog.at_level(logging.WARNING, logger="fastreg"):
        run(scenario())
    assert "refused to renew the lock of " + SESSION in caplog.text


async def _try_hold(d: Any, release: asyncio.Event) -> None:
    async with d.exclusive(SESSION):
        await release.wait()


def test_a_broken_holder_cannot_remove_its_successors_lock(
        pair: tuple[Any, Any], store: S3Backend, root: str, run: Callable[[Any], Any],
        caplog: pytest.LogCaptureFixture) -> None:
    """A holds and stops renewing (it cannot reach the store); B breaks the expired lock and
    holds it; A then finishes and releases: B's lock stays, so a third process is still refused."""
    a, b = pair
    c = store.make(root)
    a.lease_seconds = 2.0

    async def scenario() -> None:
        await a.put_content(f"{SESSION}/data", b"x")
        await a.lock_conditions()
        real = a._lease_replace

        async def stalled(key: str, version: str, body: bytes) -> str | None:
            if body != lease.RELEASED:              # renewals never reach the store
                await asyncio.sleep(3600)
            return await real(key, version, body)

        a._lease_replace = stalled
        a_release, b_release = asyncio.Event(), asyncio.Event()
        ta = asyncio.create_task(_try_hold(a, a_release))
        tb = None
        for _ in range(40):                         # bounded: 20 s, until the lease has passed
            await asyncio.sleep(0.5)
            tb = asyncio.create_task(_try_hold(b, b_release))
            done, _ = await asyncio.wait({tb}, timeout=1.0)
            if not done:
                break                               # B holds it
            with pytest.raises(Busy):
                tb.result()
        else:
            raise AssertionError("B never broke A's expired lock")
        before = lease.failures["release"]
        a_release.set()
        await ta                                    # A releases what it thinks is its lock
        assert lease.failures["release"] == before + 1
        assert not await _holds(c), "A removed B's lock: a third process got in"
        got = await c._lease_read(c.key(f"{SESSION}/{lease.LOCK}"))
        assert got is not None and not lease._parse(got[1])[2]
        b_release.set()
        await tb
        assert await _holds(c)                      # released by B: free again
        await c.close()

    with caplog.at_level(logging.WARNING, logger="fastreg"):
        run(scenario())
    assert "lost the lock of " + SESSION in caplog.text


# -- two replicas ---------------------------------------------------------------------------------

def _serve(factory: Any, store: S3Backend, root: str, **config: Any) -> Any:
    params = {**store.params(root), "lockleaseseconds": LEASE}
    return factory(config={"storage": {"filesystem": None, "s3": params, "redirect": {"disable": True}}, **config})


def _lock_version(store: S3Backend, root: str) -> str | None:
    for k, (etag, _) in asyncio.run(_versions(store, root)).items():
        if k.endswith("/" + lease.LOCK):
            return etag
    return None


def test_startup_reports_the_stores_conditions(fastreg_factory: Any, store: S3Backend) -> None:
    srv = _serve(fastreg_factory, store, f"reg-{uuid.uuid4().hex[:8]}",     # metrics: a wrapped driver
                 log={"level": "info", "accesslog": {"disabled": True}},
                 http={"debug": {"addr": f"127.0.0.1:{free_port()}", "prometheus": {"enabled": True}}})
    want = EXPECTED[store.kind].describe()  # type: ignore[attr-defined]
    for _ in range(100):                               # bounded: 10 s
        if want in srv.log():
            break
        time.sleep(0.1)
    assert f"upload locks on s3 bucket {store.params('x')['bucket']}" in srv.log()
    assert want in srv.log(), srv.log()


def test_a_patch_longer_than_two_renewals_then_the_other_replica(fastreg_factory: Any, store: S3Backend) -> None:
    root = f"reg-{uuid.uuid4().hex[:8]}"
    a, b = _serve(fastreg_factory, store, root), _serve(fastreg_factory, store, root)
    repo = unique_repo("lease")
    first, second = os.urandom(300_000), os.urandom(200_000)
    held = 100_000
    with httpx.Client(base_url=b.url, timeout=60.0) as cb:
        loc = relative(start_upload(cb, repo).headers["Location"])
        head = {"Content-Type": OCTET, "Content-Range": f"0-{len(first) - 1}"}
        with socket.create_connection(("127.0.0.1", a.port)) as sa:
            sa.sendall(request_bytes("PATCH", loc, "a", head, b"", content_length=len(first)))
            sa.sendall(first[:held])
            _wait_for_lock(store, root)
            seen = {_lock_version(store, root)}
            for _ in range(100):                      # bounded: 20 s; until renewed twice
                time.sleep(0.2)
                seen.add(_lock_version(store, root))
                if len(seen - {None}) >= 3:
                    break
            assert len(seen - {None}) >= 3, f"A's lock was not renewed twice: {seen}\n{a.log()}"
            sa.sendall(first[held:])
            ra = read_response(sa)
        assert ra.status == 202, (ra.status, ra.body, a.log())
        assert ra.headers["range"] == f"0-{len(first) - 1}"
        end = len(first) + len(second) - 1
        rb = cb.patch(relative(ra.headers["location"]), content=second,
                      headers={"Content-Type": OCTET, "Content-Range": f"{len(first)}-{end}"})
        assert rb.status_code == 202, (rb.status_code, rb.text, a.log(), b.log())
        assert rb.headers["Range"] == f"0-{end}"
        whole = first + second
        put = cb.put(q(relative(rb.headers["Location"]), digest=digest_of(whole)))
        assert put.status_code == 201, (put.status_code, put.text, b.log())
        assert cb.get(f"/v2/{repo}/blobs/{digest_of(whole)}").content == whole
    assert "renew" not in a.log() and "lost the lock" not in a.log(), a.log()


def test_a_killed_writer_leaves_an_upload_another_replica_continues(fastreg_factory: Any,
                                                                    store: S3Backend) -> None:
    root = f"reg-{uuid.uuid4().hex[:8]}"
    a, b = _serve(fastreg_factory, store, root), _serve(fastreg_factory, store, root)
    repo = unique_repo("killed")
    first, lost, rest = os.urandom(100_000), os.urandom(400_000), os.urandom(150_000)
    with httpx.Client(base_url=b.url, timeout=60.0) as cb:
        r = cb.patch(relative(start_upload(cb, repo).headers["Location"]), content=first,
                     headers={"Content-Type": OCTET, "Content-Range": f"0-{len(first) - 1}"})
        assert r.status_code == 202, r.text
        loc = relative(r.headers["Location"])
        head = {"Content-Type": OCTET, "Content-Range": f"{len(first)}-{len(first) + len(lost) - 1}"}
        with socket.create_connection(("127.0.0.1", a.port)) as sa:
            sa.sendall(request_bytes("PATCH", loc, "a", head, b"", content_length=len(lost)))
            sa.sendall(lost[:300_000])                # more than a part: A has uploaded some
            _wait_for_lock(store, root)
            a.stop(signal.SIGKILL)
        busy = cb.patch(loc, content=rest, headers={"Content-Type": OCTET,
                                                    "Content-Range": f"{len(first)}-{len(first) + len(rest) - 1}"})
        assert busy.status_code == 416, (busy.status_code, busy.text)     # A's lease has not passed
        assert busy.headers["Range"] == f"0-{len(first) - 1}"
        for _ in range(60):                           # bounded: 30 s; the lease is 4 s
            time.sleep(0.5)
            r = cb.patch(loc, content=rest, headers={"Content-Type": OCTET,
                                                     "Content-Range": f"{len(first)}-{len(first) + len(rest) - 1}"})
            if r.status_code != 416:
                break
        assert r.status_code == 202, (r.status_code, r.text, b.log())
        whole = first + rest
        assert r.headers["Range"] == f"0-{len(whole) - 1}"
        put = cb.put(q(relative(r.headers["Location"]), digest=digest_of(whole)))
        assert put.status_code == 201, (put.status_code, put.text, b.log())
        assert cb.get(f"/v2/{repo}/blobs/{digest_of(whole)}").content == whole
    assert "broke the lock of" in b.log(), b.log()
    left = asyncio.run(_versions(store, root))
    assert [k for k in left if "/_uploads/" in k or k.startswith("mpu ") or ".fastreg-" in k] == [], left


def test_a_lost_lock_is_logged_and_counted_in_the_metrics(fastreg_factory: Any, store: S3Backend,
                                                          tmp_path: Path) -> None:
    """While A writes an upload, another process takes its lock (as a breaker would): A's next
    renewal finds it, logs it and counts it in registry_storage_lock_failures_total."""
    from tests.test_metrics import scrape, value
    root = f"reg-{uuid.uuid4().hex[:8]}"
    dport = free_port()
    a = _serve(fastreg_factory, store, root,
               http={"debug": {"addr": f"127.0.0.1:{dport}", "prometheus": {"enabled": True, "path": "/metrics"}}})
    metrics = f"http://127.0.0.1:{dport}/metrics"
    assert value(scrape(metrics), "registry_storage_lock_failures_total", kind="renew") == 0
    repo = unique_repo("lost")
    body = os.urandom(200_000)
    with httpx.Client(base_url=a.url, timeout=60.0) as ca:
        loc = relative(start_upload(ca, repo).headers["Location"])
        head = {"Content-Type": OCTET, "Content-Range": f"0-{len(body) - 1}"}
        with socket.create_connection(("127.0.0.1", a.port)) as sa:
            sa.sendall(request_bytes("PATCH", loc, "a", head, b"", content_length=len(body)))
            sa.sendall(body[:50_000])
            lock = next(k for k in _wait_for_lock(store, root) if k.endswith("/" + lease.LOCK))

            async def take() -> None:
                async with s3_client(store.svc.url, store.keys) as s3:
                    await s3.put_object(Bucket=S3_BUCKET, Key=lock,
                                        Body=b'{"owner": "someone else", "lease": 4, "n": 0}')

            asyncio.run(take())
            for _ in range(100):                          # bounded: 10 s; A renews every second
                if "lost the lock of" in a.log():
                    break
                time.sleep(0.1)
            sa.sendall(body[50_000:])
            read_response(sa)
    assert "lost the lock of" in a.log(), a.log()
    assert value(scrape(metrics), "registry_storage_lock_failures_total", kind="renew") == 1
