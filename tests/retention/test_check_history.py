"""Push and pull history in `fastreg check`'s report: one line per repository (its tags and
manifests, its last push and the tag it wrote, its last pull and the pulls recorded, or why there
are none), the same in the JSON, and the history of each manifest a problem names — against
registries that served the pushes and pulls, one recording pulls and one not."""
from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from fastreg.storage import layout
from tests.support.registry_client import make_manifest, push_manifest
from tests.support.server import FastregServer
from tests.test_cli import fastreg

PUSHED = {"x": 1_800_000_000, "y": 1_800_000_100}     # the tags' (and their revisions') push times


def utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_push_time(srv: FastregServer, repo: str, digest: str, tag: str | None, t: float) -> None:
    alg, hex_ = digest.split(":")
    links = [layout.revision_link(repo, alg, hex_)] + ([layout.tag_current_link(repo, tag)] if tag else [])
    for link in links:
        os.utime(srv.root / link.lstrip("/"), (t, t))


def _pull_files(srv: FastregServer, repo: str) -> list[Path]:
    return list((srv.root / "docker/registry/v2/_fastreg_history/pulls" / repo).rglob("*.json"))


def test_check_reports_push_and_pull_history(fastreg_factory: Any) -> None:
    srv: FastregServer = fastreg_factory({"fastreg": {"history": {"pulls": True, "flushinterval": "200ms"}}})
    m, other, quiet = make_manifest(), make_manifest(), make_manifest()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        push_manifest(c, "ci/app", m, "x")
        push_manifest(c, "ci/app", other, "y")
        push_manifest(c, "ci/quiet", quiet, "v1")          # never pulled
        for _ in range(4):
            assert c.get("/v2/ci/app/manifests/x").status_code == 200
        for _ in range(2):
            assert c.get(f"/v2/ci/app/manifests/{m.digest}").status_code == 200
        started = time.time()
        assert c.get("/v2/ci/app/manifests/y").status_code == 200    # the last pull: by tag y
    srv.stop()                                                         # flushes what it gathered
    assert _pull_files(srv, "ci/app") and not _pull_files(srv, "ci/quiet")
    _set_push_time(srv, "ci/app", m.digest, "x", PUSHED["x"])
    _set_push_time(srv, "ci/app", other.digest, "y", PUSHED["y"])
    _set_push_time(srv, "ci/quiet", quiet.digest, "v1", PUSHED["x"])

    p = fastreg("check", "--config", str(srv.config_path))
    assert p.returncode == 0, p.stdout + p.stderr
    lines = {line.split(":", 1)[0]: line for line in p.stdout.splitlines() if line.startswith("repository ")}
    app = lines["repository ci/app"]
    prefix = f"repository ci/app: 2 tags, 2 manifests; last push {utc(PUSHED['y'])} (tag y); last pull "
    assert app.startswith(prefix) and app.endswith(" (tag y), 7 pulls recorded"), app
    last_pull = datetime.strptime(app[len(prefix):].split(" ")[0], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert int(started) - 1 <= last_pull.timestamp() <= time.time(), app
    assert lines["repository ci/quiet"] == (f"repository ci/quiet: 1 tags, 1 manifests; last push "
                                            f"{utc(PUSHED['x'])} (tag v1); no pulls recorded")
    # the same storage checked with a configuration that has pull history off: what was recorded stays
    cfg = yaml.safe_load(srv.config_path.read_text())
    cfg["fastreg"]["history"]["pulls"] = False
    off = srv.config_path.with_name("off.yml")
    off.write_text(yaml.safe_dump(cfg))
    p = fastreg("check", "--config", str(off))
    assert app.replace(" recorded", " recorded (pull history now off)") in p.stdout.splitlines(), p.stdout
    doc = json.loads(fastreg("check", "--json", "--config", str(srv.config_path)).stdout)
    (row,) = [h for h in doc["history"] if h["repository"] == "ci/app"]
    assert (row["tags"], row["manifests"], row["last_push"], row["last_push_tag"], row["last_push_digest"],
            row["pull_history"], row["pulls_recorded"], row["pulls"], row["last_pull_tag"]) == (
        2, 2, utc(PUSHED["y"]), "y", other.digest, "on", True, 7, "y")

    # the manifest x names loses its config blob: the problem line carries the manifest's history
    cfg_digest = json.loads(m.body)["config"]["digest"]
    (srv.root / "docker/registry/v2/blobs/sha256" / cfg_digest[7:9] / cfg_digest[7:] / "data").unlink()
    p = fastreg("check", "--config", str(srv.config_path))
    assert p.returncode == 4, p.stdout + p.stderr
    (line,) = [x for x in p.stdout.splitlines() if x.startswith("missing-reference: ci/app:x: ")]
    assert f" (last pushed {utc(PUSHED['x'])}; last pulled " in line and ", 6 pulls) (" in line, line
    doc = json.loads(fastreg("check", "--json", "--config", str(srv.config_path)).stdout)
    (prob,) = [q for q in doc["problems"] if q["kind"] == "missing-reference"]
    assert prob["history"]["pushed"] == utc(PUSHED["x"]) and prob["history"]["pulls"] == 6, prob


def test_check_says_pull_history_is_off(fastreg_factory: Any) -> None:
    srv: FastregServer = fastreg_factory()                  # fastreg.history.pulls: false (the default)
    m = make_manifest()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        push_manifest(c, "ci/app", m, "x")
        assert c.get("/v2/ci/app/manifests/x").status_code == 200
    srv.stop()
    _set_push_time(srv, "ci/app", m.digest, "x", PUSHED["x"])
    p = fastreg("check", "--config", str(srv.config_path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert (f"repository ci/app: 1 tags, 1 manifests; last push {utc(PUSHED['x'])} (tag x); "
            "pull history off (fastreg.history.pulls)") in p.stdout.splitlines(), p.stdout
    doc = json.loads(fastreg("check", "--json", "--config", str(srv.config_path)).stdout)
    assert [(h["repository"], h["pull_history"], h["pulls_recorded"]) for h in doc["history"]] == [
        ("ci/app", "off", False)]
