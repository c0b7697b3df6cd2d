"""Power-loss durability of names in the filesystem driver: a durable put_content and a move (the
blob commit) fsync the file, the directory that holds the new entry and the parent of every
directory they created — before they return.  Observed by recording which files and directories
the real driver fsyncs (the real fsync still runs).  The driver runs on the pure twin of
fastreg._fsio here, whose fsyncs go through ``os``; that the compiled one makes the same system
calls is checked with strace in tests/storage/test_fsio.py."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from fastreg import _fsio_py
from fastreg.storage.driver.backends import filesystem as fs_mod
from fastreg.storage.driver.backends.filesystem import FilesystemDriver


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(fs_mod, "fsio", _fsio_py)
    seen: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_durable_writes_and_moves_sync_their_directories(tmp_path: Path, synced: list[str]) -> None:
    root = tmp_path / "root"
    d = FilesystemDriver(str(root))

    async def go() -> None:
        await d.put_content("/a/b/c/link", b"sha256:x")              # a, b, c are new
        # the file itself first, then its directory and the parent of each new one (any order:
        # the call returns, and the client hears, only once all of them are on disk)
        assert synced[0].startswith(str(root / "a/b/c/.fastreg-tmp-"))
        assert sorted(synced[1:]) == [str(root), str(root / "a"), str(root / "a/b"), str(root / "a/b/c")]
        synced.clear()
        await d.put_content("/a/b/c/link", b"sha256:y")              # existing directory: one dir fsync
        assert synced[1:] == [str(root / "a/b/c")]
        synced.clear()
        await d.put_content("/a/b/c/cache", b"state", durable=False)
        assert synced == []
        w = await d.writer("/up/data")
        await w.write(b"blob")
        await w.commit()
        synced.clear()
        await d.move("/up/data", "/blobs/sha256/ab/abcd/data")          # blobs/... are all new
        assert sorted(synced) == [str(root), str(root / "blobs"), str(root / "blobs/sha256"),
                                  str(root / "blobs/sha256/ab"), str(root / "blobs/sha256/ab/abcd")]
        synced.clear()
        w = await d.writer("/up/data2")
        await w.write(b"blob2")
        await w.commit()
        synced.clear()
        await d.move("/up/data2", "/blobs/sha256/ab/abcd/data")         # an existing directory: one
        assert synced == [str(root / "blobs/sha256/ab/abcd")]
        await d.close()
    asyncio.run(go())


def test_no_fsync_when_disabled(tmp_path: Path, synced: list[str]) -> None:
    d = FilesystemDriver(str(tmp_path / "root"), fsync=False)

    async def go() -> None:
        await d.put_content("/a/b/link", b"x")
        w = await d.writer("/up/data")
        await w.write(b"blob")
        await w.commit()
        await d.move("/up/data", "/blobs/x/data")
        await d.close()
    asyncio.run(go())
    assert synced == []
