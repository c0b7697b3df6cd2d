"""`fastreg gc` and `fastreg check`: one collection (or one scrub) of the configured storage, with a summary."""
from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from . import gc
from .config import parse_duration
from .storage.driver.base import StorageError
from .storage.driver.factory import create_driver


def _grace(args: argparse.Namespace, default: float, command: str) -> float | None:
    """`--grace` in seconds (a Go duration), or `default`; None (said on stderr) if invalid."""
    try:
        grace = parse_duration(args.grace) if args.grace is not None else default
    except ValueError as exc:
        print(f"fastreg {command}: --grace: {exc}", file=sys.stderr)
        return None
    if grace < 0:
        print(f"fastreg {command}: --grace must not be negative", file=sys.stderr)
        return None
    return grace


def run_gc(cfg: Any, args: argparse.Namespace) -> int:
    grace = _grace(args, cfg.fastreg.gc.graceperiod, "gc")
    if grace is None:
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


def run_check(cfg: Any, args: argparse.Namespace) -> int:
    """Exit status as fsck's: 0 clean, 1 damage found and all repaired, 4 damage left, 2 error."""
    from . import check
    from .check_leftovers import GRACE
    grace = _grace(args, GRACE, "check")
    if grace is None:
        return 2
    purging = cfg.storage.maintenance.uploadpurging

    async def main() -> check.Report:
        driver = create_driver(cfg.storage.driver_name, getattr(cfg.storage, cfg.storage.driver_name, None),
                               fsync=getattr(cfg.fastreg, "fsync", True))
        try:
            # progress only on a terminal: a log gets the problems and the summary
            progress = gc.Progress(sys.stderr if sys.stderr.isatty() else None)
            return await check.check(driver, repair=args.repair, progress=progress, grace=grace,
                                     upload_age=purging.age, purging=purging.enabled)
        finally:
            await driver.close()

    try:
        report = asyncio.run(main())
    except (RuntimeError, ValueError, StorageError) as exc:
        print(f"fastreg check: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(report.as_json().decode(), flush=True)
    else:
        for p in report.problems:
            fixed = f" [{p.repaired}]" if p.repaired else ""
            print(f"{p.kind}: {p.path}: {p.detail}{fixed}", flush=True)
        for line in check.notes(report):
            print(line, flush=True)
        print(check.summary(report, args.repair), flush=True)
    return report.exit_code
