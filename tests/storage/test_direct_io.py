"""Direct I/O past ``storage.filesystem.dropbehind`` (fastreg/storage/driver/backends/directio.py).

The bytes past the threshold, from the first block boundary on, are written with O_DIRECT from
aligned staging buffers; the part before the boundary and a file's unaligned tail go through the
page cache. Whatever the chunking, whatever the split into requests, the file holds exactly the
bytes written. A filesystem refusing O_DIRECT (at open or at the first write) turns it off with
one warning and loses nothing; an I/O error fails the write and leaks nothing."""
from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastreg.storage.driver.backends import directio
from fastreg.storage.driver.backends.filesystem import DROPBEHIND, FilesystemDriver
from fastreg.storage.driver.base import StorageError
from tests.support.server import FastregServer

from .fswrite import write_file, write_two_files

MiB = 1 << 20
REFUSED = ("{root}: this filesystem refuses direct I/O (Invalid argument); large blobs are written "
           "through the page cache")


def _chunks(total: int, size: int) -> list[bytes]:
    block = os.urandom(size)
    out, n, i = [], 0, 0
    while n < total:
        c = bytes([i % 251]) + block[1:min(size, total - n)]
        out.append(c)
        n += len(c)
        i += 1
    return out


@pytest.fixture
def direct_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes handed to direct writes (DirectStream._pwrite), whatever their fate."""
    seen: list[int] = []
    real = directio.DirectStream._pwrite

    def spy(self: directio.DirectStream, view: memoryview, offset: int) -> None:
        seen.append(len(view))
        real(self, view, offset)
    monkeypatch.setattr(directio.DirectStream, "_pwrite", spy)
    return seen


def _is_direct(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & directio.O_DIRECT)


@pytest.mark.parametrize("chunk", [MiB + 7, 64 * 1024 - 3, 5 * MiB])
def test_bytes_past_the_threshold_are_written_direct(tmp_path: Path, direct_bytes: list[int], chunk: int) -> None:
    size = 3 * DROPBEHIND + 12345
    chunks = _chunks(size, chunk)
    d = FilesystemDriver(str(tmp_path))
    asyncio.run(write_file(d, "/a/data", chunks))
    asyncio.run(d.close())
    assert (tmp_path / "a/data").read_bytes() == b"".join(chunks)
    # from the threshold to the last whole block: direct; before it and the tail: buffered
    assert sum(direct_bytes) == size - size % directio.ALIGN - DROPBEHIND
    assert d.dio.enabled


def test_appends_with_unaligned_ends_stay_exact(tmp_path: Path, direct_bytes: list[int]) -> None:
    """Three requests (PATCHes) of odd sizes: each ends on an unaligned offset, the next one
    goes through the page cache up to the next block boundary, then direct again."""
    parts = [_chunks(DROPBEHIND + 3 * MiB + 123, 300_001), _chunks(5 * MiB + 999, MiB),
             _chunks(2 * MiB + 1, 70_000)]
    d = FilesystemDriver(str(tmp_path))

    async def go() -> None:
        await write_file(d, "/u/data", parts[0], commit=False)
        await write_file(d, "/u/data", parts[1], append=True, commit=False)
        await write_file(d, "/u/data", parts[2], append=True)
        await d.close()
    asyncio.run(go())
    want = b"".join(b"".join(p) for p in parts)
    got = (tmp_path / "u/data").read_bytes()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(want).hexdigest() and len(got) == len(want)
    assert len(direct_bytes) >= 3 and sum(direct_bytes) > 8 * MiB


def test_small_files_are_never_written_direct(tmp_path: Path, direct_bytes: list[int]) -> None:
    d = FilesystemDriver(str(tmp_path))
    chunks = _chunks(DROPBEHIND, MiB)
    asyncio.run(write_file(d, "/s/data", chunks))
    asyncio.run(d.close())
    assert direct_bytes == [] and (tmp_path / "s/data").read_bytes() == b"".join(chunks)
    zero = FilesystemDriver(str(tmp_path), dropbehind=0)
    assert not zero.dio.enabled
    asyncio.run(write_file(zero, "/z/data", _chunks(3 * DROPBEHIND, MiB)))
    asyncio.run(zero.close())
    assert direct_bytes == []


def test_refused_at_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    real = os.open

    def no_direct(path: Any, flags: int, *a: Any, **kw: Any) -> int:
        if flags & directio.O_DIRECT:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
        return real(path, flags, *a, **kw)
    monkeypatch.setattr(os, "open", no_direct)
    chunks = _chunks(3 * DROPBEHIND + 5, MiB)
    d = FilesystemDriver(str(tmp_path))
    warnings = write_two_files(d, chunks, caplog)
    assert not d.dio.enabled
    assert warnings.count(REFUSED.format(root=tmp_path)) == 1
    assert (tmp_path / "a/data").read_bytes() == (tmp_path / "b/data").read_bytes() == b"".join(chunks)


def test_refused_at_the_first_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    caplog: pytest.LogCaptureFixture) -> None:
    """Opened, then every direct write refused (EINVAL): each refused write's bytes go through
    the page cache instead, once, at the right offset."""
    real = os.pwrite
    refused: list[int] = []

    def no_direct(fd: int, data: Any, offset: int) -> int:
        if _is_direct(fd):
            refused.append(len(data))
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real(fd, data, offset)
    monkeypatch.setattr(os, "pwrite", no_direct)
    chunks = _chunks(4 * DROPBEHIND + 777, 3 * MiB + 1)
    d = FilesystemDriver(str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="fastreg.storage.filesystem"):
        asyncio.run(write_file(d, "/a/data", chunks))
        asyncio.run(d.close())
    assert refused and not d.dio.enabled
    assert [r.message for r in caplog.records].count(REFUSED.format(root=tmp_path)) == 1
    assert (tmp_path / "a/data").read_bytes() == b"".join(chunks)


def test_an_io_error_fails_the_write_and_leaks_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.pwrite
    broken = [True]

    def eio(fd: int, data: Any, offset: int) -> int:
        if broken[0] and _is_direct(fd):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd, data, offset)
    monkeypatch.setattr(os, "pwrite", eio)
    d = FilesystemDriver(str(tmp_path))
    chunks = _chunks(3 * DROPBEHIND, MiB)

    async def go() -> None:
        before = os.listdir("/proc/self/fd")
        w = await d.writer("/a/data")
        with pytest.raises(StorageError, match="Input/output error"):
            try:
                for c in chunks:
                    await w.write(c)
                await w.commit()
            except StorageError:            # as an upload does (UploadStore._receive)
                with pytest.raises(StorageError, match="Input/output error"):
                    await w.close()         # its flush fails too: the staged bytes cannot be written
                raise
        assert sorted(os.listdir("/proc/self/fd")) == sorted(before)      # both descriptors closed
        broken[0] = False                       # the disk is back: the driver writes direct again
        await write_file(d, "/b/data", chunks)
        await d.close()
    asyncio.run(go())
    assert d.dio.enabled
    assert (tmp_path / "b/data").read_bytes() == b"".join(chunks)
    assert len(d.dio.pool._free) <= 4          # the staging buffers went back to the pool


def test_large_pushes_through_the_api(registry: FastregServer) -> None:
    """Monolithic and chunked pushes of blobs past the threshold, with chunk ends off any block
    boundary, pull back byte-exact under their digest."""
    blob = os.urandom(2 * DROPBEHIND + 4097)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    with httpx.Client(base_url=registry.url, timeout=60.0) as c:
        r = c.post("/v2/dio/mono/blobs/uploads/", params={"digest": digest}, content=blob,
                   headers={"content-type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        r = c.post("/v2/dio/chunked/blobs/uploads/")
        assert r.status_code == 202
        loc, start = r.headers["location"], 0
        for size in (DROPBEHIND + 1, 3 * MiB + 5, len(blob)):
            part = blob[start:start + size]
            if not part:
                break
            r = c.patch(loc, content=part, headers={"content-type": "application/octet-stream",
                                                    "content-range": f"{start}-{start + len(part) - 1}"})
            assert r.status_code == 202, r.text
            loc, start = r.headers["location"], start + len(part)
        assert start == len(blob)
        r = c.put(httpx.URL(loc).copy_merge_params({"digest": digest}))
        assert r.status_code == 201, r.text
        for repo in ("mono", "chunked"):
            got = c.get(f"/v2/dio/{repo}/blobs/{digest}")
            assert got.status_code == 200 and got.content == blob


def test_streams_are_bounded_and_the_rest_is_written_behind(tmp_path: Path, direct_bytes: list[int]) -> None:
    """A worker runs at most MAX_STREAMS direct streams (8 MiB of buffers each): with one slot,
    two uploads interleaved — the second is written behind while the first holds it, and both
    files are exact; every slot is free again afterwards."""
    d = FilesystemDriver(str(tmp_path))
    d.dio.slots = threading.BoundedSemaphore(1)
    a, b = _chunks(3 * DROPBEHIND + 1, MiB), _chunks(3 * DROPBEHIND + 77, MiB - 1)

    async def go() -> None:
        wa, wb = await d.writer("/a/data"), await d.writer("/b/data")
        for ca, cb in zip(a, b, strict=False):
            await wa.write(ca)
            await wb.write(cb)
        for rest in b[len(a):]:
            await wb.write(rest)
        await wa.commit()
        await wb.commit()
        await d.close()
    asyncio.run(go())
    assert (tmp_path / "a/data").read_bytes() == b"".join(a)
    assert (tmp_path / "b/data").read_bytes() == b"".join(b)
    size_a = sum(map(len, a))
    # a held the only stream from its threshold to its commit; b, all written meanwhile, went
    # through the page cache
    assert sum(direct_bytes) == size_a - size_a % directio.ALIGN - DROPBEHIND
    assert d.dio.slots.acquire(blocking=False)                                    # released
    assert len(d.dio.pool._free) <= 2 * directio.MAX_STREAMS
