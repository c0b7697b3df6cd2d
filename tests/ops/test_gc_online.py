"""Online GC against a real `fastreg serve` (2 workers): `fastreg gc --grace 0` runs again and again
while a client pushes images that reuse old orphan blobs (found with HEAD, not uploaded again) and
pulls each one back byte for byte.  A push may be refused (MANIFEST_BLOB_UNKNOWN, then the
client pushes again, as real clients do); a push that succeeded must never lose anything."""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.registry_client import Blob, make_config, make_layer, make_manifest, push_blob, put_manifest

from .conftest import DAY, backdate, blob_set, run_fastreg_gc

pytestmark = pytest.mark.e2e
REPO = "race/app"
ORPHANS = 40
MAX_PUSHES = 300
DEADLINE = 120.0     # seconds: a bound on the loops, never an assertion
MIN_ROUNDS = 10


def _push(c: httpx.Client, tag: str, blobs: list[Blob]) -> tuple[bytes, int]:
    """Push like a client: HEAD each blob, upload what is missing, PUT the manifest; on
    MANIFEST_BLOB_UNKNOWN start again (at most 5 times).  Returns the manifest and the refusals."""
    m = make_manifest(blobs[0], blobs[1:])
    for refused in range(5):
        for b in blobs:
            if c.head(f"/v2/{REPO}/blobs/{b.digest}").status_code != 200:
                push_blob(c, REPO, b)
        r = put_manifest(c, REPO, tag, m)
        if r.status_code == 201:
            return m.body, refused
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN", r.text
    raise AssertionError(f"{tag}: refused 5 times")


def _pull_exact(c: httpx.Client, tag: str, body: bytes, blobs: list[Blob]) -> None:
    r = c.get(f"/v2/{REPO}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200 and r.content == body, (tag, r.status_code)
    for b in blobs:
        rb = c.get(f"/v2/{REPO}/blobs/{b.digest}")
        assert rb.status_code == 200 and rb.content == b.data, (tag, b.digest, rb.status_code)


def test_online_gc_with_a_concurrent_push_loop(fastreg_factory: Callable[..., Any]) -> None:
    srv = fastreg_factory(workers=2)
    with httpx.Client(base_url=srv.url, timeout=60.0) as c:
        orphans = [make_layer(4096) for _ in range(ORPHANS)]
        garbage = [make_layer(2048) for _ in range(10)]
        for b in orphans + garbage:
            push_blob(c, REPO, b)
        keep_blobs = [make_config(), make_layer(1000)]
        keep_body, _ = _push(c, "keep", keep_blobs)
        backdate(srv.root, DAY)

        stop = threading.Event()
        rounds: list[str] = []
        failures: list[str] = []

        def collector() -> None:
            t_end = time.monotonic() + DEADLINE
            while not stop.is_set() and time.monotonic() < t_end and len(rounds) < 50:
                proc = run_fastreg_gc(srv.config_path, "--grace", "0", "--delete-untagged", "-q")
                if proc.returncode != 0:
                    failures.append(proc.stdout + proc.stderr)
                    return
                rounds.append(proc.stdout.strip().splitlines()[-1])

        thread = threading.Thread(target=collector, daemon=True)
        thread.start()
        pushed: dict[str, tuple[bytes, list[Blob]]] = {}
        refusals = 0
        t_end = time.monotonic() + DEADLINE
        i = 0
        try:
            while i < MAX_PUSHES and time.monotonic() < t_end and (i < ORPHANS or len(rounds) < MIN_ROUNDS):
                blobs = [make_config(), make_layer(1024)] + ([orphans[i]] if i < ORPHANS else [])
                tag = f"t{i}"
                body, refused = _push(c, tag, blobs)
                refusals += refused
                _pull_exact(c, tag, body, blobs)           # just pushed: whole and exact
                pushed[tag] = (body, blobs)
                i += 1
        finally:
            stop.set()
            thread.join(timeout=DEADLINE)
        assert not failures, failures
        assert len(rounds) >= MIN_ROUNDS, f"only {len(rounds)} collections ran during {i} pushes"
        kept = sum(int(re.search(r"kept for concurrent pushes: (\d+)", r).group(1)) for r in rounds)  # type: ignore[union-attr]
        deleted = sum(int(re.search(r"deleted: (\d+) blobs", r).group(1)) for r in rounds)  # type: ignore[union-attr]
        print(f"\n{i} pushes ({refusals} refused and pushed again) during {len(rounds)} collections, which "
              f"deleted {deleted} blobs and kept {kept} candidates for concurrent pushes")

        # Quiet now: one more collection, then everything that was pushed is still whole.
        final = run_fastreg_gc(srv.config_path, "--grace", "0", "--delete-untagged")
        assert final.returncode == 0, final.stdout + final.stderr
        for tag, (body, blobs) in pushed.items():
            _pull_exact(c, tag, body, blobs)
        _pull_exact(c, "keep", keep_body, keep_blobs)
    # And the collections did collect: the garbage is gone, every orphan either named or gone.
    left = blob_set(srv.root)
    assert not {b.digest for b in garbage} & left
    named = {b.digest for _, blobs in pushed.values() for b in blobs}
    assert {b.digest for b in orphans} & left <= named


def test_background_collection_in_the_server(fastreg_factory: Callable[..., Any]) -> None:
    """fastreg.gc.interval: one worker of the server collects by itself, with the grace period."""
    srv = fastreg_factory({"log": {"level": "info"}, "fastreg": {"gc": {
        "interval": "1s", "graceperiod": "1h", "deleteuntagged": True}}}, workers=2)
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        old_orphan, young_orphan = make_layer(3000), make_layer(3000)
        push_blob(c, REPO, old_orphan)
        blobs = [make_config(), make_layer(1000)]
        body, _ = _push(c, "live", blobs)
        untagged = make_manifest()
        for b in untagged.blobs:
            push_blob(c, REPO, b)
        assert put_manifest(c, REPO, untagged.digest, untagged).status_code == 201
        backdate(srv.root, DAY)
        push_blob(c, REPO, young_orphan)               # younger than the grace period
        gone = {old_orphan.digest, untagged.digest, *(b.digest for b in untagged.blobs)}
        for _ in range(300):                           # bounded: 30 s
            if not gone & blob_set(srv.root):
                break
            time.sleep(0.1)
        assert not gone & blob_set(srv.root), srv.log()[-3000:]
        assert young_orphan.digest in blob_set(srv.root)
        _pull_exact(c, "live", body, blobs)
    assert "garbage collection: " in srv.log()
