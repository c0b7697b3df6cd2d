"""`python -m bench.s3_ab A_TREE B_TREE [--rounds N] [--calls N] [--ops ...]`.

bench/s3_requests.py on two source trees of fastreg (e.g. an export of the last release and this
work tree), in alternation — A, B, B, A, A, B, ... so that neither always goes first — against one
moto server (under granian: connections kept alive), each run in a fresh process with the tree on
PYTHONPATH. Prints, per operation, requests per CPU-second of each tree: median and range over the
rounds, and the ratio B/A of the medians.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from .s3_requests import OPS, progress, start_moto, stop

HERE = Path(__file__).resolve()


def one(tree: str, endpoint: str, args: argparse.Namespace, out: Path) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": tree}
    subprocess.run([sys.executable, str(HERE.parent / "s3_requests.py"), "--endpoint", endpoint,
                    "--rounds", "1", "--calls", str(args.calls), "--ops", args.ops, "--json", str(out)],
                   env=env, cwd=tree, check=True, stdout=subprocess.DEVNULL, timeout=args.timeout)
    data = json.loads(out.read_text())
    return {op: [r["req_per_cpu_s"] for r in rows] for op, rows in data["rounds"].items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds one run may take")
    args = ap.parse_args(argv)
    ops = args.ops.split(",")
    got: dict[str, dict[str, list[float]]] = {"a": {op: [] for op in ops}, "b": {op: [] for op in ops}}
    with tempfile.TemporaryDirectory(prefix="s3ab-") as tmp:
        proc, endpoint = start_moto(Path(tmp))
        try:
            for r in range(args.rounds):
                order = ("a", "b") if r % 2 == 0 else ("b", "a")
                for side in order:
                    res = one(getattr(args, side), endpoint, args, Path(tmp) / f"{side}{r}.json")
                    for op, v in res.items():
                        got[side][op] += v
                    progress(f"round {r + 1}/{args.rounds} {side}: " +
                             ", ".join(f"{op} {v[0]:.0f}" for op, v in res.items()) + " req/CPU-s")
        finally:
            stop(proc)
    print(f"A = {args.a}\nB = {args.b}\n{args.rounds} rounds of {args.calls} calls per op, alternated; "
          "requests per CPU-second, median (min-max)\n")
    print("| op | A | B | B/A |\n|---|---|---|---|")
    for op in ops:
        a, b = got["a"][op], got["b"][op]
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"| {op} | {ma:.0f} ({min(a):.0f}-{max(a):.0f}) | {mb:.0f} ({min(b):.0f}-{max(b):.0f}) | "
              f"{mb / ma:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
