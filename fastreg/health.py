"""Health checks: storage reachability.

* ``check_storage(driver)``: one check — list the storage root (an empty registry, where the root
  does not exist yet, is healthy), with a timeout.  Used by the debug listener's
  ``/debug/health`` on every request.
* ``StorageHealth``: Distribution's ``health.storagedriver`` (``enabled``, ``interval``,
  ``threshold``).  Each worker checks its driver every ``interval``; after ``threshold``
  failures in a row (at least 1) every request is answered 503 ``UNAVAILABLE`` with the failing
  check in the detail, as Distribution's health handler does, until a check passes again.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from .storage.driver.base import PathNotFound

log = logging.getLogger("fastreg.health")

CHECK_TIMEOUT = 5.0


async def check_storage(driver: Any, timeout: float = CHECK_TIMEOUT) -> tuple[str | None, float]:
    """(None, seconds) when the storage answers, else (error text, seconds)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            with contextlib.suppress(PathNotFound):
                await driver.list("/")
    except TimeoutError:
        return f"no answer within {timeout:g}s", time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001 -- a failed check is reported, not raised
        return f"{type(exc).__name__}: {exc}", time.perf_counter() - started
    return None, time.perf_counter() - started


class StorageHealth:
    def __init__(self, driver: Any, name: str, interval: float, threshold: int) -> None:
        self.driver = driver
        self.check_name = f"storagedriver_{name}"
        self.interval = interval if interval > 0 else 10.0
        self.threshold = max(threshold, 1)
        self.failures = 0
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def ok(self) -> bool:
        return self.failures < self.threshold

    @property
    def detail(self) -> dict[str, str]:
        return {self.check_name: self.error or "unknown"}

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="health-storagedriver")

    async def _run(self) -> None:
        while True:
            error, _ = await check_storage(self.driver, min(CHECK_TIMEOUT, self.interval * 5))
            was_ok = self.ok
            if error is None:
                self.failures, self.error = 0, None
                if not was_ok:
                    log.warning("%s: healthy again", self.check_name)
            else:
                self.failures += 1
                self.error = error
                if was_ok and not self.ok:
                    log.error("%s: unhealthy after %d failed checks, answering 503: %s",
                              self.check_name, self.failures, error)
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
