"""Storage quotas (``fastreg.quota``): a limit on the bytes a repository's manifests reference.

What is counted
---------------
A repository's **usage** is the size of every distinct blob its manifests reference — each
manifest's own bytes, its config and its layers (foreign layers, stored elsewhere, are not) —
counted **once per blob per repository**: two tags sharing a base layer count it once; two
repositories holding the same layer count it once each.  An index's children are manifests of the
repository too and count as such.  Blobs uploaded but referenced by no manifest count nothing.
A rule (``fastreg.quota.rules``: repository glob, limit) limits the repositories its glob matches
*together*; ``fastreg.quota.limit`` limits the whole registry.  Every rule matching a repository
applies.

Where usage lives (under ``_fastreg_quota/``, which Distribution never looks at)::

    _fastreg_quota/repositories/<name>/_usage.json    {"manifests": {digest: time counted},
                                                       "blobs": {digest: [size, references]}}
    _fastreg_quota/totals.json                        {"registry": n, "globs": {glob: n},
                                                       "prefixes": {first component: n}}
    _fastreg_quota/lock/                              the lock (driver ``exclusive``)

A push never walks the repository: a manifest ``PUT`` reads the repository's record and the
totals, adds the manifest's blobs (a blob's bytes count when its reference count goes from 0 to 1),
checks every limit that applies and writes both back — **before anything of the push is written**
(``admit``); a push that fails afterwards gives its reservation back (``cancel``).  A ``DELETE``
by digest takes them away after the revision is gone (``released``), unless a push of the same
manifest linked it again meanwhile; a push that found its manifest counted already checks, once it
linked it, that it still counts (``relinked``): of the two racing, one always sees the other.  A ``_usage.json`` missing
for a repository is rebuilt from its manifests; a glob missing from the totals (a rule added) is
summed from the records; ``totals.json`` missing (quotas just turned on) is rebuilt from every
repository, once, by the first push that needs it.

Concurrency: the reservation — read, check, write — runs under the driver's ``exclusive`` lock of
``_fastreg_quota/lock`` (``flock`` on the filesystem: every worker and every replica on this
host; a lease object on S3 and Azure: every replica), so two pushes racing for the last bytes
cannot both be admitted: **no overshoot** where the driver has the lock.  A driver without it
(GCS, the in-memory driver) serialises reservations within the process only: replicas can then
each admit a push against the same usage, so a quota can be overshot by at most the sum of the
pushes admitted at once by the *other* processes, and a lost update of the record undercounts
until the next recompute.

Drift, and how it heals: the order of writes makes a crash err on the side of counting too much —
a push counts before it writes (totals first, then the record), a delete uncounts after the
revision is gone (the record first, then the totals) — so a crash or a failed rollback refuses
early rather than lets a quota be exceeded.  Writes the counting does not see (Distribution or a
fastreg without quotas writing the same storage, the pull-through cache, a hand-made change)
drift the other way.  ``fastreg gc`` and ``fastreg check`` recompute every record from the
repositories' manifests (``recompute``): a manifest counted but not (yet) linked is kept for an
hour, as a push in flight, then dropped.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from ..auth.access import _glob as compile_glob
from ..digest import Digest, InvalidDigest, UnsupportedDigest, parse_digest
from ..errors import RegistryError
from ..manifest import stored_document
from ..storage import layout, walk
from ..storage.driver.base import PathNotFound, StorageDriver, StorageError
from .lock import StorageLock

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("fastreg")

LOCK = layout.QUOTA_LOCK
TOTALS = layout.QUOTA_TOTALS
MAX_RECORD = 64 * 1024 * 1024       # a record read into memory is bounded
MAX_MANIFEST = 16 * 1024 * 1024     # a manifest read by a recompute is bounded
PENDING = 3600.0                    # a counted manifest without its revision link is kept this long
LOCK_WAIT = 30.0                    # a reservation waits this long for the lock, then 503


def record_path(name: str) -> str:
    return layout.quota_record(name)


def prefix_of(name: str) -> str:
    return name.split("/", 1)[0]


@functools.lru_cache(maxsize=256)
def _compiled(glob: str) -> re.Pattern[str]:
    return compile_glob(glob)


def matches(glob: str, name: str) -> bool:
    return _compiled(glob).fullmatch(name) is not None


def human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# -- the records --------------------------------------------------------------------------------

@dataclass
class Usage:
    """One repository's record: the manifests counted and the blobs they reference."""

    manifests: dict[str, float] = field(default_factory=dict)     # digest → time counted
    blobs: dict[str, list[int]] = field(default_factory=dict)     # digest → [size, references]

    @property
    def used(self) -> int:
        """The bytes counted."""
        return sum(size for size, refs in self.blobs.values() if refs > 0)

    def cost(self, items: Sequence[tuple[str, int]]) -> int:
        """The bytes `items` would add (those no counted manifest references yet)."""
        return sum(size for d, size in items if self.blobs.get(d, (0, 0))[1] <= 0)

    def add(self, manifest: str, items: Sequence[tuple[str, int]], now: float) -> int:
        """Count `manifest` (referencing `items`); the bytes added."""
        if manifest in self.manifests:
            return 0
        self.manifests[manifest] = now
        added = 0
        for d, size in items:
            entry = self.blobs.setdefault(d, [size, 0])
            if entry[1] <= 0:
                added += size
                entry[0] = size
            entry[1] += 1
        return added

    def remove(self, manifest: str, items: Sequence[tuple[str, int]] | None) -> int:
        """Uncount `manifest`; the bytes freed (0 if it was not counted).  `items` None: unknown
        (its bytes are gone): only its own entry is dropped, the rest waits for a recompute."""
        if self.manifests.pop(manifest, None) is None:
            return 0
        freed = 0
        for d, _size in (items if items is not None else ((manifest, 0),)):
            entry = self.blobs.get(d)
            if entry is None:
                continue
            entry[1] -= 1
            if entry[1] <= 0:
                freed += entry[0]
                del self.blobs[d]
        return freed

    def dumps(self) -> bytes:
        return orjson.dumps({"manifests": self.manifests, "blobs": self.blobs})

    @classmethod
    def loads(cls, data: bytes) -> Usage:
        doc = orjson.loads(data)
        if not isinstance(doc, dict):
            raise TypeError("not a JSON object")
        return cls({str(k): float(v) for k, v in (doc.get("manifests") or {}).items()},
                   {str(k): [int(v[0]), int(v[1])] for k, v in (doc.get("blobs") or {}).items()})


@dataclass
class Totals:
    """The sums of the records: the registry's, each glob's, each name prefix's."""

    registry: int = 0
    globs: dict[str, int] = field(default_factory=dict)
    prefixes: dict[str, int] = field(default_factory=dict)

    def apply(self, name: str, delta: int) -> None:
        """Repository `name`'s usage changed by `delta`: every sum it is part of changes too
        (every glob held, configured here or by another replica)."""
        if not delta:
            return
        self.registry += delta
        for g in self.globs:
            if matches(g, name):
                self.globs[g] += delta
        p = prefix_of(name)
        self.prefixes[p] = self.prefixes.get(p, 0) + delta
        if self.prefixes[p] <= 0:
            del self.prefixes[p]

    def dumps(self) -> bytes:
        return orjson.dumps({"registry": self.registry, "globs": self.globs, "prefixes": self.prefixes})

    @classmethod
    def loads(cls, data: bytes) -> Totals:
        doc = orjson.loads(data)
        if not isinstance(doc, dict):
            raise TypeError("not a JSON object")
        return cls(int(doc.get("registry") or 0), {str(k): int(v) for k, v in (doc.get("globs") or {}).items()},
                   {str(k): int(v) for k, v in (doc.get("prefixes") or {}).items()})


def manifest_items(body: bytes, d: Digest) -> tuple[list[tuple[str, int]], list[str]] | None:
    """What a stored manifest makes its repository count: (digest, size) of itself and of each
    blob it references with a size, and the digests of those without one (schema1's fsLayers,
    to be looked up).  Lenient: stored bytes were checked when pushed or come from another
    registry.  None if it is not a JSON object."""
    doc = stored_document(body)
    if doc is None:
        return None
    items: dict[str, int] = {str(d): len(body)}
    unsized: list[str] = []
    descs: list[Any] = [doc.get("config")]
    if isinstance(doc.get("layers"), list):
        descs += doc["layers"]
    for desc in descs:
        if not isinstance(desc, dict) or desc.get("urls"):
            continue                                    # foreign layers are stored elsewhere
        digest, size = desc.get("digest"), desc.get("size")
        if isinstance(digest, str) and isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            items.setdefault(digest, size)
    if isinstance(doc.get("fsLayers"), list):
        for layer in doc["fsLayers"]:
            if isinstance(layer, dict) and isinstance(layer.get("blobSum"), str) and layer["blobSum"] not in items:
                unsized.append(layer["blobSum"])
    return list(items.items()), sorted(set(unsized))


# -- the quotas ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Limit:
    scope: str          # "registry" or the rule's glob
    limit: int
    where: str          # the config key, for messages

    def applies(self, name: str) -> bool:
        return self.scope == "registry" or matches(self.scope, name)


@dataclass(frozen=True, slots=True)
class Reservation:
    name: str
    manifest: str
    items: tuple[tuple[str, int], ...]


class Quotas:
    """The limits, the counting, and the checks the registry services make (the ``QuotaGuard``
    of ``fastreg.registry.manifests`` and the blob check of ``fastreg.registry.uploads``)."""

    def __init__(self, driver: StorageDriver, limits: Iterable[Limit],
                 on_refusal: Callable[[str], None] | None = None,
                 on_totals: Callable[[Totals, Sequence[Limit]], None] | None = None) -> None:
        self.driver = driver
        self.limits = tuple(limits)
        self.on_refusal = on_refusal            # metrics: a refusal ("manifest" or "blob")
        self.on_totals = on_totals              # metrics: the totals after a change
        self._lock = StorageLock(driver, LOCK, wait=LOCK_WAIT, what="storage quota",
                                 busy="storage quota accounting busy, retry")

    @classmethod
    def from_config(cls, cfg: Config, driver: StorageDriver) -> Quotas | None:
        """From the whole config; None when no quota is configured."""
        q = cfg.fastreg.quota
        limits = [Limit(r.repository, r.limit, f"fastreg.quota.rules.{i}") for i, r in enumerate(q.rules)]
        if q.limit:
            limits.append(Limit("registry", q.limit, "fastreg.quota.limit"))
        return cls(driver, limits) if limits else None

    def applying(self, name: str) -> list[Limit]:
        return [lim for lim in self.limits if lim.applies(name)]

    # -- the lock -------------------------------------------------------------------------------
    def locked(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The reservation lock: this process's, then the storage's (``exclusive``) where the
        driver has one; a holder elsewhere is waited for (bounded: then 503)."""
        return self._lock.held()

    # -- reading and writing the records (under the lock) -------------------------------------
    async def _read(self, path: str) -> bytes | None:
        try:
            info = await self.driver.stat(path)
            if info.size > MAX_RECORD:
                raise RegistryError("UNKNOWN", f"{path} is larger than {MAX_RECORD} bytes", status=500,
                                    message="storage quota record too large")
            return await self.driver.get_content(path)
        except PathNotFound:
            return None

    async def record(self, name: str, totals: Totals) -> Usage:
        """`name`'s record; rebuilt from its manifests if missing or unreadable, and then the
        `totals` are corrected by the difference (nothing written)."""
        data = await self._read(record_path(name))
        old = 0
        if data is not None:
            try:
                return Usage.loads(data)
            except (ValueError, TypeError, IndexError, orjson.JSONDecodeError):
                log.warning("storage quota: %s is damaged: recounted", record_path(name))
        usage = await self.count(name)
        totals.apply(name, usage.used - old)
        return usage

    async def totals(self) -> Totals:
        """The totals, each configured glob present: built from the records if missing, and written
        (only ever called under the lock)."""
        data = await self._read(TOTALS)
        totals: Totals | None = None
        if data is not None:
            try:
                totals = Totals.loads(data)
            except (ValueError, TypeError, orjson.JSONDecodeError):
                log.warning("storage quota: %s is damaged: recounted", TOTALS)
        if totals is None:
            return await self._rebuild_all()
        missing = [lim.scope for lim in self.limits if lim.scope != "registry" and lim.scope not in totals.globs]
        if missing:
            for g in missing:
                totals.globs[g] = 0
            for name, usage in await self._records():
                for g in missing:
                    if matches(g, name):
                        totals.globs[g] += usage.used
            await self.driver.put_content(TOTALS, totals.dumps())     # (under the lock: summed once)
        return totals

    async def _records(self) -> list[tuple[str, Usage]]:
        out: list[tuple[str, Usage]] = []

        for name in await walk.named(self.driver, layout.QUOTA_RECORDS, layout.QUOTA_RECORD):
            data = await self._read(record_path(name))
            if data is not None:
                try:
                    out.append((name, Usage.loads(data)))
                except (ValueError, TypeError, IndexError, orjson.JSONDecodeError):
                    out.append((name, await self.count(name)))
        return out

    async def _rebuild_all(self) -> Totals:
        """Every repository counted from its manifests (quotas just turned on): records written."""
        totals = Totals(globs={lim.scope: 0 for lim in self.limits if lim.scope != "registry"})
        for name in await walk.repositories(self.driver):
            usage = await self.count(name)
            await self.driver.put_content(record_path(name), usage.dumps())
            totals.apply(name, usage.used)
        await self.driver.put_content(TOTALS, totals.dumps())
        return totals

    async def count(self, name: str, keep: Usage | None = None, now: float | None = None) -> Usage:
        """`name`'s record from its manifests (the revision links and the bytes they name).  `keep`:
        the old record, whose manifests counted less than ``PENDING`` ago and not linked (a push in
        flight) are kept."""
        now = time.time() if now is None else now
        usage = Usage()
        linked: set[str] = set()
        async for link in walk.links(self.driver, layout.revisions_dir(name)):
            d = link.digest
            if not await walk.exists(self.driver, link.path):
                continue
            items = await self._stored_items(d)
            if items is None:
                continue
            linked.add(str(d))
            usage.add(str(d), items, (keep.manifests.get(str(d), now) if keep else now))
        if keep is not None:
            for m, when in keep.manifests.items():
                if m not in linked and now - when < PENDING:
                    items = await self._stored_items_or_none(m)
                    if items is not None:
                        usage.add(m, items, when)
        return usage

    async def _stored_items_or_none(self, digest: str) -> list[tuple[str, int]] | None:
        try:
            d = parse_digest(digest, allow_blake3=True)
        except (InvalidDigest, UnsupportedDigest):
            return None
        return await self._stored_items(d)

    async def _stored_items(self, d: Digest) -> list[tuple[str, int]] | None:
        path = layout.blob_data(d.algorithm, d.hex)
        try:
            if (await self.driver.stat(path)).size > MAX_MANIFEST:
                return [(str(d), (await self.driver.stat(path)).size)]
            body = await self.driver.get_content(path)
        except PathNotFound:
            return None
        parsed = manifest_items(body, d)
        if parsed is None:
            return [(str(d), len(body))]
        items, unsized = parsed
        for u in unsized:
            try:
                b = parse_digest(u, allow_blake3=True)
                items.append((u, (await self.driver.stat(layout.blob_data(b.algorithm, b.hex))).size))
            except (InvalidDigest, UnsupportedDigest, PathNotFound):
                continue
        return items

    async def _write(self, name: str, usage: Usage | None, totals: Totals | None) -> None:
        if totals is not None:
            await self.driver.put_content(TOTALS, totals.dumps())
        if usage is not None:
            await self.driver.put_content(record_path(name), usage.dumps())

    def _told(self, totals: Totals) -> None:
        if self.on_totals is not None:
            self.on_totals(totals, self.limits)

    # -- the checks of the registry services -------------------------------------------------
    def _refuse(self, at: str, name: str, lim: Limit, usage: int, adding: int) -> RegistryError:
        if self.on_refusal is not None:
            self.on_refusal(at)
        what = "the registry" if lim.scope == "registry" else f"repositories matching {lim.scope!r}"
        return RegistryError(
            "DENIED", {"repository": name, "quota": lim.where, "usage": usage, "adding": adding, "limit": lim.limit},
            message=f"storage quota exceeded: {what} use {usage} bytes ({human(usage)}) of {lim.limit} "
                    f"({human(lim.limit)}, {lim.where}); this {'manifest' if at == 'manifest' else 'blob'} "
                    f"would add {adding} bytes ({human(adding)})")

    async def admit(self, name: str, manifest: Digest, size: int,
                    blobs: Sequence[tuple[Digest, int]]) -> Reservation | None:
        """Before a manifest PUT writes anything: count it, or refuse it with DENIED.  None when
        it was counted already (a push of the same manifest again adds nothing)."""
        items = tuple({str(manifest): size, **{str(d): s for d, s in blobs if d != manifest}}.items())
        applying = self.applying(name)
        async with self.locked():
            totals = await self.totals()
            fresh = not await walk.exists(self.driver, record_path(name))
            usage = await self.record(name, totals)
            if fresh:                                   # its record and the totals, as counted now
                await self._write(name, usage, totals)
            if str(manifest) in usage.manifests:
                return None
            cost = usage.cost(items)
            if cost:
                for lim in applying:
                    used = totals.registry if lim.scope == "registry" else totals.globs.get(lim.scope, 0)
                    if used + cost > lim.limit:
                        raise self._refuse("manifest", name, lim, used, cost)
            totals.apply(name, usage.add(str(manifest), items, time.time()))
            await self._write(name, None, totals)        # the totals first: a crash counts too much
            await self._write(name, usage, None)
        self._told(totals)
        return Reservation(name, str(manifest), items)

    async def cancel(self, reservation: object) -> None:
        """The push that made `reservation` (what ``admit`` returned) failed: give it back (best
        effort; a failure here leaves the usage counted too high until the next recompute)."""
        if not isinstance(reservation, Reservation):
            return
        try:
            totals = await self._uncount(reservation.name, reservation.manifest, list(reservation.items),
                                         unless_linked=True)
        except (StorageError, RegistryError, OSError) as exc:   # the push's own error is what the client sees
            log.warning("storage quota: could not give back %s of %s: %s", reservation.manifest,
                        reservation.name, exc)
            return
        if totals is not None:
            self._told(totals)

    async def released(self, name: str, manifest: Digest, body: bytes | None) -> None:
        """After a DELETE by digest removed the revision: uncount it (`body`: its bytes, if read),
        unless a push of the same manifest linked it again meanwhile (it stays, and counts)."""
        parsed = manifest_items(body, manifest) if body is not None else None
        items = parsed[0] if parsed is not None else None
        totals = await self._uncount(name, str(manifest), items, unless_linked=True)
        if totals is not None:
            self._told(totals)

    async def relinked(self, name: str, manifest: Digest, size: int, blobs: Sequence[tuple[Digest, int]]) -> None:
        """After a PUT that ``admit`` found counted already wrote its revision link: make sure it
        still counts.  A DELETE by digest of the same manifest racing it may have removed the
        revision and uncounted it before this push linked it again: then it is counted again here
        (without a limit check: it was within its quota when first counted, and it is stored now).
        Without this the manifest would be stored but uncounted, and the quota overshot by it.
        Either this runs after that delete's uncount and sees the link, or before it and the
        uncount sees the link (``released``): one of the two always does."""
        key = str(manifest)
        # Under the lock, not before it: a delete's uncount runs under it between its check of
        # the link and its write of the record, and a read outside it could see the record as it
        # was before that write.
        items = tuple({key: size, **{str(d): s for d, s in blobs if d != manifest}}.items())
        async with self.locked():
            if not await walk.exists(self.driver, layout.revision_link(name, manifest.algorithm, manifest.hex)):
                return                                  # deleted again after this push: uncounted rightly
            totals = await self.totals()
            usage = await self.record(name, totals)
            if key in usage.manifests:
                return
            log.info("storage quota: %s@%s was uncounted by a delete racing its push: counted again", name, key)
            totals.apply(name, usage.add(key, items, time.time()))
            await self._write(name, None, totals)
            await self._write(name, usage, None)
        self._told(totals)

    async def _uncount(self, name: str, manifest: str, items: list[tuple[str, int]] | None,
                       unless_linked: bool = False) -> Totals | None:
        async with self.locked():
            if unless_linked:       # the failed push linked it (or another push of it did): it stays
                d = parse_digest(manifest, allow_blake3=True)
                if await walk.exists(self.driver, layout.revision_link(name, d.algorithm, d.hex)):
                    return None
            totals = await self.totals()
            if not await walk.exists(self.driver, record_path(name)):
                return None                             # never counted: nothing to give back
            usage = await self.record(name, totals)
            if manifest not in usage.manifests:
                return None
            totals.apply(name, -usage.remove(manifest, items))
            await self._write(name, usage, None)          # the record first: a crash counts too much
            await self._write(name, None, totals)
            return totals

    async def check_blob(self, name: str, digest: Digest, size: int) -> None:
        """At the end of a blob upload, before the blob is stored: refuse it with DENIED when it
        alone would take `name` past a limit (no lock: the manifest PUT decides for good)."""
        applying = self.applying(name)
        if not applying:
            return
        data = await self._read(record_path(name))
        if data is not None:
            with contextlib.suppress(ValueError, TypeError, IndexError, orjson.JSONDecodeError):
                if Usage.loads(data).cost(((str(digest), size),)) == 0:
                    return                              # counted already in this repository
        data = await self._read(TOTALS)
        try:
            totals = Totals.loads(data) if data is not None else None
        except (ValueError, TypeError, orjson.JSONDecodeError):
            totals = None
        for lim in applying:
            used = 0 if totals is None else (totals.registry if lim.scope == "registry"
                                             else totals.globs.get(lim.scope, 0))
            if used + size > lim.limit:
                raise self._refuse("blob", name, lim, used, size)

    # -- reading usage (the usage endpoint, the metrics) -------------------------------------
    async def usage(self, name: str) -> dict[str, Any]:
        """`name`'s usage and the limits that apply to it, as stored (no lock, nothing written)."""
        data = await self._read(record_path(name))
        bytes_ = None
        if data is not None:
            with contextlib.suppress(ValueError, TypeError, IndexError, orjson.JSONDecodeError):
                bytes_ = Usage.loads(data).used
        totals = await self.current_totals()
        return {"repository": name, "bytes": bytes_, "quotas": [
            {"scope": lim.scope, "key": lim.where, "limit": lim.limit,
             "usage": None if totals is None else (totals.registry if lim.scope == "registry"
                                                   else totals.globs.get(lim.scope))}
            for lim in self.applying(name)]}

    async def current_totals(self) -> Totals | None:
        data = await self._read(TOTALS)
        if data is None:
            return None
        try:
            return Totals.loads(data)
        except (ValueError, TypeError, orjson.JSONDecodeError):
            return None

    async def refresh(self) -> None:
        """Tell the metrics the stored totals (other workers' and replicas' pushes included)."""
        totals = await self.current_totals()
        if totals is not None:
            self._told(totals)

    async def run_refresh(self, interval: float) -> None:
        while True:
            try:
                await self.refresh()
            except (StorageError, RegistryError, OSError) as exc:   # the next round tries again
                log.debug("storage quota: could not read the totals: %s", exc)
            await asyncio.sleep(interval)


@dataclass
class Recount:
    repositories: int = 0
    bytes: int = 0
    drift: int = 0                  # counted minus recounted, summed over the repositories (signed)
    drifted: list[tuple[str, int, int]] = field(default_factory=list)   # (name, counted, recounted)


async def recompute(driver: StorageDriver, globs: Iterable[str] = (), *, dry_run: bool = False) -> Recount:
    """Count every repository again from its manifests (``fastreg gc``, ``fastreg check``): each
    record rewritten under the lock, then the totals (of the globs held and `globs`) from the
    records.  `dry_run`: only report the drift."""
    q = Quotas(driver, [Limit(g, 1, "") for g in globs])
    out = Recount()
    now = time.time()
    names = set(await walk.repositories(driver))
    names |= {n for n, _ in await q._records()}
    for name in sorted(names):
        async with q.locked():
            data = await q._read(record_path(name))
            old: Usage | None = None
            if data is not None:
                with contextlib.suppress(ValueError, TypeError, IndexError, orjson.JSONDecodeError):
                    old = Usage.loads(data)
            new = await q.count(name, keep=old, now=now)
            out.repositories += 1
            out.bytes += new.used
            counted = old.used if old is not None else 0
            if counted != new.used:
                out.drift += counted - new.used
                out.drifted.append((name, counted, new.used))
            if dry_run:
                continue
            if not new.manifests and not await walk.exists(driver, layout.repo(name)):
                with contextlib.suppress(PathNotFound):
                    await driver.delete(record_path(name))
            elif old is None or old.dumps() != new.dumps():
                await driver.put_content(record_path(name), new.dumps())
    if not dry_run:
        async with q.locked():
            held = await q.current_totals()
            totals = Totals(globs={g: 0 for g in {*(held.globs if held else {}), *globs}})
            for name, usage in await q._records():
                totals.apply(name, usage.used)
            await driver.put_content(TOTALS, totals.dumps())
    return out


def configured(cfg: Config) -> list[str] | None:
    """The globs of the configured rules, or None when no quota is configured."""
    q = cfg.fastreg.quota
    return [r.repository for r in q.rules] if (q.limit or q.rules) else None


def summary(rc: Recount, dry_run: bool) -> str:
    drift = (f"; {len(rc.drifted)} {'would be' if dry_run else 'were'} recounted (counted − recounted: "
             f"{rc.drift:+d} bytes)" if rc.drifted else "; no drift")
    return f"storage quota: {rc.repositories} repositories use {rc.bytes} bytes ({human(rc.bytes)}){drift}"
