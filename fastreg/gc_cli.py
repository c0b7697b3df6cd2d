"""`fastreg gc`: run one collection against the configured storage and print a summary."""
from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from . import gc
from .config import parse_duration
from .storage.driver.factory import create_driver


def run_gc(cfg: Any, args: argparse.Namespace) -> int:
    try:
        grace = parse_duration(args.grace) if args.grace is not None else cfg.fastreg.gc.graceperiod
    except ValueError as exc:
        print(f"fastreg gc: --grace: {exc}", file=sys.stderr)
        return 2
    if grace < 0:
        print("fastreg gc: --grace must not be negative", file=sys.stderr)
        return 2
    options = gc.Options(dry_run=args.dry_run, delete_untagged=args.delete_untagged, grace=grace)

    def out(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    async def main() -> gc.Report:
        driver = create_driver(cfg.storage.driver_name, getattr(cfg.storage, cfg.storage.driver_name, None),
                               fsync=getattr(cfg.fastreg, "fsync", True))
        try:
            return await gc.collect(driver, options, progress=gc.Progress(sys.stderr, quiet=args.quiet), out=out)
        finally:
            await driver.close()

    try:
        report = asyncio.run(main())
    except RuntimeError as exc:
        print(f"fastreg gc: {exc}", file=sys.stderr)
        return 1
    print(gc.summary(report, args.dry_run), flush=True)
    return 1 if report.aborted else 0
