"""The wrappers stacked as a registry stacks them — the filesystem driver under storage
middleware, the Redis cache (a real redis-server) and the metrics wrapper — keep what the
backend can do: its exclusive lock, and its writers' ``flush``, through which an upload's digest
is checked before anything is made durable (fastreg.registry.uploads)."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fastreg.observability.metrics import MULTIPROC_ENV, Metrics
from fastreg.storage.driver.backends.filesystem import FilesystemDriver
from fastreg.storage.driver.base import Busy, StorageDriver
from fastreg.storage.driver.wrappers.faulty import FaultyDriver
from fastreg.storage.driver.wrappers.middleware import Redirect, RedirectingDriver
from fastreg.storage.driver.wrappers.rediscache import RedisCachedDriver

from .services import Service

_metrics: list[Metrics] = []


@pytest.fixture
def metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Metrics:
    """One Metrics per test process (its collectors register globally)."""
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    if not _metrics:
        _metrics.append(Metrics())
    return _metrics[0]


@pytest.fixture
def stacks(tmp_path: Path, redis_server: Service, metrics: Metrics,
           run: Callable[[Any], Any]) -> Iterator[dict[str, StorageDriver]]:
    def fs(name: str) -> FilesystemDriver:
        return FilesystemDriver(str(tmp_path / name))
    out: dict[str, StorageDriver] = {
        "metrics+redis+middleware": metrics.timed_driver(RedisCachedDriver(
            RedirectingDriver(fs("a"), Redirect("https", "cdn.example", "")), port=redis_server.port)),
        "redis": RedisCachedDriver(fs("b"), port=redis_server.port),
        "faulty": FaultyDriver(fs("c")),
        "metrics+faulty": metrics.timed_driver(FaultyDriver(fs("d"))),
    }
    yield out
    for d in out.values():          # their threads, descriptors and Redis connections go now,
        run(d.close())              # not whenever the collector reaches them in a later test


KINDS = ["metrics+redis+middleware", "redis", "faulty", "metrics+faulty"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_writer_flushes_through_every_wrapper(stacks: dict[str, StorageDriver], run: Callable[[Any], Any],
                                                kind: str) -> None:
    """After ``flush`` every accepted byte has been observed (hashed) and written, before commit."""
    d = stacks[kind]
    data = [os.urandom(300_000), os.urandom(5000), os.urandom(1 << 20)]
    seen = hashlib.sha256()

    async def go() -> None:
        path = "/docker/registry/v2/repositories/a/_uploads/u1/data"
        w = await d.writer(path)
        for chunk in data:
            await w.write(chunk, seen.update)
        flush = getattr(w, "flush", None)
        assert flush is not None, f"{type(w).__name__} does not forward the writer's flush"
        await flush()
        assert seen.hexdigest() == hashlib.sha256(b"".join(data)).hexdigest()
        assert w.size == sum(map(len, data))
        await w.commit()
        await w.close()
        assert (await d.stat(path)).size == sum(map(len, data))
    run(go())


@pytest.mark.parametrize("kind", KINDS)
def test_the_exclusive_lock_through_every_wrapper(stacks: dict[str, StorageDriver], run: Callable[[Any], Any],
                                                  kind: str) -> None:
    d = stacks[kind]
    assert d.capabilities.exclusive

    async def go() -> None:
        await d.put_content("/locked/x", b"x")
        async with d.exclusive("/locked"):  # type: ignore[attr-defined]
            with pytest.raises(Busy):
                async with d.exclusive("/locked"):  # type: ignore[attr-defined]
                    pass
        async with d.exclusive("/locked"):  # type: ignore[attr-defined]
            pass
    run(go())
