"""``exclusive(path)`` on object stores: a lease object the store creates only if it is absent.

The filesystem driver ``flock``s a directory, which holds for the processes of one host.  Object
stores are shared by replicas on many hosts and have no locks, but they decide *conditional
writes* atomically, and that is enough for a lease:

* **Acquire**: create the lock object ``<path>/.fastreg-lock`` (``LOCK``) only if no object has
  that name — S3 ``PutObject`` with ``If-None-Match: *``, Azure Put Blob with
  ``If-None-Match: *``, GCS ``ifGenerationMatch=0``.  Of two requests at once the store lets
  exactly one create it; the other gets ``Busy`` at once.  Then, holding it, check that something
  besides the lock is at ``path`` (a session deleted meanwhile): if not, remove the lock and
  raise ``PathNotFound``.
* **Lease**: the lock's body names its owner (random) and the lease in seconds.  While the
  lock is held a task rewrites it every ``lease / 4`` seconds, conditionally on the version it
  wrote last (ETag, generation), so the store's Last-Modified stays recent.
* **Break**: a lock older than its lease — by the store's own clock: the ``Date`` of the
  response that read it minus its Last-Modified, so hosts' clocks do not matter — belongs to a
  holder that died (a killed process cannot release).  It is replaced conditionally on the
  version read: of two breakers, one wins and the other gets ``Busy``.
* **Release**: delete the lock conditionally on our version; one already gone (the holder
  deleted the whole session) is fine, one replaced (we were thought dead) is logged.

A holder that cannot reach the store for longer than its lease can lose the lock while it
still runs (no lease can prevent that); its renewal then fails and says so in the log.
Drivers hide ``LOCK`` from ``list`` and delete it after everything else in ``delete`` (so
"no lock" means "nothing left of the session"); the registry never moves it (only a session's
``data`` moves into ``blobs/`` on object stores).  The store must honour the conditions:
AWS S3 does since 2024 (If-None-Match on PUT in August, If-Match in November); an S3-compatible
store that ignores them gives no exclusion between hosts.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from .base import Busy, PathNotFound, StorageError

log = logging.getLogger("fastreg")

LOCK = ".fastreg-lock"
LEASE_SECONDS = 120.0       # a lock not renewed for this long may be broken


class LeaseStore(Protocol):
    """What a driver provides to hold leases (`key`: the store's name of the lock object)."""

    lease_seconds: float

    async def _lease_create(self, key: str, body: bytes) -> str | None:
        """Create `key` if absent: its version, or None if it exists."""
        ...

    async def _lease_read(self, key: str) -> tuple[str, bytes, float] | None:
        """Version, body and age in seconds (store's clock) of `key`; None if absent."""
        ...

    async def _lease_replace(self, key: str, version: str, body: bytes) -> str | None:
        """Overwrite `key` if it is at `version`: the new version, or None."""
        ...

    async def _lease_remove(self, key: str, version: str) -> bool:
        """Delete `key` if it is at `version`."""
        ...

    async def _lease_occupied(self, path: str) -> bool:
        """Whether anything but the lock is stored at or under `path`."""
        ...


@dataclass(slots=True)
class _Holder:
    owner: str
    lease: float
    version: str = ""
    renewals: int = 0

    def body(self) -> bytes:
        # The count makes every write's bytes, hence an S3 ETag (an MD5), new.
        return json.dumps({"owner": self.owner, "lease": self.lease, "n": self.renewals}).encode()


def _parse(body: bytes) -> tuple[str, float]:
    try:
        d = json.loads(body)
        return str(d["owner"]), float(d["lease"])
    except (ValueError, KeyError, TypeError):
        return "", LEASE_SECONDS


@contextlib.asynccontextmanager
async def hold(store: LeaseStore, path: str, key: str) -> AsyncIterator[None]:
    h = _Holder(secrets.token_hex(12), float(store.lease_seconds))
    version = await store._lease_create(key, h.body())
    h.version = version if version is not None else await _take_over(store, path, key, h)
    renew: asyncio.Task[None] | None = None
    try:
        if not await store._lease_occupied(path):
            raise PathNotFound(path)
        renew = asyncio.create_task(_renew(store, path, key, h))
        yield
    finally:
        if renew is not None:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
        try:
            if h.version and not await store._lease_remove(key, h.version):
                await _report_loss(store, path, key, h)
        except StorageError as exc:       # it expires after its lease
            log.warning("could not release the lock of %s: %s", path, exc)


async def _take_over(store: LeaseStore, path: str, key: str, h: _Holder) -> str:
    """The lock exists: its version if it is ours or expired and we replace it, else Busy."""
    got = await store._lease_read(key)
    if got is None:                       # released meanwhile: one more try
        version = await store._lease_create(key, h.body())
        if version is None:
            raise Busy(path)
        return version
    version, body, age = got
    owner, lease = _parse(body)
    if owner == h.owner:                  # our create succeeded but its answer was lost (retried)
        return version
    if age <= lease:
        raise Busy(path)
    new = await store._lease_replace(key, version, h.body())
    if new is None:                       # renewed, released or broken by someone else meanwhile
        raise Busy(path)
    log.warning("broke the lock of %s: not renewed for %.0f s (lease %.0f s)", path, age, lease)
    return new


async def _renew(store: LeaseStore, path: str, key: str, h: _Holder) -> None:
    while True:
        await asyncio.sleep(h.lease / 4)
        h.renewals += 1
        try:
            version = await store._lease_replace(key, h.version, h.body())
        except StorageError as exc:       # try again: the lease has 3 more periods
            log.warning("could not renew the lock of %s: %s", path, exc)
            continue
        if version is None:
            await _report_loss(store, path, key, h)
            h.version = ""                # nothing left to release
            return
        h.version = version


async def _report_loss(store: LeaseStore, path: str, key: str, h: _Holder) -> None:
    # Gone is normal (the holder deleted the session, lock included); replaced is not.
    with contextlib.suppress(StorageError):
        got = await store._lease_read(key)
        if got is not None and _parse(got[1])[0] != h.owner:
            log.warning("lost the lock of %s: another process broke it", path)
