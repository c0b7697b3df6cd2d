"""``fastreg retention [--config FILE] [--dry-run] [--json] [--quiet]``: apply the retention policies once.

Safe while the registry serves (see ``fastreg.retention.policy``); the blobs the deleted manifests
alone used are freed by the next garbage collection (``fastreg gc`` or ``fastreg.gc.interval``).
Exit status: 0 done, 1 some deletion failed, 2 configuration error.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from ..storage.driver.base import StorageError

if TYPE_CHECKING:
    from ..config import Config

HELP = "apply the retention policies (fastreg.retention) once (safe while serving)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config_file", nargs="?", help="Distribution-style config.yml")
    p.add_argument("--config", "-c", help="Distribution-style config.yml")
    p.add_argument("--dry-run", "-d", action="store_true",
                   help="print what would be deleted and which rule keeps everything else; delete nothing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the summary (and failures)")


async def apply(cfg: Config, *, dry_run: bool) -> Any:
    """One run against the configured storage, with the server's immutability rules and webhooks."""
    from ..app import App
    app = App(cfg)
    ctx = app.open()
    try:
        from .policy import Retention
        emit = ctx.events.emit if ctx.events is not None else None
        return await Retention(cfg, ctx.registry, emit=emit).run(dry_run=dry_run)
    finally:
        await app.close()


def run(cfg: Config, args: argparse.Namespace) -> int:
    if not cfg.fastreg.retention.policies:
        print("fastreg retention: no policy configured (fastreg.retention.policies)", file=sys.stderr)
        return 2
    if not args.dry_run and not cfg.storage.delete.enabled:
        print("fastreg retention: deletes are disabled (storage.delete.enabled); only --dry-run can run",
              file=sys.stderr)
        return 2
    try:
        report = asyncio.run(apply(cfg, dry_run=args.dry_run))
    except (StorageError, RuntimeError) as exc:
        print(f"fastreg retention: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(report.as_json().decode(), flush=True)
        return 1 if report.failed else 0
    for line in report.lines():
        if not args.quiet or "FAILED" in line or "failed" in line:
            print(line, flush=True)
    print(report.summary(), flush=True)
    return 1 if report.failed else 0
