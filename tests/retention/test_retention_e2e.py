"""`fastreg retention` against the data of a running server, and the server's own schedule: the dry run
prints what would go and which rule spares the rest and changes nothing; the real run deletes through
the manifest service (webhook ``delete`` events, counted in the metrics); bad configuration is refused
with one line."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.notify.conftest import Receiver
from tests.ops.conftest import tree
from tests.support.registry_client import make_layer, make_manifest, push_manifest
from tests.support.server import REPO_ROOT, free_port
from tests.test_metrics import debug_config, scrape, value

POLICIES = {"policies": [{"repository": "ci/*", "keep": {"lastpushed": 2, "tags": ["latest", "v*"]},
                          "untagged": "0s"}]}


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastreg", "retention", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def push_tags(c: httpx.Client, repo: str, tags: list[str]) -> dict[str, str]:
    base = make_layer(800)
    out = {}
    for tag in tags:
        m = make_manifest(layers=[base, make_layer(200)])
        push_manifest(c, repo, m, tag)
        out[tag] = m.digest
    return out


def tag_list(c: httpx.Client, repo: str) -> list[str]:
    return c.get(f"/v2/{repo}/tags/list").json()["tags"]  # type: ignore[no-any-return]


def test_cli_dry_run_then_run_with_webhooks(fastreg_factory: Any, tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.start()
    try:
        cfg = {"notifications": {"endpoints": [{"name": "hook", "url": receiver.url, "backoff": "100ms"}]},
               "fastreg": {"retention": POLICIES,
                           "immutability": {"rules": [{"repository": "ci/*", "tags": ["keep-*"]}]},
                           "notifications": {"allowprivate": True, "pollinterval": "100ms",
                                             "outbox": str(tmp_path / "outbox")}}}
        srv = fastreg_factory(cfg)
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            digests = push_tags(c, "ci/app", ["v1", "keep-me", "old-1", "old-2", "old-3", "latest", "new-1", "new-2"])
            push_tags(c, "other/app", ["old-1"])
            before = tree(srv.root)
            dry = run_cli(srv.config_path, "--dry-run")
            assert dry.returncode == 0, dry.stderr
            assert tree(srv.root) == before                                     # a dry run changes nothing
            lines = dry.stdout.splitlines()
            for t in ("old-1", "old-2", "old-3"):
                assert f"would delete tag ci/app:{t} (no keep rule matches)" in lines
            assert "keep tag ci/app:v1 (keep.tags 'v*')" in lines
            assert any(x.startswith("keep tag ci/app:keep-me (immutable: fastreg.immutability.rules.0") for x in lines)
            assert "keep tag ci/app:new-2 (keep.lastpushed 2 (#1 most recently pushed))" in lines
            assert f"would delete manifest ci/app@{digests['old-1']} (untagged 0s: reached by no kept tag)" in lines
            assert not any("other/app" in x for x in lines)
            assert lines[-1] == ("retention: 1 repositories under a policy; would delete 3 tags and "
                                 "3 untagged manifests; kept 5 tags")

            done = run_cli(srv.config_path)
            assert done.returncode == 0, done.stderr
            assert tag_list(c, "ci/app") == ["keep-me", "latest", "new-1", "new-2", "v1"]
            assert tag_list(c, "other/app") == ["old-1"]
            for t in ("old-1", "old-2", "old-3"):
                assert c.get(f"/v2/ci/app/manifests/{digests[t]}").status_code == 404
            # the server delivers the events the command recorded in the shared outbox
            evs = receiver.wait_for(lambda e: sum(x["action"] == "delete" for x in e) >= 6, log=srv.log)
            deletes = [e for e in evs if e["action"] == "delete"]
            assert sorted(e["target"].get("tag", "") for e in deletes if "tag" in e["target"]) == \
                ["old-1", "old-2", "old-3"]
            assert sorted(e["target"]["digest"] for e in deletes if "digest" in e["target"]) == \
                sorted(digests[t] for t in ("old-1", "old-2", "old-3"))
            assert all(e["actor"] == {"name": "fastreg-retention"} for e in deletes)
    finally:
        receiver.stop()


def test_schedule_applies_the_policies(fastreg_factory: Any, tmp_path: Path) -> None:
    dport = free_port()
    srv = fastreg_factory(debug_config(dport), env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}, workers=2)
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        push_tags(c, "ci/app", ["a", "b", "c", "d"])
    # then the schedule: the same data under a server whose configuration has it (pushes that race a
    # run are tests/retention/test_delete_races.py's)
    srv.stop()
    cfg = yaml.safe_load(srv.config_path.read_text())
    cfg["fastreg"]["retention"] = {**POLICIES, "interval": "1s"}
    srv.config_path.write_text(yaml.safe_dump(cfg))
    srv.start()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        deadline = time.monotonic() + 30
        while tag_list(c, "ci/app") != ["c", "d"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert tag_list(c, "ci/app") == ["c", "d"], srv.log()
    samples: dict[Any, float] = {}
    while time.monotonic() < deadline:
        samples = scrape(f"http://127.0.0.1:{dport}/metrics")
        if value(samples, "fastreg_retention_deleted_total", kind="manifest") >= 2:
            break
        time.sleep(0.2)
    assert value(samples, "fastreg_retention_deleted_total", kind="tag") == 2
    assert value(samples, "fastreg_retention_deleted_total", kind="manifest") == 2


def test_bad_configuration_is_one_line(tmp_path: Path) -> None:
    for policy, message in (
            ({"repository": "ci/*", "keep": {}}, "fastreg.retention.policies.0.keep: keeps no tag at all"),
            ({"keep": {"lastpushed": 1}}, "fastreg.retention.policies.0.repository: a policy needs"),
            ({"repository": "x", "keep": {"lastpushed": -1}}, "must not be negative"),
            ({"repository": "x", "keep": {"lastpushd": 1}}, "unknown configuration key")):
        path = tmp_path / "bad.yml"
        path.write_text(yaml.safe_dump({"version": "0.1", "storage": {"inmemory": {}},
                                        "fastreg": {"retention": {"policies": [policy]}}}))
        r = run_cli(path, "--dry-run")
        assert r.returncode == 2
        assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    # deletes disabled: only a dry run may run
    path.write_text(yaml.safe_dump({"version": "0.1", "storage": {"inmemory": {}},
                                    "fastreg": {"retention": POLICIES}}))
    r = run_cli(path)
    assert r.returncode == 2 and r.stderr.strip() == ("fastreg retention: deletes are disabled "
                                                      "(storage.delete.enabled); only --dry-run can run")
    assert run_cli(path, "--dry-run").returncode == 0
    # pull rules need the pull history
    path.write_text(yaml.safe_dump({"version": "0.1", "storage": {"inmemory": {}}, "fastreg": {"retention": {
        "policies": [{"repository": "x", "keep": {"pulledwithin": "1h"}}]}}}))
    r = run_cli(path, "--dry-run")
    assert r.returncode == 2 and "fastreg.history.pulls: true" in r.stderr and len(r.stderr.splitlines()) == 1
