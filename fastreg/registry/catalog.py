"""The catalog: every repository, found as a directory holding ``_manifests`` (as Distribution does).

Walking the repository tree costs one listing per directory, so the sorted result is cached
in each worker and validated on every request by one small read: the *catalog generation*
(``layout.CATALOG_GENERATION``), a token fastreg rewrites whenever it creates a repository.

Why this is never stale for fastreg's own writes, across workers and replicas: a writer
creates the repository's ``_manifests`` first and changes the generation after; a reader
reads the generation first and walks after.  A walk that missed the new repository therefore
read the old generation, and the next request sees the new one and walks again.

Repositories created by another program on the same storage (Distribution serving the same
data directory) do not change the generation; they appear once the cache is older than
``ttl`` seconds.

The cached list is kept only while it costs at most ``max_bytes`` (``fastreg.cache.catalogbytes``:
each name's characters plus ``NAME_COST``); a larger catalog is walked again for each request.
"""
from __future__ import annotations

import secrets
import time

from ..storage import layout, walk
from ..storage.driver.base import PathNotFound, StorageDriver

NAME_COST = 64      # bytes a listed name costs besides its characters (str header, list slot)


class Catalog:
    def __init__(self, driver: StorageDriver, *, ttl: float = 30.0, max_bytes: int = 16 << 20) -> None:
        self.driver = driver
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._repos: list[str] | None = None
        self._generation: bytes | None = None
        self._built = 0.0

    async def repositories(self) -> list[str]:
        """Every repository name, sorted.  The list is shared: callers must not modify it."""
        generation = await self._read_generation()
        now = time.monotonic()
        if self._repos is not None and generation == self._generation and now - self._built < self.ttl:
            return self._repos
        found = await walk.named(self.driver, layout.REPOS, "_manifests")
        if sum(map(len, found)) + NAME_COST * len(found) <= self.max_bytes:
            self._repos, self._generation, self._built = found, generation, now
        else:
            self._repos = None
        return found

    async def created(self, name: str) -> None:
        """Record that repository `name` now exists (call after its ``_manifests`` is written)."""
        self._repos = None
        await self.driver.put_content(layout.CATALOG_GENERATION, secrets.token_hex(16).encode(), durable=False)

    async def _read_generation(self) -> bytes:
        try:
            return await self.driver.get_content(layout.CATALOG_GENERATION)
        except PathNotFound:
            return b""
