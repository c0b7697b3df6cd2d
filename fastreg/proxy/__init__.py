"""Pull-through cache: fastreg in front of upstream registries.

Which repositories are proxied
------------------------------
* ``proxy.remoteurl`` (Distribution's single upstream): every repository; ``/v2/<name>/...``
  is fetched from ``<remoteurl>/v2/<name>/...``.
* ``fastreg.proxy.upstreams: {hub: {remoteurl, username, password, ttl}}``: by name prefix;
  ``/v2/hub/library/alpine/...`` is fetched from the "hub" upstream as ``library/alpine`` and
  stored locally under ``hub/library/alpine``.  Repositories under no prefix are ordinary local
  repositories (pushes allowed), so one fastreg is a cache of several registries and a registry
  of its own.
Writes to a proxied repository (uploads, manifest PUT, DELETE) answer 405 UNSUPPORTED, as
Distribution's proxy does.

Manifests
---------
By digest: served locally once stored; a miss is fetched from upstream, its digest checked,
stored (blob data, revision link, referrers index), served.  By tag: the local tag is served
while its ``current/link`` is younger than ``ttl`` (its mtime is the time it was last checked
against upstream); after that fastreg sends upstream a HEAD, and if the digest is unchanged it
only rewrites the link (new mtime), else it fetches the new manifest and moves the tag.  If
upstream cannot be reached, a stale local tag is served (logged).  ``ttl`` unset is
Distribution's 168h; ``0`` never revalidates.  (Distribution's ``ttl`` instead *deletes* cached
content after that time; fastreg keeps it, and ``fastreg gc`` collects what nothing tags.)

Blobs and coalescing
--------------------
A blob miss starts one fetch, whatever the number of clients asking: every client streams the
bytes *as they arrive*, from a spool file the fetch appends to.

* Within a worker, the first request creates an ``InFlight`` for the digest; later requests
  join it.  Readers ``pread`` the spool up to what has been written and wait on an
  ``asyncio.Condition`` for more.
* Across the worker processes of a host, the fetch holds an exclusive ``flock`` on
  ``<tmp>/fastreg-proxy/<storage hash>/<alg>-<hex>.lock``; a worker that cannot take it
  *follows* the holder: it opens the holder's spool file (its size is in ``<alg>-<hex>.size``)
  and serves it as it grows, polling its size every few milliseconds, until the lock is released
  and the blob is in storage.  So one host makes one upstream fetch per blob.
* Across hosts, with ``fastreg.proxy.peerurl`` set on every replica, one replica per blob is
  elected through leases in the shared storage and the others stream from it (``peers.py``).
* The fetch hashes as it writes; at the end the digest and size are checked, the spool is copied
  into storage (``blobs/`` + the repository's ``_layers`` link) and removed.  On a mismatch or
  an upstream error nothing is stored, and the clients' responses end early (their digests
  would fail anyway).  The fetch runs to the end even if the client that started it goes away.

A ``Range`` request on a missing blob joins the same fetch and is answered (206) as soon as the
spool holds its bytes.  ``HEAD`` of a missing blob, or of a manifest this cache does not hold,
asks upstream with ``HEAD`` and stores nothing (a GET would count against upstream pull rate
limits such as Docker Hub's; a HEAD does not).  Tag lists are
forwarded to upstream (the local list if upstream is unreachable).

Upstream authentication (``upstream.py``): anonymous first, then the ``Bearer`` token handshake
or ``Basic`` credentials, as the upstream's challenge asks.

Every upstream fetch logs one line on ``fastreg.proxy`` at info level ("proxy fetch ...") and
counts in ``Proxy.fetches``: that is how the tests count them.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ..api.errors import RegistryError
from ..api.http import Request, Response, h
from ..digest import (
    Digest,
    InvalidDigest,
    RangeNotSatisfiable,
    UnsupportedDigest,
    digest_bytes,
    format_content_range,
    new_hasher,
    parse_digest,
    parse_range,
)
from ..hooks import Target
from ..reference import is_digest_reference
from ..storage import layout, walk
from ..storage.driver.base import PathNotFound, StorageDriver
from .peers import Peers
from .spool import CHUNK, InFlight, host_lock, read_small, spool_dir, try_flock, unlock, write_small
from .upstream import DEFAULT_TTL, Upstream, is_docker_hub, transport_errors

__all__ = ["Proxy", "Upstream", "host_lock"]

log = logging.getLogger("fastreg.proxy")

MANIFEST_ACCEPT = ("application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
                   "application/vnd.docker.distribution.manifest.list.v2+json, "
                   "application/vnd.docker.distribution.manifest.v2+json")
MAX_MANIFEST = 4 * 1024 * 1024
FOLLOW_WAIT = 300.0       # longest wait for another worker's fetch to start its spool
WRITES = {("upload_start", "POST"), ("upload", "GET"), ("upload", "PATCH"), ("upload", "PUT"),
          ("upload", "DELETE"), ("manifest", "PUT"), ("manifest", "DELETE"), ("blob", "DELETE")}
Handler = Callable[[Request, Any], Awaitable[Response]]


# -- the proxy -----------------------------------------------------------------------------------

class SourceUnavailable(Exception):
    """A blob's source (upstream or a peer) could not be opened; nothing was served from it."""

    def __init__(self, text: str, error: RegistryError | None = None) -> None:
        super().__init__(text)
        self.error = error


class Proxy:
    def __init__(self, driver: StorageDriver, upstreams: dict[str, Upstream], *, allow_blake3: bool = False,
                 storage: str = "", created: Callable[[str], Awaitable[None]] | None = None,
                 peer_url: str = "") -> None:
        self.driver = driver
        self.created = created                  # the catalog's "new repository" notice
        self.storage = storage                  # identifies the storage: names host-local spools
        self.upstreams = upstreams              # "" = every repository (proxy.remoteurl)
        self.allow_blake3 = allow_blake3
        self.fetches: dict[str, int] = {}       # "blob <digest>" / "manifest <repo>@<ref>" → count
        self._inflight: dict[Digest, InFlight] = {}
        self.peers = Peers(driver, peer_url) if peer_url else None     # fastreg.proxy.peerurl
        self._peers_client: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_config(cls, cfg: Any, driver: StorageDriver,
                    created: Callable[[str], Awaitable[None]] | None = None) -> Proxy | None:
        ups: dict[str, Upstream] = {}
        if cfg.proxy.remoteurl:
            p = cfg.proxy
            ups[""] = Upstream("", p.remoteurl, p.username, p.password, DEFAULT_TTL if p.ttl is None else p.ttl)
        for name, p in cfg.fastreg.proxy.upstreams.items():
            ups[name] = Upstream(name, p.remoteurl, p.username, p.password, DEFAULT_TTL if p.ttl is None else p.ttl)
        if not ups:
            return None
        where = cfg.storage.driver_name + ":" + repr(getattr(cfg.storage, cfg.storage.driver_name, None))
        return cls(driver, ups, allow_blake3=cfg.fastreg.digest.blake3, storage=where, created=created,
                   peer_url=cfg.fastreg.proxy.peerurl)

    def route(self, name: str) -> tuple[Upstream, str] | None:
        """The upstream and the upstream repository name for local repository `name`, if proxied."""
        first, _, rest = name.partition("/")
        if rest and first in self.upstreams and first:
            up, remote = self.upstreams[first], rest
        elif "" in self.upstreams:
            up, remote = self.upstreams[""], name
        else:
            return None
        if "/" not in remote and is_docker_hub(up.remoteurl):
            remote = f"library/{remote}"        # Docker Hub's official images (what docker pull does)
        return up, remote

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for up in self.upstreams.values():
            await up.close()
        if self._peers_client is not None:
            await self._peers_client.aclose()

    def _count(self, what: str) -> None:
        self.fetches[what] = self.fetches.get(what, 0) + 1
        log.info("proxy fetch %s (pid %d)", what, os.getpid())

    # -- dispatch ---------------------------------------------------------------------------
    async def handle(self, route: str, req: Request, ctx: Any, handler: Handler,
                     target: tuple[Upstream, str]) -> Response:
        method = req.method
        if (route, method) in WRITES:
            raise RegistryError("UNSUPPORTED", "this repository is a pull-through cache: pushes and deletes "
                                "are not allowed", status=405, message="the repository is a read-only proxy")
        up, remote = target
        name = req.params["name"]
        if route == "manifest":
            if method == "HEAD":
                head = await self._head_manifest(name, up, remote, req.params["reference"])
                if head is not None:
                    return head
            await self.ensure_manifest(name, up, remote, req.params["reference"])
        elif route == "blob":
            d = ctx.digest(req.params["digest"])
            if not await self._linked(name, d):
                if method == "HEAD":
                    return await self._head_blob(up, remote, d)
                blob, size = await self._stream_blob(name, up, remote, d, req.header(b"range"),
                                                     req.header(b"authorization"))
                await ctx.emit("pull", req, Target(name, str(d), "application/octet-stream", size))
                return blob
        elif route == "tags":
            resp = await self._tags(up, remote, req)
            if resp is not None:
                return resp
        return await handler(req, ctx)

    # -- manifests --------------------------------------------------------------------------
    async def _revision(self, name: str, d: Digest) -> bool:
        try:
            await self.driver.stat(layout.revision_link(name, d.algorithm, d.hex))
            return True
        except PathNotFound:
            return False

    def _parse_digest(self, text: str) -> Digest:
        try:
            return parse_digest(text, allow_blake3=self.allow_blake3)
        except (InvalidDigest, UnsupportedDigest) as exc:
            raise RegistryError("DIGEST_INVALID", str(exc)) from None

    async def _tag_state(self, name: str, tag: str) -> tuple[Digest | None, float]:
        path = layout.tag_current_link(name, tag)
        try:
            info = await self.driver.stat(path)
            d = parse_digest((await self.driver.get_content(path)).decode().strip(), allow_blake3=True)
        except (PathNotFound, InvalidDigest, UnsupportedDigest, UnicodeDecodeError):
            return None, 0.0
        return d, info.mtime

    async def _head_manifest(self, name: str, up: Upstream, remote: str, reference: str) -> Response | None:
        """HEAD of a manifest this cache does not hold: answered from upstream's HEAD, storing
        nothing (an upstream GET counts against pull rate limits such as Docker Hub's; a HEAD
        does not).  None when the local copy can answer (the usual handler, with revalidation)."""
        if is_digest_reference(reference):
            if await self._revision(name, self._parse_digest(reference)):
                return None
        elif (await self._tag_state(name, reference))[0] is not None:
            return None
        try:
            r = await up.send("HEAD", remote, f"manifests/{reference}", {"Accept": MANIFEST_ACCEPT})
        except transport_errors() as exc:
            raise RegistryError("UNAVAILABLE", f"upstream {up.remoteurl} unreachable: {exc}", status=503) from None
        if r.status_code == 404:
            raise RegistryError("MANIFEST_UNKNOWN", {"name": name, "reference": reference})
        claimed = r.headers.get("docker-content-digest")
        if r.status_code != 200 or not claimed:
            return None                     # an upstream that cannot answer HEAD: fetch with GET
        d = self._parse_digest(claimed)
        if is_digest_reference(reference) and d != self._parse_digest(reference):
            raise RegistryError("DIGEST_INVALID", {"upstream": up.remoteurl, "reference": reference,
                                                   "detail": "upstream answered another digest"})
        headers = [h("Docker-Content-Digest", str(d)), h("ETag", f'"{d}"'),
                   h("Content-Type", r.headers.get("content-type", "application/octet-stream")),
                   h("Content-Length", r.headers.get("content-length", "0"))]
        return Response(200, headers)

    async def ensure_manifest(self, name: str, up: Upstream, remote: str, reference: str) -> None:
        if is_digest_reference(reference):
            d = self._parse_digest(reference)
            if await self._revision(name, d):
                return
            async with host_lock(f"manifest {name}@{d}", self.storage):
                if not await self._revision(name, d):
                    try:
                        await self._fetch_manifest(name, up, remote, str(d), d)
                    except transport_errors() as exc:
                        raise RegistryError("UNAVAILABLE", f"upstream {up.remoteurl} unreachable: {exc}",
                                            status=503) from None
            return
        tag = reference
        local, checked = await self._tag_state(name, tag)
        if local is not None and (up.ttl == 0 or time.time() - checked < up.ttl):
            return
        async with host_lock(f"manifest {name}:{tag}", self.storage):
            local, checked = await self._tag_state(name, tag)
            if local is not None and (up.ttl == 0 or time.time() - checked < up.ttl):
                return                          # another request revalidated it meanwhile
            try:
                if local is not None:
                    r = await up.send("HEAD", remote, f"manifests/{tag}", {"Accept": MANIFEST_ACCEPT})
                    now = r.headers.get("docker-content-digest")
                    if r.status_code == 200 and now == str(local) and await self._revision(name, local):
                        await self._set_tag(name, tag, local)          # still current: new mtime
                        return
                await self._fetch_manifest(name, up, remote, tag, None, tag=tag)
            except transport_errors() as exc:
                if local is None:
                    raise RegistryError("UNAVAILABLE", f"upstream {up.remoteurl} unreachable: {exc}",
                                        status=503) from None
                log.warning("proxy: upstream %s unreachable (%s); serving %s:%s as cached", up.remoteurl, exc,
                            name, tag)

    async def _fetch_manifest(self, name: str, up: Upstream, remote: str, ref: str, want: Digest | None,
                              *, tag: str | None = None) -> None:
        r = await up.send("GET", remote, f"manifests/{ref}", {"Accept": MANIFEST_ACCEPT})
        self._count(f"manifest {up.name or 'remote'}/{remote}@{ref}")
        if r.status_code == 404:
            raise RegistryError("MANIFEST_UNKNOWN", {"name": name, "reference": ref})
        if r.status_code != 200:
            raise RegistryError("UNAVAILABLE", f"upstream answered {r.status_code}", status=503)
        body = r.content
        if len(body) > MAX_MANIFEST:
            raise RegistryError("MANIFEST_INVALID", "upstream manifest too large")
        d = digest_bytes(body, want.algorithm if want is not None else "sha256")
        claimed = r.headers.get("docker-content-digest")
        if (want is not None and d != want) or (claimed and claimed.startswith("sha256:")
                                                 and digest_bytes(body, "sha256") != self._parse_digest(claimed)):
            raise RegistryError("DIGEST_INVALID", {"upstream": up.remoteurl, "reference": ref,
                                                   "detail": "upstream bytes do not match their digest"})
        await self._store_manifest(name, d, body)
        if tag is not None:
            await self._set_tag(name, tag, d)

    async def _store_manifest(self, name: str, d: Digest, body: bytes) -> None:
        try:
            await self.driver.stat(layout.blob_data(d.algorithm, d.hex))
        except PathNotFound:
            await self.driver.put_content(layout.blob_data(d.algorithm, d.hex), body)
        new_repository = not await self._exists(f"{layout.repo(name)}/_manifests")
        await self.driver.put_content(layout.revision_link(name, d.algorithm, d.hex), str(d).encode())
        if new_repository and self.created is not None:
            await self.created(name)
        try:
            doc = orjson.loads(body)
            subject = parse_digest(doc["subject"]["digest"], allow_blake3=True)
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
            return
        await self.driver.put_content(layout.referrer_link(name, subject.algorithm, subject.hex, d.algorithm, d.hex),
                                      str(d).encode())

    async def _exists(self, path: str) -> bool:
        return await walk.exists(self.driver, path)

    async def _set_tag(self, name: str, tag: str, d: Digest) -> None:
        text = str(d).encode()
        await self.driver.put_content(layout.tag_index_link(name, tag, d.algorithm, d.hex), text)
        await self.driver.put_content(layout.tag_current_link(name, tag), text)

    # -- tags -------------------------------------------------------------------------------
    async def _tags(self, up: Upstream, remote: str, req: Request) -> Response | None:
        qs = req.scope.get("query_string", b"").decode("latin-1")
        try:
            r = await up.send("GET", remote, "tags/list" + (f"?{qs}" if qs else ""))
        except transport_errors():
            return None
        if r.status_code != 200:
            return None
        try:
            doc = r.json()
        except ValueError:
            return None
        doc["name"] = req.params["name"]
        body = orjson.dumps(doc)
        headers = [(b"content-type", b"application/json"), h("Content-Length", len(body))]
        link = r.headers.get("link")
        if link:
            headers.append(h("Link", link.replace(f"/v2/{remote}/", f"/v2/{req.params['name']}/")))
        return Response(200, headers, b"" if req.method == "HEAD" else body)

    # -- blobs ------------------------------------------------------------------------------
    async def _linked(self, name: str, d: Digest) -> bool:
        try:
            await self.driver.stat(layout.layer_link(name, d.algorithm, d.hex))
            await self.driver.stat(layout.blob_data(d.algorithm, d.hex))
            return True
        except PathNotFound:
            return False

    async def _head_blob(self, up: Upstream, remote: str, d: Digest) -> Response:
        try:
            r = await up.send("HEAD", remote, f"blobs/{d}")
        except transport_errors() as exc:
            raise RegistryError("UNAVAILABLE", f"upstream {up.remoteurl} unreachable: {exc}", status=503) from None
        if r.status_code != 200:
            raise RegistryError("BLOB_UNKNOWN", {"digest": str(d)})
        return Response(200, [h("Content-Length", r.headers.get("content-length", "0")),
                              h("Docker-Content-Digest", str(d)), h("Content-Type", "application/octet-stream"),
                              h("ETag", f'"{d}"'), (b"accept-ranges", b"bytes")])

    def _join(self, name: str, up: Upstream, remote: str, d: Digest, auth: str | None) -> InFlight:
        fl = self._inflight.get(d)
        if fl is None or fl.done:
            fl = InFlight(d)
            self._inflight[d] = fl
            task = asyncio.ensure_future(self._run_fetch(fl, name, up, remote, auth))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return fl.join()

    async def _stream_blob(self, name: str, up: Upstream, remote: str, d: Digest,
                           rng: str | None, auth: str | None) -> tuple[Response, int]:
        """A blob this cache does not hold: join (or start) its fetch and stream what arrives —
        the whole blob, or the requested range as soon as its bytes are in the spool."""
        fl = self._join(name, up, remote, d, auth)
        await fl.sized.wait()
        if fl.error is not None or fl.size is None:
            fl.leave()
            if isinstance(fl.error, RegistryError):
                raise fl.error
            raise RegistryError("UNAVAILABLE", f"upstream fetch failed: {fl.error}", status=503)
        size = fl.size
        headers = [h("Docker-Content-Digest", str(d)), h("ETag", f'"{d}"'),
                   (b"content-type", b"application/octet-stream"), (b"accept-ranges", b"bytes")]
        span = None
        if rng is not None:
            try:
                span = parse_range(rng, size)
            except RangeNotSatisfiable:
                fl.leave()
                raise RegistryError("RANGE_INVALID", {"range": rng, "size": size},
                                    message="requested range not satisfiable",
                                    headers=[h("Content-Range", f"bytes */{size}")]) from None
        if span is None:
            return Response(200, [h("Content-Length", size), *headers], stream=fl.stream()), size
        start, end = span
        headers += [h("Content-Range", format_content_range(start, end, size)), h("Content-Length", end - start + 1)]
        return Response(206, headers, stream=fl.stream(start, end + 1)), size

    async def _run_fetch(self, fl: InFlight, name: str, up: Upstream, remote: str, auth: str | None) -> None:
        d = fl.digest
        spool = os.path.join(spool_dir(self.storage), f"{d.algorithm}-{d.hex}")
        lock: int | None = None
        try:
            while True:
                lock = try_flock(spool + ".lock")
                if lock is not None:
                    break
                if await self._follow(fl, spool):
                    return
            if await self._linked(name, d):
                await self._from_storage(fl)
                return
            if self.peers is not None and await self._via_peers(fl, name, up, remote, spool, auth):
                return
            try:
                await self._fetch_blob(fl, name, spool, f"upstream {up.remoteurl}", self._from_upstream(up, remote, d))
            except SourceUnavailable as exc:
                raise exc.error or RegistryError("UNAVAILABLE", str(exc), status=503) from None
        except BaseException as exc:
            await fl.progress(error=exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            if lock is not None:
                unlock(lock)
            if self._inflight.get(d) is fl:
                del self._inflight[d]
            fl.maybe_close()

    async def _via_peers(self, fl: InFlight, name: str, up: Upstream, remote: str, spool: str,
                         auth: str | None) -> bool:
        """Cluster-wide coalescing (``peers.py``): fetch from upstream if this replica wins the
        blob's election, else stream it from the replica that did.  False: fetch it yourself
        (the winner could not be reached before anything was served)."""
        assert self.peers is not None
        d = fl.digest
        winner = await self.peers.elect(d)
        if winner is None:
            hold = asyncio.ensure_future(self.peers.hold(d))
            try:
                if await self._linked(name, d):              # stored by another replica meanwhile
                    await self._from_storage(fl)
                    return True
                try:
                    await self._fetch_blob(fl, name, spool, f"upstream {up.remoteurl}",
                                           self._from_upstream(up, remote, d))
                except SourceUnavailable as exc:
                    raise exc.error or RegistryError("UNAVAILABLE", str(exc), status=503) from None
            finally:
                hold.cancel()
                await self.peers.release(d)
            return True
        try:
            await self._fetch_blob(fl, name, spool, f"peer {winner}", self._from_peer(winner, name, d, auth))
        except SourceUnavailable as exc:
            log.warning("proxy: %s; fetching %s from upstream instead", exc, d)
            return False
        return True

    async def _from_storage(self, fl: InFlight) -> None:
        """The blob is already stored (another process fetched it): serve it from there."""
        d = fl.digest
        path = layout.blob_data(d.algorithm, d.hex)
        local = self.driver.local_path(path)
        if local is not None:
            fl.fd = os.open(local, os.O_RDONLY)
            fl.size = os.fstat(fl.fd).st_size
            fl.sized.set()
            await fl.progress(fl.size, done=True)
            return
        # Not a local file: copy it to a private spool to serve the waiting clients.
        fd, tmp = tempfile.mkstemp(dir=spool_dir(self.storage))
        os.unlink(tmp)
        fl.fd = fd
        fl.size = (await self.driver.stat(path)).size
        fl.sized.set()
        n = 0
        async for chunk in self.driver.reader(path):
            os.write(fd, chunk)
            n += len(chunk)
            await fl.progress(n)
        await fl.progress(n, done=True)

    async def _follow(self, fl: InFlight, spool: str) -> bool:
        """Another process of this host is fetching: serve its spool as it grows.  False if it
        went away before we could open its spool (then we try to take the lock again)."""
        fd = None
        deadline = time.monotonic() + FOLLOW_WAIT
        while time.monotonic() < deadline:    # the holder may wait long for upstream's headers
            try:
                size = int(read_small(spool + ".size") or "x")
                fd = os.open(spool, os.O_RDONLY)
                break
            except (OSError, ValueError):
                probe = try_flock(spool + ".lock")
                if probe is not None:
                    unlock(probe)
                    return False
                await asyncio.sleep(0.01)
        if fd is None:
            raise RuntimeError("the fetching worker did not start its spool")
        fl.fd, fl.size = fd, size
        fl.sized.set()
        log.info("proxy follow %s: another worker of this host is fetching it (pid %d)", fl.digest, os.getpid())
        delay = 0.002
        while True:
            n = os.fstat(fd).st_size
            if n != fl.written:
                await fl.progress(n)
                delay = 0.002
            probe = try_flock(spool + ".lock")
            if probe is not None:                 # the holder finished (or died)
                unlock(probe)
                n = os.fstat(fd).st_size
                if n == size and await self._stored(fl.digest):
                    await fl.progress(n, done=True)
                    return True
                raise RuntimeError("the fetching worker stopped before the blob was complete")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    async def _stored(self, d: Digest) -> bool:
        try:
            await self.driver.stat(layout.blob_data(d.algorithm, d.hex))
            return True
        except PathNotFound:
            return False

    async def _fetch_blob(self, fl: InFlight, name: str, spool: str, source: str,
                          open_stream: Callable[[], Awaitable[Any]]) -> None:
        """Stream the blob from `open_stream()` (upstream, or a peer replica) into the spool the
        waiting clients read, hashing it; store it if it is whole and matches its digest.
        Raises SourceUnavailable if the source could not be opened (nothing was served yet)."""
        d = fl.digest
        import httpx
        try:
            r = await open_stream()
        except httpx.HTTPError as exc:
            raise SourceUnavailable(f"{source} unreachable: {exc}") from None
        try:
            if r.status_code == 404:
                raise SourceUnavailable(f"{source} answered 404", RegistryError("BLOB_UNKNOWN", {"digest": str(d)}))
            if r.status_code != 200:
                raise SourceUnavailable(f"{source} answered {r.status_code}")
            size = int(r.headers.get("content-length", "-1"))
            if size < 0:
                raise SourceUnavailable(f"{source} sent no Content-Length")
            for stale in (spool, spool + ".size"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(stale)
            wfd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                fl.fd = os.open(spool, os.O_RDONLY)
                write_small(spool + ".size.tmp", str(size).encode())
                os.replace(spool + ".size.tmp", spool + ".size")
                fl.size = size
                fl.sized.set()
                hasher = new_hasher(d.algorithm)
                n = 0
                async for chunk in r.aiter_raw(CHUNK):
                    hasher.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(wfd, view):]
                    n += len(chunk)
                    await fl.progress(n)
                if n != size or hasher.hexdigest() != d.hex:
                    raise RegistryError("DIGEST_INVALID", {"digest": str(d),
                                                           "detail": f"bytes from {source} do not match"})
                await self._commit(name, d, fl.fd, size)
                await fl.progress(n, done=True)
            finally:
                os.close(wfd)
                for done in (spool, spool + ".size"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(done)
        finally:
            await r.aclose()

    def _from_upstream(self, up: Upstream, remote: str, d: Digest) -> Callable[[], Awaitable[Any]]:
        async def open_stream() -> Any:
            r = await up.send("GET", remote, f"blobs/{d}", stream=True)
            self._count(f"blob {d} from {up.name or 'remote'}/{remote}")
            return r
        return open_stream

    def _from_peer(self, peer: str, name: str, d: Digest, auth: str | None) -> Callable[[], Awaitable[Any]]:
        async def open_stream() -> Any:
            assert self.peers is not None
            client = self.peers_client()
            r = await client.send(client.build_request("GET", f"{peer}/v2/{name}/blobs/{d}", headers={
                "Authorization": auth} if auth else {}), stream=True)
            self.fetches[f"peer blob {d}"] = self.fetches.get(f"peer blob {d}", 0) + 1
            log.info("proxy peer fetch blob %s from %s (pid %d)", d, peer, os.getpid())
            return r
        return open_stream

    def peers_client(self) -> Any:
        if self._peers_client is None:
            import httpx
            self._peers_client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0))
        return self._peers_client

    async def _commit(self, name: str, d: Digest, fd: int, size: int) -> None:
        """Copy the verified spool into storage, as an upload commit would."""
        if not await self._stored(d):
            tmp = f"{layout.REPOS}/{name}/_uploads/proxy-{d.hex}-{uuid.uuid4().hex}/data"
            w = await self.driver.writer(tmp)
            try:
                pos = 0
                while pos < size:
                    data = os.pread(fd, min(CHUNK, size - pos), pos)
                    await w.write(data)
                    pos += len(data)
                await w.commit()
            except BaseException:
                await w.cancel()
                raise
            if not await self._stored(d):
                await self.driver.move(tmp, layout.blob_data(d.algorithm, d.hex))
            with contextlib.suppress(PathNotFound):
                await self.driver.delete(tmp.rsplit("/", 1)[0])
        await self.driver.put_content(layout.layer_link(name, d.algorithm, d.hex), str(d).encode())
