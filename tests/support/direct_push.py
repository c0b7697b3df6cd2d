"""Pushing straight through a Registry object (no HTTP): for the tests that run the same
registry work on every storage driver (tests/ops/test_gc_drivers.py, tests/faults/test_check_drivers.py)."""
from __future__ import annotations

from collections.abc import AsyncIterator

from fastreg.digest import parse_digest
from fastreg.registry import Registry
from tests.support.registry_client import Blob, Manifest


async def push_blob(reg: Registry, repo: str, b: Blob) -> None:
    """One upload session: start, then commit with the whole body."""
    async def body() -> AsyncIterator[bytes]:
        yield b.data
    st = await reg.uploads.start(repo)
    await reg.uploads.commit(st, parse_digest(b.digest), body())


async def push_manifest(reg: Registry, repo: str, m: Manifest, ref: str | None = None) -> None:
    """Its blobs, its children (an index), then the manifest, tagged `ref` or by digest."""
    for b in m.blobs:
        await push_blob(reg, repo, b)
    for child in m.children:
        await push_manifest(reg, repo, child)
    await reg.manifests.put(repo, ref or m.digest, m.body, m.media_type)
