"""Prometheus metrics, aggregated across granian's worker processes.

prometheus-client's multiprocess mode: every process writes its samples to mmap'ed files in
``PROMETHEUS_MULTIPROC_DIR``; the debug listener (``fastreg.observability.debug``, in granian's main process)
merges them at each scrape.  ``fastreg.server`` makes a fresh directory and sets the variable
before any worker starts, so it is set before anything imports ``prometheus_client``.  Nothing
here is imported when ``http.debug.prometheus.enabled`` is false: the request path then pays one
``is None`` test.

Names follow Distribution's (``registry_http_*``, ``registry_storage_*``,
``registry_notifications_*``) so its dashboards keep working; ``handler`` is fastreg's route
name (``base``, ``manifest``, ``blob``, ``upload_start``, ``upload``, ``tags``, ``catalog``,
``referrers``, ``none`` for unknown paths).  Label children are cached per label tuple, so a
request costs a dict lookup and a few mmap writes.
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from ..storage.driver.base import DriverWrapper, FileInfo, FileWriter, StorageDriver, WriterWrapper

if TYPE_CHECKING:
    from ..config import Config

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
STORAGE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30)


def engine() -> str:
    """Which engines run: ``compiled`` (the Cython extensions), ``pure`` (their pure-Python twins,
    FASTREG_NO_EXTENSIONS=1 or not built) or ``mixed`` (some of each; fastreg.engines)."""
    from .. import _digest_py, _fsio_py, engines
    compiled = {engines.load("_digest", _digest_py)[1], engines.load("_fsio", _fsio_py)[1]}
    return "compiled" if compiled == {True} else "pure" if compiled == {False} else "mixed"


def scrape_registry() -> Any:
    """What the debug listener serves at each scrape (in granian's main process): every worker's
    samples merged, each process's own figures (``process_*``, labelled by ``pid`` and ``role``,
    main or worker) and ``fastreg_build_info``."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(ProcessMetrics(os.environ[MULTIPROC_ENV]))
    return registry


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _boot_time() -> float:
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _proc_figures(pid: int) -> tuple[int, float, int, int, float, int] | None:
    """(parent pid, CPU seconds, resident bytes, virtual bytes, start time, open fds) from /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read(4096)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()     # after "pid (comm) ": field 3 onwards
    ppid = int(fields[1])
    cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    start = int(fields[19]) / _CLOCK_TICKS
    return ppid, cpu, int(fields[21]) * _PAGE, int(fields[20]), start, fds


class ProcessMetrics:
    """A collector of the process metrics Prometheus users expect (CPU, memory, open fds), for
    granian's main process and each live worker, and the build info.

    The workers are the processes whose samples are in the multiprocess directory (files named
    ``<kind>_<pid>.db``) and whose parent is this process: a worker that died and was replaced
    is gone from /proc, a reused pid has another parent."""

    def __init__(self, multiproc_dir: str) -> None:
        self.dir = multiproc_dir

    def _pids(self) -> list[tuple[int, str]]:
        me = os.getpid()
        out = [(me, "main")]
        seen = set()
        try:
            names = os.listdir(self.dir)
        except OSError:
            names = []
        for name in names:
            stem, _, tail = name.rpartition("_")
            if stem and tail.endswith(".db") and tail[:-3].isdigit():
                seen.add(int(tail[:-3]))
        out += [(pid, "worker") for pid in sorted(seen) if pid != me]
        return out

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        labels = ["pid", "role"]
        cpu = CounterMetricFamily("process_cpu_seconds", "User and system CPU time spent, in seconds", labels=labels)
        rss = GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size in bytes", labels=labels)
        vms = GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory size in bytes", labels=labels)
        fds = GaugeMetricFamily("process_open_fds", "Number of open file descriptors", labels=labels)
        start = GaugeMetricFamily("process_start_time_seconds", "Start time of the process since the epoch, "
                                  "in seconds", labels=labels)
        boot = _boot_time()
        me = os.getpid()
        for pid, role in self._pids():
            figures = _proc_figures(pid)
            if figures is None or (role == "worker" and figures[0] != me):
                continue
            _, cpu_s, rss_b, vms_b, started, nfds = figures
            values = [str(pid), role]
            cpu.add_metric(values, cpu_s)
            rss.add_metric(values, rss_b)
            vms.add_metric(values, vms_b)
            fds.add_metric(values, nfds)
            start.add_metric(values, boot + started)
        info = GaugeMetricFamily("fastreg_build_info", "fastreg's version and engine (compiled: the Cython "
                                 "extensions; pure: their pure-Python twins), always 1",
                                 labels=["version", "engine", "python"])
        import platform

        from .. import __version__
        info.add_metric([__version__, engine(), platform.python_version()], 1)
        return [cpu, rss, vms, fds, start, info]


def enabled(cfg: Config) -> bool:
    return bool(cfg.http.debug.addr and cfg.http.debug.prometheus.enabled)


def prepare_multiproc_dir() -> str:
    """Before the workers start: a fresh sample directory (a reused one is emptied)."""
    import tempfile
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.unlink(os.path.join(path, name))
    else:
        path = tempfile.mkdtemp(prefix="fastreg-metrics-")
        os.environ[MULTIPROC_ENV] = path
    return path


class Metrics:
    """The Observer (``fastreg.hooks``) and the notifier's metrics, in one worker process."""

    def __init__(self) -> None:
        if not os.environ.get(MULTIPROC_ENV):
            raise RuntimeError(f"{MULTIPROC_ENV} must be set before metrics are created")
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter("registry_http_requests_total", "HTTP requests by handler, method and status code",
                                ["handler", "method", "code"])
        self.latency = Histogram("registry_http_request_duration_seconds", "Time to answer a request",
                                 ["handler", "method"], buckets=LATENCY_BUCKETS)
        self.bytes_in = Counter("registry_http_request_size_bytes_total", "Request body bytes received",
                                ["handler"])
        self.bytes_out = Counter("registry_http_response_size_bytes_total", "Response body bytes sent",
                                 ["handler"])
        self.uploads = Counter("registry_uploads_total", "Blob uploads by outcome (started, committed, failed)",
                               ["outcome"])
        self.storage = Histogram("registry_storage_action_seconds", "Storage driver call latency",
                                 ["driver", "action"], buckets=STORAGE_BUCKETS)
        self.nt_delivered = Counter("registry_notifications_events_total",
                                    "Events delivered to a webhook endpoint", ["endpoint"])
        self.nt_failures = Counter("registry_notifications_errors_total",
                                   "Failed webhook POSTs", ["endpoint", "reason"])
        self.nt_retries = Counter("registry_notifications_retries_total",
                                  "Webhook POSTs that retried an earlier failure", ["endpoint"])
        self.nt_depth = Gauge("registry_notifications_pending", "Events waiting in the outbox per endpoint",
                              ["endpoint"], multiprocess_mode="mostrecent")
        self.nt_dropped = Counter("registry_notifications_dropped_total",
                                  "Events dropped because the outbox was full")
        self.px_refused = Counter("registry_proxy_refused_total",
                                  "Upstream answers the pull-through cache refused (nothing of them stored or served "
                                  "whole), by upstream and reason", ["upstream", "reason"])
        self.immutable_refusals = Counter("fastreg_immutability_refusals_total",
                                          "Requests refused because they would move or delete an immutable tag",
                                          ["action"])
        self.retention_deleted = Counter("fastreg_retention_deleted_total",
                                         "Tags and untagged manifests deleted by retention policies", ["kind"])
        self.lock_failures = Counter("registry_storage_lock_failures_total",
                                     "Upload lock renewals, breaks and releases that failed on an object store",
                                     ["kind"])
        from ..storage.driver import lease
        lease.observers.append(lambda kind: self.lock_failures.labels(kind).inc())
        self.quota_refusals = Counter("fastreg_quota_refusals_total",
                                      "Pushes refused by a storage quota, at the manifest PUT or the blob upload",
                                      ["at"])
        self.quota_usage = Gauge("fastreg_quota_usage_bytes", "Bytes counted against each storage quota "
                                 "(scope: the rule's repository glob, or registry)", ["scope"],
                                 multiprocess_mode="mostrecent")
        self.quota_limit = Gauge("fastreg_quota_limit_bytes", "Each storage quota's limit", ["scope"],
                                 multiprocess_mode="mostrecent")
        self.storage_usage = Gauge("fastreg_storage_usage_bytes", "Bytes the manifests of the repositories "
                                   "under each name prefix (first path component) reference, counted once per "
                                   "blob per repository (kept while storage quotas are on)", ["prefix"],
                                   multiprocess_mode="mostrecent")
        self._prefixes: set[str] = set()
        self._req: dict[tuple[str, str, int], tuple[Any, Any, Any, Any]] = {}
        self._uploads = {k: self.uploads.labels(k) for k in ("started", "committed", "failed")}

    # -- Observer -----------------------------------------------------------------------------
    def request_done(self, route: str, method: str, status: int, seconds: float,
                     bytes_in: int, bytes_out: int) -> None:
        key = (route, method, status)
        children = self._req.get(key)
        if children is None:
            children = self._req[key] = (self.requests.labels(route, method, str(status)),
                                         self.latency.labels(route, method),
                                         self.bytes_in.labels(route), self.bytes_out.labels(route))
        count, hist, b_in, b_out = children
        count.inc()
        hist.observe(seconds)
        if bytes_in:
            b_in.inc(bytes_in)
        if bytes_out:
            b_out.inc(bytes_out)
        if route == "upload_start" and method == "POST":
            # 202: a session; 201 with a body: a monolithic upload (a mount has no body)
            if status == 202 or (status == 201 and bytes_in):
                self._uploads["started"].inc()
            if status == 201 and bytes_in:
                self._uploads["committed"].inc()
            elif status >= 400:
                self._uploads["failed"].inc()
        elif route == "upload" and method in ("PUT", "PATCH"):
            if method == "PUT" and status == 201:
                self._uploads["committed"].inc()
            elif status >= 400:
                self._uploads["failed"].inc()

    # -- the notifier's (fastreg.notify.webhooks.NotifyMetrics) ------------------------------
    def webhook_delivered(self, endpoint: str, events: int) -> None:
        self.nt_delivered.labels(endpoint).inc(events)

    def webhook_failed(self, endpoint: str, reason: str) -> None:
        self.nt_failures.labels(endpoint, reason).inc()

    def webhook_retry(self, endpoint: str) -> None:
        self.nt_retries.labels(endpoint).inc()

    def webhook_depth(self, endpoint: str, depth: int) -> None:
        self.nt_depth.labels(endpoint).set(depth)

    def webhook_dropped(self, events: int) -> None:
        self.nt_dropped.inc(events)

    # -- the pull-through cache's (fastreg.proxy) ----------------------------------------------
    def proxy_refused(self, upstream: str, reason: str) -> None:
        """reason: digest_mismatch, manifest_invalid, refused (an address or redirect), too_large,
        deadline, invalid, unreachable."""
        self.px_refused.labels(upstream, reason).inc()

    # -- retention and immutability (fastreg.retention) ------------------------------------
    def immutable_refused(self, action: str) -> None:
        self.immutable_refusals.labels(action).inc()

    def retention_done(self, kind: str, count: int) -> None:
        if count:
            self.retention_deleted.labels(kind).inc(count)

    # -- storage quotas (fastreg.quota) -------------------------------------------------------
    def quota_refused(self, at: str) -> None:
        self.quota_refusals.labels(at).inc()

    def quota_totals(self, totals: Any, limits: Any) -> None:
        """The stored totals (fastreg.retention.quota.Totals) and the limits (Limit)."""
        for lim in limits:
            used = totals.registry if lim.scope == "registry" else totals.globs.get(lim.scope, 0)
            self.quota_usage.labels(lim.scope).set(used)
            self.quota_limit.labels(lim.scope).set(lim.limit)
        for prefix in self._prefixes - set(totals.prefixes):
            self.storage_usage.labels(prefix).set(0)
        for prefix, used in totals.prefixes.items():
            self.storage_usage.labels(prefix).set(used)
        self._prefixes = set(totals.prefixes)

    # -- storage ------------------------------------------------------------------------------
    def timed_driver(self, driver: StorageDriver) -> TimedDriver:
        return TimedDriver(driver, self)


class TimedDriver(DriverWrapper):
    """A storage driver that reports each call's latency (``registry_storage_action_seconds``)."""

    def __init__(self, inner: StorageDriver, metrics: Metrics) -> None:
        super().__init__(inner)
        self._h: dict[str, Any] = {}
        self._metrics = metrics

    def _obs(self, action: str, started: float) -> None:
        h = self._h.get(action)
        if h is None:
            h = self._h[action] = self._metrics.storage.labels(self.name, action)
        h.observe(time.perf_counter() - started)

    async def get_content(self, path: str) -> bytes:
        t = time.perf_counter()
        try:
            return await self.inner.get_content(path)
        finally:
            self._obs("get_content", t)

    async def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        t = time.perf_counter()
        try:
            await self.inner.put_content(path, data, durable)
        finally:
            self._obs("put_content", t)

    async def stat(self, path: str) -> FileInfo:
        t = time.perf_counter()
        try:
            return await self.inner.stat(path)
        finally:
            self._obs("stat", t)

    async def list(self, path: str) -> list[str]:
        t = time.perf_counter()
        try:
            return await self.inner.list(path)
        finally:
            self._obs("list", t)

    async def move(self, src: str, dst: str) -> None:
        t = time.perf_counter()
        try:
            await self.inner.move(src, dst)
        finally:
            self._obs("move", t)

    async def delete(self, path: str) -> None:
        t = time.perf_counter()
        try:
            await self.inner.delete(path)
        finally:
            self._obs("delete", t)

    async def writer(self, path: str, append: bool = False) -> FileWriter:
        t = time.perf_counter()
        try:
            return _TimedWriter(await self.inner.writer(path, append), self)
        finally:
            self._obs("writer", t)


class _TimedWriter(WriterWrapper):
    def __init__(self, inner: FileWriter, driver: TimedDriver) -> None:
        super().__init__(inner)
        self._driver = driver

    async def commit(self) -> None:
        t = time.perf_counter()
        try:
            await self.inner.commit()
        finally:
            self._driver._obs("commit", t)
