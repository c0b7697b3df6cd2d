"""Manifests: stored as blobs, linked as revisions, named by tags, indexed by subject.

Push order (a crash between steps leaves only unreferenced data, never a dangling name):
data under ``blobs/`` → revision link → referrers link → tag.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from .. import manifest as mf
from ..digest import Digest, InvalidDigest, UnsupportedDigest, digest_bytes, parse_digest
from ..errors import RegistryError
from ..maintenance.gc import GuardTimeout, ReferenceGuard
from ..reference import is_digest_reference, valid_tag
from ..storage import layout, walk
from ..storage.driver.base import PathNotFound, StorageDriver
from .blobs import BlobStore
from .catalog import Catalog
from .deletes import DeleteIntents
from .lru import ByteLRU
from .tags import TagStore

log = logging.getLogger("fastreg")

# The Content-Types a stored manifest may be served with: the media types pushes are accepted with,
# and schema1's (served as Distribution 2.x stored them, never accepted).
SERVABLE_TYPES = mf.MANIFEST_TYPES | frozenset({"application/vnd.docker.distribution.manifest.v1+json",
                                                "application/vnd.docker.distribution.manifest.v1+prettyjws"})


class TagGuard(Protocol):
    """Asked before a tag is moved or deleted (fastreg.immutability: fastreg.retention.immutable)."""

    def put_guard(self, tags: TagStore, name: str, tag: str, target: Digest
                  ) -> contextlib.AbstractAsyncContextManager[None]:
        """Entered before a PUT of `tag` writes anything (refuses a move), left once it is written."""
        ...

    def delete_guard(self, tags: TagStore, name: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Entered before a DELETE by digest (or of a blob) checks anything, left once it removed all."""
        ...

    async def check_delete_tag(self, tags: TagStore, name: str, tag: str) -> None: ...

    async def check_delete_manifest(self, tags: TagStore, name: str, target: Digest,
                                    read: Callable[[Digest], Awaitable[bytes]] | None = None) -> None: ...

    async def check_delete_blob(self, tags: TagStore, name: str, target: Digest,
                                read: Callable[[Digest], Awaitable[bytes]]) -> None: ...


class QuotaGuard(Protocol):
    """Counts what manifests reference and refuses what would exceed a storage quota
    (fastreg.quota: fastreg.retention.quota.Quotas); the registry layer imports nothing of it."""

    async def admit(self, name: str, manifest: Digest, size: int, blobs: Sequence[tuple[Digest, int]]) -> object:
        """Before a PUT writes anything: count the manifest or raise DENIED; a token for cancel."""
        ...

    async def cancel(self, reservation: object) -> None:
        """The PUT that was admitted failed: give back what admit counted."""
        ...

    async def released(self, name: str, manifest: Digest, body: bytes | None) -> None:
        """After a DELETE by digest removed the revision."""
        ...

    async def relinked(self, name: str, manifest: Digest, size: int, blobs: Sequence[tuple[Digest, int]]) -> None:
        """After a PUT that admit found counted already linked it: it must still count (a delete
        racing the push may have uncounted it)."""
        ...


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: Digest
    body: bytes
    media_type: str


@dataclass(frozen=True, slots=True)
class ReferrersPage:
    """One page of a subject's referrers: each descriptor as encoded JSON (an OCI descriptor
    object), and the digest to continue after when more follow."""
    descriptors: list[bytes]
    next_after: Digest | None


class ManifestStore:
    def __init__(self, driver: StorageDriver, blobs: BlobStore, tags: TagStore, catalog: Catalog, *,
                 allow_blake3: bool, max_size: int, cache_bytes: int = 32 << 20,
                 descriptor_cache_bytes: int = 8 << 20, referrers_page: int = 1 << 20,
                 url_policy: mf.URLPolicy = mf.DISTRIBUTION_URL_POLICY,
                 index_policy: mf.IndexPolicy = mf.EVERY_CHILD, class_policy: mf.ClassPolicy = mf.ANY_CLASS) -> None:
        self.driver = driver
        self.blobs = blobs
        self.tags = tags
        self.catalog = catalog
        self.allow_blake3 = allow_blake3
        self.max_size = max_size
        self.url_policy = url_policy            # validation.manifests.urls
        self.index_policy = index_policy        # validation.manifests.indexes
        self.class_policy = class_policy        # policy.repository.classes
        # Content is immutable by digest: bodies and referrer descriptors are cached per worker,
        # each cache bounded in bytes (fastreg.cache.*); a manifest over an eighth of it is not kept.
        self._cache: ByteLRU[tuple[str, str], StoredManifest] = ByteLRU(cache_bytes, max_entry=cache_bytes // 8)
        # (artifactType, the descriptor as encoded JSON) by the referrer's digest
        self._descriptors: ByteLRU[tuple[str, str], tuple[str | None, bytes]] = ByteLRU(descriptor_cache_bytes)
        self.referrers_page = max(1, referrers_page)
        self.guard = ReferenceGuard(driver)     # online garbage collection (see fastreg.maintenance.gc)
        self.immutable: TagGuard | None = None       # fastreg.immutability (fastreg.retention.immutable)
        self.quota: QuotaGuard | None = None         # fastreg.quota (fastreg.retention.quota)
        self.deletes: DeleteIntents | None = None    # fastreg.retention: deletes racing a push (deletes.py)

    def parse_reference(self, reference: str) -> Digest | str:
        if is_digest_reference(reference):
            try:
                return parse_digest(reference, allow_blake3=self.allow_blake3)
            except (InvalidDigest, UnsupportedDigest) as exc:
                raise RegistryError("DIGEST_INVALID", str(exc)) from None
        if not valid_tag(reference):
            raise RegistryError("TAG_INVALID", {"tag": reference},
                                message="invalid tag: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
        return reference

    async def has(self, name: str, d: Digest) -> bool:
        """Whether manifest `d` exists in `name` (its revision link)."""
        return await self._revision_exists(name, d)

    async def _revision_exists(self, name: str, d: Digest) -> bool:
        return await self._exists(layout.revision_link(name, d.algorithm, d.hex))

    async def _exists(self, path: str) -> bool:
        return await walk.exists(self.driver, path)

    async def _content(self, d: Digest) -> StoredManifest:
        key = (d.algorithm, d.hex)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        path = layout.blob_data(d.algorithm, d.hex)
        try:
            # Read into memory only what a push could have stored: content under a digest never
            # changes, so its size checked first is the size read.
            size = (await self.driver.stat(path)).size
            if size > self.max_size:
                raise RegistryError("MANIFEST_INVALID", {"digest": str(d), "size": size, "max": self.max_size},
                                    message="stored manifest is larger than fastreg.manifest.maxsize")
            body = await self.driver.get_content(path)
        except PathNotFound:
            raise RegistryError("MANIFEST_UNKNOWN", {"digest": str(d)}) from None
        sm = StoredManifest(d, body, mf.sniff_media_type(body))
        self._cache.put(key, sm, len(body))
        return sm

    async def get(self, name: str, reference: str) -> StoredManifest:
        ref = self.parse_reference(reference)
        d = ref if isinstance(ref, Digest) else await self.tags.resolve(name, ref)
        try:        # the revision link: what _revision_exists asks, without its layers (every pull)
            await self.driver.stat(layout.revision_link(name, d.algorithm, d.hex))
        except PathNotFound:
            raise RegistryError("MANIFEST_UNKNOWN", {"name": name, "reference": reference}) from None
        sm = await self._content(d)
        if sm.media_type not in SERVABLE_TYPES:       # stored before validation covered it (a proxy's)
            log.error("manifest %s in %s has media type %r, which is not a manifest's: not served",
                      d, name, sm.media_type[:100])
            raise RegistryError("UNKNOWN", {"digest": str(d), "detail": "the stored manifest's media type is "
                                            "not a manifest media type"}, message="stored manifest cannot be served")
        return sm

    async def put(self, name: str, reference: str, body: bytes, content_type: str | None
                  ) -> tuple[Digest, mf.ParsedManifest]:
        """A pushed manifest: validated, every blob and child it names must be here, stored,
        tagged (see the module's docstring for the order)."""
        return await self._put(name, reference, body, content_type, local=True)

    async def put_proxied(self, name: str, reference: str, body: bytes, content_type: str | None
                          ) -> tuple[Digest, mf.ParsedManifest]:
        """A manifest the pull-through cache fetched: validated exactly as a push (size limit, the
        same parser, media types, duplicate keys, class and URL policies) and stored and tagged in
        the same order; only the blobs and children it names need not be here yet (the cache
        fetches them when they are asked for)."""
        if len(body) > self.max_size:
            raise RegistryError("MANIFEST_INVALID", {"size": len(body), "limit": self.max_size,
                                                     "detail": "manifest too large"})
        return await self._put(name, reference, body, content_type, local=False)

    async def _put(self, name: str, reference: str, body: bytes, content_type: str | None, *, local: bool
                   ) -> tuple[Digest, mf.ParsedManifest]:
        ref = self.parse_reference(reference)
        if isinstance(ref, Digest):
            d = digest_bytes(body, ref.algorithm)
            if d != ref:
                raise RegistryError("DIGEST_INVALID", {"expected": str(ref), "computed": str(d)})
        else:
            d = digest_bytes(body, "sha256")
        parsed = mf.parse(body, content_type, allow_blake3=self.allow_blake3)
        self.class_policy.check(parsed)
        guard: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()
        if self.immutable is not None and isinstance(ref, str):
            guard = self.immutable.put_guard(self.tags, name, ref, d)
        async with guard:
            return await self._put_checked(name, ref, d, body, parsed, local)

    async def _put_checked(self, name: str, ref: Digest | str, d: Digest, body: bytes, parsed: mf.ParsedManifest,
                           local: bool) -> tuple[Digest, mf.ParsedManifest]:
        since = await self.guard.epoch()                # online gc, step P0 (fastreg.maintenance.gc)
        await self._check_references(name, parsed, local)
        reservation = None
        counted = [(b.digest, b.size) for b in parsed.blobs if not b.foreign]
        if self.quota is not None and local:            # counted before anything is written
            reservation = await self.quota.admit(name, d, len(body), counted)
        try:
            restored = await self._write(name, ref, d, body, parsed, since, local)
        except BaseException:
            if reservation is not None and self.quota is not None:
                await self.quota.cancel(reservation)
            raise
        if (reservation is None or restored) and self.quota is not None and local:   # counted: still?
            await self.quota.relinked(name, d, len(body), counted)
        return d, parsed

    async def _write(self, name: str, ref: Digest | str, d: Digest, body: bytes, parsed: mf.ParsedManifest,
                     since: bytes, local: bool) -> bool:
        """Store and link; True if a retention delete racing it removed the revision and it was
        written back (the quota must count it again)."""
        if self.driver.capabilities.directory_renames:      # the filesystem: a stat costs µs
            stored = await self.blobs.stat_data(d)
            rewrite = stored is None or stored.size != len(body)    # absent, or a damaged copy
        else:       # object stores: the same verified bytes replaced atomically cost one request,
            rewrite = True      # where asking first costs a HEAD and, when absent, a listing
        if rewrite:
            await self.driver.put_content(layout.blob_data(d.algorithm, d.hex), body)
        # (a listing: one request on object stores, where a stat of a directory costs two; an
        # empty directory counts as new, which only renews the catalog's validator)
        new_repository = not await walk.listing(self.driver, layout.manifests_dir(name))
        await self.driver.put_content(layout.revision_link(name, d.algorithm, d.hex), str(d).encode())
        if new_repository:
            await self.catalog.created(name)
        if parsed.subject is not None:
            s = parsed.subject.digest
            await self.driver.put_content(layout.referrer_link(name, s.algorithm, s.hex, d.algorithm, d.hex),
                                          str(d).encode())
        previous: Digest | None = None
        if isinstance(ref, str):
            try:
                previous = await self.tags.resolve(name, ref)
            except RegistryError:
                previous = None
            await self.tags.tag(name, ref, d, new=previous is None)
        restored = await self._confirm(name, ref, d, parsed, previous, since, local)
        self._cache.put((d.algorithm, d.hex), StoredManifest(d, body, parsed.media_type), len(body))
        return restored

    async def _confirm(self, name: str, ref: Digest | str, d: Digest, parsed: mf.ParsedManifest,
                       previous: Digest | None, since: bytes, local: bool = True) -> bool:
        """Every link is written: write back what a retention delete racing this PUT removed
        (registry/deletes.py); tell a running garbage collection what this manifest names
        (fastreg.maintenance.gc, step P2); if one runs or ran since `since`, check it all survived (P3).
        True if the revision was written back."""
        named = [d, *(b.digest for b in parsed.blobs if not b.foreign), *(c.digest for c in parsed.manifests)] \
            if local else [d]
        try:
            restored = False
            if self.deletes is not None and self.deletes.covers(name):
                restored = await self._relink_after_deletes(name, ref, d, parsed, local)
            if not await self.guard.confirm(named, since):
                return restored
            self._cache.pop((d.algorithm, d.hex))
            if await self.blobs.stat_data(d) is not None and await self._revision_exists(name, d):
                await self._check_references(name, parsed, local)
                return restored
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", {"digests": [str(d)]})
        except (RegistryError, GuardTimeout) as exc:
            if isinstance(ref, str):        # put the tag back as it was
                if previous is not None:
                    await self.tags.tag(name, ref, previous)
                else:
                    try:
                        await self.tags.untag(name, ref)
                    except RegistryError:
                        pass
            if isinstance(exc, GuardTimeout):
                raise RegistryError("UNAVAILABLE", str(exc), status=503,
                                    message="garbage collection in progress, retry") from None
            raise

    async def _relink_after_deletes(self, name: str, ref: Digest | str, d: Digest, parsed: mf.ParsedManifest,
                                    local: bool = True) -> bool:
        """Wait while a retention run deletes the tag or a manifest this PUT just linked, then write
        back every link a delete removed: the children's revisions, the manifest's (and its referrer
        entry), the tag (unless another push moved it meanwhile).  True if the revision was written back."""
        assert self.deletes is not None
        tag = ref if isinstance(ref, str) else None
        for desc in parsed.manifests:   # pushed again: a run that takes a child's intent after this
            c = desc.digest             # check of it reads the new push time and keeps the child
            if await self._revision_exists(name, c):
                await self.driver.put_content(layout.revision_link(name, c.algorithm, c.hex), str(c).encode())
        restored = False
        while True:     # what is written back is a link written anew: a run may be deleting it now
            await self.deletes.settle(name, tag, [d, *(c.digest for c in parsed.manifests)])
            wrote = await self._write_back(name, tag, d, parsed, local)
            if wrote is None:
                return restored
            restored = restored or wrote

    async def _write_back(self, name: str, tag: str | None, d: Digest, parsed: mf.ParsedManifest,
                          local: bool) -> bool | None:
        """`_relink_after_deletes`' writes: None if nothing was missing, else whether the
        revision was."""
        wrote = False
        for desc in parsed.manifests:
            c = desc.digest
            if await self._revision_exists(name, c):
                continue
            if await self.blobs.stat_data(c) is not None:
                wrote = True
                await self.driver.put_content(layout.revision_link(name, c.algorithm, c.hex), str(c).encode())
                if self.quota is not None and local:    # uncounted by that delete: counted again
                    child = await self._content(c)
                    cp = mf.parse(child.body, child.media_type, allow_blake3=self.allow_blake3)
                    await self.quota.relinked(name, c, len(child.body),
                                              [(b.digest, b.size) for b in cp.blobs if not b.foreign])
            elif self.index_policy.must_exist(desc):
                raise RegistryError("MANIFEST_BLOB_UNKNOWN", {"digests": [str(c)]})
        restored = not await self._revision_exists(name, d)
        if restored:
            wrote = True
            log.warning("manifest %s@%s: deleted by retention while it was pushed; linked again", name, d)
            await self.driver.put_content(layout.revision_link(name, d.algorithm, d.hex), str(d).encode())
            if parsed.subject is not None:
                s = parsed.subject.digest
                await self.driver.put_content(layout.referrer_link(name, s.algorithm, s.hex, d.algorithm, d.hex),
                                              str(d).encode())
        if tag is not None:
            try:
                await self.tags.resolve(name, tag)          # here, or moved by another push: left as it is
            except RegistryError:
                wrote = True
                log.warning("tag %s:%s: deleted by retention while it was pushed; tagged again", name, tag)
                await self.tags.tag(name, tag, d, new=True)
        return restored if wrote else None

    async def _check_references(self, name: str, parsed: mf.ParsedManifest, local: bool = True) -> None:
        """URLs of foreign layers against the URL policy; and, if `local`, every blob and child
        named must be in `name`."""
        missing: list[str] = []
        for desc in parsed.blobs:
            if desc.foreign:
                for url in desc.urls:
                    why = self.url_policy.refusal(url)
                    if why is not None:
                        raise RegistryError("MANIFEST_INVALID", {"digest": str(desc.digest), "url": url,
                                                                 "detail": why})
                continue
            if not local:
                continue
            if not await self.blobs.is_linked(name, desc.digest):
                missing.append(str(desc.digest))
                continue
            info = await self.blobs.stat_data(desc.digest)
            if info is None:
                missing.append(str(desc.digest))
            elif info.size != desc.size:
                raise RegistryError("MANIFEST_INVALID", {
                    "digest": str(desc.digest), "detail": f"descriptor size {desc.size} != stored {info.size}"})
        for desc in parsed.manifests:
            if local and self.index_policy.must_exist(desc) and not await self._revision_exists(name, desc.digest):
                missing.append(str(desc.digest))
        if missing:
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", {"digests": missing})

    async def delete(self, name: str, reference: str, *, guarded: bool = False) -> None:
        """`guarded`: the caller holds the immutability ``delete_guard`` of `name` already (a
        retention run takes it before its delete intent, the order a PUT takes them in)."""
        ref = self.parse_reference(reference)
        if isinstance(ref, str):
            if self.immutable is not None:
                await self.immutable.check_delete_tag(self.tags, name, ref)
            await self.tags.untag(name, ref)
            return
        if self.immutable is None:
            await self._delete_digest(name, ref)
            return
        guard: contextlib.AbstractAsyncContextManager[None] = \
            contextlib.nullcontext() if guarded else self.immutable.delete_guard(self.tags, name)
        async with guard:
            if not await self._revision_exists(name, ref):
                raise RegistryError("MANIFEST_UNKNOWN", {"digest": str(ref)})
            await self.immutable.check_delete_manifest(self.tags, name, ref, self._body)
            await self._delete_digest(name, ref)

    async def _delete_digest(self, name: str, d: Digest) -> None:
        if not await self._revision_exists(name, d):
            raise RegistryError("MANIFEST_UNKNOWN", {"digest": str(d)})
        body: bytes | None = None
        try:
            body = (await self._content(d)).body
            parsed_subject = _subject_of(body)
        except RegistryError:
            parsed_subject = None
        await self.tags.remove(name, await self._tags_or_empty(name, d))
        await self.driver.delete(layout.revision_dir(name, d.algorithm, d.hex))
        if self.quota is not None:                      # uncounted once the revision is gone
            await self.quota.released(name, d, body)
        if parsed_subject is not None:
            try:
                await self.driver.delete(layout.referrer_entry_dir(
                    name, parsed_subject.algorithm, parsed_subject.hex, d.algorithm, d.hex))
            except PathNotFound:
                pass

    async def unlink_blob(self, name: str, d: Digest) -> None:
        """A client's DELETE of a blob in `name`: refused (DENIED) when an image an immutable tag
        names uses it; otherwise its layer link goes (gc frees the data)."""
        if self.immutable is None:
            await self.blobs.unlink(name, d)
            return
        async with self.immutable.delete_guard(self.tags, name):
            await self.immutable.check_delete_blob(self.tags, name, d, self._body)
            await self.blobs.unlink(name, d)

    async def _body(self, d: Digest) -> bytes:
        return (await self._content(d)).body

    async def _tags_or_empty(self, name: str, d: Digest) -> list[str]:
        try:
            return await self.tags.pointing_at(name, d)
        except RegistryError:
            return []

    async def referrers(self, name: str, subject: Digest, artifact_type: str | None,
                        after: Digest | None = None) -> ReferrersPage:
        """The referrers of `subject` in digest order, after `after`, as many as fit in
        ``referrers_page`` bytes of encoded descriptors (at least one)."""
        base = layout.referrers_dir(name, subject.algorithm, subject.hex)
        out: list[bytes] = []
        used = 0
        last: Digest | None = None
        start = (after.algorithm, after.hex) if after is not None else None
        async for link in walk.links(self.driver, base):
            d = link.digest
            if start is not None and (d.algorithm, d.hex) <= start:
                continue
            if not await self._revision_exists(name, d):
                continue
            entry = await self._descriptor(d)
            if entry is None or (artifact_type is not None and entry[0] != artifact_type):
                continue
            if out and used + len(entry[1]) > self.referrers_page:
                return ReferrersPage(out, last)
            out.append(entry[1])
            used += len(entry[1]) + 1
            last = d
        return ReferrersPage(out, None)

    async def _descriptor(self, d: Digest) -> tuple[str | None, bytes] | None:
        """(artifactType, encoded descriptor) of referrer `d`; None if its manifest is unreadable."""
        key = (d.algorithm, d.hex)
        hit = self._descriptors.get(key)
        if hit is not None:
            return hit
        try:
            sm = await self._content(d)
        except RegistryError:
            return None
        desc = mf.referrer_descriptor(sm.body, d)
        at = desc.get("artifactType")
        entry = (at if isinstance(at, str) else None, orjson.dumps(desc))
        self._descriptors.put(key, entry, len(entry[1]))
        return entry


def _subject_of(body: bytes) -> Digest | None:
    try:
        doc = orjson.loads(body)
        return parse_digest(doc["subject"]["digest"], allow_blake3=True)
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
        return None
