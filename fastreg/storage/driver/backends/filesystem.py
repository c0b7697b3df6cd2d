"""Filesystem driver: Distribution's layout under a root directory.

Small metadata operations (link files of ~71 bytes, stat, listdir) run inline on the
event loop: on a local filesystem they take microseconds, less than a hop to a thread.
Bulk data (blob writes, fsync, large reads the page cache lacks, recursive deletes) runs in a
thread pool.
Objects become visible atomically: ``put_content`` writes a temporary file beside the
target, fsyncs it (unless disabled) and renames it over the target.

Durability of names (power loss, not just a crashed process): a rename is only on disk once
the directory holding the new entry is fsynced, and a directory just created only once its
parent is.  So a durable ``put_content`` and every ``move`` (the blob commit) fsync the
target's directory — and the parents of directories they had to create — before returning:
when a request is answered, its blob, link or tag survives a power cut, and the order of
commits (data, then link, then tag) is the order in which they reach the disk.  With
``fastreg.fsync: false`` none of this is done.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import functools
import itertools
import logging
import os
import shutil
import sys
import time
import uuid as _uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .... import _fsio_py, engines
from ..base import (
    Busy,
    Capabilities,
    Chunk,
    FileInfo,
    InvalidOffset,
    Observer,
    PathNotFound,
    StorageError,
    StorageFull,
    check_path,
)
from .directio import DirectIO, DirectStream, Saturated, Unsupported, align_up
from .groupsync import AVAILABLE as GROUPSYNC_AVAILABLE
from .groupsync import GroupSync, mounts_under

log = logging.getLogger("fastreg.storage.filesystem")


# fastreg._fsio: each durable write one GIL-free sequence (or its pure twin)
fsio, FSIO_COMPILED = engines.load("_fsio", _fsio_py)
_enc = os.fsencode

INLINE_MAX = 64 * 1024          # writes/reads below this run on the loop
CACHED_READ_MAX = 1 << 20       # reads up to this size run on the loop too if the page cache has them
BATCH = 1 << 20                 # a writer hands chunks to its thread in batches of this size
BATCH_CHUNKS = 256              # ... or of this many chunks (writev takes at most IOV_MAX)
WRITEBACK = 4 << 20             # a writer to be fsync'd starts writeback every this many bytes
DROPBEHIND = 8 << 20            # default: files growing past this are written behind (below)
TMP_PREFIX = ".fastreg-tmp-"
# Small files read (tag and layer links: ~71 bytes) are kept per process and served again while a
# stat(2) finds the same file unchanged (inode, size, mtime and ctime), in place of open, fstat,
# read and close. A file changed within SETTLED_NS of its read is not kept: timestamps are coarse
# (a clock tick), so two changes in one tick could look alike (git's "racily clean" rule); after
# that, any change — a rename over it, a write in place, a delete and re-create — moves its ctime.
SMALL_CACHED = 512
SMALL_CACHE_ENTRIES = 4096      # oldest first out: at most ~3 MiB
SETTLED_NS = 2_000_000_000
_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ESPIPE)    # a call this filesystem lacks
FLAT_DELETE_MAX = 8             # a directory of at most this many files is deleted inline


def _new_tmp_id() -> None:
    global _tmp_id
    _tmp_id = _uuid.uuid4().hex[:16]


_tmp_id = ""
_new_tmp_id()
os.register_at_fork(after_in_child=_new_tmp_id)     # granian forks its workers
_tmp_seq = itertools.count()


def _tmp_name(d: str) -> str:
    """A temporary name in `d`: random per process (hosts sharing storage, forked workers),
    then a counter — not a fresh UUID per write, whose getrandom(2) showed in push profiles."""
    return f"{d}/{TMP_PREFIX}{_tmp_id}-{next(_tmp_seq)}"


PUT_ATTEMPTS = 4        # writes of a small file into a directory a concurrent delete removes


def _makedirs(d: str) -> list[str]:
    """``os.makedirs(d, exist_ok=True)``; returns the directories it created, outermost first."""
    created: list[str] = []
    missing = d
    while missing and not os.path.isdir(missing):
        created.append(missing)
        missing = os.path.dirname(missing)
    os.makedirs(d, exist_ok=True)
    return created[::-1]


def _rmtree(full: str) -> None:
    """``shutil.rmtree``, with a write racing it (a manifest pushed again while it is deleted):
    an entry gone before it is removed is fine, and a file added before the directory is removed
    is removed with it (a bounded number of times).  `full` missing at the start raises."""
    def gone_ok(_fn: object, path: str, exc: BaseException) -> None:
        if not (isinstance(exc, FileNotFoundError) and path != full):
            raise exc

    def gone_ok_info(fn: object, path: str, info: tuple[type[BaseException], BaseException, object]) -> None:
        gone_ok(fn, path, info[1])

    for attempt in range(PUT_ATTEMPTS):
        try:
            if sys.version_info >= (3, 12):
                shutil.rmtree(full, onexc=gone_ok)
            else:
                shutil.rmtree(full, onerror=gone_ok_info)
            return
        except FileNotFoundError:
            if attempt == 0:
                raise
            return                          # removed by another delete meanwhile
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY or attempt == PUT_ATTEMPTS - 1:
                raise


def _write_new(tmp: str, d: str, data: bytes) -> None:
    """Create `tmp` (it must not exist; its directory `d` is made if missing) holding `data`."""
    fd = -1
    for attempt in range(PUT_ATTEMPTS):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            break
        except FileNotFoundError:
            if attempt == PUT_ATTEMPTS - 1:
                raise
        _makedirs(d)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)


def _unlink_done(path: str, _job: object) -> None:
    """A done-callback: remove `path` (a cancelled write's temporary file), if there."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def _sync_parents(created: list[str], synced: str) -> None:
    """fsync the parent of each directory in `created` (their new entries), but `synced`."""
    parents = dict.fromkeys(os.path.dirname(c) for c in created)
    parents.pop(synced, None)
    if parents:
        fsio.sync_dirs([_enc(d) for d in parents])


def _translate(exc: OSError, path: str) -> StorageError:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
        return PathNotFound(path)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(path, os.strerror(exc.errno))
    return StorageError(path, f"{type(exc).__name__}: {exc}")


class FilesystemDriver:
    name = "filesystem"
    # exclusive(): flock of the path; move() renames directories; a directory's mtime changes
    # when an entry is added or removed
    capabilities = Capabilities(exclusive=True, directory_renames=True, directory_mtimes=True)

    def __init__(self, rootdirectory: str, *, maxthreads: int = 16, fsync: bool = True,
                 dropbehind: int = DROPBEHIND, directio: bool = True, groupsync: bool = False) -> None:
        self.root = os.path.abspath(rootdirectory)
        self.fsync = fsync
        self.bypass_from = dropbehind       # files past this bypass the page cache: direct I/O,
        self.dio = DirectIO(self.root)      # or written behind where direct I/O is refused
        self.dio.enabled = self.dio.enabled and directio and dropbehind > 0
        self.dropbehind = dropbehind if _sync_file_range is not None else 0
        self._pool = ThreadPoolExecutor(max_workers=max(2, maxthreads), thread_name_prefix="fastreg-fs")
        self._small: dict[str, tuple[tuple[int, int, int, int, int], bytes]] = {}   # SMALL_CACHED
        os.makedirs(self.root, exist_ok=True)
        # groupsync: every durable step waits for one shared syncfs instead of its own fsyncs
        self.group: GroupSync | None = None
        if fsync and groupsync:
            inside = mounts_under(self.root) if GROUPSYNC_AVAILABLE else []
            if not GROUPSYNC_AVAILABLE:
                log.warning("storage.filesystem.groupsync: syncfs(2) is not available here; "
                            "each durable write fsyncs its own files")
            elif inside:
                log.warning("storage.filesystem.groupsync: %s is another filesystem, which a "
                            "syncfs(2) of the root's does not write back; each durable write fsyncs "
                            "its own files", inside[0])
            else:
                self.group = GroupSync(self.root, self._pool)

    def _full(self, path: str) -> str:
        # check_path's test, its common case first: no "." or ".." component without a "/."
        if path[:1] == "/" and "/." not in path and "//" not in path and "\\" not in path and "\x00" not in path:
            return self.root + path
        return self.root + check_path(path)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # -- small objects ---------------------------------------------------------------------
    async def get_content(self, path: str) -> bytes:
        full = self._full(path)
        small = self._small
        hit = small.get(full)
        try:
            if hit is not None:
                st = os.stat(full)
                if hit[0] == (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns):
                    return hit[1]
                del small[full]
            fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _translate(exc, path) from None
        try:
            st = os.fstat(fd)       # before the read: a change after it makes the entry stale, never wrong
            if st.st_size > INLINE_MAX:
                # the thread closes it, after its read, even if this request is cancelled meanwhile
                big, fd = fd, -1
                return await self._run(_read_and_close, big, st.st_size)  # type: ignore[no-any-return]
            data = _read_all(fd, st.st_size)    # a link or manifest: µs, less than a thread hop
        except OSError as exc:
            raise _translate(exc, path) from None
        finally:
            if fd >= 0:
                os.close(fd)
        if len(data) <= SMALL_CACHED and st.st_size == len(data) and time.time_ns() - SETTLED_NS > max(
                st.st_mtime_ns, st.st_ctime_ns):
            if len(small) >= SMALL_CACHE_ENTRIES:
                del small[next(iter(small))]
            small[full] = ((st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns), data)
        return data

    def _put(self, full: str, data: bytes, durable: bool) -> None:
        """A temporary file (never another's: O_EXCL), written, fsynced, renamed over `full`,
        its directory fsynced — one GIL-free sequence (fastreg._fsio); the temporary file is
        gone if it fails.  A missing directory is created first (and its parents fsynced)."""
        d = os.path.dirname(full)
        tmp, target, sync = _enc(_tmp_name(d)), _enc(full), _enc(d) if durable else None
        created: list[str] = []
        for attempt in range(PUT_ATTEMPTS):
            try:
                fsio.put_file(tmp, target, data, durable, sync)
                break
            except FileNotFoundError as exc:
                # the directory was missing, or a delete of it (a manifest deleted while it is
                # pushed again) removed it while this wrote: make it (another request may have
                # made it since: then nothing is created) and try again, a bounded number of times
                if exc.filename not in (tmp, target, sync) or attempt == PUT_ATTEMPTS - 1:
                    raise
            created += _makedirs(d)
        if durable and created:
            _sync_parents(created, d)

    async def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        full = self._full(path)
        durable = durable and self.fsync
        if durable and self.group is not None:
            try:
                await self._put_grouped(full, data)
            except OSError as exc:
                raise _translate(exc, path) from None
            return
        try:
            if len(data) <= INLINE_MAX and not durable:
                self._put(full, data, False)
            else:
                await self._run(self._put, full, data, durable)
        except OSError as exc:
            raise _translate(exc, path) from None

    async def _put_grouped(self, full: str, data: bytes) -> None:
        """`_put` with its fsyncs replaced by shared barriers (groupsync): the temporary file's
        bytes are on disk before the rename, the rename (and any directory made) before this
        returns."""
        assert self.group is not None
        d = os.path.dirname(full)
        since = self.group.mark()
        for attempt in range(PUT_ATTEMPTS):
            tmp = _tmp_name(d)
            if len(data) <= INLINE_MAX:
                _write_new(tmp, d, data)
            else:
                job = self._pool.submit(_write_new, tmp, d, data)
                try:
                    await asyncio.wrap_future(job)
                except asyncio.CancelledError:  # the thread writes on: its file goes once written
                    job.add_done_callback(functools.partial(_unlink_done, tmp))
                    raise
            try:
                await self.group.barrier(since)
                os.rename(tmp, full)
                break
            except FileNotFoundError:
                # a delete of the directory (a manifest deleted while it is pushed again) took
                # the temporary file with it: again, a bounded number of times (as `_put`)
                if attempt == PUT_ATTEMPTS - 1:
                    raise
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        await self.group.barrier(since)

    async def stat(self, path: str) -> FileInfo:
        try:
            st = os.stat(self._full(path))
        except OSError as exc:
            raise _translate(exc, path) from None
        is_dir = (st.st_mode & 0o170000) == 0o040000
        return FileInfo(path, 0 if is_dir else st.st_size, st.st_mtime, is_dir)

    async def list(self, path: str) -> list[str]:
        try:
            return [n for n in os.listdir(self._full(path)) if not n.startswith(TMP_PREFIX)]
        except OSError as exc:
            raise _translate(exc, path) from None

    def _move(self, src: str, dst: str, fsync: bool = True) -> None:
        d = os.path.dirname(dst)
        fsync = fsync and self.fsync
        sync = _enc(d) if fsync else None
        try:
            fsio.rename_sync(_enc(src), _enc(dst), sync)
            return
        except FileNotFoundError:
            if not os.path.exists(src):
                raise
        # the target's directory was missing: make it (another request, committing a blob of
        # the same prefix, may have made it since: then nothing is created) and try once more
        created = _makedirs(d)
        fsio.rename_sync(_enc(src), _enc(dst), sync)
        if fsync:
            _sync_parents(created, d)

    async def move(self, src: str, dst: str) -> None:
        fsrc, fdst = self._full(src), self._full(dst)
        try:
            if self.group is not None:
                since = self.group.mark()
                self._move(fsrc, fdst, fsync=False)     # (a rename: µs) then the shared sync
                await self.group.barrier(since)
            elif self.fsync:      # directory fsyncs wait for the disk: off the event loop
                await self._run(self._move, fsrc, fdst)
            else:
                self._move(fsrc, fdst)
        except OSError as exc:
            raise _translate(exc, src) from None

    def _delete(self, full: str) -> None:
        try:
            os.unlink(full)
        except IsADirectoryError:
            _rmtree(full)
        except PermissionError:  # unlink of a directory on some systems
            if not os.path.isdir(full):
                raise
            _rmtree(full)

    @staticmethod
    def _delete_flat(full: str) -> bool:
        """Remove a directory holding a few plain files (an upload session after its commit),
        inline; False, having removed nothing, if it holds more or any directory."""
        with os.scandir(full) as it:
            entries = [e for _, e in zip(range(FLAT_DELETE_MAX + 1), it, strict=False)]
        if len(entries) > FLAT_DELETE_MAX or any(e.is_dir(follow_symlinks=False) for e in entries):
            return False
        for e in entries:
            try:
                os.unlink(e.path)
            except FileNotFoundError:
                pass
        try:
            os.rmdir(full)
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:    # something was added meanwhile: rmtree it
                raise
            return False
        return True

    async def delete(self, path: str) -> None:
        full = self._full(path)
        try:
            try:
                os.unlink(full)
                return
            except (IsADirectoryError, PermissionError):
                pass
            if not os.path.isdir(full):
                self._delete(full)              # raises what unlink of a non-directory raises
            elif not self._delete_flat(full):
                await self._run(self._delete, full)
        except OSError as exc:
            raise _translate(exc, path) from None

    # -- streams ---------------------------------------------------------------------------
    async def writer(self, path: str, append: bool = False) -> _FsWriter:
        full = self._full(path)
        flags = os.O_WRONLY | os.O_CREAT | (0 if append else os.O_TRUNC)
        try:
            try:
                fd = os.open(full, flags, 0o644)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(full), exist_ok=True)
                fd = os.open(full, flags, 0o644)
            size = os.lseek(fd, 0, os.SEEK_END)
        except OSError as exc:
            raise _translate(exc, path) from None
        return _FsWriter(self, path, full, fd, size)

    @contextlib.asynccontextmanager
    async def exclusive(self, path: str, *, check_exists: bool = True) -> AsyncIterator[None]:
        """flock(LOCK_EX | LOCK_NB) on the existing file or directory `path` (see the driver
        contract in base.py).  Nothing is created; the lock belongs to the inode and follows it
        through a rename; closing (or the process dying) releases it.  (`path` must exist to be
        locked: `check_exists` changes nothing here.)"""
        full = self._full(path)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise PathNotFound(path) from None
        except OSError as exc:
            raise _translate(exc, path) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Busy(path, "locked by another request") from None
            yield
        finally:
            os.close(fd)

    async def reader(self, path: str, offset: int = 0, length: int | None = None,
                     chunk_size: int = 1 << 20) -> AsyncIterator[Chunk]:
        full = self._full(path)
        try:
            fd = os.open(full, os.O_RDONLY)
        except OSError as exc:
            raise _translate(exc, path) from None
        try:
            size = os.fstat(fd).st_size
            if offset < 0 or offset > size:
                raise InvalidOffset(path, f"offset {offset} beyond size {size}")
            end = size if length is None else min(size, offset + length)
            pos = offset
            while pos < end:
                n = min(chunk_size, end - pos)
                buf: Chunk
                if n <= INLINE_MAX:
                    buf = os.pread(fd, n, pos)
                else:
                    buf = (n <= CACHED_READ_MAX and _read_cached(fd, n, pos)) or await self._run(os.pread, fd, n, pos)
                if not buf:
                    raise StorageError(path, "file shrank while reading")
                pos += len(buf)
                yield buf
        finally:
            os.close(fd)

    def local_path(self, path: str) -> str | None:
        return self._full(path)

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        return None

    async def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.dio.shutdown()
        if self.group is not None:
            self.group.close()


class _FsWriter:
    """Streams into one file.

    Chunks are gathered into batches of up to ``BATCH`` bytes; each batch is hashed
    (``observe``) and written by one worker-thread job, one job in flight, so hashing and
    I/O overlap the next network reads with one thread hand-off per batch, not per chunk
    (granian hands HTTP/1.1 bodies over in frames of at most ~400 KiB). A lone small chunk
    is written inline. When the file is to be fsync'd, writeback is started behind the
    writes every ``WRITEBACK`` bytes (``sync_file_range``), so the fsync at commit has
    little left to wait for. (Batches are small so that the last one, written after the
    request body ends, delays the response little: chunked uploads pay it per PATCH.)

    Past the driver's ``dropbehind`` (a size; 0 turns this off) a file bypasses the page cache.
    Blob data is written once and read later, if ever; left in the page cache, a stream of
    large pushes fills memory with pages nobody reads, evicting the manifests and popular
    layers that pulls do read, and every page needs a fresh allocation — on VMs whose memory
    the host backs lazily, the first touch of a page is what bounds a large push
    (bench/RESULTS.md has the measurements). Small files (configs,
    small layers, everything below the threshold) stay cached, and a pull caches what it reads
    as usual.  The bytes past the threshold are written with direct I/O (``directio``: aligned
    staging buffers, written by other threads while the job fills the next one); where the
    filesystem refuses it, write-behind: the pages written more than ``WRITEBACK`` bytes ago
    are waited for on disk and dropped (``POSIX_FADV_DONTNEED``).  Either way the buffered
    part of a committed file is dropped whole after its fsync."""

    def __init__(self, driver: FilesystemDriver, path: str, full: str, fd: int, size: int) -> None:
        self._driver = driver
        self._path = path
        self._full = full
        self._fd: int | None = fd
        self._size = size                   # bytes accepted
        self._written = size                # bytes handed to jobs (or written inline)
        self._wb_from = size                # writeback not started from here on
        self._drop_from = 0                 # pages before this were dropped (write-behind)
        self._batch: list[bytes | memoryview] = []
        self._batched = 0
        self._observe: Observer | None = None
        self._pending: asyncio.Future[None] | None = None
        self._direct: DirectStream | None = None
        self._direct_from = max(driver.bypass_from, align_up(size))     # aligned: direct I/O from here
        self._since = driver.group.mark() if driver.group is not None else 0    # groupsync: written since

    @property
    def size(self) -> int:
        return self._size

    def _pwritev(self, chunks: list[bytes | memoryview], offset: int) -> None:
        fd = self._fd
        assert fd is not None
        total = sum(len(c) for c in chunks)
        done = 0
        while done < total:
            done += os.pwritev(fd, chunks, offset) if done == 0 else os.pwrite(fd, _tail(chunks, done), offset + done)

    def _do(self, chunks: list[bytes | memoryview], observe: Observer | None, offset: int) -> None:
        if observe is not None:
            for c in chunks:
                observe(c)
        total = sum(len(c) for c in chunks)
        end = offset + total
        if self._driver.dio.enabled and end > self._direct_from:
            head = self._direct_from - offset
            if head > 0:                    # up to the aligned start: through the page cache
                first, chunks = _split(chunks, head)
                self._pwritev(first, offset)
                offset = self._direct_from
            if self._direct is None:
                try:
                    self._direct = self._driver.dio.open(self._full, offset, self._fd)  # type: ignore[arg-type]
                except Unsupported:
                    pass
                except Saturated:           # written behind; direct again from the next boundary
                    self._direct_from = align_up(end)
            if self._direct is not None:
                for c in chunks:
                    self._direct.feed(memoryview(c))
                return
        self._pwritev(chunks, offset)
        fd = self._fd
        assert fd is not None
        drop = self._driver.dropbehind
        if (self._driver.fsync or drop) and end - self._wb_from >= WRITEBACK:
            _start_writeback(fd, self._wb_from, end - self._wb_from)
            if drop and end > drop and self._wb_from - WRITEBACK > self._drop_from:
                # writeback of these pages started at least WRITEBACK bytes ago: mostly done
                limit = self._wb_from - WRITEBACK
                if _drop_pages(fd, self._drop_from, limit - self._drop_from):
                    self._drop_from = limit
                else:
                    log.warning("%s: this filesystem cannot write behind (sync_file_range or "
                                "posix_fadvise unsupported); keeping pages cached", self._driver.root)
                    self._driver.dropbehind = 0
            self._wb_from = end

    async def _drain(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                await pending
            except OSError as exc:
                raise _translate(exc, self._path) from None

    async def _submit(self) -> None:
        """Hand the gathered batch to a job (after the one in flight)."""
        await self._drain()
        if not self._batch:
            return
        batch, self._batch, n, self._batched = self._batch, [], self._batched, 0
        offset, self._written = self._written, self._written + n
        self._pending = asyncio.get_running_loop().run_in_executor(
            self._driver._pool, self._do, batch, self._observe, offset)

    async def write(self, data: bytes | memoryview, observe: Observer | None = None) -> None:
        """Accept `data` (which must not be mutated afterwards) for writing."""
        if self._fd is None:
            raise StorageError(self._path, "writer closed")
        if self._batch and observe != self._observe:     # (bound methods: ==, not is)
            await self._submit()
        self._observe = observe
        self._size += len(data)
        if not self._batch and len(data) <= INLINE_MAX and (
                self._written + len(data) <= self._direct_from or not self._driver.dio.enabled):
            await self._drain()         # (never direct I/O inline: it may wait for the device)
            try:
                self._do([data], observe, self._written)
            except OSError as exc:
                raise _translate(exc, self._path) from None
            self._written += len(data)
            return
        self._batch.append(data)
        self._batched += len(data)
        if self._batched >= BATCH or len(self._batch) >= BATCH_CHUNKS:
            await self._submit()

    async def flush(self) -> None:
        """Write what was accepted (and `observe` it); nothing is made durable."""
        await self._submit()
        await self._drain()
        if self._direct is not None:
            stream, self._direct = self._direct, None
            try:
                await self._driver._run(self._finish_direct, stream)
            except OSError as exc:
                raise _translate(exc, self._path) from None

    def _finish_direct(self, stream: DirectStream) -> None:
        offset, tail = stream.finish()
        if tail:                            # not a whole block: through the page cache
            self._pwritev([tail], offset)
        self._direct_from = align_up(offset + len(tail))    # a next append: buffered up to here

    async def commit(self) -> None:
        """Write the rest and make the file durable; closed afterwards, whatever the outcome
        (callers do not close a writer they asked to commit)."""
        try:
            await self.flush()
            drop = 0 < self._driver.dropbehind < self._size
            if self._fd is not None and (self._driver.fsync or drop):
                group = self._driver.group
                try:
                    if group is not None:       # the shared sync instead of this file's fsync
                        await group.barrier(self._since)
                        _written_back(self._fd)
                    if group is None or drop:
                        await self._driver._run(self._sync, self._fd, drop, group is None)
                except OSError as exc:
                    raise _translate(exc, self._path) from None
        except BaseException:
            with contextlib.suppress(StorageError, OSError):
                await self.close()
            raise
        await self.close()

    def _sync(self, fd: int, drop: bool, fsync: bool) -> None:
        if fsync and self._driver.fsync:
            os.fsync(fd)
        if drop:    # write-behind: after the fsync every page is clean and goes; without it, the
            try:    # clean ones go, the rest start writeback
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError as exc:
                if exc.errno not in _UNSUPPORTED:
                    raise

    async def close(self) -> None:
        try:
            if self._fd is not None:
                await self.flush()
        finally:
            self._batch, self._batched = [], 0
            if self._direct is not None:    # a failed flush: wait for its writes in flight
                stream, self._direct = self._direct, None
                await self._driver._run(stream.close)
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    async def cancel(self) -> None:
        try:
            await self.close()
        except StorageError:
            pass
        try:
            os.unlink(self._full)
        except FileNotFoundError:
            pass


def _read_all(fd: int, size: int) -> bytes:
    """The whole file `fd` holds: `size` bytes by its fstat (more if it grew since)."""
    data = os.read(fd, size + 1)
    if len(data) <= size:       # a regular file reads short only at its end
        return data
    parts = [data]
    while chunk := os.read(fd, 1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def _read_and_close(fd: int, size: int) -> bytes:
    try:
        return _read_all(fd, size)
    finally:
        os.close(fd)


_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0) if hasattr(os, "preadv") else 0


def _read_cached(fd: int, n: int, offset: int) -> bytearray | memoryview | None:
    """Up to `n` bytes at `offset` if the page cache holds them (at least their start), read on
    the event loop: ``preadv2(RWF_NOWAIT)`` never waits for the disk, it answers EAGAIN or
    a short read instead. A cached read is a memory copy, cheaper than the hand-off to a
    thread it saves (pull-range: one per 1 MiB range). None: nothing cached, use a thread."""
    global _NOWAIT
    if not _NOWAIT:
        return None
    buf = bytearray(n)
    try:
        got = os.preadv(fd, [buf], offset, _NOWAIT)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:      # a filesystem or kernel without it
            _NOWAIT = 0
            return None
        raise
    if got == n:
        return buf
    return memoryview(buf)[:got] if got > 0 else None


def _split(chunks: list[bytes | memoryview], n: int) -> tuple[list[bytes | memoryview], list[bytes | memoryview]]:
    """`chunks` as (their first `n` bytes, the rest)."""
    for i, c in enumerate(chunks):
        if len(c) >= n:
            view = memoryview(c)
            rest = [view[n:], *chunks[i + 1:]] if len(c) > n else chunks[i + 1:]
            return [*chunks[:i], view[:n]], rest
        n -= len(c)
    return list(chunks), []


def _tail(chunks: list[bytes | memoryview], skip: int) -> memoryview:
    """The bytes of `chunks` after the first `skip` (after a short writev; rare)."""
    return memoryview(b"".join(chunks))[skip:]


def _load_sync_file_range() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range() if sys.platform.startswith("linux") else None
_SYNC_FILE_RANGE_WAIT_BEFORE, _SYNC_FILE_RANGE_WRITE, _SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing `length` bytes at `offset` back to disk without waiting (Linux
    ``sync_file_range(SYNC_FILE_RANGE_WRITE)``): a hint, durability still comes from fsync."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _written_back(fd: int) -> None:
    """After a ``syncfs`` (groupsync): raise the error writing this file's pages back met, if no
    one saw it yet — what its fsync would report, where the sync reported it to whichever request
    waited then (pages an earlier request appended).  ``sync_file_range`` waiting for a clean file:
    no disk access."""
    if _sync_file_range is not None and _sync_file_range(
            fd, 0, 0, _SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE | _SYNC_FILE_RANGE_WAIT_AFTER) != 0:
        err = ctypes.get_errno()
        if err not in _UNSUPPORTED:
            raise OSError(err, os.strerror(err))


def _drop_pages(fd: int, offset: int, length: int) -> bool:
    """Wait until `length` bytes at `offset` are on disk, then drop them from the page cache
    (write-behind, see _FsWriter). Not a durability point: the file is fsync'd at commit.
    False if the filesystem lacks either call (some FUSE and network filesystems); a real
    I/O error (EIO, ENOSPC...) is raised: it fails the upload as a failed write would."""
    assert _sync_file_range is not None     # (dropbehind is 0 where it is missing)
    if _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE
                        | _SYNC_FILE_RANGE_WAIT_AFTER) != 0:
        err = ctypes.get_errno()
        if err in _UNSUPPORTED:
            return False
        raise OSError(err, os.strerror(err))
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return False
        raise
    return True
