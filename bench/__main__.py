"""`python -m bench [--rounds N] [--quick] [--scenarios a,b] [--out DIR]`.

Starts fastreg and Debian's Distribution on 127.0.0.1 (free ports, temporary data directories,
the same config), runs every scenario against both in alternation for N rounds, prints a table of
medians (min–max) and fastreg/Distribution ratios beside the targets of issue #7, and writes
results.json, results.md and chart.png into bench/results/<UTC timestamp>/.
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
from pathlib import Path

from . import report, tools
from .runner import run_all
from .scenarios import ALL, QUICK, Sizes
from .servers import DISTRIBUTION_BIN, distribution_available

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 5; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and 1 s runs: a smoke test, not a benchmark")
    p.add_argument("--scenarios", default="", help="comma-separated subset of: " + ",".join(s.name for s in ALL))
    p.add_argument("--servers", default="fastreg,distribution",
                   help="which servers to run (default both; 'fastreg' alone for profiling)")
    p.add_argument("--profile", action="store_true",
                   help="py-spy record every fastreg worker during each run (SVGs in the results directory; "
                        "skews fastreg's numbers)")
    p.add_argument("--seconds", type=float, default=None, help="duration of each request-rate run")
    p.add_argument("--out", type=Path, default=None, help="results directory (default bench/results/<timestamp>)")
    a = p.parse_args(argv)

    names = [s.strip() for s in a.scenarios.split(",") if s.strip()] or [s.name for s in ALL]
    unknown = sorted(set(names) - {s.name for s in ALL})
    if unknown:
        p.error(f"unknown scenarios: {', '.join(unknown)}")
    missing = [t for t in ("wrk", "ab") if not tools.have(t)]
    if not distribution_available():
        missing.append(DISTRIBUTION_BIN)
    if missing:
        print(f"bench: missing {', '.join(missing)} (apt-get install wrk apache2-utils docker-registry)",
              file=sys.stderr)
        return 2
    sizes = QUICK if a.quick else Sizes()
    if a.seconds:
        sizes = Sizes(**{**sizes.__dict__, "seconds": a.seconds})
    rounds = a.rounds or (1 if a.quick else 5)
    started = dt.datetime.now(dt.UTC)
    out = a.out or RESULTS / started.strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)

    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(run_all(names, rounds, sizes, a.servers.split(","), out / "profiles" if a.profile else None))
    try:
        return _report(a, result, started, rounds, sizes, out)
    finally:
        if os.environ.get("BENCH_KEEP_DATA") != "1":
            print(f"removing {result['workdir']} ...", file=sys.stderr, flush=True)
            shutil.rmtree(result["workdir"], ignore_errors=True)


def _report(a: argparse.Namespace, result: dict, started: dt.datetime, rounds: int, sizes: Sizes,
            out: Path) -> int:
    summary = report.summarize(result)
    meta = {
        "date": started.isoformat(timespec="seconds"), "rounds": rounds, "quick": a.quick,
        "sizes": sizes.__dict__, "cpus": os.cpu_count(), "python": platform.python_version(),
        "distribution": subprocess.run([DISTRIBUTION_BIN, "--version"], capture_output=True, text=True, check=False).stdout.strip(),
        "loadavg_end": os.getloadavg(),
    }
    doc = {"meta": meta, "summary": summary, **result}
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    tbl = report.table(summary)
    ceil = report.ceilings(result)
    (out / "results.md").write_text(f"{meta['date']}, {rounds} round(s){' (quick)' if a.quick else ''}\n\n{tbl}\n"
                                    f"\n{ceil}")
    report.chart(summary, out / "chart.png",
                 f"fastreg vs Distribution — {meta['date']}, {rounds} round(s){' quick' if a.quick else ''}")
    print(tbl)
    if ceil:
        print(f"\n{ceil}", end="")
    print(f"\nresults: {out}/results.json, chart: {out}/chart.png")
    failed = sum(1 for r in result["runs"] if r["value"] is None)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
