"""Storage quotas against running servers, over HTTP: the refusal a client sees (403 DENIED with
usage and limit, nothing stored changed), acceptance after a delete and ``fastreg gc``, the usage
endpoint and the metrics; and two replicas of two workers each, on one filesystem and on one moto S3
bucket, racing for the last bytes of a quota: exactly as many pushes as fit are admitted."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ops.conftest import tree
from tests.storage.conftest import S3Backend
from tests.storage.services import Service
from tests.support.registry_client import (
    assert_error,
    make_layer,
    make_manifest,
    push_blob,
    push_manifest,
    put_manifest,
)
from tests.support.server import REPO_ROOT, free_port
from tests.test_metrics import debug_config, scrape, value

from .common import cost


def test_refusal_over_http_then_accepted_after_delete_and_gc(fastreg_factory: Any, tmp_path: Path) -> None:
    base = make_layer(3000)
    a = make_manifest(layers=[base, make_layer(2000)])
    b = make_manifest(layers=[base, make_layer(2500)])        # shares the base layer with a
    limit = cost(a, b) - 1
    dport = free_port()
    quota = {"quota": {"rules": [{"repository": "team/**", "limit": limit}]}}
    srv = fastreg_factory(debug_config(dport, fastreg=quota),
                          env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")})
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        push_manifest(c, "team/app", a, "v1")
        for blob in b.blobs:
            push_blob(c, "team/app", blob)
        before = tree(srv.root)
        r = put_manifest(c, "team/app", "v2", b)
        assert_error(r, 403, "DENIED")
        err = r.json()["errors"][0]
        added = cost(a, b) - cost(a)
        assert err["message"] == (f"storage quota exceeded: repositories matching 'team/**' use {cost(a)} bytes "
                                  f"({cost(a) / 1024:.1f} KiB) of {limit} ({limit / 1024:.1f} KiB, "
                                  f"fastreg.quota.rules.0); this manifest would add {added} bytes "
                                  f"({added / 1024:.1f} KiB)")
        assert err["detail"]["usage"] == cost(a) and err["detail"]["limit"] == limit
        assert tree(srv.root) == before                           # nothing stored changed
        assert c.get("/v2/team/app/manifests/v2").status_code == 404
        doc = c.get("/v2/_fastreg/usage/team/app").json()
        assert doc == {"name": "team/app", "bytes": cost(a), "quotas": [
            {"scope": "team/**", "key": "fastreg.quota.rules.0", "limit": limit, "usage": cost(a)}]}
        assert c.get("/v2/_fastreg/usage/team/none").status_code == 404
        assert c.delete(f"/v2/team/app/manifests/{a.digest}").status_code == 202
        gc = subprocess.run([sys.executable, "-m", "fastreg", "gc", "--config", str(srv.config_path), "--grace", "0s"],
                            check=False, capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        assert gc.returncode == 0, gc.stderr
        assert "storage quota: 1 repositories use 0 bytes" in gc.stdout, gc.stdout
        for blob in b.blobs:                                      # gc took the unreferenced layers
            push_blob(c, "team/app", blob)
        push_manifest(c, "team/app", b, "v2")
        assert c.get("/v2/_fastreg/usage/team/app").json()["bytes"] == cost(b)
        # a repository without tags is unknown to its tag list, not to its usage
        push_manifest(c, "other/untagged", make_manifest(layers=[]))
        assert_error(c.get("/v2/other/untagged/tags/list"), 404, "NAME_UNKNOWN")
        r = c.get("/v2/_fastreg/usage/other/untagged")
        assert r.status_code == 200 and r.json()["name"] == "other/untagged", r.text
    samples = scrape(f"http://127.0.0.1:{dport}/metrics")
    assert value(samples, "fastreg_quota_refusals_total", at="manifest") == 1
    assert value(samples, "fastreg_quota_usage_bytes", scope="team/**") == cost(b)
    assert value(samples, "fastreg_quota_limit_bytes", scope="team/**") == limit
    assert value(samples, "fastreg_storage_usage_bytes", prefix="team") == cost(b)


def _race(urls: list[str], repo: str, n: int, room: int) -> None:
    """`n` images of equal cost, blobs pushed first; then every manifest PUT at once, spread over
    `urls` on fresh connections (so over each server's workers); the quota has room for `room`."""
    images = [make_manifest(layers=[make_layer(1000)]) for _ in range(n)]
    each = cost(images[0])
    assert all(cost(m) == each for m in images)
    with httpx.Client(base_url=urls[0], timeout=60) as c:
        for m in images:
            for blob in m.blobs:
                push_blob(c, repo, blob)

    async def put(i: int) -> int:
        m = images[i]
        async with httpx.AsyncClient(base_url=urls[i % len(urls)], timeout=60) as ac:
            r = await ac.put(f"/v2/{repo}/manifests/t{i}", content=m.body, headers={"Content-Type": m.media_type})
            if r.status_code != 201:
                assert_error(r, 403, "DENIED")        # type: ignore[arg-type]
            return r.status_code

    async def main() -> list[int]:
        return await asyncio.gather(*(put(i) for i in range(n)))

    statuses = asyncio.run(main())
    assert sorted(statuses) == [201] * room + [403] * (n - room), statuses
    admitted = sorted(f"t{i}" for i, s in enumerate(statuses) if s == 201)
    for url in urls:
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.get(f"/v2/{repo}/tags/list").json()["tags"] == admitted
            doc = c.get(f"/v2/_fastreg/usage/{repo}").json()
            assert doc["bytes"] == room * each and doc["quotas"][0]["usage"] == room * each


def _quota(limit: int) -> dict[str, Any]:
    return {"quota": {"rules": [{"repository": "race/**", "limit": limit}]}}


def _each() -> int:
    return cost(make_manifest(layers=[make_layer(1000)]))


def test_two_replicas_of_two_workers_on_one_filesystem(fastreg_factory: Any, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    cfg = {"storage": {"filesystem": {"rootdirectory": str(shared)}}, "fastreg": _quota(5 * _each() + 100)}
    replicas = [fastreg_factory(cfg, workers=2), fastreg_factory(cfg, workers=2)]
    _race([r.url for r in replicas], "race/app", 14, 5)


def test_two_replicas_of_two_workers_on_one_s3_bucket(fastreg_factory: Any, moto_server: Service) -> None:  # noqa: F811
    params = S3Backend(moto_server).params(f"quota-{uuid.uuid4().hex[:8]}")
    cfg = {"storage": {"filesystem": None, "s3": params}, "fastreg": _quota(4 * _each() + 100)}
    replicas = [fastreg_factory(cfg, workers=2), fastreg_factory(cfg, workers=2)]
    _race([r.url for r in replicas], "race/app", 10, 4)


@pytest.mark.parametrize(("quota", "line"), [
    ({"limit": "ten"}, "fastreg.quota.limit: 'ten' is not a size"),
    ({"limit": -1}, "fastreg.quota.limit: must not be negative"),
    ({"rules": [{"repository": "a/**"}]}, "fastreg.quota.rules.0.limit: a quota needs a positive limit"),
    ({"rules": [{"limit": "1GiB"}]}, "fastreg.quota.rules.0.repository: a quota needs a repository glob"),
    ({"rules": [{"repository": "a/**", "limit": "1GB"}, {"repository": "a/**", "limit": 5}]},
     "fastreg.quota.rules.1.repository: 'a/**' has a quota already"),
    ({"rules": [{"repository": "a/**", "limit": 10, "size": 1}]},
     "unknown configuration key 'fastreg.quota.rules.0.size'"),
])
def test_a_wrong_quota_config_is_refused_with_one_line(tmp_path: Path, quota: dict[str, Any], line: str) -> None:
    import yaml
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"version": "0.1", "storage": {"inmemory": {}}, "fastreg": {"quota": quota}}))
    r = subprocess.run([sys.executable, "-m", "fastreg", "serve", "--config", str(path)], check=False,
                       capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert r.returncode != 0
    assert line in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_check_reports_drift_and_repair_recounts(fastreg_factory: Any, tmp_path: Path) -> None:
    srv = fastreg_factory({"fastreg": {"quota": {"rules": [{"repository": "d/**", "limit": "1GiB"}]}}})
    a, b = make_manifest(), make_manifest()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        push_manifest(c, "d/app", a, "a")
        push_manifest(c, "d/app", b, "b")
    srv.stop()
    record = srv.root / "docker/registry/v2/_fastreg_quota/repositories/d/app/_usage.json"
    record.unlink()
    record.write_text('{"manifests": {}, "blobs": {}}')            # drift: nothing counted

    def check(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fastreg", "check", "--config", str(srv.config_path), *extra],
                              check=False, capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})

    r = check()
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"quota drift: d/app: counted 0 bytes, its manifests reference {cost(a, b)}\n" in r.stdout, r.stdout
    assert "1 would be recounted (counted − recounted: " in r.stdout
    assert record.read_text() == '{"manifests": {}, "blobs": {}}'   # a plain check changes nothing
    r = check("--repair")
    assert f"reference {cost(a, b)} [recounted]" in r.stdout, r.stdout
    r = check()
    assert "quota drift" not in r.stdout and f"1 repositories use {cost(a, b)} bytes" in r.stdout, r.stdout
    assert "; no drift" in r.stdout
