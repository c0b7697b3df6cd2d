"""The catalog: every repository, found as a directory holding ``_manifests`` (as Distribution does)."""
from __future__ import annotations

from ..storage import layout
from ..storage.driver.base import PathNotFound, StorageDriver


class Catalog:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def repositories(self) -> list[str]:
        found: list[str] = []
        await self._walk(layout.REPOS, "", found)
        found.sort()
        return found

    async def _walk(self, path: str, prefix: str, found: list[str]) -> None:
        try:
            children = await self.driver.list(path)
        except PathNotFound:
            return
        if "_manifests" in children:
            found.append(prefix)
        for child in sorted(children):
            if child.startswith("_") or child.startswith("."):
                continue
            await self._walk(f"{path}/{child}", f"{prefix}/{child}" if prefix else child, found)
