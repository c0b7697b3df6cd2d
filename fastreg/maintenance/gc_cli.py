"""`fastreg gc` and `fastreg check`: one collection (or one scrub) of the configured storage, with a summary."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson

from ..config import Config, parse_duration
from ..errors import RegistryError
from ..proxy.cache import cached_repositories
from ..retention import quota
from ..server import storage_description
from ..storage.driver.base import StorageDriver, StorageError
from ..storage.driver.factory import create_driver
from . import gc

T = TypeVar("T")


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


def _on_storage(cfg: Config, command: str, work: Callable[[StorageDriver], Awaitable[T]],
                recount_dry_run: Callable[[T], bool | None]) -> tuple[T, quota.Recount | None] | None:
    """Run `work` on a driver of the configured storage (closed after), then recount the
    repositories' usage if quotas are configured: `recount_dry_run` of the result says whether
    only to report it (True), to rewrite it (False) or not to recount at all (None).  The result
    and the recount; None, said on stderr, if the storage fails."""

    async def main() -> tuple[T, quota.Recount | None]:
        driver = create_driver(cfg.storage.driver_name, getattr(cfg.storage, cfg.storage.driver_name, None),
                               fsync=getattr(cfg.fastreg, "fsync", True))
        try:
            result = await work(driver)
            globs = quota.configured(cfg)
            dry_run = recount_dry_run(result)
            counted = (await quota.recompute(driver, globs, dry_run=dry_run)
                       if globs is not None and dry_run is not None else None)
            return result, counted
        finally:
            await driver.close()

    try:
        return asyncio.run(main())
    except (RuntimeError, ValueError, StorageError, RegistryError) as exc:
        print(f"fastreg {command}: {storage_description(cfg)}: {exc}", file=sys.stderr)
        return None


def run_gc(cfg: Config, args: argparse.Namespace) -> int:
    grace = _grace(args, cfg.fastreg.gc.graceperiod, "gc")
    if grace is None:
        return 2
    options = gc.Options(dry_run=args.dry_run, delete_untagged=args.delete_untagged, grace=grace)

    def out(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    async def collect(driver: StorageDriver) -> gc.Report:
        return await gc.collect(driver, options, progress=gc.Progress(sys.stderr, quiet=args.quiet), out=out)

    # usage is recounted from what is left (not after an aborted collection)
    done = _on_storage(cfg, "gc", collect, lambda report: None if report.aborted else bool(args.dry_run))
    if done is None:
        return 1
    report, rc = done
    print(f"{storage_description(cfg)}: {gc.summary(report, args.dry_run)}", flush=True)
    if rc is not None:
        print(f"{storage_description(cfg)}: {quota.summary(rc, args.dry_run)}", flush=True)
    return 1 if report.aborted else 0


def _repair_lock(cfg: Config, force: bool) -> tuple[int | None, str | None]:
    """Before `check --repair`: (a descriptor holding the data directory's exclusive flock, or
    None; a refusal, or None).

    Every registry serving a filesystem data directory, unless read-only, holds a shared flock
    on it (fastreg.server.hold_serving_lock): if the exclusive lock cannot be had, one is
    serving, and repair is refused unless `force`.  Held for the repair, it also keeps a
    registry from starting on that directory meanwhile.  The guarantee covers the registries
    of this machine, and of other machines only where the shared filesystem carries flock
    between them (CephFS does; NFS maps it to byte-range locks, if at all: do not count on it).
    Object stores, and filesystems that refuse the lock, have none: there, say that check
    cannot tell and carry on."""
    if cfg.storage.driver_name != "filesystem":
        print(f"fastreg check: cannot tell whether a registry serves {storage_description(cfg)}: repair only "
              "while none writes there (stopped, or serving read-only)", file=sys.stderr)
        return None, None
    import fcntl
    root = cfg.storage.filesystem_root
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None, None           # nothing there (check reports an empty storage) or not a directory
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if not isinstance(exc, BlockingIOError):    # no flock on this filesystem: as for object stores
            print(f"fastreg check: cannot lock {root} ({exc.strerror}), so cannot tell whether a registry serves "
                  "it: repair only while none writes there (stopped, or serving read-only)", file=sys.stderr)
            return None, None
        if force:
            print(f"fastreg check: a registry is serving {root}; repairing anyway (--force)", file=sys.stderr)
            return None, None
        return None, (f"a registry is serving {root}: stop it (or restart it read-only, "
                      "storage.maintenance.readonly.enabled: true) before --repair, or add --force")
    return fd, None


def run_check(cfg: Config, args: argparse.Namespace) -> int:
    """Exit status as fsck's: 0 clean, 1 damage found and all repaired, 4 damage left, 2 error."""
    from . import check
    from .check_leftovers import GRACE
    grace = _grace(args, GRACE, "check")
    if grace is None:
        return 2
    purging = cfg.storage.maintenance.uploadpurging
    lock: int | None = None
    if args.repair:
        lock, refusal = _repair_lock(cfg, args.force)
        if refusal:
            print(f"fastreg check: {refusal}", file=sys.stderr)
            return 2

    async def scrub(driver: StorageDriver) -> check.Report:
        # progress only on a terminal: a log gets the problems and the summary
        progress = gc.Progress(sys.stderr if sys.stderr.isatty() else None)
        return await check.check(driver, repair=args.repair, progress=progress, grace=grace,
                                 upload_age=purging.age, purging=purging.enabled,
                                 pull_history=cfg.fastreg.history.pulls, cached=cached_repositories(cfg))

    try:        # usage recounted: reported, rewritten with --repair
        done = _on_storage(cfg, "check", scrub, lambda _report: not args.repair)
    finally:
        if lock is not None:
            os.close(lock)
    if done is None:
        return 2
    report, rc = done
    recount = [rc] if rc is not None else []
    if args.json:
        doc = orjson.loads(report.as_json())
        for rc in recount:
            doc["quota"] = {"repositories": rc.repositories, "bytes": rc.bytes, "drift": rc.drift,
                            "drifted": [{"repository": n, "counted": c, "recounted": r} for n, c, r in rc.drifted],
                            "repaired": bool(args.repair)}
        print(orjson.dumps({"storage": storage_description(cfg), **doc}, option=orjson.OPT_INDENT_2).decode(),
              flush=True)
    else:
        for h in report.history:
            print(h.line(), flush=True)
        for p in report.problems:
            fixed = f" [{p.repaired}]" if p.repaired else ""
            names = p.names()
            seen = f" ({p.history.text()})" if p.history is not None else ""
            print(f"{p.kind}: {names + ': ' if names else ''}{p.detail}{seen}{fixed} ({p.path})", flush=True)
        for line in check.notes(report):
            print(line, flush=True)
        for rc in recount:
            for name, counted, recounted in rc.drifted:
                print(f"quota drift: {name}: counted {counted} bytes, its manifests reference {recounted}"
                      f"{' [recounted]' if args.repair else ''}", flush=True)
            print(f"{storage_description(cfg)}: {quota.summary(rc, not args.repair)}", flush=True)
        print(f"{storage_description(cfg)}: {check.summary(report, args.repair)}", flush=True)
    return report.exit_code
