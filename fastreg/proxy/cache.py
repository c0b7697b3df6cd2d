"""The pull-through cache's front: which repositories are proxied, and the dispatch of their
requests to the proxy's blob store, manifest store and tag lists (the local services with an
upstream behind them); everything else goes to the usual handlers, which read the local copy."""
from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..api.errors import RegistryError
from ..api.http import Request, Response
from ..hooks import Target
from ..registry import Registry
from ..registry.leases import Leases
from .blobs import ProxyBlobStore
from .manifests import ProxyManifestStore
from .peers import Peers
from .tags import forward
from .upstream import DEFAULT_TTL, Upstream, is_docker_hub

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("fastreg.proxy")

WRITES = {("upload_start", "POST"), ("upload", "GET"), ("upload", "PATCH"), ("upload", "PUT"),
          ("upload", "DELETE"), ("manifest", "PUT"), ("manifest", "DELETE"), ("blob", "DELETE")}
Handler = Callable[[Request, Any], Awaitable[Response]]


def cached_repositories(cfg: Config) -> Callable[[str], bool] | None:
    """Which repositories the pull-through cache fills (as ``Proxy.route`` routes them), for the
    tools that read the storage (``fastreg check``); None when no upstream is configured."""
    if cfg.proxy.remoteurl:
        return lambda name: True
    prefixes = frozenset(cfg.fastreg.proxy.upstreams)
    if not prefixes:
        return None
    return lambda name: "/" in name and name.partition("/")[0] in prefixes


class Proxy:
    def __init__(self, registry: Registry, upstreams: dict[str, Upstream], *, storage: str = "",
                 peer_url: str = "", metrics: Any = None) -> None:
        self.registry = registry
        self.upstreams = upstreams              # "" = every repository (proxy.remoteurl)
        self.metrics = metrics                  # fastreg.observability.metrics.Metrics, when enabled
        self.fetches: dict[str, int] = {}       # "blob <digest>" / "manifest <repo>@<ref>" → count
        peers = Peers(Leases(registry.driver), peer_url) if peer_url else None    # fastreg.proxy.peerurl
        self.blobs = ProxyBlobStore(registry.blobs, storage, peers, self._refused, self._count)
        self.manifests = ProxyManifestStore(registry.manifests, registry.tags, storage, self._refused, self._count)

    @classmethod
    def from_config(cls, cfg: Config, registry: Registry, metrics: Any = None) -> Proxy | None:
        ups: dict[str, Upstream] = {}
        own = cfg.fastreg.proxy
        if cfg.proxy.remoteurl:
            p = cfg.proxy
            ups[""] = Upstream("", p.remoteurl, p.username, p.password, DEFAULT_TTL if p.ttl is None else p.ttl,
                               frozenset(own.allowedhosts), own.deadline)
        for name, p in own.upstreams.items():
            ups[name] = Upstream(name, p.remoteurl, p.username, p.password, DEFAULT_TTL if p.ttl is None else p.ttl,
                                 frozenset(p.allowedhosts), own.deadline)
        if not ups:
            return None
        where = cfg.storage.driver_name + ":" + repr(getattr(cfg.storage, cfg.storage.driver_name, None))
        return cls(registry, ups, storage=where, peer_url=own.peerurl, metrics=metrics)

    def route(self, name: str) -> tuple[Upstream, str] | None:
        """The upstream and the upstream repository name for local repository `name`, if proxied."""
        first, _, rest = name.partition("/")
        if rest and first in self.upstreams and first:
            up, remote = self.upstreams[first], rest
        elif "" in self.upstreams:
            up, remote = self.upstreams[""], name
        else:
            return None
        if "/" not in remote and is_docker_hub(up.remoteurl):
            remote = f"library/{remote}"        # Docker Hub's official images (what docker pull does)
        return up, remote

    async def close(self) -> None:
        await self.blobs.close()
        for up in self.upstreams.values():
            await up.close()

    def _count(self, what: str) -> None:
        self.fetches[what] = self.fetches.get(what, 0) + 1
        log.info("proxy fetch %s (pid %d)", what, os.getpid())

    def _refused(self, upstream: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.proxy_refused(upstream, reason)
        collect_soon()

    async def handle(self, route: str, req: Request, ctx: Any, handler: Handler,
                     target: tuple[Upstream, str]) -> Response:
        method = req.method
        if (route, method) in WRITES:
            raise RegistryError("UNSUPPORTED", "this repository is a pull-through cache: pushes and deletes "
                                "are not allowed", status=405, message="the repository is a read-only proxy")
        up, remote = target
        name = req.params["name"]
        if route == "manifest":
            if method == "HEAD":
                head = await self.manifests.head(name, up, remote, req.params["reference"])
                if head is not None:
                    return head
            await self.manifests.ensure(name, up, remote, req.params["reference"])
        elif route == "blob":
            d = ctx.digest(req.params["digest"])
            if not await self.blobs.linked(name, d):
                if method == "HEAD":
                    return await self.blobs.head(up, remote, d)
                blob, size = await self.blobs.stream(name, up, remote, d, req.header(b"range"),
                                                     req.header(b"authorization"))
                await ctx.emit("pull", req, Target(name, str(d), "application/octet-stream", size))
                return blob
        elif route == "tags":
            resp = await forward(up, remote, req, self.registry.limits.tags_max, self._refused)
            if resp is not None:
                return resp
        return await handler(req, ctx)


_collection_due = False


def collect_soon() -> None:
    """A refused upstream answer leaves its partial body (up to a read limit) in reference cycles
    through the exception that refused it; the worker's quieted collector (``fastreg.app.quiet_gc``)
    would reach them late, so a flood of refusals would grow the worker.  Collect once, shortly
    after the request that refused ends (at most one collection per 50 ms, however many refusals)."""
    global _collection_due
    if _collection_due:
        return
    _collection_due = True

    def collect() -> None:
        global _collection_due
        _collection_due = False
        gc.collect()
    asyncio.get_running_loop().call_later(0.05, collect)
