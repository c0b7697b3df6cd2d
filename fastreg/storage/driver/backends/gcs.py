"""Google Cloud Storage driver: the JSON API over aiohttp, OAuth2 tokens from gcloud-aio-auth.

Object names are ``<rootdirectory>/<path>`` in one bucket, as Distribution's gcs driver.
``STORAGE_EMULATOR_HOST`` (the variable every Google client honours) points the driver at an
emulator, unauthenticated.

Appendable objects — theory of operation
----------------------------------------
Each writer streams what it receives through a GCS *resumable upload*: bytes are buffered to
``chunksize`` (a multiple of 256 KiB, as the protocol requires) and sent as chunks of one
session, so a PATCH of any size uses bounded memory; ``close``/``commit`` send the last chunk
and finalize the object.  Across requests the object must grow: a writer opened with
``append=True`` on a non-empty object streams into a *piece* object beside it
(``<name>.fastreg-piece-<random>``) and on ``close`` *composes* object + piece into the object
(server side, no bytes copied through us), guarded by the object's generation so a concurrent
writer cannot be lost, then deletes the piece.  Between requests the object therefore holds
every byte written so far: ``stat``, readers and another replica's writer need no state of
ours.  (A resumable session cannot be read before it is finalized, which is why a session
does not outlive its request.)  ``cancel`` abandons the session and deletes object and piece.

No ``exclusive`` yet (so an upload session has an in-process writer lock only, not one across
replicas): GCS itself could hold the lease of ``lease.py`` with ``ifGenerationMatch=0`` /
``ifGenerationMatch=<generation>``, but the emulator the tests run (gcp-storage-emulator) ignores
every generation precondition — a second create with ``ifGenerationMatch=0`` succeeds — so such
a lock could not be tested here.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp

from ..base import NO_CAPABILITIES, FileInfo, InvalidOffset, PathNotFound, StorageError
from ..params import Params
from ..parts import ObjectKeys, PartWriter, rechunk

PIECE = ".fastreg-piece-"
QUANTUM = 256 * 1024               # resumable chunks are multiples of this
GCS_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, StorageError)
SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class GcsHTTPError(StorageError):
    def __init__(self, path: str, status: int, detail: str) -> None:
        self.status = status
        super().__init__(path, f"HTTP {status}: {detail[:300]}")


class GcsDriver(ObjectKeys):
    name = "gcs"
    capabilities = NO_CAPABILITIES                   # no exclusive() yet: see the module doc

    def __init__(self, params: Any, *, redirect: bool = True, endpoint: str | None = None,
                 list_page_size: int = 1000, retries: int = 4) -> None:
        p = Params("gcs", params)
        self.bucket = p.required("bucket")
        self.keyfile = p.text("keyfile") or None
        creds = (params or {}).get("credentials") if isinstance(params, dict) else None
        self.credentials: dict[str, Any] | None = dict(creds) if isinstance(creds, dict) else None
        self.root = p.text("rootdirectory").strip("/")
        self.chunksize = p.number("chunksize", 5 << 20, minimum=QUANTUM)
        if self.chunksize % QUANTUM:
            raise ValueError(f"storage.gcs.chunksize must be a multiple of {QUANTUM}")
        emulator = endpoint or os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator and "://" not in emulator:
            emulator = "http://" + emulator
        self.api = (emulator or "https://storage.googleapis.com").rstrip("/")
        self.anonymous = bool(emulator)
        self.list_page = max(1, min(list_page_size, 1000))
        self.retries = retries
        self.redirect = redirect   # signed URLs need a service-account key: not implemented, see redirect_url
        self._session: aiohttp.ClientSession | None = None
        self._token: Any = None

    # -- plumbing --------------------------------------------------------------------------
    def _http(self) -> aiohttp.ClientSession:
        """The HTTP session, created on first use in the running loop (after granian forks)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=30,
                                                                                sock_read=300))
            if not self.anonymous:
                from gcloud.aio.auth import Token
                service: Any = self.keyfile
                if self.credentials is not None:
                    service = io.StringIO(json.dumps(self.credentials))
                self._token = Token(service_file=service, session=self._session,  # type: ignore[arg-type]
                                    scopes=SCOPES)
        return self._session

    async def _headers(self) -> dict[str, str]:
        self._http()
        if self._token is None:
            return {}
        return {"Authorization": f"Bearer {await self._token.get()}"}

    def _obj_url(self, name: str) -> str:
        return f"{self.api}/storage/v1/b/{self.bucket}/o/{quote(name, safe='')}"

    async def _request(self, method: str, url: str, path: str, *, ok: tuple[int, ...] = (200,),
                       **kw: Any) -> aiohttp.ClientResponse:
        headers = {**kw.pop("headers", {}), **await self._headers()}
        # Reads and deletes are idempotent: retry them on connection errors, 429 and 5xx, as
        # Google's retry strategy advises (uploads are not retried here: a failed writer keeps
        # the previous state and the client resumes).
        attempts = self.retries + 1 if method in ("GET", "HEAD", "DELETE") else 1
        for attempt in range(attempts):
            try:
                resp = await self._http().request(method, url, headers=headers, **kw)
            except (aiohttp.ClientConnectionError, TimeoutError):
                if attempt + 1 == attempts:
                    raise
            else:
                if resp.status not in RETRY_STATUSES or attempt + 1 == attempts:
                    break
                resp.release()
            await asyncio.sleep(min(0.2 * 2 ** attempt, 5.0))
        if resp.status not in ok:
            text = await resp.text(errors="replace")
            resp.release()
            if resp.status == 404:
                raise PathNotFound(path)
            raise GcsHTTPError(path, resp.status, text)
        return resp

    async def _json(self, method: str, url: str, path: str, **kw: Any) -> dict[str, Any]:
        resp = await self._request(method, url, path, **kw)
        async with resp:
            return dict(await resp.json(content_type=None) or {})

    @staticmethod
    def _error(exc: BaseException, path: str) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        return StorageError(path, f"{type(exc).__name__}: {exc}")

    async def _meta(self, name: str, path: str) -> dict[str, Any] | None:
        try:
            return await self._json("GET", self._obj_url(name), path)
        except PathNotFound:
            return None

    async def _upload_simple(self, name: str, data: bytes | bytearray, path: str) -> None:
        if not data:
            # An empty object through a resumable session ("bytes */0"): gcp-storage-emulator
            # fails on an empty media upload, which GCS itself accepts. Same result, one more call.
            session = await self._start_resumable(name, path)
            resp = await self._request("PUT", session, path, ok=(200, 201), data=b"",
                                       headers={"Content-Range": "bytes */0"})
            resp.release()
            return
        url = f"{self.api}/upload/storage/v1/b/{self.bucket}/o"
        await self._json("POST", url, path, params={"uploadType": "media", "name": name},
                         data=io.BytesIO(data), headers={"Content-Type": "application/octet-stream"})

    async def _start_resumable(self, name: str, path: str) -> str:
        """A resumable upload session for object `name`: its URL."""
        url = f"{self.api}/upload/storage/v1/b/{self.bucket}/o"
        resp = await self._request("POST", url, path, params={"uploadType": "resumable", "name": name},
                                   json={"name": name, "contentType": "application/octet-stream"})
        resp.release()
        return str(resp.headers["Location"])

    async def _delete_name(self, name: str) -> None:
        with contextlib.suppress(PathNotFound):
            resp = await self._request("DELETE", self._obj_url(name), "/" + name, ok=(200, 204))
            resp.release()

    async def _names(self, prefix: str, delimiter: str | None, path: str) -> tuple[list[str], list[str]]:
        """Object names and common prefixes under `prefix`, all pages."""
        names: list[str] = []
        prefixes: list[str] = []
        params: dict[str, str] = {"prefix": prefix, "maxResults": str(self.list_page), "fields":
                                  "items(name),prefixes,nextPageToken"}
        if delimiter:
            params["delimiter"] = delimiter
        url = f"{self.api}/storage/v1/b/{self.bucket}/o"
        while True:
            page = await self._json("GET", url, path, params=params)
            names += [o["name"] for o in page.get("items") or []]
            prefixes += list(page.get("prefixes") or [])
            token = page.get("nextPageToken")
            if not token:
                return names, prefixes
            params["pageToken"] = token

    # -- small objects ---------------------------------------------------------------------
    async def get_content(self, path: str) -> bytes:
        try:
            resp = await self._request("GET", self._obj_url(self._file_key(path)), path, params={"alt": "media"})
            async with resp:
                return await resp.read()
        except GCS_ERRORS as exc:
            raise self._error(exc, path) from None

    async def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        try:
            if len(data) <= self.chunksize:
                await self._upload_simple(self.key(path), data, path)
            else:
                w = GcsWriter(self, path, self.key(path), None, 0)
                await w.write(data)
                await w.commit()
        except GCS_ERRORS as exc:
            raise self._error(exc, path) from None

    async def stat(self, path: str) -> FileInfo:
        key = self._file_key(path)
        try:
            meta = await self._meta(key, path) if key else None
            if meta is not None:
                return FileInfo(path, int(meta.get("size", 0)), _time(meta.get("updated")), False)
            page = await self._json("GET", f"{self.api}/storage/v1/b/{self.bucket}/o", path,
                                    params={"prefix": self._dir_prefix(path), "maxResults": "1"})
        except GCS_ERRORS as exc:
            raise self._error(exc, path) from None
        items = page.get("items") or []
        if not items:
            raise PathNotFound(path)
        return FileInfo(path, 0, _time(items[0].get("updated")), True)

    async def list(self, path: str) -> list[str]:
        prefix = self._dir_prefix(path)
        try:
            names, prefixes = await self._names(prefix, "/", path)
        except GCS_ERRORS as exc:
            raise self._error(exc, path) from None
        out = {n[len(prefix):] for n in names} | {p[len(prefix):].rstrip("/") for p in prefixes}
        out = {n for n in out if n and PIECE not in n}
        if not out:
            raise PathNotFound(path)
        return sorted(out)

    async def move(self, src: str, dst: str) -> None:
        skey, dkey = self._file_key(src), self.key(dst)
        url = f"{self._obj_url(skey)}/rewriteTo/b/{self.bucket}/o/{quote(dkey, safe='')}"
        params: dict[str, str] = {}
        try:
            while True:     # rewrite is resumable: large objects take several calls
                r = await self._json("POST", url, src, params=params, json={})
                if r.get("done", True) or not r.get("rewriteToken"):
                    break
                params["rewriteToken"] = r["rewriteToken"]
            await self._delete_name(skey)
        except GCS_ERRORS as exc:
            raise self._error(exc, src) from None

    async def delete(self, path: str) -> None:
        key = self._file_key(path)
        dirp = self._dir_prefix(path)
        try:
            names, _ = await self._names(key, None, path)
            doomed = [n for n in names if n == key or n.startswith((dirp, key + PIECE))]
            if not doomed:
                raise PathNotFound(path)
            sem = asyncio.Semaphore(16)

            async def one(name: str) -> None:
                async with sem:
                    await self._delete_name(name)

            await asyncio.gather(*(one(n) for n in doomed))
        except GCS_ERRORS as exc:
            raise self._error(exc, path) from None

    # -- streams ---------------------------------------------------------------------------
    async def writer(self, path: str, append: bool = False) -> GcsWriter:
        key = self.key(path)
        try:
            meta = await self._meta(key, path) if append else None
        except GCS_ERRORS as exc:
            raise self._error(exc, path) from None
        if meta is None or int(meta.get("size", 0)) == 0:
            return GcsWriter(self, path, key, None, 0)
        return GcsWriter(self, path, key, str(meta["generation"]), int(meta["size"]))

    async def reader(self, path: str, offset: int = 0, length: int | None = None,
                     chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        key = self._file_key(path)
        if offset < 0:
            raise InvalidOffset(path, f"negative offset {offset}")
        headers = {}
        try:
            if offset > 0 or length is not None:
                size = (await self.stat(path)).size
                if offset > size:
                    raise InvalidOffset(path, f"offset {offset} beyond size {size}")
                end = size if length is None else min(size, offset + length)
                if end <= offset:
                    return
                headers["Range"] = f"bytes={offset}-{end - 1}"
            resp = await self._request("GET", self._obj_url(key), path, ok=(200, 206), params={"alt": "media"},
                                       headers=headers)
        except GCS_ERRORS as exc:
            raise self._error(exc, path) from None
        async with resp:
            try:
                async for out in rechunk(resp.content.iter_chunked(chunk_size), chunk_size):
                    yield out
            except GCS_ERRORS as exc:
                raise self._error(exc, path) from None

    def local_path(self, path: str) -> str | None:
        return None

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        # V4 signed URLs need the service account's private key (or the IAM signBlob API);
        # not implemented yet: fastreg streams GCS blobs itself.
        return None

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            if self._token is not None:
                with contextlib.suppress(*GCS_ERRORS):
                    await self._token.close()
                self._token = None
            await session.close()


def _time(text: str | None) -> float:
    if not text:
        return 0.0
    return dt.datetime.fromisoformat(text).timestamp()


class GcsWriter(PartWriter):
    """The part-writer on one resumable upload; composes onto the object when appending to bytes."""

    errors = GCS_ERRORS
    hold_back = True                            # the final chunk must not be empty

    def __init__(self, driver: GcsDriver, path: str, key: str, generation: str | None, size: int) -> None:
        super().__init__(path, driver.chunksize, size)
        self._d, self._key = driver, key
        self._generation = generation               # set: append onto this generation of key
        self._target = key if generation is None else f"{key}{PIECE}{uuid.uuid4().hex}"
        self._sent = 0                              # bytes of this writer already in the session
        self._session_url: str | None = None

    def _error(self, exc: BaseException) -> StorageError:
        return self._d._error(exc, self._path)

    async def _upload_part(self, part: bytes) -> None:
        await self._send(part, final=False)

    async def _send(self, chunk: bytes, *, final: bool) -> None:
        start = self._sent
        total = str(start + len(chunk)) if final else "*"
        rng = f"bytes {start}-{start + len(chunk) - 1}/{total}" if chunk else f"bytes */{total}"
        if self._session_url is None:
            self._session_url = await self._d._start_resumable(self._target, self._path)
        resp = await self._d._request("PUT", self._session_url, self._path, ok=(200, 201, 308),
                                      data=io.BytesIO(chunk), headers={"Content-Range": rng})
        resp.release()
        if final != (resp.status != 308):
            raise StorageError(self._path, f"resumable upload answered {resp.status} to {rng}")
        self._sent += len(chunk)

    async def _complete(self, tail: bytes) -> None:
        d = self._d
        if self._session_url is None:
            if self._generation is not None and not tail:
                return                              # nothing to add
            await d._upload_simple(self._target, tail, self._path)
        else:
            # If the last chunk cannot arrive, close() abandons the session, leaving the object
            # as it was before the request (a consistent prefix the client resumes from).
            await self._guarded(self._send(tail, final=True))
        if self._generation is not None:
            # object + piece -> object, only if the object is still the one we appended to
            body = {"sourceObjects": [{"name": self._key, "generation": self._generation},
                                      {"name": self._target}],
                    "destination": {"contentType": "application/octet-stream"}}
            try:
                await d._json("POST", f"{d._obj_url(self._key)}/compose", self._path, json=body,
                              params={"ifGenerationMatch": self._generation})
            finally:
                await d._delete_name(self._target)

    async def _keep(self, tail: bytes) -> None:
        await self._complete(tail)              # between requests the object holds every byte

    async def _abandon(self) -> None:
        """Drop this writer's session and piece; the object keeps its content from before."""
        d = self._d
        with contextlib.suppress(*GCS_ERRORS):
            if self._session_url is not None:      # GCS answers 499 to a cancelled session
                resp = await d._request("DELETE", self._session_url, self._path, ok=(200, 204, 404, 405, 499))
                resp.release()
            if self._target != self._key:
                await d._delete_name(self._target)

    async def _discard(self) -> None:
        await self._abandon()
        await self._d._delete_name(self._key)
