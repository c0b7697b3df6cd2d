"""`python -m bench.objectstore [--rounds N] [--quick] [--scenarios a,b] [--out DIR]`.

fastreg and Distribution 3.1.1 (its s3 driver) on the same real object store: a single-node Ceph
cluster on 127.0.0.1 (one monitor, one in-memory OSD, the RGW S3 gateway from Debian's radosgw —
the cluster the storage tests start), each registry on its own key prefix of one bucket, with the
same config (redirects off: blobs stream through the registry, as behind a load balancer that
cannot reach the store). Runs push-large, push-small, ci-push and pull-manifest in alternation
for N rounds and writes results.json and results.md into bench/results/objectstore-<UTC time>/.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from . import report
from .runner import machine_busy, measure, progress
from .scenarios import BY_NAME, QUICK, Sizes
from .servers import Fastreg, Server

RESULTS = Path(__file__).resolve().parent / "results"
DISTRIBUTION3 = Path(__file__).resolve().parents[2] / "shared" / "tools" / "distribution-3.1.1" / "registry"
if not DISTRIBUTION3.exists():
    DISTRIBUTION3 = Path("/work/shared/tools/distribution-3.1.1/registry")
SCENARIOS = ("push-large", "push-small", "ci-push", "pull-manifest")
BUCKET = "bench"
PART = 10 << 20                  # both registries' S3 part size (Distribution's default)


def s3_params(endpoint: str, keys: dict[str, str], prefix: str) -> dict[str, Any]:
    return {"region": "us-east-1", "bucket": BUCKET, "regionendpoint": endpoint, "forcepathstyle": True,
            "secure": False, "rootdirectory": f"/{prefix}", "chunksize": PART, **keys}


class OnS3(Server):
    """A registry whose config stores in the bucket (everything else as bench/servers.py's)."""

    s3: dict[str, Any] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "config.yml"
        cfg.write_text(yaml.safe_dump({
            "version": "0.1",
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"s3": self.s3, "delete": {"enabled": True}, "redirect": {"disable": True},
                        "cache": {"blobdescriptor": "inmemory"}},
            "http": {"addr": f"127.0.0.1:{self.port}", "secret": "fastreg-bench-secret-0123456789abcdef"},
        }))
        with open(self.workdir / "server.log", "ab") as log:
            self.proc = subprocess.Popen(self.command(cfg), stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.workdir, env=self.environment(), start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=1):
                    break
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"{self.name} did not answer within {timeout}s:\n{self.log()}")
        time.sleep(0.5)              # granian forks its workers before binding


class FastregS3(OnS3, Fastreg):
    pass


class Distribution3S3(OnS3):
    def command(self, config: Path) -> list[str]:
        return [str(DISTRIBUTION3), "serve", str(config)]


async def run(names: list[str], rounds: int, sizes: Sizes, work: Path, endpoint: str,
              keys: dict[str, str]) -> dict[str, Any]:
    from .scenarios import Fixtures
    f = FastregS3("fastreg", work / "fastreg")
    f.s3 = s3_params(endpoint, keys, "fastreg")
    d = Distribution3S3("distribution", work / "distribution")
    d.s3 = s3_params(endpoint, keys, "distribution")
    servers: list[Server] = [f, d]
    runs = []
    try:
        fx = Fixtures(sizes)
        scenarios = [BY_NAME[n](fx) for n in names]
        for srv in servers:
            srv.start()
            progress(f"started {srv.name} on {srv.url} (pids {srv.pids()})")
        for srv in servers:
            for sc in scenarios:
                for fixture in sc.fixtures:
                    await fx.ensure(srv.url, fixture)
        for rnd in range(1, rounds + 1):
            progress(f"round {rnd}/{rounds}: load {os.getloadavg()[0]:.2f}")
            order = servers if rnd % 2 else servers[::-1]
            for sc in scenarios:
                data = sc.round_data(rnd)
                for srv in order:
                    r = await measure(sc, srv, rnd, data)
                    runs.append(r)
                    progress(f"  {sc.name:<14} {srv.name:<12} "
                             + (f"FAILED: {r.error}" if r.error else f"{r.value:,.1f} {r.unit}  server "
                                f"{r.server_cores:.2f} cores, others {r.other_cores:.2f}"))
    finally:
        for srv in servers:
            srv.stop()
    return {"runs": [asdict(r) for r in runs], "ceilings": [],
            "scenarios": {sc.name: {"unit": sc.unit, "target": sc.target, "what": sc.what, "rate": sc.rate}
                          for sc in scenarios}}


async def _make_bucket(url: str, keys: dict[str, str]) -> None:
    from fastreg.storage.driver.backends.s3 import _session
    async with _session().create_client("s3", region_name="us-east-1", endpoint_url=url,
                                        aws_access_key_id=keys["accesskey"],
                                        aws_secret_access_key=keys["secretkey"]) as s3:
        await s3.create_bucket(Bucket=BUCKET)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.objectstore", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and 1 s runs: a smoke test")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of: " + ",".join(SCENARIOS))
    p.add_argument("--large-mib", type=int, default=128, help="push-large blob size (MiB; the OSD keeps data in RAM)")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    names = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    if set(names) - set(SCENARIOS):
        p.error(f"unknown scenarios: {', '.join(sorted(set(names) - set(SCENARIOS)))}")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.storage.services import RGW_KEYS, RGW_PROGRAMS, start_rgw
    missing = [t for t in RGW_PROGRAMS if shutil.which(t) is None]
    if not os.access(DISTRIBUTION3, os.X_OK):
        missing.append(str(DISTRIBUTION3))
    if missing:
        print(f"bench.objectstore: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    sizes = QUICK if a.quick else Sizes(large=a.large_mib << 20, small_count=1000, ci_images=30)
    rounds = a.rounds or (1 if a.quick else 3)
    started = dt.datetime.now(dt.UTC)
    out = a.out or RESULTS / f"objectstore-{started.strftime('%Y%m%dT%H%M%SZ')}"
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fastreg-bench-rgw-"))
    busy0, t0 = machine_busy(), time.monotonic()
    cluster = start_rgw(work / "ceph", part=5 << 20, memstore=8 << 30)
    try:
        progress(f"ceph cluster up, RGW at {cluster.gateway.url}")
        asyncio.run(_make_bucket(cluster.gateway.url, RGW_KEYS))
        try:
            import uvloop
            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        result = runner(run(names, rounds, sizes, work, cluster.gateway.url, RGW_KEYS))
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    summary = report.summarize(result)
    meta = {"date": started.isoformat(timespec="seconds"), "rounds": rounds, "quick": a.quick,
            "sizes": sizes.__dict__, "cpus": os.cpu_count(), "python": platform.python_version(),
            "store": "Ceph RGW " + subprocess.run(["radosgw", "--version"], capture_output=True, text=True,
                                                  check=False).stdout.strip(),
            "distribution": subprocess.run([str(DISTRIBUTION3), "--version"], capture_output=True, text=True,
                                           check=False).stdout.strip(),
            "machine_busy_cores": (machine_busy() - busy0) / (time.monotonic() - t0),
            "loadavg_end": os.getloadavg()}
    (out / "results.json").write_text(json.dumps({"meta": meta, "summary": summary, **result}, indent=1))
    tbl = report.table(summary)
    (out / "results.md").write_text(f"{meta['date']}, {rounds} round(s), on {meta['store']}\n\n{tbl}\n")
    print(tbl)
    print(f"\nresults: {out}/results.json; machine busy {meta['machine_busy_cores']:.2f} cores on average")
    return 1 if any(r["value"] is None for r in result["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
