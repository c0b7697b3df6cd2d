"""S3 driver (AWS S3, MinIO, Ceph RGW and other S3-compatible stores) on aiobotocore.

Keys are ``<rootdirectory>/<path>`` as in Distribution's s3-aws driver, so a bucket written by
``registry:2`` is served as it is.

Appendable objects (upload sessions) — theory of operation
----------------------------------------------------------
An upload grows across requests that may reach different processes, but S3 objects are
immutable and a multipart upload (MPU) takes parts of at least 5 MiB except the last.  A
``writer(path, append=True)`` therefore keeps its state *in the bucket*, so that any
replica can continue it:

* While the upload is small (nothing flushed as a part yet), the object at ``path`` simply
  holds all the bytes: ``close`` PUTs them, the next writer GETs them back (< one part).
* Once ``chunksize`` bytes are buffered, the writer starts an MPU and uploads full parts.
  ``close`` then writes the *sidecar* ``<key>.fastreg-append``: a JSON line (UploadId,
  part numbers, ETags and sizes) followed by the tail that is too small to be a part yet;
  and it leaves a zero-byte object at ``path`` as the marker.  The sidecar is the truth;
  its ``x-amz-meta-fastreg-size`` metadata holds the total so ``stat`` needs a HEAD only.
* A writer opened on a large object with no sidecar (a completed one, e.g. after
  ``materialize``) starts an MPU whose first parts are server-side copies of the object.
* ``commit`` uploads the tail as the last part and completes the MPU (or PUTs the tail when
  no MPU was needed), then removes the sidecar.  ``cancel``/``delete`` abort the MPU.
* Reading an upload in progress (``get_content``/``reader``/``move``: the registry re-hashes
  stored data when a hash state is missing) first *materializes* it: completes the MPU so
  the object holds every byte, drops the sidecar; the next writer resumes by copy.

Readers and ``stat`` of finished objects cost one request, as with any S3 client.
Two writers appending to the same path at once would lose bytes; the registry never lets them:
each writes an upload session only while it holds ``exclusive`` of the session, a lease object
created with ``If-None-Match: *`` (``lease.py``), which holds across replicas on any host.
"""
from __future__ import annotations

import asyncio
import builtins
import contextlib
import io
import json
import math
import platform
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import aiobotocore
import aiohttp
import botocore.auth
import botocore.awsrequest
import botocore.handlers
import botocore.utils
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError
from yarl import URL

from .... import __version__
from .. import lease
from ..base import Capabilities, FileInfo, InvalidOffset, PathNotFound, StorageError
from ..params import Params
from ..parts import ObjectKeys, PartWriter

SIDECAR = ".fastreg-append"
MIN_PART = 5 << 20                 # AWS minimum size of every part but the last
MAX_COPY_PART = 5 << 30            # AWS maximum size of CopyObject and of one UploadPartCopy
MAX_PARTS = 10_000                 # AWS maximum number of parts of one multipart upload
PRESIGN_SECONDS = 20 * 60          # as Distribution
# What a request to the store can raise (translated to StorageError at the driver boundary).
S3_ERRORS = (ClientError, BotoCoreError, aiohttp.ClientError, OSError, TimeoutError, StorageError)


_SESSION: Any = None
# The User-Agent of every request, fixed (botocore appends its own name and version): botocore
# otherwise rebuilds its own twice per request, a tenth of the CPU of a small request.
USER_AGENT = f"fastreg/{__version__} aiobotocore/{aiobotocore.__version__} Python/{platform.python_version()}"


def _timestamp(value: str) -> datetime:
    """A timestamp of a response: the two forms S3 sends (ISO 8601 in XML bodies, RFC 7231 dates
    in headers) parsed directly, anything else by botocore's parser (dateutil, ~15 times slower)."""
    try:
        if value[:4].isdigit():
            t = datetime.fromisoformat(value)                # 2026-12-07T14:52:58.000Z
        elif value.endswith(" GMT"):
            t = parsedate_to_datetime(value)                 # Mon, 07 Dec 2026 14:52:58 GMT
        else:
            t = None
        if t is not None and t.tzinfo is not None:
            return t
    except (ValueError, TypeError, IndexError):
        pass
    parsed: datetime = botocore.utils.parse_timestamp(value)
    return parsed


# botocore's handlers that run on every request and do nothing for the driver's calls: filling
# idempotency tokens (RenameObject only), asking for response checksums (off), checking the bucket
# name (fixed), the recursion-detection header (AWS Lambda only), the API-version header (endpoint
# discovery only), the retry-attempt headers (SDK metrics), MD5s of customer-provided SSE keys
# (never sent). Some microseconds each, a twentieth of a small request's CPU together.
_UNNEEDED_HANDLERS = (
    ("before-parameter-build", "generate_idempotent_uuid"),
    ("before-parameter-build", "_handle_request_validation_mode_member"),
    ("before-parameter-build.s3", "validate_bucket_name"),
    ("before-call", "add_recursion_detection_header"),
    ("before-call", "inject_api_version_header_if_needed"),
    ("request-created", "add_retry_headers"),
    *((f"before-parameter-build.s3.{op}", "sse_md5") for op in (
        "HeadObject", "GetObject", "PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart",
        "UploadPartCopy", "CompleteMultipartUpload")),
)


def _prune_handlers(client: Any) -> None:
    """Unregister the unneeded handlers from this client's own copy of the session's events
    (a name this botocore does not have is skipped: unregistering what is absent does nothing)."""
    for event, name in _UNNEEDED_HANDLERS:
        fn = getattr(botocore.handlers, name, None)
        if fn is not None:
            client.meta.events.unregister(event, fn)


def _session() -> Any:
    """One botocore session per process: it caches the (large) service models across clients."""
    global _SESSION
    if _SESSION is None:
        _SESSION = get_session()
        _SESSION.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_timestamp)
    return _SESSION


def _code(exc: Exception) -> str:
    resp = getattr(exc, "response", None) or {}
    return str(resp.get("Error", {}).get("Code", "")) or str(resp.get("ResponseMetadata", {})
                                                            .get("HTTPStatusCode", ""))


def _missing(exc: Exception) -> bool:
    return _code(exc) in ("NoSuchKey", "404", "NotFound", "NoSuchUpload")


def _refused(exc: Exception) -> bool:
    """A conditional request the condition refused (409: another conditional write in flight)."""
    return _missing(exc) or _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


@dataclass(slots=True)
class _Session:
    """An unfinished MPU as kept in the sidecar."""

    upload_id: str
    parts: list[tuple[int, str, int]] = field(default_factory=list)   # (number, etag, size)

    @property
    def parts_size(self) -> int:
        return sum(p[2] for p in self.parts)

    def encode(self, tail: bytes | bytearray) -> bytes:
        head = json.dumps({"uploadid": self.upload_id, "parts": self.parts}, separators=(",", ":"))
        return head.encode() + b"\n" + bytes(tail)

    @staticmethod
    def decode(blob: bytes) -> tuple[_Session, bytes]:
        head, _, tail = blob.partition(b"\n")
        d = json.loads(head)
        return _Session(d["uploadid"], [(int(n), str(e), int(s)) for n, e, s in d["parts"]]), tail


_FALLBACK: dict[str, Any] = {}     # _Direct.head (by identity): not answered directly, ask botocore
_PROBE = "fastreg-direct-probe"    # the key of the request that the base URL is taken from
_NO_SUCH_KEY = b"<Code>NoSuchKey</Code>"
_NO_SUCH_KEY_ERROR = {"Error": {"Code": "NoSuchKey", "Message": "The specified key does not exist."},
                      "ResponseMetadata": {"HTTPStatusCode": 404}}
_DIRECT_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)
_REDIRECTS = frozenset((301, 302, 303, 307, 308))


class _Probed(Exception):
    """Stops the probe request of _Direct.setup once botocore has built it."""


class _Direct:
    """GetObject and HeadObject of one key sent without botocore's request path (event hooks,
    endpoint rule set, serializers, response model walk, retries): more than half the CPU of a
    small request. The request is the one botocore sends for these calls: the URL of the key under
    the base URL that botocore's own endpoint resolution gives for the bucket (taken once from a
    request botocore builds: path-style or virtual-hosted, port and all), the key percent-encoded
    as botocore encodes it, signed by botocore's SigV4 signer with the client's credentials (session
    token included) and signing region, the client's User-Agent, on the client's own connection
    pool (its TLS settings and timeouts). The `before-send` hooks still see it.

    Only the answers whose meaning is plain are taken: 200, a HEAD's 404 and a GET's 404
    NoSuchKey. Anything else (403, 5xx, throttling, a redirect, a connection error, a hook that
    answers) returns "not answered" and the caller makes the botocore call, whose retries, error
    mapping and region redirects then apply as before. After a redirect the path stays off for
    the client: the bucket lives elsewhere than the base URL says."""

    __slots__ = ("base", "region", "http", "credentials", "events", "user_agent", "on", "_signer")

    def __init__(self, base: str, region: str, http: aiohttp.ClientSession, client: Any) -> None:
        self.base = base
        self.region = region
        self.http = http
        self.credentials = client._request_signer._credentials
        self.events = client.meta.events
        self.user_agent = str(client._user_agent_creator.to_string())
        self.on = True
        self._signer: tuple[Any, botocore.auth.S3SigV4Auth] | None = None

    @classmethod
    async def setup(cls, client: Any, bucket: str) -> _Direct | None:
        """The direct path of this client, or None where it cannot be the same request as
        botocore's: no credentials (anonymous), a proxy, another signing scheme, an unknown layout.
        The base URL and signing region are botocore's own for this bucket: a HeadObject of a
        probe key is built by the client and stopped when created, before it is signed or sent."""
        try:
            if client._request_signer._credentials is None:
                return None
            seen: list[Any] = []

            def stop(request: Any = None, **_: Any) -> None:
                seen.append(request)
                raise _Probed

            event = "request-created.s3.HeadObject"
            client.meta.events.register_first(event, stop, unique_id="fastreg-direct-probe")
            try:
                await client.head_object(Bucket=bucket, Key=_PROBE)
            except _Probed:
                pass
            finally:
                client.meta.events.unregister(event, unique_id="fastreg-direct-probe")
            if len(seen) != 1:
                return None
            url, signing = str(seen[0].url), seen[0].context.get("signing") or {}
            base, query = url.partition("?")[0], urlsplit(url).query
            if (query or not base.endswith("/" + _PROBE) or seen[0].context.get("auth_type") not in ("s3v4", "v4")
                    or signing.get("signing_name", "s3") != "s3" or not signing.get("region")):
                return None
            base = base[:-len(_PROBE)]
            http = client._endpoint.http_session
            if http._proxy_config.proxy_url_for(base):
                return None
            session = await http._get_session(None)
            if not isinstance(session, aiohttp.ClientSession):
                return None
            return cls(base, str(signing["region"]), session, client)
        except (AttributeError, TypeError, ValueError, KeyError, BotoCoreError):
            return None

    async def _send(self, method: str, op: str, key: str) -> tuple[int, Any, bytes] | None:
        if not self.on:
            return None
        url = self.base + quote(key, safe="/~")
        creds = await self.credentials.get_frozen_credentials()
        if self._signer is None or self._signer[0] != creds:
            self._signer = (creds, botocore.auth.S3SigV4Auth(creds, "s3", self.region))
        req = botocore.awsrequest.AWSRequest(method=method, url=url, headers={"User-Agent": self.user_agent})
        self._signer[1].add_auth(req)
        prepared = req.prepare()
        _, answered = await self.events.emit_until_response(f"before-send.s3.{op}", request=prepared)
        if answered is not None:
            return None
        headers = dict(prepared.headers.items())
        headers["Accept-Encoding"] = "identity"
        try:
            async with self.http.request(method, URL(url, encoded=True), headers=headers,
                                         allow_redirects=False) as resp:
                body = await resp.read()
                if resp.status in _REDIRECTS:
                    self.on = False
                return resp.status, resp.headers, body
        except _DIRECT_ERRORS:
            return None

    async def get(self, key: str) -> bytes | None:
        """The object's bytes; None: not answered here. A missing key raises NoSuchKey."""
        got = await self._send("GET", "GetObject", key)
        if got is None:
            return None
        status, _, body = got
        if status == 200:
            return body
        if status == 404 and _NO_SUCH_KEY in body:
            raise ClientError(_NO_SUCH_KEY_ERROR, "GetObject")
        return None

    async def head(self, key: str) -> dict[str, Any] | None:
        """What the driver reads of HeadObject's answer (ContentLength, LastModified, Metadata);
        None: no such key; _FALLBACK: not answered here."""
        got = await self._send("HEAD", "HeadObject", key)
        if got is None:
            return _FALLBACK
        status, headers, _ = got
        if status == 404:
            return None
        if status != 200 or "Content-Length" not in headers or "Last-Modified" not in headers:
            return _FALLBACK
        try:
            return {"ContentLength": int(headers["Content-Length"]),
                    "LastModified": _timestamp(headers["Last-Modified"]),
                    "Metadata": {k[11:].lower(): v for k, v in headers.items()
                                 if k.lower().startswith("x-amz-meta-")}}
        except (ValueError, TypeError):
            return _FALLBACK


class S3Driver(ObjectKeys):
    name = "s3"
    capabilities = Capabilities(exclusive=True)      # the lease object (lease.py)

    def __init__(self, params: Any, *, redirect: bool = True, list_page_size: int = 1000,
                 max_attempts: int = 5) -> None:
        p = Params("s3", params)
        self.bucket = p.required("bucket")
        self.region = p.text("region", "us-east-1")
        endpoint = p.text("regionendpoint")
        self.secure = p.flag("secure", True)
        if endpoint and "://" not in endpoint:
            endpoint = ("https://" if self.secure else "http://") + endpoint
        self.endpoint = endpoint or None
        self.access_key = p.text("accesskey") or None
        self.secret_key = p.text("secretkey") or None
        self.session_token = p.text("sessiontoken") or None
        self.path_style = p.flag("forcepathstyle", False)
        self.skipverify = p.flag("skipverify", False)
        self.encrypt = p.flag("encrypt", False)
        self.keyid = p.text("keyid")
        self.storage_class = p.text("storageclass", "STANDARD")
        self.object_acl = p.text("objectacl", "private")
        self.root = p.text("rootdirectory").strip("/")
        # Part size of uploads. AWS needs >= 5 MiB; smaller values are for test servers.
        self.chunksize = p.number("chunksize", 10 << 20, minimum=1)
        self.copy_chunksize = p.number("multipartcopychunksize", 32 << 20, minimum=1)
        self.copy_concurrency = p.number("multipartcopymaxconcurrency", 100, minimum=1)
        self.copy_threshold = min(p.number("multipartcopythresholdsize", 32 << 20, minimum=0), MAX_COPY_PART)
        self.list_page = max(1, min(list_page_size, 1000))              # tests use tiny pages
        self.redirect = redirect
        self.max_attempts = max_attempts
        # GetObject and HeadObject of one key sent directly (signed by botocore's signer, on the
        # client's connection pool) unless they fail otherwise than 404: see _Direct.
        self.direct_requests = p.flag("directrequests", True)
        self.lease_seconds = float(p.number("lockleaseseconds", int(lease.LEASE_SECONDS), minimum=1))
        # How If-Match spells an ETag: AWS, MinIO and moto match the quoted form S3 returns,
        # Ceph RGW 16.2 only the unquoted one; the first lock probes which (lease.conditions).
        self.lease_forms = ("quoted", "unquoted")
        self.lease_form = "quoted"
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._direct: _Direct | None = None
        self._lock: asyncio.Lock | None = None

    # -- plumbing --------------------------------------------------------------------------
    async def _s3(self) -> Any:
        """The client, created on first use in the running loop (after granian forks)."""
        if self._client is not None:
            return self._client
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                # No client-side validation of the parameters (the driver's are fixed); checksums
                # only where S3 requires them (TLS, or SigV4's payload hash over plain HTTP, covers
                # the bytes in transit, and some S3-compatible stores refuse the checksums that
                # botocore adds by default); a fixed User-Agent: each costs CPU on every request.
                cfg = AioConfig(signature_version="s3v4", max_pool_connections=64,
                                retries={"max_attempts": self.max_attempts, "mode": "standard"},
                                s3={"addressing_style": "path" if self.path_style else "auto"},
                                parameter_validation=False, user_agent=USER_AGENT,
                                request_checksum_calculation="when_required",
                                response_checksum_validation="when_required")
                self._client = await stack.enter_async_context(_session().create_client(
                    "s3", region_name=self.region, endpoint_url=self.endpoint,
                    aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                    aws_session_token=self.session_token, verify=not self.skipverify, config=cfg))
                _prune_handlers(self._client)
                self._stack = stack
                if self.direct_requests:
                    self._direct = await _Direct.setup(self._client, self.bucket)
        return self._client

    def _put_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"StorageClass": self.storage_class, "ACL": self.object_acl}
        if self.encrypt:
            args["ServerSideEncryption"] = "aws:kms" if self.keyid else "AES256"
            if self.keyid:
                args["SSEKMSKeyId"] = self.keyid
        if self.storage_class in ("", "NONE"):
            del args["StorageClass"]
        return args

    def _error(self, exc: Exception, path: str) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        if _missing(exc):
            return PathNotFound(path)
        return StorageError(path, f"{type(exc).__name__}: {exc}")

    async def _put(self, key: str, data: bytes | bytearray, meta: dict[str, str] | None = None) -> None:
        s3 = await self._s3()
        await s3.put_object(Bucket=self.bucket, Key=key, Body=io.BytesIO(data), ContentLength=len(data),
                            Metadata=meta or {},
                            **self._put_args())

    async def _get(self, key: str) -> bytes:
        s3 = await self._s3()
        if self._direct is not None:
            data = await self._direct.get(key)
            if data is not None:
                return data
        resp = await s3.get_object(Bucket=self.bucket, Key=key)
        async with resp["Body"] as body:
            return bytes(await body.read())

    async def _head(self, key: str) -> dict[str, Any] | None:
        s3 = await self._s3()
        if self._direct is not None:
            head = await self._direct.head(key)
            if head is not _FALLBACK:
                return head
        try:
            return dict(await s3.head_object(Bucket=self.bucket, Key=key))
        except S3_ERRORS as exc:
            if _missing(exc):
                return None
            raise

    async def _delete_keys(self, keys: list[str]) -> None:
        s3 = await self._s3()
        for i in range(0, len(keys), 1000):
            resp = await s3.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
            if resp.get("Errors"):
                e = resp["Errors"][0]
                raise StorageError("/" + e.get("Key", ""), f"delete failed: {e.get('Code')} {e.get('Message')}")

    # -- sidecars (appendable objects in progress) ----------------------------------------
    async def _load_session(self, key: str) -> tuple[_Session, bytes] | None:
        try:
            return _Session.decode(await self._get(key + SIDECAR))
        except S3_ERRORS as exc:
            if _missing(exc):
                return None
            raise

    async def _materialize(self, key: str) -> None:
        """Complete the MPU of an upload in progress so the object holds all its bytes."""
        loaded = await self._load_session(key)
        if loaded is None:
            return
        sess, tail = loaded
        await self._complete(key, sess, tail)
        await self._delete_keys([key + SIDECAR])

    async def _complete(self, key: str, sess: _Session, tail: bytes | bytearray) -> None:
        s3 = await self._s3()
        parts = list(sess.parts)
        if tail or not parts:
            n = (parts[-1][0] + 1) if parts else 1
            r = await s3.upload_part(Bucket=self.bucket, Key=key, UploadId=sess.upload_id,
                                     PartNumber=n, Body=io.BytesIO(tail), ContentLength=len(tail))
            parts.append((n, r["ETag"], len(tail)))
        await s3.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=sess.upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e, _ in parts]})

    async def _s3_abort(self, key: str, upload_id: str) -> None:
        s3 = await self._s3()
        try:
            await s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except S3_ERRORS as exc:
            if not _missing(exc):
                raise

    async def _abort_uploads(self, prefix: str, match: Any) -> None:
        """Abort every MPU whose key is under `prefix` and satisfies `match`."""
        s3 = await self._s3()
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            resp = await s3.list_multipart_uploads(**kwargs)
            for u in resp.get("Uploads", []):
                if match(u["Key"]):
                    try:
                        await s3.abort_multipart_upload(Bucket=self.bucket, Key=u["Key"], UploadId=u["UploadId"])
                    except S3_ERRORS as exc:
                        if not _missing(exc):
                            raise
            if not resp.get("IsTruncated"):
                return
            kwargs["KeyMarker"] = resp.get("NextKeyMarker", "")
            kwargs["UploadIdMarker"] = resp.get("NextUploadIdMarker", "")

    # -- small objects ---------------------------------------------------------------------
    async def get_content(self, path: str) -> bytes:
        key = self.key(path)
        try:
            data = await self._get(key)
            if not data and await self._head(key + SIDECAR) is not None:
                await self._materialize(key)
                data = await self._get(key)
            return data
        except S3_ERRORS as exc:
            raise self._error(exc, path) from None

    async def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        try:
            await self._put(self.key(path), data)
        except S3_ERRORS as exc:
            raise self._error(exc, path) from None

    async def stat(self, path: str) -> FileInfo:
        key = self._file_key(path)
        try:
            head = await self._head(key) if key else None
            if head is not None:
                size, mtime = int(head["ContentLength"]), head["LastModified"].timestamp()
                if size == 0:
                    side = await self._head(key + SIDECAR)
                    if side is not None:
                        size = int(side.get("Metadata", {}).get("fastreg-size", 0))
                        mtime = side["LastModified"].timestamp()
                return FileInfo(path, size, mtime, False)
            s3 = await self._s3()
            resp = await s3.list_objects_v2(Bucket=self.bucket, Prefix=self._dir_prefix(path), MaxKeys=1)
        except S3_ERRORS as exc:
            raise self._error(exc, path) from None
        if not resp.get("Contents"):
            raise PathNotFound(path)
        return FileInfo(path, 0, resp["Contents"][0]["LastModified"].timestamp(), True)

    async def list(self, path: str) -> list[str]:
        prefix = self._dir_prefix(path)
        names: set[str] = set()
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/",
                                  "MaxKeys": self.list_page}
        try:
            s3 = await self._s3()
            while True:
                resp = await s3.list_objects_v2(**kwargs)
                for o in resp.get("Contents", []):
                    names.add(o["Key"][len(prefix):])
                for cp in resp.get("CommonPrefixes", []):
                    names.add(cp["Prefix"][len(prefix):].rstrip("/"))
                if not resp.get("IsTruncated"):
                    break
                kwargs["ContinuationToken"] = resp["NextContinuationToken"]
        except S3_ERRORS as exc:
            raise self._error(exc, path) from None
        names = {n for n in names if n and not n.endswith(SIDECAR) and n != lease.LOCK}
        if not names:
            raise PathNotFound(path)
        return sorted(names)

    async def move(self, src: str, dst: str) -> None:
        skey, dkey = self.key(src), self.key(dst)
        try:
            await self._materialize(skey)
            head = await self._head(skey)
            if head is None:
                raise PathNotFound(src)
            await self._copy(skey, dkey, int(head["ContentLength"]))
            await self._delete_keys([skey])
        except S3_ERRORS as exc:
            raise self._error(exc, src) from None

    async def _copy(self, skey: str, dkey: str, size: int) -> None:
        s3 = await self._s3()
        if size <= self.copy_threshold:
            await s3.copy_object(Bucket=self.bucket, Key=dkey, CopySource={"Bucket": self.bucket, "Key": skey},
                                 **self._put_args())
            return
        mpu = await s3.create_multipart_upload(Bucket=self.bucket, Key=dkey, **self._put_args())
        sess = _Session(mpu["UploadId"])
        try:
            sess.parts = await self._copy_parts(skey, dkey, sess.upload_id, size, 1)
            await self._complete(dkey, sess, b"")
        except BaseException:
            with contextlib.suppress(*S3_ERRORS):
                await s3.abort_multipart_upload(Bucket=self.bucket, Key=dkey, UploadId=sess.upload_id)
            raise

    async def _copy_parts(self, skey: str, dkey: str, upload_id: str, size: int,
                          first: int) -> builtins.list[tuple[int, str, int]]:
        """Server-side copy of `skey` as parts first.. of an MPU: near-equal ranges, none over
        the copy chunk size (so none under half of it) and none over 5 GiB."""
        s3 = await self._s3()
        count = max(1, math.ceil(size / min(self.copy_chunksize, MAX_COPY_PART)))
        bounds = [size * i // count for i in range(count + 1)]
        sem = asyncio.Semaphore(self.copy_concurrency)

        async def one(i: int) -> tuple[int, str, int]:
            async with sem:
                r = await s3.upload_part_copy(
                    Bucket=self.bucket, Key=dkey, UploadId=upload_id, PartNumber=first + i,
                    CopySource={"Bucket": self.bucket, "Key": skey},
                    CopySourceRange=f"bytes={bounds[i]}-{bounds[i + 1] - 1}")
                return first + i, r["CopyPartResult"]["ETag"], bounds[i + 1] - bounds[i]

        return list(await asyncio.gather(*(one(i) for i in range(count))))

    async def delete(self, path: str) -> None:
        key = self._file_key(path)
        dirp = self._dir_prefix(path)
        side = key + SIDECAR

        def mine(k: str) -> bool:
            return k in (key, side) or k.startswith(dirp)

        doomed: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": key}
        try:
            s3 = await self._s3()
            while True:
                resp = await s3.list_objects_v2(**kwargs)
                doomed += [o["Key"] for o in resp.get("Contents", []) if mine(o["Key"])]
                if not resp.get("IsTruncated"):
                    break
                kwargs["ContinuationToken"] = resp["NextContinuationToken"]
            if not doomed:
                raise PathNotFound(path)
            await self._abort_uploads(key, mine)
            locks = [k for k in doomed if k.endswith("/" + lease.LOCK)]   # last: see lease.py
            await self._delete_keys([k for k in doomed if not k.endswith("/" + lease.LOCK)])
            if locks:
                await self._delete_keys(locks)
                lease.deleted(self, locks)
        except S3_ERRORS as exc:
            raise self._error(exc, path) from None

    # -- exclusive (lease.py) ----------------------------------------------------------------
    def exclusive(self, path: str, *, check_exists: bool = True) -> contextlib.AbstractAsyncContextManager[None]:
        return lease.hold(self, path, f"{self._dir_prefix(path)}{lease.LOCK}", check_exists=check_exists)

    async def lock_conditions(self) -> lease.Conditions:
        """What the bucket honours of conditional writes (probed once, logged)."""
        return await lease.conditions(self, desc=f"s3 bucket {self.bucket} ({self.endpoint or 'AWS'})")

    def _lease_scratch(self) -> str:
        return f"{self._dir_prefix('/')}{lease.LOCK}-probe-{secrets.token_hex(8)}"

    def _spell(self, version: str) -> str:
        bare = version.strip('"')
        return bare if self.lease_form == "unquoted" else f'"{bare}"'

    async def _lease_create(self, key: str, body: bytes) -> str | None:
        return await self._lease_put(key, body, IfNoneMatch="*")

    async def _lease_replace(self, key: str, version: str, body: bytes) -> str | None:
        if not version:
            return await self._lease_put(key, body)
        return await self._lease_put(key, body, IfMatch=self._spell(version))

    async def _lease_put(self, key: str, body: bytes, **condition: str) -> str | None:
        try:
            s3 = await self._s3()
            r = await s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentLength=len(body),
                                    **condition, **self._put_args())
        except S3_ERRORS as exc:
            if condition and _refused(exc):
                return None
            raise self._error(exc, "/" + key) from None
        return str(r["ETag"])

    async def _lease_read(self, key: str) -> tuple[str, bytes, float] | None:
        try:
            s3 = await self._s3()
            resp = await s3.get_object(Bucket=self.bucket, Key=key)
            async with resp["Body"] as stream:
                body = bytes(await stream.read())
        except S3_ERRORS as exc:
            if _missing(exc):
                return None
            raise self._error(exc, "/" + key) from None
        date = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        now = parsedate_to_datetime(date).timestamp() if date else time.time()
        return str(resp["ETag"]), body, now - resp["LastModified"].timestamp()

    async def _lease_remove(self, key: str, version: str) -> bool:
        try:
            s3 = await self._s3()
            if version:
                await s3.delete_object(Bucket=self.bucket, Key=key, IfMatch=self._spell(version))
            else:
                await s3.delete_object(Bucket=self.bucket, Key=key)
        except S3_ERRORS as exc:
            if version and _refused(exc):
                return False
            raise self._error(exc, "/" + key) from None
        return True

    async def _lease_occupied(self, path: str) -> bool:
        prefix = self._dir_prefix(path)
        try:
            s3 = await self._s3()
            # At most one of any two keys is the lock: two suffice.
            resp = await s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=2)
        except S3_ERRORS as exc:
            raise self._error(exc, path) from None
        return any(o["Key"] != prefix + lease.LOCK for o in resp.get("Contents", []))

    # -- streams ---------------------------------------------------------------------------
    async def writer(self, path: str, append: bool = False) -> S3Writer:
        key = self.key(path)
        try:
            loaded = await self._load_session(key)
            if not append:
                if loaded is not None:
                    await self._abort_uploads(key, lambda k: k == key)
                    await self._delete_keys([key + SIDECAR])
                return S3Writer(self, path, key, None, b"", had_sidecar=False)
            if loaded is not None:
                return S3Writer(self, path, key, loaded[0], loaded[1], had_sidecar=True)
            head = await self._head(key)
            size = 0 if head is None else int(head["ContentLength"])
            if size < self.chunksize:
                return S3Writer(self, path, key, None, await self._get(key) if size else b"",
                                had_sidecar=False)
            # A finished object large enough to be parts: continue it by server-side copy.
            s3 = await self._s3()
            mpu = await s3.create_multipart_upload(Bucket=self.bucket, Key=key, **self._put_args())
            sess = _Session(mpu["UploadId"])
            sess.parts = await self._copy_parts(key, key, sess.upload_id, size, 1)
            w = S3Writer(self, path, key, sess, b"", had_sidecar=False)
            await w._save()             # the sidecar first: from here on it is the truth
            return w
        except S3_ERRORS as exc:
            raise self._error(exc, path) from None

    async def reader(self, path: str, offset: int = 0, length: int | None = None,
                     chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        key = self.key(path)
        if offset < 0:
            raise InvalidOffset(path, f"negative offset {offset}")
        if length is not None and length <= 0:
            await self.stat(path)                        # still: missing is an error
            return
        s3 = await self._s3()
        rng = None
        if offset or length is not None:
            rng = f"bytes={offset}-" + ("" if length is None else str(offset + length - 1))
        resp: Any = None
        for attempt in range(2):
            try:
                resp = await (s3.get_object(Bucket=self.bucket, Key=key, Range=rng) if rng
                              else s3.get_object(Bucket=self.bucket, Key=key))
            except S3_ERRORS as exc:
                if _code(exc) not in ("InvalidRange", "416"):
                    raise self._error(exc, path) from None
                resp = None                               # at or past the end, or an upload marker
            if resp is not None and (resp["ContentLength"] > 0 or attempt):
                break
            if resp is not None:
                resp["Body"].close()
                resp = None
            side = await self._head(key + SIDECAR)
            if side is None:
                break
            await self._materialize(key)
        if resp is None:
            size = (await self.stat(path)).size
            if offset > size:
                raise InvalidOffset(path, f"offset {offset} beyond size {size}")
            return
        async with resp["Body"] as body:
            while True:
                chunk = await body.read(chunk_size)
                if not chunk:
                    break
                yield bytes(chunk)

    def local_path(self, path: str) -> str | None:
        return None

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        if not self.redirect or method not in ("GET", "HEAD"):
            return None
        s3 = await self._s3()
        op = "get_object" if method == "GET" else "head_object"
        return str(await s3.generate_presigned_url(op, Params={"Bucket": self.bucket, "Key": self.key(path)},
                                                   ExpiresIn=PRESIGN_SECONDS))

    async def close(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._client, self._direct = self._stack, None, None, None
            await stack.aclose()


class S3Writer(PartWriter):
    """The part-writer on a multipart upload; between requests its state is the sidecar."""

    errors = S3_ERRORS

    def __init__(self, driver: S3Driver, path: str, key: str, sess: _Session | None,
                 tail: bytes, *, had_sidecar: bool) -> None:
        super().__init__(path, driver.chunksize, (sess.parts_size if sess else 0) + len(tail), tail)
        self._d, self._key = driver, key
        self._sess = sess
        self._had_sidecar = had_sidecar

    def _error(self, exc: BaseException) -> StorageError:
        assert isinstance(exc, Exception)
        return self._d._error(exc, self._path)

    async def _prepare_part(self) -> None:
        if self._sess is None:
            s3 = await self._d._s3()
            mpu = await s3.create_multipart_upload(Bucket=self._d.bucket, Key=self._key, **self._d._put_args())
            self._sess = _Session(mpu["UploadId"])
        if self._next_number() >= MAX_PARTS:     # the last number is kept for the tail
            raise StorageError(self._path, f"upload larger than {MAX_PARTS - 1} parts of {self._chunksize} "
                                           "bytes (raise storage.s3.chunksize)")

    def _next_number(self) -> int:
        assert self._sess is not None
        return (self._sess.parts[-1][0] + 1) if self._sess.parts else 1

    async def _upload_part(self, part: bytes) -> None:
        assert self._sess is not None
        s3 = await self._d._s3()
        parts = self._sess.parts
        n = self._next_number()
        idx = len(parts)
        parts.append((n, "", len(part)))                      # reserve the number
        r = await s3.upload_part(Bucket=self._d.bucket, Key=self._key, UploadId=self._sess.upload_id,
                                 PartNumber=n, Body=io.BytesIO(part), ContentLength=len(part))
        parts[idx] = (n, r["ETag"], len(part))

    async def _save(self, tail: bytes = b"") -> None:
        """Persist the MPU state (sidecar), then make the object the zero-byte marker."""
        assert self._sess is not None
        await self._d._put(self._key + SIDECAR, self._sess.encode(tail), meta={"fastreg-size": str(self._size)})
        if not self._had_sidecar:
            await self._d._put(self._key, b"")
            self._had_sidecar = True

    async def _keep(self, tail: bytes) -> None:
        if self._sess is not None:
            await self._save(tail)
        else:
            await self._d._put(self._key, tail)

    async def _complete(self, tail: bytes) -> None:
        if self._sess is not None:
            await self._d._complete(self._key, self._sess, tail)
        else:
            await self._d._put(self._key, tail)
        if self._had_sidecar:
            await self._d._delete_keys([self._key + SIDECAR])

    async def _abandon(self) -> None:
        """Leave the object and its sidecar as this writer found them: the state saved by the
        last request is untouched; parts this request added to an existing multipart upload stay
        unlisted (a completion ignores them); a multipart upload it started is aborted."""
        if self._sess is not None and not self._had_sidecar:
            await self._d._s3_abort(self._key, self._sess.upload_id)

    async def _discard(self) -> None:
        key = self._key
        await self._d._abort_uploads(key, lambda k: k == key)
        await self._d._delete_keys([key, key + SIDECAR])
