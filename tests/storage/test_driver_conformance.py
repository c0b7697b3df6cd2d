"""One conformance suite for every storage driver (see fastreg/storage/driver/base.py)."""
from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fastreg.storage.driver.base import InvalidOffset, InvalidPath, PathNotFound, StorageDriver
from fastreg.storage.driver.filesystem import FilesystemDriver
from fastreg.storage.driver.inmemory import InMemoryDriver


@pytest.fixture(params=["filesystem", "inmemory"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageDriver]:
    d: StorageDriver
    if request.param == "filesystem":
        d = FilesystemDriver(str(tmp_path / "root"))
    else:
        d = InMemoryDriver()
    yield d
    asyncio.run(d.close())
    if request.param == "filesystem":
        leftovers = [p for p in (tmp_path / "root").rglob("*") if p.name.startswith(".fastreg-tmp-")]
        assert leftovers == [], f"temporary files left behind: {leftovers}"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def collect(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in it])


def test_put_get_and_overwrite(driver: StorageDriver) -> None:
    async def go() -> None:
        await driver.put_content("/a/b/c", b"one")
        assert await driver.get_content("/a/b/c") == b"one"
        await driver.put_content("/a/b/c", b"two!")
        assert await driver.get_content("/a/b/c") == b"two!"
        assert (await driver.stat("/a/b/c")).size == 4
        assert (await driver.stat("/a/b")).is_dir
    run(go())


def test_zero_byte_object(driver: StorageDriver) -> None:
    async def go() -> None:
        await driver.put_content("/z", b"")
        assert await driver.get_content("/z") == b""
        info = await driver.stat("/z")
        assert info.size == 0 and not info.is_dir
        assert await collect(driver.reader("/z")) == b""
    run(go())


def test_missing_paths_are_typed_errors(driver: StorageDriver) -> None:
    async def go() -> None:
        for op in (driver.get_content("/nope"), driver.stat("/nope"), driver.list("/nope"),
                   driver.delete("/nope"), driver.move("/nope", "/other")):
            with pytest.raises(PathNotFound):
                await op
        with pytest.raises(PathNotFound):
            await collect(driver.reader("/nope"))
    run(go())


@pytest.mark.parametrize("bad", ["relative", "/a/../b", "/a//b", "/a/./b", "/a\x00b", "/a\\b"])
def test_bad_paths_rejected(driver: StorageDriver, bad: str) -> None:
    with pytest.raises(InvalidPath):
        run(driver.put_content(bad, b"x"))


def test_writer_append_and_resume(driver: StorageDriver) -> None:
    data = os.urandom(300_000)
    seen = hashlib.sha256()

    async def go() -> None:
        w = await driver.writer("/up/data")
        await w.write(data[:100_000], seen.update)
        await w.write(data[100_000:100_010], seen.update)
        assert w.size == 100_010
        await w.close()
        w2 = await driver.writer("/up/data", append=True)
        assert w2.size == 100_010
        await w2.write(memoryview(data)[100_010:], seen.update)
        await w2.commit()
        assert await driver.get_content("/up/data") == data
        assert (await driver.stat("/up/data")).size == len(data)
    run(go())
    assert seen.digest() == hashlib.sha256(data).digest()


def test_writer_truncates_without_append(driver: StorageDriver) -> None:
    async def go() -> None:
        await driver.put_content("/t", b"old content")
        w = await driver.writer("/t", append=False)
        assert w.size == 0
        await w.write(b"new")
        await w.commit()
        assert await driver.get_content("/t") == b"new"
    run(go())


def test_writer_cancel_removes(driver: StorageDriver) -> None:
    async def go() -> None:
        w = await driver.writer("/c/data")
        await w.write(b"x" * 1000)
        await w.cancel()
        with pytest.raises(PathNotFound):
            await driver.stat("/c/data")
    run(go())


def test_reads_at_offsets(driver: StorageDriver) -> None:
    data = bytes(range(256)) * 1000

    async def go() -> None:
        await driver.put_content("/r", data)
        assert await collect(driver.reader("/r", 1000)) == data[1000:]
        assert await collect(driver.reader("/r", 5, 10)) == data[5:15]
        assert await collect(driver.reader("/r", 0, None, chunk_size=7777)) == data
        assert await collect(driver.reader("/r", len(data))) == b""
        with pytest.raises(InvalidOffset):
            await collect(driver.reader("/r", len(data) + 1))
    run(go())


def test_concurrent_readers(driver: StorageDriver) -> None:
    data = os.urandom(2_000_000)

    async def go() -> None:
        await driver.put_content("/big", data)
        results = await asyncio.gather(*(collect(driver.reader("/big", i * 1000, chunk_size=65536))
                                         for i in range(8)))
        for i, r in enumerate(results):
            assert r == data[i * 1000:]
    run(go())


def test_listing(driver: StorageDriver) -> None:
    async def go() -> None:
        for p in ("/l/a/1", "/l/a/2", "/l/b", "/l/c/d/e", "/other/x"):
            await driver.put_content(p, b"x")
        assert sorted(await driver.list("/l")) == ["a", "b", "c"]
        assert sorted(await driver.list("/l/a")) == ["1", "2"]
        assert await driver.list("/l/c") == ["d"]
    run(go())


def test_move_replaces_atomically(driver: StorageDriver) -> None:
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


def test_delete_deletes_only_what_it_should(driver: StorageDriver) -> None:
    async def go() -> None:
        for p in ("/d/a/1", "/d/a/2", "/d/ab", "/d/b/1"):
            await driver.put_content(p, b"x")
        await driver.delete("/d/a")
        with pytest.raises(PathNotFound):
            await driver.stat("/d/a/1")
        assert await driver.get_content("/d/ab") == b"x"      # a sibling sharing the prefix survives
        assert await driver.get_content("/d/b/1") == b"x"
        await driver.delete("/d/ab")
        assert sorted(await driver.list("/d")) == ["b"]
    run(go())
