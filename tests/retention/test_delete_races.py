"""A retention run's deletes against pushes that land in the middle of them: an answered push is
never lost.  Each race is forced at one point (a hook on the services the PUT and the run call),
then the tag must resolve and the manifest, its children and its tag must all be there."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastreg.digest import parse_digest
from fastreg.registry import Registry
from fastreg.retention.policy import Retention
from fastreg.storage import layout, walk
from fastreg.storage.driver.backends.filesystem import FilesystemDriver
from tests.support.direct_push import push_manifest
from tests.support.registry_client import Manifest, make_index, make_layer, make_manifest

from .common import config, registry

REPO = "ci/app"
POLICY = {"retention": {"policies": [{"repository": "ci/**", "keep": {"lastpushed": 1}, "untagged": "0s"}]}}


def later() -> float:
    """The run's clock, 10 s ahead: everything pushed so far is older than its `untagged` delay."""
    return time.time() + 10


async def assert_whole(reg: Registry, tag: str, m: Manifest) -> None:
    assert (await reg.manifests.get(REPO, tag)).body == m.body
    assert (await reg.manifests.get(REPO, m.digest)).body == m.body
    for child in m.children:
        assert (await reg.manifests.get(REPO, child.digest)).body == child.body
    assert str(await reg.tags.resolve(REPO, tag)) == m.digest


def hook_tag_write(reg: Registry, before: Callable[[], Awaitable[None]]) -> list[int]:
    """Run `before` once, when a PUT is about to write its tag (its revision is written)."""
    original = reg.tags.tag
    calls: list[int] = []

    async def tag(name: str, t: str, d: Any, *, new: bool = False) -> None:
        if not calls:
            calls.append(1)
            await before()
        await original(name, t, d, new=new)
    reg.tags.tag = tag  # type: ignore[method-assign,assignment]
    return calls


def test_untagged_delete_between_the_revision_and_the_tag(tmp_path: Path) -> None:
    """The run lists the manifest a PUT has linked but not tagged yet, and deletes it as untagged;
    the PUT then writes the tag, finds the revision gone and links it again."""
    cfg = config(tmp_path, POLICY)

    async def main() -> None:
        reg = registry(FilesystemDriver(str(tmp_path / "data")), cfg)
        await push_manifest(reg, REPO, make_manifest(layers=[make_layer(100)]), "old")
        m = make_manifest(layers=[make_layer(200)])
        reports = []

        async def run() -> None:
            reports.append(await Retention(cfg, reg, now=later).run())
        calls = hook_tag_write(reg, run)
        await push_manifest(reg, REPO, m, "new")
        assert calls
        deleted = {d.name for d in reports[0].repositories[0].decisions if d.done}
        assert m.digest in deleted                     # the race did happen: the run deleted it
        await assert_whole(reg, "new", m)
        assert await reg.tags.all(REPO) == ["new", "old"]
        assert not await walk.exists(reg.driver, layout.delete_intent_revision(
            REPO, "sha256", m.digest.split(":")[1]))    # the intent is gone with the run
    asyncio.run(main())


def test_index_children_deleted_before_the_index_is_tagged(tmp_path: Path) -> None:
    """A multi-platform push: the children are pushed by digest, then the index by tag.  A run
    between the index's revision and its tag deletes the children (and the index) as untagged;
    the PUT links all of them again."""
    cfg = config(tmp_path, POLICY)

    async def main() -> None:
        reg = registry(FilesystemDriver(str(tmp_path / "data")), cfg)
        idx = make_index([make_manifest(layers=[make_layer(300)]), make_manifest(layers=[make_layer(301)])])

        async def run() -> None:
            await Retention(cfg, reg, now=later).run()
        hook_tag_write(reg, run)
        await push_manifest(reg, REPO, idx, "multi")
        await assert_whole(reg, "multi", idx)
    asyncio.run(main())


def test_push_waits_for_the_delete_in_progress(tmp_path: Path) -> None:
    """The run re-read the manifest (untagged) and holds its intent; the PUT tags it and reaches
    its check while the delete (which removes the manifest and every tag naming it) is under way.
    The PUT waits for the delete to end, then puts back the revision and the tag."""
    cfg = config(tmp_path, POLICY)

    async def main() -> None:
        reg = registry(FilesystemDriver(str(tmp_path / "data")), cfg)
        await push_manifest(reg, REPO, make_manifest(layers=[make_layer(100)]), "old")
        m = make_manifest(layers=[make_layer(200)])
        await push_manifest(reg, REPO, m)                     # untagged, then tagged during the run
        original = reg.manifests.delete
        put: list[asyncio.Task[Any]] = []

        async def delete(name: str, reference: str, **kw: Any) -> None:
            if reference == m.digest and not put:
                put.append(asyncio.create_task(reg.manifests.put(REPO, "late", m.body, m.media_type)))
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:            # the PUT has tagged: it is at its check
                    try:
                        await reg.tags.resolve(REPO, "late")
                        break
                    except Exception:
                        await asyncio.sleep(0.005)
                await asyncio.sleep(0.05)
                assert not put[0].done()                      # it waits for this delete
            await original(name, reference, **kw)
        reg.manifests.delete = delete  # type: ignore[method-assign]
        report = await Retention(cfg, reg, now=later).run()
        assert put
        assert str((await put[0])[0]) == m.digest
        assert any(d.name == m.digest and d.done for d in report.repositories[0].decisions)
        await assert_whole(reg, "late", m)
    asyncio.run(main())


def test_tag_pushed_again_while_the_run_deletes_it(tmp_path: Path) -> None:
    """The run re-read tag `a` (unchanged) and holds its intent; a client pushes `a` again to the
    same manifest during the delete: afterwards `a` is there."""
    cfg = config(tmp_path, POLICY)

    async def main() -> None:
        reg = registry(FilesystemDriver(str(tmp_path / "data")), cfg)
        ma = make_manifest(layers=[make_layer(100)])
        await push_manifest(reg, REPO, ma, "a")
        await push_manifest(reg, REPO, make_manifest(layers=[make_layer(101)]), "b")
        original = reg.manifests.delete
        put: list[asyncio.Task[Any]] = []

        async def delete(name: str, reference: str, **kw: Any) -> None:
            if reference == "a" and not put:
                put.append(asyncio.create_task(reg.manifests.put(REPO, "a", ma.body, ma.media_type)))
                await asyncio.sleep(0.1)
                assert not put[0].done()                      # it waits for this delete
            await original(name, reference, **kw)
        reg.manifests.delete = delete  # type: ignore[method-assign]
        await Retention(cfg, reg, now=later).run()
        assert put
        await put[0]
        await assert_whole(reg, "a", ma)
        assert parse_digest(ma.digest) == await reg.tags.resolve(REPO, "a")
    asyncio.run(main())


def test_a_dead_runs_intent_goes_stale(tmp_path: Path) -> None:
    """An intent left by a run that died is not waited for once stale; a fresh one past the wait
    answers 503 UNAVAILABLE and leaves the tag as it was."""
    cfg = config(tmp_path, POLICY)

    async def main() -> None:
        reg = registry(FilesystemDriver(str(tmp_path / "data")), cfg)
        m = make_manifest(layers=[make_layer(100)])
        d = parse_digest(m.digest)
        path = layout.delete_intent_revision(REPO, d.algorithm, d.hex)
        await reg.driver.put_content(path, repr(time.time() - 500).encode())
        await push_manifest(reg, REPO, m, "t")                      # stale: no wait
        await assert_whole(reg, "t", m)
        assert reg.manifests.deletes is not None
        reg.manifests.deletes.wait = 0.2
        await reg.driver.put_content(path, repr(time.time()).encode())
        m2 = make_manifest(layers=[make_layer(101)])
        await push_manifest(reg, REPO, m2, "t2")                    # another manifest: no wait
        try:
            await reg.manifests.put(REPO, "t3", m.body, m.media_type)
            raise AssertionError("no 503")
        except Exception as exc:
            assert getattr(exc, "status", None) == 503 and exc.code.value == "UNAVAILABLE"  # type: ignore[attr-defined]
        assert await reg.tags.all(REPO) == ["t", "t2"]             # t3 not left behind
    asyncio.run(main())


def test_repositories_no_policy_matches_pay_nothing(tmp_path: Path) -> None:
    """Only repositories a policy matches look for intents."""
    cfg = config(tmp_path, POLICY)
    reg = registry(FilesystemDriver(str(tmp_path / "data")), cfg)
    assert reg.manifests.deletes is not None
    assert reg.manifests.deletes.covers("ci/app") and not reg.manifests.deletes.covers("prod/app")
    assert registry(FilesystemDriver(str(tmp_path / "d2")), config(tmp_path, {})).manifests.deletes is None


def test_index_pushed_before_its_old_childs_intent(tmp_path: Path) -> None:
    """A child pushed long ago, untagged: the run decides to delete it; an index naming it is
    pushed (and answered) before the run takes the child's intent.  The run's re-read under the
    intent must see the push: the child stays, the index is whole."""
    cfg = config(tmp_path, POLICY)

    async def main() -> None:
        reg = registry(FilesystemDriver(str(tmp_path / "data")), cfg)
        await push_manifest(reg, REPO, make_manifest(layers=[make_layer(100)]), "old")
        child = make_manifest(layers=[make_layer(300)])
        await push_manifest(reg, REPO, child)                 # by digest: untagged
        idx = make_index([child])
        time.sleep(0.02)                                      # (a later modification time)
        run = Retention(cfg, reg, now=later)
        original = run.intents.deleting_revision
        pushed: list[int] = []

        def deleting_revision(name: str, d: Any) -> Any:
            if str(d) == child.digest and not pushed:
                pushed.append(1)
                put = reg.manifests.put(REPO, "multi", idx.body, idx.media_type)     # the index alone
                return _after(put, original(name, d))
            return original(name, d)
        run.intents.deleting_revision = deleting_revision  # type: ignore[method-assign]
        await run.run()
        assert pushed
        await assert_whole(reg, "multi", idx)
    asyncio.run(main())


class _after:
    """An async context manager that first awaits `first`, then enters `cm`."""

    def __init__(self, first: Awaitable[Any], cm: Any) -> None:
        self.first, self.cm = first, cm

    async def __aenter__(self) -> None:
        await self.first
        await self.cm.__aenter__()

    async def __aexit__(self, *exc: Any) -> Any:
        return await self.cm.__aexit__(*exc)


def test_first_push_of_an_immutable_tag_during_the_delete(tmp_path: Path) -> None:
    """The run re-read an untagged manifest and holds its intent; the first push of an immutable
    tag naming it takes the immutability lock and waits for that intent; the run's delete by
    digest needs the same lock.  Neither may wait for the other: the push is answered 201 (not
    503 once it gave up waiting) and its manifest and tag are there."""
    cfg = config(tmp_path, {**POLICY, "immutability": {"rules": [{"repository": "ci/**", "tags": ["v*"]}]}})

    async def main() -> None:
        reg = registry(FilesystemDriver(str(tmp_path / "data")), cfg)
        assert reg.manifests.deletes is not None
        reg.manifests.deletes.wait = 2.0
        await push_manifest(reg, REPO, make_manifest(layers=[make_layer(100)]), "old")
        m = make_manifest(layers=[make_layer(200)])
        await push_manifest(reg, REPO, m)                     # untagged, then tagged v1 during the run
        original = reg.manifests.delete
        put: list[asyncio.Task[Any]] = []

        async def delete(name: str, reference: str, **kw: Any) -> None:
            if reference == m.digest and not put:
                put.append(asyncio.create_task(reg.manifests.put(REPO, "v1", m.body, m.media_type)))
                deadline = time.monotonic() + 1         # it reached its check (or waits for the lock)
                while time.monotonic() < deadline and not put[0].done():
                    try:
                        await reg.tags.resolve(REPO, "v1")
                        break
                    except Exception:
                        await asyncio.sleep(0.005)
            await original(name, reference, **kw)
        reg.manifests.delete = delete  # type: ignore[method-assign]
        await asyncio.wait_for(Retention(cfg, reg, now=later).run(), 30)
        assert put
        assert str((await put[0])[0]) == m.digest
        await assert_whole(reg, "v1", m)
    asyncio.run(main())


def test_quota_counts_the_children_written_back(tmp_path: Path) -> None:
    """With a storage quota: the run deletes an index's children (uncounting them) between the
    index's revision and its tag; the PUT links them again, and they count again — the usage is
    what a recount from the manifests finds."""
    from fastreg.retention.quota import Quotas, recompute
    cfg = config(tmp_path, {**POLICY, "quota": {"rules": [{"repository": "ci/**", "limit": 10**9}]}})

    async def main() -> None:
        reg = registry(FilesystemDriver(str(tmp_path / "data")), cfg)
        reg.manifests.quota = Quotas.from_config(cfg, reg.driver)
        idx = make_index([make_manifest(layers=[make_layer(300)]), make_manifest(layers=[make_layer(301)])])

        async def run() -> None:
            await Retention(cfg, reg, now=later).run()
        hook_tag_write(reg, run)
        await push_manifest(reg, REPO, idx, "multi")
        await assert_whole(reg, "multi", idx)
        recount = await recompute(reg.driver, dry_run=True)
        assert recount.drift == 0, recount.drifted
    asyncio.run(main())


def test_an_unreadable_intent_goes_stale_too(tmp_path: Path) -> None:
    """An intent is written without waiting for the disk: a crash of the run's host can leave it
    empty.  Such an intent goes stale by its age like any other, instead of holding every push of
    its manifest (503) for ever."""
    import os
    cfg = config(tmp_path, POLICY)

    async def main() -> None:
        reg = registry(FilesystemDriver(str(tmp_path / "data")), cfg)
        assert reg.manifests.deletes is not None
        reg.manifests.deletes.wait = 0.5
        m = make_manifest(layers=[make_layer(100)])
        d = parse_digest(m.digest)
        path = layout.delete_intent_revision(REPO, d.algorithm, d.hex)
        await reg.driver.put_content(path, b"")
        full = str(tmp_path / "data") + path
        old = time.time() - 500
        os.utime(full, (old, old))
        await push_manifest(reg, REPO, m, "t")                      # stale: no wait
        await assert_whole(reg, "t", m)
        await reg.driver.put_content(path, b"")                     # a fresh one is held
        try:
            await reg.manifests.put(REPO, "t2", m.body, m.media_type)
            raise AssertionError("no 503")
        except Exception as exc:
            assert getattr(exc, "status", None) == 503, exc
    asyncio.run(main())


def test_tag_written_back_while_the_run_deletes_its_manifest(tmp_path: Path) -> None:
    """`a` is pushed again (same manifest) while the run deletes tag `a`: the PUT waits for that
    delete, then writes `a` back.  Meanwhile the same run, with `untagged: 0s`, found the manifest
    untagged and deletes it — it read the tags before `a` was written back, the PUT had looked
    for an intent on the manifest before the run took one.  The tag written back is a new link:
    the PUT looks for intents again, waits for that delete too, and writes back what it removed."""
    cfg = config(tmp_path, POLICY)

    async def main() -> None:
        reg = registry(FilesystemDriver(str(tmp_path / "data")), cfg)
        ma = make_manifest(layers=[make_layer(100)])
        await push_manifest(reg, REPO, ma, "a")
        await push_manifest(reg, REPO, make_manifest(layers=[make_layer(101)]), "b")
        original = reg.manifests.delete
        put: list[asyncio.Task[Any]] = []
        run_read_tags = asyncio.Event()
        assert reg.manifests.deletes is not None
        settle = reg.manifests.deletes.settle

        async def settled(*args: Any) -> None:
            await settle(*args)
            await run_read_tags.wait()         # the run decides on `a`'s manifest before `a` is back
        reg.manifests.deletes.settle = settled  # type: ignore[method-assign]

        async def delete(name: str, reference: str, **kw: Any) -> None:
            if reference == "a" and not put:
                put.append(asyncio.create_task(reg.manifests.put(REPO, "a", ma.body, ma.media_type)))
                await asyncio.sleep(0.1)
                assert not put[0].done()                      # it waits for this delete
            if reference == ma.digest:                        # re-read: untagged; about to delete
                run_read_tags.set()
                deadline = time.monotonic() + 1
                while not put[0].done() and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
            await original(name, reference, **kw)
        reg.manifests.delete = delete  # type: ignore[method-assign]
        report = await Retention(cfg, reg, now=later).run()
        assert put
        await asyncio.wait_for(put[0], 10)
        assert any(d.name == ma.digest and d.done for d in report.repositories[0].decisions)  # (the race)
        await assert_whole(reg, "a", ma)
    asyncio.run(main())
