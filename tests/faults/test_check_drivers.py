"""`fastreg check` speaks only the driver Protocol: its referrers and upload-session checks judge
the same on every driver — filesystem, in-memory and the object stores against their real local
servers (moto's S3, Azurite, the GCS emulator) — and temporary files are looked for only where
the driver keeps local files.  The stores are written by fastreg's own services (in process)."""
from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import orjson
import pytest

from fastreg.digest import parse_digest
from fastreg.maintenance import check
from fastreg.registry import Registry
from fastreg.storage import layout
from fastreg.storage.driver.base import StorageDriver
from tests.storage.conftest import _backend
from tests.support.direct_push import push_manifest
from tests.support.registry_client import make_manifest

REPO = "chk/app"


@pytest.mark.parametrize("kind", ["filesystem", "inmemory", "s3", "rgw", "azure", "gcs"])
def test_check_leftovers_and_referrers_on_every_driver(request: pytest.FixtureRequest, tmp_path: Path,
                                                       kind: str) -> None:
    backend = _backend(request, kind, tmp_path)
    root = f"chk-{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        driver: StorageDriver = backend.make(root)
        reg = Registry(driver, secret=b"k" * 32, delete_enabled=True)
        image = make_manifest()
        sig = make_manifest(subject=image)
        await push_manifest(reg, REPO, image, "v1")
        await push_manifest(reg, REPO, sig, sig.digest)
        sound = await reg.uploads.start(REPO)
        broken = await reg.uploads.start(REPO)
        await driver.delete(layout.upload_data(REPO, broken.uuid))
        i, s = parse_digest(image.digest), parse_digest(sig.digest)
        await driver.delete(layout.referrer_link(REPO, i.algorithm, i.hex, s.algorithm, s.hex))

        report = await check.check(driver)                          # now: the broken session is young
        assert [(p.kind, p.digest) for p in report.problems] == [("missing-referrer", sig.digest)]
        assert report.uploads.sessions == 2
        assert report.uploads.broken == [layout.upload_dir(REPO, broken.uuid)]
        assert report.temporary_files.checked == (kind == "filesystem")

        later = time.time() + 2 * 3600                              # two hours on: it is not
        report = await check.Checker(driver, repair=True, now=lambda: later).run()
        assert sorted((p.kind, p.repaired) for p in report.problems) == [
            ("broken-upload", "removed"), ("missing-referrer", "indexed")]
        report = await check.Checker(driver, now=lambda: later).run()
        assert (report.problems, report.uploads.sessions, report.referrers) == ([], 1, 1)
        assert await reg.uploads.stored_size(REPO, sound.uuid) == 0      # the sound session is still there
        page = await reg.manifests.referrers(REPO, i, None)
        assert [orjson.loads(b)["digest"] for b in page.descriptors] == [sig.digest]
        await driver.close()
    asyncio.run(main())
