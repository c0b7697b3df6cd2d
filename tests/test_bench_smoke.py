"""Smoke run of the benchmark (`python -m bench --quick`) so it cannot rot.

It checks that every scenario ran against both servers, verified its responses and produced
sane numbers, and that the chart was written. It never asserts speed: benchmarks are not part of
the suite's pass/fail.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bench.scenarios import ALL

if TYPE_CHECKING:
    from tests.conftest import FastregServer

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.e2e, pytest.mark.interop]

MISSING = [t for t in ("wrk", "ab") if shutil.which(t) is None]
if not os.access("/usr/bin/docker-registry", os.X_OK):
    MISSING.append("docker-registry")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if MISSING:
        pytest.skip(f"not installed: {', '.join(MISSING)} (.ci/run installs them)")
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    # Progress goes to stderr: scenario, round and target server.
    assert "round 1/1" in proc.stderr and "-> fastreg" in proc.stderr and "-> distribution" in proc.stderr
    return out


def test_every_scenario_ran_against_both_servers(quick_run: Path) -> None:
    doc = json.loads((quick_run / "results.json").read_text())
    assert doc["meta"]["quick"] is True and doc["meta"]["rounds"] == 1
    seen = {(r["scenario"], r["server"]) for r in doc["runs"]}
    assert seen == {(s.name, srv) for s in ALL for srv in ("fastreg", "distribution")}
    for r in doc["runs"]:
        where = f"{r['scenario']} on {r['server']}"
        assert r["error"] is None, f"{where}: {r['error']}"
        assert r["value"] > 0 and r["ops"] > 0 and r["seconds"] > 0, where
        assert r["failed"] == 0 and r["verified"] > 0, where
        assert r["server_cpu_s"] > 0, f"{where}: no server CPU time measured"
        assert r["peak_rss_worker_mib"] > 0, where
        assert r["bound"] in ("client", "server", "others", "neither"), where
        assert r["other_cores"] >= 0, where


def test_summary_has_ratios_and_targets(quick_run: Path) -> None:
    doc = json.loads((quick_run / "results.json").read_text())
    for s in ALL:
        row = doc["summary"][s.name]
        assert row["target"] == s.target
        assert row["fastreg"]["median"] > 0 and row["distribution"]["median"] > 0
        assert row["ratio"]["median"] == pytest.approx(row["fastreg"]["median"] / row["distribution"]["median"])
    for name in ("pull-manifest", "head-blob", "pull-range", "tags-list", "catalog"):
        for srv in ("fastreg", "distribution"):
            lat = doc["summary"][name][f"{srv}_latency_ms"]
            # ab (head-blob) reports whole milliseconds, so a fast p50 may be 0
            assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"], (name, srv, lat)
    table = (quick_run / "results.md").read_text()
    assert all(f"| {s.name} |" in table or f"| {s.name} ⚠" in table for s in ALL)


def test_ceilings_measured_each_round(quick_run: Path) -> None:
    """The machine's ceilings, granian's receive (bench/ceiling.py, which checks the app's
    answer: byte count or SHA-256) among them, are in the JSON and under the table."""
    doc = json.loads((quick_run / "results.json").read_text())
    (c,) = doc["ceilings"]
    for key in ("write_MBps", "sha256_MBps", "recv_MBps", "recv_sha256_MBps"):
        assert c[key] > 0, key
    for name in ("push-large", "push-chunked"):
        assert doc["summary"][name]["ceiling_ratio"]["median"] > 0, name
    text = (quick_run / "results.md").read_text()
    assert "receive + SHA-256" in text and "push-large: the receive + SHA-256 ceiling is" in text


def test_chart_written(quick_run: Path) -> None:
    png = quick_run / "chart.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.parametrize("locustfile", ["ci_push_storm.py", "pull_storm.py", "mixed.py"])
def test_locustfile_runs_clean_against_fastreg(locustfile: str, registry: FastregServer, tmp_path: Path) -> None:
    """Each locustfile, a few users for a few seconds: requests happen and none fails."""
    csv_prefix = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "loadtests" / locustfile), "--headless",
         "-u", "4", "-r", "4", "-t", "4s", "--host", registry.url, "--csv", str(csv_prefix), "--only-summary"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "LOADTEST_MAX_ITERATIONS": "20", "LOADTEST_LAYER_BYTES": "65536"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = (csv_prefix.parent / "run_stats.csv").read_text().splitlines()
    header = rows[0].split(",")
    agg = dict(zip(header, next(r for r in rows if ",Aggregated," in r).split(",")))
    assert int(agg["Request Count"]) > 0 and int(agg["Failure Count"]) == 0, agg
