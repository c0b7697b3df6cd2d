"""Small files the filesystem driver reads again unchanged (tag and layer links) are served from
memory after a stat(2) that finds them as they were; every way a file can change — renamed over,
rewritten in place, deleted, re-created — is seen by the next read, and a file changed too recently
to be told apart by its timestamps is never kept."""
from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from fastreg.storage.driver.backends import filesystem as fs
from fastreg.storage.driver.base import PathNotFound


class Opens:
    """Counts the files the driver opens (the cache saves the open)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = os.open

        def counting(path: str, flags: int, *args: int) -> int:
            self.count += 1
            return real(path, flags, *args)
        monkeypatch.setattr(fs.os, "open", counting)


def _age(path: Path, seconds: float) -> None:
    """Set the file's times `seconds` into the past (its ctime becomes now: see the callers)."""
    t = os.stat(path).st_mtime_ns - int(seconds * 1e9)
    os.utime(path, ns=(t, t))


def test_a_settled_file_is_served_from_memory_until_it_changes(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fs, "SETTLED_NS", 0)      # every file counts as settled (ctime is always now)
    d = fs.FilesystemDriver(str(tmp_path))
    target = tmp_path / "repositories/r/_manifests/tags/t/current/link"
    opens = Opens(monkeypatch)

    async def go() -> None:
        await d.put_content("/repositories/r/_manifests/tags/t/current/link", b"sha256:" + b"a" * 64)
        assert await d.get_content("/repositories/r/_manifests/tags/t/current/link") == b"sha256:" + b"a" * 64
        before = opens.count
        for _ in range(3):
            assert await d.get_content("/repositories/r/_manifests/tags/t/current/link") == b"sha256:" + b"a" * 64
        assert opens.count == before                # stat only: nothing opened

        # renamed over (how fastreg writes): a new inode
        await d.put_content("/repositories/r/_manifests/tags/t/current/link", b"sha256:" + b"b" * 64)
        assert await d.get_content("/repositories/r/_manifests/tags/t/current/link") == b"sha256:" + b"b" * 64

        # rewritten in place, same size, by something else (its times move)
        with open(target, "r+b") as f:     # noqa: ASYNC230 (a test: the writer is not the driver)
            f.write(b"sha256:" + b"c" * 64)
        _age(target, -5)        # a later mtime than any cached, whatever the clock's tick
        assert await d.get_content("/repositories/r/_manifests/tags/t/current/link") == b"sha256:" + b"c" * 64

        # deleted: gone, then re-created
        target.unlink()
        with pytest.raises(PathNotFound):
            await d.get_content("/repositories/r/_manifests/tags/t/current/link")
        await d.put_content("/repositories/r/_manifests/tags/t/current/link", b"sha256:" + b"d" * 64)
        assert await d.get_content("/repositories/r/_manifests/tags/t/current/link") == b"sha256:" + b"d" * 64
        await d.close()
    asyncio.run(go())


def test_a_file_changed_within_the_settle_time_is_read_every_time(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Where timestamps are coarse, two in-place rewrites of the same size within one clock tick
    leave the same stat: a file changed this recently is opened and read on every call."""
    d = fs.FilesystemDriver(str(tmp_path))
    target = tmp_path / "f"
    opens = Opens(monkeypatch)

    async def go() -> None:
        target.write_bytes(b"%071d" % 1)
        _age(target, 1)         # its mtime a second old; its ctime (now) is what counts
        for _ in range(5):
            before = opens.count
            assert await d.get_content("/f") == b"%071d" % 1
            assert opens.count == before + 1
        await d.close()
    asyncio.run(go())


def test_only_small_files_are_kept_and_the_cache_is_bounded(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fs, "SETTLED_NS", 0)
    monkeypatch.setattr(fs, "SMALL_CACHE_ENTRIES", 8)
    d = fs.FilesystemDriver(str(tmp_path))

    async def go() -> None:
        (tmp_path / "big").write_bytes(b"x" * (fs.SMALL_CACHED + 1))
        assert await d.get_content("/big") == b"x" * (fs.SMALL_CACHED + 1)
        assert not d._small
        for i in range(20):
            (tmp_path / f"s{i}").write_bytes(b"%d" % i)
            assert await d.get_content(f"/s{i}") == b"%d" % i
        assert len(d._small) == 8
        for i in range(20):
            assert await d.get_content(f"/s{i}") == b"%d" % i
        await d.close()
    asyncio.run(go())


def test_a_cancelled_large_read_never_touches_a_descriptor_it_no_longer_owns(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A read past 64 KiB runs on a thread; the request cancelled meanwhile (client gone) must not
    close the descriptor under the thread's read: the number is reused at once by the next open,
    and the late read would consume that file's bytes."""
    d = fs.FilesystemDriver(str(tmp_path))
    (tmp_path / "big").write_bytes(b"m" * (fs.INLINE_MAX + 1))
    (tmp_path / "other").write_bytes(b"other file's bytes")
    started, release = threading.Event(), threading.Event()
    real = fs._read_all

    def slow(fd: int, size: int) -> bytes:
        started.set()
        assert release.wait(10)
        return real(fd, size)
    monkeypatch.setattr(fs, "_read_all", slow)

    async def go() -> bytes:
        task = asyncio.ensure_future(d.get_content("/big"))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        fd = os.open(tmp_path / "other", os.O_RDONLY)      # the lowest free number
        try:
            release.set()
            d._pool.shutdown(wait=True)                      # the thread's read is over
            return os.read(fd, 100)
        finally:
            os.close(fd)
    assert asyncio.run(go()) == b"other file's bytes"
