"""Storage fixtures: one event loop per test, a backend per driver, the services they need.

A *backend* makes drivers on a fresh, private root (a tmp directory, or a unique prefix in
the shared bucket/container) and afterwards lists, with the service's own API, anything left
behind under that root: temporary files, multipart uploads, uncommitted blocks, objects.
"""
from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from fastreg.storage.driver.base import StorageDriver

from .service_fixtures import azure_container, s3_client
from .services import (
    AZURE_ACCOUNT,
    AZURE_CONTAINER,
    AZURE_KEY,
    GCS_BUCKET,
    RGW_KEYS,
    S3_BUCKET,
    S3_KEYS,
    S3_TEST_PART,
    Service,
)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.run_until_complete(lp.shutdown_asyncgens())
    lp.close()


@pytest.fixture
def run(loop: asyncio.AbstractEventLoop) -> Callable[[Any], Any]:
    return loop.run_until_complete


# -- backends -------------------------------------------------------------------------------

class Backend(ABC):
    name = ""

    @abstractmethod
    def make(self, root: str, **kw: Any) -> StorageDriver:
        ...

    @abstractmethod
    async def leftovers(self, root: str) -> list[str]:
        """Everything stored under `root`, as the service itself lists it."""

    async def orphans(self, root: str) -> list[str]:
        """Driver debris no path accounts for (temporary files, abandoned multipart uploads)."""
        return []


class FilesystemBackend(Backend):
    name = "filesystem"

    def __init__(self, base: Path) -> None:
        self.base = base

    def make(self, root: str, **kw: Any) -> StorageDriver:
        from fastreg.storage.driver.backends.filesystem import FilesystemDriver
        return FilesystemDriver(str(self.base / root))

    async def leftovers(self, root: str) -> list[str]:
        d = self.base / root
        return [str(p) for p in d.rglob("*") if p.is_file()] if d.exists() else []

    async def orphans(self, root: str) -> list[str]:
        return [p for p in await self.leftovers(root) if Path(p).name.startswith(".fastreg-tmp-")]


class WrappedBackend(FilesystemBackend):
    """The filesystem driver under one of fastreg's driver wrappers, configured to change nothing
    the conformance suite checks: the wrapper's forwarding is what is tested."""

    def __init__(self, base: Path, wrapper: str) -> None:
        super().__init__(base)
        self.name = wrapper

    def make(self, root: str, **kw: Any) -> StorageDriver:
        inner = super().make(root, **kw)
        if self.name == "faulty":
            from fastreg.storage.driver.wrappers.faulty import FaultyDriver
            return FaultyDriver(inner, [])
        from fastreg.storage.driver.wrappers.middleware import RedirectingDriver, Rewrite
        return RedirectingDriver(inner, Rewrite(host="cdn.example"))


class InMemoryBackend(Backend):
    name = "inmemory"

    def __init__(self) -> None:
        self.drivers: dict[str, Any] = {}

    def make(self, root: str, **kw: Any) -> StorageDriver:
        from fastreg.storage.driver.backends.inmemory import InMemoryDriver
        # Two drivers on one root share the objects, as two processes share a bucket.
        d = InMemoryDriver()
        first = self.drivers.setdefault(root, d)
        d._objects = first._objects
        return d

    async def leftovers(self, root: str) -> list[str]:
        return sorted(self.drivers[root]._objects) if root in self.drivers else []


class CachedBackend(InMemoryBackend):
    """The in-memory store behind the shared Redis cache (one Redis key prefix per test)."""

    name = "redis-cached"

    def __init__(self, svc: Service) -> None:
        super().__init__()
        self.svc = svc
        self.prefix = f"fastreg-test-{uuid.uuid4().hex[:8]}:"

    def make(self, root: str, **kw: Any) -> StorageDriver:
        from fastreg.storage.driver.wrappers.rediscache import RedisCachedDriver
        return RedisCachedDriver(super().make(root), port=self.svc.port, prefix=self.prefix)


class S3Backend(Backend):
    name = "s3"
    keys = S3_KEYS

    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def params(self, root: str, endpoint: str | None = None) -> dict[str, Any]:
        return {"bucket": S3_BUCKET, "region": "us-east-1", "regionendpoint": endpoint or self.svc.url,
                "forcepathstyle": True, "rootdirectory": f"/{root}", "chunksize": S3_TEST_PART,
                "multipartcopychunksize": 2 * S3_TEST_PART, "multipartcopythresholdsize": 2 * S3_TEST_PART,
                **self.keys}

    def make(self, root: str, **kw: Any) -> StorageDriver:
        from fastreg.storage.driver.backends.s3 import S3Driver
        return S3Driver(self.params(root, kw.get("endpoint")), list_page_size=kw.get("page", 1000),
                        max_attempts=1 + kw.get("retries", 4))

    async def leftovers(self, root: str) -> list[str]:
        async with s3_client(self.svc.url, self.keys) as s3:
            objs = await s3.list_objects_v2(Bucket=S3_BUCKET, Prefix=root + "/")
            mpus = await s3.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=root + "/")
        return ([o["Key"] for o in objs.get("Contents", [])]
                + [f"multipart upload {u['Key']} {u['UploadId']}" for u in mpus.get("Uploads", [])])

    async def orphans(self, root: str) -> list[str]:
        """Multipart uploads that no sidecar names: nobody could ever finish or abort them."""
        from fastreg.storage.driver.backends.s3 import SIDECAR
        out = []
        async with s3_client(self.svc.url, self.keys) as s3:
            mpus = await s3.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=root + "/")
            for u in mpus.get("Uploads", []):
                try:
                    resp = await s3.get_object(Bucket=S3_BUCKET, Key=u["Key"] + SIDECAR)
                    async with resp["Body"] as body:
                        side = await body.read()
                except ClientError:
                    side = b""
                if u["UploadId"].encode() not in side.partition(b"\n")[0]:
                    out.append(f"multipart upload {u['Key']} {u['UploadId']}")
        return out


class RgwBackend(S3Backend):
    """Ceph RGW (Debian's radosgw 16.2): the driver is the same S3 driver, the store is real."""

    keys = RGW_KEYS


class AzureBackend(Backend):
    name = "azure"

    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def params(self, root: str, endpoint: str | None = None) -> dict[str, Any]:
        return {"accountname": AZURE_ACCOUNT, "accountkey": AZURE_KEY, "container": AZURE_CONTAINER,
                "serviceurl": f"{endpoint or self.svc.url}/{AZURE_ACCOUNT}", "rootdirectory": f"/{root}",
                "chunksize": 64 * 1024}

    def make(self, root: str, **kw: Any) -> StorageDriver:
        from fastreg.storage.driver.backends.azure import AzureDriver
        params = self.params(root, kw.get("endpoint"))
        if "retries" in kw:
            params["maxretries"] = kw["retries"]
        return AzureDriver(params, list_page_size=kw.get("page", 5000))

    async def leftovers(self, root: str) -> list[str]:
        """Blobs under root, including blobs that only have uncommitted (staged) blocks."""
        async with azure_container(self.svc.url) as cc:
            return [b.name async for b in cc.list_blobs(name_starts_with=root + "/", include=["uncommittedblobs"])]


class GcsBackend(Backend):
    name = "gcs"

    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def params(self, root: str) -> dict[str, Any]:
        return {"bucket": GCS_BUCKET, "rootdirectory": f"/{root}", "chunksize": 256 * 1024}

    def make(self, root: str, **kw: Any) -> StorageDriver:
        from fastreg.storage.driver.backends.gcs import GcsDriver
        return GcsDriver(self.params(root), endpoint=kw.get("endpoint") or self.svc.url,
                         list_page_size=kw.get("page", 1000), retries=kw.get("retries", 4))

    async def leftovers(self, root: str) -> list[str]:
        import aiohttp
        async with aiohttp.ClientSession() as s, s.get(f"{self.svc.url}/storage/v1/b/{GCS_BUCKET}/o",
                                                       params={"prefix": root + "/"}) as r:
            assert r.status == 200, await r.text()
            return [o["name"] for o in (await r.json(content_type=None)).get("items") or []]


    async def orphans(self, root: str) -> list[str]:
        from fastreg.storage.driver.backends.gcs import PIECE
        return [n for n in await self.leftovers(root) if PIECE in n]


def _backend(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Backend:
    if kind == "filesystem":
        return FilesystemBackend(tmp_path)
    if kind == "inmemory":
        return InMemoryBackend()
    if kind == "s3":
        return S3Backend(request.getfixturevalue("moto_server"))
    if kind == "rgw":
        return RgwBackend(request.getfixturevalue("rgw_server"))
    if kind == "azure":
        return AzureBackend(request.getfixturevalue("azurite"))
    if kind == "gcs":
        return GcsBackend(request.getfixturevalue("gcs_emulator"))
    if kind == "redis-cached":
        return CachedBackend(request.getfixturevalue("redis_server"))
    if kind in ("faulty", "rewrite"):
        return WrappedBackend(tmp_path, kind)
    raise AssertionError(kind)


@pytest.fixture(params=["filesystem", "inmemory", "s3", "rgw", "azure", "gcs", "redis-cached", "faulty", "rewrite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return _backend(request, request.param, tmp_path)


@pytest.fixture(params=["s3", "azure", "gcs"])
def net_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The drivers that reach their store over the network (for fault tests)."""
    return _backend(request, request.param, tmp_path)


@pytest.fixture
def root() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def _checked_driver(backend: Backend, root: str, run: Callable[[Any], Any]) -> Iterator[StorageDriver]:
    """A driver on a private root.  Afterwards: no debris, and delete("/") leaves nothing behind."""
    d = backend.make(root)
    yield d

    async def teardown() -> list[str]:
        orphans = await backend.orphans(root)
        assert orphans == [], f"driver debris: {orphans}"
        try:
            try:
                await d.delete("/")
            except Exception as exc:   # an empty root is fine; anything else is a failure
                if type(exc).__name__ != "PathNotFound":
                    raise
        finally:
            await d.close()
        return await backend.leftovers(root)

    left = run(teardown())
    assert left == [], f"left behind after delete('/'): {left}"


@pytest.fixture
def driver(backend: Backend, root: str, run: Callable[[Any], Any]) -> Iterator[StorageDriver]:
    yield from _checked_driver(backend, root, run)


@pytest.fixture
def net_driver(net_backend: Backend, root: str, run: Callable[[Any], Any]) -> Iterator[StorageDriver]:
    yield from _checked_driver(net_backend, root, run)
