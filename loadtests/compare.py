"""Run one locustfile against fastreg and against Distribution (both started here on 127.0.0.1 with
the bench's shared config and fresh data directories), then chart them side by side.

    python loadtests/compare.py pull_storm.py -u 50 -r 10 -t 30s --out loadtests/results

Writes <out>/<name>-<server>_*.csv, <out>/<name>.png and prints the markdown table.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.servers import Distribution, Fastreg


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("locustfile")
    p.add_argument("-u", "--users", default="50")
    p.add_argument("-r", "--rate", default="10")
    p.add_argument("-t", "--time", default="30s")
    p.add_argument("--out", type=Path, default=HERE / "results")
    a = p.parse_args()
    name = Path(a.locustfile).stem
    a.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fastreg-locust-"))
    runs = []
    try:
        for cls in (Fastreg, Distribution):
            label = cls.__name__.lower()
            srv = cls(label, work / label)
            srv.workdir.mkdir()
            srv.start()
            try:
                prefix = a.out / f"{name}-{label}"
                print(f"== {name} against {label} ({srv.url})", file=sys.stderr, flush=True)
                subprocess.run([sys.executable, "-m", "locust", "-f", str(HERE / Path(a.locustfile).name),
                                "--headless", "-u", a.users, "-r", a.rate, "-t", a.time, "--host", srv.url,
                                "--csv", str(prefix), "--only-summary"], cwd=HERE, check=False, timeout=3600)
                runs.append(f"{label}={prefix}")
            finally:
                srv.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return subprocess.run([sys.executable, str(HERE / "chart.py"), "--title", f"{name}: -u {a.users} -t {a.time}",
                           "--out", str(a.out / f"{name}.png"), *runs], check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
