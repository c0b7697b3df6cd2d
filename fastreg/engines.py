"""Compiled extensions and their pure-Python twins (fastreg._digest / _digest_py,
fastreg._fsio / _fsio_py): the compiled one is used unless FASTREG_NO_EXTENSIONS=1 or it was
not built."""
from __future__ import annotations

import importlib
import os
from types import ModuleType


def load(compiled: str, pure: ModuleType) -> tuple[ModuleType, bool]:
    """The extension module `fastreg.<compiled>`, or `pure`; and whether it is the compiled one."""
    if os.environ.get("FASTREG_NO_EXTENSIONS", "") == "1":
        return pure, False
    try:
        return importlib.import_module(f"fastreg.{compiled}"), True
    except ImportError:
        return pure, False
