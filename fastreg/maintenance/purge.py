"""Background maintenance: upload purging (Distribution's ``storage.maintenance.uploadpurging``)
and, when ``fastreg.gc.interval`` is set, periodic online garbage collection.

Upload purging removes ``_uploads/<uuid>/`` sessions whose ``startedat`` (RFC 3339, written when
the session began) is older than ``age``.  As in Distribution, a session without a readable
``startedat`` is left alone (it cannot be aged), the first run starts after a random jitter
(here at most a minute, or ``interval`` if shorter) and then every ``interval``; ``dryrun`` only
logs what would go.  Removing the session directory goes through the driver, which releases
whatever the session holds (on object storage, drivers abort the multipart upload with it).
A session directory that lists as empty holds at most the writer lock of a request that died
(S3/Azure: ``.fastreg-lock``, which listings hide): it is removed whatever its age.

One worker per host runs these tasks: the worker that takes an exclusive ``flock`` on a lock file
named after the storage location keeps it for its life (granian restarts a dead worker, which
then competes for the lock again).  Several hosts sharing one storage each run a purger;
purging is idempotent, so that only costs listings.  Periodic GC is guarded by its own
heartbeat (see ``fastreg.maintenance.gc``): a second collector on another host refuses to start.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..durations import format_duration
from ..errors import RegistryError
from ..retention import quota
from ..storage import layout, walk
from ..storage.driver.base import PathNotFound, StorageDriver, StorageError

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("fastreg.maintenance")


def parse_startedat(text: str) -> float | None:
    """RFC 3339 (``2024-05-01T10:00:00Z``, ``...+02:00``, fractional seconds) → epoch seconds."""
    s = text.strip()
    if not s:
        return None
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    # Go may write up to 9 fractional digits; Python reads at most 6.
    head, dot, rest = s.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        s = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    try:
        t = dt.datetime.fromisoformat(s)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


@dataclass
class PurgeReport:
    sessions: int = 0
    purged: list[str] = field(default_factory=list)


async def purge_uploads(driver: StorageDriver, age: float, *, dry_run: bool = False,
                        now: float | None = None) -> PurgeReport:
    """Remove upload sessions started more than `age` seconds ago."""
    cutoff = (time.time() if now is None else now) - age
    report = PurgeReport()
    for up in await walk.uploads(driver):
        report.sessions += 1
        try:
            started = parse_startedat((await driver.get_content(layout.upload_startedat(up.name, up.uuid)))
                                      .decode("utf-8", "replace"))
        except PathNotFound:
            started = None
            if not await walk.listing(driver, up.path):     # a dead request's lock and nothing else
                started = cutoff - 1
        if started is None or started >= cutoff:
            continue
        report.purged.append(up.path)
        if dry_run:
            continue
        try:
            await driver.delete(up.path)
        except PathNotFound:
            pass                          # finished or purged by someone else meanwhile
    return report


# -- the background worker ----------------------------------------------------------------------

def _lock_path(cfg: Config) -> str:
    where = cfg.storage.driver_name + ":" + repr(getattr(cfg.storage, cfg.storage.driver_name, None))
    key = hashlib.sha256(where.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"fastreg-maintenance-{key}.lock")


class Maintenance:
    """Started in each worker's lifespan; only the worker holding the host lock does anything."""

    def __init__(self, cfg: Config, driver: StorageDriver, retention: Any = None) -> None:
        self.cfg = cfg
        self.driver = driver
        self.retention = retention      # fastreg.retention.policy.Retention, when policies are configured
        self._fd: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _take_lock(self) -> bool:
        fd = os.open(_lock_path(self.cfg), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def start(self) -> None:
        up = self.cfg.storage.maintenance.uploadpurging
        gc_every = self.cfg.fastreg.gc.interval
        readonly = self.cfg.storage.maintenance.readonly.enabled
        wants_purge = up.enabled and not readonly and up.interval > 0
        wants_gc = gc_every > 0 and not readonly
        ret = self.cfg.fastreg.retention
        wants_retention = (self.retention is not None and ret.interval > 0 and not readonly
                           and (ret.dryrun or self.cfg.storage.delete.enabled))
        if not (wants_purge or wants_gc or wants_retention) or not self._take_lock():
            return
        if wants_retention:
            self._tasks.append(asyncio.ensure_future(self._retention_loop(ret.interval, ret.dryrun)))
        if wants_purge:
            self._tasks.append(asyncio.ensure_future(self._purge_loop(up.age, up.interval, up.dryrun)))
        if wants_gc:
            self._tasks.append(asyncio.ensure_future(self._gc_loop(gc_every)))

    async def _purge_loop(self, age: float, interval: float, dry_run: bool) -> None:
        jitter = random.uniform(0, min(60.0, interval))
        log.info("upload purging every %s for sessions older than %s%s, first in %s", format_duration(interval),
                 format_duration(age), " (dry run)" if dry_run else "", format_duration(round(jitter, 1)))
        await asyncio.sleep(jitter)
        while True:
            try:
                report = await purge_uploads(self.driver, age, dry_run=dry_run)
                if report.purged:
                    log.info("upload purge%s: %s %d of %d sessions: %s", " (dry run)" if dry_run else "",
                             "would remove" if dry_run else "removed", len(report.purged), report.sessions,
                             ", ".join(report.purged))
                else:
                    log.info("upload purge: nothing to remove among %d sessions", report.sessions)
            except StorageError as exc:
                log.error("upload purge failed: %s", exc)
            await asyncio.sleep(interval)

    async def _gc_loop(self, interval: float) -> None:
        from . import gc
        opts = gc.Options(delete_untagged=self.cfg.fastreg.gc.deleteuntagged, grace=self.cfg.fastreg.gc.graceperiod)
        while True:
            await asyncio.sleep(interval)
            try:
                report = await gc.collect(self.driver, opts)
                log.info("garbage collection: %s", gc.summary(report, False))
                globs = quota.configured(self.cfg)
                if globs is not None and not report.aborted:
                    log.info("%s", quota.summary(await quota.recompute(self.driver, globs), False))
            except (StorageError, RuntimeError, RegistryError) as exc:
                log.error("garbage collection failed: %s", exc)

    async def _retention_loop(self, interval: float, dry_run: bool) -> None:
        jitter = random.uniform(0, min(60.0, interval))
        log.info("retention policies every %ss%s, first in %.1fs", interval, " (dry run)" if dry_run else "", jitter)
        await asyncio.sleep(jitter)
        while True:
            try:
                report = await self.retention.run(dry_run=dry_run)
                if dry_run:
                    for line in report.lines():
                        if not line.startswith("keep "):
                            log.info("retention (dry run): %s", line)
                log.info("%s", report.summary())
            except StorageError as exc:
                log.error("retention failed: %s", exc)
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
