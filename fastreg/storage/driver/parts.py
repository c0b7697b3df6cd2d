"""What the object stores share: the keys of paths under a root (``ObjectKeys``), and the
part-writer (S3, Azure and GCS writers are adapters of it).

An object store takes a large object as *parts*: S3 multipart-upload parts, Azure staged
blocks, GCS resumable-upload chunks.  ``PartWriter`` does what is the same for all three:

* ``write(data, observe)`` calls ``observe`` on the same bytes (in a worker thread past
  ``INLINE_MAX`` bytes, on the loop below), appends them to the buffer and cuts the buffer into
  parts of the store's ``chunksize``;
* each full part is uploaded by a task while the next bytes arrive — one part in flight, so
  hashing and the network overlap — and the previous one is drained (awaited) before the next
  starts;
* a part that fails makes the writer *broken*: its bytes are gone and later ones cannot follow
  them, so ``commit`` refuses, ``close`` leaves the object as the writer found it
  (``_abandon``: the client resumes from the offset it reports) and ``cancel`` still deletes;
* ``commit``/``close`` drain the part in flight and hand the tail (less than one part) to the
  store's ``_complete``/``_keep``; ``cancel`` waits for the part in flight and calls
  ``_discard``; the store's exceptions become ``StorageError`` at this boundary.

What is kept between requests — so that another process can append — is the store's own: the
S3 adapter keeps its part list in a sidecar object beside the upload, Azure's committed block
list is in the blob itself, GCS composes each request's piece onto the object.

Memory bound: a writer holds its buffer (less than ``chunksize`` bytes between writes; during
``write`` at most ``chunksize - 1`` plus that call's data), the part being cut (``chunksize``)
and the one part in flight (``chunksize``): below ``3 * chunksize + len(data)`` at any moment,
``2 * chunksize`` between calls.
"""
from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable

from .base import Observer, StorageError, check_path

INLINE_MAX = 64 * 1024             # observe() below this size runs on the loop


async def rechunk(source: AsyncIterator[bytes], chunk_size: int) -> AsyncIterator[bytes]:
    """The bytes of `source` again, in chunks of exactly `chunk_size` (the last one shorter): what a
    store's download hands over in pieces of its own size becomes the reader's chunks."""
    buf = bytearray()
    async for chunk in source:
        buf += chunk
        while len(buf) >= chunk_size:
            out = bytes(buf[:chunk_size])
            del buf[:chunk_size]
            yield out
    if buf:
        yield bytes(buf)


class ObjectKeys:
    """Storage paths as object keys: ``/a/b`` is ``<root>/a/b`` (``a/b`` without a root); a
    directory is every key under ``<key>/``.  A driver sets ``root`` (no leading or trailing
    ``/``)."""

    root: str

    def key(self, path: str) -> str:
        check_path(path)
        return f"{self.root}{path}" if self.root else path[1:]

    def _file_key(self, path: str) -> str:
        """The key of an object at `path`; empty for the root, which is only a directory."""
        return self.key(path).rstrip("/")

    def _dir_prefix(self, path: str) -> str:
        k = self._file_key(path)
        return k + "/" if k else ""


class PartWriter(ABC):
    """Buffers writes into parts of ``chunksize`` and uploads them with one in flight.

    An adapter sets ``errors`` (what its client raises) and implements ``_error`` (translate one
    to ``StorageError``), ``_upload_part`` (one full part) and the ends: ``_complete`` (commit),
    ``_keep`` (close: leave what was written for a later append), ``_abandon`` (close of a broken
    writer) and ``_discard`` (cancel).  ``_prepare_part`` runs before each part's upload starts
    (S3 creates its multipart upload there); ``hold_back`` keeps at least one byte for the tail
    (GCS: the final chunk must not be empty).
    """

    errors: tuple[type[BaseException], ...] = (StorageError,)
    hold_back = False

    def __init__(self, path: str, chunksize: int, size: int = 0, tail: bytes = b"") -> None:
        self._path = path
        self._chunksize = chunksize
        self._buf = bytearray(tail)
        self._size = size
        self._pending: asyncio.Task[None] | None = None
        self._done = False
        self._broken = False

    # -- the store's part ------------------------------------------------------------------
    @abstractmethod
    def _error(self, exc: BaseException) -> StorageError:
        """(the store's own call)"""

    async def _prepare_part(self) -> None:  # noqa: B027 (optional: nothing to do by default)
        """Before a part's upload starts (after the previous one finished)."""

    @abstractmethod
    async def _upload_part(self, part: bytes) -> None:
        """(the store's own call)"""

    @abstractmethod
    async def _complete(self, tail: bytes) -> None:
        """(the store's own call)"""

    @abstractmethod
    async def _keep(self, tail: bytes) -> None:
        """(the store's own call)"""

    async def _abandon(self) -> None:  # noqa: B027 (optional: nothing to do by default)
        """Close of a broken writer: leave the object as this writer found it."""

    @abstractmethod
    async def _discard(self) -> None:
        """(the store's own call)"""

    # -- shared ----------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self._size

    def _check_open(self) -> None:
        if self._done or self._broken:
            raise StorageError(self._path, "writer closed" if self._done else "writer failed")

    async def write(self, data: bytes | memoryview, observe: Observer | None = None) -> None:
        self._check_open()
        if observe is not None:
            if len(data) > INLINE_MAX:
                await asyncio.get_running_loop().run_in_executor(None, observe, data)
            else:
                observe(data)
        self._buf += data
        self._size += len(data)
        cs = self._chunksize
        while len(self._buf) > cs or (len(self._buf) == cs and not self.hold_back):
            part = bytes(self._buf[:cs])
            del self._buf[:cs]
            await self._drain()
            try:
                await self._prepare_part()
            except BaseException as exc:
                self._broken = True              # `part` is gone: see close()
                if isinstance(exc, self.errors):
                    raise self._error(exc) from None
                raise
            self._pending = asyncio.ensure_future(self._guarded(self._upload_part(part)))

    async def _guarded(self, upload: Awaitable[None]) -> None:
        """Upload a part; if it fails, its bytes are gone and later ones cannot follow them."""
        try:
            await upload
        except BaseException:
            self._broken = True
            raise

    async def _drain(self) -> None:
        """Wait for the part in flight."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                await pending
            except BaseException as exc:
                self._broken = True              # its bytes are gone: see close()
                if isinstance(exc, self.errors):
                    raise self._error(exc) from None
                raise

    async def _settle(self) -> None:
        """Wait for the part in flight, ignoring how it ended (cancel)."""
        if self._pending is not None:
            with contextlib.suppress(*self.errors):
                await self._pending
            self._pending = None

    def _take_tail(self) -> bytes:
        tail, self._buf = bytes(self._buf), bytearray()
        return tail

    async def commit(self) -> None:
        self._check_open()
        try:
            await self._drain()
            self._done = True
            await self._complete(self._take_tail())
        except self.errors as exc:
            raise self._error(exc) from None

    async def close(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            with contextlib.suppress(StorageError):
                await self._drain()
            if not self._broken:
                try:
                    await self._keep(self._take_tail())
                    return
                except self.errors:
                    if not self._broken:         # a failure of the store, not of a part
                        raise
            await self._abandon()
        except self.errors as exc:
            raise self._error(exc) from None

    async def cancel(self) -> None:
        self._done = True
        await self._settle()
        try:
            await self._discard()
        except self.errors as exc:
            raise self._error(exc) from None
