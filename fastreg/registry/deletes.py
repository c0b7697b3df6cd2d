"""Deletes the registry makes on its own (retention) against pushes that race them.

A retention run deletes a tag, or a manifest no tag reaches, only after reading again that nothing
pushed it meanwhile.  A PUT can still land between that re-read and the delete: the PUT writes the
manifest's revision link, then its tag; a run that read the tags between the two sees an untagged
manifest and deletes it (removing the tag the PUT then writes, or leaving it pointing at nothing).
The PUT was answered 201; without this protocol its image would be gone.

Both sides go through storage, so it holds across workers, replicas and the ``fastreg retention``
command:

``deleter``  writes an intent for what it deletes (a tag, or a manifest revision of a repository);
             reads again that it may delete it; deletes; removes the intent.
``PUT``      writes every link (an index's children's revision links too: pushed again, so that
             a run that decided to delete an old child sees the push when it reads again); then,
             for its tag and for each manifest it links, waits while an intent on it is held;
             then checks that every link is still there and writes back what a delete removed;
             what it wrote back is a new link, so it looks for intents again, until nothing was
             missing.

Either the deleter's re-read comes after the PUT's link (and keeps it), or the PUT's check of the
intent comes after the intent was written: it waits for the delete to end, and restores.  Only
repositories a retention policy matches pay for the check: four lookups per manifest PUT (the
intents on the manifest and the tag, the revision, the tag); per child of an index, three lookups
and the rewrite of its revision link.

An intent left by a deleter that died is stale after ``STALE`` seconds and no longer waited for.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from ..digest import Digest
from ..errors import RegistryError
from ..storage import layout
from ..storage.driver.base import PathNotFound, StorageDriver

STALE = 120.0          # seconds: an intent older than this belongs to a deleter that died


class DeleteIntents:
    def __init__(self, driver: StorageDriver, covers: Callable[[str], bool] = lambda name: True,
                 *, wait: float = STALE, stale: float = STALE) -> None:
        self.driver = driver
        self.covers = covers            # the repositories a deleter may touch (the PUT checks only these)
        self.wait = wait
        self.stale = stale

    # -- the deleter's side ---------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def deleting_tag(self, name: str, tag: str) -> AsyncIterator[None]:
        async with self._held(layout.delete_intent_tag(name, tag)):
            yield

    @contextlib.asynccontextmanager
    async def deleting_revision(self, name: str, d: Digest) -> AsyncIterator[None]:
        async with self._held(layout.delete_intent_revision(name, d.algorithm, d.hex)):
            yield

    @contextlib.asynccontextmanager
    async def _held(self, path: str) -> AsyncIterator[None]:
        await self.driver.put_content(path, repr(time.time()).encode(), durable=False)
        try:
            yield
        finally:
            with contextlib.suppress(PathNotFound):
                await self.driver.delete(path)

    # -- the PUT's side -------------------------------------------------------------------------
    async def settle(self, name: str, tag: str | None, manifests: list[Digest]) -> None:
        """Return once no fresh intent is held on `tag` (if any) or on any of `manifests` in
        `name`; ``503 UNAVAILABLE`` if one is still held after ``wait`` seconds."""
        paths = [layout.delete_intent_revision(name, d.algorithm, d.hex) for d in manifests]
        if tag is not None:
            paths.append(layout.delete_intent_tag(name, tag))
        deadline = time.monotonic() + self.wait
        delay = 0.005
        for path in paths:
            while await self._fresh(path):
                if time.monotonic() > deadline:
                    raise RegistryError("UNAVAILABLE", "a retention run is deleting what this push links",
                                        status=503, message="retention in progress, retry")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)

    async def _fresh(self, path: str) -> bool:
        try:
            body = await self.driver.get_content(path)
        except PathNotFound:
            return False
        try:
            return time.time() - float(body.decode()) < self.stale
        except ValueError:              # unreadable (written without waiting for the disk, then a
            try:                        # crash): as old as its modification time
                return time.time() - (await self.driver.stat(path)).mtime < self.stale
            except PathNotFound:
                return False
