"""The long fuzz campaign (outside CI): `python -m tests.fuzz --minutes 30`.

Runs the fuzz tests of tests/hostile (test_fuzz_*.py) with HYPOTHESIS_PROFILE=long (thousands
of examples per test) again and again, each round with a fresh seed, until the time is up or
a test fails.  Failures are kept in hypothesis' example database (.hypothesis/), so the next
plain `pytest` run replays them.  Prints one line per round and a summary.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests/hostile").glob("test_fuzz_*.py"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("-k", default=None, help="pytest -k expression to run a subset")
    args = ap.parse_args()
    deadline = time.monotonic() + args.minutes * 60
    env = {**os.environ, "HYPOTHESIS_PROFILE": "long"}
    rounds = 0
    started = time.monotonic()
    while time.monotonic() < deadline:
        seed = random.randrange(2**32)
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly", f"--hypothesis-seed={seed}",
               "-W", "ignore::DeprecationWarning", *TESTS]
        if args.k:
            cmd += ["-k", args.k]
        t = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                              timeout=max(60.0, deadline - time.monotonic() + 600))
        rounds += 1
        last = (proc.stdout.strip().splitlines() or ["?"])[-1]
        print(f"round {rounds} seed {seed}: {last} ({time.monotonic() - t:.0f}s)", flush=True)
        if proc.returncode != 0:
            print(proc.stdout[-20000:], proc.stderr[-5000:], sep="\n")
            print(f"FAILED after {(time.monotonic() - started) / 60:.1f} min; replay: "
                  f"HYPOTHESIS_PROFILE=long python -m pytest --hypothesis-seed={seed} {' '.join(TESTS)}")
            return 1
    print(f"no failure in {rounds} rounds, {(time.monotonic() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
