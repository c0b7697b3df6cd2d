"""The proxy's blob store: the local blob service with an upstream behind it (Distribution's
``proxyblobstore.go``).  A miss starts one fetch, whatever the number of clients asking; every
client streams the bytes from the spool the fetch appends to, and the last byte of each response
only once the whole blob has been verified against its digest.  Only verified bytes are stored,
through ``BlobStore.put_verified``.  See ``fastreg.proxy`` for the coordination between workers
and replicas."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Callable

import httpx

from ..api.errors import RegistryError
from ..api.http import Response, h
from ..digest import Digest, RangeNotSatisfiable, format_content_range, new_hasher, parse_range
from ..registry.blobs import BlobStore
from .peers import Peers
from .spool import InFlight, read_small, spool_dir, try_flock, unlock, write_small
from .upstream import BLOB_MIN_RATE, Upstream, UpstreamError, deadline

log = logging.getLogger("fastreg.proxy")

FOLLOW_WAIT = 300.0       # longest wait for another worker's fetch to start its spool
_LENGTH = re.compile(r"[0-9]{1,19}")

Refused = Callable[[str, str], None]            # (upstream label, reason): counted in metrics


class SourceUnavailable(Exception):
    """A blob's source (upstream or a peer) could not be opened; nothing was served from it."""

    def __init__(self, text: str, error: RegistryError | None = None) -> None:
        super().__init__(text)
        self.error = error


class DigestMismatch(Exception):
    """The bytes a source sent do not hash to the digest they were asked for."""


def content_length(r: httpx.Response) -> int | None:
    value = r.headers.get("content-length", "").strip()
    return int(value) if _LENGTH.fullmatch(value) else None


class ProxyBlobStore:
    def __init__(self, blobs: BlobStore, storage: str, peers: Peers | None, refused: Refused,
                 count: Callable[[str], None]) -> None:
        self.blobs = blobs
        self.storage = storage                  # names the host-local spool directory
        self.peers = peers
        self.refused = refused
        self.count = count
        self.peer_fetches: dict[str, int] = {}
        self._inflight: dict[Digest, InFlight] = {}
        self._peers_client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._peers_client is not None:
            await self._peers_client.aclose()

    async def linked(self, name: str, d: Digest) -> bool:
        return await self.blobs.is_linked(name, d) and await self.blobs.stat_data(d) is not None

    # -- HEAD: asked upstream, nothing stored ---------------------------------------------------
    async def head(self, up: Upstream, remote: str, d: Digest) -> Response:
        try:
            r, _ = await up.fetch("HEAD", remote, f"blobs/{d}", 0)
        except UpstreamError as exc:
            self.refused(up.label, exc.reason)
            raise RegistryError("UNAVAILABLE", str(exc), status=503) from None
        if r.status_code == 404:
            raise RegistryError("BLOB_UNKNOWN", {"digest": str(d)})
        size = content_length(r)
        if r.status_code != 200 or size is None:
            raise RegistryError("UNAVAILABLE", f"upstream {up.remoteurl} answered HEAD of {d} with "
                                f"{r.status_code} and no usable Content-Length", status=503)
        return Response(200, [h("Content-Length", size), h("Docker-Content-Digest", str(d)),
                              (b"content-type", b"application/octet-stream"), h("ETag", f'"{d}"'),
                              (b"accept-ranges", b"bytes")])

    # -- GET: join (or start) the fetch ---------------------------------------------------------
    def _join(self, name: str, up: Upstream, remote: str, d: Digest, auth: str | None) -> InFlight:
        fl = self._inflight.get(d)
        if fl is None or fl.done:
            fl = InFlight(d)
            self._inflight[d] = fl
            task = asyncio.ensure_future(self._run(fl, name, up, remote, auth))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return fl.join()

    async def stream(self, name: str, up: Upstream, remote: str, d: Digest, rng: str | None,
                     auth: str | None) -> tuple[Response, int]:
        """A blob this cache does not hold: the whole blob (200) or the requested range (206),
        streamed as the fetch brings it, the last byte held back until the blob is verified."""
        fl = self._join(name, up, remote, d, auth)
        await fl.sized.wait()
        if fl.size is None:
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

    async def _run(self, fl: InFlight, name: str, up: Upstream, remote: str, auth: str | None) -> None:
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
            if await self.linked(name, d):
                await self._from_storage(fl)
                return
            if self.peers is not None and await self._via_peers(fl, name, up, remote, spool, auth):
                return
            await self._from_upstream(fl, name, up, remote, spool)
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

    async def _from_upstream(self, fl: InFlight, name: str, up: Upstream, remote: str, spool: str) -> None:
        d = fl.digest

        async def open_stream() -> httpx.Response:
            async with deadline(up.deadline, f"upstream {up.remoteurl}: blob {d}"):
                r = await up.send("GET", remote, f"blobs/{d}")
            self.count(f"blob {d} from {up.label}/{remote}")
            return r

        try:
            await self._fetch(fl, name, spool, f"upstream {up.remoteurl}", up.label, up.deadline, open_stream)
        except SourceUnavailable as exc:
            raise exc.error or RegistryError("UNAVAILABLE", str(exc), status=503) from None

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
                if await self.linked(name, d):              # stored by another replica meanwhile
                    await self._from_storage(fl)
                else:
                    await self._from_upstream(fl, name, up, remote, spool)
            finally:
                hold.cancel()
                await self.peers.release(d)
            return True
        try:
            await self._fetch(fl, name, spool, f"peer {winner}", f"peer {winner}", up.deadline,
                              self._from_peer(winner, name, d, auth, up.deadline))
        except SourceUnavailable as exc:
            log.warning("proxy: %s; fetching %s from upstream instead", exc, d)
            return False
        return True

    async def _from_storage(self, fl: InFlight) -> None:
        """The blob is already stored (another process fetched it): serve it from there."""
        d = fl.digest
        local = self.blobs.local_file(d)
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
        info = await self.blobs.stat_data(d)
        if info is None:
            raise RegistryError("BLOB_UNKNOWN", {"digest": str(d)})
        fl.size = info.size
        fl.sized.set()
        n = 0
        async for chunk in self.blobs.read(d):
            os.write(fd, chunk)
            n += len(chunk)
            await fl.progress(n)
        await fl.progress(n, done=True)

    async def _follow(self, fl: InFlight, spool: str) -> bool:
        """Another process of this host is fetching: serve its spool as it grows (its last byte
        once the blob is stored, i.e. verified).  False if it went away before we could open its
        spool (then we try to take the lock again)."""
        fd = None
        waited = time.monotonic() + FOLLOW_WAIT
        while time.monotonic() < waited:    # the holder may wait long for upstream's headers
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
            n = min(os.fstat(fd).st_size, size)
            if n != fl.written:
                await fl.progress(n)
                delay = 0.002
            probe = try_flock(spool + ".lock")
            if probe is not None:                 # the holder finished (or died)
                unlock(probe)
                n = os.fstat(fd).st_size
                info = await self.blobs.stat_data(fl.digest)
                if n == size and info is not None and info.size == size:
                    await fl.progress(n, done=True)
                    return True
                raise RuntimeError("the fetching worker stopped before the blob was complete and verified")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    async def _fetch(self, fl: InFlight, name: str, spool: str, source: str, label: str, limit: float,
                     open_stream: Callable[[], Awaitable[httpx.Response]]) -> None:
        """Stream the blob from `open_stream()` (upstream, or a peer replica) into the spool the
        waiting clients read, hashing it; store it if it is whole and matches its digest, else
        fail the fetch (every client's response is aborted before its last byte).  Raises
        SourceUnavailable if the source could not be opened (nothing was served yet)."""
        d = fl.digest
        try:
            r = await open_stream()
        except (httpx.HTTPError, UpstreamError) as exc:
            self.refused(label, getattr(exc, "reason", "unreachable"))
            raise SourceUnavailable(f"{source} unreachable: {exc}") from None
        try:
            if r.status_code == 404:
                raise SourceUnavailable(f"{source} answered 404", RegistryError("BLOB_UNKNOWN", {"digest": str(d)}))
            if r.status_code != 200:
                raise SourceUnavailable(f"{source} answered {r.status_code}")
            size = content_length(r)
            if size is None:
                raise SourceUnavailable(f"{source} sent no usable Content-Length")
            enc = r.headers.get("content-encoding", "identity").strip().lower()
            if enc not in ("", "identity"):
                raise SourceUnavailable(f"{source} sent the blob with content-encoding {enc!r}")
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
                async with deadline(limit + size / BLOB_MIN_RATE, f"{source}: blob {d}"):
                    async for chunk in r.aiter_raw():       # as it arrives (no re-chunking delay)
                        if n + len(chunk) > size:       # more than announced: never stored or served
                            n += len(chunk)
                            break
                        hasher.update(chunk)
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(wfd, view):]
                        n += len(chunk)
                        await fl.progress(n)
                got = hasher.hexdigest()
                if n != size or got != d.hex:
                    self.refused(label, "digest_mismatch")
                    log.error("proxy: blob %s from %s does not match its digest (%s%d of %d bytes, "
                              "%s:%s): responses aborted, nothing stored", d, source,
                              "more than " if n > size else "", n, size, d.algorithm, got if n == size else "-")
                    raise DigestMismatch(f"bytes from {source} do not match {d}")
                await self.blobs.put_verified(name, d, fl.fd, size)
                await fl.progress(n, done=True)
            except (UpstreamError, httpx.HTTPError) as exc:
                self.refused(label, getattr(exc, "reason", "unreachable"))
                log.error("proxy: blob %s from %s: %s %s: responses aborted, nothing stored", d, source,
                          type(exc).__name__, exc)
                raise
            finally:
                os.close(wfd)
                for done in (spool, spool + ".size"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(done)
        finally:
            await r.aclose()

    def _from_peer(self, peer: str, name: str, d: Digest, auth: str | None,
                   limit: float) -> Callable[[], Awaitable[httpx.Response]]:
        async def open_stream() -> httpx.Response:
            client = self.peers_client()
            async with deadline(limit, f"peer {peer}: blob {d}"):
                r = await client.send(client.build_request("GET", f"{peer}/v2/{name}/blobs/{d}", headers={
                    "Authorization": auth} if auth else {}), stream=True)
            key = f"peer blob {d}"
            self.peer_fetches[key] = self.peer_fetches.get(key, 0) + 1
            log.info("proxy peer fetch blob %s from %s (pid %d)", d, peer, os.getpid())
            return r
        return open_stream

    def peers_client(self) -> httpx.AsyncClient:
        if self._peers_client is None:
            self._peers_client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0), trust_env=False,
                                                   headers={"Accept-Encoding": "identity"})
        return self._peers_client
