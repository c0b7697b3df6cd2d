"""`fastreg serve [--config FILE]` (also `fastreg serve FILE`, as Distribution's `registry serve`),
`fastreg htpasswd add|remove USER`, `fastreg gencerts DIR`,
`fastreg gc [--config FILE] [--dry-run] [--delete-untagged]`,
`fastreg check [--config FILE] [--repair] [--json] [--grace DURATION]`,
`fastreg retention [--config FILE] [--dry-run] [--json]`, `fastreg version` (also `--version`),
`fastreg completion bash|zsh`.

A user mistake or a failure of the environment (a missing file, a port in use, a storage extra
that is not installed) is one line on stderr, ``fastreg: <what>: <what to do>``, and a non-zero
exit status; ``--debug`` (before or after the command) shows the traceback instead."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from . import __version__


class UserError(Exception):
    """A failure the user can fix: printed as one line (``fastreg: <message>``), exit `status`."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


EXAMPLES = {
    "serve": "examples:\n  fastreg serve\n  fastreg serve /etc/docker/registry/config.yml\n"
             "  FASTREG_HTTP_ADDR=127.0.0.1:5001 fastreg serve --config config.yml",
    "version": "example:\n  fastreg version",
    "htpasswd": "examples:\n  fastreg htpasswd add alice --file /etc/fastreg/htpasswd\n"
                "  printf '%s\\n' \"$PASSWORD\" | fastreg htpasswd add ci --password-stdin -f htpasswd\n"
                "  fastreg htpasswd remove alice -f htpasswd",
    "gencerts": "example:\n  fastreg gencerts /etc/fastreg/certs --host registry.example.com --host 10.0.0.5",
    "gc": "examples:\n  fastreg gc --dry-run config.yml\n  fastreg gc --delete-untagged --grace 1h -c config.yml",
    "check": "examples:\n  fastreg check config.yml\n  fastreg check --json -c config.yml > report.json\n"
             "  fastreg check --repair config.yml   (stop the registry first, or serve read-only)",
    "retention": "examples:\n  fastreg retention --config /etc/fastreg/config.yml --dry-run\n"
                 "  fastreg retention -c config.yml --json > report.json",
    "completion": "examples:\n  source <(fastreg completion bash)\n"
                  "  fastreg completion zsh > \"${fpath[1]}/_fastreg\"",
}


def _sub(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help[:1].upper() + help[1:],
                                                epilog=EXAMPLES[name],
                                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks of failures (instead of one line)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastreg", description="A fast OCI container registry",
                                     epilog="run `fastreg COMMAND --help` for a command's options and examples",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version_line())
    parser.add_argument("--debug", action="store_true", help="show tracebacks of failures (instead of one line)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_serve = _sub(sub, "serve", "run the registry")
    p_serve.add_argument("config_file", nargs="?", help="Distribution-style config.yml")
    p_serve.add_argument("--config", "-c", help="Distribution-style config.yml")
    _sub(sub, "version", "print the version and which engine runs (compiled or pure Python)")
    p_ht = _sub(sub, "htpasswd", "add or remove users in an htpasswd file (bcrypt)")
    p_ht.add_argument("action", choices=["add", "remove"])
    p_ht.add_argument("user")
    p_ht.add_argument("--file", "-f", default="htpasswd", help="htpasswd file (default: ./htpasswd)")
    p_ht.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p_ht.add_argument("--cost", type=int, default=10, help="bcrypt cost (default 10)")
    p_gen = _sub(sub, "gencerts", "make a private CA, a TLS certificate and a token-signing certificate")
    p_gen.add_argument("directory")
    p_gen.add_argument("--host", action="append", default=[],
                       help="DNS name or IP address for the TLS certificate (repeatable; default 127.0.0.1, localhost)")
    p_gc = _sub(sub, "gc", "garbage-collect unreferenced blobs and manifests (safe while serving)")
    p_gc.add_argument("config_file", nargs="?", help="Distribution-style config.yml")
    p_gc.add_argument("--config", "-c", help="Distribution-style config.yml")
    p_gc.add_argument("--dry-run", "-d", action="store_true", help="print what would be deleted; delete nothing")
    p_gc.add_argument("--delete-untagged", "-m", action="store_true", help="also delete manifests no tag reaches")
    p_gc.add_argument("--grace", help="keep anything younger than this (Go duration; default fastreg.gc.graceperiod)")
    p_gc.add_argument("--quiet", "-q", action="store_true", help="no progress and no list of deleted items")
    p_check = _sub(sub, "check", "re-hash stored blobs and verify every link and tag (a scrub)")
    p_check.add_argument("config_file", nargs="?", help="Distribution-style config.yml")
    p_check.add_argument("--config", "-c", help="Distribution-style config.yml")
    p_check.add_argument("--repair", action="store_true",
                         help="quarantine damaged blobs (never deleted), remove links and tags naming nothing, fix the "
                              "referrers index, remove broken upload sessions and temporary files older than --grace; "
                              "refused while a registry that is not read-only serves this data directory")
    p_check.add_argument("--force", action="store_true",
                         help="with --repair: repair even while a registry serves this data directory")
    p_check.add_argument("--json", action="store_true", help="print the report as JSON")
    p_check.add_argument("--grace", help="leave upload sessions and temporary files written more recently than "
                         "this alone: they may be writes in flight (Go duration; default 1h)")
    from .retention.cli import HELP as RETENTION_HELP
    from .retention.cli import add_arguments as retention_arguments
    retention_arguments(_sub(sub, "retention", RETENTION_HELP))
    p_comp = _sub(sub, "completion", "print a shell completion script (bash or zsh)")
    p_comp.add_argument("shell", choices=["bash", "zsh"])
    return parser


def version_line() -> str:
    from .observability.metrics import engine
    return f"fastreg {__version__} (engine: {engine()})"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(parser, args)
    except KeyboardInterrupt:
        return 130
    except UserError as exc:
        if args.debug:
            raise
        print(f"fastreg: {exc}", file=sys.stderr)
        return exc.status
    except Exception as exc:
        if args.debug:
            raise
        print(f"fastreg: {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr)
        return 1


class _Held(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < 1000:
            self.records.append(record)


def _config_path(args: argparse.Namespace) -> str | None:
    path: str | None = args.config or args.config_file or os.environ.get("FASTREG_CONFIG")
    if path is None:
        return None
    if os.path.isdir(path):
        raise UserError(f"configuration file {path} is a directory: name the config.yml inside it", 2)
    if not os.path.exists(path):
        raise UserError(f"configuration file {path} does not exist: check the path "
                        "(or run without a file for the defaults)", 2)
    if not os.access(path, os.R_OK):
        raise UserError(f"configuration file {path} is not readable by this user: check its permissions", 2)
    return path


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "completion":
        from .completion import script
        sys.stdout.write(script(parser, args.shell))
        return 0

    if args.command in ("htpasswd", "gencerts"):
        from .auth.cli import gencerts, htpasswd
        return htpasswd(args) if args.command == "htpasswd" else gencerts(args)

    if args.command == "version":
        print(version_line())
        return 0

    from .config import ConfigError, load_config
    from .observability.logging import setup_logging
    path = _config_path(args)
    # warnings of the config load (ignored keys, deprecated ones) are held until the config says
    # how to log them, then written in its format
    held = _Held()
    logging.getLogger("fastreg.config").addHandler(held)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        raise UserError(f"configuration error: {exc}", 2) from exc
    except OSError as exc:
        raise UserError(f"configuration file {path}: {exc.strerror or exc}", 2) from exc
    finally:
        logging.getLogger("fastreg.config").removeHandler(held)
    setup_logging(cfg.log.level, cfg.log.formatter, cfg.log.fields, accesslog=not cfg.log.accesslog.disabled,
                  caller=cfg.log.reportcaller)
    for record in held.records:
        if logging.getLogger(record.name).isEnabledFor(record.levelno):
            logging.getLogger(record.name).handle(record)
    if args.command == "gc":
        from .maintenance.gc_cli import run_gc
        return run_gc(cfg, args)
    if args.command == "check":
        from .maintenance.gc_cli import run_check
        return run_check(cfg, args)
    if args.command == "retention":
        from .retention.cli import run as run_retention
        return run_retention(cfg, args)
    from .server import StartupError, serve
    try:
        serve(cfg)
    except ConfigError as exc:
        raise UserError(f"configuration error: {exc}", 2) from exc
    except StartupError as exc:
        raise UserError(str(exc), exc.status) from exc
    return 0
