"""Shared directory fsyncs in the filesystem driver (SharedDirSync): concurrent pushes that each
create a directory in the same parent share the parent's fsync — and none of them returns before
an fsync of the parent that started after its own change (else a power cut could lose the entry
of an answered push)."""
from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from fastreg import _fsio_py
from fastreg.storage.driver.backends import filesystem as fs_mod
from fastreg.storage.driver.backends.filesystem import FilesystemDriver, SharedDirSync


class SlowSyncs:
    """Records each directory fsync (path, start, end) and makes it take `delay` seconds; the
    first `fail` of them raise EIO."""

    def __init__(self, delay: float, fail: int = 0) -> None:
        self.delay, self.fail = delay, fail
        self.runs: list[tuple[str, float, float]] = []
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> object:      # put_file, rename_sync: the pure twin's
        return getattr(_fsio_py, name)

    def sync_dirs(self, dirs: list[bytes]) -> None:
        for d in dirs:
            start = time.monotonic()
            time.sleep(self.delay)
            with self.lock:
                if self.fail:
                    self.fail -= 1
                    raise OSError(5, "Input/output error", os.fsdecode(d))
            _fsio_py.sync_dirs([d])
            with self.lock:
                self.runs.append((os.fsdecode(d), start, time.monotonic()))


@pytest.fixture
def slow(monkeypatch: pytest.MonkeyPatch) -> SlowSyncs:
    s = SlowSyncs(0.05)
    monkeypatch.setattr(fs_mod, "fsio", s)
    return s


def covered(runs: list[tuple[str, float, float]], d: str, called: float, returned: float) -> bool:
    """An fsync of `d` that started at or after `called` and ended by `returned`."""
    return any(p == d and start >= called and end <= returned for p, start, end in runs)


def test_concurrent_callers_share_fsyncs_each_started_after_its_call(tmp_path: Path, slow: SlowSyncs) -> None:
    shared = SharedDirSync()
    d = str(tmp_path)
    calls: list[tuple[float, float]] = []
    lock = threading.Lock()

    def caller(pause: float) -> None:
        time.sleep(pause)
        called = time.monotonic()
        shared.sync(d)
        with lock:
            calls.append((called, time.monotonic()))

    threads = [threading.Thread(target=caller, args=(i * 0.003,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 16
    # 16 callers over 45 ms, fsyncs of 50 ms: two or three fsyncs, not one per caller
    assert 1 <= len(slow.runs) <= 8, slow.runs
    for called, returned in calls:
        assert covered(slow.runs, d, called, returned), (called, returned, slow.runs)
    assert shared._dirs == {}           # nothing kept once no one waits


def test_a_failed_fsync_counts_for_no_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = SlowSyncs(0.05, fail=1)
    monkeypatch.setattr(fs_mod, "fsio", slow)
    shared = SharedDirSync()
    d = str(tmp_path)
    outcome: list[tuple[str, float, float]] = []
    lock = threading.Lock()

    def caller(pause: float) -> None:
        time.sleep(pause)
        called = time.monotonic()
        try:
            shared.sync(d)
            what = "synced"
        except OSError:
            what = "error"
        with lock:
            outcome.append((what, called, time.monotonic()))

    threads = [threading.Thread(target=caller, args=(i * 0.005,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [o for o in outcome if o[0] == "error"]
    assert len(errors) == 1             # the caller whose fsync failed hears of it
    for what, called, returned in outcome:
        if what == "synced":            # everyone else had a good fsync that started after its call
            assert covered(slow.runs, d, called, returned), (called, returned, slow.runs)
    assert shared._dirs == {}


def test_concurrent_puts_into_one_parent_share_its_fsync(tmp_path: Path, slow: SlowSyncs) -> None:
    """16 layer links written at once, each in a new directory of `_layers/sha256`: every new
    directory's entry is fsynced before its put returns, with fewer fsyncs of the parent."""
    root = tmp_path / "root"
    drv = FilesystemDriver(str(root))
    parent = root / "repo/_layers/sha256"
    parent.mkdir(parents=True)
    stamps: dict[str, tuple[float, float]] = {}

    async def put(i: int) -> None:
        called = time.monotonic()
        await drv.put_content(f"/repo/_layers/sha256/{i:064x}/link", b"sha256:%064x" % i)
        stamps[f"{i:064x}"] = (called, time.monotonic())

    async def go() -> None:
        await asyncio.gather(*(put(i) for i in range(16)))
        await drv.close()
    asyncio.run(go())
    assert sorted(os.listdir(parent)) == sorted(stamps)
    parent_runs = [r for r in slow.runs if r[0] == str(parent)]
    assert 1 <= len(parent_runs) < 16, parent_runs
    for called, returned in stamps.values():
        assert covered(slow.runs, str(parent), called, returned)
