"""`fastreg check` on a data directory a real fastreg wrote, then damaged on disk the ways disks and
people damage it: a flipped byte, a truncated blob, a manifest deleted under its tag, a layer link
to nothing, a link naming another digest, a tag directory without its current link.

The report names each problem; a plain check changes nothing; `--repair` moves damaged blobs to
the quarantine (bytes intact, never deleted) and removes what points at nothing; pushing the
right bytes again then heals the registry, and the check comes back clean.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import httpx

from tests.e2e.helpers import Blob, make_layer, make_manifest

from .common import V2, assert_pulls, push, put_blob, run_check, server, stored_files


def blob_file(root: Path, digest: str) -> Path:
    hex_ = digest.split(":")[1]
    return root / V2 / "blobs" / "sha256" / hex_[:2] / hex_ / "data"


def test_check_finds_reports_and_repairs_damage(tmp_path: Path) -> None:
    a = make_manifest(layers=[make_layer(70_000), make_layer(5000)])
    b = make_manifest(layers=[make_layer(40_000)])
    c = make_manifest()
    orphan = Blob(os.urandom(3000))
    srv = server(tmp_path)
    with httpx.Client(base_url=srv.url, timeout=30) as cl:
        push(cl, "app/a", a, "v1")
        push(cl, "app/b", b, "v1")
        push(cl, "app/c", c, "v1")
        assert put_blob(cl, "app/a", orphan).status_code == 201
    srv.stop()
    root = srv.root
    rc, report = run_check(root, tmp_path)
    assert (rc, report["problems"]) == (0, [])
    assert (report["blobs"], report["repositories"], report["manifests"], report["tags"]) == (11, 3, 3, 3)

    # -- the damage -------------------------------------------------------------------------
    flipped = blob_file(root, a.blobs[1].digest)
    raw = bytearray(flipped.read_bytes())
    raw[1234] ^= 0x01
    flipped.write_bytes(bytes(raw))
    truncated = blob_file(root, b.blobs[1].digest)
    with open(truncated, "r+b") as f:
        f.truncate(1000)
    shutil.rmtree(blob_file(root, c.digest).parent)                 # c's manifest, under tag v1
    repo_a = root / V2 / "repositories/app/a"
    nothing = "sha256:" + hashlib.sha256(b"never stored").hexdigest()
    dangling = repo_a / "_layers/sha256" / nothing.split(":")[1] / "link"
    dangling.parent.mkdir(parents=True)
    dangling.write_text(nothing)
    wrong = repo_a / "_manifests/revisions/sha256" / a.blobs[0].digest.split(":")[1] / "link"
    wrong.parent.mkdir(parents=True)
    wrong.write_text(a.digest)                                       # names another digest
    half_tag = repo_a / "_manifests/tags/half/index/sha256" / a.digest.split(":")[1] / "link"
    half_tag.parent.mkdir(parents=True)
    half_tag.write_text(a.digest)

    before = stored_files(root)
    rc, report = run_check(root, tmp_path)
    assert rc == 4 and not report["ok"]
    assert stored_files(root) == before                              # a check alone changes nothing
    found = {(p["kind"], p["repository"], p["digest"]) for p in report["problems"]}
    assert found == {
        ("corrupt-blob", "", a.blobs[1].digest),
        ("corrupt-blob", "", b.blobs[1].digest),
        ("dangling-layer-link", "app/a", a.blobs[1].digest),
        ("dangling-layer-link", "app/b", b.blobs[1].digest),
        ("missing-reference", "app/a", a.digest),
        ("missing-reference", "app/b", b.digest),
        ("dangling-revision", "app/c", c.digest),
        ("dangling-tag", "app/c", c.digest),
        ("dangling-layer-link", "app/a", nothing),
        ("bad-link", "app/a", a.blobs[0].digest),
        ("incomplete-tag", "app/a", ""),
    }, report["problems"]
    assert all(p["repaired"] == "" for p in report["problems"])

    # -- repair -----------------------------------------------------------------------------
    rc, report = run_check(root, tmp_path, "--repair")
    assert rc == 4          # the manifests whose layers were damaged stay, reported: content is lost
    left = {(p["kind"], p["repository"]) for p in report["problems"] if not p["repaired"]}
    assert left == {("missing-reference", "app/a"), ("missing-reference", "app/b")}
    quarantined = sorted((root / V2 / "_fastreg_quarantine").rglob("data"))
    assert sorted(f.read_bytes() for f in quarantined) == sorted([bytes(raw), b.blobs[1].data[:1000]])
    assert not flipped.exists() and not truncated.exists()
    assert not dangling.parent.exists() and not wrong.parent.exists()
    assert not (repo_a / "_manifests/tags/half").exists()
    assert not (root / V2 / "repositories/app/c/_manifests/tags/v1").exists()
    assert not (root / V2 / "repositories/app/a/_layers/sha256" / a.blobs[1].digest.split(":")[1]).exists()
    rc, report = run_check(root, tmp_path)
    assert {(p["kind"], p["repository"]) for p in report["problems"]} == left

    # -- healing: the client pushes again; the quarantined digests are free to be stored anew --
    srv = server(tmp_path)
    with httpx.Client(base_url=srv.url, timeout=30) as cl:
        push(cl, "app/a", a, "v1")
        push(cl, "app/b", b, "v1")
        assert_pulls(cl, "app/a", "v1", a)
        assert_pulls(cl, "app/b", "v1", b)
        assert cl.get("/v2/app/c/manifests/v1").status_code == 404
        assert cl.get("/v2/app/a/tags/list").json()["tags"] == ["v1"]
    srv.stop()
    rc, report = run_check(root, tmp_path)
    assert (rc, report["problems"]) == (0, [])

    # -- damage that can all be repaired: exit 1 ---------------------------------------------
    with open(blob_file(root, orphan.digest), "r+b") as f:
        f.truncate(0)
    rc, report = run_check(root, tmp_path, "--repair")
    assert rc == 1 and sorted(p["repaired"] for p in report["problems"]) == ["quarantined", "removed"]
    assert run_check(root, tmp_path)[0] == 0


def test_a_push_replaces_a_stored_copy_of_the_wrong_size(tmp_path: Path) -> None:
    """A blob or manifest truncated on disk is replaced by the next push of the same digest
    (before, the push found "a copy" and kept the damaged one): pushing again heals."""
    m = make_manifest(layers=[make_layer(100_000)])
    srv = server(tmp_path)
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as cl:
            push(cl, "heal/app", m, "v1")
            for digest in (m.blobs[1].digest, m.digest):
                with open(blob_file(srv.root, digest), "r+b") as f:
                    f.truncate(100)
            assert run_check(srv.root, tmp_path)[0] == 4
            push(cl, "heal/app", m, "v1")
        srv.stop()
        srv = server(tmp_path)          # a fresh process: no manifest cached in memory
        with httpx.Client(base_url=srv.url, timeout=30) as cl:
            assert_pulls(cl, "heal/app", "v1", m)
    finally:
        srv.stop()
    rc, report = run_check(srv.root, tmp_path)
    assert (rc, report["problems"]) == (0, [])
