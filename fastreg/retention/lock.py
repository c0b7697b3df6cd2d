"""One storage-wide exclusive lock (the quota reservations', the first pushes of immutable tags').

This process's holders queue on an ``asyncio.Lock``; across processes, the driver's ``exclusive``
lock of a directory holding one anchor file (object stores lock a non-empty path): ``flock`` on the
filesystem (every worker and replica of the host), the lease object on S3 and Azure (every replica).
A driver without ``exclusive`` (GCS, the in-memory driver) serialises within the process only.  A
holder elsewhere is waited for, with backoff, up to ``wait`` seconds; then ``503 UNAVAILABLE``.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator

from ..errors import RegistryError
from ..storage import layout, walk
from ..storage.driver.base import Busy, PathNotFound, StorageDriver, exclusive_lock


class StorageLock:
    def __init__(self, driver: StorageDriver, path: str, *, wait: float, what: str, busy: str) -> None:
        self.driver = driver
        self.path = path
        self.anchor = layout.lock_anchor(path)
        self.wait = wait
        self.what = what                    # "storage quota": the anchor's text, the 503's detail
        self.busy = busy                    # the 503's message
        self._local = asyncio.Lock()
        self._anchored = False

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        async with self._local, contextlib.AsyncExitStack() as stack:
            if self.driver.capabilities.exclusive:
                deadline = time.monotonic() + self.wait
                delay = 0.002
                while True:
                    try:
                        if not self._anchored:
                            if not await walk.exists(self.driver, self.anchor):
                                await self.driver.put_content(self.anchor, f"fastreg {self.what} lock\n".encode())
                            self._anchored = True
                        await stack.enter_async_context(exclusive_lock(self.driver, self.path))
                        break
                    except PathNotFound:
                        self._anchored = False          # removed by hand: written again
                    except Busy:
                        pass
                    if time.monotonic() > deadline:
                        raise RegistryError("UNAVAILABLE", f"the {self.what} lock is held elsewhere", status=503,
                                            message=self.busy)
                    await asyncio.sleep(random.uniform(delay / 2, delay))
                    delay = min(delay * 2, 0.2)
            yield
