"""Azure Blob Storage driver on azure-storage-blob's asyncio client (block blobs).

Blob names are ``<rootdirectory>/<path>`` in one container, as Distribution's azure driver.

Appendable objects — theory of operation
----------------------------------------
A block blob is an ordered list of committed blocks; more blocks can be *staged* and a new
list committed that keeps the old ones and adds the new — no data is copied.  So a
``writer(path, append=True)`` reads the committed block list, stages what it receives in
blocks of ``chunksize`` (one upload in flight while the next bytes arrive), and ``close``
stages the tail and commits old + new.  Between requests the blob holds every byte written
so far: ``stat``, readers and another process's writer see it with no state of ours.  A
blob written whole (Put Blob, no block list) is continued by staging its bytes as the first
block.  Block ids are random and of one length, as the service requires.  ``cancel``
commits an empty list (which drops staged blocks) and deletes the blob.

Two writers appending to one blob at once would lose blocks; the registry never lets them:
each writes an upload session only while it holds ``exclusive`` of the session, a lease blob
created with ``If-None-Match: *`` (``lease.py``), which holds across replicas on any host.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import io
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock, BlobSasPermissions, generate_blob_sas
from azure.storage.blob.aio import BlobServiceClient

from .. import lease
from ..base import Capabilities, FileInfo, InvalidOffset, PathNotFound, StorageError
from ..params import Params
from ..parts import ObjectKeys, PartWriter, rechunk

PRESIGN_SECONDS = 20 * 60
SINGLE_PUT_MAX = 1 << 20
COPY_TIMEOUT = 1800.0              # a server-side copy (move) that takes longer is an error
AZ_ERRORS = (AzureError, aiohttp.ClientError, OSError, TimeoutError, StorageError)


def _block_id() -> str:
    return base64.b64encode(uuid.uuid4().hex.encode()).decode()     # always 44 characters


class AzureDriver(ObjectKeys):
    name = "azure"
    capabilities = Capabilities(exclusive=True)      # the lease object (lease.py)

    def __init__(self, params: Any, *, redirect: bool = True, list_page_size: int = 5000) -> None:
        p = Params("azure", params)
        self.account = p.required("accountname")
        self.account_key = p.text("accountkey") or None
        self.container = p.required("container")
        realm = p.text("realm", "core.windows.net")
        self.service_url = p.text("serviceurl") or f"https://{self.account}.blob.{realm}"
        self.root = p.text("rootdirectory").strip("/")
        self.chunksize = p.number("chunksize", 4 << 20, minimum=1)
        self.max_retries = p.number("maxretries", 5, minimum=0)        # Distribution 3's key
        self.redirect = redirect and self.account_key is not None
        self.list_page = max(1, min(list_page_size, 5000))
        self.lease_seconds = float(p.number("lockleaseseconds", int(lease.LEASE_SECONDS), minimum=1))
        self._svc: BlobServiceClient | None = None
        self._cc: Any = None

    def _c(self) -> Any:
        """The container client, created on first use in the running loop (after granian forks)."""
        if self._cc is None:
            cred = {"account_name": self.account, "account_key": self.account_key} if self.account_key else None
            self._svc = BlobServiceClient(self.service_url, credential=cred, retry_total=self.max_retries,
                                          initial_backoff=1, increment_base=2)
            self._cc = self._svc.get_container_client(self.container)
        return self._cc

    def _blob(self, key: str) -> Any:
        return self._c().get_blob_client(key)

    @staticmethod
    def _error(exc: BaseException, path: str) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, ResourceNotFoundError):
            return PathNotFound(path)
        return StorageError(path, f"{type(exc).__name__}: {exc}")

    # -- small objects ---------------------------------------------------------------------
    async def get_content(self, path: str) -> bytes:
        try:
            stream = await self._blob(self._file_key(path)).download_blob()
            return bytes(await stream.readall())
        except AZ_ERRORS as exc:
            raise self._error(exc, path) from None

    async def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        blob = self._blob(self.key(path))
        try:
            if len(data) <= SINGLE_PUT_MAX:
                await blob.upload_blob(bytes(data), overwrite=True)
            else:   # one staged block from a stream (the SDK would hand aiohttp one big bytes body)
                bid = _block_id()
                await blob.stage_block(bid, io.BytesIO(data), length=len(data))
                await blob.commit_block_list([BlobBlock(block_id=bid)])
        except AZ_ERRORS as exc:
            raise self._error(exc, path) from None

    async def _props(self, key: str) -> Any | None:
        try:
            return await self._blob(key).get_blob_properties()
        except ResourceNotFoundError:
            return None

    async def stat(self, path: str) -> FileInfo:
        key = self._file_key(path)
        try:
            props = await self._props(key) if key else None
            if props is not None:
                return FileInfo(path, int(props.size), props.last_modified.timestamp(), False)
            pages = self._c().list_blobs(name_starts_with=self._dir_prefix(path), results_per_page=1).by_page()
            async for page in pages:
                async for b in page:
                    return FileInfo(path, 0, b.last_modified.timestamp(), True)
                break
        except AZ_ERRORS as exc:
            raise self._error(exc, path) from None
        raise PathNotFound(path)

    async def list(self, path: str) -> list[str]:
        prefix = self._dir_prefix(path)
        names: set[str] = set()
        try:
            async for item in self._c().walk_blobs(name_starts_with=prefix, delimiter="/",
                                                   results_per_page=self.list_page):
                names.add(item.name[len(prefix):].rstrip("/"))
        except AZ_ERRORS as exc:
            raise self._error(exc, path) from None
        names.discard("")
        names.discard(lease.LOCK)
        if not names:
            raise PathNotFound(path)
        return sorted(names)

    async def move(self, src: str, dst: str) -> None:
        skey, dkey = self._file_key(src), self.key(dst)
        try:
            source = self._blob(skey)
            if await self._props(skey) is None:
                raise PathNotFound(src)
            target = self._blob(dkey)
            copy = await target.start_copy_from_url(source.url)
            status, delay, deadline = copy.get("copy_status"), 0.05, time.monotonic() + COPY_TIMEOUT
            while status != "success":   # same-account copies usually finish at once; else poll
                if status in ("failed", "aborted"):
                    raise StorageError(src, f"copy to {dst} {status}")
                if time.monotonic() > deadline:
                    raise StorageError(src, f"copy to {dst} still {status} after {COPY_TIMEOUT}s")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                status = (await target.get_blob_properties()).copy.status
            await source.delete_blob()
        except AZ_ERRORS as exc:
            raise self._error(exc, src) from None

    async def delete(self, path: str) -> None:
        key = self._file_key(path)
        dirp = self._dir_prefix(path)
        try:
            doomed = [b.name async for b in self._c().list_blobs(name_starts_with=key or None,
                                                                 include=["uncommittedblobs"])
                      if b.name == key or b.name.startswith(dirp)]
            if not doomed:
                raise PathNotFound(path)
            sem = asyncio.Semaphore(16)

            async def one(name: str) -> None:
                async with sem:
                    await _discard(self._blob(name))

            locks = [n for n in doomed if n.endswith("/" + lease.LOCK)]       # last: see lease.py
            await asyncio.gather(*(one(n) for n in doomed if not n.endswith("/" + lease.LOCK)))
            await asyncio.gather(*(one(n) for n in locks))
            lease.deleted(self, locks)
        except AZ_ERRORS as exc:
            raise self._error(exc, path) from None

    # -- exclusive (lease.py) ----------------------------------------------------------------
    def exclusive(self, path: str, *, check_exists: bool = True) -> contextlib.AbstractAsyncContextManager[None]:
        return lease.hold(self, path, f"{self._dir_prefix(path)}{lease.LOCK}", check_exists=check_exists)

    async def lock_conditions(self) -> lease.Conditions:
        """What the container honours of conditional writes (probed once, logged)."""
        return await lease.conditions(self, desc=f"azure container {self.container}")

    def _lease_scratch(self) -> str:
        return f"{self._dir_prefix('/')}{lease.LOCK}-probe-{secrets.token_hex(8)}"

    async def _lease_create(self, key: str, body: bytes) -> str | None:
        try:        # overwrite=False: the SDK sends If-None-Match: *
            r = await self._blob(key).upload_blob(body, overwrite=False)
        except (ResourceExistsError, ResourceModifiedError):
            return None
        except AZ_ERRORS as exc:
            raise self._error(exc, "/" + key) from None
        return str(r["etag"])

    async def _lease_replace(self, key: str, version: str, body: bytes) -> str | None:
        cond: dict[str, Any] = {"etag": version, "match_condition": MatchConditions.IfNotModified} if version else {}
        try:
            r = await self._blob(key).upload_blob(body, overwrite=True, **cond)
        except (ResourceModifiedError, ResourceNotFoundError, ResourceExistsError):
            return None
        except AZ_ERRORS as exc:
            raise self._error(exc, "/" + key) from None
        return str(r["etag"])

    async def _lease_read(self, key: str) -> tuple[str, bytes, float] | None:
        dates: list[str] = []

        def hook(response: Any) -> None:
            dates.append(response.http_response.headers.get("Date", ""))

        try:
            stream = await self._blob(key).download_blob(raw_response_hook=hook)
            body = bytes(await stream.readall())
        except ResourceNotFoundError:
            return None
        except AZ_ERRORS as exc:
            raise self._error(exc, "/" + key) from None
        now = parsedate_to_datetime(dates[0]).timestamp() if dates and dates[0] else time.time()
        props = stream.properties
        return str(props.etag), body, now - props.last_modified.timestamp()

    async def _lease_remove(self, key: str, version: str) -> bool:
        cond: dict[str, Any] = {"etag": version, "match_condition": MatchConditions.IfNotModified} if version else {}
        try:
            await self._blob(key).delete_blob(**cond)
        except ResourceNotFoundError:
            return not version                  # gone is what an unconditional delete wants
        except ResourceModifiedError:
            return False
        except AZ_ERRORS as exc:
            raise self._error(exc, "/" + key) from None
        return True

    async def _lease_occupied(self, path: str) -> bool:
        prefix = self._dir_prefix(path)
        try:    # at most one of any two names is the lock: two suffice
            async for page in self._c().list_blobs(name_starts_with=prefix, results_per_page=2).by_page():
                return any([b.name != prefix + lease.LOCK async for b in page])
        except AZ_ERRORS as exc:
            raise self._error(exc, path) from None
        return False

    # -- streams ---------------------------------------------------------------------------
    async def writer(self, path: str, append: bool = False) -> AzureWriter:
        key = self.key(path)
        blob = self._blob(key)
        try:
            if not append:
                return AzureWriter(self, path, blob, [], 0)
            props = await self._props(key)
            if props is None:
                return AzureWriter(self, path, blob, [], 0)
            committed, _ = await blob.get_block_list("committed")
            w = AzureWriter(self, path, blob, [b.id for b in committed], sum(b.size for b in committed))
            if props.size and not committed:       # written whole: its bytes become the first block
                data = bytes(await (await blob.download_blob()).readall())
                w._blocks = []
                w._size = 0
                await w.write(data)
                await w._flush_tail()
            return w
        except AZ_ERRORS as exc:
            raise self._error(exc, path) from None

    async def reader(self, path: str, offset: int = 0, length: int | None = None,
                     chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        key = self._file_key(path)
        if offset < 0:
            raise InvalidOffset(path, f"negative offset {offset}")
        try:
            if length is not None and length <= 0 or offset > 0:
                size = (await self.stat(path)).size
                if offset > size:
                    raise InvalidOffset(path, f"offset {offset} beyond size {size}")
                if offset == size or length is not None and length <= 0:
                    return
            ranged = offset > 0 or length is not None
            stream = await self._blob(key).download_blob(offset=offset if ranged else None, length=length,
                                                         max_concurrency=1)
        except AZ_ERRORS as exc:
            raise self._error(exc, path) from None
        try:
            async for out in rechunk(stream.chunks(), chunk_size):
                yield out
        except AZ_ERRORS as exc:
            raise self._error(exc, path) from None

    def local_path(self, path: str) -> str | None:
        return None

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        if not self.redirect or method not in ("GET", "HEAD"):
            return None
        key = self._file_key(path)
        sas = generate_blob_sas(self.account, self.container, key, account_key=self.account_key,
                                permission=BlobSasPermissions(read=True),
                                expiry=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=PRESIGN_SECONDS))
        return f"{self._blob(key).url}?{sas}"

    async def close(self) -> None:
        if self._svc is not None:
            svc, self._svc, self._cc = self._svc, None, None
            await svc.close()


async def _discard(blob: Any) -> None:
    """Delete a blob and any blocks staged on it (committing an empty list drops them)."""
    try:
        props = await blob.get_blob_properties()
    except ResourceNotFoundError:
        props = None
    if props is None:
        with contextlib.suppress(ResourceNotFoundError):
            await blob.commit_block_list([])           # an uncommitted-only blob: give it a body
    with contextlib.suppress(ResourceNotFoundError):
        await blob.delete_blob()


class AzureWriter(PartWriter):
    """The part-writer on staged blocks; close and commit both commit the whole block list."""

    errors = AZ_ERRORS

    def __init__(self, driver: AzureDriver, path: str, blob: Any, blocks: list[str], size: int) -> None:
        super().__init__(path, driver.chunksize, size)
        self._d, self._blob = driver, blob
        self._blocks = blocks

    def _error(self, exc: BaseException) -> StorageError:
        return self._d._error(exc, self._path)

    async def _upload_part(self, part: bytes) -> None:
        bid = _block_id()
        self._blocks.append(bid)
        # If this fails, close() commits nothing, so the blob stays as the request found it (its
        # staged blocks are dropped by the next commit); the client resumes from its offset.
        await self._blob.stage_block(bid, io.BytesIO(part), length=len(part))

    async def _flush_tail(self) -> None:
        """Stage what is buffered (less than a block) now."""
        await self._drain()
        tail = self._take_tail()
        if tail:
            await self._guarded(self._upload_part(tail))

    async def _complete(self, tail: bytes) -> None:
        if tail:
            await self._guarded(self._upload_part(tail))
        await self._blob.commit_block_list([BlobBlock(block_id=b) for b in self._blocks])

    async def _keep(self, tail: bytes) -> None:
        await self._complete(tail)              # between requests the blob holds every byte

    async def _discard(self) -> None:
        await _discard(self._blob)


__all__ = ["AzureDriver", "HttpResponseError"]
