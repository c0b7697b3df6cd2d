"""`fastreg serve [--config FILE]` (also `fastreg serve FILE`, as Distribution's `registry serve`),
`fastreg htpasswd add|remove USER`, `fastreg gencerts DIR`,
`fastreg gc [--config FILE] [--dry-run] [--delete-untagged]`,
`fastreg check [--config FILE] [--repair] [--json] [--grace DURATION]`."""
from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastreg", description="A fast OCI container registry")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the registry")
    p_serve.add_argument("config_file", nargs="?", help="Distribution-style config.yml")
    p_serve.add_argument("--config", "-c", help="Distribution-style config.yml")
    sub.add_parser("version", help="print the version")
    p_ht = sub.add_parser("htpasswd", help="add or remove users in an htpasswd file (bcrypt)")
    p_ht.add_argument("action", choices=["add", "remove"])
    p_ht.add_argument("user")
    p_ht.add_argument("--file", "-f", default="htpasswd", help="htpasswd file (default: ./htpasswd)")
    p_ht.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p_ht.add_argument("--cost", type=int, default=10, help="bcrypt cost (default 10)")
    p_gen = sub.add_parser("gencerts", help="make a private CA, a TLS certificate and a token-signing certificate")
    p_gen.add_argument("directory")
    p_gen.add_argument("--host", action="append", default=[],
                       help="DNS name or IP address for the TLS certificate (repeatable; default 127.0.0.1, localhost)")
    p_gc = sub.add_parser("gc", help="garbage-collect unreferenced blobs and manifests (safe while serving)")
    p_gc.add_argument("config_file", nargs="?", help="Distribution-style config.yml")
    p_gc.add_argument("--config", "-c", help="Distribution-style config.yml")
    p_gc.add_argument("--dry-run", "-d", action="store_true", help="print what would be deleted; delete nothing")
    p_gc.add_argument("--delete-untagged", "-m", action="store_true", help="also delete manifests no tag reaches")
    p_gc.add_argument("--grace", help="keep anything younger than this (Go duration; default fastreg.gc.graceperiod)")
    p_gc.add_argument("--quiet", "-q", action="store_true", help="no progress and no list of deleted items")
    p_check = sub.add_parser("check", help="re-hash stored blobs and verify every link and tag (a scrub)")
    p_check.add_argument("config_file", nargs="?", help="Distribution-style config.yml")
    p_check.add_argument("--config", "-c", help="Distribution-style config.yml")
    p_check.add_argument("--repair", action="store_true",
                         help="quarantine damaged blobs (never deleted), remove links and tags naming nothing, fix the "
                              "referrers index, remove broken upload sessions and temporary files older than --grace")
    p_check.add_argument("--json", action="store_true", help="print the report as JSON")
    p_check.add_argument("--grace", help="leave upload sessions and temporary files written more recently than "
                         "this alone: they may be writes in flight (Go duration; default 1h)")
    from .retention.cli import add_parser as add_retention
    add_retention(sub)
    args = parser.parse_args(argv)

    if args.command in ("htpasswd", "gencerts"):
        from .auth.cli import gencerts, htpasswd
        return htpasswd(args) if args.command == "htpasswd" else gencerts(args)

    if args.command == "version":
        from importlib.metadata import version

        from . import digest
        print(f"fastreg {version('fastreg')} (digest engine: {'compiled' if digest.EXTENSION else 'pure'})")
        return 0

    from .config import ConfigError, load_config
    from .logging import setup_logging
    path = args.config or args.config_file or os.environ.get("FASTREG_CONFIG")
    try:
        cfg = load_config(path)
    except (ConfigError, OSError) as exc:
        print(f"fastreg: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg.log.level, cfg.log.formatter, cfg.log.fields, accesslog=not cfg.log.accesslog.disabled,
                  caller=cfg.log.reportcaller)
    if args.command == "gc":
        from .gc_cli import run_gc
        return run_gc(cfg, args)
    if args.command == "check":
        from .gc_cli import run_check
        return run_check(cfg, args)
    if args.command == "retention":
        from .retention.cli import run as run_retention
        return run_retention(cfg, args)
    from .server import serve
    try:
        serve(cfg)
    except ConfigError as exc:
        print(f"fastreg: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0
