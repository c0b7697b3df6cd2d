"""Blobs: content-addressed data shared by all repositories, linked into each repository.

A blob is visible in a repository when ``_layers/<alg>/<hex>/link`` exists there and the
data exists under ``blobs/``.  Data is only ever moved into ``blobs/`` after its digest
has been verified, so whatever is there matches its name.
"""
from __future__ import annotations

from ..digest import Digest
from ..errors import RegistryError
from ..storage import layout
from ..storage.driver.base import FileInfo, PathNotFound, StorageDriver


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
        """The blob's data info if it is linked into `name`; else BLOB_UNKNOWN."""
        if await self.is_linked(name, d):
            info = await self.stat_data(d)
            if info is not None and not info.is_dir:
                return info
        raise RegistryError("BLOB_UNKNOWN", {"digest": str(d)})

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
