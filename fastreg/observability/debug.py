"""The debug listener (``http.debug.addr``): metrics, health and status on a port of their own.

granian serves one application per port, so this listener is not an ASGI app: it is a small
asyncio HTTP/1.1 server on a thread of granian's *main* process (started by ``fastreg.server``
before the workers), answering one request per connection:

=====================  ============================================================================
``GET <prometheus.path>``  (``/metrics``) every worker's samples merged (prometheus-client multiprocess)
``GET /debug/health``  each check and its status, as JSON; 200 when all pass, else 503.
                       Checks: ``storagedriver_<name>`` (a listing of the storage root, 5 s timeout).
``GET /livez``         200 while the process answers; ``GET /readyz``: as ``/debug/health``
``GET /debug/status``  version, pid, uptime, workers, storage driver, webhook outbox (pending, dropped)
=====================  ============================================================================

Keep it on a private address: it needs no credentials.

The thread starts before granian forks its workers; a forked child keeps only the forking
thread, and this one is idle in its event loop (holding no lock the workers use) at that time.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("fastreg.debug")

MAX_HEAD = 16 * 1024


class DebugServer:
    def __init__(self, cfg: Config, host: str, port: int, *, workers: int) -> None:
        self.cfg = cfg
        self.workers = workers
        self.metrics_path = cfg.http.debug.prometheus.path if cfg.http.debug.prometheus.enabled else None
        self.started = time.time()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # bound here, in the caller's thread, so that a taken port fails the start loudly
        self.sock = socket.create_server((host, port), family=family, reuse_port=False)
        self.port = self.sock.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._driver: Any = None
        self.cleanup_dir: str | None = None      # a metrics sample directory to remove at stop

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="fastreg-debug", daemon=True)
        self._thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()

        async def main() -> asyncio.AbstractServer:
            return await asyncio.start_server(self._handle, sock=self.sock, limit=MAX_HEAD)

        server = loop.run_until_complete(main())
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            loop.run_until_complete(server.wait_closed())
            if self._driver is not None:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(self._driver.close())
            loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if self.cleanup_dir:
            import shutil
            shutil.rmtree(self.cleanup_dir, ignore_errors=True)

    # -- HTTP ---------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(30):
                head = await reader.readuntil(b"\r\n\r\n")
                parts = head.split(b"\r\n", 1)[0].split()
                if len(parts) != 3:
                    status, ctype, body = 400, "text/plain", b"bad request\n"
                    method = "GET"
                else:
                    method = parts[0].decode("latin-1")
                    path = parts[1].decode("latin-1").split("?", 1)[0]
                    status, ctype, body = await self._route(method, path)
                hdr = (f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
                       f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode("latin-1")
                writer.write(hdr + (b"" if method == "HEAD" else body))
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("debug listener: request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if self.metrics_path is not None and path == self.metrics_path:
            return await asyncio.get_running_loop().run_in_executor(None, _scrape)
        if path in ("/debug/health", "/readyz"):
            checks = await self.health()
            ok = all(c["status"] == "ok" for c in checks.values())
            return (200 if ok else 503), "application/json", orjson.dumps(
                {"status": "ok" if ok else "error", "checks": checks})
        if path == "/livez":
            return 200, "application/json", b'{"status":"ok"}'
        if path == "/debug/status":
            return 200, "application/json", orjson.dumps(await self.status())
        return 404, "text/plain", b"not found\n"

    # -- checks -------------------------------------------------------------------------------
    async def health(self) -> dict[str, dict[str, Any]]:
        """Every check of the config's ``health`` section, run once now (the storage is always
        checked, configured or not)."""
        from ..storage.driver.factory import create_driver
        from . import health

        st = self.cfg.storage
        name = f"storagedriver_{st.driver_name}"
        out: dict[str, dict[str, Any]] = {}
        if self._driver is None:
            try:
                self._driver = create_driver(st.driver_name, st.driver_params,
                                             fsync=getattr(self.cfg.fastreg, "fsync", True))
            except Exception as exc:  # noqa: BLE001 -- a failed check is reported, not raised
                out[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}", "seconds": 0.0}
        checks = health.probes(self.cfg, None)
        if self._driver is not None:
            checks.insert(0, (name, health.storage_probe(self._driver), 0.0, 0))
        for check, probe, _interval, _threshold in checks:
            started = time.perf_counter()
            error = await probe()
            seconds = round(time.perf_counter() - started, 6)
            out[check] = {"status": "ok", "seconds": seconds} if error is None else \
                {"status": "error", "error": error, "seconds": seconds}
        return out

    async def status(self) -> dict[str, Any]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ver = version("fastreg")
        except PackageNotFoundError:
            ver = "unknown"
        out: dict[str, Any] = {"version": ver, "pid": os.getpid(), "workers": self.workers,
                               "uptime_seconds": round(time.time() - self.started, 3),
                               "storage": self.cfg.storage.driver_name,
                               "metrics": self.metrics_path is not None}
        eps = [e.name or f"endpoint{i}" for i, e in enumerate(self.cfg.notifications.endpoints) if not e.disabled]
        if eps:
            out["notifications"] = {"endpoints": eps, **await asyncio.get_running_loop().run_in_executor(
                None, _outbox_status, self.cfg)}
        return out


def _scrape() -> tuple[int, str, bytes]:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from .metrics import scrape_registry
    return 200, CONTENT_TYPE_LATEST, generate_latest(scrape_registry())


def _outbox_status(cfg: Config) -> dict[str, Any]:
    from ..notify import default_outbox_dir
    from ..notify.outbox import Outbox

    path = os.path.join(cfg.fastreg.notifications.outbox or default_outbox_dir(cfg), Outbox.FILENAME)
    if not os.path.exists(path):
        return {"pending": {}, "dropped": 0}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        pending = dict(conn.execute("SELECT endpoint, count(*) FROM outbox GROUP BY endpoint").fetchall())
        row = conn.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
    finally:
        conn.close()
    return {"pending": pending, "dropped": int(row[0]) if row else 0}


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error", 503: "Service Unavailable"}
