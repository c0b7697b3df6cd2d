"""Compiled extensions and their pure-Python twins (fastreg._digest / _digest_py,
fastreg._fsio / _fsio_py): the compiled one is used unless FASTREG_NO_EXTENSIONS=1 or it was
not built (an install without a C compiler or OpenSSL headers: the build leaves the extensions
out, and the first load that misses one logs one warning saying so)."""
from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

COMPILED = ("_digest", "_fsio")
# Set once the warning is logged, so that granian's worker processes (which inherit the
# environment) do not repeat it.  Not a FASTREG_ name: those are config overrides.
_WARNED_ENV = "_FASTREG_ENGINES_WARNED"


def opted_out() -> bool:
    return os.environ.get("FASTREG_NO_EXTENSIONS", "") == "1"


def _import(compiled: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"fastreg.{compiled}")
    except ImportError:
        return None


def load(compiled: str, pure: ModuleType) -> tuple[ModuleType, bool]:
    """The extension module `fastreg.<compiled>`, or `pure`; and whether it is the compiled one."""
    if opted_out():
        return pure, False
    module = _import(compiled)
    if module is None:
        _warn_missing()
        return pure, False
    return module, True


def _warn_missing() -> None:
    if os.environ.get(_WARNED_ENV):
        return
    os.environ[_WARNED_ENV] = "1"
    missing = ", ".join(f"fastreg.{name}" for name in COMPILED if _import(name) is None)
    logging.getLogger("fastreg").warning(
        "fastreg's compiled engines are not installed (%s; it was built without a C compiler or "
        "OpenSSL headers): running the pure-Python engines, slower at hashing and writing files. "
        "Install gcc, libssl-dev and python3-dev and reinstall fastreg for the compiled engines; "
        "FASTREG_NO_EXTENSIONS=1 selects the pure engines without this warning.", missing)
