"""A Redis cache in front of any driver, shared by every replica (``storage.cache.blobdescriptor: redis``).

What is cached: ``stat`` of files and ``get_content`` of small files (link files, manifests,
blob descriptors' sizes) outside upload sessions, so ``HEAD`` of a blob and a manifest ``GET``
by tag need no storage round trip.  Directories, missing paths and ``_uploads`` never are.

Invalidation — theory of operation
----------------------------------
Every path P has a *generation* counter in Redis, ``g:P``.  A cached entry for P records the
generations of P and of all its ancestor directories at the time the bytes were read from
storage, and is valid only while they are unchanged.  A mutation (put, move, delete, a
writer's commit) first changes storage, then increments the generation of the path it
touched — for a recursive delete, of the directory, which invalidates everything below at
once.  Filling is conditional: a reader notes the generations *before* reading storage and a
Lua script stores the entry only if they are still the same, so a reader that raced a delete
can never put the old bytes back.  Both checks run inside Redis (one round trip each).

Redis down: reads go to storage (Redis is skipped for a few seconds after an error);
invalidations that failed are retried in the background, and until they land this process
does not read from the cache.  Another replica may still serve an entry from before such a
mutation until the invalidation lands or the entry expires (``TTL``) — the one window left.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson

from ..base import DriverWrapper, FileInfo, FileWriter, StorageDriver, WriterWrapper, check_path

log = logging.getLogger("fastreg.storage.cache")

TTL = 3600                     # seconds an entry lives at most
CONTENT_MAX = 256 * 1024       # larger get_content results are not cached
RETRY_AFTER = 5.0              # seconds Redis is skipped after an error
PENDING_MAX = 10_000           # invalidations kept while Redis is down; beyond, the whole cache is
                               # invalidated at once when it is back (the root's generation)

# KEYS[1] = value key, KEYS[2..] = generation keys (ancestors first, the path last).
# Returns {1, payload} on a valid hit, else {0, current generations}.
_GET = """
local cur = {}
for i = 2, #KEYS do cur[#cur + 1] = redis.call('GET', KEYS[i]) or '0' end
local gens = table.concat(cur, ',')
local v = redis.call('GET', KEYS[1])
if v then
  local nl = string.find(v, '\\n', 1, true)
  if nl and string.sub(v, 1, nl - 1) == gens then return {1, string.sub(v, nl + 1)} end
end
return {0, gens}
"""
# ARGV[1] = generations noted before reading storage, ARGV[2] = payload, ARGV[3] = ttl.
_SET = """
local cur = {}
for i = 2, #KEYS do cur[#cur + 1] = redis.call('GET', KEYS[i]) or '0' end
if table.concat(cur, ',') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. '\\n' .. ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""


def _lineage(path: str) -> list[str]:
    """'/a/b/c' -> ['/', '/a', '/a/b', '/a/b/c']."""
    parts = path.split("/")[1:]
    return ["/"] + ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def cacheable(path: str) -> bool:
    return "/_uploads/" not in path


class RedisCachedDriver(DriverWrapper):
    """Wraps `inner`; every StorageDriver method, same contract."""

    def __init__(self, inner: StorageDriver, *, host: str = "127.0.0.1", port: int = 6379, db: int = 0,
                 username: str | None = None, password: str | None = None, tls: bool = False,
                 timeout: float = 1.0, prefix: str = "fastreg:", ttl: int = TTL,
                 pending_max: int = PENDING_MAX) -> None:
        super().__init__(inner)
        self._conn: dict[str, Any] = {"host": host, "port": port, "db": db, "username": username or None,
                                      "password": password or None, "ssl": tls, "socket_timeout": timeout,
                                      "socket_connect_timeout": timeout}
        self.prefix = prefix
        self.ttl = ttl
        self._redis: Any = None
        self._get: Any = None
        self._set: Any = None
        self._down_until = 0.0
        self._pending: set[str] = set()          # paths whose invalidation has not landed yet
        self.pending_max = pending_max
        self._flusher: asyncio.Task[None] | None = None

    # -- Redis plumbing ----------------------------------------------------------------------
    def _client(self) -> Any:
        if self._redis is None:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            # No retries: a cache that is down must cost one refused connection, not seconds.
            self._redis = aioredis.Redis(**self._conn, retry=Retry(NoBackoff(), 0))
            self._get = self._redis.register_script(_GET)
            self._set = self._redis.register_script(_SET)
        return self._redis

    def _usable(self) -> bool:
        return not self._pending and time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        if time.monotonic() >= self._down_until:
            log.warning("redis cache unavailable, using storage directly: %s", exc)
        self._down_until = time.monotonic() + RETRY_AFTER

    def _keys(self, kind: str, path: str) -> list[str]:
        return [f"{self.prefix}{kind}:{path}"] + [f"{self.prefix}g:{p}" for p in _lineage(path)]

    async def _lookup(self, kind: str, path: str) -> tuple[bytes | None, str | None]:
        """(payload, None) on a hit; (None, generations) on a miss; (None, None) if unusable."""
        if not cacheable(path) or not self._usable():
            return None, None
        try:
            self._client()
            hit, val = await self._get(keys=self._keys(kind, path))
        except Exception as exc:  # noqa: BLE001 - any Redis failure means: use storage
            self._failed(exc)
            return None, None
        if hit:
            return bytes(val), None
        return None, val.decode() if isinstance(val, bytes) else str(val)

    async def _fill(self, kind: str, path: str, gens: str | None, payload: bytes) -> None:
        if gens is None or not self._usable():
            return
        try:
            await self._set(keys=self._keys(kind, path), args=[gens, payload, self.ttl])
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    async def _invalidate(self, *paths: str) -> None:
        """After a mutation of `paths` in storage: bump their generations (retrying if need be)."""
        if not paths:
            return
        try:
            if time.monotonic() < self._down_until:
                raise ConnectionError("redis marked down")
            pipe = self._client().pipeline(transaction=False)
            for p in paths:
                pipe.incr(f"{self.prefix}g:{p}")
            await pipe.execute()
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
            self._pending.update(paths)
            if len(self._pending) > self.pending_max:
                # bounded memory through a long outage: every entry's key includes the root's
                # generation, so bumping it alone invalidates them all
                self._pending = {"/"}
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.ensure_future(self._flush_pending())

    async def _flush_pending(self) -> None:
        while self._pending:
            await asyncio.sleep(1.0)
            batch = set(self._pending)
            try:
                pipe = self._client().pipeline(transaction=False)
                for p in batch:
                    pipe.incr(f"{self.prefix}g:{p}")
                await pipe.execute()
            except Exception:  # noqa: BLE001, S112 - still down: keep the paths, try again
                continue
            self._pending -= batch
            log.warning("redis cache reachable again; %d invalidation(s) delivered", len(batch))

    # -- cached reads ------------------------------------------------------------------------
    async def stat(self, path: str) -> FileInfo:
        hit, gens = await self._lookup("s", check_path(path))
        if hit is not None:
            size, mtime = orjson.loads(hit)
            return FileInfo(path, size, mtime, False)
        info = await self.inner.stat(path)
        if not info.is_dir:
            await self._fill("s", path, gens, orjson.dumps([info.size, info.mtime]))
        return info

    async def get_content(self, path: str) -> bytes:
        hit, gens = await self._lookup("c", check_path(path))
        if hit is not None:
            return hit
        data = await self.inner.get_content(path)
        if len(data) <= CONTENT_MAX:
            await self._fill("c", path, gens, data)
        return data

    # -- mutations (storage first, then the generation) ---------------------------------------
    async def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        try:
            await self.inner.put_content(path, data, durable)
        finally:
            if cacheable(path):
                await self._invalidate(path)

    async def move(self, src: str, dst: str) -> None:
        try:
            await self.inner.move(src, dst)
        finally:
            await self._invalidate(*(p for p in (src, dst) if cacheable(p)))

    async def delete(self, path: str) -> None:
        try:
            await self.inner.delete(path)
        finally:
            if cacheable(path):
                await self._invalidate(path)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        w = await self.inner.writer(path, append)
        return _InvalidatingWriter(self, path, w) if cacheable(path) else w

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            self._redis = None
        await self.inner.close()


class _InvalidatingWriter(WriterWrapper):
    def __init__(self, cache: RedisCachedDriver, path: str, inner: FileWriter) -> None:
        super().__init__(inner)
        self._cache, self._path = cache, path

    async def _then_invalidate(self, op: Any) -> None:
        try:
            await op()
        finally:
            await self._cache._invalidate(self._path)

    async def commit(self) -> None:
        await self._then_invalidate(self.inner.commit)

    async def close(self) -> None:
        await self._then_invalidate(self.inner.close)

    async def cancel(self) -> None:
        await self._then_invalidate(self.inner.cancel)
