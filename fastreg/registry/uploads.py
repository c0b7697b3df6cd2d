"""Upload sessions: POST → PATCH* → PUT, or DELETE (distribution-spec "Pushing blobs").

Theory of operation
-------------------
A session is a directory ``_uploads/<uuid>/`` holding ``data`` (the bytes so far),
``startedat`` and ``hashstates/sha256/<offset>`` (the SHA-256 state after ``offset``
bytes, in Go's ``MarshalBinary`` format, as Distribution writes it).  Servers keep no
session state of their own: the client carries a signed token (``_state`` in the
``Location`` URL: name, uuid, offset, start time, HMAC-SHA256 under ``http.secret``), so
any replica can take the next request.  Each chunk is hashed and written as it arrives
(the driver runs both in worker-thread jobs, a batch of chunks each, overlapping the next
network reads).  At
``PUT`` the digest is finished from the state for the final offset — from this process's
cache of live hashers, else the saved state, else by re-reading the data: the saved state
is a cache, never the truth.  A digest that does not match cancels the session; one that
matches is flushed to stable storage and *then* renamed into ``blobs/`` (on the filesystem
the session's directory itself, emptied of all but ``data``, becomes the blob's: see
``_into_blobs``), so nothing unverified or half-written is ever visible.  Two sessions
committing the same blob both succeed: the second finds the data present and drops its own
copy.  On stores that cannot rename a directory (object stores: a move is a copy and a delete)
a session still empty whose commit brings a small whole body (``WHOLE_BODY_MAX``: a monolithic
``PUT ?digest=`` or ``POST ?digest=``) is verified in memory and stored as the blob's data in one
write, then linked: the same order — nothing unverified is ever visible, the link comes last —
without writing the bytes into the session first and then copying them into ``blobs/``.

One writer per session: two requests writing one session at once (a client retrying a PATCH
while the first still streams, two clients sharing a Location) would both write from the same
offset and each save the hash of its own bytes, so a later PUT could commit a mix of both under
one's digest.  Every request that writes a session (PATCH, PUT, DELETE) therefore holds its lock
— the driver's ``exclusive`` (flock of the ``_uploads/<uuid>`` directory on the filesystem: all
workers of a host; it follows the directory when a commit renames it into ``blobs/``, and a
request that gets it afterwards finds no ``_uploads/<uuid>/data`` and answers 404; on S3 and
Azure a lease object in the session, created only if absent: every replica on every host) and
an in-process one — from the size check to the end, commit and move included; a second writer
is refused at once with 416 and the session's Range.  Drivers without ``exclusive`` (GCS) get
the in-process lock only.  The session's stored size is read once, under the lock (a request
that is refused reads it then, for the Range it answers with).

State machine (rows: request; each checks the token — ``_state`` is required — then that the
session exists):

    POST               → new session, 202 Range 0-0   (or ?digest=: whole body, 201)
    GET    <uuid>      → 204 Range 0-<offset-1>
    PATCH  <uuid>      → Content-Range start must equal offset (else 416); 202
    PUT    <uuid>?digest → optional final chunk, verify, commit; 201
    DELETE <uuid>      → session removed; 204
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import time
import uuid as uuidlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from ..digest import Digest, hasher_from_state, new_hasher
from ..errors import BodyInterrupted, RegistryError, UploadBusy
from ..storage import layout, walk
from ..storage.driver.base import Busy, PathNotFound, StorageDriver, StorageError, exclusive_lock
from .blobs import BlobStore

log = logging.getLogger("fastreg")


@dataclass(frozen=True, slots=True)
class UploadState:
    name: str
    uuid: str
    offset: int
    started: str

    @property
    def range_header(self) -> str:
        # Distribution's form: inclusive end, "0-0" for an empty upload.
        return f"0-{max(self.offset - 1, 0)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# A session still empty whose commit brings a whole body up to this size: see the module doc.
WHOLE_BODY_MAX = 1 << 20
HASH_INLINE_MAX = 64 * 1024             # hashed on the loop below this size, in a worker above

# A request's own check of the stored size, under the writer lock (raises to refuse).
SizeCheck = Callable[[int], None]


class BlobQuota(Protocol):
    """Asked when an upload's digest is verified, before the blob is stored (fastreg.quota)."""

    async def check_blob(self, name: str, digest: Digest, size: int) -> None: ...


class UploadStore:
    HASHER_CACHE = 512

    def __init__(self, driver: StorageDriver, blobs: BlobStore, secret: bytes) -> None:
        self.driver = driver
        self.blobs = blobs
        self._secret = secret
        self._hashers: OrderedDict[tuple[str, str], tuple[int, Any]] = OrderedDict()
        self._writing: set[tuple[str, str]] = set()     # sessions a request of this process writes
        self.quota: BlobQuota | None = None              # fastreg.quota: a blob alone past a quota

    # -- state tokens ----------------------------------------------------------------------
    def token(self, st: UploadState) -> str:
        payload = orjson.dumps([st.name, st.uuid, st.offset, st.started])
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(mac)}"

    def verify(self, name: str, uuid: str, token: str | None) -> UploadState:
        """The state a request carries in ``_state``.  Required, as Distribution requires it: the
        session's name is a capability only together with the token the server handed out, and a
        request without it is refused (400 BLOB_UPLOAD_INVALID) before storage is looked at."""
        if not token:
            raise RegistryError("BLOB_UPLOAD_INVALID", "the _state parameter of the upload's Location is required")
        try:
            p64, m64 = token.split(".", 1)
            payload = _unb64(p64)
            # Compare the canonical encodings, not the decoded bytes: base64 ignores the
            # unused low bits of the last character, so a changed last character can
            # decode to the same MAC. A token is valid only as we wrote it.
            expected = _b64(hmac.new(self._secret, payload, hashlib.sha256).digest())
            ok = _b64(payload) == p64 and hmac.compare_digest(m64.encode(), expected.encode())
            if ok:
                n, u, o, s = orjson.loads(payload)
        except (ValueError, TypeError, orjson.JSONDecodeError):
            ok = False
        if not ok:
            raise RegistryError("BLOB_UPLOAD_INVALID", "upload state token is invalid or tampered with")
        if n != name or u != uuid:
            raise RegistryError("BLOB_UPLOAD_INVALID", "upload state token belongs to another upload")
        return UploadState(name, uuid, int(o), str(s))

    # -- one writer per session (see the module docstring) -----------------------------------
    @contextlib.asynccontextmanager
    async def _writer_lock(self, st: UploadState, *, check_exists: bool = True) -> AsyncIterator[None]:
        """`check_exists=False`: the block looks at the session itself (`_check_stored`), which
        saves the lock its own look on object stores."""
        key = (st.name, st.uuid)
        if key in self._writing:
            raise await self._busy_now(st)
        self._writing.add(key)
        try:
            lock: Any = (exclusive_lock(self.driver, layout.upload_dir(st.name, st.uuid), check_exists=check_exists)
                         if self.driver.capabilities.exclusive else contextlib.nullcontext())
            try:
                await lock.__aenter__()
            except Busy:
                raise await self._busy_now(st) from None
            except PathNotFound:
                raise RegistryError("BLOB_UPLOAD_UNKNOWN", {"uuid": st.uuid}) from None
            try:
                yield
            except _SessionGone as exc:     # the lock is told: it leaves no object behind
                await lock.__aexit__(type(exc), exc, exc.__traceback__)
                raise RegistryError("BLOB_UPLOAD_UNKNOWN", {"uuid": st.uuid}) from None
            except BaseException:
                await lock.__aexit__(None, None, None)
                raise
            else:
                await lock.__aexit__(None, None, None)
        finally:
            self._writing.discard(key)

    async def _busy_now(self, st: UploadState) -> UploadBusy:
        """The refusal of a second writer, with the Range of what the session holds now."""
        try:
            size = (await self.driver.stat(layout.upload_data(st.name, st.uuid))).size
        except StorageError:
            size = st.offset
        return _busy(UploadState(st.name, st.uuid, size, st.started))

    # -- sessions --------------------------------------------------------------------------
    async def start(self, name: str) -> UploadState:
        uuid = str(uuidlib.uuid4())
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        await self.driver.put_content(layout.upload_startedat(name, uuid), started.encode(), durable=False)
        await self.driver.put_content(layout.upload_data(name, uuid), b"", durable=False)
        return UploadState(name, uuid, 0, started)

    async def stored_size(self, name: str, uuid: str) -> int:
        try:
            return (await self.driver.stat(layout.upload_data(name, uuid))).size
        except PathNotFound:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", {"uuid": uuid}) from None

    async def resume(self, name: str, uuid: str, token: str | None, *, check_offset: bool,
                     size: int | None = None) -> UploadState:
        """The session's state; `size` is its stored size if the caller has just read it."""
        st = self.verify(name, uuid, token)
        if size is None:
            size = await self.stored_size(name, uuid)
        if check_offset and st.offset != size:
            raise RegistryError("BLOB_UPLOAD_INVALID",
                                f"upload resumed at offset {st.offset} but {size} bytes are stored")
        return UploadState(name, uuid, size, st.started)

    async def cancel(self, name: str, uuid: str) -> None:
        async with self._writer_lock(UploadState(name, uuid, 0, "")):
            await self._delete_session(name, uuid)

    async def _delete_session(self, name: str, uuid: str) -> None:
        self._hashers.pop((name, uuid), None)
        try:
            await self.driver.delete(layout.upload_dir(name, uuid))
        except PathNotFound:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", {"uuid": uuid}) from None

    # -- hashing ---------------------------------------------------------------------------
    async def _sha256_at(self, name: str, uuid: str, offset: int) -> Any:
        """A SHA-256 hasher that has seen exactly the first `offset` stored bytes."""
        cached = self._hashers.pop((name, uuid), None)
        if cached is not None and cached[0] == offset:
            return cached[1]
        if offset == 0:
            return new_hasher("sha256")
        try:
            state = await self.driver.get_content(layout.upload_hashstate(name, uuid, "sha256", offset))
            h = hasher_from_state("sha256", state)
            if h is not None:
                return h
        except PathNotFound:
            pass
        return await self._rehash(layout.upload_data(name, uuid), "sha256", offset)

    async def _rehash(self, path: str, algorithm: str, length: int) -> Any:
        h = new_hasher(algorithm)
        loop = asyncio.get_running_loop()
        seen = 0
        async for chunk in self.driver.reader(path, 0, length, chunk_size=4 << 20):
            await loop.run_in_executor(None, h.update, chunk)
            seen += len(chunk)
        if seen != length:
            raise RegistryError("BLOB_UPLOAD_INVALID", f"stored upload has {seen} bytes, expected {length}")
        return h

    def _remember(self, name: str, uuid: str, offset: int, h: Any) -> None:
        self._hashers[(name, uuid)] = (offset, h)
        while len(self._hashers) > self.HASHER_CACHE:
            self._hashers.popitem(last=False)

    # -- data ------------------------------------------------------------------------------
    async def _receive(self, st: UploadState, w: Any, body: AsyncIterator[bytes], h: Any,
                       *, keep_open: bool = False) -> UploadState:
        """Append `body` to the session's data through writer `w`, hashing it with `h` on the
        way. Closes `w` when done, or if anything fails (then it saves the hash state when
        the bytes written are consistent, so the session can resume); `keep_open` leaves a
        fully received `w` open for the caller to commit."""
        if w.size != st.offset:
            await w.close()
            raise RegistryError("BLOB_UPLOAD_INVALID", f"stored size {w.size} != offset {st.offset}")
        consistent, received = True, False
        try:
            async for chunk in body:
                await w.write(chunk, h.update)
            received = True
            if not keep_open:
                await w.close()
        except BodyInterrupted:
            await w.close()
            raise
        except BaseException:
            consistent = False
            self._hashers.pop((st.name, st.uuid), None)
            await w.close()
            raise
        finally:
            if consistent and not (keep_open and received):
                await self._checkpoint(st, w.size, h)
        return UploadState(st.name, st.uuid, w.size, st.started)

    async def _checkpoint(self, st: UploadState, size: int, h: Any) -> None:
        """Keep the hasher for the next request here, and its state for any other replica."""
        if h.name != "sha256":
            return
        self._remember(st.name, st.uuid, size, h)
        if size != st.offset:
            state = h.export_state()
            if state is not None:
                await self.driver.put_content(
                    layout.upload_hashstate(st.name, st.uuid, "sha256", size), state, durable=False)

    async def append(self, st: UploadState, body: AsyncIterator[bytes],
                     check: SizeCheck | None = None) -> UploadState:
        """Append `body` to the session at `st` (a state its token carries: see `_check_stored`)."""
        async with self._writer_lock(st, check_exists=False):
            await self._check_stored(st, check)
            h = await self._sha256_at(st.name, st.uuid, st.offset)
            w = await self.driver.writer(layout.upload_data(st.name, st.uuid), append=True)
            return await self._receive(st, w, body, h)

    async def _check_stored(self, st: UploadState, check: SizeCheck | None) -> None:
        """Under the writer lock: the session holds exactly the `st.offset` bytes the request
        expects (its token's offset), after `check` (the request's own checks of the stored size,
        e.g. its Content-Range) has seen the size."""
        data = layout.upload_data(st.name, st.uuid)
        try:
            size = (await self.driver.stat(data)).size
        except PathNotFound:
            raise _SessionGone(data) from None
        if check is not None:
            check(size)
        if size != st.offset:
            raise RegistryError("BLOB_UPLOAD_INVALID",
                                f"upload resumed at offset {st.offset} but {size} bytes are stored")

    async def commit(self, st: UploadState, digest: Digest, body: AsyncIterator[bytes] | None,
                     check: SizeCheck | None = None) -> int:
        """Finish the session as blob `digest`; returns the blob's size (under the writer lock,
        moving the data into ``blobs/`` included)."""
        async with self._writer_lock(st, check_exists=False):
            await self._check_stored(st, check)
            return await self._commit(st, digest, body)

    async def _commit(self, st: UploadState, digest: Digest, body: AsyncIterator[bytes] | None) -> int:
        """Finish the session as blob `digest`; returns the blob's size.

        The digest is checked before anything is flushed (a mismatch costs no fsync). A new
        blob's data is flushed, moved into ``blobs/``, and only then linked into the
        repository: a crash at any point leaves at most unreferenced data, never a link to
        nothing (the crash tests and ``fastreg check`` hold it to that). Drivers whose
        writers cannot `flush` (wait for the bytes in flight, hence the hash) commit first,
        then check."""
        if body is not None and st.offset == 0 and not self.driver.capabilities.directory_renames:
            head, rest = await _take(body, WHOLE_BODY_MAX)
            if rest is None:
                return await self._commit_whole(st, digest, head)
            body = _replay(head, rest)          # larger: through the session's data as always
        if digest.algorithm == "sha256":
            h = await self._sha256_at(st.name, st.uuid, st.offset)
        elif st.offset == 0:
            h = new_hasher(digest.algorithm)        # whole body in this request: hash it directly
        else:
            h = None
        data = layout.upload_data(st.name, st.uuid)
        w = await self.driver.writer(data, append=True)
        if body is not None:      # (_receive closes w if it raises)
            st = await self._receive(st, w, body, h if h is not None else _NullHasher(), keep_open=True)
        done = False              # w committed or closed
        try:
            if h is None or not await _flushed(w):
                done = True
                await w.commit()
                if h is None:
                    h = await self._rehash(data, digest.algorithm, st.offset)
            if h.hexdigest() != digest.hex:
                if not done:
                    done = True
                    await w.close()
                await self._delete_session(st.name, st.uuid)
                raise RegistryError("DIGEST_INVALID", {"digest": str(digest),
                                                       "detail": "content does not match digest"})
            self._hashers.pop((st.name, st.uuid), None)
            if self.quota is not None:
                try:                    # before the blob is stored: refused, the session is dropped
                    await self.quota.check_blob(st.name, digest, st.offset)
                except RegistryError:
                    if not done:
                        done = True
                        await w.close()
                    await self._delete_session(st.name, st.uuid)
                    raise
            moved = False
            existing = await self.blobs.stat_data(digest)
            # A stored copy of another size is damaged (truncated by a crash or a disk): the
            # verified bytes replace it.  (Same-size damage is what `fastreg check` finds.)
            if existing is None or existing.size != st.offset:
                if not done:
                    done = True
                    await w.commit()
                moved = await self._into_blobs(st, digest, replace=existing is not None)
                await self.blobs.link(st.name, digest)      # only once the data is in place
            else:                 # another session committed this blob: ours is dropped
                await self.blobs.link(st.name, digest)
        finally:
            if not done:
                await w.close()
        if not moved:
            await self._drop_finished(st)
        return st.offset

    async def put_whole(self, name: str, digest: Digest, body: AsyncIterator[bytes]) -> int | AsyncIterator[bytes]:
        """``POST ?digest=``, before a session is started: on stores that cannot rename a directory,
        a small whole body is verified and stored as blob `digest` of `name` with no session at
        all (nobody else knows of one yet): its size.  Otherwise — a larger or interrupted body,
        or the filesystem — the body again, for a session's commit."""
        if self.driver.capabilities.directory_renames:
            return body
        head, rest = await _take(body, WHOLE_BODY_MAX)
        if rest is not None:
            return _replay(head, rest)
        return await self._store_whole(name, digest, b"".join(head))

    async def _store_whole(self, name: str, digest: Digest, data: bytes) -> int:
        """Verify `data` against `digest`, store it as the blob's data in one atomic write, then
        link it into `name`: the order of `_commit`, without a session's copy."""
        h = new_hasher(digest.algorithm)
        if len(data) > HASH_INLINE_MAX:
            await asyncio.get_running_loop().run_in_executor(None, h.update, data)
        else:
            h.update(data)
        if h.hexdigest() != digest.hex:
            raise RegistryError("DIGEST_INVALID", {"digest": str(digest),
                                                   "detail": "content does not match digest"})
        if self.quota is not None:      # before the blob is stored
            await self.quota.check_blob(name, digest, len(data))
        # Written even if the blob is stored already: the same verified bytes, replaced atomically,
        # cost one request where asking first costs one (stored) or two (a file or a directory?).
        await self.driver.put_content(self.blobs.data_path(digest), data)
        await self.blobs.link(name, digest)                     # only once the data is in place
        return len(data)

    async def _commit_whole(self, st: UploadState, digest: Digest, chunks: list[bytes]) -> int:
        """Commit an empty session with its whole (small) body in hand (`_store_whole`); the
        session is removed, also when the digest or the quota refuses the blob."""
        self._hashers.pop((st.name, st.uuid), None)
        try:
            size = await self._store_whole(st.name, digest, b"".join(chunks))
        except RegistryError:           # the digest or the quota: nothing was stored
            await self._delete_session(st.name, st.uuid)
            raise
        await self._drop_finished(st)
        return size

    async def _drop_finished(self, st: UploadState) -> None:
        """Remove the session of a committed blob; a failure only leaves it to upload purging."""
        try:
            await self.driver.delete(layout.upload_dir(st.name, st.uuid))
        except PathNotFound:
            pass
        except StorageError as exc:     # the blob is committed; upload purging removes the rest
            log.warning("could not remove the finished upload %s of %s: %s", st.uuid, st.name, exc)

    async def _into_blobs(self, st: UploadState, digest: Digest, replace: bool = False) -> bool:
        """Make the session's (verified, durable) data blob `digest`; True if that took the
        session's directory along (nothing is left to clean up).  `replace`: a damaged copy is
        stored there; the data file is moved over it.

        Where the driver renames directories (``directory_renames``: the filesystem), the
        session directory, emptied of all but ``data``, is renamed into place as the blob's
        directory: one rename instead of a mkdir, a rename and an rmdir. On ext4 without a
        journal, every inode freed is skipped by inode allocation for minutes, which made
        the mkdir/rmdir pair per blob the top cost of small pushes."""
        data = layout.upload_data(st.name, st.uuid)
        if replace or not self.driver.capabilities.directory_renames:
            await self.driver.move(data, self.blobs.data_path(digest))     # (over a damaged copy)
            return False
        updir = layout.upload_dir(st.name, st.uuid)
        for leaf in await self.driver.list(updir):
            if leaf != "data":
                await self.driver.delete(layout.upload_entry(st.name, st.uuid, leaf))
        try:
            await self.driver.move(updir, layout.blob_dir(digest.algorithm, digest.hex))
        except StorageError as exc:
            # the blob's directory is there and not empty (committed meanwhile?), or the rename
            # itself failed (EIO, ENOSPC...): then that is the error
            if not await self._exists(layout.blob_dir(digest.algorithm, digest.hex)):
                raise exc from None
            if await self.blobs.stat_data(digest) is None:      # something else is in it
                await self.driver.move(data, self.blobs.data_path(digest))
            return False
        return True

    async def _exists(self, path: str) -> bool:
        return await walk.exists(self.driver, path)


async def _flushed(w: Any) -> bool:
    """Wait for `w`'s writes in flight (and so their hashing) if it can; False if it can't."""
    flush = getattr(w, "flush", None)
    if flush is None:
        return False
    await flush()
    return True


class _SessionGone(PathNotFound):
    """Under the writer lock: the session's data is not there (BLOB_UPLOAD_UNKNOWN)."""


def _busy(st: UploadState) -> UploadBusy:
    return UploadBusy(st.uuid, st.offset)


async def _take(body: AsyncIterator[bytes], limit: int) -> tuple[list[bytes], AsyncIterator[bytes] | None]:
    """The first chunks of `body`, until more than `limit` bytes: (chunks, None) if that is the
    whole body, else (chunks, what follows) — a body interrupted meanwhile raises again after
    the chunks that arrived, so a caller replaying them keeps those bytes as it always would."""
    chunks: list[bytes] = []
    seen = 0
    it = body.__aiter__()
    while seen <= limit:
        try:
            chunk = await it.__anext__()
        except StopAsyncIteration:
            return chunks, None
        except BodyInterrupted as exc:
            return chunks, _raising(exc)
        chunks.append(chunk)
        seen += len(chunk)
    return chunks, it


async def _raising(exc: BaseException) -> AsyncIterator[bytes]:
    raise exc
    yield b""           # (an async generator)


async def _replay(chunks: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
    async for chunk in rest:
        yield chunk


class _NullHasher:
    name = "none"

    def update(self, data: object) -> None:
        pass
