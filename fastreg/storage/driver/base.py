"""The storage driver interface.

Drivers know nothing of HTTP or OCI: they store byte objects at '/'-separated absolute
paths (see ``fastreg.storage.layout``).  Contract every driver honours (checked by the
conformance suite in ``tests/storage``):

* ``get_content``/``put_content`` move small objects whole; ``put_content`` is atomic:
  a reader sees the old object or the new one, never a mix or a truncated file.
  ``durable=False`` skips the flush to stable storage (for caches such as hash states).
* ``writer(path, append)`` streams a large object.  ``write`` may return before the
  bytes are on disk (one write is kept in flight so that hashing and I/O overlap the
  next network read); ``size`` counts every byte accepted.  ``commit`` makes the
  object durable; ``close`` releases it, leaving what was written for a later
  ``writer(path, append=True)`` (another request, process or replica); ``cancel``
  deletes it.  ``write(data, observe)`` calls ``observe(data)`` on the same bytes in the
  same worker thread: this is how upload digests are computed without a second pass.
* ``reader(path, offset, length)`` yields chunks from ``offset``.
* ``list(path)`` returns the names of direct children; ``delete`` is recursive.
* ``move(src, dst)`` replaces ``dst`` atomically when it exists.
* A missing path raises ``PathNotFound``; a bad offset raises ``InvalidOffset``.
* Optional: ``exclusive(path)``, an async context manager holding an exclusive lock on the
  existing object or directory ``path`` for every process that shares the storage — on this
  host for the filesystem (``flock`` of it; nothing is created), on every host for S3 and Azure
  (a lease object ``<path>/.fastreg-lock`` the store creates only if absent, renewed while
  held, breakable once expired: ``lease.py``) — or raising ``Busy`` at once when someone else
  holds it, ``PathNotFound`` when there is nothing at ``path``.  ``check_exists=False`` leaves
  that check to the caller, who looks, under the lock, at what it needs there (a request it
  saves on object stores): a ``PathNotFound`` raised inside the block then means there was
  nothing, and the lock leaves no object behind.  Upload sessions lock their
  directory with it so that two requests never write one session at the same time; drivers
  without it (GCS: see gcs.py) get an in-process lock only.
* ``local_path`` returns an OS path when the object is a local file (for sendfile-style
  responses), else ``None``; ``redirect_url`` may return a URL the client can fetch the
  object from directly (object stores), else ``None``.
* ``capabilities`` says which optional behaviours a driver has (``Capabilities``); callers ask
  it, never probe for attributes.  A wrapper (``DriverWrapper``: metrics, faults, storage
  middleware, the Redis cache) forwards everything to the driver it wraps and overrides only
  what it changes, capabilities included.
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

Observer = Callable[[memoryview | bytes], object]
# What a reader yields: bytes, or a bytearray / memoryview the consumer may keep (never reused).
Chunk = bytes | bytearray | memoryview


class StorageError(Exception):
    """Base of typed driver errors."""

    def __init__(self, path: str, detail: str = "") -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"{type(self).__name__}: {path}" + (f": {detail}" if detail else ""))


class PathNotFound(StorageError):
    pass


class InvalidPath(StorageError):
    pass


class InvalidOffset(StorageError):
    pass


class Busy(StorageError):
    """``exclusive(path)``: another request holds the lock."""


class StorageFull(StorageError):
    """No space left (ENOSPC / quota)."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    mtime: float
    is_dir: bool


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a driver can do beyond the required methods."""

    # ``exclusive(path)``: a lock every process sharing the storage respects (see the module doc)
    exclusive: bool = False
    # ``move`` renames a directory too, atomically (onto a missing or empty directory only)
    directory_renames: bool = False
    # a directory's mtime changes when an entry is added or removed: listings may be cached by it
    directory_mtimes: bool = False
    # blob HEADs and ranged GETs are redirected too, before the method or a Range matter
    # (Distribution's storage middleware); otherwise only whole-blob GETs may be
    redirects_every_read: bool = False


NO_CAPABILITIES = Capabilities()


class FileWriter(Protocol):
    @property
    def size(self) -> int: ...

    async def write(self, data: bytes | memoryview, observe: Observer | None = None) -> None: ...

    async def commit(self) -> None: ...

    async def cancel(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class StorageDriver(Protocol):
    name: str
    capabilities: Capabilities

    async def get_content(self, path: str) -> bytes: ...

    async def put_content(self, path: str, data: bytes, durable: bool = True) -> None: ...

    async def stat(self, path: str) -> FileInfo: ...

    async def list(self, path: str) -> list[str]: ...

    async def move(self, src: str, dst: str) -> None: ...

    async def delete(self, path: str) -> None: ...

    async def writer(self, path: str, append: bool = False) -> FileWriter: ...

    def reader(self, path: str, offset: int = 0, length: int | None = None,
               chunk_size: int = 1 << 20) -> AsyncIterator[Chunk]: ...

    def local_path(self, path: str) -> str | None: ...

    async def redirect_url(self, path: str, method: str = "GET") -> str | None: ...

    async def close(self) -> None: ...


class DriverWrapper:
    """A driver around another: every method forwards to ``inner``, so a wrapper overrides only
    what it changes.  ``name`` and ``capabilities`` are the inner driver's unless the wrapper
    sets its own."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities

    async def get_content(self, path: str) -> bytes:
        return await self.inner.get_content(path)

    async def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        await self.inner.put_content(path, data, durable)

    async def stat(self, path: str) -> FileInfo:
        return await self.inner.stat(path)

    async def list(self, path: str) -> list[str]:
        return await self.inner.list(path)

    async def move(self, src: str, dst: str) -> None:
        await self.inner.move(src, dst)

    async def delete(self, path: str) -> None:
        await self.inner.delete(path)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        return await self.inner.writer(path, append)

    def reader(self, path: str, offset: int = 0, length: int | None = None,
               chunk_size: int = 1 << 20) -> AsyncIterator[Chunk]:
        return self.inner.reader(path, offset, length, chunk_size)

    def local_path(self, path: str) -> str | None:
        return self.inner.local_path(path)

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        return await self.inner.redirect_url(path, method)

    def exclusive(self, path: str, *, check_exists: bool = True) -> contextlib.AbstractAsyncContextManager[None]:
        """Only when ``capabilities.exclusive``."""
        return exclusive_lock(self.inner, path, check_exists=check_exists)

    async def close(self) -> None:
        await self.inner.close()


class WriterWrapper:
    """A writer around another, for a ``DriverWrapper`` whose ``writer`` changes something: every
    method forwards to ``inner``, and so does the optional ``flush`` (wait for the writes in
    flight and their ``observe``: uploads check a digest before anything is made durable only
    through it), present exactly when the inner writer has it."""

    def __init__(self, inner: FileWriter) -> None:
        self.inner = inner
        flush = getattr(inner, "flush", None)
        if flush is not None:
            self.flush = flush

    @property
    def size(self) -> int:
        return self.inner.size

    async def write(self, data: bytes | memoryview, observe: Observer | None = None) -> None:
        await self.inner.write(data, observe)

    async def commit(self) -> None:
        await self.inner.commit()

    async def cancel(self) -> None:
        await self.inner.cancel()

    async def close(self) -> None:
        await self.inner.close()


def exclusive_lock(driver: StorageDriver, path: str, *,
                   check_exists: bool = True) -> contextlib.AbstractAsyncContextManager[None]:
    """``driver.exclusive(path)``, for a driver whose capabilities include it."""
    if not driver.capabilities.exclusive:
        raise TypeError(f"the {driver.name} driver has no exclusive(path)")
    return driver.exclusive(path, check_exists=check_exists)  # type: ignore[attr-defined,no-any-return]


def innermost(driver: StorageDriver) -> StorageDriver:
    """The backend under any wrappers (for what only a backend has, e.g. the s3 driver's keys)."""
    while isinstance(driver, DriverWrapper):
        driver = driver.inner
    return driver


def check_path(path: str) -> str:
    """Reject anything that is not a clean absolute path (defence in depth: callers validate)."""
    if (not path.startswith("/") or "\x00" in path or "//" in path or "\\" in path
            or any(p in (".", "..") for p in path.split("/")[1:])):
        raise InvalidPath(path)
    return path
