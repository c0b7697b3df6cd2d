"""Tags: ``_manifests/tags/<tag>/current/link`` names the manifest a tag points at.

Tag lists are cached per repository on drivers whose directories carry a modification time
that changes when an entry is added or removed (``driver.capabilities.directory_mtimes``, the filesystem):
a cached list is used while the tags directory's mtime is unchanged.  Timestamps are coarse
(a clock tick), so two changes in one tick can share an mtime; a list is therefore cached only
once its directory has been still for ``SETTLE`` seconds (git's "racily clean" rule).

Deleting a manifest by digest removes the tags that point at it: every tag link is read to find
them, and they are removed, at most ``concurrency`` storage calls at a time
(``storage.tag.concurrencylimit``, Distribution 3; default: the number of CPUs, as its GOMAXPROCS).
"""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ..digest import Digest, InvalidDigest, UnsupportedDigest, parse_digest
from ..errors import RegistryError
from ..storage import layout
from ..storage.driver.base import PathNotFound, StorageDriver
from .lru import ByteLRU

T = TypeVar("T")


async def bounded(items: Sequence[str], fn: Callable[[str], Awaitable[T]], limit: int) -> list[T]:
    """``fn`` over `items` by at most `limit` workers, results in order; the first error is raised
    as it is (the other workers are cancelled)."""
    results: list[T | None] = [None] * len(items)
    todo = iter(range(len(items)))

    async def worker() -> None:
        for i in todo:
            results[i] = await fn(items[i])

    workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(items)))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return results  # type: ignore[return-value]  # every slot was filled


class TagStore:
    SETTLE = 2.0
    CACHED_REPOSITORIES = 1024
    TAG_COST = 64           # bytes a listed tag costs besides its characters (str header, list slot)
    PARSED_LINKS = 4096

    def __init__(self, driver: StorageDriver, *, concurrency: int = 0, cache_bytes: int = 16 << 20) -> None:
        self.driver = driver
        self.concurrency = concurrency if concurrency > 0 else (os.cpu_count() or 1)
        self._cacheable = driver.capabilities.directory_mtimes
        # tag lists by repository, bounded in bytes (fastreg.cache.tagbytes) and repositories
        self._lists: ByteLRU[str, tuple[float, list[str]]] = ByteLRU(
            cache_bytes, max_entries=self.CACHED_REPOSITORIES)
        self._parsed: dict[bytes, Digest] = {}     # a tag link's bytes -> the digest they name

    async def resolve(self, name: str, tag: str) -> Digest:
        try:
            link = await self.driver.get_content(layout.tag_current_link(name, tag))
        except PathNotFound:
            raise RegistryError("MANIFEST_UNKNOWN", {"tag": tag}) from None
        d = self._parsed.get(link)
        if d is not None:
            return d
        try:
            d = parse_digest(link.decode().strip(), allow_blake3=True)
        except (InvalidDigest, UnsupportedDigest, UnicodeDecodeError):
            raise RegistryError("UNKNOWN", f"corrupt tag link for {name}:{tag}") from None
        if len(self._parsed) >= self.PARSED_LINKS:
            self._parsed.clear()
        self._parsed[link] = d
        return d

    async def current(self, name: str, tag: str) -> tuple[Digest, float] | None:
        """What `tag` names and when its current link was last written (its mtime), or None if
        the tag does not exist or its link is unreadable (the pull-through cache's ttl clock)."""
        path = layout.tag_current_link(name, tag)
        try:
            info = await self.driver.stat(path)
            d = parse_digest((await self.driver.get_content(path)).decode().strip(), allow_blake3=True)
        except (PathNotFound, InvalidDigest, UnsupportedDigest, UnicodeDecodeError):
            return None
        return d, info.mtime

    async def tag(self, name: str, tag: str, d: Digest, *, new: bool = False) -> None:
        """Point `tag` at `d`; `new`: the tag has no current link yet.

        A tag that exists gets its index entry first, then the current link: a reader never
        sees a tag whose history does not know its target (Distribution's order).  A new tag
        gets its current link first: the index entry would create the tag's directory, and a
        crash between the two would leave a tag that is listed but names nothing."""
        text = str(d).encode()
        index, current = layout.tag_index_link(name, tag, d.algorithm, d.hex), layout.tag_current_link(name, tag)
        for path in ((current, index) if new else (index, current)):
            await self.driver.put_content(path, text)

    async def untag(self, name: str, tag: str) -> None:
        try:
            await self.driver.stat(layout.tag_current_link(name, tag))
            await self.driver.delete(layout.tag_dir(name, tag))
        except PathNotFound:
            raise RegistryError("MANIFEST_UNKNOWN", {"tag": tag}) from None

    async def all(self, name: str) -> list[str]:
        """Every tag of `name`, sorted; NAME_UNKNOWN if `name` has no tags directory: a repository
        that does not exist, or one that holds only blobs, upload sessions or untagged manifests
        (Distribution's tag store answers ErrRepositoryUnknown there).  A repository whose every
        tag was deleted keeps its empty tags directory on a filesystem: an empty list, as
        Distribution answers.  An object store keeps no empty directories: there the tags
        directory goes with the last tag and the repository is unknown again.

        The list may be shared with other callers: do not modify it."""
        path = layout.tags_dir(name)
        mtime = None
        try:
            if self._cacheable:
                mtime = (await self.driver.stat(path)).mtime
                cached = self._lists.get(name)
                if cached is not None and cached[0] == mtime:
                    return cached[1]
            names = await self.driver.list(path)
        except PathNotFound:
            raise RegistryError("NAME_UNKNOWN", {"name": name}) from None
        names.sort()
        if mtime is not None and time.time() - mtime > self.SETTLE:
            self._lists.put(name, (mtime, names), sum(map(len, names)) + self.TAG_COST * len(names))
        return names

    async def pointing_at(self, name: str, d: Digest) -> list[str]:
        """The tags of `name` whose current link names `d` (Distribution's tag Lookup): none in a
        repository without tags."""
        text = str(d)

        async def names_d(tag: str) -> bool:
            try:
                return (await self.driver.get_content(layout.tag_current_link(name, tag))).decode().strip() == text
            except PathNotFound:
                return False

        try:
            tags = await self.all(name)
        except RegistryError:
            return []
        found = await bounded(tags, names_d, self.concurrency)
        return [tag for tag, hit in zip(tags, found, strict=True) if hit]

    async def remove(self, name: str, tags: list[str]) -> None:
        """Delete these tags' directories (those already gone are fine), ``concurrency`` at a time."""
        async def one(tag: str) -> None:
            try:
                await self.driver.delete(layout.tag_dir(name, tag))
            except PathNotFound:
                pass

        await bounded(tags, one, self.concurrency)
