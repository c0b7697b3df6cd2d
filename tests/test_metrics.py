"""The debug listener: Prometheus metrics merged across 2 granian workers, health, status."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.notify.conftest import Receiver
from tests.support.registry_client import make_manifest, push_manifest, unique_repo
from tests.support.server import free_port

pytestmark = pytest.mark.e2e


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = httpx.get(url, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(resp.text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict[Any, float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == w for k, w in labels.items()))


def per_process_requests(mdir: Path) -> dict[str, float]:
    """registry_http_requests_total per worker process, read from each process's sample file."""
    from prometheus_client.multiprocess import MultiProcessCollector

    out = {}
    for f in mdir.glob("counter_*.db"):
        n = sum(s.value for m in MultiProcessCollector.merge([str(f)], accumulate=True)
                for s in m.samples if s.name == "registry_http_requests_total")
        if n:
            out[f.stem.split("_")[-1]] = n
    return out


def debug_config(port: int, **extra: Any) -> dict[str, Any]:
    return {"http": {"debug": {"addr": f"127.0.0.1:{port}", "prometheus": {"enabled": True, "path": "/metrics"}}},
            **extra}


def test_metrics_add_up_across_two_workers(fastreg_factory: Any, tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.start()
    try:
        dport = free_port()
        mdir = tmp_path / "prom"
        cfg = debug_config(dport, notifications={"endpoints": [{"name": "hook", "url": receiver.url,
                                                                "backoff": "100ms"}]},
                           fastreg={"notifications": {"allowprivate": True, "pollinterval": "100ms"}})
        srv = fastreg_factory(cfg, env={"PROMETHEUS_MULTIPROC_DIR": str(mdir),
                                        "XDG_STATE_HOME": str(tmp_path / "state")}, workers=2)
        metrics_url = f"http://127.0.0.1:{dport}/metrics"
        before = scrape(metrics_url)
        assert value(before, "registry_http_requests_total", handler="manifest", method="PUT", code="201") == 0
        # Both workers must have answered something, so that the totals below are merged from
        # two processes (the kernel picks the worker of each new connection).
        probes = 0
        while len(per_process_requests(mdir)) < 2 and probes < 400:
            httpx.get(srv.url + "/v2/", timeout=10)
            probes += 1
        assert len(per_process_requests(mdir)) == 2, "one worker answered every connection"

        repo = unique_repo("metrics")
        images = [make_manifest() for _ in range(4)]
        sent_bytes = 0
        for i, m in enumerate(images):
            # a new connection per image, so the kernel spreads them over both workers
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                push_manifest(c, repo, m, f"v{i}")
            sent_bytes += sum(b.size for b in m.blobs)
        layer = images[0].blobs[1]
        for _ in range(6):
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                assert c.get(f"/v2/{repo}/manifests/v0").status_code == 200
                assert c.get(f"/v2/{repo}/blobs/{layer.digest}").content == layer.data
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            assert c.get(f"/v2/{repo}/manifests/nope").status_code == 404
        receiver.wait_for(lambda e: len(e) >= 4 * 3 + 6 * 2, log=srv.log)

        s = scrape(metrics_url)
        req = "registry_http_requests_total"
        per_pid = per_process_requests(mdir)
        assert sum(per_pid.values()) == total(s, req)      # the scrape is the sum of the processes
        assert value(s, req, handler="manifest", method="PUT", code="201") == 4
        assert value(s, req, handler="upload_start", method="POST", code="202") == 8
        assert value(s, req, handler="upload", method="PUT", code="201") == 8
        assert value(s, req, handler="manifest", method="GET", code="200") == 6
        assert value(s, req, handler="blob", method="GET", code="200") == 6
        assert value(s, req, handler="manifest", method="GET", code="404") == 1
        assert value(s, "registry_http_request_duration_seconds_count", handler="manifest", method="GET") == 7
        assert value(s, "registry_http_request_duration_seconds_bucket", handler="manifest", method="GET",
                     le="+Inf") == 7
        assert value(s, "registry_http_request_size_bytes_total", handler="upload") == sent_bytes
        assert value(s, "registry_http_response_size_bytes_total", handler="blob") == 6 * layer.size
        assert value(s, "registry_http_response_size_bytes_total", handler="manifest") >= \
            6 * len(images[0].body)
        assert value(s, "registry_uploads_total", outcome="started") == 8
        assert value(s, "registry_uploads_total", outcome="committed") == 8
        assert value(s, "registry_uploads_total", outcome="failed") == 0
        assert value(s, "registry_storage_action_seconds_count", driver="filesystem", action="commit") == 8
        assert total(s, "registry_storage_action_seconds_count", driver="filesystem") > 8
        assert value(s, "registry_notifications_events_total", endpoint="hook") == 4 * 3 + 6 * 2
        assert total(s, "registry_notifications_errors_total") == 0
    finally:
        receiver.stop()


def test_webhook_failure_metrics(fastreg_factory: Any, tmp_path: Path) -> None:
    receiver = Receiver()                     # never started: every POST fails
    dport = free_port()
    cfg = debug_config(dport, notifications={"endpoints": [{"name": "down", "url": receiver.url,
                                                            "threshold": 2, "backoff": "50ms"}]},
                       fastreg={"notifications": {"allowprivate": True, "maxbackoff": "100ms"}})
    srv = fastreg_factory(cfg, env={"XDG_STATE_HOME": str(tmp_path / "state")})
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        push_manifest(c, unique_repo("metrics"), make_manifest(), "v1")
    url = f"http://127.0.0.1:{dport}/metrics"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        s = scrape(url)
        # the gauge is refreshed at each failure: the events recorded after one count at the next
        if value(s, "registry_notifications_retries_total", endpoint="down") >= 2 and \
                value(s, "registry_notifications_pending", endpoint="down") == 3:
            break
        time.sleep(0.1)
    assert total(s, "registry_notifications_errors_total", endpoint="down") >= 3
    assert value(s, "registry_notifications_retries_total", endpoint="down") >= 2
    assert value(s, "registry_notifications_pending", endpoint="down") == 3
    assert value(s, "registry_notifications_events_total", endpoint="down") == 0
    status = httpx.get(f"http://127.0.0.1:{dport}/debug/status", timeout=10).json()
    assert status["notifications"] == {"endpoints": ["down"], "pending": {"down": 3}, "dropped": 0}
    assert status["workers"] == 1 and status["storage"] == "filesystem"


def test_health_reports_storage(fastreg_factory: Any, tmp_path: Path) -> None:
    dport = free_port()
    srv = fastreg_factory(debug_config(dport))
    base = f"http://127.0.0.1:{dport}"
    r = httpx.get(f"{base}/debug/health", timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["checks"]["storagedriver_filesystem"]["status"] == "ok"
    assert httpx.get(f"{base}/livez", timeout=10).status_code == 200
    assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
    assert httpx.get(f"{base}/nothing", timeout=10).status_code == 404
    assert httpx.post(f"{base}/debug/health", timeout=10).status_code == 405
    # make the storage unreachable: the root becomes a symlink loop
    root = srv.root
    moved = root.with_name("data-moved")
    os.rename(root, moved)
    os.symlink(root, root)
    try:
        r = httpx.get(f"{base}/debug/health", timeout=10)
        assert r.status_code == 503
        check = r.json()["checks"]["storagedriver_filesystem"]
        assert check["status"] == "error" and "error" in check
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 503
    finally:
        os.unlink(root)
        os.rename(moved, root)
    assert httpx.get(f"{base}/debug/health", timeout=10).status_code == 200


def test_no_debug_listener_without_addr(fastreg_factory: Any) -> None:
    srv = fastreg_factory({"http": {"debug": {"prometheus": {"enabled": True}}}})
    assert "metrics are off" in srv.log()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        assert c.get(f"/v2/{unique_repo('m')}/tags/list").status_code == 404


def test_health_reports_every_configured_check(fastreg_factory: Any, tmp_path: Path) -> None:
    dport = free_port()
    down = tmp_path / "down"
    closed = f"127.0.0.1:{free_port()}"          # nothing listens there
    fastreg_factory(debug_config(dport, health={"file": [{"file": str(down)}], "tcp": [{"addr": closed}]}))
    url = f"http://127.0.0.1:{dport}/debug/health"
    checks = httpx.get(url, timeout=10).json()["checks"]
    assert set(checks) == {"storagedriver_filesystem", str(down), closed}
    assert checks[str(down)]["status"] == "ok" and checks[closed]["status"] == "error"
    down.write_text("")
    r = httpx.get(url, timeout=10)
    assert r.status_code == 503 and r.json()["checks"][str(down)] == {
        "status": "error", "error": "file exists", "seconds": r.json()["checks"][str(down)]["seconds"]}
