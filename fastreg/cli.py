"""`fastreg serve [--config FILE]` (also `fastreg serve FILE`, as Distribution's `registry serve`)."""
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
    args = parser.parse_args(argv)

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
    setup_logging(cfg.log.level)
    from .server import serve
    serve(cfg)
    return 0
