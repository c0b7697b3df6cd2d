"""Walking the storage tree (``storage/layout.py``) through any driver: small lookups shared by
the services, and the repository walk of the offline tools (gc, check) that must see every
repository, whatever the catalog cache says."""
from __future__ import annotations

from . import layout
from .driver.base import PathNotFound, StorageDriver


async def listing(driver: StorageDriver, path: str) -> list[str]:
    """The sorted names under `path`; empty if it does not exist."""
    try:
        return sorted(await driver.list(path))
    except PathNotFound:
        return []


async def exists(driver: StorageDriver, path: str) -> bool:
    """Whether `path` (a file or a directory) exists."""
    try:
        await driver.stat(path)
        return True
    except PathNotFound:
        return False


async def repositories(driver: StorageDriver) -> list[str]:
    """Every repository name: each directory under ``repositories/`` holding ``_manifests`` or
    ``_layers``, sorted (nested names are walked through their path components)."""
    found: list[str] = []

    async def walk(path: str, prefix: str) -> None:
        children = await listing(driver, path)
        if "_manifests" in children or "_layers" in children:
            found.append(prefix)
        for child in children:
            if not child.startswith(("_", ".")):
                await walk(f"{path}/{child}", f"{prefix}/{child}" if prefix else child)

    await walk(layout.REPOS, "")
    return sorted(found)
