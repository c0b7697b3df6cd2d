"""`fastreg check` on a data directory a real fastreg wrote, then damaged on disk the ways disks and
people damage it: a flipped byte, a truncated blob, a manifest deleted under its tag, a layer link
to nothing, a link naming another digest, a tag directory without its current link.

The report names each problem; a plain check changes nothing; `--repair` moves damaged blobs to
the quarantine (bytes intact, never deleted) and removes what points at nothing; pushing the
right bytes again then heals the registry, and the check comes back clean.

Also: what interrupted writes leave (temporary files, upload sessions that can never finish),
judged by age against a grace period, and the referrers index (wrong and lost entries).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.registry_client import (
    OCTET,
    Blob,
    Manifest,
    assert_pulls,
    make_layer,
    make_manifest,
    push_manifest,
    put_blob,
    q,
    relative,
    upload_location,
)
from tests.support.server import checkout_pythonpath

from .common import V2, run_check, server, stored_files

HOUR = 3600.0
NO_PURGE = {"storage": {"maintenance": {"uploadpurging": {"enabled": False}}}}   # the server's own purger stays out


def blob_file(root: Path, digest: str) -> Path:
    hex_ = digest.split(":")[1]
    return root / V2 / "blobs" / "sha256" / hex_[:2] / hex_ / "data"


def driver_path(root: Path, path: Path) -> str:
    """The storage driver's name for a file under the data directory (as the report gives it)."""
    return "/" + str(path.relative_to(root))


def backdate(path: Path, seconds: float) -> None:
    """Set the mtime of `path` (and of everything under it) `seconds` into the past."""
    t = time.time() - seconds
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(p, (t, t))


def test_check_finds_reports_and_repairs_damage(tmp_path: Path) -> None:
    a = make_manifest(layers=[make_layer(70_000), make_layer(5000)])
    b = make_manifest(layers=[make_layer(40_000)])
    c = make_manifest()
    orphan = Blob(os.urandom(3000))
    srv = server(tmp_path)
    with httpx.Client(base_url=srv.url, timeout=30) as cl:
        push_manifest(cl, "app/a", a, "v1")
        push_manifest(cl, "app/b", b, "v1")
        push_manifest(cl, "app/c", c, "v1")
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
        push_manifest(cl, "app/a", a, "v1")
        push_manifest(cl, "app/b", b, "v1")
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
            push_manifest(cl, "heal/app", m, "v1")
            for digest in (m.blobs[1].digest, m.digest):
                with open(blob_file(srv.root, digest), "r+b") as f:
                    f.truncate(100)
            assert run_check(srv.root, tmp_path)[0] == 4
            push_manifest(cl, "heal/app", m, "v1")
        srv.stop()
        srv = server(tmp_path)          # a fresh process: no manifest cached in memory
        with httpx.Client(base_url=srv.url, timeout=30) as cl:
            assert_pulls(cl, "heal/app", "v1", m)
    finally:
        srv.stop()
    rc, report = run_check(srv.root, tmp_path)
    assert (rc, report["problems"]) == (0, [])


def test_check_reports_and_clears_leftovers_of_interrupted_writes(tmp_path: Path) -> None:
    """Temporary files a crash left beside their targets, and upload sessions that can never be
    finished nor purged (no data, no readable startedat), are reported; `--repair` removes only
    those last written before the grace period.  A sound session is never touched — however
    long idle, or older than the purge age (purging's business) — and finishes afterwards."""
    m = make_manifest()
    layer = Blob(os.urandom(8000))
    srv = server(tmp_path, NO_PURGE)
    with httpx.Client(base_url=srv.url, timeout=30) as cl:
        push_manifest(cl, "left/app", m, "v1")
        loc = {k: upload_location(cl, "left/app")
               for k in ("active", "no-data", "no-startedat", "bad-startedat", "aged", "starting")}
        r = cl.patch(loc["active"], content=layer.data[:5000], headers={"Content-Range": "0-4999"})
        assert r.status_code == 202, r.text
        loc["active"] = relative(r.headers["Location"])
    srv.stop()
    root = srv.root
    sess = {k: root / V2 / "repositories/left/app/_uploads" / v.split("?")[0].rsplit("/", 1)[1]
            for k, v in loc.items()}
    assert all(p.is_dir() for p in sess.values())
    rc, report = run_check(root, tmp_path)
    assert (rc, report["problems"]) == (0, [])
    assert (report["uploads"]["sessions"], report["uploads"]["bytes"]) == (6, 5000)
    assert (report["uploads"]["aged"], report["uploads"]["broken"]) == ([], [])
    assert report["temporary_files"] == {"checked": True, "count": 0, "bytes": 0, "young": 0, "paths": []}

    # -- the leftovers ----------------------------------------------------------------------
    (sess["no-data"] / "data").unlink()
    (sess["no-startedat"] / "startedat").unlink()
    (sess["bad-startedat"] / "startedat").write_text("yesterday")
    (sess["aged"] / "startedat").write_text("2020-01-01T00:00:00Z")
    (sess["starting"] / "data").unlink()            # as between a session's startedat and its data
    for k in ("no-data", "no-startedat", "bad-startedat", "aged", "active"):
        backdate(sess[k], 2 * HOUR)                 # "active": a client idle for two hours
    current = root / V2 / "repositories/left/app/_manifests/tags/v1/current"
    old_link = current / ".fastreg-tmp-4f1c2a9e-17"             # a tag update killed before its rename
    old_link.write_text(m.digest)
    old_blob = blob_file(root, m.blobs[1].digest).parent / ".fastreg-tmp-4f1c2a9e-18"
    old_blob.write_bytes(m.blobs[1].data[:300])
    young = sess["active"] / ".fastreg-tmp-9d0e7b11-3"           # a put in flight
    young.write_bytes(b"\0" * 64)
    backdate(old_link, 2 * HOUR)
    backdate(old_blob, 2 * HOUR)

    before = stored_files(root)
    rc, report = run_check(root, tmp_path)
    assert rc == 4 and not report["ok"]
    assert stored_files(root) == before                              # a check alone changes nothing
    found = {(p["kind"], p["path"]) for p in report["problems"]}
    assert found == {
        ("broken-upload", driver_path(root, sess["no-data"])),
        ("broken-upload", driver_path(root, sess["no-startedat"])),
        ("broken-upload", driver_path(root, sess["bad-startedat"])),
        ("stale-temporary-file", driver_path(root, old_link)),
        ("stale-temporary-file", driver_path(root, old_blob)),
    }, report["problems"]
    why = {p["path"]: p["detail"] for p in report["problems"]}
    assert why[driver_path(root, sess["no-data"])].startswith("no data file")
    assert why[driver_path(root, sess["no-startedat"])].startswith("no startedat")
    assert "'yesterday' is not an RFC 3339 time" in why[driver_path(root, sess["bad-startedat"])]
    assert {p["repository"] for p in report["problems"] if p["kind"] == "broken-upload"} == {"left/app"}
    assert report["uploads"]["aged"] == [driver_path(root, sess["aged"])]
    assert sorted(report["uploads"]["broken"]) == sorted(
        driver_path(root, sess[k]) for k in ("no-data", "no-startedat", "bad-startedat", "starting"))
    assert report["temporary_files"] == {
        "checked": True, "count": 3, "bytes": len(m.digest) + 300 + 64, "young": 1,
        "paths": sorted(driver_path(root, p) for p in (old_link, old_blob, young))}
    assert report["uploads"]["purge_age"] == 168 * HOUR and report["uploads"]["purging"] is True
    # the text output names what it leaves to purging, and why it leaves the young ones
    text = check_text(root, tmp_path)
    assert f"aged upload: {driver_path(root, sess['aged'])}" in text
    assert "upload purging removes them (storage.maintenance.uploadpurging); check does not remove them" in text
    assert "1 upload session(s) without data or startedat written within the grace period" in text
    assert "1 temporary file(s) written within the grace period" in text
    # the purge age is the configuration's
    _, report = run_check(root, tmp_path, storage={"maintenance": {"uploadpurging": {"age": "100000h",
                                                                                     "enabled": False}}})
    assert (report["uploads"]["aged"], report["uploads"]["purging"]) == ([], False)
    # a grace period longer than their age: nothing is old enough to be judged
    rc, report = run_check(root, tmp_path, "--grace", "3h")
    assert (rc, report["problems"], report["temporary_files"]["young"]) == (0, [], 3)

    # -- repair -----------------------------------------------------------------------------
    rc, report = run_check(root, tmp_path, "--repair")
    assert rc == 1 and len(report["problems"]) == 5
    assert all(p["repaired"] == "removed" for p in report["problems"])
    assert not old_link.exists() and not old_blob.exists() and young.exists()
    assert sorted(p for p in sess["active"].parent.iterdir()) == sorted(sess[k] for k in ("active", "aged", "starting"))
    assert (current / "link").read_text() == m.digest
    rc, report = run_check(root, tmp_path)
    assert (rc, report["problems"]) == (0, [])       # young leftovers and aged sessions are not damage
    assert (report["temporary_files"]["count"], report["uploads"]["sessions"]) == (1, 3)

    # -- the idle session is whole: the client finishes its push ------------------------------
    srv = server(tmp_path, NO_PURGE)
    with httpx.Client(base_url=srv.url, timeout=30) as cl:
        r = cl.patch(loc["active"], content=layer.data[5000:], headers={"Content-Range": f"5000-{layer.size - 1}"})
        assert r.status_code == 202, r.text
        r = cl.put(q(r.headers["Location"], digest=layer.digest), headers={"Content-Type": OCTET})
        assert r.status_code == 201, r.text
        assert cl.get(f"/v2/left/app/blobs/{layer.digest}").content == layer.data
        assert_pulls(cl, "left/app", "v1", m)
    srv.stop()


def check_text(root: Path, tmp: Path) -> str:
    """`fastreg check`'s text output, with the configuration run_check last wrote."""
    p = subprocess.run([sys.executable, "-m", "fastreg", "check", "--config", str(tmp / "check.yml")],
                       check=False, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": checkout_pythonpath()})
    assert p.returncode in (0, 1, 4), (p.returncode, p.stdout, p.stderr)
    return p.stdout


def referrers(cl: httpx.Client, repo: str, subject: Manifest) -> set[str]:
    r = cl.get(f"/v2/{repo}/referrers/{subject.digest}")
    assert r.status_code == 200, r.text
    return {desc["digest"] for desc in r.json()["manifests"]}


def test_check_verifies_the_referrers_index(tmp_path: Path) -> None:
    """Every entry of the referrers index must name a manifest of the repository whose subject
    it is filed under, and every manifest with a subject must be filed: the server answers
    `GET /referrers` from the index, so a wrong entry lists a stranger and a lost one hides a
    signature.  `--repair` rebuilds the entries (an index: nothing is lost)."""
    image = make_manifest()
    other = make_manifest()
    sig = make_manifest(subject=image, artifact_type="application/vnd.example.signature")
    sbom = make_manifest(subject=image, artifact_type="application/vnd.example.sbom")
    srv = server(tmp_path)
    with httpx.Client(base_url=srv.url, timeout=30) as cl:
        push_manifest(cl, "ref/app", image, "v1")
        push_manifest(cl, "ref/app", other, "v2")
        push_manifest(cl, "ref/app", sig, sig.digest)
        push_manifest(cl, "ref/app", sbom, sbom.digest)
        assert referrers(cl, "ref/app", image) == {sig.digest, sbom.digest}
    srv.stop()
    root = srv.root
    rc, report = run_check(root, tmp_path)
    assert (rc, report["problems"], report["referrers"]) == (0, [], 2)

    index = root / V2 / "repositories/ref/app/_referrers/sha256"

    def entry(subject: Manifest | str, d: str) -> Path:
        s = subject.digest if isinstance(subject, Manifest) else subject
        return index / s.split(":")[1] / "sha256" / d.split(":")[1]

    nothing = "sha256:" + hashlib.sha256(b"never pushed").hexdigest()
    entry(image, nothing).mkdir(parents=True)                       # names no manifest
    (entry(image, nothing) / "link").write_text(nothing)
    entry(image, other.digest).mkdir(parents=True)                  # a manifest without a subject
    (entry(image, other.digest) / "link").write_text(other.digest)
    entry(other, sbom.digest).parent.mkdir(parents=True)            # filed under the wrong subject
    entry(image, sbom.digest).rename(entry(other, sbom.digest))
    shutil.rmtree(entry(image, sig.digest))                         # lost

    srv = server(tmp_path)                  # the damage is what the server answers
    with httpx.Client(base_url=srv.url, timeout=30) as cl:
        assert referrers(cl, "ref/app", image) == {other.digest}
        assert referrers(cl, "ref/app", other) == {sbom.digest}
    srv.stop()

    before = stored_files(root)
    rc, report = run_check(root, tmp_path)
    assert rc == 4 and stored_files(root) == before
    found = {(p["kind"], p["path"], p["digest"]) for p in report["problems"]}
    assert found == {
        ("dangling-referrer", driver_path(root, entry(image, nothing) / "link"), nothing),
        ("mismatched-referrer", driver_path(root, entry(image, other.digest) / "link"), other.digest),
        ("mismatched-referrer", driver_path(root, entry(other, sbom.digest) / "link"), sbom.digest),
        ("missing-referrer", driver_path(root, entry(image, sig.digest) / "link"), sig.digest),
        ("missing-referrer", driver_path(root, entry(image, sbom.digest) / "link"), sbom.digest),
    }, report["problems"]
    assert {p["repository"] for p in report["problems"]} == {"ref/app"}
    why = {p["digest"]: p["detail"] for p in report["problems"] if p["kind"] == "mismatched-referrer"}
    assert why[other.digest].endswith("the manifest has no subject")
    assert why[sbom.digest].endswith(f"the manifest subject is {image.digest}")

    rc, report = run_check(root, tmp_path, "--repair")
    assert rc == 1
    assert sorted(p["repaired"] for p in report["problems"]) == ["indexed", "indexed", "removed", "removed", "removed"]
    entries = {(s.name, d.name) for s in index.iterdir() for d in (s / "sha256").iterdir()}
    assert entries == {(image.digest[7:], sig.digest[7:]), (image.digest[7:], sbom.digest[7:])}
    assert (entry(image, sig.digest) / "link").read_text() == sig.digest
    rc, report = run_check(root, tmp_path)
    assert (rc, report["problems"], report["referrers"]) == (0, [], 2)

    srv = server(tmp_path)
    with httpx.Client(base_url=srv.url, timeout=30) as cl:
        assert referrers(cl, "ref/app", image) == {sig.digest, sbom.digest}
        assert referrers(cl, "ref/app", other) == set()
        assert_pulls(cl, "ref/app", "v1", image)
    srv.stop()
