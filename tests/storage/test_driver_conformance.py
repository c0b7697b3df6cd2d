"""One conformance suite for every storage driver (see fastreg/storage/driver/base.py).

Drivers come from tests/storage/conftest.py: filesystem, in-memory and the object stores on
real servers on 127.0.0.1 (moto for S3, ...).  Each test gets a fresh root; at teardown the
suite asserts no driver debris (temporary files, abandoned multipart uploads) and that
``delete("/")`` leaves nothing behind, as the service itself lists it.
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from fastreg.storage.driver.base import InvalidOffset, InvalidPath, PathNotFound, StorageDriver, StorageError

from .conftest import Backend
from .faults import CuttableProxy

Run = Callable[[Any], Any]
PART = 256 * 1024        # the object-store drivers' part size in these tests (services.S3_TEST_PART)


async def collect(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in it])


def test_put_get_and_overwrite(driver: StorageDriver, run: Run) -> None:
    async def go() -> None:
        await driver.put_content("/a/b/c", b"one")
        assert await driver.get_content("/a/b/c") == b"one"
        await driver.put_content("/a/b/c", b"two!")
        assert await driver.get_content("/a/b/c") == b"two!"
        assert (await driver.stat("/a/b/c")).size == 4
        assert (await driver.stat("/a/b")).is_dir
        assert not (await driver.stat("/a/b/c")).is_dir
    run(go())


def test_zero_byte_object(driver: StorageDriver, run: Run) -> None:
    async def go() -> None:
        await driver.put_content("/z", b"")
        assert await driver.get_content("/z") == b""
        info = await driver.stat("/z")
        assert info.size == 0 and not info.is_dir
        assert await collect(driver.reader("/z")) == b""
        assert await collect(driver.reader("/z", 0, 0)) == b""
        with pytest.raises(InvalidOffset):
            await collect(driver.reader("/z", 1))
        # an empty writer commits an empty object; appending to it works
        w = await driver.writer("/zw/data")
        await w.commit()
        assert await driver.get_content("/zw/data") == b""
        w = await driver.writer("/zw/data", append=True)
        assert w.size == 0
        await w.write(b"after")
        await w.commit()
        assert await driver.get_content("/zw/data") == b"after"
        # zero-byte objects move and delete like any other
        await driver.move("/z", "/z2")
        assert await driver.get_content("/z2") == b""
        await driver.delete("/z2")
        with pytest.raises(PathNotFound):
            await driver.stat("/z2")
    run(go())


def test_missing_paths_are_typed_errors(driver: StorageDriver, run: Run) -> None:
    async def go() -> None:
        for op in (driver.get_content("/nope"), driver.stat("/nope"), driver.list("/nope"),
                   driver.delete("/nope"), driver.move("/nope", "/other")):
            with pytest.raises(PathNotFound):
                await op
        with pytest.raises(PathNotFound):
            await collect(driver.reader("/nope"))
        with pytest.raises(PathNotFound):
            await collect(driver.reader("/nope", 10, 5))
    run(go())


@pytest.mark.parametrize("bad", ["relative", "/a/../b", "/a//b", "/a/./b", "/a\x00b", "/a\\b"])
def test_bad_paths_rejected(driver: StorageDriver, run: Run, bad: str) -> None:
    with pytest.raises(InvalidPath):
        run(driver.put_content(bad, b"x"))


def test_writer_append_and_resume(driver: StorageDriver, run: Run) -> None:
    data = os.urandom(300_000)
    seen = hashlib.sha256()

    async def go() -> None:
        w = await driver.writer("/up/data")
        await w.write(data[:100_000], seen.update)
        await w.write(data[100_000:100_010], seen.update)
        assert w.size == 100_010
        await w.close()
        assert (await driver.stat("/up/data")).size == 100_010
        w2 = await driver.writer("/up/data", append=True)
        assert w2.size == 100_010
        await w2.write(memoryview(data)[100_010:], seen.update)
        await w2.commit()
        assert await driver.get_content("/up/data") == data
        assert (await driver.stat("/up/data")).size == len(data)
    run(go())
    assert seen.digest() == hashlib.sha256(data).digest()


def test_writer_many_chunks_of_mixed_sizes(driver: StorageDriver, run: Run) -> None:
    """Small and large chunks in any order (writers may batch them): every byte lands once,
    in order, and `observe` sees them in the same order; a close keeps all that was accepted."""
    rnd = random.Random(7)
    sizes = [rnd.choice((1, 1000, 65_536, 65_537, 400_000, 1 << 20)) for _ in range(24)] + [5 << 20, 3]
    sizes[13:13] = [200_000] + [1] * 1500     # a burst of tiny chunks behind a large one (IOV_MAX)
    data = os.urandom(sum(sizes))
    seen = hashlib.sha256()

    async def go() -> None:
        w = await driver.writer("/up/mixed")
        pos = 0
        for i, n in enumerate(sizes):
            await w.write(memoryview(data)[pos:pos + n] if i % 2 else data[pos:pos + n], seen.update)
            pos += n
            if i == 11:                     # an interrupted request: close, then append
                await w.close()
                assert (await driver.stat("/up/mixed")).size == pos
                w = await driver.writer("/up/mixed", append=True)
                assert w.size == pos
        assert w.size == len(data)
        await w.commit()
        assert await collect(driver.reader("/up/mixed", chunk_size=1 << 20)) == data
    run(go())
    assert seen.digest() == hashlib.sha256(data).digest()


def test_directory_renames_when_advertised(driver: StorageDriver, run: Run) -> None:
    """``directory_renames``: move() of a directory onto a missing path takes its contents."""
    if not driver.capabilities.directory_renames:
        assert driver.name != "filesystem"  # the filesystem driver must advertise it
        return

    async def go() -> None:
        await driver.put_content("/a/sess/data", b"bytes")
        await driver.move("/a/sess", "/b/x/blob")
        assert await driver.get_content("/b/x/blob/data") == b"bytes"
        assert await driver.list("/a") == []
        await driver.put_content("/a/two/data", b"other")
        with pytest.raises(StorageError):   # onto a non-empty directory: refused, nothing lost
            await driver.move("/a/two", "/b/x/blob")
        assert await driver.get_content("/b/x/blob/data") == b"bytes"
        assert await driver.get_content("/a/two/data") == b"other"
    run(go())


def test_append_across_parts_and_processes(backend: Backend, driver: StorageDriver, root: str,
                                           run: Run) -> None:
    """An upload grows over many requests, each on a *new* driver (another process or replica),
    crossing the object stores' part size; between requests its size and bytes are visible."""
    data = os.urandom(5 * PART + 12345)
    cuts = [0, 1000, PART - 1, PART + 7, 3 * PART, 3 * PART + 10, 5 * PART + 1, len(data)]

    async def go() -> None:
        await driver.put_content("/u/data", b"")
        for i, (a, b) in enumerate(itertools.pairwise(cuts)):
            other = backend.make(root)
            try:
                w = await other.writer("/u/data", append=True)
                assert w.size == a
                view = memoryview(data)
                for pos in range(a, b, 100_000):      # several writes per request
                    await w.write(view[pos:min(b, pos + 100_000)])
                assert w.size == b
                if b == len(data):
                    await w.commit()
                else:
                    await w.close()
                assert (await other.stat("/u/data")).size == b
                if i in (2, 4):   # read an upload in progress (the registry re-hashes from storage)
                    assert await collect(other.reader("/u/data", 0, b)) == data[:b]
                    assert await collect(other.reader("/u/data", b // 2, 10)) == data[b // 2:b // 2 + 10]
            finally:
                await other.close()
        assert (await driver.stat("/u/data")).size == len(data)
        assert hashlib.sha256(await driver.get_content("/u/data")).digest() == hashlib.sha256(data).digest()
        assert await driver.list("/u") == ["data"]
    run(go())


def test_writer_truncates_without_append(driver: StorageDriver, run: Run) -> None:
    async def go() -> None:
        await driver.put_content("/t", b"old content")
        w = await driver.writer("/t", append=False)
        assert w.size == 0
        await w.write(b"new")
        await w.commit()
        assert await driver.get_content("/t") == b"new"
        # also over an upload in progress that has whole parts
        w = await driver.writer("/t2")
        await w.write(os.urandom(2 * PART + 5))
        await w.close()
        w = await driver.writer("/t2", append=False)
        assert w.size == 0
        await w.write(b"fresh")
        await w.commit()
        assert await driver.get_content("/t2") == b"fresh"
    run(go())


def test_writer_cancel_removes(driver: StorageDriver, run: Run) -> None:
    async def go() -> None:
        w = await driver.writer("/c/data")
        await w.write(b"x" * 1000)
        await w.cancel()
        with pytest.raises(PathNotFound):
            await driver.stat("/c/data")
        # cancel in a later request, after whole parts were stored
        w = await driver.writer("/c/data2")
        await w.write(os.urandom(2 * PART + 1))
        await w.close()
        w = await driver.writer("/c/data2", append=True)
        await w.write(os.urandom(PART))
        await w.cancel()
        with pytest.raises(PathNotFound):
            await driver.stat("/c/data2")
    run(go())


def test_delete_of_upload_in_progress(driver: StorageDriver, run: Run) -> None:
    """Purging an upload directory removes its half-written data (and any multipart upload)."""
    async def go() -> None:
        await driver.put_content("/_uploads/x/startedat", b"now")
        w = await driver.writer("/_uploads/x/data")
        await w.write(os.urandom(3 * PART))
        await w.close()
        assert sorted(await driver.list("/_uploads/x")) == ["data", "startedat"]
        await driver.delete("/_uploads/x")
        with pytest.raises(PathNotFound):
            await driver.stat("/_uploads/x/data")
        try:                                     # the filesystem keeps empty directories
            assert await driver.list("/_uploads") == []
        except PathNotFound:
            pass
    run(go())


def test_reads_at_offsets(driver: StorageDriver, run: Run) -> None:
    data = bytes(range(256)) * 1000

    async def go() -> None:
        await driver.put_content("/r", data)
        assert await collect(driver.reader("/r", 1000)) == data[1000:]
        assert await collect(driver.reader("/r", 5, 10)) == data[5:15]
        assert await collect(driver.reader("/r", len(data) - 3, 100)) == data[-3:]
        assert await collect(driver.reader("/r", 0, None, chunk_size=7777)) == data
        chunks = [c async for c in driver.reader("/r", 0, None, chunk_size=7777)]
        assert all(len(c) <= 7777 for c in chunks)
        assert await collect(driver.reader("/r", len(data))) == b""
        with pytest.raises(InvalidOffset):
            await collect(driver.reader("/r", len(data) + 1))
    run(go())


def test_concurrent_readers(driver: StorageDriver, run: Run) -> None:
    data = os.urandom(1_000_000)

    async def go() -> None:
        await driver.put_content("/big", data)
        spans = [(i * 1000, None if i % 2 else 100_000 + i) for i in range(8)]
        results = await asyncio.gather(*(collect(driver.reader("/big", off, n, chunk_size=65536))
                                         for off, n in spans))
        for (off, n), r in zip(spans, results, strict=False):
            assert r == (data[off:] if n is None else data[off:off + n])
        # readers that stop early release what they hold (the next reads still work)
        for _ in range(4):
            it = driver.reader("/big", 0, None, chunk_size=1000)
            assert len(await it.__anext__()) == 1000
            await it.aclose()
        assert await collect(driver.reader("/big", 999_990)) == data[999_990:]
    run(go())


def test_listing(driver: StorageDriver, run: Run) -> None:
    async def go() -> None:
        for p in ("/l/a/1", "/l/a/2", "/l/b", "/l/c/d/e", "/other/x", "/lx/y"):
            await driver.put_content(p, b"x")
        assert sorted(await driver.list("/l")) == ["a", "b", "c"]
        assert sorted(await driver.list("/l/a")) == ["1", "2"]
        assert await driver.list("/l/c") == ["d"]
        assert sorted(await driver.list("/")) == ["l", "lx", "other"]
    run(go())


def test_listing_paginates(backend: Backend, root: str, driver: StorageDriver, run: Run) -> None:
    """More entries than one page of the service's listing (pages of 3 here)."""
    small = backend.make(root, page=3)
    names = [f"n{i:02d}" for i in range(11)]

    async def go() -> None:
        try:
            for i, n in enumerate(names):
                await driver.put_content(f"/p/{n}" + ("/leaf" if i % 3 == 0 else ""), b"x")
            assert sorted(await small.list("/p")) == names
            assert sorted(await driver.list("/p")) == names
        finally:
            await small.close()
    run(go())


def test_move_replaces_atomically(driver: StorageDriver, run: Run) -> None:
    async def go() -> None:
        await driver.put_content("/m/src", b"new")
        await driver.put_content("/m2/dst", b"old")
        await driver.move("/m/src", "/m2/dst")
        assert await driver.get_content("/m2/dst") == b"new"
        with pytest.raises(PathNotFound):
            await driver.stat("/m/src")
        await driver.put_content("/m/src2", b"fresh")
        await driver.move("/m/src2", "/deep/new/dir/dst")
        assert await driver.get_content("/deep/new/dir/dst") == b"fresh"
    run(go())


def test_move_large_and_in_progress(driver: StorageDriver, run: Run) -> None:
    """Objects above the stores' single-copy threshold (multipart copy), and an upload whose
    last request only closed its writer, move whole."""
    big = os.urandom(5 * PART + 3)

    async def go() -> None:
        await driver.put_content("/mv/big", big)
        await driver.move("/mv/big", "/mv/big2")
        assert await driver.get_content("/mv/big2") == big
        w = await driver.writer("/mv/up")
        await w.write(big)
        await w.close()
        await driver.move("/mv/up", "/mv/done")
        assert await driver.get_content("/mv/done") == big
        with pytest.raises(PathNotFound):
            await driver.stat("/mv/up")
        assert sorted(await driver.list("/mv")) == ["big2", "done"]
    run(go())


def test_delete_deletes_only_what_it_should(driver: StorageDriver, run: Run) -> None:
    async def go() -> None:
        for p in ("/d/a/1", "/d/a/2", "/d/ab", "/d/b/1", "/d/a.x"):
            await driver.put_content(p, b"x")
        await driver.delete("/d/a")
        with pytest.raises(PathNotFound):
            await driver.stat("/d/a/1")
        assert await driver.get_content("/d/ab") == b"x"      # a sibling sharing the prefix survives
        assert await driver.get_content("/d/a.x") == b"x"
        assert await driver.get_content("/d/b/1") == b"x"
        await driver.delete("/d/ab")
        assert sorted(await driver.list("/d")) == ["a.x", "b"]
    run(go())


@pytest.mark.parametrize("cut_after", [PART // 2, PART + 10, 3 * PART])
def test_a_request_cut_off_leaves_a_consistent_prefix(net_backend: Backend, net_driver: StorageDriver,
                                                      root: str, run: Run, cut_after: int) -> None:
    """The network to the store fails in the middle of a request (after `cut_after` of its
    bytes): what stays stored is at least what earlier requests stored and a prefix of what was
    sent, stat and the bytes agree, and the upload continues from there."""
    backend, driver, svc = net_backend, net_driver, net_backend.svc  # type: ignore[attr-defined]
    data = os.urandom(4 * PART + 100)

    async def go() -> None:
        proxy = CuttableProxy(svc.port)
        await proxy.start()
        d = backend.make(root, endpoint=proxy.url, retries=0)
        try:
            w = await d.writer("/f/data")
            await w.write(data[:PART + 10])
            await w.close()                                  # request 1 stored
            w = await d.writer("/f/data", append=True)
            await w.write(data[PART + 10:PART + 10 + cut_after])
            proxy.cut()
            with pytest.raises(StorageError):
                for pos in range(PART + 10 + cut_after, len(data), 50_000):
                    await w.write(data[pos:pos + 50_000])
                await w.commit()
            proxy.mend()
            await w.close()                                  # keeps what is consistent
            size = (await d.stat("/f/data")).size
            assert PART + 10 <= size < len(data)
            assert await d.get_content("/f/data") == data[:size]
            w = await d.writer("/f/data", append=True)       # the client resumes at `size`
            assert w.size == size
            await w.write(data[size:])
            await w.commit()
            assert await driver.get_content("/f/data") == data
        finally:
            await d.close()
            await proxy.stop()
    run(go())


def test_reads_retry_a_dropped_connection(net_backend: Backend, net_driver: StorageDriver, root: str,
                                          run: Run) -> None:
    """The store drops the first connections of a fresh driver: its requests are retried."""
    data = os.urandom(3000)

    async def go() -> None:
        await net_driver.put_content("/rr/x", data)
        proxy = CuttableProxy(net_backend.svc.port)  # type: ignore[attr-defined]
        await proxy.start()
        d = net_backend.make(root, endpoint=proxy.url)
        try:
            proxy.refusals = 2                 # the first two connections are dropped
            assert (await d.stat("/rr/x")).size == len(data)
            assert proxy.refusals == 0             # ... and were tried
            assert await collect(d.reader("/rr/x", 10, 100)) == data[10:110]
        finally:
            await d.close()
            await proxy.stop()
    run(go())
