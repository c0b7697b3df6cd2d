"""Smoke run of the benchmark (`python -m bench --quick`) so it cannot rot.

It checks that every scenario ran against fastreg and the reference Distribution (3.1.1 when its
binary is found, else Debian's 2.8.2, said loudly), verified its responses and produced sane
numbers, that the ceilings and fractions of them are reported, and that the chart was written.
It never asserts speed: benchmarks are not part of the suite's pass/fail.
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
from bench.servers import DIST2, DIST3, DISTRIBUTION3_ENV, LABELS, distribution3_binary

if TYPE_CHECKING:
    from tests.support.server import FastregServer

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.e2e, pytest.mark.interop, pytest.mark.long]

MISSING = [t for t in ("wrk", "ab") if shutil.which(t) is None]
if not os.access("/usr/bin/docker-registry", os.X_OK):
    MISSING.append("docker-registry")
HAVE3 = distribution3_binary() is not None
REFERENCE = DIST3 if HAVE3 else DIST2


def run_bench(out: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out), *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600, check=False, env=env)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if MISSING:
        pytest.skip(f"not installed: {', '.join(MISSING)} (.ci/run installs them)")
    out = tmp_path_factory.mktemp("bench")
    proc = run_bench(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    # Progress goes to stderr: scenario, round and target server.
    assert "round 1/1" in proc.stderr and "-> fastreg" in proc.stderr and f"-> {REFERENCE}" in proc.stderr
    # Without 3.1.1 the bench says so, in the output and in the table.
    assert ("NOT FOUND" in proc.stderr and "NOT FOUND" in (out / "results.md").read_text()) is not HAVE3
    return out


def test_every_scenario_ran_against_fastreg_and_the_reference(quick_run: Path) -> None:
    doc = json.loads((quick_run / "results.json").read_text())
    assert doc["meta"]["quick"] is True and doc["meta"]["rounds"] == 1
    assert doc["meta"]["reference"] == REFERENCE and doc["meta"]["servers"] == ["fastreg", REFERENCE]
    assert ("3.1.1" if HAVE3 else "2.8.2") in doc["meta"]["versions"][REFERENCE]
    seen = {(r["scenario"], r["server"]) for r in doc["runs"]}
    assert seen == {(s.name, srv) for s in ALL for srv in ("fastreg", REFERENCE)}
    for r in doc["runs"]:
        where = f"{r['scenario']} on {r['server']}"
        assert r["error"] is None, f"{where}: {r['error']}"
        assert r["value"] > 0 and r["ops"] > 0 and r["seconds"] > 0, where
        assert r["failed"] == 0 and r["verified"] > 0, where
        assert r["server_cpu_s"] > 0, f"{where}: no server CPU time measured"
        assert r["peak_rss_worker_mib"] > 0, where
        assert r["bound"] in ("client", "server", "others", "neither"), where
        assert r["other_cores"] >= 0, where


def test_summary_has_ratios_targets_and_rss(quick_run: Path) -> None:
    doc = json.loads((quick_run / "results.json").read_text())
    for s in ALL:
        row = doc["summary"][s.name]
        assert (row["target"], row["ceiling_target"], row["p99_target"], row["rss_target"]) == (
            s.target, s.ceiling_target, s.p99_target, s.rss_target)
        f, d = row["servers"]["fastreg"], row["servers"][REFERENCE]
        assert f["value"]["median"] > 0 and d["value"]["median"] > 0
        assert row["ratio"]["median"] == pytest.approx(f["value"]["median"] / d["value"]["median"])
        assert f["peak_rss_mib"] > 0 and d["peak_rss_mib"] > 0
        # every applicable target was judged, and "met" is exactly all of them
        judged = {k: v for k, v in row["checks"].items() if v is not None}
        assert judged and row["met"] == all(judged.values()), row["checks"]
    for name in ("pull-manifest", "head-blob", "pull-range", "tags-list", "catalog"):
        for srv in ("fastreg", REFERENCE):
            lat = doc["summary"][name]["servers"][srv]["latency_ms"]
            # ab (head-blob) reports whole milliseconds, so a fast p50 may be 0
            assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"], (name, srv, lat)
        assert doc["summary"][name]["p99_ratio"]["median"] > 0
    table = (quick_run / "results.md").read_text()
    assert all(f"| {s.name} |" in table or f"| {s.name} ⚠" in table for s in ALL)
    header = next(line for line in table.splitlines() if line.startswith("| scenario |"))
    # fastreg, then the reference, first in every table
    assert header.index("fastreg median") < header.index(f"{LABELS[REFERENCE]} median") < header.index("target")


def test_ceilings_measured_each_round(quick_run: Path) -> None:
    """The machine's ceilings, granian's receive and the GET/HEAD ceiling app (bench/ceiling.py,
    which checks the app's answers) among them, are in the JSON; each scenario with a ceiling
    reports fastreg's fraction of it."""
    doc = json.loads((quick_run / "results.json").read_text())
    (c,) = doc["ceilings"]
    for key in ("write_MBps", "sha256_MBps", "recv_MBps", "recv_sha256_MBps", "get_rps", "head_rps",
                "get_p99_ms", "get_server_cores"):
        assert c[key] > 0, key
    for name, key in (("push-large", "recv_sha256_MBps"), ("push-chunked", "recv_sha256_MBps"),
                      ("pull-manifest", "get_rps"), ("head-blob", "head_rps")):
        row = doc["summary"][name]
        assert row["ceiling"] == key
        assert row["ceiling_fraction"]["median"] == pytest.approx(row["servers"]["fastreg"]["value"]["median"] / c[key])
    text = (quick_run / "results.md").read_text()
    assert "receive + SHA-256" in text and "pull-manifest: fastreg reaches" in text and "GET ceiling" in text


def test_chart_written(quick_run: Path) -> None:
    png = quick_run / "chart.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.skipif(not HAVE3, reason=f"Distribution 3.1.1 not found (${DISTRIBUTION3_ENV}, ../shared/tools)")
def test_all_three_servers(tmp_path: Path) -> None:
    """`--servers all`: fastreg, 3.1.1 (the reference, its columns first) and Debian's 2.8.2."""
    if MISSING:
        pytest.skip(f"not installed: {', '.join(MISSING)} (.ci/run installs them)")
    proc = run_bench(tmp_path, "--servers", "all", "--scenarios", "pull-manifest,catalog")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["meta"]["servers"] == ["fastreg", DIST3, DIST2] and doc["meta"]["reference"] == DIST3
    assert {r["server"] for r in doc["runs"]} == {"fastreg", DIST3, DIST2}
    row = doc["summary"]["catalog"]
    assert set(row["ratios"]) == {DIST3, DIST2} and row["ratio"] == row["ratios"][DIST3]
    lines = (tmp_path / "results.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| scenario |"))
    assert header.index(f"{LABELS[DIST3]} median") < header.index(f"{LABELS[DIST2]} median")


def test_missing_reference_is_said(tmp_path: Path) -> None:
    """Asked for 3.1.1 by name where it is absent: a clear refusal, nothing started."""
    env = {**os.environ, DISTRIBUTION3_ENV: str(tmp_path / "no-such-registry")}
    proc = run_bench(tmp_path / "out", "--servers", "fastreg,3.1.1", env=env)
    assert proc.returncode == 2 and "Distribution 3.1.1 not found" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


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
    agg = dict(zip(header, next(r for r in rows if ",Aggregated," in r).split(","), strict=False))
    assert int(agg["Request Count"]) > 0 and int(agg["Failure Count"]) == 0, agg


def test_scaling_quick(tmp_path: Path) -> None:
    """`python -m bench.scaling --quick`: every row at two sizes against fastreg and the
    reference, no failed run (gc rows count the blobs left), cost per unit of work, the plot."""
    if MISSING:
        pytest.skip(f"not installed: {', '.join(MISSING)} (.ci/run installs them)")
    proc = subprocess.run([sys.executable, "-m", "bench.scaling", "--quick", "--out", str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "layout written" in proc.stderr and "-> fastreg" in proc.stderr   # progress on stderr
    doc = json.loads((tmp_path / "scaling.json").read_text())
    assert doc["meta"]["reference"] == REFERENCE
    summary = doc["summary"]
    assert set(summary) == {"tags-list", "catalog-first-page", "catalog-last-page", "gc", "check", "ci-push"}
    for kind, k in summary.items():
        servers = {"fastreg"} if kind == "check" else {"fastreg", REFERENCE}
        assert set(k["servers"]) == servers, kind
        for srv, s in k["servers"].items():
            assert [p["size"] for p in s["points"]] == k["sizes"] and len(k["sizes"]) == 2, (kind, srv)
            assert all(p["cost_s"] > 0 and p["failed_runs"] == 0 for p in s["points"]), (kind, srv)
            assert s["growth"] == pytest.approx(s["points"][-1]["cost_per_work_s"] / s["points"][0]["cost_per_work_s"])
    assert all(r["error"] is None for r in doc["rows"])
    assert "| gc |" in (tmp_path / "scaling.md").read_text()
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_storm_compare_multiprocess(tmp_path: Path) -> None:
    """loadtests/compare.py: locust in multi-process mode against fastreg and the reference,
    no failed request, the client's CPU sampled over all its processes."""
    if MISSING:
        pytest.skip(f"not installed: {', '.join(MISSING)} (.ci/run installs them)")
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "loadtests" / "compare.py"), "pull_storm.py", "-u", "4", "-r", "4",
         "-t", "4s", "--processes", "2", "--out", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "LOADTEST_MAX_ITERATIONS": "20", "LOADTEST_LAYER_BYTES": "65536"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / "pull_storm.json").read_text())
    assert [r["server"] for r in doc["runs"]] == ["fastreg", REFERENCE]
    for r in doc["runs"]:
        assert r["requests"] > 0 and r["failures"] == 0, r
        assert r["client_processes"] >= 3, r        # the master and two forked workers
        assert 0 < r["client_busiest_process_cores"] <= r["client_cores"], r
        assert r["server_cores"] > 0 and r["peak_rss_worker_mib"] > 0, r
    assert "client cores (busiest process)" in proc.stdout
    assert (tmp_path / "pull_storm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_variant_with_pull_history_beside_fastreg(tmp_path: Path) -> None:
    """`--servers fastreg,fastreg+pulls`: both measured in alternation, the variant with pull history
    on (it wrote pull records, plain fastreg none), its ratio to plain fastreg in the summary, the
    table and the chart; no Distribution, so no target is judged against one."""
    if MISSING:
        pytest.skip(f"not installed: {', '.join(MISSING)} (.ci/run installs them)")
    proc = run_bench(tmp_path / "out", "--servers", "fastreg,fastreg+pulls", "--scenarios", "pull-manifest,head-blob",
                     env={**os.environ, "BENCH_KEEP_DATA": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    work = Path(doc["workdir"])
    try:
        assert doc["meta"]["servers"] == ["fastreg", "fastreg+pulls"] and doc["meta"]["reference"] is None
        assert {(r["scenario"], r["server"]) for r in doc["runs"]} == {
            (s, v) for s in ("pull-manifest", "head-blob") for v in ("fastreg", "fastreg+pulls")}
        assert all(r["error"] is None and r["verified"] > 0 for r in doc["runs"])
        history = "data/docker/registry/v2/_fastreg_history/pulls"
        assert list((work / "fastreg+pulls" / history).rglob("*.json")) and not (work / "fastreg" / history).exists()
        for name in ("pull-manifest", "head-blob"):
            row = doc["summary"][name]
            plain = row["servers"]["fastreg"]["value"]["median"]
            plus = row["servers"]["fastreg+pulls"]["value"]["median"]
            assert row["variants"]["fastreg+pulls"]["ratio"]["median"] == pytest.approx(plus / plain)
            assert row["ratios"] == {} and row["checks"]["ratio"] is None and row["checks"]["p99"] is None
        table = (tmp_path / "out" / "results.md").read_text()
        header = next(line for line in table.splitlines() if line.startswith("| scenario |"))
        assert "| fastreg+pulls median (min–max) | fastreg+pulls / fastreg (per-round min–max) |" in header
        assert header.index("fastreg median") < header.index("fastreg+pulls median")
        assert (tmp_path / "out" / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_fastreg_at_a_commit_beside_fastreg(tmp_path: Path) -> None:
    """`fastreg@HEAD`: exported from git into the run's directory, its engines built (or, without
    Cython, this checkout's built ones where its .pyx files are the same), started from that tree,
    measured beside fastreg, the tree removed at the end; a ref that names no commit is refused
    before anything starts."""
    if MISSING:
        pytest.skip(f"not installed: {', '.join(MISSING)} (.ci/run installs them)")
    if not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    proc = run_bench(tmp_path / "out", "--servers", "fastreg,fastreg@HEAD", "--scenarios", "pull-manifest",
                     env={**os.environ, "BENCH_KEEP_DATA": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert f"fastreg@HEAD: exporting {head[:12]}" in proc.stderr and "-> fastreg@HEAD" in proc.stderr
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    work = Path(doc["workdir"])
    try:
        assert doc["meta"]["servers"] == ["fastreg", "fastreg@HEAD"]
        # fastreg@HEAD runs HEAD; fastreg runs the checkout, HEAD plus any uncommitted change
        assert doc["meta"]["commits"]["fastreg@HEAD"] == head
        assert doc["meta"]["commits"]["fastreg"] in (head, head + "+changes")
        assert all(r["error"] is None and r["verified"] > 0 for r in doc["runs"])
        assert doc["summary"]["pull-manifest"]["variants"]["fastreg@HEAD"]["ratio"]["median"] > 0
        assert not (work / "src-fastreg@HEAD").exists()          # the exported tree is gone
        assert (work / "fastreg@HEAD" / "server.log").exists()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    refused = run_bench(tmp_path / "refused", "--servers", "fastreg,fastreg@no-such-ref")
    assert refused.returncode == 2 and "'no-such-ref' is not a commit of this checkout" in refused.stderr
    assert not (tmp_path / "refused").exists()
