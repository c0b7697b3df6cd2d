"""The proxy's manifest store: the local manifest and tag services with an upstream behind them
(Distribution's ``proxymanifeststore.go``).  A fetched manifest is read with a size bound and a
deadline, validated exactly as a pushed one and stored — data, revision link, referrers link, tag —
by ``ManifestStore.put_proxied``, so the write order (a new tag's current link before its index
entry) is the tag service's.  Tags are revalidated after the upstream's ``ttl``; a stale tag is
served while upstream cannot answer."""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from .. import manifest as mf
from ..api.errors import RegistryError, status_of
from ..api.http import Response, h
from ..digest import Digest, InvalidDigest, UnsupportedDigest, digest_bytes, parse_digest
from ..reference import is_digest_reference
from ..registry.manifests import ManifestStore
from ..registry.tags import TagStore
from .spool import host_lock
from .upstream import Upstream, UpstreamError

log = logging.getLogger("fastreg.proxy")

MANIFEST_ACCEPT = ", ".join(sorted(mf.MANIFEST_TYPES))
_LENGTH = re.compile(r"[0-9]{1,19}")
UPSTREAM_FAULTS = ("MANIFEST_INVALID", "DIGEST_INVALID", "TAG_INVALID")   # the upstream's bytes are bad

Refused = Callable[[str, str], None]


class ProxyManifestStore:
    def __init__(self, manifests: ManifestStore, tags: TagStore, storage: str, refused: Refused,
                 count: Callable[[str], None]) -> None:
        self.manifests = manifests
        self.tags = tags
        self.storage = storage
        self.refused = refused
        self.count = count
        self.limit = manifests.max_size

    def _digest(self, text: str) -> Digest:
        try:
            return parse_digest(text, allow_blake3=self.manifests.allow_blake3)
        except (InvalidDigest, UnsupportedDigest) as exc:
            raise RegistryError("DIGEST_INVALID", str(exc)) from None

    def _unavailable(self, up: Upstream, exc: UpstreamError) -> RegistryError:
        """503 when upstream could not answer; 502 MANIFEST_INVALID when what it answered is no
        manifest the registry takes (too large, an endless body, an encoding it was not asked for)."""
        self.refused(up.label, exc.reason)
        if exc.reason in ("too_large", "invalid"):
            return RegistryError("MANIFEST_INVALID", {"upstream": up.remoteurl, "detail": str(exc)}, status=502,
                                 message="the upstream registry answered an invalid manifest")
        return RegistryError("UNAVAILABLE", str(exc), status=503)

    async def head(self, name: str, up: Upstream, remote: str, reference: str) -> Response | None:
        """HEAD of a manifest this cache does not hold: answered from upstream's HEAD, storing
        nothing (an upstream GET counts against pull rate limits such as Docker Hub's; a HEAD
        does not).  None when the local copy can answer, or upstream's answer is not one to pass
        on as it is (then the manifest is fetched with GET, and validated)."""
        if is_digest_reference(reference):
            if await self.manifests.has(name, self._digest(reference)):
                return None
        elif await self.tags.current(name, reference) is not None:
            return None
        try:
            r, _ = await up.fetch("HEAD", remote, f"manifests/{reference}", 0, {"Accept": MANIFEST_ACCEPT})
        except UpstreamError as exc:
            raise self._unavailable(up, exc) from None
        if r.status_code == 404:
            raise RegistryError("MANIFEST_UNKNOWN", {"name": name, "reference": reference})
        claimed = r.headers.get("docker-content-digest", "")
        ctype = r.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        length = r.headers.get("content-length", "").strip()
        if (r.status_code != 200 or ctype not in mf.MANIFEST_TYPES or not _LENGTH.fullmatch(length)
                or int(length) > self.limit):
            return None
        try:
            d = parse_digest(claimed, allow_blake3=self.manifests.allow_blake3)
        except (InvalidDigest, UnsupportedDigest):
            return None
        if is_digest_reference(reference) and d != self._digest(reference):
            raise self._bad(up, "DIGEST_INVALID",
                            {"reference": reference, "detail": "upstream answered another digest"})
        return Response(200, [h("Docker-Content-Digest", str(d)), h("ETag", f'"{d}"'), h("Content-Type", ctype),
                              h("Content-Length", length)])

    def _bad(self, up: Upstream, code: str, detail: object) -> RegistryError:
        """The upstream answered content the registry refuses: 502, in the spec's envelope."""
        self.refused(up.label, "manifest_invalid" if code != "DIGEST_INVALID" else "digest_mismatch")
        return RegistryError(code, {"upstream": up.remoteurl, "detail": detail}, status=502,
                             message="the upstream registry answered an invalid manifest")

    async def ensure(self, name: str, up: Upstream, remote: str, reference: str) -> None:
        """Make the local copy of `reference` current enough to serve (fetching it if needed)."""
        if is_digest_reference(reference):
            d = self._digest(reference)
            if await self.manifests.has(name, d):
                return
            async with host_lock(f"manifest {name}@{d}", self.storage):
                if not await self.manifests.has(name, d):
                    try:
                        await self._fetch(name, up, remote, str(d))
                    except UpstreamError as exc:
                        raise self._unavailable(up, exc) from None
            return
        tag = reference
        if self._fresh(up, await self.tags.current(name, tag)):
            return
        async with host_lock(f"manifest {name}:{tag}", self.storage):
            local = await self.tags.current(name, tag)
            if self._fresh(up, local):
                return                          # another request revalidated it meanwhile
            try:
                if local is not None:
                    r, _ = await up.fetch("HEAD", remote, f"manifests/{tag}", 0, {"Accept": MANIFEST_ACCEPT})
                    if (r.status_code == 200 and r.headers.get("docker-content-digest") == str(local[0])
                            and await self.manifests.has(name, local[0])):
                        await self.tags.tag(name, tag, local[0])       # still current: a new mtime
                        return
                await self._fetch(name, up, remote, tag)
            except (UpstreamError, RegistryError) as exc:
                # a client error (404: gone upstream) is the answer; DENIED (an immutable tag the
                # upstream moved) and upstream failures leave the cached tag to serve
                if local is None or (isinstance(exc, RegistryError) and status_of(exc) < 500
                                     and exc.code.value != "DENIED"):
                    if isinstance(exc, UpstreamError):
                        raise self._unavailable(up, exc) from None
                    raise
                if isinstance(exc, UpstreamError):
                    self.refused(up.label, exc.reason)
                log.warning("proxy: upstream %s: %s; serving %s:%s as cached", up.remoteurl, exc, name, tag)

    @staticmethod
    def _fresh(up: Upstream, local: tuple[Digest, float] | None) -> bool:
        return local is not None and (up.ttl == 0 or time.time() - local[1] < up.ttl)

    async def _fetch(self, name: str, up: Upstream, remote: str, ref: str) -> None:
        """GET the manifest (bounded, with a deadline), check it, store it (and tag it)."""
        r, body = await up.fetch("GET", remote, f"manifests/{ref}", self.limit, {"Accept": MANIFEST_ACCEPT})
        self.count(f"manifest {up.label}/{remote}@{ref}")
        if r.status_code == 404:
            raise RegistryError("MANIFEST_UNKNOWN", {"name": name, "reference": ref})
        if r.status_code != 200:
            raise UpstreamError(f"upstream {up.remoteurl} answered {r.status_code} for {remote}:{ref}")
        claimed = r.headers.get("docker-content-digest", "")
        if claimed.startswith("sha256:") and f"sha256:{digest_bytes(body, 'sha256').hex}" != claimed:
            log.error("proxy: manifest %s:%s from %s does not match its Docker-Content-Digest: not stored",
                      remote, ref, up.remoteurl)
            raise self._bad(up, "DIGEST_INVALID", {"reference": ref, "detail": "bytes do not match their digest"})
        try:
            await self.manifests.put_proxied(name, ref, body, r.headers.get("content-type"))
        except RegistryError as exc:
            if exc.code.value not in UPSTREAM_FAULTS:
                raise
            log.error("proxy: manifest %s:%s from %s refused, not stored: %s", remote, ref, up.remoteurl,
                      exc.detail)
            raise self._bad(up, exc.code.value, exc.detail) from None
