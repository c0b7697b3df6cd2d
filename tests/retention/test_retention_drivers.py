"""Retention on every kind of storage (filesystem, in-memory, moto's S3 server): a policy keeping the
3 most recently pushed of 20 CI tags plus the ``v*`` tags deletes exactly the rest, the untagged
manifests and the referrers that followed them; a dry run changes nothing; gc then frees exactly the
blobs only the deleted manifests used; a tag pushed during the run is kept."""
from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from fastreg.maintenance import gc
from fastreg.retention.policy import Retention
from fastreg.storage.driver.base import StorageDriver
from tests.storage.conftest import _backend
from tests.support.direct_push import push_manifest
from tests.support.registry_client import make_index, make_layer, make_manifest

from .common import blobs_of, config, next_second, push_ci, registry

REPO = "ci/app"
OTHER = "prod/app"           # matched by no policy: never touched
DAY = 86400.0
POLICY = {"retention": {"policies": [{"repository": "ci/**", "keep": {"lastpushed": 3, "tags": ["v*"]},
                                      "untagged": "0s"}]}}


@pytest.mark.parametrize("kind", ["filesystem", "inmemory", "s3"])
def test_keep_three_most_recent_and_v_tags(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    backend = _backend(request, kind, tmp_path)
    cfg = config(tmp_path, POLICY)

    async def main() -> None:
        driver: StorageDriver = backend.make(f"ret-{uuid.uuid4().hex[:8]}")
        reg = registry(driver, cfg)
        base = make_layer(2000)
        # released images first: an image and a multi-platform index (its children are untagged)
        v1 = make_manifest(layers=[base, make_layer(400)])
        v2 = make_index([make_manifest(layers=[base, make_layer(500)]), make_manifest(layers=[make_layer(600)])])
        await push_manifest(reg, REPO, v1, "v1.0")
        await push_manifest(reg, REPO, v2, "v2.0")
        ci = await push_ci(reg, REPO, base, [f"ci-{i:02d}" for i in range(17)])
        next_second()
        ci |= await push_ci(reg, REPO, base, [f"ci-{i:02d}" for i in range(17, 20)])
        # signatures follow their subject: one of a deleted image, one of a kept one
        sig_old = make_manifest(layers=[make_layer(90)], subject=ci["ci-05"])
        sig_new = make_manifest(layers=[make_layer(91)], subject=ci["ci-19"])
        await push_manifest(reg, REPO, sig_old)
        await push_manifest(reg, REPO, sig_new)
        other = make_manifest(layers=[base])
        await push_manifest(reg, OTHER, other, "ci-00")

        before = await reg.tags.all(REPO)
        dry = await Retention(cfg, reg).run(dry_run=True)
        assert await reg.tags.all(REPO) == before                       # a dry run changes nothing
        for m in (*ci.values(), sig_old):
            assert (await reg.manifests.get(REPO, m.digest)).body == m.body

        report = await Retention(cfg, reg).run()
        kept = ["ci-17", "ci-18", "ci-19", "v1.0", "v2.0"]
        assert await reg.tags.all(REPO) == kept
        assert await reg.tags.all(OTHER) == ["ci-00"]
        deleted_tags = {d.name for r in report.repositories for d in r.decisions if d.kind == "tag" and d.done}
        assert deleted_tags == {f"ci-{i:02d}" for i in range(17)}
        gone = {ci[f"ci-{i:02d}"].digest for i in range(17)} | {sig_old.digest}
        deleted_manifests = {d.name for r in report.repositories for d in r.decisions
                             if d.kind == "manifest" and d.done}
        assert deleted_manifests == gone
        # the dry run announced exactly this
        assert [(d.kind, d.name, d.delete) for r in dry.repositories for d in r.decisions if d.delete] == \
            [(d.kind, d.name, d.delete) for r in report.repositories for d in r.decisions if d.delete]
        why = {d.name: d.why for r in dry.repositories for d in r.decisions}
        assert why["v1.0"] == ["keep.tags 'v*'"]
        assert why["ci-19"] == ["keep.lastpushed 3 (#1 most recently pushed)"]
        assert why["ci-00"] == ["no keep rule matches"]
        assert why[sig_new.digest] == [f"referrer of {ci['ci-19'].digest}"]
        assert why[v2.children[0].digest] == [f"in index {v2.digest}"]
        for d in gone:
            with pytest.raises(Exception, match="MANIFEST_UNKNOWN"):
                await reg.manifests.get(REPO, d)

        # gc frees exactly the blobs only the deleted manifests used
        stored = {str(d) for d in await gc.Collector(driver, gc.Options()).blobs()}
        collected = await gc.collect(driver, gc.Options(now=time.time() + DAY))
        left = {str(d) for d in await gc.Collector(driver, gc.Options()).blobs()}
        live = blobs_of(v1, v2, ci["ci-17"], ci["ci-18"], ci["ci-19"], sig_new, other)
        assert left == live
        assert stored - left == blobs_of(*(ci[f"ci-{i:02d}"] for i in range(17)), sig_old) - live
        assert collected.deleted_blobs == len(stored - left)
        await driver.close()
    asyncio.run(main())


def test_tag_pushed_during_the_run_is_kept(tmp_path: Path) -> None:
    """The run reads every tag, then deletes one by one; a tag pushed again in between is kept,
    and so is a manifest tagged in between (the push here happens in the run's own event
    callback, after its first deletion, through the same services a client's PUT uses)."""
    from fastreg.storage.driver.backends.filesystem import FilesystemDriver
    cfg = config(tmp_path, POLICY)

    async def main() -> None:
        reg = registry(FilesystemDriver(str(tmp_path / "data")), cfg)
        base = make_layer(1000)
        ci = await push_ci(reg, REPO, base, [f"ci-{i:02d}" for i in range(8)])
        pushed_during: list[str] = []

        async def emit(action: str, req: object, target: object) -> None:
            if not pushed_during:                       # after the first deletion (ci-04)
                await push_manifest(reg, REPO, ci["ci-00"], "ci-00")           # pushed again
                await push_manifest(reg, REPO, ci["ci-01"], "rescued")         # its manifest tagged anew
                pushed_during.append("ci-00")

        report = await Retention(cfg, reg, emit=emit).run()
        assert pushed_during
        assert await reg.tags.all(REPO) == ["ci-00", "ci-05", "ci-06", "ci-07", "rescued"]
        why = {d.name: (d.delete, d.why) for r in report.repositories for d in r.decisions}
        assert why["ci-00"] == (False, ["pushed during the run"])
        assert why["ci-01"][0] is True                  # the tag went; its manifest stays, tagged "rescued"
        assert (await reg.manifests.get(REPO, "rescued")).body == ci["ci-01"].body
        assert (await reg.manifests.get(REPO, ci["ci-00"].digest)).body == ci["ci-00"].body
        with pytest.raises(Exception, match="MANIFEST_UNKNOWN"):
            await reg.manifests.get(REPO, ci["ci-02"].digest)
    asyncio.run(main())


@pytest.mark.parametrize("kind", ["filesystem", "inmemory"])
def test_a_repository_without_tags_loses_its_untagged_manifests(
        request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    """A repository that never had a tag has no tag list (NAME_UNKNOWN): its untagged manifests
    are still found, checked for tags pushed meanwhile (none) and deleted."""
    backend = _backend(request, kind, tmp_path)
    cfg = config(tmp_path, POLICY)

    async def main() -> None:
        reg = registry(backend.make(f"ret-{uuid.uuid4().hex[:8]}"), cfg)
        loose = [make_manifest(layers=[make_layer(100)]) for _ in range(2)]
        for m in loose:
            await push_manifest(reg, REPO, m)
        with pytest.raises(Exception, match="NAME_UNKNOWN"):
            await reg.tags.all(REPO)
        report = await Retention(cfg, reg).run()
        (outcome,) = report.repositories
        assert outcome.error == ""
        assert sorted((d.kind, d.name, d.delete) for d in outcome.decisions) == sorted(
            ("manifest", m.digest, True) for m in loose)
        for m in loose:
            with pytest.raises(Exception, match="MANIFEST_UNKNOWN"):
                await reg.manifests.get(REPO, m.digest)
    asyncio.run(main())
