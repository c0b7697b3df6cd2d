"""Run one locustfile against fastreg and against Distribution 3.1.1 (else Debian's 2.8.2, said
loudly), both started here on 127.0.0.1 with the bench's shared config and fresh data directories,
in alternation for --rounds rounds; report the client's CPU beside every figure, then chart them.

locust runs in its multi-process mode (`--processes`, default 2: one master and that many forked
workers, each a FastHttpUser gevent loop), so one Python process at 100 % of a core no longer
bounds the storm. While each storm runs, the CPU time of locust's whole process tree and of the
registry's is sampled every half second: the table shows the cores each used, and the busiest
locust process (a client process near 1.00 core is the bottleneck, whatever the total). Peak RSS
per registry worker is reset before and read after each run.

    python loadtests/compare.py pull_storm.py -u 50 -r 10 -t 30s --processes 2 --rounds 2

Writes <out>/<name>-<server>-r<round>_*.csv, <out>/<name>.json, <out>/<name>.png and prints the
markdown table.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.__main__ import pick_servers  # noqa: E402  (the checkout's bench/, after the path above)
from bench.servers import (  # noqa: E402
    LABELS,
    Server,
    make_server,
    peak_rss_mib,
    process_tree,
    reset_peak_rss,
)


def _cpu_of(pid: int) -> float:
    from bench.servers import cpu_seconds
    return cpu_seconds([pid])


def run_storm(srv: Server, locustfile: Path, prefix: Path, a: argparse.Namespace) -> dict[str, float]:
    """One locust run against `srv`, with client and server CPU sampled through it."""
    reset_peak_rss(srv.pids())
    s0 = srv.cpu()
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", a.users, "-r", a.rate,
           "-t", a.time, "--host", srv.url, "--csv", str(prefix), "--only-summary"]
    if a.processes > 1:
        cmd += ["--processes", str(a.processes)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: dict[int, float] = {}          # CPU seconds last seen per locust process
    first: dict[int, float] = {}
    while proc.poll() is None:
        for pid in process_tree(proc.pid):
            c = _cpu_of(pid)
            first.setdefault(pid, c)
            seen[pid] = max(seen.get(pid, 0.0), c)
        time.sleep(0.5)
        if time.perf_counter() - t0 > a.timeout:
            proc.kill()
            break
    err = proc.stderr.read() if proc.stderr else ""
    proc.wait()
    wall = time.perf_counter() - t0
    server_cpu = srv.cpu() - s0
    rss = max((peak_rss_mib(p) for p in srv.workers()), default=0.0)
    if proc.returncode not in (0, 1):        # 1: some requests failed (reported in the table)
        raise RuntimeError(f"locust exited {proc.returncode}: {err[-3000:]}")
    per_proc = {pid: seen[pid] / wall for pid in seen}   # includes startup CPU (imports, setup)
    with open(f"{prefix}_stats.csv", newline="") as f:
        agg = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    return {"requests": int(agg["Request Count"]), "failures": int(agg["Failure Count"]),
            "rps": float(agg["Requests/s"]), "p50_ms": float(agg["50%"]), "p95_ms": float(agg["95%"]),
            "p99_ms": float(agg["99%"]), "wall_s": wall, "client_cores": sum(seen.values()) / wall,
            "client_busiest_process_cores": max(per_proc.values(), default=0.0),
            "client_processes": len(seen), "server_cores": server_cpu / wall, "peak_rss_worker_mib": rss}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("locustfile")
    p.add_argument("-u", "--users", default="50")
    p.add_argument("-r", "--rate", default="10")
    p.add_argument("-t", "--time", default="30s")
    p.add_argument("--processes", type=int, default=2, help="locust worker processes (1: a single process)")
    p.add_argument("--rounds", type=int, default=1, help="runs per server, alternated")
    p.add_argument("--servers", default="fastreg,distribution", help="as python -m bench --servers")
    p.add_argument("--timeout", type=float, default=3600.0, help="kill a locust run after this many seconds")
    p.add_argument("--out", type=Path, default=HERE / "results")
    a = p.parse_args()
    names = pick_servers(a.servers)
    name = Path(a.locustfile).stem
    a.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fastreg-locust-"))
    results: list[dict[str, object]] = []
    try:
        for rnd in range(1, a.rounds + 1):
            k = (rnd - 1) % len(names)
            for label in names[k:] + names[:k]:
                srv = make_server(label, work / f"{label}-r{rnd}")
                srv.workdir.mkdir(parents=True)
                srv.start()
                try:
                    prefix = a.out / f"{name}-{label}-r{rnd}"
                    print(f"== round {rnd}/{a.rounds}: {name} against {LABELS[label]} ({srv.url}), "
                          f"locust --processes {a.processes}", file=sys.stderr, flush=True)
                    r = run_storm(srv, HERE / Path(a.locustfile).name, prefix, a)
                    print(f"   {r['rps']:,.0f} req/s, {r['failures']} failures, p99 {r['p99_ms']:.0f} ms; cores: "
                          f"client {r['client_cores']:.2f} (busiest process {r['client_busiest_process_cores']:.2f}), "
                          f"server {r['server_cores']:.2f}; rss {r['peak_rss_worker_mib']:.0f} MiB",
                          file=sys.stderr, flush=True)
                    results.append({"server": label, "round": rnd, "prefix": str(prefix), **r})
                finally:
                    srv.stop()
                    shutil.rmtree(srv.workdir, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (a.out / f"{name}.json").write_text(json.dumps({"users": a.users, "time": a.time, "processes": a.processes,
                                                    "runs": results}, indent=1))
    print(table(results, names))
    last = {r["server"]: r["prefix"] for r in results}
    title = f"{name}: -u {a.users} -t {a.time}, locust --processes {a.processes}"
    return subprocess.run([sys.executable, str(HERE / "chart.py"), "--title", title,
                           "--out", str(a.out / f"{name}.png"),
                           *(f"{LABELS[n]}={last[n]}" for n in names if n in last)], check=False,
                          stdout=subprocess.DEVNULL).returncode


def table(results: list[dict], names: list[str]) -> str:
    """Medians over rounds, fastreg first; the client's CPU beside every figure."""
    lines = [("| registry | rounds | req/s | failures | p50 ms | p95 ms | p99 ms | client cores (busiest process) "
              "| server cores | peak RSS/worker MiB (target ≤ 100) |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        rs = [r for r in results if r["server"] == n]
        if not rs:
            continue

        def med(key: str, rs: list[dict] = rs) -> float:
            return statistics.median(float(r[key]) for r in rs)
        lines.append(f"| {LABELS[n]} | {len(rs)} | {med('rps'):,.0f} | {sum(int(r['failures']) for r in rs)} "
                     f"| {med('p50_ms'):.0f} | {med('p95_ms'):.0f} | {med('p99_ms'):.0f} "
                     f"| {med('client_cores'):.2f} ({max(float(r['client_busiest_process_cores']) for r in rs):.2f}) "
                     f"| {med('server_cores'):.2f} | {max(float(r['peak_rss_worker_mib']) for r in rs):.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
