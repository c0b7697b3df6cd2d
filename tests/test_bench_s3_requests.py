"""Smoke runs of the S3 client benchmarks (bench/s3_requests.py, bench/s3_ab.py) on moto, so they
cannot rot: they ran, counted the requests of each call and printed their tables. Never speed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.e2e


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, check=False)


def test_s3_requests_times_every_call_and_profiles(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    p = bench("bench.s3_requests", "--calls", "5", "--warmup", "1", "--rounds", "1", "--profile", "--json", str(out))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["requests_per_call"] == {"get": 1, "put": 1, "stat": 1, "list": 1, "delete": 3}
    for op in ("get", "put", "stat", "list", "delete"):
        row = doc["rounds"][op][0]
        assert row["calls"] == 5 and row["requests"] == 5 * doc["requests_per_call"][op] and row["cpu"] > 0
    assert "by stage:" in p.stdout and "req/CPU-s" in p.stdout


def test_s3_ab_compares_two_trees(tmp_path: Path) -> None:
    p = bench("bench.s3_ab", str(REPO_ROOT), str(REPO_ROOT), "--rounds", "2", "--calls", "6", "--batch", "3",
              "--ops", "get,stat")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    rows = [line for line in p.stdout.splitlines() if line.startswith(("| get ", "| stat "))]
    assert len(rows) == 2 and all(line.count("x (") == 1 for line in rows), p.stdout
    assert "2 rounds of 6 calls" in p.stdout
