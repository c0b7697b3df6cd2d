"""In-memory driver: a dict of paths to bytearrays, for fast tests and throwaway registries.

Directories are implied by the paths of the objects below them, as in an object store.
"""
from __future__ import annotations

import time
from collections.abc import AsyncIterator

from ..base import NO_CAPABILITIES, FileInfo, InvalidOffset, Observer, PathNotFound, StorageError, check_path


class InMemoryDriver:
    name = "inmemory"
    capabilities = NO_CAPABILITIES

    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytearray, float]] = {}

    def _prefix(self, path: str) -> str:
        return path.rstrip("/") + "/"

    async def get_content(self, path: str) -> bytes:
        try:
            return bytes(self._objects[check_path(path)][0])
        except KeyError:
            raise PathNotFound(path) from None

    async def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        self._objects[check_path(path)] = (bytearray(data), time.time())

    async def stat(self, path: str) -> FileInfo:
        obj = self._objects.get(check_path(path))
        if obj is not None:
            return FileInfo(path, len(obj[0]), obj[1], False)
        prefix = self._prefix(path)
        mtimes = [m for p, (_, m) in self._objects.items() if p.startswith(prefix)]
        if not mtimes:
            raise PathNotFound(path)
        return FileInfo(path, 0, max(mtimes), True)

    async def list(self, path: str) -> list[str]:
        prefix = self._prefix(check_path(path))
        names = {p[len(prefix):].split("/", 1)[0] for p in self._objects if p.startswith(prefix)}
        if not names:
            raise PathNotFound(path)
        return sorted(names)

    async def move(self, src: str, dst: str) -> None:
        check_path(dst)
        try:
            self._objects[dst] = self._objects.pop(check_path(src))
        except KeyError:
            raise PathNotFound(src) from None

    async def delete(self, path: str) -> None:
        prefix = self._prefix(check_path(path))
        doomed = [p for p in self._objects if p == path or p.startswith(prefix)]
        if not doomed:
            raise PathNotFound(path)
        for p in doomed:
            del self._objects[p]

    async def writer(self, path: str, append: bool = False) -> _MemWriter:
        check_path(path)
        obj = self._objects.get(path)
        if obj is None or not append:
            obj = (bytearray(), time.time())
            self._objects[path] = obj
        return _MemWriter(self, path, obj[0])

    async def reader(self, path: str, offset: int = 0, length: int | None = None,
                     chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        data = await self.get_content(path)
        if offset < 0 or offset > len(data):
            raise InvalidOffset(path, f"offset {offset} beyond size {len(data)}")
        end = len(data) if length is None else min(len(data), offset + length)
        for pos in range(offset, end, chunk_size):
            yield data[pos:min(end, pos + chunk_size)]

    def local_path(self, path: str) -> str | None:
        return None

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        return None

    async def close(self) -> None:
        pass


class _MemWriter:
    def __init__(self, driver: InMemoryDriver, path: str, buf: bytearray) -> None:
        self._driver, self._path, self._buf = driver, path, buf
        self._closed = False

    @property
    def size(self) -> int:
        return len(self._buf)

    async def write(self, data: bytes | memoryview, observe: Observer | None = None) -> None:
        if self._closed:
            raise StorageError(self._path, "writer closed")
        if observe is not None:
            observe(data)
        self._buf += data

    async def commit(self) -> None:
        self._closed = True

    async def close(self) -> None:
        self._closed = True

    async def cancel(self) -> None:
        self._closed = True
        self._driver._objects.pop(self._path, None)
