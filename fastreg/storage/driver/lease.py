"""``exclusive(path)`` on object stores: a lease object the store creates only if it is absent.

The filesystem driver ``flock``s a directory, which holds for the processes of one host.  Object
stores are shared by replicas on many hosts and have no locks, but they decide *conditional
writes* atomically, and that is enough for a lease:

* **Acquire**: create the lock object ``<path>/.fastreg-lock`` (``LOCK``) only if no object has
  that name — S3 ``PutObject`` with ``If-None-Match: *``, Azure Put Blob with
  ``If-None-Match: *``, GCS ``ifGenerationMatch=0``.  Of two requests at once the store lets
  exactly one create it; the other gets ``Busy`` at once.  Then, holding it, check that something
  besides the lock is at ``path`` (a session deleted meanwhile): if not, remove the lock and
  raise ``PathNotFound``.  (With ``check_exists=False`` the holder looks itself, at what it needs,
  and raises ``PathNotFound`` from inside the block if that is not there: the same ending.)
* **Lease**: the lock's body names its owner (random) and the lease in seconds.  While the
  lock is held a task rewrites it every ``lease / 4`` seconds, conditionally on the version it
  wrote last (ETag, generation), so the store's Last-Modified stays recent.
* **Break**: a lock older than its lease — by the store's own clock: the ``Date`` of the
  response that read it minus its Last-Modified, so hosts' clocks do not matter — belongs to a
  holder that died (a killed process cannot release).  It is replaced conditionally on the
  version read: of two breakers, one wins and the other gets ``Busy``.
* **Release**: delete the lock conditionally on our version; one already gone (the holder
  deleted the whole session) is fine, one replaced (we were thought dead) is logged.  On a store
  that ignores the condition of a delete (Ceph RGW 16.2 deletes anyway), a holder that was
  thought dead would delete its successor's lock; there the lock is released by a conditional
  *overwrite* to a released state instead (which the next holder replaces at once, and which
  goes with the session).  A holder that deleted the whole session, lock included (an upload's
  commit), has nothing to release: the driver's ``delete`` tells the lease (``deleted``), and
  the release's two requests (refused, then read back as gone) are not sent.

A holder that cannot reach the store for longer than its lease can lose the lock while it
still runs (no lease can prevent that); its renewal then fails and says so in the log.
Drivers hide ``LOCK`` from ``list`` and delete it after everything else in ``delete`` (so
"no lock" means "nothing left of the session"); the registry never moves it (only a session's
``data`` moves into ``blobs/`` on object stores).  Not every store honours every condition (AWS S3
does since 2024; Ceph RGW 16.2 matches If-Match
only against the unquoted ETag and ignores it on DELETE), so the first lock of a driver *probes*
its store on a scratch key — create-if-absent, replace-if-match (in each spelling of a version
the driver knows), delete-if-match — logs one line with the result and uses what works
(``conditions``).  Where create-if-absent or replace-if-match is missing no protocol excludes
two writers: one warning says so, and the lock still never sticks (it is written
unconditionally).  A renewal, break or release that fails is logged and counted
(``failures``, exported as ``registry_storage_lock_failures_total``).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .base import Busy, PathNotFound, StorageError

log = logging.getLogger("fastreg")

LOCK = ".fastreg-lock"
LEASE_SECONDS = 120.0       # a lock not renewed for this long may be broken
BOGUS = '"00000000000000000000000000000000"'      # a version no object has
RELEASED = json.dumps({"owner": "", "lease": 0, "released": True}).encode()

# Lock operations that failed, by kind (renew, break, release); `observers` are told of each.
failures: dict[str, int] = {"renew": 0, "break": 0, "release": 0}
observers: list[Callable[[str], None]] = []


def _failed(kind: str) -> None:
    failures[kind] += 1
    for fn in observers:
        with contextlib.suppress(Exception):
            fn(kind)


@dataclass(frozen=True, slots=True)
class Conditions:
    """What a store honours, as probed: the lock protocol follows from it."""

    create: bool = True          # PUT if absent refuses an existing key
    replace: bool = True         # PUT if-match refuses a wrong version and accepts the right one
    delete: bool = True          # DELETE if-match refuses a wrong version
    form: str = ""               # the spelling of a version that matches (S3: quoted, unquoted)

    @property
    def excludes(self) -> bool:
        return self.create and self.replace

    def describe(self) -> str:
        yes = {True: "yes", False: "no"}
        form = f" ({self.form} ETag)" if self.form and self.replace else ""
        release = "delete-if-match" if self.delete else "overwrite-if-match (conditional delete is ignored)"
        return (f"create-if-absent {yes[self.create]}, replace-if-match {yes[self.replace]}{form}, "
                f"delete-if-match {yes[self.delete]}; locks released by {release}")


async def conditions(store: Any, *, desc: str = "") -> Conditions:
    """The store's conditions, probed once per driver (again after a probe that failed)."""
    got: Conditions | None = getattr(store, "_lease_conditions", None)
    if got is not None:
        return got
    guard: asyncio.Lock | None = getattr(store, "_lease_probe_lock", None)
    if guard is None:
        guard = store._lease_probe_lock = asyncio.Lock()
    async with guard:
        again: Conditions | None = getattr(store, "_lease_conditions", None)   # set while this task waited
        if again is not None:
            return again
        try:
            got = await _probe(store)
        except StorageError as exc:
            log.warning("could not probe the conditional writes of %s (%s); assuming they are honoured",
                        desc or getattr(store, "name", "the store"), exc)
            return Conditions()
        store._lease_conditions = got
        where = desc or getattr(store, "name", "the store")
        log.info("upload locks on %s: %s", where, got.describe())
        if not got.excludes:
            missing = "create-if-absent (If-None-Match: *)" if not got.create else "replace-if-match (If-Match)"
            log.warning("%s does not honour %s on writes: concurrent writers to one upload across replicas "
                        "are not excluded on this store (within one process they still are)", where, missing)
        return got


async def _probe(store: Any) -> Conditions:
    key = store._lease_scratch()
    v = await store._lease_create(key, b"probe 1")
    if v is None:
        raise StorageError("/" + key, "the scratch key of the probe exists")
    try:
        create = await store._lease_create(key, b"probe 2") is None
        forms: tuple[str, ...] = getattr(store, "lease_forms", ("",))
        replace, form = False, ""
        for f in forms:
            if f:
                store.lease_form = f
            new = await store._lease_replace(key, v, b"probe 3")
            if new is not None:
                replace, form, v = True, f, new
                break
        if forms[0]:
            store.lease_form = form or forms[0]
        if replace and await store._lease_replace(key, BOGUS, b"probe 4") is not None:
            replace = False                                   # ignored: any version matches
        delete = not await store._lease_remove(key, BOGUS)
    finally:
        with contextlib.suppress(StorageError):
            await store._lease_remove(key, "")
    return Conditions(create, replace, delete, form)




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
        """Overwrite `key` if it is at `version` (unconditionally if `version` is empty): the
        new version, or None."""
        ...

    async def _lease_remove(self, key: str, version: str) -> bool:
        """Delete `key` if it is at `version` (unconditionally if `version` is empty)."""
        ...

    def _lease_scratch(self) -> str:
        """A key nothing else uses, for probing the store's conditions."""
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


def _parse(body: bytes) -> tuple[str, float, bool]:
    """Owner, lease and whether the lock was released (free to take)."""
    try:
        d = json.loads(body)
        return str(d["owner"]), float(d["lease"]), bool(d.get("released"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return "", LEASE_SECONDS, False


def _held(store: Any) -> dict[str, _Holder]:
    """The locks this process holds on `store`, by key."""
    held: dict[str, _Holder] | None = getattr(store, "_lease_held", None)
    if held is None:
        held = store._lease_held = {}
    return held


def deleted(store: Any, keys: list[str]) -> None:
    """The driver deleted the lock objects `keys` (with their session, everything else first): a
    lock among them that this process holds has nothing left to release."""
    held = _held(store)
    for key in keys:
        h = held.get(key)
        if h is not None:
            h.version = ""


@contextlib.asynccontextmanager
async def hold(store: LeaseStore, path: str, key: str, *, check_exists: bool = True) -> AsyncIterator[None]:
    cond = await conditions(store)
    h = _Holder(secrets.token_hex(12), float(store.lease_seconds))
    h.version = await _acquire(store, path, key, h, cond)
    held = _held(store)
    held[key] = h
    renew: asyncio.Task[None] | None = None
    empty = False
    try:
        if check_exists and not await store._lease_occupied(path):
            empty = True
            raise PathNotFound(path)
        renew = asyncio.create_task(_renew(store, path, key, h, cond))
        try:
            yield
        except PathNotFound:
            if not check_exists:          # the holder looked and found nothing at `path`
                empty = True
            raise
    finally:
        if renew is not None:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
        if held.get(key) is h:
            del held[key]
        if h.version:             # (none when the holder deleted the session, lock included)
            await _release(store, path, key, h, cond, empty)


def _at(cond: Conditions, version: str) -> str:
    """The condition of a replace: the version, or none where the store cannot match one."""
    return version if cond.replace else ""


async def _acquire(store: LeaseStore, path: str, key: str, h: _Holder, cond: Conditions) -> str:
    if cond.create:
        version = await store._lease_create(key, h.body())
        if version is not None:
            return version
    return await _take_over(store, path, key, h, cond)


async def _take_over(store: LeaseStore, path: str, key: str, h: _Holder, cond: Conditions) -> str:
    """The lock exists (or cannot be created conditionally): its version if it is ours, released
    or expired and we replace it, else Busy."""
    got = await store._lease_read(key)
    if got is None:                       # released meanwhile (or never there): one more try
        new = await (store._lease_create(key, h.body()) if cond.create else store._lease_replace(key, "", h.body()))
        if new is None:
            raise Busy(path)
        return new
    version, body, age = got
    owner, lease, released = _parse(body)
    if owner == h.owner:                  # our create succeeded but its answer was lost (retried)
        return version
    if not released and age <= lease:
        raise Busy(path)
    new = await store._lease_replace(key, _at(cond, version), h.body())
    if new is None:                       # renewed, released or broken by someone else meanwhile?
        again = await store._lease_read(key)
        if again is not None and again[0] == version:
            _failed("break")              # no: the store refused the version it gave us
            log.warning("could not take over the lock of %s: the store refused a write conditional "
                        "on the lock's current version", path)
        raise Busy(path)
    if not released:
        log.warning("broke the lock of %s: not renewed for %.0f s (lease %.0f s)", path, age, lease)
    return new


async def _renew(store: LeaseStore, path: str, key: str, h: _Holder, cond: Conditions) -> None:
    while True:
        await asyncio.sleep(h.lease / 4)
        h.renewals += 1
        try:
            version = await store._lease_replace(key, _at(cond, h.version), h.body())
            if version is None:
                got = await store._lease_read(key)
                if got is None:           # the holder deleted the session, lock included
                    h.version = ""
                    return
                _failed("renew")
                if _parse(got[1])[0] != h.owner:
                    log.warning("lost the lock of %s: another process broke it", path)
                    h.version = ""        # nothing left to release
                    return
                log.warning("the store refused to renew the lock of %s at its current version; "
                            "renewing at the version it reports", path)
                version = await store._lease_replace(key, _at(cond, got[0]), h.body())
                if version is None:
                    log.warning("could not renew the lock of %s: refused again", path)
                    h.version = got[0]
                    continue
        except StorageError as exc:       # try again: the lease has 3 more periods
            _failed("renew")
            log.warning("could not renew the lock of %s: %s", path, exc)
            continue
        h.version = version


async def _release(store: LeaseStore, path: str, key: str, h: _Holder, cond: Conditions,
                   empty: bool = False) -> None:
    try:
        if cond.delete:
            done = await store._lease_remove(key, _at(cond, h.version))
        else:                             # a conditional delete would delete anyone's lock
            done = await store._lease_replace(key, _at(cond, h.version), RELEASED) is not None
            if done and empty:            # no session here: leave no lock object either
                await store._lease_remove(key, "")
        if not done:
            await _report_loss(store, path, key, h)
    except StorageError as exc:           # it expires after its lease
        _failed("release")
        log.warning("could not release the lock of %s: %s", path, exc)


async def _report_loss(store: LeaseStore, path: str, key: str, h: _Holder) -> None:
    # Gone is normal (the holder deleted the session, lock included); replaced is not.
    with contextlib.suppress(StorageError):
        got = await store._lease_read(key)
        if got is not None and _parse(got[1])[0] != h.owner:
            _failed("release")
            log.warning("lost the lock of %s: another process broke it", path)
