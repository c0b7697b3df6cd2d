"""`fastreg gc`: exactly the unreferenced content goes, survivors are byte-exact, --dry-run
deletes nothing, the grace period keeps young content, and Distribution's own collector
(Debian's `docker-registry garbage-collect`) agrees on the same data except where fastreg's
referrers rule differs on purpose."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest

from tests.interop.conftest import make_distribution
from tests.support.registry_client import OCI_INDEX, OCI_MANIFEST, Blob, make_manifest, push_manifest

from .conftest import V2, Template, blob_set, gc_config, run_distribution_gc, run_fastreg_gc, serve_copy, tree
from .scenario import SIG_TYPE

pytestmark = pytest.mark.e2e
ACCEPT = f"{OCI_INDEX}, {OCI_MANIFEST}"
WEB = "app/web"


def _freed(stdout: str) -> int:
    m = re.search(r"(?:would free|freed) (\d+) bytes", stdout)
    assert m, stdout
    return int(m.group(1))


def _check_served(srv_url: str, template: Template, survivors: set[str], untagged_gone: bool) -> None:
    """Through a real fastreg on the collected data: survivors pull byte-exact, the rest are gone."""
    sc = template.scenario
    every = sc.all_blobs()
    with httpx.Client(base_url=srv_url, timeout=30.0, headers={"Accept": ACCEPT}) as c:
        for repo, names in ((WEB, [n for n in sc.manifests if n != "F"]), ("lib/base", ["F"])):
            for n in names:
                m = sc.manifests[n]
                r = c.get(f"/v2/{repo}/manifests/{m.digest}")
                if m.digest in survivors:
                    assert r.status_code == 200 and r.content == m.body, (n, r.status_code)
                    for b in m.blobs:
                        rb = c.get(f"/v2/{repo}/blobs/{b.digest}")
                        assert rb.status_code == 200 and rb.content == every[b.digest], (n, b.digest)
                else:
                    assert r.status_code == 404, (n, r.status_code)
        for tag, n in (("v1", "A"), ("old", "A"), ("v2", "B"), ("multi", "I")):
            r = c.get(f"/v2/{WEB}/manifests/{tag}")
            assert r.status_code == 200 and r.content == sc.manifests[n].body, tag
        r = c.get(f"/v2/{WEB}/referrers/{sc.manifests['A'].digest}")
        assert [d["digest"] for d in r.json()["manifests"]] == [sc.manifests["S"].digest]
        # The orphan's layer link went with its blob.
        assert c.head(f"/v2/{WEB}/blobs/{sc.orphan.digest}").status_code == 404


@pytest.mark.parametrize("untagged", [False, True], ids=["all-revisions", "delete-untagged"])
def test_gc_deletes_exactly_the_unreferenced(tmp_path: Path, template: Template, untagged: bool) -> None:
    srv, root = serve_copy(tmp_path, template)
    before = blob_set(root)
    assert before == set(template.scenario.all_blobs())
    args = ["--delete-untagged"] if untagged else []
    proc = run_fastreg_gc(gc_config(tmp_path, root), *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = template.scenario.expected(untagged)
    assert blob_set(root) == expected
    gone = before - expected
    assert _freed(proc.stdout) == sum(len(template.scenario.all_blobs()[d]) for d in gone)
    for d in gone:
        assert f"deleted blob {d}" in proc.stdout
    # Layer links: only what a live manifest of the repository names is left.
    layers = root.joinpath(*V2, "repositories", "app", "web", "_layers")
    linked = {f"{p.parent.parent.name}:{p.parent.name}" for p in layers.glob("*/*/link")}
    live_blobs = {b.digest for n, m in template.scenario.manifests.items() if n != "F" for b in m.blobs}
    assert linked == live_blobs & expected
    if untagged:
        revs = root.joinpath(*V2, "repositories", "app", "web", "_manifests", "revisions")
        left = {f"{p.parent.parent.name}:{p.parent.name}" for p in revs.glob("*/*/link")}
        ms = template.scenario.manifests
        assert left == {ms[n].digest for n in ("A", "B", "I", "M1", "M2", "S", "S2", "S3")}
        # D's entry in the history of tag "old" went with it.
        hist = root.joinpath(*V2, "repositories", "app", "web", "_manifests", "tags", "old", "index")
        assert {f"{p.parent.parent.name}:{p.parent.name}" for p in hist.glob("*/*/link")} == {ms["A"].digest}
    srv.start()
    try:
        _check_served(srv.url, template, expected, untagged)
    finally:
        srv.stop()
    # A second run finds nothing more.
    again = run_fastreg_gc(gc_config(tmp_path, root), *args)
    assert again.returncode == 0 and _freed(again.stdout) == 0, again.stdout + again.stderr
    assert blob_set(root) == expected


def test_dry_run_deletes_nothing(tmp_path: Path, template: Template) -> None:
    root = template.copy(tmp_path / "data")
    before = tree(root)
    proc = run_fastreg_gc(gc_config(tmp_path, root), "--dry-run", "--delete-untagged")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert tree(root) == before
    listed = set(re.findall(r"^would delete blob (\S+) ", proc.stdout, re.MULTILINE))
    everything = template.scenario.all_blobs()
    assert listed == set(everything) - template.scenario.expected(True)
    assert _freed(proc.stdout) == sum(len(everything[d]) for d in listed)
    assert "gc: mark" in proc.stderr           # progress goes to stderr


def test_grace_period_keeps_young_content(tmp_path: Path, template: Template) -> None:
    root = template.copy(tmp_path / "data")     # everything is a day old
    proc = run_fastreg_gc(gc_config(tmp_path, root), "--delete-untagged", "--grace", "48h")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert blob_set(root) == set(template.scenario.all_blobs())
    assert _freed(proc.stdout) == 0
    # The same from the config file (fastreg.gc.graceperiod), and an explicit --grace wins over it.
    cfg = gc_config(tmp_path, root, {"fastreg": {"gc": {"graceperiod": "25h"}}})
    assert run_fastreg_gc(cfg, "--delete-untagged").returncode == 0
    assert blob_set(root) == set(template.scenario.all_blobs())
    assert run_fastreg_gc(cfg, "--delete-untagged", "--grace", "1h").returncode == 0
    assert blob_set(root) == template.scenario.expected(True)


@pytest.mark.interop
@pytest.mark.parametrize("untagged", [False, True], ids=["all-revisions", "delete-untagged"])
def test_differential_with_distribution_gc(tmp_path: Path, template: Template, untagged: bool) -> None:
    """Debian's `docker-registry garbage-collect` and `fastreg gc` on copies of one data directory."""
    ours = template.copy(tmp_path / "fastreg")
    theirs = template.copy(tmp_path / "distribution")
    args = ["--delete-untagged"] if untagged else []
    proc = run_fastreg_gc(gc_config(tmp_path, ours), "--grace", "0", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_distribution_gc(theirs, tmp_path, *args)
    sc = template.scenario
    if not untagged:
        assert blob_set(ours) == blob_set(theirs) == sc.expected(False)
        return
    # Two differences, both known:
    # 1. On purpose: fastreg keeps referrers whose subject is live (S on A, S2 on I, S3 on S);
    #    Distribution deletes every untagged manifest no index names.
    # 2. Distribution 2.8's bug (distribution/distribution#3004, #3178; fixed in 3.x by #3822):
    #    with --delete-untagged it deletes the config and layers of an index's untagged children
    #    (M1, M2), leaving the tagged index "multi" unpullable.  fastreg follows 3.x: children of a
    #    live index are live.
    children = {b.digest for n in ("M1", "M2") for b in sc.manifests[n].blobs} - sc.blobs_of("A", "B", "F")
    assert len(children) == 4
    assert blob_set(theirs) == sc.expected(True, referrers_follow_subject=False) - children
    assert blob_set(ours) == sc.expected(True)
    assert blob_set(ours) - blob_set(theirs) == (
        sc.expected(True) - sc.expected(True, referrers_follow_subject=False)) | children


@pytest.mark.interop
def test_gc_indexes_referrers_pushed_through_distribution(tmp_path: Path, template: Template) -> None:
    """Distribution keeps no referrers index: after `fastreg gc` on its data, fastreg lists them."""
    dist = make_distribution(tmp_path / "dist")
    dist.start()
    try:
        with httpx.Client(base_url=dist.url, timeout=30.0) as c:
            image = make_manifest()
            push_manifest(c, "signed/app", image, "v1")
            sig = make_manifest(Blob(b"{}", "application/vnd.oci.empty.v1+json"),
                                [Blob(b"a signature", "application/vnd.oci.image.layer.v1.tar")],
                                subject=image, artifact_type=SIG_TYPE)
            push_manifest(c, "signed/app", sig)
    finally:
        dist.stop()
    srv, root = serve_copy(tmp_path / "fr", template)
    shutil.rmtree(root)
    shutil.copytree(dist.root, root)
    cfg = gc_config(tmp_path, root)
    dry = run_fastreg_gc(cfg, "--dry-run")
    assert dry.returncode == 0 and f"would index referrer signed/app@{sig.digest}" in dry.stdout, dry.stdout
    srv.start()
    try:
        url = f"{srv.url}/v2/signed/app/referrers/{image.digest}"
        assert httpx.get(url).json()["manifests"] == []              # not indexed yet
        proc = run_fastreg_gc(cfg)
        assert proc.returncode == 0 and "referrers indexed: 1" in proc.stdout, proc.stdout + proc.stderr
        got = httpx.get(url).json()["manifests"]
        assert [(m["digest"], m.get("artifactType")) for m in got] == [(sig.digest, SIG_TYPE)]
    finally:
        srv.stop()
