"""A full disk, for real: fastreg's data directory is a 48 MiB tmpfs the test mounts (we run as
root in CI) and unmounts at the end.

* a push larger than the disk fails with 507 and the OCI error envelope, mid-upload;
* with the disk filled to the last byte, a push fails with 507 at whatever step runs out first;
* neither leaves a zero-length or partial blob, link or tag, nor a temporary file, and the image
  pushed before is still served byte for byte; `fastreg check` finds no damage;
* once space is freed, pushes succeed again.

Why 507 (RFC 4918 "Insufficient Storage") and not Distribution's 500: it is a 5xx, so docker,
containerd, podman and skopeo handle it exactly as they handle a 500 (a server failure, shown
with its message), while operators and alerts can tell a full disk from a bug.
"""
from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.registry_client import (
    Blob,
    assert_pulls,
    make_layer,
    make_manifest,
    push_manifest,
    put_blob,
    put_manifest,
    relative,
)
from tests.support.server import FastregServer

from .common import V2, assert_5xx_json, run_check, server

SIZE_MIB = 48


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MIB}m,mode=0755", "tmpfs", str(data)],
                   check=True, capture_output=True, timeout=30)
    try:
        yield data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=True, capture_output=True, timeout=30)


def assert_nothing_partial(root: Path) -> None:
    """No temporary file anywhere; every blob's data and every link has content."""
    for dirpath, _, files in os.walk(root / V2):
        for f in files:
            p = Path(dirpath) / f
            assert not f.startswith(".fastreg-tmp-"), p
            if "_uploads" in p.parts:
                continue                    # sessions in progress: not visible, resumable
            assert p.stat().st_size > 0, f"zero-length {p}"
            if f == "link":
                assert p.read_text().startswith("sha256:") and len(p.read_text()) == 71, p


def fill(path: Path) -> None:
    """Write until the disk is full (ENOSPC), to the last page."""
    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 4096):
            piece = chunk[:size]
            while True:
                try:
                    f.write(piece)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break


def test_disk_full(small_disk: Path, tmp_path: Path) -> None:
    srv: FastregServer = server(tmp_path)
    assert srv.root == small_disk
    first = make_manifest(layers=[make_layer(200_000)])
    later = make_manifest(layers=[make_layer(300_000)])
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            push_manifest(c, "disk/app", first, "v1")

            # 1. a layer larger than the disk, in 4 MiB PATCHes: the PATCH that runs out answers 507
            big = os.urandom((SIZE_MIB + 8) << 20)
            loc = relative(c.post("/v2/disk/app/blobs/uploads/").headers["Location"])
            offset, failed = 0, None
            while offset < len(big):
                piece = big[offset:offset + (4 << 20)]
                r = c.patch(loc, content=piece, headers={"Content-Range": f"{offset}-{offset + len(piece) - 1}"})
                if r.status_code != 202:
                    failed = r
                    break
                loc, offset = relative(r.headers["Location"]), offset + len(piece)
            assert failed is not None, "the whole layer fit on a smaller disk"
            err = assert_5xx_json(failed, 507)
            assert "space" in err["detail"] or "storage" in err["message"]
            assert_pulls(c, "disk/app", "v1", first)
            assert_nothing_partial(small_disk)
            assert c.delete(loc).status_code == 204     # the client gives up: its upload frees its space

            # 2. the disk full to the last byte: a blob push fails, and so does the manifest of an
            #    image whose blobs made it before the disk filled up
            for b in later.blobs:
                assert put_blob(c, "disk/app", b).status_code == 201
            filler = small_disk / "filler"
            fill(filler)
            assert_5xx_json(put_blob(c, "disk/app", Blob(os.urandom(5000))), 507)
            assert_5xx_json(put_manifest(c, "disk/app", "v1", later), 507)
            assert_pulls(c, "disk/app", "v1", first)
            assert c.get(f"/v2/disk/app/manifests/{later.digest}").status_code == 404
            assert_nothing_partial(small_disk)

            # 3. space freed: pushes succeed again
            filler.unlink()
            push_manifest(c, "disk/app", later, "v1")
            assert_pulls(c, "disk/app", "v1", later)
            assert_pulls(c, "disk/app", first.digest, first)
            layer = Blob(big[: 8 << 20])
            assert put_blob(c, "disk/app", layer).status_code == 201
            assert c.get(f"/v2/disk/app/blobs/{layer.digest}").content == layer.data
    finally:
        srv.stop()
    assert_nothing_partial(small_disk)
    rc, report = run_check(small_disk, tmp_path)
    assert (rc, report["problems"]) == (0, [])
