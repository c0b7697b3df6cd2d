"""Delivery: one task per endpoint POSTs the outbox's rows, oldest first, until they are taken.

* **One deliverer per instance.**  Every worker records events; only the worker holding an
  exclusive ``flock`` on ``<outbox>/delivery.lock`` delivers them.  The others retry the lock every
  ``LEADER_RETRY`` seconds, so when the holder exits (or is killed) another takes over.  The
  holder learns of events recorded in its own process at once and of the others' by polling
  the outbox every ``pollinterval``.
* **At least once.**  A row is deleted only after the endpoint answered 2xx to the POST that
  carried it.  A crash between the answer and the delete resends the row with the same event
  id; receivers drop duplicates by id.
* **Retries** (per endpoint, Distribution's ``threshold`` and ``backoff``): after the n-th failure
  in a row the next try waits ``min(backoff, 50ms * 2^(n-1))`` while n < threshold, then
  ``backoff * 2^(n - threshold)``, at most ``fastreg.notifications.maxbackoff``.  Rows stay in
  the outbox meanwhile, across restarts.
* **Server-side request forgery.**  The host is resolved for every POST and, unless
  ``fastreg.notifications.allowprivate``, refused when any address is not globally routable
  (loopback, private, link-local — cloud metadata services live there —, shared, reserved,
  multicast).  The connection goes to the address that was checked (no second lookup), and
  redirects are never followed (a 3xx is a failure).
* **Bounded answers.**  Only the answer's head is read (``Connection: close``; the body is never
  read), at most ``MAX_ANSWER_HEAD`` bytes in lines of at most ``MAX_ANSWER_LINE``: an endpoint
  answering more, or no HTTP at all, has failed the delivery and is retried after its backoff.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import logging
import os
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from .. import netguard
from .events import MEDIA_TYPE, envelope
from .outbox import Outbox

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("fastreg.notify")

LEADER_RETRY = 1.0
FIRST_RETRY = 0.05
DEPTH_EVERY = 1.0      # seconds between two refreshes of the pending gauge while delivering
MAX_ANSWER_LINE = 64 * 1024     # asyncio.StreamReader's default limit: the longest answer line read
MAX_ANSWER_HEAD = 64 * 1024     # the status line and headers of an answer, together


class DeliveryError(Exception):
    """A POST that did not end in a 2xx answer."""


class AddressRefused(DeliveryError):
    """The endpoint resolves to an address webhooks may not reach (see allowprivate)."""


class NotifyMetrics(Protocol):
    def webhook_delivered(self, endpoint: str, events: int) -> None: ...
    def webhook_failed(self, endpoint: str, reason: str) -> None: ...
    def webhook_retry(self, endpoint: str) -> None: ...
    def webhook_depth(self, endpoint: str, depth: int) -> None: ...
    def webhook_dropped(self, events: int) -> None: ...


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """One ``notifications.endpoints[]`` entry with Distribution's defaults filled in."""

    name: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 1.0
    threshold: int = 10
    backoff: float = 1.0
    ignore_mediatypes: frozenset[str] = frozenset()
    ignore_actions: frozenset[str] = frozenset()
    maxbackoff: float = 300.0
    batch: int = 1
    allow_private: bool = False

    def wants(self, action: str, media_type: str) -> bool:
        return action not in self.ignore_actions and media_type not in self.ignore_mediatypes

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed POSTs in a row."""
        if failures < self.threshold:
            return float(min(self.backoff, FIRST_RETRY * 2 ** (failures - 1)))
        return float(min(self.maxbackoff, self.backoff * 2 ** min(failures - self.threshold, 32)))


def endpoints_from_config(cfg: Config) -> list[EndpointSpec]:
    """The enabled endpoints; raises ValueError for a URL fastreg cannot POST to."""
    own = cfg.fastreg.notifications
    out: list[EndpointSpec] = []
    seen: set[str] = set()
    for i, ep in enumerate(cfg.notifications.endpoints):
        if ep.disabled:
            continue
        name = ep.name or f"endpoint{i}"
        if name in seen:
            raise ValueError(f"notifications.endpoints: two endpoints are named {name!r}")
        seen.add(name)
        u = urlsplit(ep.url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"notifications.endpoints[{name}].url: {ep.url!r} is not an http(s) URL")
        headers = []
        for k, vs in (ep.headers or {}).items():
            for v in vs:
                if any(c in k + v for c in "\r\n\0") or not k or ":" in k:
                    raise ValueError(f"notifications.endpoints[{name}].headers: invalid header {k!r}")
                headers.append((k, v))
        out.append(EndpointSpec(
            name=name, url=ep.url, headers=tuple(headers),
            timeout=ep.timeout if ep.timeout > 0 else 1.0,
            threshold=ep.threshold if ep.threshold > 0 else 10,
            backoff=ep.backoff if ep.backoff > 0 else 1.0,
            ignore_mediatypes=frozenset([*ep.ignoredmediatypes, *ep.ignore.mediatypes]),
            ignore_actions=frozenset(ep.ignore.actions),
            maxbackoff=own.maxbackoff, batch=own.batch, allow_private=own.allowprivate))
    return out


# -- server-side request forgery guard (fastreg.netguard, shared with the pull-through cache) ----

async def resolve(host: str, port: int, allow_private: bool) -> list[str]:
    """The addresses to connect to, all checked; AddressRefused if any is refused."""
    try:
        return await netguard.resolve(host, port, allow_private)
    except netguard.ResolveFailed as exc:
        raise DeliveryError(str(exc)) from None
    except netguard.AddressRefused as exc:
        raise AddressRefused(f"{exc} (set fastreg.notifications.allowprivate to allow it)") from None


_SSL: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    global _SSL
    if _SSL is None:
        _SSL = ssl.create_default_context()
    return _SSL


async def post(url: str, body: bytes, *, headers: Sequence[tuple[str, str]] = (), timeout: float = 1.0,
               allow_private: bool = False) -> int:
    """POST one envelope; the status code if 2xx, else DeliveryError.  Redirects are not followed."""
    u = urlsplit(url)
    https = u.scheme == "https"
    host = u.hostname or ""
    port = u.port or (443 if https else 80)
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    host_header = u.netloc.rpartition("@")[2]
    if u.username is not None:          # http://user:pass@host/ → basic auth, as Go's client does
        cred = f"{unquote(u.username)}:{unquote(u.password or '')}".encode()
        headers = [("Authorization", "Basic " + base64.b64encode(cred).decode()), *headers]
    try:
        async with asyncio.timeout(timeout):
            addrs = await resolve(host, port, allow_private)
            last: Exception | None = None
            for addr in addrs:
                try:
                    reader, writer = await asyncio.open_connection(
                        addr, port, ssl=_ssl_context() if https else None,
                        server_hostname=host if https else None)
                    break
                except OSError as exc:
                    last = exc
            else:
                raise DeliveryError(f"cannot connect to {host}:{port}: {last}")
            try:
                head = [f"POST {target} HTTP/1.1", f"Host: {host_header}", f"Content-Type: {MEDIA_TYPE}",
                        f"Content-Length: {len(body)}", "Connection: close", "User-Agent: fastreg-notifier",
                        *(f"{k}: {v}" for k, v in headers)]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
                await writer.drain()
                status_line = await _answer_line(reader)
                # the headers too, so a server that answers before reading all is not cut off mid-way
                head_bytes = len(status_line)
                while (line := await _answer_line(reader)) not in (b"\r\n", b"\n", b""):
                    head_bytes += len(line)
                    if head_bytes > MAX_ANSWER_HEAD:
                        raise DeliveryError(f"answer head longer than {MAX_ANSWER_HEAD} bytes")
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
    except TimeoutError:
        raise DeliveryError(f"no answer within {timeout}s") from None
    except OSError as exc:
        raise DeliveryError(str(exc)) from None
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise DeliveryError(f"not an HTTP answer: {status_line[:80]!r}")
    status = int(parts[1])
    if 300 <= status < 400:
        raise DeliveryError(f"answered {status} (redirects are not followed)")
    if not 200 <= status < 300:
        raise DeliveryError(f"answered {status}")
    return status


async def _answer_line(reader: asyncio.StreamReader) -> bytes:
    """One line of the endpoint's answer, at most the reader's limit (64 KiB): a longer one is a
    failed delivery like any other (retried after the endpoint's backoff), not an error of the
    deliverer."""
    try:
        return await reader.readline()
    except ValueError:      # asyncio's LimitOverrunError, as readline raises it
        raise DeliveryError(f"answer line longer than {MAX_ANSWER_LINE} bytes") from None


# -- delivery -----------------------------------------------------------------------------------

@dataclass
class Deliverer:
    """Delivers one endpoint's rows, in order, forever."""

    spec: EndpointSpec
    outbox: Outbox
    poll: float
    metrics: NotifyMetrics | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    failures: int = 0
    _depth_at: float = 0.0

    async def run(self) -> None:
        spec, m = self.spec, self.metrics
        while True:
            self.wake.clear()     # before the fetch: an event recorded after it sets wake again
            rows = await self.outbox.fetch(spec.name, spec.batch)
            if not rows:
                if m is not None:
                    m.webhook_depth(spec.name, 0)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll):
                        await self.wake.wait()
                continue
            if m is not None and self.failures:
                m.webhook_retry(spec.name)
            try:
                await post(spec.url, envelope([r[2] for r in rows]), headers=spec.headers,
                           timeout=spec.timeout, allow_private=spec.allow_private)
            except DeliveryError as exc:
                self.failures += 1
                delay = spec.delay(self.failures)
                if m is not None:
                    m.webhook_failed(spec.name, type(exc).__name__)
                    m.webhook_depth(spec.name, (await self.outbox.depth()).get(spec.name, 0))
                lvl = logging.ERROR if isinstance(exc, AddressRefused) or self.failures == spec.threshold \
                    else logging.WARNING
                log.log(lvl, "webhook %s: delivery of %d event(s) failed (%d in a row), retrying in %.2fs: %s",
                        spec.name, len(rows), self.failures, delay, exc)
                await asyncio.sleep(delay)
                continue
            await self.outbox.delete([r[0] for r in rows])
            if self.failures:
                log.warning("webhook %s: delivering again after %d failures", spec.name, self.failures)
            self.failures = 0
            if m is not None:
                m.webhook_delivered(spec.name, len(rows))
                now = time.monotonic()
                if now - self._depth_at > DEPTH_EVERY:      # a backlog draining: refresh the gauge
                    self._depth_at = now
                    m.webhook_depth(spec.name, (await self.outbox.depth()).get(spec.name, 0))


class Dispatcher:
    """Takes the delivery lock when it can and runs one Deliverer per endpoint while holding it."""

    def __init__(self, outbox: Outbox, specs: list[EndpointSpec], poll: float,
                 metrics: NotifyMetrics | None = None) -> None:
        self.outbox = outbox
        self.deliverers = [Deliverer(s, outbox, poll, metrics) for s in specs]
        self._lock_fd: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._main: asyncio.Task[None] | None = None

    @property
    def leader(self) -> bool:
        return self._lock_fd is not None

    def start(self) -> None:
        self._main = asyncio.get_running_loop().create_task(self._run(), name="webhook-dispatcher")

    def wake(self) -> None:
        for d in self.deliverers:
            d.wake.set()

    def _try_lock(self) -> bool:
        fd = os.open(self.outbox.directory / "delivery.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    async def _run(self) -> None:
        while not self._try_lock():
            await asyncio.sleep(LEADER_RETRY)
        log.info("delivering webhook notifications from process %d", os.getpid())
        gone = await self.outbox.forget_endpoints_except([d.spec.name for d in self.deliverers])
        for name, n in gone.items():
            log.warning("outbox: dropped %d event(s) for endpoint %r, which is no longer configured", n, name)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._guard(d), name=f"webhook-{d.spec.name}") for d in self.deliverers]
        await asyncio.gather(*self._tasks)

    async def _guard(self, d: Deliverer) -> None:
        """A deliverer that hits an unexpected error (a locked database, a bug) starts over."""
        while True:
            try:
                await d.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook %s: delivery task failed; restarting it", d.spec.name)
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        for t in [*self._tasks, *([self._main] if self._main else [])]:
            t.cancel()
        for t in [*self._tasks, *([self._main] if self._main else [])]:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
