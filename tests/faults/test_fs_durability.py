"""Power-loss durability of names in the filesystem driver: a durable put_content and a move (the
blob commit) fsync the file, the directory that holds the new entry and the parent of every
directory they created — before they return.  Observed by recording which files and directories
the real driver fsyncs (the real fsync still runs).  The driver runs on the pure twin of
fastreg._fsio here, whose fsyncs go through ``os``; that the compiled one makes the same system
calls is checked with strace in tests/storage/test_fsio.py."""
from __future__ import annotations

import asyncio
import contextlib
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


# -- storage.filesystem.groupsync: one shared syncfs instead of each request's fsyncs ----------

@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch, synced: list[str]) -> list[dict[str, bytes | None]]:
    """What was under the root at each syncfs (a file's bytes; None for a directory): the state
    each sync made durable.  (`synced` records every fsync: none may happen in this mode.)"""
    from fastreg.storage.driver.backends import groupsync
    states: list[dict[str, bytes | None]] = []
    real = groupsync._sync

    def sync(fd: int) -> None:
        root = os.readlink(f"/proc/self/fd/{fd}")
        state: dict[str, bytes | None] = {}
        for d, dirs, files in os.walk(root):
            for n in dirs:
                state[os.path.relpath(os.path.join(d, n), root)] = None
            for n in files:
                with contextlib.suppress(FileNotFoundError):    # (renamed meanwhile: not in it)
                    state[os.path.relpath(os.path.join(d, n), root)] = Path(d, n).read_bytes()
        states.append(state)
        real(fd)
    monkeypatch.setattr(groupsync, "_sync", sync)
    return states


def temporary(state: dict[str, bytes | None], d: str) -> list[bytes | None]:
    return [v for k, v in state.items() if os.path.dirname(k) == d and os.path.basename(k).startswith(".fastreg-tmp-")]


def test_groupsync_makes_each_step_durable_in_order(tmp_path: Path, synced: list[str],
                                                    syncs: list[dict[str, bytes | None]]) -> None:
    """A durable put: the temporary file's bytes are synced before the rename, the rename (and
    the directories made) before it returns.  A blob commit: the data is synced before the move,
    the move before it returns.  No fsync of single files is left."""
    d = FilesystemDriver(str(tmp_path / "root"), groupsync=True)
    assert d.group is not None

    async def go() -> None:
        await d.put_content("/a/b/c/link", b"sha256:x")
        assert len(syncs) == 2
        assert temporary(syncs[0], "a/b/c") == [b"sha256:x"] and "a/b/c/link" not in syncs[0]
        assert syncs[1]["a/b/c/link"] == b"sha256:x" and temporary(syncs[1], "a/b/c") == []
        syncs.clear()
        await d.put_content("/a/b/c/link", b"sha256:y")                   # replaced: old until renamed
        assert syncs[0]["a/b/c/link"] == b"sha256:x" and temporary(syncs[0], "a/b/c") == [b"sha256:y"]
        assert syncs[1]["a/b/c/link"] == b"sha256:y"
        syncs.clear()
        await d.put_content("/a/b/c/cache", b"state", durable=False)      # not durable: no sync
        assert syncs == []
        w = await d.writer("/up/data")
        await w.write(b"blob")
        await w.commit()
        assert [s.get("up/data") for s in syncs] == [b"blob"]
        syncs.clear()
        await d.move("/up/data", "/blobs/sha256/ab/abcd/data")
        assert len(syncs) == 1 and syncs[0]["blobs/sha256/ab/abcd/data"] == b"blob" and "up/data" not in syncs[0]
        await d.close()
    asyncio.run(go())
    assert synced == []


def test_groupsync_shares_one_sync_among_the_waiting(tmp_path: Path, synced: list[str],
                                                     syncs: list[dict[str, bytes | None]]) -> None:
    """64 concurrent durable puts (128 durable steps) take a handful of syncs: the running one,
    then one for everyone who asked meanwhile."""
    d = FilesystemDriver(str(tmp_path / "root"), groupsync=True)
    assert d.group is not None

    async def go() -> None:
        await asyncio.gather(*(d.put_content(f"/r/{i:02d}/link", f"sha256:{i}".encode()) for i in range(64)))
        await d.close()
    asyncio.run(go())
    assert d.group.waits == 128
    assert d.group.syncs == len(syncs) <= 6
    for i in range(64):
        assert (tmp_path / f"root/r/{i:02d}/link").read_bytes() == f"sha256:{i}".encode()
        assert all(s.get(f"r/{i:02d}/link") in (None, f"sha256:{i}".encode()) for s in syncs)
    assert synced == []


def test_groupsync_failure_reaches_the_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed syncfs (EIO: the writes may not be on disk) fails every step waiting for it;
    the target of a put is left as it was."""
    import errno

    from fastreg.storage.driver.backends import groupsync
    from fastreg.storage.driver.base import StorageError

    def sync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")
    d = FilesystemDriver(str(tmp_path / "root"), groupsync=True)

    async def go() -> None:
        monkeypatch.setattr(groupsync, "_sync", sync)
        results = await asyncio.gather(*(d.put_content(f"/r/{i}/link", b"x") for i in range(4)),
                                       return_exceptions=True)
        assert all(isinstance(r, StorageError) and "I/O error" in str(r) for r in results)
        assert not any((tmp_path / f"root/r/{i}/link").exists() for i in range(4))
        assert not any(p.name.startswith(".fastreg-tmp-") for p in (tmp_path / "root").rglob("*"))
        await d.close()
    asyncio.run(go())


def test_groupsync_from_the_configuration(tmp_path: Path) -> None:
    from fastreg.config import load_config
    from fastreg.storage.driver.factory import create_driver
    path = tmp_path / "config.yml"
    for on in (True, False):
        path.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
                        f"    groupsync: {str(on).lower()}\n")
        cfg = load_config(path)
        drv = create_driver("filesystem", cfg.storage.filesystem)
        assert (drv.group is not None) is on            # type: ignore[attr-defined]
        asyncio.run(drv.close())
    drv = create_driver("filesystem", cfg.storage.filesystem, fsync=False)     # fastreg.fsync: false wins
    assert drv.group is None                             # type: ignore[attr-defined]
    asyncio.run(drv.close())


def test_groupsync_failure_reaches_every_write_it_may_have_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """``syncfs`` reports a writeback error once, to the sync that finds it, whichever files it
    hit: the pages of a write made while a sync was running may fail inside that sync, and the
    next sync, which the write waits for, then succeeds with them lost.  A write that was under
    way when a sync failed fails too (a put; a blob written before the failure and committed after
    it), as its own fsync would have; a write begun after the failure is not concerned."""
    import errno
    import threading

    from fastreg.storage.driver.backends import groupsync
    from fastreg.storage.driver.base import StorageError

    release = threading.Event()
    calls: list[int] = []

    def sync(fd: int) -> None:
        calls.append(1)
        if len(calls) == 1:             # the first sync runs while the others write, then fails
            release.wait(10)
            raise OSError(errno.EIO, "I/O error")
    d = FilesystemDriver(str(tmp_path / "root"), groupsync=True)
    assert d.group is not None

    async def go() -> None:
        monkeypatch.setattr(groupsync, "_sync", sync)
        first = asyncio.create_task(d.put_content("/r/first/link", b"1"))
        while not calls:                                # the failing sync has started
            await asyncio.sleep(0.001)
        w = await d.writer("/up/data")
        await w.write(b"blob")
        await w.flush()
        put = asyncio.create_task(d.put_content("/r/during/link", b"2"))
        await asyncio.sleep(0.01)                       # its bytes are written; it waits for the next sync
        release.set()
        results = await asyncio.gather(first, put, return_exceptions=True)
        assert all(isinstance(r, StorageError) and "[Errno 5]" in str(r) for r in results), results
        try:
            await w.commit()
            raise AssertionError("the blob's commit did not fail")
        except StorageError as exc:
            assert "[Errno 5]" in str(exc)
        await d.put_content("/r/after/link", b"3")      # begun after the failure: fine
        assert (tmp_path / "root/r/after/link").read_bytes() == b"3"
        await d.close()
    asyncio.run(go())


def test_groupsync_cancelled_large_put_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """A put past INLINE_MAX writes its temporary file on a worker thread; the request cancelled
    meanwhile (its client went away) leaves no temporary file once that write ends (`fastreg
    check` would count it among a crash's leftovers)."""
    import threading
    started, go_on = threading.Event(), threading.Event()
    real = fs_mod._write_new

    def write_new(tmp: str, d: str, data: bytes) -> None:
        started.set()
        go_on.wait(10)
        real(tmp, d, data)
    monkeypatch.setattr(fs_mod, "_write_new", write_new)
    d = FilesystemDriver(str(tmp_path / "root"), groupsync=True)

    async def go() -> None:
        task = asyncio.create_task(d.put_content("/r/big/data", b"x" * (fs_mod.INLINE_MAX + 1)))
        while not started.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.sleep(0.01)
        go_on.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        await d.close()                                 # (waits for the worker threads)
    asyncio.run(go())
    assert [p.name for p in (tmp_path / "root").rglob("*") if p.is_file()] == []


def test_groupsync_commit_cancelled_or_failed_closes_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """A blob's commit cancelled while it waits for the sync (its client went away), or failing
    with the sync: the file it wrote is closed all the same (its caller no longer closes a writer
    it asked to commit), no descriptor is left open."""
    import errno
    import threading

    from fastreg.storage.driver.backends import groupsync
    from fastreg.storage.driver.base import StorageError

    release = threading.Event()
    fail: list[bool] = [False]

    def sync(fd: int) -> None:
        release.wait(10)
        if fail[0]:
            raise OSError(errno.EIO, "I/O error")
    d = FilesystemDriver(str(tmp_path / "root"), groupsync=True)

    def open_on(name: str) -> list[str]:
        out = []
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{fd}").endswith(name):
                    out.append(fd)
        return out

    async def go() -> None:
        monkeypatch.setattr(groupsync, "_sync", sync)
        w = await d.writer("/up/cancelled")
        await w.write(b"blob")
        task = asyncio.create_task(w.commit())
        await asyncio.sleep(0.02)                       # waiting for the sync
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert open_on("/up/cancelled") == []
        release.set()
        fail[0] = True
        w = await d.writer("/up/failed")
        await w.write(b"blob")
        with pytest.raises(StorageError):
            await w.commit()
        assert open_on("/up/failed") == []
        await d.close()
    asyncio.run(go())


def test_groupsync_refused_where_another_filesystem_is_mounted_inside(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``syncfs`` writes back the root's filesystem only: with another one mounted under the root
    (the blobs on a disk of their own), what is written there would never be synced.  The driver
    then fsyncs each file, as without groupsync (and says so once)."""
    from fastreg.storage.driver.backends import groupsync
    root = tmp_path / "root"
    root.mkdir()
    info = tmp_path / "mountinfo"
    line = "{id} 1 8:{n} / {path} rw,relatime - ext4 /dev/sd{n} rw\n"
    info.write_text(line.format(id=30, n=1, path="/") + line.format(id=31, n=2, path=str(tmp_path)))
    monkeypatch.setattr(groupsync, "MOUNTINFO", str(info), raising=False)
    d = FilesystemDriver(str(root), groupsync=True)
    assert d.group is not None                           # the root's own mount: fine
    asyncio.run(d.close())
    with info.open("a") as f:                            # a path with a space: \\040 in mountinfo
        f.write(line.format(id=32, n=3, path=str(root / "docker/registry/v2/my\\040blobs")))
    d = FilesystemDriver(str(root), groupsync=True)
    assert d.group is None
    asyncio.run(d.close())
    assert groupsync.mounts_under(str(root)) == [str(root / "docker/registry/v2/my blobs")]


def test_groupsync_commit_reports_its_files_own_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """A blob uploaded in several requests: the pages an earlier request wrote may have failed to
    reach the disk while another request's sync ran, which reported the error (once, to its own
    waiters) before this request's writer was opened.  After the shared sync, the commit asks the
    file itself (``sync_file_range`` waiting: nothing left to write, the file's unseen error
    returned, as its fsync would) and fails."""
    import ctypes
    import errno

    from fastreg.storage.driver.base import StorageError

    calls: list[int] = []

    def sync_file_range(fd: int, offset: int, length: int, flags: int) -> int:
        calls.append(flags)
        if flags & fs_mod._SYNC_FILE_RANGE_WAIT_AFTER:
            ctypes.set_errno(errno.EIO)
            return -1
        return 0
    monkeypatch.setattr(fs_mod, "_sync_file_range", sync_file_range)
    d = FilesystemDriver(str(tmp_path / "root"), groupsync=True)

    async def go() -> None:
        w = await d.writer("/up/data")
        await w.write(b"part one")
        await w.close()                                 # the first request ends
        w = await d.writer("/up/data", append=True)
        await w.write(b"part two")
        with pytest.raises(StorageError, match=r"\[Errno 5\]"):
            await w.commit()
        await d.close()
    asyncio.run(go())
    assert calls


def test_groupsync_after_close_fails_every_write(tmp_path: Path) -> None:
    """A durable write that reaches the driver after it was closed (a request still running at
    shutdown) fails, and so does every one after it: none waits for a sync that cannot start."""
    from fastreg.storage.driver.base import StorageError
    d = FilesystemDriver(str(tmp_path / "root"), groupsync=True)

    async def go() -> None:
        await d.put_content("/r/before/link", b"1")
        await d.close()
        for i in range(2):
            with pytest.raises(StorageError):
                await asyncio.wait_for(d.put_content(f"/r/after{i}/link", b"2"), 5)
    asyncio.run(go())
