"""Logging setup shared by the CLI and granian workers (level names as Distribution's)."""
from __future__ import annotations

import logging
import sys

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
          "error": logging.ERROR, "fatal": logging.CRITICAL, "panic": logging.CRITICAL}


def setup_logging(level: str = "info") -> None:
    root = logging.getLogger("fastreg")
    root.setLevel(LEVELS.get(level.lower(), logging.INFO))
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.propagate = False
