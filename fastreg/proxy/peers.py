"""Coalescing blob misses across replicas: one upstream fetch per blob for a whole cluster.

Within a host, workers coordinate by ``flock`` (``spool.py``).  Replicas on several hosts that
share one storage coordinate through it, when each is given ``fastreg.proxy.peerurl`` (the URL
the other replicas reach it at):

* A replica about to fetch blob ``d`` from upstream first writes a *lease* (``registry/leases.py``)
  ``_fastreg_proxy/fetching/<alg>/<hex>/<replica id>`` = ``{"peer", "since", "time"}``, waits
  ``SETTLE`` seconds, and lists the leases of ``d``.
* Among the fresh leases (``time`` younger than ``STALE``) the oldest ``since`` wins (ties: the
  lower id).  Every replica that lists after both leases are written sees the same winner, so in
  the usual storm — every replica missing at once — exactly one fetches from upstream.  (Two
  replicas miss the same blob more than ``SETTLE`` apart with the second listing before the
  first one's lease is visible: impossible with read-after-write storage.  Equal ``since`` with
  clocks skewed by more than the gap between two misses can still give two fetches.)
* The winner keeps its lease fresh while it fetches and removes it once the blob is stored.
* The others remove their lease and stream the blob *from the winner*
  (``GET <peer>/v2/<name>/blobs/<digest>`` with the client's own ``Authorization``): the winner
  serves it from its in-flight fetch as the bytes arrive, so every client in the cluster streams
  from one upstream connection.  If the winner cannot be reached, the replica fetches from
  upstream itself.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from typing import Any

import orjson

from ..digest import Digest
from ..registry.leases import Leases
from ..storage.driver.base import StorageError

SETTLE = 0.05        # seconds between writing a lease and reading the others
REFRESH = 2.0        # a fetching replica rewrites its lease this often
STALE = 10.0         # a lease not rewritten for this long belongs to a replica that went away


class Peers:
    def __init__(self, leases: Leases, peer_url: str) -> None:
        self.leases = leases
        self.url = peer_url.rstrip("/")
        self.id = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self._since: dict[Digest, float] = {}       # leases this replica holds

    async def _write(self, d: Digest, since: float) -> None:
        body = orjson.dumps({"peer": self.url, "since": since, "time": time.time()})
        await self.leases.put(d, self.id, body)

    async def release(self, d: Digest) -> None:
        self._since.pop(d, None)
        await self.leases.delete(d, self.id)

    async def elect(self, d: Digest) -> str | None:
        """The URL of the replica that fetches `d` from upstream, or None if it is this one
        (then the lease is held: keep it fresh with `hold`, end with `release`)."""
        since = time.time()
        await self._write(d, since)
        await asyncio.sleep(SETTLE)
        best: tuple[float, str, str] | None = None
        now = time.time()
        for name, body in (await self.leases.all(d)).items():
            try:
                doc: Any = orjson.loads(body)
                if now - float(doc["time"]) > STALE:
                    continue
                key = (float(doc["since"]), name, str(doc["peer"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            if best is None or key < best:
                best = key
        if best is None or best[1] == self.id:
            self._since[d] = since
            return None
        await self.release(d)
        return best[2]

    async def hold(self, d: Digest) -> None:
        """Keep this replica's lease on `d` fresh until cancelled."""
        while d in self._since:
            await asyncio.sleep(REFRESH)
            with contextlib.suppress(StorageError):
                await self._write(d, self._since.get(d, time.time()))
