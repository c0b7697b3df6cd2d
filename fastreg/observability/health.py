"""Health checks: Distribution's ``health`` section.

Each configured check runs in every worker, every ``interval`` (default 10 s).  After
``threshold`` failures in a row (at least 1) the registry answers every request with 503
``UNAVAILABLE``, naming the failing checks in the detail — as Distribution's health handler
does — until the check passes again.

* ``storagedriver`` (``enabled``, ``interval``, ``threshold``): list the storage root (an empty
  registry, where the root does not exist yet, is healthy), with a timeout.  Named
  ``storagedriver_<driver>``.
* ``file`` (``file``, ``interval``, ``threshold``): fails while the file *exists* — the way to take
  one replica out of a load balancer for maintenance (``touch /run/fastreg-down``).  Named by the
  path.
* ``http`` (``uri``, ``headers``, ``statuscode`` default 200, ``timeout`` default 1 s,
  ``interval``, ``threshold``): a ``HEAD`` of ``uri`` must answer ``statuscode``.  Named by the URI.
* ``tcp`` (``addr``, ``timeout`` default 1 s, ``interval``, ``threshold``): a TCP connection to
  ``addr`` must open.  Named by the address.

The debug listener's ``/debug/health`` runs every configured probe once per request
(``probes``) and reports each.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..storage.driver.base import PathNotFound

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("fastreg.health")

CHECK_TIMEOUT = 5.0
DEFAULT_INTERVAL = 10.0
DEFAULT_PROBE_TIMEOUT = 1.0

Probe = Callable[[], Awaitable[str | None]]      # None when healthy, else what is wrong


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


def storage_probe(driver: Any, timeout: float = CHECK_TIMEOUT) -> Probe:
    async def probe() -> str | None:
        return (await check_storage(driver, timeout))[0]
    return probe


def file_probe(path: str) -> Probe:
    async def probe() -> str | None:
        return "file exists" if os.path.lexists(path) else None
    return probe


def tcp_probe(addr: str, timeout: float) -> Probe:
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"

    async def probe() -> str | None:
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host, int(port))
        except TimeoutError:
            return f"connection to {addr} timed out after {timeout:g}s"
        except (OSError, ValueError) as exc:
            return f"connection to {addr} failed: {exc}"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return None
    return probe


def http_probe(uri: str, headers: dict[str, list[str]], status: int, timeout: float) -> Probe:
    import httpx

    hdrs = [(k, v) for k, values in headers.items() for v in values]

    async def probe() -> str | None:
        try:
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
                r = await client.head(uri, headers=hdrs)
        except httpx.HTTPError as exc:
            return f"HEAD {uri} failed: {type(exc).__name__}: {exc}"
        if r.status_code != status:
            return f"downstream service returned unexpected status: {r.status_code}"
        return None
    return probe


class PeriodicCheck:
    def __init__(self, name: str, probe: Probe, interval: float, threshold: int) -> None:
        self.name = name
        self.probe = probe
        self.interval = interval if interval > 0 else DEFAULT_INTERVAL
        self.threshold = max(threshold, 1)
        self.failures = 0
        self.error: str | None = None

    @property
    def ok(self) -> bool:
        return self.failures < self.threshold

    async def run(self) -> None:
        while True:
            try:
                error = await self.probe()
            except Exception as exc:  # noqa: BLE001 -- a failed check is reported, not raised
                error = f"{type(exc).__name__}: {exc}"
            was_ok = self.ok
            if error is None:
                self.failures, self.error = 0, None
                if not was_ok:
                    log.warning("health check %s: healthy again", self.name)
            else:
                self.failures += 1
                self.error = error
                if was_ok and not self.ok:
                    log.error("health check %s: unhealthy after %d failed checks, answering 503: %s",
                              self.name, self.failures, error)
            await asyncio.sleep(self.interval)


class HealthChecks:
    """The periodic checks of one worker; the registry answers 503 while any of them fails."""

    def __init__(self, checks: list[PeriodicCheck]) -> None:
        self.checks = checks
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def detail(self) -> dict[str, str]:
        return {c.name: c.error or "unknown" for c in self.checks if not c.ok}

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(c.run(), name=f"health {c.name}") for c in self.checks]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []


def probes(cfg: Config, driver: Any | None) -> list[tuple[str, Probe, float, int]]:
    """(name, probe, interval, threshold) for every check the config asks for."""
    hc = cfg.health
    out: list[tuple[str, Probe, float, int]] = []
    if driver is not None and hc.storagedriver.enabled:
        out.append((f"storagedriver_{cfg.storage.driver_name}", storage_probe(driver),
                    hc.storagedriver.interval, hc.storagedriver.threshold))
    for f in hc.file:
        out.append((f.file, file_probe(f.file), f.interval, f.threshold))
    for ht in hc.http:
        out.append((ht.uri, http_probe(ht.uri, ht.headers, ht.statuscode or 200,
                                       ht.timeout or DEFAULT_PROBE_TIMEOUT), ht.interval, ht.threshold))
    for t in hc.tcp:
        out.append((t.addr, tcp_probe(t.addr, t.timeout or DEFAULT_PROBE_TIMEOUT), t.interval, t.threshold))
    return out


def build(cfg: Config, driver: Any) -> HealthChecks | None:
    checks = [PeriodicCheck(*p) for p in probes(cfg, driver)]
    return HealthChecks(checks) if checks else None
