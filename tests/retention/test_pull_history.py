"""Pull history on the filesystem, in memory and on moto's S3: two recorders (two workers) merge,
compaction folds their files without changing a count, the pulled-within and pulled-N rules keep
what they should, and a tag pulled during the run is kept."""
from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from fastreg.retention import pulls
from fastreg.retention.policy import Retention
from fastreg.storage import walk
from fastreg.storage.driver.base import StorageDriver
from tests.storage.conftest import _backend
from tests.support.registry_client import make_layer

from .common import config, push_ci, registry

REPO = "ci/app"
POLICIES = {"history": {"pulls": True}, "retention": {"policies": [
    {"repository": "ci/**", "keep": {"lastpushed": 1, "pulledwithin": "1h"}, "untagged": "0s"},
    {"repository": "pl/**", "keep": {"lastpulled": 1}}]}}


@pytest.mark.parametrize("kind", ["filesystem", "inmemory", "s3"])
def test_pull_history_and_pull_rules(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    backend = _backend(request, kind, tmp_path)
    cfg = config(tmp_path, POLICIES)

    async def main() -> None:
        driver: StorageDriver = backend.make(f"pulls-{uuid.uuid4().hex[:8]}")
        reg = registry(driver, cfg)
        base = make_layer(500)
        ci = await push_ci(reg, REPO, base, [f"t{i}" for i in range(5)])
        # t5 strictly the newest push even where the store keeps whole seconds (S3): tags pushed in
        # the same instant as the Nth most recent are all kept, so a shared second would keep t4
        await asyncio.sleep(1.1)
        ci |= await push_ci(reg, REPO, base, ["t5"])
        w1, w2 = pulls.PullRecorder(driver), pulls.PullRecorder(driver)
        for _ in range(3):
            w1.record(REPO, "t1", ci["t1"].digest)              # GET by tag
        w1.record(REPO, "t3", None)                              # HEAD by tag
        w1.record(REPO, None, ci["t3"].digest)                   # GET by digest
        w1.record(REPO, None, None)                              # HEAD by digest: not a pull
        await w1.flush()
        w2.record(REPO, "t1", ci["t1"].digest)
        w2.record(REPO, "t1", ci["t1"].digest)
        await w2.flush()
        await w2.flush()                                         # nothing new: no file
        seen = await pulls.read(driver, REPO)
        assert {t: e[1] for t, e in seen.tags.items()} == {"t1": 5, "t3": 1}
        assert {d: e[1] for d, e in seen.manifests.items()} == {ci["t1"].digest: 5, ci["t3"].digest: 1}
        assert len(await walk.listing(driver, pulls.writer_dir(REPO))) == 2
        if driver.capabilities.exclusive:
            assert await pulls.compact(driver, REPO) == 2
            assert await walk.listing(driver, pulls.writer_dir(REPO)) == []
            assert await pulls.read(driver, REPO) == seen                # nothing counted twice or lost
            w1.record(REPO, "t1", ci["t1"].digest)
            await w1.flush()
            assert (await pulls.read(driver, REPO)).tags["t1"][1] == 6

        # keep t5 (last pushed), t1 and t3 (pulled within 1h); t0 is pulled while the run deletes
        async def emit(action: str, req: object, target: object) -> None:
            if getattr(target, "tag", None) == "t4":
                w2.record(REPO, "t0", None)
                await w2.flush()

        report = await Retention(cfg, reg, emit=emit, pull_settle=0.0).run()
        why = {d.name: (d.delete, d.why) for r in report.repositories for d in r.decisions if d.kind == "tag"}
        assert await reg.tags.all(REPO) == ["t0", "t1", "t3", "t5"]
        assert why["t0"] == (False, ["pulled during the run"])
        assert why["t1"][1][0].startswith("keep.pulledwithin 1h (pulled ")
        assert why["t2"] == (True, ["no keep rule matches"])

        # pulled N: the most recently pulled tag of pl/app
        pl = await push_ci(reg, "pl/app", make_layer(500), ["a", "b", "c"])
        w1.record("pl/app", "c", pl["c"].digest)
        await w1.flush()
        await asyncio.sleep(0.01)
        w1.record("pl/app", "a", pl["a"].digest)
        await w1.flush()
        dry = await Retention(cfg, reg).run(dry_run=True, only=lambda n: n == "pl/app")
        assert {d.name: d.why for r in dry.repositories for d in r.decisions} == {
            "a": ["keep.lastpulled 1 (#1 most recently pulled)"], "b": ["no keep rule matches"],
            "c": ["no keep rule matches"]}
        await driver.close()
    asyncio.run(main())
