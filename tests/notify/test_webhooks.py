"""Webhook notifications end to end: a real fastreg, a real receiver on 127.0.0.1, httpx as client."""
from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastreg.notify.events import MEDIA_TYPE
from tests.support.registry_client import OCI_MANIFEST, OCTET, make_manifest, push_blob, push_manifest, unique_repo

from .conftest import Receiver

pytestmark = pytest.mark.e2e


def hook_config(*receivers: Receiver, own: dict[str, Any] | None = None, **endpoint: Any) -> dict[str, Any]:
    eps = [{"name": f"hook{i}", "url": r.url, "timeout": "2s", "threshold": 3, "backoff": "100ms",
            **endpoint} for i, r in enumerate(receivers)]
    return {"notifications": {"endpoints": eps},
            "fastreg": {"notifications": {"allowprivate": True, "maxbackoff": "200ms", **(own or {})}}}


def state_env(tmp_path: Path) -> dict[str, str]:
    return {"XDG_STATE_HOME": str(tmp_path / "state")}


def test_push_sends_distribution_events(fastreg_factory: Any, receiver: Receiver, tmp_path: Path) -> None:
    cfg = hook_config(receiver, headers={"Authorization": ["Bearer s3cret"], "X-Extra": ["a", "b"]})
    srv = fastreg_factory(cfg, env=state_env(tmp_path))
    repo = unique_repo("notify")
    m = make_manifest()
    with httpx.Client(base_url=srv.url, timeout=30, headers={"User-Agent": "notify-test/1"}) as c:
        push_manifest(c, repo, m, "v1")
    evs = receiver.wait_for(lambda e: len(e) >= 3, log=srv.log)
    assert len(evs) == 3
    post = receiver.posts[0]
    assert post.path == "/hook"
    assert post.headers["content-type"] == MEDIA_TYPE
    assert post.headers["authorization"] == "Bearer s3cret"
    assert post.headers["x-extra"] in ("a", "b")
    blobs = [e for e in evs if e["target"]["mediaType"] == OCTET]
    manifests = [e for e in evs if e["target"]["mediaType"] == OCI_MANIFEST]
    assert {e["target"]["digest"] for e in blobs} == {b.digest for b in m.blobs}
    assert len(manifests) == 1
    for e in evs:
        assert e["action"] == "push"
        uuid.UUID(e["id"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", e["timestamp"])
        datetime.fromisoformat(e["timestamp"])
        t = e["target"]
        assert t["repository"] == repo
        assert t["size"] == t["length"] > 0
        r = e["request"]
        uuid.UUID(r["id"])
        assert r["addr"].startswith("127.0.0.1:")
        assert r["host"] == srv.host
        assert r["method"] == "PUT"
        assert r["useragent"] == "notify-test/1"
        assert e["actor"] == {}
        assert e["source"]["addr"].endswith(f":{srv.port}")
        uuid.UUID(e["source"]["instanceID"])
    for b in blobs:
        assert b["target"]["url"] == f"{srv.url}/v2/{repo}/blobs/{b['target']['digest']}"
        assert "tag" not in b["target"]
    mt = manifests[0]["target"]
    assert mt["digest"] == m.digest and mt["size"] == len(m.body) and mt["tag"] == "v1"
    assert mt["url"] == f"{srv.url}/v2/{repo}/manifests/{m.digest}"
    assert "references" not in mt                   # only with notifications.events.includereferences
    assert len({e["id"] for e in evs}) == 3
    assert len({e["source"]["instanceID"] for e in evs}) == 1


def test_include_references(fastreg_factory: Any, receiver: Receiver, tmp_path: Path) -> None:
    """notifications.events.includereferences (Distribution 3): a manifest's push and pull events
    list its config and layers (an index: its manifests) as descriptors."""
    cfg = hook_config(receiver)
    cfg["notifications"]["events"] = {"includereferences": True}
    srv = fastreg_factory(cfg, env=state_env(tmp_path))
    repo = unique_repo("notify")
    m = make_manifest()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        push_manifest(c, repo, m, "v1")
        assert c.get(f"/v2/{repo}/manifests/v1").status_code == 200
    evs = receiver.wait_for(lambda e: len(e) >= 4, log=srv.log)
    want = [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in m.blobs]
    manifest_events = [e for e in evs if e["target"].get("digest") == m.digest]
    assert sorted(e["action"] for e in manifest_events) == ["pull", "push"]
    for e in manifest_events:
        assert e["target"]["references"] == want
    assert all("references" not in e["target"] for e in evs if e["target"].get("digest") != m.digest)


def test_pull_mount_delete_events(fastreg_factory: Any, receiver: Receiver, tmp_path: Path) -> None:
    srv = fastreg_factory(hook_config(receiver), env=state_env(tmp_path))
    repo, other = unique_repo("notify"), unique_repo("notify")
    m = make_manifest()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        push_manifest(c, repo, m, "v1")
        receiver.wait_for(lambda e: len(e) >= 3, log=srv.log)
        assert c.get(f"/v2/{repo}/manifests/v1").status_code == 200
        assert c.head(f"/v2/{repo}/manifests/v1").status_code == 200       # HEAD: no event
        layer = m.blobs[1]
        assert c.get(f"/v2/{repo}/blobs/{layer.digest}").status_code == 200
        r = c.post(f"/v2/{other}/blobs/uploads/", params={"mount": layer.digest, "from": repo})
        assert r.status_code == 201
        assert c.delete(f"/v2/{repo}/manifests/{m.digest}").status_code == 202
    evs = receiver.wait_for(lambda e: len(e) >= 7, log=srv.log)
    by = {(e["action"], e["target"].get("digest")): e for e in evs[3:]}
    assert Counter(e["action"] for e in evs[3:]) == {"pull": 2, "mount": 1, "delete": 1}
    pm = by[("pull", m.digest)]["target"]
    assert pm["mediaType"] == OCI_MANIFEST and pm["tag"] == "v1" and pm["size"] == len(m.body)
    assert by[("pull", m.digest)]["request"]["method"] == "GET"
    pb = by[("pull", layer.digest)]["target"]
    assert pb["size"] == layer.size and pb["url"].endswith(f"/v2/{repo}/blobs/{layer.digest}")
    mt = by[("mount", layer.digest)]["target"]
    assert mt["repository"] == other and mt["fromRepository"] == repo and mt["size"] == layer.size
    dl = by[("delete", m.digest)]
    assert dl["target"]["repository"] == repo and dl["request"]["method"] == "DELETE"


def test_ignore_rules(fastreg_factory: Any, tmp_path: Path) -> None:
    a, b = Receiver(), Receiver()
    a.start()
    b.start()
    try:
        cfg = hook_config(a, b)
        eps = cfg["notifications"]["endpoints"]
        eps[0]["ignore"] = {"actions": ["pull"]}
        eps[1]["ignoredmediatypes"] = [OCTET]               # Distribution's older spelling
        eps[1]["ignore"] = {"mediatypes": ["application/x-none"], "actions": ["delete"]}
        srv = fastreg_factory(cfg, env=state_env(tmp_path))
        repo = unique_repo("notify")
        m = make_manifest()
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            push_manifest(c, repo, m, "v1")
            assert c.get(f"/v2/{repo}/manifests/v1").status_code == 200
            assert c.get(f"/v2/{repo}/blobs/{m.blobs[0].digest}").status_code == 200
            assert c.delete(f"/v2/{repo}/manifests/{m.digest}").status_code == 202
        # a: everything but pulls (3 pushes + 1 delete); b: manifests only, no deletes (push + pull)
        ea = a.wait_for(lambda e: len(e) >= 4, log=srv.log)
        eb = b.wait_for(lambda e: len(e) >= 2, log=srv.log)
        # one more event through both, so that nothing else can still be on its way
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            push_manifest(c, repo, make_manifest(), "v2")
        ea = a.wait_for(lambda e: any(x["target"].get("tag") == "v2" for x in e), log=srv.log)
        eb = b.wait_for(lambda e: any(x["target"].get("tag") == "v2" for x in e), log=srv.log)
        assert Counter(e["action"] for e in ea) == {"push": 6, "delete": 1}
        assert Counter(e["action"] for e in eb) == {"push": 2, "pull": 1}
        assert all(e["target"]["mediaType"] == OCI_MANIFEST for e in eb)
        # the same event has the same id at both endpoints
        assert {e["id"] for e in eb if e["action"] == "push"} <= {e["id"] for e in ea}
    finally:
        a.stop()
        b.stop()


def test_outage_then_every_event_arrives_once(fastreg_factory: Any, receiver: Receiver, tmp_path: Path) -> None:
    receiver.stop()
    srv = fastreg_factory(hook_config(receiver, own={"batch": 4}), env=state_env(tmp_path))
    repo = unique_repo("notify")
    digests = []
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        for i in range(5):
            m = make_manifest()
            push_manifest(c, repo, m, f"t{i}")
            digests += [m.digest, *(b.digest for b in m.blobs)]
    assert "delivery of" in srv.log()           # it tried and failed while the receiver was down
    receiver.start()
    evs = receiver.wait_for(lambda e: len({x["id"] for x in e}) >= 15, log=srv.log)
    assert Counter(e["target"]["digest"] for e in evs) == Counter(digests)
    assert len({e["id"] for e in evs}) == len(evs) == 15
    assert max(len(p.body["events"]) for p in receiver.posts) > 1      # batched
    assert all(len(p.body["events"]) <= 4 for p in receiver.posts)


def test_events_survive_kill_and_restart(fastreg_factory: Any, receiver: Receiver, tmp_path: Path) -> None:
    receiver.stop()
    env = state_env(tmp_path)
    srv = fastreg_factory(hook_config(receiver), env=env, workers=2)
    repo = unique_repo("notify")
    images = [make_manifest() for _ in range(3)]
    for i, m in enumerate(images):
        with httpx.Client(base_url=srv.url, timeout=30) as c:      # new connections: both workers
            push_manifest(c, repo, m, f"v{i}")
    srv.kill()                                   # SIGKILL to the whole process group
    outboxes = list((tmp_path / "state" / "fastreg" / "outbox").glob("*/outbox.sqlite3"))
    assert len(outboxes) == 1                    # the default location, under XDG_STATE_HOME
    receiver.start()
    srv.start()                                  # same config, same outbox
    expected = sorted(d for m in images for d in [m.digest, *(b.digest for b in m.blobs)])
    evs = receiver.wait_for(lambda e: len({x["id"] for x in e}) >= len(expected), log=srv.log)
    assert sorted({e["id"]: e["target"]["digest"] for e in evs}.values()) == expected   # none lost
    # none twice under different ids; a copy under the same id is a redelivery (allowed)
    assert len({e["id"] for e in evs}) == len(expected)
    assert len({e["source"]["instanceID"] for e in evs}) == 1   # all recorded by the first run


def test_actor_is_the_authenticated_user(fastreg_factory: Any, receiver: Receiver, tmp_path: Path) -> None:
    from fastreg.auth.htpasswd import add_user

    htpasswd = tmp_path / "htpasswd"
    add_user(htpasswd, "alice", "alice-pw", cost=5)
    cfg = hook_config(receiver)
    cfg["auth"] = {"htpasswd": {"realm": "r", "path": str(htpasswd)}}
    srv = fastreg_factory(cfg, env=state_env(tmp_path))
    with httpx.Client(base_url=srv.url, timeout=30, auth=("alice", "alice-pw")) as c:
        d = push_blob(c, unique_repo("notify"), b"by alice")
    evs = receiver.wait_for(lambda e: len(e) >= 1, log=srv.log)
    assert evs[0]["target"]["digest"] == d
    assert evs[0]["actor"] == {"name": "alice"}


def test_redelivery_keeps_the_event_id(fastreg_factory: Any, receiver: Receiver, tmp_path: Path) -> None:
    receiver.fail_first = 2                      # takes the first two POSTs, then says they failed
    srv = fastreg_factory(hook_config(receiver), env=state_env(tmp_path))
    repo = unique_repo("notify")
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        d = push_blob(c, repo, b"redelivered " + uuid.uuid4().bytes)
        receiver.wait_for(lambda e: len(e) >= 3, log=srv.log)
        marker = push_blob(c, repo, b"marker " + uuid.uuid4().bytes)
    evs = receiver.wait_for(lambda e: any(x["target"]["digest"] == marker for x in e), log=srv.log)
    copies = [e for e in evs if e["target"]["digest"] == d]
    assert len(copies) == 3                      # two refused, one taken, then no more
    assert len({e["id"] for e in copies}) == 1   # every copy carries the same id
    assert len(evs) == 4


def test_two_workers_deliver_each_event(fastreg_factory: Any, receiver: Receiver, tmp_path: Path) -> None:
    srv = fastreg_factory(hook_config(receiver, own={"pollinterval": "100ms"}), env=state_env(tmp_path), workers=2)
    repo = unique_repo("notify")
    digests = []
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        for i in range(6):
            d = push_blob(c, repo, f"blob {i} {uuid.uuid4()}".encode())
            digests.append(d)
    evs = receiver.wait_for(lambda e: len({x["id"] for x in e}) >= 6, log=srv.log)
    assert sorted({e["target"]["digest"] for e in evs}) == sorted(digests)
    assert len(evs) == 6


def test_outbox_bound_drops_the_oldest(fastreg_factory: Any, receiver: Receiver, tmp_path: Path) -> None:
    receiver.stop()
    srv = fastreg_factory(hook_config(receiver, own={"maxevents": 3}), env=state_env(tmp_path))
    repo = unique_repo("notify")
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        digests = [push_blob(c, repo, f"bounded {i} {uuid.uuid4()}".encode()) for i in range(5)]
    assert "dropped the 1 oldest" in srv.log()
    receiver.start()
    receiver.wait_for(lambda e: len(e) >= 3, log=srv.log)
    with httpx.Client(base_url=srv.url, timeout=30) as c:   # a marker: once it arrives, nothing older is left
        last = push_blob(c, repo, b"marker")
    evs = receiver.wait_for(lambda e: any(x["target"]["digest"] == last for x in e), log=srv.log)
    assert [e["target"]["digest"] for e in evs] == [*digests[2:], last]


def test_private_targets_refused_without_allowprivate(fastreg_factory: Any, receiver: Receiver,
                                                      tmp_path: Path) -> None:
    cfg = hook_config(receiver, own={"allowprivate": False})
    srv = fastreg_factory(cfg, env=state_env(tmp_path))
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        push_blob(c, unique_repo("notify"), b"not for loopback")
    deadline = time.monotonic() + 20
    while "not a public address" not in srv.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "127.0.0.1: not a public address" in srv.log()
    assert receiver.posts == []
