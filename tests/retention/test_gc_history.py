"""Push and pull history in the garbage collector's lines: each manifest gc deletes (or would, in a
dry run) is shown with its last push and, where pulls are recorded, its last pull and pull count."""
from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from fastreg.maintenance import gc
from fastreg.registry import Registry
from fastreg.retention import pulls
from fastreg.storage import layout
from fastreg.storage.driver.backends.filesystem import FilesystemDriver
from tests.support.direct_push import push_manifest
from tests.support.registry_client import make_manifest

DAY = 86400.0


def utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_gc_lines_carry_push_and_pull_history(tmp_path: Path) -> None:
    async def main() -> None:
        driver = FilesystemDriver(str(tmp_path / "data"))
        reg = Registry(driver, secret=b"k" * 32, delete_enabled=True)
        pulled, unpulled, elsewhere = make_manifest(), make_manifest(), make_manifest()
        for m in (pulled, unpulled):
            await push_manifest(reg, "h/app", m)                  # untagged: gc --delete-untagged takes them
        await push_manifest(reg, "h/other", elsewhere)            # no pull history for this repository
        pushed_at = {}
        for name, m, t in (("h/app", pulled, 1_700_000_000), ("h/app", unpulled, 1_700_000_100),
                           ("h/other", elsewhere, 1_700_000_200)):
            d = reg.manifests.parse_reference(m.digest)
            assert not isinstance(d, str)
            link = tmp_path / "data" / layout.revision_link(name, d.algorithm, d.hex).lstrip("/")
            os.utime(link, (t, t))
            pushed_at[m.digest] = utc(t)
        rec = pulls.PullRecorder(driver)
        for _ in range(3):
            rec.record("h/app", None, pulled.digest)
        await rec.flush()
        last_pull = (await pulls.read(driver, "h/app")).manifests[pulled.digest][0]

        for dry in (True, False):
            lines: list[str] = []
            await gc.collect(driver, gc.Options(dry_run=dry, delete_untagged=True, now=time.time() + DAY),
                             out=lines.append)
            verb = "would delete" if dry else "deleted"
            manifest_lines = sorted(x for x in lines if " manifest " in x)
            assert manifest_lines == sorted([
                (f"{verb} manifest h/app@{pulled.digest} (last pushed {pushed_at[pulled.digest]}; "
                f"last pulled {utc(last_pull)}, 3 pulls)"),
                f"{verb} manifest h/app@{unpulled.digest} (last pushed {pushed_at[unpulled.digest]}; never pulled)",
                (f"{verb} manifest h/other@{elsewhere.digest} (last pushed {pushed_at[elsewhere.digest]}; "
                "no pulls recorded)")]), lines

    asyncio.run(main())
