"""`python -m bench.s3_ab A_TREE B_TREE [C_TREE ...] [--rounds N] [--calls N] [--ops ...]`.

The S3 driver of two or more source trees of fastreg (``fastreg/storage/driver/backends/s3.py`` of
each, loaded side by side; the rest of fastreg is this tree's, so the trees may differ in that file
only) in one process, against one moto server (under granian: connections kept alive), timed as
bench/s3_requests.py times them: in CPU time of this process. The calls are interleaved: round
after round, for each operation, N calls on each tree's driver, the trees taking turns every few
calls (--batch), so that a drift of the machine (neighbours on the same cores, clock, caches) hits
all trees alike — runs of whole trees one after the other differ by ±20% from that alone, batches
of ten calls by ±2%. Prints requests per CPU-second of each tree, the median and range over the
rounds, and the median and range of the per-round ratios to A.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from .s3_requests import (
    OPS,
    count_requests,
    ensure_bucket,
    make_driver,
    op_call,
    prepare,
    progress,
    start_moto,
    stop,
    time_op,
)


def load(tree: str, i: int) -> ModuleType:
    """`tree`'s s3 driver module, as a sibling of fastreg's own (its relative imports are fastreg's)."""
    name = f"fastreg.storage.driver.backends._s3ab{i}"
    spec = importlib.util.spec_from_file_location(name, Path(tree) / "fastreg/storage/driver/backends/s3.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


async def run(args: argparse.Namespace, endpoint: str, mods: list[ModuleType]) -> dict[int, dict[str, list[float]]]:
    ops = args.ops.split(",")
    await ensure_bucket(endpoint)
    reqs = await count_requests(endpoint, ops)
    progress(f"S3 requests per call: {reqs}")
    n = len(mods)
    drivers = [make_driver(endpoint, f"ab{i}-{uuid.uuid4().hex[:8]}", m) for i, m in enumerate(mods)]
    for d in drivers:
        await prepare(d, args.rounds * args.calls + args.warmup)
        for op in ops:
            for j in range(args.warmup):
                await op_call(d, op, args.rounds * args.calls + j)
    gc.collect()
    gc.freeze()          # what setup allocated stays out of the collections that the calls trigger
    got: dict[int, dict[str, list[float]]] = {i: {op: [] for op in ops} for i in range(n)}
    deadline = time.monotonic() + args.time_limit
    for r in range(args.rounds):
        for op in ops:
            cpu = [0.0] * n
            calls = [0] * n
            for b in range(0, args.calls, args.batch):    # batches of a few calls, trees alternating
                for i in [(r + b + k) % n for k in range(n)]:
                    c, t, _ = await time_op(drivers[i], op, min(args.batch, args.calls - b), float("inf"),
                                            first=r * args.calls + b)
                    calls[i] += c
                    cpu[i] += t
            for i in range(n):
                got[i][op].append(calls[i] * reqs[op] / cpu[i])
        progress(f"round {r + 1}/{args.rounds}: " + "; ".join(
            f"{op} " + " ".join(f"{got[i][op][-1]:.0f}" for i in range(n)) for op in ops))
        if time.monotonic() > deadline:
            progress("time limit reached")
            break
    for d in drivers:
        await d.close()
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="+")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--calls", type=int, default=200, help="calls of each op and tree per round")
    ap.add_argument("--batch", type=int, default=10, help="calls in a row on one tree")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--time-limit", type=float, default=600.0, help="stop after the round that ends past this")
    args = ap.parse_args(argv)
    trees: list[str] = args.trees
    if len(trees) < 2:
        ap.error("two trees at least")
    mods = [load(t, i) for i, t in enumerate(trees)]
    with tempfile.TemporaryDirectory(prefix="s3ab-") as tmp:
        proc, endpoint = start_moto(Path(tmp))
        try:
            got = asyncio.run(run(args, endpoint, mods))
        finally:
            stop(proc)
    names = [chr(65 + i) for i in range(len(trees))]
    for name, tree in zip(names, trees, strict=True):
        print(f"{name} = {tree}")
    rounds = len(got[0][args.ops.split(",")[0]])
    print(f"{rounds} rounds of {args.calls} calls per op and tree, interleaved; requests per CPU-second, "
          "median (min-max); ratio to A: median of the rounds' ratios (min-max)\n")
    print("| op | " + " | ".join(names) + " |\n|---|" + "---|" * len(trees))
    for op in args.ops.split(","):
        cells = []
        for i in range(len(trees)):
            v: list[Any] = got[i][op]
            cell = f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})"
            if i:
                ratios = [b / a for a, b in zip(got[0][op], v, strict=True)]
                cell += f" {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
            cells.append(cell)
        print(f"| {op} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
