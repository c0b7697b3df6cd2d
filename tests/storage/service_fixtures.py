"""The object-store and Redis services of the tests, one of each per test session.

Registered once as a plugin by the root ``tests/conftest.py`` (``pytest_plugins``), so every test
module that asks for ``moto_server``, ``rgw_server``, ``azurite``, ``gcs_emulator`` or
``redis_server`` shares the same instance: a fixture imported by name into a module would be a
second definition with a second session-wide instance (a second Ceph cluster, a second moto).
Each service starts on first use only.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from .services import (
    AZURE_ACCOUNT,
    AZURE_CONTAINER,
    AZURE_KEY,
    GCS_BUCKET,
    RGW_KEYS,
    S3_BUCKET,
    S3_KEYS,
    Service,
    start_azurite,
    start_gcs,
    start_moto,
    start_redis,
    start_rgw,
)


def s3_client(url: str, keys: dict[str, str] = S3_KEYS) -> Any:
    from fastreg.storage.driver.backends.s3 import _session
    return _session().create_client("s3", region_name="us-east-1", endpoint_url=url,
                                       aws_access_key_id=keys["accesskey"],
                                       aws_secret_access_key=keys["secretkey"])


def azure_container(url: str) -> Any:
    from azure.storage.blob.aio import ContainerClient
    return ContainerClient(f"{url}/{AZURE_ACCOUNT}", AZURE_CONTAINER,
                           credential={"account_name": AZURE_ACCOUNT, "account_key": AZURE_KEY})


@contextlib.contextmanager
def _ready(stop: Callable[[], None], setup: Callable[[], Awaitable[None]]) -> Iterator[None]:
    """A started service made ready by `setup` (its bucket or container), stopped afterwards
    (also when `setup` fails)."""
    try:
        asyncio.run(setup())
        yield
    finally:
        stop()


# -- services (one per session) -------------------------------------------------------------

@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_moto(tmp_path_factory.mktemp("moto"))

    async def make_bucket() -> None:
        async with s3_client(svc.url) as s3:
            await s3.create_bucket(Bucket=S3_BUCKET)

    with _ready(svc.stop, make_bucket):
        yield svc


@pytest.fixture(scope="session")
def rgw_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One single-node Ceph cluster and its S3 gateway for the whole run (data in RAM)."""
    cluster = start_rgw(tmp_path_factory.mktemp("rgw"))

    async def make_bucket() -> None:
        async with s3_client(cluster.gateway.url, RGW_KEYS) as s3:
            await s3.create_bucket(Bucket=S3_BUCKET)

    with _ready(cluster.stop, make_bucket):
        yield cluster.gateway


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_azurite(tmp_path_factory.mktemp("azurite"))

    async def make_container() -> None:
        async with azure_container(svc.url) as cc:
            await cc.create_container()

    with _ready(svc.stop, make_container):
        yield svc


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_gcs(tmp_path_factory.mktemp("gcs"))

    async def make_bucket() -> None:
        import aiohttp
        async with aiohttp.ClientSession() as s, s.post(f"{svc.url}/storage/v1/b", params={"project": "test"},
                                                        json={"name": GCS_BUCKET}) as r:
            assert r.status == 200, await r.text()

    with _ready(svc.stop, make_bucket):
        yield svc


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_redis(tmp_path_factory.mktemp("redis"))
    yield svc
    svc.stop()
