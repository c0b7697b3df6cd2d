"""Pull history: when each tag and manifest was last pulled, and how often.

Recorded off the request path: a manifest ``GET`` (by tag or by digest) and a ``HEAD`` by tag (how
docker and podman resolve a tag before they fetch by digest) add to a dictionary in the worker's
memory — no I/O, no lock.  Every ``fastreg.history.flushinterval`` (default 1 s) the worker
writes what it gathered, one small JSON object per repository, as a *new* file that is never
rewritten::

    _fastreg_history/pulls/<repository>/_w/<writer>-<sequence>.json
        {"t": {"<tag>": [last pull, count], …}, "m": {"<digest>": [last pull, count], …}}

``<writer>`` is unique per worker lifetime (host, pid, start time), so writers never touch each
other's files, on any driver, from any worker or replica.  A reader merges every file (the latest
pull, the sum of counts).  A crash loses at most the last interval's pulls.

Compaction keeps the file count small: every ``COMPACT_EVERY`` flushes a worker folds the files of
the repositories it wrote to into ``_fastreg_history/pulls/<repository>/_base.json``, under the
driver's exclusive lock of the repository's ``_w`` directory (another holder: skipped this time).
The base first records the names of the files it absorbed, then those files are deleted, then the
names are dropped — a crash in between never counts a file twice.  Repository names never have a
component starting with ``_``, so ``_w`` and ``_base.json`` never collide with a nested repository.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..storage import layout, walk
from ..storage.driver.base import Busy, PathNotFound, StorageDriver, StorageError, exclusive_lock

log = logging.getLogger("fastreg.retention")

COMPACT_EVERY = 30              # flushes between two compactions of the repositories a worker wrote to
MAX_PENDING = 200_000           # distinct (repository, tag or digest) entries held before an early flush
MAX_FILE = 64 * 1024 * 1024     # a history file larger than this is not read (never written by fastreg)

Entry = list[float]             # [last pull (seconds since the epoch), count]


def writer_dir(name: str) -> str:
    return layout.pull_writers_dir(name)


def base_path(name: str) -> str:
    return layout.pull_base(name)


@dataclass
class Pulls:
    """The merged pull history of one repository."""
    tags: dict[str, Entry] = field(default_factory=dict)
    manifests: dict[str, Entry] = field(default_factory=dict)

    def add(self, doc: Any) -> None:
        if not isinstance(doc, dict):
            return
        for key, into in (("t", self.tags), ("m", self.manifests)):
            part = doc.get(key)
            if not isinstance(part, dict):
                continue
            for k, v in part.items():
                if not (isinstance(k, str) and isinstance(v, list) and len(v) == 2
                        and all(isinstance(x, (int, float)) for x in v)):
                    continue
                cur = into.get(k)
                if cur is None:
                    into[k] = [float(v[0]), float(v[1])]
                else:
                    cur[0] = max(cur[0], float(v[0]))
                    cur[1] += float(v[1])

    def doc(self) -> dict[str, Any]:
        return {"t": self.tags, "m": self.manifests}


async def _read(driver: StorageDriver, path: str) -> Any:
    try:
        if (await driver.stat(path)).size > MAX_FILE:
            log.warning("pull history: %s is larger than %d bytes: ignored", path, MAX_FILE)
            return None
        return orjson.loads(await driver.get_content(path))
    except PathNotFound:
        return None
    except orjson.JSONDecodeError:
        log.warning("pull history: %s is not JSON: ignored", path)
        return None


async def read(driver: StorageDriver, name: str) -> Pulls:
    """Everything recorded for `name` (flushed so far)."""
    out = Pulls()
    base = await _read(driver, base_path(name))
    merged = set(base.get("merged") or ()) if isinstance(base, dict) else set()
    out.add(base)
    for f in await walk.listing(driver, writer_dir(name)):
        if f.endswith(".json") and f not in merged:
            out.add(await _read(driver, layout.pull_writer_file(name, f)))
    return out


async def compact(driver: StorageDriver, name: str) -> int:
    """Fold `name`'s writer files into its base; the number folded (0 when another holds the lock)."""
    if not driver.capabilities.exclusive:
        return 0
    try:
        async with exclusive_lock(driver, writer_dir(name)):
            base = await _read(driver, base_path(name))
            merged = set(base.get("merged") or ()) if isinstance(base, dict) else set()
            total = Pulls()
            total.add(base)
            files = [f for f in await walk.listing(driver, writer_dir(name)) if f.endswith(".json")]
            fresh = [f for f in files if f not in merged]
            for f in fresh:
                total.add(await _read(driver, layout.pull_writer_file(name, f)))
            if not fresh and not merged:
                return 0
            doc = {**total.doc(), "merged": sorted(merged | set(fresh))}
            await driver.put_content(base_path(name), orjson.dumps(doc))
            for f in sorted(merged | set(fresh)):
                with contextlib.suppress(PathNotFound):
                    await driver.delete(layout.pull_writer_file(name, f))
            await driver.put_content(base_path(name), orjson.dumps({**total.doc(), "merged": []}))
            return len(fresh)
    except (Busy, PathNotFound):
        return 0


class PullRecorder:
    """One per worker process: ``record`` on the request path, ``run`` flushes in the background."""

    def __init__(self, driver: StorageDriver, interval: float = 1.0) -> None:
        self.driver = driver
        self.interval = interval
        self.writer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._pending: dict[str, tuple[dict[str, Entry], dict[str, Entry]]] = {}
        self._entries = 0
        self._seq = 0
        self._touched: set[str] = set()
        self._flushes = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def record(self, name: str, tag: str | None, digest: str | None) -> None:
        """One pull: of `tag` (when resolved by tag) and of manifest `digest` (when its bytes were sent)."""
        if tag is None and digest is None:
            return
        now = time.time()
        rec = self._pending.get(name)
        if rec is None:
            rec = self._pending[name] = ({}, {})
        for key, into in ((tag, rec[0]), (digest, rec[1])):
            if key is None:
                continue
            e = into.get(key)
            if e is None:
                into[key] = [now, 1.0]
                self._entries += 1
            else:
                e[0] = now
                e[1] += 1
        if self._entries > MAX_PENDING:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            await self.flush()
            self._flushes += 1
            if self._flushes % COMPACT_EVERY == 0:
                await self.compact()

    async def flush(self) -> None:
        """Write what was gathered since the last flush (a failed write is kept for the next one)."""
        pending, self._pending, self._entries = self._pending, {}, 0
        for name, (tags, manifests) in pending.items():
            self._seq += 1
            path = layout.pull_writer_file(name, f"{self.writer}-{self._seq:012d}.json")
            try:
                await self.driver.put_content(path, orjson.dumps({"t": tags, "m": manifests}))
                self._touched.add(name)
            except StorageError as exc:
                log.error("pull history: writing %s failed (kept for the next flush): %s", path, exc)
                back = Pulls()
                back.add({"t": tags, "m": manifests})
                for tag, e in back.tags.items():
                    self._merge_back(name, tag, None, e)
                for d, e in back.manifests.items():
                    self._merge_back(name, None, d, e)

    def _merge_back(self, name: str, tag: str | None, digest: str | None, e: Entry) -> None:
        rec = self._pending.setdefault(name, ({}, {}))
        into, key = (rec[0], tag) if tag is not None else (rec[1], digest)
        assert key is not None
        cur = into.get(key)
        if cur is None:
            into[key] = list(e)
            self._entries += 1
        else:
            cur[0], cur[1] = max(cur[0], e[0]), cur[1] + e[1]

    async def compact(self) -> None:
        touched, self._touched = self._touched, set()
        for name in sorted(touched):
            try:
                await compact(self.driver, name)
            except StorageError as exc:
                log.error("pull history: compacting %s failed: %s", name, exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self.flush()
