"""The filesystem driver and the page cache.

``storage.filesystem.dropbehind``: a file growing past the threshold keeps only a bounded window
of its pages in the page cache while it is written, and none once committed — with direct I/O
past the threshold (tests/storage/test_direct_io.py), or, where the filesystem refuses direct
I/O, with write-behind (both are run here); smaller files, and every file with
``dropbehind: 0``, stay cached. Reads the page cache holds
are served on the event loop, the others from a thread. The bytes are the same either way.
Page-cache residency is read with mincore(2) on a mapping of the file (which touches no page)."""
from __future__ import annotations

import asyncio
import ctypes
import errno
import hashlib
import mmap
import os
from pathlib import Path

import pytest

from fastreg.config import load_config
from fastreg.storage.driver.backends import filesystem as fs_mod
from fastreg.storage.driver.backends.filesystem import BATCH, DROPBEHIND, WRITEBACK, FilesystemDriver
from fastreg.storage.driver.base import StorageError
from fastreg.storage.driver.factory import create_driver

from .fswrite import write_file, write_two_files

MiB = 1 << 20
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]


def resident(path: Path) -> int:
    """Bytes of `path` in the page cache."""
    size = path.stat().st_size
    if size == 0:
        return 0
    page = mmap.PAGESIZE
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)   # private: writable for ctypes, no page touched
        try:
            addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
            vec = ctypes.create_string_buffer((size + page - 1) // page)
            if _libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
            return sum(b & 1 for b in vec.raw) * page
        finally:
            del addr
            m.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    mounts = Path("/proc/mounts").read_text().split("\n")
    best = max((ln.split() for ln in mounts if ln and str(tmp_path).startswith(ln.split()[1])),
               key=lambda f: len(f[1]))
    if best[2] in ("tmpfs", "ramfs"):
        pytest.skip(f"{tmp_path} is on {best[2]}: its pages are its storage, nothing to drop")
    return tmp_path / "root"


def _payload(n: int) -> list[bytes]:
    block = os.urandom(MiB)
    return [bytes([i % 251]) + block[1:] for i in range(n)]


MODES = ["direct", "write-behind"]


def _driver(root: Path, mode: str, **kw: object) -> FilesystemDriver:
    d = FilesystemDriver(str(root), **kw)  # type: ignore[arg-type]
    if mode == "write-behind":             # as on a filesystem refusing O_DIRECT
        d.dio.enabled = False
    return d


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fsync", [True, False])
def test_large_file_leaves_no_pages_once_committed(root: Path, fsync: bool, mode: str) -> None:
    chunks = _payload(48)
    d = _driver(root, mode, fsync=fsync)

    async def go() -> None:
        await write_file(d, "/up/data", chunks, commit=False)      # a PATCH: written, not committed
        in_flight = resident(root / "up/data")
        # only the pages written since the last drop remain: a bounded window, not the file
        assert in_flight <= 2 * WRITEBACK + BATCH + MiB, in_flight
        await write_file(d, "/up/data", chunks[:8], append=True)   # the last PATCH, then commit
        await d.close()
    asyncio.run(go())
    # after an fsync every page is clean and dropped; without one, the tail still being written
    # back stays (dirty pages cannot be dropped) — still a bounded window
    assert resident(root / "up/data") <= (MiB if fsync else 2 * WRITEBACK + BATCH + MiB)
    data = (root / "up/data").read_bytes()
    assert hashlib.sha256(data).digest() == hashlib.sha256(b"".join(chunks + chunks[:8])).digest()


@pytest.mark.parametrize("mode", MODES)
def test_commit_drops_the_whole_file(root: Path, mode: str) -> None:
    chunks = _payload(24)
    d = _driver(root, mode)

    async def go() -> None:
        await write_file(d, "/a/data", chunks)
        await d.close()
    asyncio.run(go())
    assert resident(root / "a/data") <= MiB
    assert (root / "a/data").read_bytes() == b"".join(chunks)
    assert resident(root / "a/data") == 24 * MiB          # a read caches it as usual


def test_small_files_and_dropbehind_zero_stay_cached(root: Path) -> None:
    small = _payload(DROPBEHIND // MiB - 1)
    large = _payload(24)

    async def go() -> None:
        d = FilesystemDriver(str(root))
        await write_file(d, "/small/data", small)
        await d.close()
        keep = FilesystemDriver(str(root), dropbehind=0)
        await write_file(keep, "/kept/data", large)
        await keep.close()
    asyncio.run(go())
    assert resident(root / "small/data") == len(small) * MiB
    assert resident(root / "kept/data") == 24 * MiB


def test_config_key_reaches_the_driver(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'r'}\n"
                   f"    dropbehind: 0\n")
    c = load_config(str(cfg), env={})
    d = create_driver("filesystem", c.storage.filesystem)
    assert isinstance(d, FilesystemDriver) and d.dropbehind == 0
    default = create_driver("filesystem", load_config(None, env={}).storage.filesystem)
    assert isinstance(default, FilesystemDriver) and default.dropbehind == DROPBEHIND


def test_reads_the_page_cache_has_run_on_the_loop(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 MiB read the page cache holds is copied on the event loop (preadv2 RWF_NOWAIT), one
    it lacks goes to a thread; a read cached only in part gives the cached part, then the rest
    from a thread. The bytes are the file's in every case."""
    data = b"".join(_payload(4))
    root.mkdir(parents=True)
    path = root / "blob"
    path.write_bytes(data)
    d = FilesystemDriver(str(root))
    threaded: list[object] = []
    real_run = d._run

    async def counting_run(fn: object, *args: object) -> object:
        threaded.append(fn)
        return await real_run(fn, *args)
    monkeypatch.setattr(d, "_run", counting_run)

    def drop() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)

    def cache_first_half_mib() -> None:
        with open(path, "rb") as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_RANDOM)   # (no readahead beyond it)
            f.read(MiB // 2)

    async def read(offset: int, length: int) -> bytes:
        return b"".join([bytes(c) async for c in d.reader("/blob", offset, length)])

    async def go() -> None:
        drop()
        assert resident(path) == 0
        assert await read(MiB, 2 * MiB) == data[MiB:3 * MiB]      # from disk: two thread reads
        assert len(threaded) == 2
        threaded.clear()
        assert await read(MiB, 2 * MiB) == data[MiB:3 * MiB]      # cached now: none
        assert threaded == []
        drop()
        cache_first_half_mib()
        assert resident(path) < MiB
        chunks = [c async for c in d.reader("/blob", 0, MiB)]
        assert b"".join(bytes(c) for c in chunks) == data[:MiB]
        # the cached part first, from the loop; the rest from a thread — or from the loop too,
        # when the kernel's readahead (started by the first, partial read) landed in between
        assert len(chunks) == 2 and len(chunks[0]) < MiB and len(threaded) <= 1
        await d.close()
    asyncio.run(go())


def _failing_sync_file_range(err: int) -> object:
    real = fs_mod._sync_file_range

    def sfr(fd: int, offset: int, length: int, flags: int) -> int:
        if flags & fs_mod._SYNC_FILE_RANGE_WAIT_AFTER:      # the write-behind wait
            ctypes.set_errno(err)
            return -1
        return int(real(fd, offset, length, flags))
    return sfr


def test_a_filesystem_without_write_behind_keeps_its_pages(root: Path, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Direct I/O and sync_file_range refused as unsupported (some FUSE / network filesystems):
    the upload goes on, write-behind is switched off for the driver with one warning."""
    monkeypatch.setattr(fs_mod, "_sync_file_range", _failing_sync_file_range(errno.EINVAL))
    chunks = _payload(24)
    d = _driver(root, "write-behind")
    warnings = write_two_files(d, chunks, caplog)
    assert d.dropbehind == 0
    assert warnings.count(
        f"{root}: this filesystem cannot write behind (sync_file_range or posix_fadvise unsupported); "
        "keeping pages cached") == 1
    assert (root / "a/data").read_bytes() == (root / "b/data").read_bytes() == b"".join(chunks)


def test_an_io_error_while_writing_behind_fails_the_write(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fs_mod, "_sync_file_range", _failing_sync_file_range(errno.EIO))
    d = _driver(root, "write-behind")

    async def go() -> None:
        with pytest.raises(StorageError, match="Input/output error"):
            await write_file(d, "/a/data", _payload(24))
        await d.close()
    asyncio.run(go())
    assert d.dropbehind == DROPBEHIND
