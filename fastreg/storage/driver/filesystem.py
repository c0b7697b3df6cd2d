"""Filesystem driver: Distribution's layout under a root directory.

Small metadata operations (link files of ~71 bytes, stat, listdir) run inline on the
event loop: on a local filesystem they take microseconds, less than a hop to a thread.
Bulk data (blob writes, fsync, large reads, recursive deletes) runs in a thread pool.
Objects become visible atomically: ``put_content`` writes a temporary file beside the
target, fsyncs it (unless disabled) and renames it over the target.
"""
from __future__ import annotations

import asyncio
import errno
import os
import shutil
import uuid as _uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .base import FileInfo, InvalidOffset, Observer, PathNotFound, StorageError, StorageFull, check_path

INLINE_MAX = 64 * 1024          # writes/reads below this run on the loop
TMP_PREFIX = ".fastreg-tmp-"
FLAT_DELETE_MAX = 8             # a directory of at most this many files is deleted inline


def _translate(exc: OSError, path: str) -> StorageError:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
        return PathNotFound(path)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(path, os.strerror(exc.errno))
    return StorageError(path, f"{type(exc).__name__}: {exc}")


class FilesystemDriver:
    name = "filesystem"
    # A directory's mtime changes when an entry is added or removed: caches may use it.
    directory_mtimes = True
    # move() renames a directory too (atomically; onto a missing or empty directory only).
    directory_renames = True

    def __init__(self, rootdirectory: str, *, maxthreads: int = 16, fsync: bool = True) -> None:
        self.root = os.path.abspath(rootdirectory)
        self.fsync = fsync
        self._pool = ThreadPoolExecutor(max_workers=max(2, maxthreads), thread_name_prefix="fastreg-fs")
        os.makedirs(self.root, exist_ok=True)

    def _full(self, path: str) -> str:
        return self.root + check_path(path)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # -- small objects ---------------------------------------------------------------------
    async def get_content(self, path: str) -> bytes:
        full = self._full(path)
        try:
            with open(full, "rb", buffering=0) as f:
                if os.fstat(f.fileno()).st_size > INLINE_MAX:
                    return await self._run(f.read)  # type: ignore[no-any-return]
                return f.read()
        except OSError as exc:
            raise _translate(exc, path) from None

    def _put(self, full: str, data: bytes, durable: bool) -> None:
        d = os.path.dirname(full)
        tmp = f"{d}/{TMP_PREFIX}{_uuid.uuid4().hex}"
        try:
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileNotFoundError:
                os.makedirs(d, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, full)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    async def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        full = self._full(path)
        durable = durable and self.fsync
        try:
            if len(data) <= INLINE_MAX and not durable:
                self._put(full, data, False)
            else:
                await self._run(self._put, full, data, durable)
        except OSError as exc:
            raise _translate(exc, path) from None

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

    def _move(self, src: str, dst: str) -> None:
        try:
            os.replace(src, dst)
        except FileNotFoundError:
            if not os.path.exists(src):
                raise
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.replace(src, dst)

    async def move(self, src: str, dst: str) -> None:
        fsrc, fdst = self._full(src), self._full(dst)
        try:
            self._move(fsrc, fdst)
        except OSError as exc:
            raise _translate(exc, src) from None

    def _delete(self, full: str) -> None:
        try:
            os.unlink(full)
        except IsADirectoryError:
            shutil.rmtree(full)
        except PermissionError:  # unlink of a directory on some systems
            if not os.path.isdir(full):
                raise
            shutil.rmtree(full)

    @staticmethod
    def _delete_flat(full: str) -> bool:
        """Remove a directory holding a few plain files (an upload session after its commit),
        inline; False, having removed nothing, if it holds more or any directory."""
        with os.scandir(full) as it:
            entries = [e for _, e in zip(range(FLAT_DELETE_MAX + 1), it)]
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

    async def reader(self, path: str, offset: int = 0, length: int | None = None,
                     chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
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
                if n <= INLINE_MAX:
                    buf = os.pread(fd, n, pos)
                else:
                    buf = await self._run(os.pread, fd, n, pos)
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


class _FsWriter:
    """Streams into one file; keeps one write in flight so I/O overlaps the next receive."""

    def __init__(self, driver: FilesystemDriver, path: str, full: str, fd: int, size: int) -> None:
        self._driver = driver
        self._path = path
        self._full = full
        self._fd: int | None = fd
        self._size = size
        self._pending: asyncio.Future[None] | None = None

    @property
    def size(self) -> int:
        return self._size

    def _do(self, data: bytes | memoryview, observe: Observer | None) -> None:
        if observe is not None:
            observe(data)
        fd = self._fd
        assert fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    async def _drain(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                await pending
            except OSError as exc:
                raise _translate(exc, self._path) from None

    async def write(self, data: bytes | memoryview, observe: Observer | None = None) -> None:
        """Accept `data` (which must not be mutated afterwards) for writing."""
        await self._drain()
        if self._fd is None:
            raise StorageError(self._path, "writer closed")
        self._size += len(data)
        if len(data) <= INLINE_MAX:
            try:
                self._do(data, observe)
            except OSError as exc:
                raise _translate(exc, self._path) from None
        else:
            self._pending = asyncio.get_running_loop().run_in_executor(
                self._driver._pool, self._do, data, observe)

    async def flush(self) -> None:
        """Wait for the write in flight (and its `observe`); nothing is made durable."""
        await self._drain()

    async def commit(self) -> None:
        await self._drain()
        if self._fd is not None and self._driver.fsync:
            try:
                await self._driver._run(os.fsync, self._fd)
            except OSError as exc:
                raise _translate(exc, self._path) from None
        await self.close()

    async def close(self) -> None:
        try:
            await self._drain()
        finally:
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
