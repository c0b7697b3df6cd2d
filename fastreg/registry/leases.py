"""Leases: short-lived records in the shared storage saying which replica is doing what for a
blob — the pull-through cache's cluster-wide coalescing (``fastreg.proxy.peers``) keeps one per
replica fetching a blob, at ``layout.lease`` (``_fastreg_proxy/fetching/<alg>/<hex>/<replica id>``).
Not durable (a lost lease only costs a second fetch); ``fastreg check`` and ``gc`` do not look there."""
from __future__ import annotations

import contextlib

from ..digest import Digest
from ..storage import layout
from ..storage.driver.base import PathNotFound, StorageDriver, StorageError


class Leases:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def put(self, d: Digest, holder: str, body: bytes) -> None:
        await self.driver.put_content(layout.lease(d.algorithm, d.hex, holder), body, durable=False)

    async def delete(self, d: Digest, holder: str) -> None:
        with contextlib.suppress(PathNotFound, StorageError):
            await self.driver.delete(layout.lease(d.algorithm, d.hex, holder))

    async def all(self, d: Digest) -> dict[str, bytes]:
        """Every lease on `d`: holder → body (leases removed while listing are left out)."""
        try:
            names = await self.driver.list(layout.lease_dir(d.algorithm, d.hex))
        except PathNotFound:
            return {}
        out: dict[str, bytes] = {}
        for name in names:
            with contextlib.suppress(PathNotFound):
                out[name] = await self.driver.get_content(layout.lease(d.algorithm, d.hex, name))
        return out
