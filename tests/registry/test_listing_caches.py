"""The catalog and tag-list caches are never stale for fastreg's own writes, from any worker.

Each test builds two independent Registry objects over one data directory: two workers (or
two replicas) that share storage and nothing else.
"""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from fastreg.digest import digest_bytes
from fastreg.registry import Registry
from fastreg.storage import layout
from fastreg.storage.driver.backends.filesystem import FilesystemDriver

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data"


def make_registry(root: Path) -> Registry:
    return Registry(FilesystemDriver(str(root), fsync=False), secret=b"s", delete_enabled=True)


@pytest.fixture
def workers(root: Path) -> Iterator[tuple[Registry, Registry]]:
    a, b = make_registry(root), make_registry(root)
    yield a, b
    run(a.close())
    run(b.close())


async def push_image(reg: Registry, name: str, tag: str, salt: bytes = b"") -> str:
    """A config blob and a manifest referencing it, written through the services."""
    config = b'{"architecture":"amd64","os":"linux","salt":"' + salt.hex().encode() + b'"}'
    st = await reg.uploads.start(name)

    async def body() -> Any:
        yield config

    cd = digest_bytes(config, "sha256")
    await reg.uploads.commit(st, cd, body())
    manifest = orjson.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                             "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                        "digest": str(cd), "size": len(config)},
                             "layers": []})
    d, _ = await reg.manifests.put(name, tag, manifest, OCI_MANIFEST)
    return str(d)


def age_directory(root: Path, path: str, seconds: float) -> None:
    """Make a storage directory look untouched for `seconds` (what a quiet registry looks like)."""
    full = root / path.lstrip("/")
    past = time.time() - seconds
    os.utime(full, (past, past))


def test_catalog_sees_a_repository_created_by_another_worker(workers: tuple[Registry, Registry]) -> None:
    a, b = workers

    async def scenario() -> None:
        await push_image(a, "team/one", "v1")
        assert await a.catalog.repositories() == ["team/one"]
        for i in range(20):     # each new repository shows up on the other worker at once
            await push_image(b, f"team/r{i:02d}", "v1")
            seen = await a.catalog.repositories()
            assert f"team/r{i:02d}" in seen, (i, seen)
        assert await a.catalog.repositories() == sorted(["team/one", *(f"team/r{i:02d}" for i in range(20))])

    run(scenario())


def test_catalog_cache_is_used_and_picks_up_foreign_repositories_after_ttl(root: Path) -> None:
    reg = make_registry(root)
    reg.catalog.ttl = 0.3
    calls = 0
    real_list = reg.driver.list

    async def counting_list(path: str) -> list[str]:
        nonlocal calls
        calls += 1
        return await real_list(path)

    reg.driver.list = counting_list  # type: ignore[method-assign]

    async def scenario() -> None:
        nonlocal calls
        await push_image(reg, "app", "v1")
        assert await reg.catalog.repositories() == ["app"]
        calls = 0
        assert await reg.catalog.repositories() == ["app"]
        assert calls == 0, "a valid cache must not walk the tree"
        # Another program (Distribution on the same directory) creates a repository: the
        # generation does not change, so it appears only once the cache has expired.
        (root / layout.manifests_dir("foreign").lstrip("/")).mkdir(parents=True)
        await asyncio.sleep(0.4)
        assert await reg.catalog.repositories() == ["app", "foreign"]
        assert calls > 0

    try:
        run(scenario())
    finally:
        run(reg.close())


def test_tag_list_sees_tags_added_and_removed_by_another_worker(root: Path,
                                                               workers: tuple[Registry, Registry]) -> None:
    a, b = workers

    async def scenario() -> None:
        await push_image(a, "app", "v0")
        # Quiet directory: the list is cached on a ...
        age_directory(root, layout.tags_dir("app"), 60)
        assert await a.tags.all("app") == ["v0"]
        assert "app" in a.tags._lists, "a settled tags directory is cached"
        # ... and b's new tag changes the directory, so a lists again.
        await push_image(b, "app", "v1")
        assert await a.tags.all("app") == ["v0", "v1"]
        # Two changes within one clock tick leave the same mtime: a list read just after the
        # first must not be trusted.  Simulate the tick by putting the mtime back.
        full = root / layout.tags_dir("app").lstrip("/")
        for i in range(2, 12):
            assert await a.tags.all("app") == sorted(f"v{j}" for j in range(i))
            tick = full.stat().st_mtime_ns
            await push_image(b, "app", f"v{i}", salt=bytes([i]))
            os.utime(full, ns=(tick, tick))
            assert f"v{i}" in await a.tags.all("app")
        age_directory(root, layout.tags_dir("app"), 60)
        assert len(await a.tags.all("app")) == 12
        await b.tags.untag("app", "v5")
        assert "v5" not in await a.tags.all("app")

    run(scenario())


def test_tag_list_is_not_cached_on_drivers_without_directory_times() -> None:
    from fastreg.storage.driver.backends.inmemory import InMemoryDriver

    driver = InMemoryDriver()
    reg = Registry(driver, secret=b"s")

    async def scenario() -> None:
        await push_image(reg, "app", "v0")
        assert await reg.tags.all("app") == ["v0"]
        await push_image(reg, "app", "v1")
        assert await reg.tags.all("app") == ["v0", "v1"]
        assert not reg.tags._lists

    run(scenario())
