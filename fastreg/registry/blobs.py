"""Blobs: content-addressed data shared by all repositories, linked into each repository.

A blob is visible in a repository when ``_layers/<alg>/<hex>/link`` exists there and the
data exists under ``blobs/``.  Data is only ever moved into ``blobs/`` after its digest
has been verified, so whatever is there matches its name.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

from ..digest import Digest
from ..errors import RegistryError
from ..storage import layout
from ..storage.driver.base import Chunk, FileInfo, PathNotFound, StorageDriver

COPY_CHUNK = 1 << 20


class BlobStore:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def stat_data(self, d: Digest) -> FileInfo | None:
        try:
            return await self.driver.stat(layout.blob_data(d.algorithm, d.hex))
        except PathNotFound:
            return None

    async def is_linked(self, name: str, d: Digest) -> bool:
        try:
            await self.driver.stat(layout.layer_link(name, d.algorithm, d.hex))
            return True
        except PathNotFound:
            return False

    async def stat(self, name: str, d: Digest) -> FileInfo:
        """The blob's data info if it is linked into `name`; else BLOB_UNKNOWN.  (is_linked and
        stat_data, inline: every HEAD and GET of a blob asks.)"""
        stat = self.driver.stat
        try:
            await stat(layout.layer_link(name, d.algorithm, d.hex))
            info = await stat(layout.blob_data(d.algorithm, d.hex))
        except PathNotFound:
            raise RegistryError("BLOB_UNKNOWN", {"digest": str(d)}) from None
        if info.is_dir:
            raise RegistryError("BLOB_UNKNOWN", {"digest": str(d)})
        return info

    async def link(self, name: str, d: Digest) -> None:
        await self.driver.put_content(layout.layer_link(name, d.algorithm, d.hex), str(d).encode())

    async def unlink(self, name: str, d: Digest) -> None:
        try:
            await self.driver.delete(layout.layer_dir(name, d.algorithm, d.hex))
        except PathNotFound:
            raise RegistryError("BLOB_UNKNOWN", {"digest": str(d)}) from None

    async def mount(self, name: str, d: Digest, source: str | None) -> FileInfo | None:
        """Link an existing blob into `name` (cross-repository mount); None if it can't be."""
        if source is not None and not await self.is_linked(source, d):
            return None
        info = await self.stat_data(d)
        if info is None or info.is_dir:
            return None
        await self.link(name, d)
        return info

    def data_path(self, d: Digest) -> str:
        return layout.blob_data(d.algorithm, d.hex)

    def local_file(self, d: Digest) -> str | None:
        """The blob's data as a local file path, on drivers that have one."""
        return self.driver.local_path(self.data_path(d))

    def read(self, d: Digest) -> AsyncIterator[Chunk]:
        return self.driver.reader(self.data_path(d))

    async def put_verified(self, name: str, d: Digest, fd: int, size: int) -> None:
        """Store `size` bytes read from the open file `fd`, which the caller has verified against
        `d`, and link them into `name` — in an upload commit's order: a temporary file in the
        repository's ``_uploads``, moved into ``blobs/`` (unless a copy of that size is there),
        then the layer link.  A crash at any point leaves the blob absent or whole."""
        stored = await self.stat_data(d)
        if stored is None or stored.size != size:
            session = f"verified-{d.hex[:16]}-{uuid.uuid4().hex}"
            tmp = layout.upload_data(name, session)
            w = await self.driver.writer(tmp)
            try:
                pos = 0
                while pos < size:
                    data = os.pread(fd, min(COPY_CHUNK, size - pos), pos)
                    if not data:
                        raise OSError(f"the file of {d} ended at {pos} of {size} bytes")
                    await w.write(data)
                    pos += len(data)
                await w.commit()
            except BaseException:
                await w.cancel()
                raise
            try:
                stored = await self.stat_data(d)
                if stored is None or stored.size != size:
                    await self.driver.move(tmp, self.data_path(d))
            finally:
                try:
                    await self.driver.delete(layout.upload_dir(name, session))
                except PathNotFound:
                    pass
        await self.link(name, d)
