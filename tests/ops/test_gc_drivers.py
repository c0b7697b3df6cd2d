"""gc speaks only the driver Protocol: the same collection on every driver — filesystem, in-memory,
and the object stores against their real local servers (moto's S3, Azurite, the GCS emulator),
using the storage suite's backends and session fixtures."""
from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from fastreg.digest import parse_digest
from fastreg.maintenance import gc
from fastreg.registry import Registry
from fastreg.storage.driver.base import StorageDriver
from tests.storage.conftest import _backend
from tests.support.direct_push import push_blob, push_manifest
from tests.support.registry_client import make_index, make_layer, make_manifest

REPO = "drv/app"


@pytest.mark.parametrize("kind", ["filesystem", "inmemory", "s3", "rgw", "azure", "gcs"])
def test_same_collection_on_every_driver(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    backend = _backend(request, kind, tmp_path)
    root = f"gc-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        driver: StorageDriver = backend.make(root)
        reg = Registry(driver, secret=b"k" * 32, delete_enabled=True)
        tagged, untagged = make_manifest(), make_manifest()
        index = make_index([make_manifest(), make_manifest()])
        signature = make_manifest(layers=[make_layer(100)], subject=tagged)
        orphan = make_layer(700)
        await push_manifest(reg, REPO, tagged, "v1")
        await push_manifest(reg, REPO, untagged)
        await push_manifest(reg, REPO, index, "multi")
        await push_manifest(reg, REPO, signature)
        await push_blob(reg, REPO, orphan)
        young = await gc.collect(driver, gc.Options(delete_untagged=True))      # all of it is young
        assert young.deleted_blobs == 0 and young.kept_young > 0
        later = time.time() + 86400                                            # a day later
        dry = await gc.collect(driver, gc.Options(delete_untagged=True, dry_run=True, now=later))
        report = await gc.collect(driver, gc.Options(delete_untagged=True, now=later))
        gone = {untagged.digest, *(b.digest for b in untagged.blobs), orphan.digest}
        assert (report.deleted_blobs, report.deleted_manifests) == (len(gone), 1) == \
            (dry.deleted_blobs, dry.deleted_manifests)
        left = {str(d) for d in await gc.Collector(driver, gc.Options()).blobs()}
        live = [tagged, signature, index, *index.children]
        assert left == {x for m in live for x in (m.digest, *(b.digest for b in m.blobs))}
        for m in live:
            sm = await reg.manifests.get(REPO, m.digest)
            assert sm.body == m.body
            for b in m.blobs:
                d = parse_digest(b.digest)
                assert b"".join([c async for c in driver.reader(reg.blobs.data_path(d))]) == b.data
        await driver.close()
    asyncio.run(main())
