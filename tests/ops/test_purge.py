"""Upload purging: sessions older than `age` go, younger ones and ones that cannot be aged stay;
in the server one worker does it in the background; Distribution's `startedat` is understood."""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastreg.maintenance.purge import parse_startedat, purge_uploads
from fastreg.registry import Registry
from fastreg.storage import layout
from fastreg.storage.driver.backends.filesystem import FilesystemDriver
from tests.support.registry_client import digest_of, q, relative

from .conftest import DISTRIBUTION_BIN, V2

OLD = "2020-01-02T03:04:05Z"


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-01T10:00:00Z", 1714557600.0),
    ("2024-05-01T12:00:00+02:00", 1714557600.0),
    ("2024-05-01T10:00:00.123456789Z", 1714557600.123456),
    ("2024-05-01T10:00:00.5-01:30", 1714557600.5 + 5400),
    (" 2024-05-01T10:00:00Z\n", 1714557600.0),
    ("", None), ("yesterday", None), ("2024-13-01T00:00:00Z", None),
])
def test_parse_startedat(text: str, expected: float | None) -> None:
    got = parse_startedat(text)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_purge_removes_only_old_sessions(tmp_path: Path) -> None:
    async def main() -> None:
        driver = FilesystemDriver(str(tmp_path), fsync=False)
        reg = Registry(driver, secret=b"k" * 32)
        old = await reg.uploads.start("a/b")
        young = await reg.uploads.start("a/b")
        nested = await reg.uploads.start("deep/er/repo")
        unaged = await reg.uploads.start("c")
        await driver.put_content(layout.upload_startedat("a/b", old.uuid), OLD.encode())
        await driver.put_content(layout.upload_startedat("deep/er/repo", nested.uuid), OLD.encode())
        await driver.delete(layout.upload_startedat("c", unaged.uuid))
        dry = await purge_uploads(driver, 3600, dry_run=True)
        assert dry.sessions == 4 and sorted(dry.purged) == sorted(
            [layout.upload_dir("a/b", old.uuid), layout.upload_dir("deep/er/repo", nested.uuid)])
        assert len((await purge_uploads(driver, 3600, dry_run=True)).purged) == 2   # the dry run kept them
        done = await purge_uploads(driver, 3600)
        assert sorted(done.purged) == sorted(dry.purged)
        left = {(n, u) for n, u in (("a/b", old.uuid), ("a/b", young.uuid), ("deep/er/repo", nested.uuid),
                                    ("c", unaged.uuid))
                if os.path.isdir(tmp_path / layout.upload_dir(n, u).lstrip("/"))}
        assert left == {("a/b", young.uuid), ("c", unaged.uuid)}
        assert (await purge_uploads(driver, 3600)).purged == []
        await driver.close()
    asyncio.run(main())


def _start_session(c: httpx.Client, repo: str, data: bytes) -> str:
    r = c.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    r = c.patch(relative(r.headers["Location"]), content=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    return relative(r.headers["Location"])


def _session_dir(root: Path, repo: str, location: str) -> Path:
    uuid = location.split("/blobs/uploads/", 1)[1].split("?", 1)[0]
    return root.joinpath(*V2, "repositories", *repo.split("/"), "_uploads", uuid)


def _wait(cond: Callable[[], bool], what: str, srv: Any) -> None:
    for _ in range(300):                 # bounded: 30 s
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{srv.log()[-3000:]}")


@pytest.mark.e2e
@pytest.mark.parametrize("dryrun", [False, True], ids=["purge", "dryrun"])
def test_server_purges_old_sessions_in_the_background(fastreg_factory: Callable[..., Any], dryrun: bool) -> None:
    srv = fastreg_factory({"log": {"level": "info"}, "storage": {"maintenance": {"uploadpurging": {
        "enabled": True, "age": "1h", "interval": "1s", "dryrun": dryrun}}}}, workers=2)
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        a = _start_session(c, "p/q", b"abandoned")
        b_data = os.urandom(3000)
        b = _start_session(c, "p/q", b_data[:1000])
        a_dir, b_dir = _session_dir(srv.root, "p/q", a), _session_dir(srv.root, "p/q", b)
        assert a_dir.is_dir() and b_dir.is_dir()
        (a_dir / "startedat").write_text(OLD)           # as if abandoned years ago
        if dryrun:
            _wait(lambda: f"would remove 1 of 2 sessions: {layout.upload_dir('p/q', a_dir.name)}" in srv.log(),
                  "the dry run's log line", srv)
            assert a_dir.is_dir()
        else:
            _wait(lambda: not a_dir.exists(), "the old session to be purged", srv)
            r = c.patch(a, content=b"more", headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        # The young session goes on and completes.
        assert b_dir.is_dir()
        r = c.put(q(b, digest=digest_of(b_data)), content=b_data[1000:],
                  headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        assert c.get(f"/v2/p/q/blobs/{digest_of(b_data)}").content == b_data
    # One of the two workers holds the maintenance lock and runs the purger.
    assert srv.log().count("upload purging every") == 1, srv.log()


@pytest.mark.e2e
@pytest.mark.interop
def test_distribution_startedat_is_understood(tmp_path: Path) -> None:
    """A session started by Distribution (Debian's docker-registry) is aged and purged by fastreg."""
    if not os.path.exists(DISTRIBUTION_BIN):
        pytest.skip("docker-registry is not installed")
    from tests.interop.conftest import make_distribution
    dist = make_distribution(tmp_path / "dist")
    dist.start()
    try:
        with httpx.Client(base_url=dist.url, timeout=30.0) as c:
            r = c.post("/v2/from/dist/blobs/uploads/")
            assert r.status_code == 202, r.text
    finally:
        dist.stop()
    sessions = list(dist.root.joinpath(*V2, "repositories", "from", "dist", "_uploads").iterdir())
    assert len(sessions) == 1
    started = parse_startedat((sessions[0] / "startedat").read_text())
    assert started is not None and abs(started - time.time()) < 3600

    async def main() -> None:
        driver = FilesystemDriver(str(dist.root), fsync=False)
        assert (await purge_uploads(driver, 3600)).purged == []
        assert len((await purge_uploads(driver, 0, now=time.time() + 7200)).purged) == 1
        await driver.close()
    asyncio.run(main())
    assert not sessions[0].exists()
