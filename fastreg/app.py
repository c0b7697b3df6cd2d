"""The ASGI entry point: lifespan (open storage in each worker) and dispatch."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import secrets
import time
from typing import Any

from .api.base import Context
from .api.errors import error_body, error_headers, status_of
from .api.http import CONNECTION_CLOSE, Receive, Request, Response, ResponseAborted, Scope, Send, unread_body
from .api.routes import match, refuse_malformed, routing_path
from .config import Config, ConfigError
from .errors import BodyInterrupted, RegistryError
from .hooks import Observer, request_state
from .manifest import ClassPolicy, IndexPolicy, URLPolicy
from .observability import health
from .observability.logging import access_enabled, current_scope, log_access
from .observability.metrics import MULTIPROC_ENV
from .observability.metrics import enabled as metrics_enabled
from .registry import Limits, Registry
from .storage.driver.base import StorageError, StorageFull
from .storage.driver.factory import create_driver

log = logging.getLogger("fastreg")

API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")
NOSNIFF = (b"x-content-type-options", b"nosniff")     # browsers must not guess a body's type
JSON = (b"content-type", b"application/json; charset=utf-8")
# A path no route knows: a plain 404, as Distribution answers it (UNSUPPORTED is the spec's code for
# an operation the registry does not support, answered with 405 on a known route).
QUOTA_METRICS_INTERVAL = 15.0      # the quota gauges follow other workers' and replicas' pushes this often
NOT_FOUND = Response(404, [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"19")],
                     b"404 page not found\n")


class App:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.ctx: Context | None = None
        self.observer: Observer | None = None       # metrics, when enabled
        self.lock_probe: Any = None                 # the store's conditional writes, probed at startup
        self.maintenance: Any = None                # upload purging, periodic gc (fastreg.maintenance.purge)
        self.proxy: Any = None                      # pull-through cache (fastreg.proxy)
        extra = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                 for k, vs in (cfg.http.headers or {}).items() for v in vs]
        # nosniff on every answer, once (Distribution's sample config sets it in http.headers too)
        self.common = [API_VERSION, NOSNIFF, *(kv for kv in extra if kv[0] != NOSNIFF[0])]
        self.token_path: str | None = None          # the built-in token service (fastreg.auth)
        self.token_service: Any = None
        self.access_log = access_enabled()          # log.accesslog, at level info or debug
        self.health: health.HealthChecks | None = None   # the health section: 503 while a check fails
        self.body_timeout: float | None = cfg.fastreg.http.bodytimeout or None   # idle request body
        self._quota_refresh: asyncio.Future[None] | None = None    # the quota gauges, from the stored totals

    # -- lifespan --------------------------------------------------------------------------
    def open(self) -> Context:
        cfg = self.cfg
        driver = create_driver(cfg.storage.driver_name, getattr(cfg.storage, cfg.storage.driver_name, None),
                               fsync=getattr(cfg.fastreg, "fsync", True),
                               redirect=not cfg.storage.redirect.disable,
                               middleware=cfg.middleware.get("storage"),
                               redis=cfg.redis if cfg.storage.cache.blobdescriptor == "redis" else None)
        self.health = health.build(cfg, driver)
        if self.health is not None:
            self.health.start()
        metrics = None
        if metrics_enabled(cfg) and os.environ.get(MULTIPROC_ENV):
            from .observability.metrics import Metrics
            metrics = Metrics()
            self.observer = metrics
            driver = metrics.timed_driver(driver)
        secret = (cfg.http.secret or os.environ.get("FASTREG_SECRET") or secrets.token_hex(32)).encode()
        registry = Registry(
            driver, secret=secret, allow_blake3=cfg.fastreg.digest.blake3,
            delete_enabled=cfg.storage.delete.enabled,
            readonly=cfg.storage.maintenance.readonly.enabled,
            limits=Limits(manifest_max=cfg.fastreg.manifest.maxsize, catalog_max=cfg.fastreg.catalog.maxentries,
                          tags_max=cfg.fastreg.tags.maxentries, referrers_page=cfg.fastreg.referrers.pagebytes,
                          manifest_cache=cfg.fastreg.cache.manifestbytes,
                          referrer_cache=cfg.fastreg.cache.referrerbytes, tag_cache=cfg.fastreg.cache.tagbytes,
                          catalog_cache=cfg.fastreg.cache.catalogbytes),
            url_policy=url_policy(cfg), index_policy=index_policy(cfg),
            class_policy=ClassPolicy(frozenset(cfg.policy.repository.classes)),
            tag_concurrency=cfg.storage.tag.concurrencylimit)
        from .retention.immutable import Immutability
        registry.manifests.immutable = Immutability.from_config(cfg)
        if registry.manifests.immutable is not None and metrics is not None:
            registry.manifests.immutable.on_refusal = metrics.immutable_refused
        from .retention.policy import delete_intents
        registry.manifests.deletes = delete_intents(cfg, driver)
        from .retention.quota import Quotas
        quotas = Quotas.from_config(cfg, driver)
        if quotas is not None:
            registry.manifests.quota = registry.uploads.quota = quotas
            if metrics is not None:
                quotas.on_refusal, quotas.on_totals = metrics.quota_refused, metrics.quota_totals
                with contextlib.suppress(RuntimeError):      # (no running loop: no refresh)
                    self._quota_refresh = asyncio.get_running_loop().create_task(
                        quotas.run_refresh(QUOTA_METRICS_INTERVAL))
        ctx = Context(registry, relative_urls=bool(cfg.http.relativeurls), host=cfg.http.host or None)
        ctx.quotas = quotas
        from .api.ui import Site
        ctx.ui = Site.from_config(cfg)
        if cfg.fastreg.history.pulls:
            from .retention.pulls import PullRecorder
            ctx.pulls = PullRecorder(driver, cfg.fastreg.history.flushinterval)
            ctx.pulls.start()
        if auth_configured(cfg):
            from .auth import build
            setup = build(cfg)
            ctx.access = setup.access
            if setup.token_path is not None:
                self.token_path, self.token_service = setup.token_path, setup.serve_token
        if cfg.notifications.endpoints:
            from .config import listen_address
            from .notify import create_notifier
            ctx.events = create_notifier(cfg, listen_address(cfg)[1], lambda req: ctx.url(req, ""), metrics)
        from .proxy import Proxy
        self.proxy = Proxy.from_config(cfg, registry, metrics)
        self.ctx = ctx
        return ctx

    def retention(self, ctx: Context) -> Any:
        """The retention runner for the schedule (fastreg.retention), or None without policies."""
        if not self.cfg.fastreg.retention.policies:
            return None
        from .retention.policy import Retention
        return Retention(self.cfg, ctx.registry, emit=ctx.events.emit if ctx.events is not None else None,
                         deleted=getattr(self.observer, "retention_done", None))

    async def close(self) -> None:
        if self._quota_refresh is not None:
            self._quota_refresh.cancel()
            self._quota_refresh = None
        if self.proxy is not None:
            await self.proxy.close()
        if self.health is not None:
            await self.health.close()
            self.health = None
        if self.ctx is not None:
            if self.ctx.events is not None:
                await self.ctx.events.close()
            if self.ctx.pulls is not None:
                await self.ctx.pulls.close()
            await self.ctx.registry.close()
            self.ctx = None

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    ctx = self.open()
                    from .maintenance.purge import Maintenance
                    self.maintenance = Maintenance(self.cfg, ctx.registry.driver, self.retention(ctx))
                    self.maintenance.start()
                    store: Any = ctx.registry.driver
                    while getattr(store, "inner", None) is not None:     # wrappers: metrics, cache, CDN
                        store = store.inner
                    probe = getattr(store, "lock_conditions", None)
                    if probe is not None:        # logs what the store honours (storage/driver/lease.py)
                        self.lock_probe = asyncio.ensure_future(probe())
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                quiet_gc()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                if self.lock_probe is not None:
                    self.lock_probe.cancel()
                    with contextlib.suppress(BaseException):
                        await self.lock_probe
                if self.maintenance is not None:
                    await self.maintenance.stop()
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- requests --------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = self.ctx or self.open()
        current_scope.set(scope)                    # request id on every log line (fastreg.observability.logging)
        timed = self.access_log or self.observer is not None
        started = time.perf_counter() if timed else 0.0
        try:
            resp = await self.dispatch(scope, receive, ctx)
        except RegistryError as exc:
            resp = self.error(exc)
        except StorageFull as exc:
            log.error("storage full: %s", exc)
            resp = self.error(RegistryError("UNKNOWN", "no space left on the storage backend", status=507,
                                            message="insufficient storage"))
        except BodyInterrupted as exc:
            resp = self.error(RegistryError("SIZE_INVALID", str(exc)))
        except StorageError as exc:
            log.error("storage error on %s %s: %s", scope["method"], scope["path"], exc)
            resp = self.error(RegistryError("UNKNOWN", "storage backend error", status=500))
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            resp = self.error(RegistryError("UNKNOWN", "internal server error"))
        sent = await self.send(scope, send, resp)
        if timed:
            seconds = time.perf_counter() - started
            if self.observer is not None:
                st = request_state(scope)
                self.observer.request_done(st.route, scope["method"], resp.status, seconds, st.bytes_in, sent)
            if self.access_log:
                log_access(scope, resp.status, sent, seconds)

    async def dispatch(self, scope: Scope, receive: Receive, ctx: Context) -> Response:
        if self.health is not None and not self.health.ok:
            raise RegistryError("UNAVAILABLE", self.health.detail)
        path = scope["path"]
        found = match(routing_path(path, scope.get("raw_path")))
        if found is None:
            if path == self.token_path:
                request_state(scope).route = "token"
                resp: Response = await self.token_service(Request(scope, receive, {}), ctx)
                return resp
            return NOT_FOUND
        route, params = found
        handler = route.handlers.get(scope["method"])
        if handler is None:
            raise RegistryError("UNSUPPORTED", {"method": scope["method"]}, status=405,
                                message="method not allowed", headers=[(b"allow", route.allow.encode())])
        state = request_state(scope)
        state.route = route.name
        refuse_malformed(route.name, scope["method"], params, allow_blake3=ctx.registry.allow_blake3)
        name = params.get("name")
        req = Request(scope, receive, params)
        req.body_timeout = self.body_timeout
        if ctx.access is not None and not route.public:
            state.actor = await ctx.access.authorize(req, route.name, name)
        if self.proxy is not None and name is not None:
            target = self.proxy.route(name)
            if target is not None:
                return await self.proxy.handle(route.name, req, ctx, handler, target)  # type: ignore[no-any-return]
        return await handler(req, ctx)

    def error(self, exc: RegistryError) -> Response:
        body = error_body(exc)
        return Response(status_of(exc), [JSON, (b"content-length", str(len(body)).encode()), *error_headers(exc)],
                        body)

    async def send(self, scope: Scope, send: Send, resp: Response) -> int:
        """Send the response; returns the body bytes sent (for metrics).  An answer given before
        the request's body was read to its end (a refusal) closes the connection: `unread_body`."""
        headers = resp.headers + self.common
        if unread_body(scope):
            headers.append(CONNECTION_CLOSE)
        if scope["method"] == "HEAD":
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return 0
        if resp.file is not None and "http.response.pathsend" in (scope.get("extensions") or {}):
            # handlers give a stream too, for servers without pathsend
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            await send({"type": "http.response.pathsend", "path": resp.file})
            if self.observer is None:
                return 0
            return next((int(v) for k, v in resp.headers if k.lower() == b"content-length"), 0)
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        if resp.stream is None:
            await send({"type": "http.response.body", "body": resp.body})
            return len(resp.body)
        sent = 0
        try:
            async for chunk in resp.stream:
                sent += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except ResponseAborted as exc:  # logged and counted where it happened: one line here
            log.warning("response to %s %s aborted after %d bytes: %s", scope["method"], scope["path"], sent, exc)
            raise
        except StorageError as exc:     # expected (a disk or object store failing): one line
            log.error("storage failed after %d bytes of %s were sent; connection aborted: %s",
                      sent, scope["path"], exc)
            raise
        except Exception:
            log.exception("error while streaming %s", scope["path"])
            raise
        await send({"type": "http.response.body", "body": b""})
        return sent


def auth_configured(cfg: Config) -> bool:
    own = cfg.fastreg.auth
    return (cfg.auth.type not in (None, "none") or own.access is not None or own.tokenservice is not None
            or own.ratelimit.client.rate > 0 or own.ratelimit.user.rate > 0)


GC_GEN0 = 20_000     # allocations between young-generation collections (CPython's default: 700)


def quiet_gc() -> None:
    """Keep the cyclic garbage collector off the request path. Everything alive once the worker
    has started (modules, config, the app) is moved out of its reach (`gc.freeze`), so a full
    collection no longer walks it, and the young generation is collected every `GC_GEN0`
    allocations instead of 700: a request allocates a few dozen containers (ASGI messages,
    header lists), almost none of them in reference cycles, so the default thresholds spend
    time on collections that free nothing (bench/RESULTS.md has the profile)."""
    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0, g1, g2)


def create_app() -> App:
    """Factory for granian workers: the resolved config arrives through the environment."""
    from .config import config_from_json, load_config
    from .observability.logging import setup_logging

    raw = os.environ.get("FASTREG_RESOLVED_CONFIG")
    cfg = config_from_json(raw.encode()) if raw else load_config(os.environ.get("FASTREG_CONFIG"))
    setup_logging(cfg.log.level, cfg.log.formatter, cfg.log.fields, accesslog=not cfg.log.accesslog.disabled,
                  caller=cfg.log.reportcaller)
    return App(cfg)


def url_policy(cfg: Config) -> URLPolicy:
    """validation.manifests.urls (and validation.disabled) as a URLPolicy."""
    v = cfg.validation
    try:
        return URLPolicy.compile(disabled=v.disabled, allow=v.manifests.urls.allow, deny=v.manifests.urls.deny)
    except re.error as exc:
        raise ConfigError(f"validation.manifests.urls: invalid regular expression: {exc}") from None


def index_policy(cfg: Config) -> IndexPolicy:
    """validation.manifests.indexes as an IndexPolicy (validation.disabled: every child)."""
    ix = cfg.validation.manifests.indexes
    if cfg.validation.disabled or ix.platforms == "all":
        return IndexPolicy()
    if ix.platforms not in ("none", "list"):
        raise ConfigError(f"validation.manifests.indexes.platforms: {ix.platforms!r} (expected all, none or list)")
    return IndexPolicy(ix.platforms, frozenset((p.os, p.architecture) for p in ix.platformlist))
