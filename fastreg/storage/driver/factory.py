"""The one place that knows the concrete drivers."""
from __future__ import annotations

from typing import Any

from .base import StorageDriver


def create_driver(name: str, params: Any, *, fsync: bool = True) -> StorageDriver:
    if name == "filesystem":
        from .filesystem import FilesystemDriver
        return FilesystemDriver(params.rootdirectory, maxthreads=getattr(params, "maxthreads", 16) or 16,
                                fsync=fsync)
    if name == "inmemory":
        from .inmemory import InMemoryDriver
        return InMemoryDriver()
    raise ValueError(f"storage driver {name!r} is not available in this build of fastreg")
