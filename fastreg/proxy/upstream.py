"""Upstream registries: one HTTP client each, the authentication handshake they ask for, and the
rules for where the cache lets an upstream send it.

Authentication: anonymous first; on ``401`` with ``WWW-Authenticate: Bearer realm=...,service=...,
scope=...`` a token is fetched from the realm and cached for its ``expires_in``; on a ``Basic``
challenge the credentials are sent directly.

Where the cache goes (server-side request forgery)
--------------------------------------------------
The configured ``remoteurl`` is trusted as written (it may well be on a private network).  Every
other address the upstream names — each redirect hop (Docker Hub serves blobs from a CDN), each
token realm — is *trusted* only if it is the upstream's own origin or a host the operator listed
in the upstream's ``allowedhosts``; any other host is resolved once and every address it resolves
to must pass the guard webhooks use (``fastreg.netguard``: no loopback, private, link-local,
metadata, or IPv6 mappings of them); the connection goes to the address that was checked.  The
check sits in the client's connection layer (``GuardedBackend``), so nothing reaches an untrusted
host without it.  Redirects are followed by hand, at most ``MAX_REDIRECTS``.

Credentials (the configured username/password, and tokens) go only to the upstream's own origin,
or to a token realm on a host in ``allowedhosts`` (for Docker Hub, ``auth.docker.io`` is its
realm and needs no listing); a realm elsewhere is asked without them (an anonymous token).

Bounds: every body read into memory has a size limit (``read_bounded``) and every exchange a total
deadline as well as the per-read timeout; responses are requested and read without
content-encoding (no decompression bombs).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx
import orjson

from .. import netguard

log = logging.getLogger("fastreg.proxy")

DEFAULT_TTL = 168 * 3600.0
MAX_REDIRECTS = 5
DEADLINE = 60.0                     # default total seconds of a manifest, tag list, token or HEAD exchange
TOKEN_MAX = 64 * 1024               # bytes of a token endpoint's answer
BLOB_MIN_RATE = 256 * 1024          # a blob fetch's deadline: deadline + size / BLOB_MIN_RATE seconds
REDIRECTS = (301, 302, 303, 307, 308)
DOCKER_HUB_REALMS = frozenset({"auth.docker.io"})

_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
_TOKEN = re.compile(r"[\x21-\x7e]{1,8192}")         # what may go into an Authorization header


class UpstreamError(Exception):
    """The upstream could not be used for this request (unreachable, refused, too slow, too big,
    or it answered something the cache will not take); nothing from it was stored or served.
    `reason` names the kind for metrics."""

    def __init__(self, text: str, reason: str = "unreachable") -> None:
        super().__init__(text)
        self.reason = reason


def origin(url: str) -> tuple[str, str, int]:
    u = urlsplit(url)
    scheme = u.scheme.lower()
    return scheme, (u.hostname or "").lower(), u.port or (443 if scheme == "https" else 80)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network layer with the address guard: a connection to a host that is not
    trusted goes to one of its checked addresses, or nowhere."""

    def __init__(self, trusted: Iterable[tuple[str, int]], hosts: Iterable[str]) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.trusted = frozenset(trusted)       # (host, port) of the configured upstream
        self.hosts = frozenset(hosts)           # allowedhosts: any port

    def is_trusted(self, host: str, port: int) -> bool:
        host = host.lower().strip("[]")
        return (host, port) in self.trusted or host in self.hosts

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        if self.is_trusted(host, port):
            return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            addrs = await netguard.resolve(host, port)
        except netguard.ResolveFailed as exc:
            raise httpcore.ConnectError(str(exc)) from None
        last: Exception | None = None
        for addr in addrs:
            try:
                return await self.inner.connect_tcp(addr, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise httpcore.ConnectError(f"cannot connect to {host}:{port}: {last}")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not upstreams")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_client(backend: GuardedBackend, *, timeout: float = 60.0) -> httpx.AsyncClient:
    """An httpx client whose every connection goes through `backend`.  It follows no redirects
    and reads no proxy settings from the environment (a proxy would hide the address)."""
    transport = httpx.AsyncHTTPTransport()
    # httpx has no parameter for the pool's network backend: give the transport a pool built on ours
    # (the pool httpx would build, with the same TLS defaults).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(), max_connections=64, max_keepalive_connections=32,
        keepalive_expiry=5.0, network_backend=backend)
    return httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False,
                             timeout=httpx.Timeout(timeout, connect=10.0),
                             headers={"Accept-Encoding": "identity"})


async def read_bounded(r: httpx.Response, limit: int, what: str) -> bytes:
    """The body of streamed response `r`, at most `limit` bytes (UpstreamError beyond); the
    caller bounds the time."""
    enc = r.headers.get("content-encoding", "identity").strip().lower()
    if enc not in ("", "identity"):
        raise UpstreamError(f"{what}: content-encoding {enc!r} was not asked for", "invalid")
    declared = r.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise UpstreamError(f"{what}: {declared} bytes, more than the limit of {limit}", "too_large")
    out = bytearray()
    async for chunk in r.aiter_raw():
        out += chunk
        if len(out) > limit:
            raise UpstreamError(f"{what}: more than the limit of {limit} bytes", "too_large")
    return bytes(out)


@contextlib.asynccontextmanager
async def deadline(seconds: float, what: str) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise UpstreamError(f"{what}: no complete answer within {seconds:.0f}s", "deadline") from None


@dataclass
class Upstream:
    name: str                 # "" for proxy.remoteurl
    remoteurl: str
    username: str = ""
    password: str = ""
    ttl: float = DEFAULT_TTL
    allowed_hosts: frozenset[str] = frozenset()     # allowedhosts: redirect targets and realms trusted
    deadline: float = DEADLINE                      # fastreg.proxy.deadline
    _client: httpx.AsyncClient | None = None
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.allowed_hosts = frozenset(h.lower().strip("[]") for h in self.allowed_hosts)
        self.origin = origin(self.remoteurl)
        realms = DOCKER_HUB_REALMS if is_docker_hub(self.remoteurl) else frozenset()
        self.realm_hosts = self.allowed_hosts | realms
        self.backend = GuardedBackend([self.origin[1:]], self.allowed_hosts)

    @property
    def label(self) -> str:
        return self.name or "remote"

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = guarded_client(self.backend)
        return self._client

    def _basic(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.username else None

    def _own_origin(self, url: str) -> bool:
        return origin(url) == self.origin

    async def _token(self, challenge: str, scope: str) -> str | None:
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", None)
        if not realm or urlsplit(realm).scheme not in ("http", "https") or not urlsplit(realm).hostname:
            return None
        params.setdefault("scope", scope)
        host = (urlsplit(realm).hostname or "").lower()
        auth = self._basic() if (self._own_origin(realm) or host in self.realm_hosts) else None
        if auth is None and self._basic() is not None:
            log.warning("proxy %s: token realm %s is not the upstream's origin nor in its allowedhosts: "
                        "asking it without the upstream's credentials", self.label, realm)
        async with deadline(self.deadline, f"token endpoint {realm}"):
            req = self.client().build_request("GET", realm, params=params)
            r = await self.client().send(req, stream=True, auth=auth)
            try:
                if r.status_code != 200:
                    log.warning("proxy %s: token endpoint %s answered %d", self.label, realm, r.status_code)
                    return None
                body = await read_bounded(r, TOKEN_MAX, f"token endpoint {realm}")
            finally:
                await r.aclose()
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            log.warning("proxy %s: token endpoint %s answered no usable token", self.label, realm)
            return None
        try:
            ttl = float(doc.get("expires_in") or 60)
        except (TypeError, ValueError):
            ttl = 60.0
        self._tokens[scope] = (token, time.monotonic() + min(max(ttl - 10, 5), 3600))
        return token

    async def _follow(self, method: str, url: str, headers: dict[str, str], auth: Any) -> httpx.Response:
        """One request, following redirects by hand: credentials only to the upstream's origin;
        every hop's connection is guarded by the client's backend."""
        c = self.client()
        for _ in range(MAX_REDIRECTS + 1):
            own = self._own_origin(url)
            hdrs = headers if own else {k: v for k, v in headers.items() if k.lower() != "authorization"}
            r = await c.send(c.build_request(method, url, headers=hdrs), stream=True, auth=auth if own else None)
            location = r.headers.get("location")
            if r.status_code not in REDIRECTS or not location:
                return r
            await r.aclose()
            nxt = urljoin(url, location)
            if urlsplit(nxt).scheme not in ("http", "https") or not urlsplit(nxt).hostname:
                log.warning("proxy %s: %s redirected to %r: not an http(s) URL, refused", self.label, url,
                            location[:200])
                raise UpstreamError(f"{url} redirected to {location!r}: not an http(s) URL", "refused")
            url = nxt
            if r.status_code == 303 and method != "HEAD":
                method = "GET"
        raise UpstreamError(f"more than {MAX_REDIRECTS} redirects from {self.remoteurl}", "refused")

    async def send(self, method: str, repo: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """`method` <remoteurl>/v2/<repo>/<path>, authenticating as upstream asks; a streamed
        response (the caller closes it and bounds its body's size and time).  UpstreamError if
        it could not be had."""
        try:
            return await self._send(method, repo, path, headers)
        except netguard.AddressRefused as exc:
            log.warning("proxy %s: %s %s/v2/%s/%s: sent to a refused address: %s (list the host in the "
                        "upstream's allowedhosts to trust it)", self.label, method, self.remoteurl, repo, path, exc)
            raise UpstreamError(f"upstream {self.remoteurl} sent the cache to a refused address: {exc}",
                                "refused") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream {self.remoteurl} unreachable: {exc}") from None
        except (UnicodeError, ValueError) as exc:         # a Location or realm httpx cannot take
            raise UpstreamError(f"upstream {self.remoteurl} answered an unusable address: {exc}",
                                "invalid") from None

    async def _send(self, method: str, repo: str, path: str, headers: dict[str, str] | None) -> httpx.Response:
        scope = f"repository:{repo}:pull"
        url = f"{self.remoteurl.rstrip('/')}/v2/{repo}/{path}"
        hdrs = dict(headers or {})
        cached = self._tokens.get(scope)
        auth: Any = None
        if cached is not None and cached[1] > time.monotonic():
            hdrs["Authorization"] = f"Bearer {cached[0]}"
        for _ in range(2):
            r = await self._follow(method, url, hdrs, auth)
            if r.status_code != 401:
                return r
            challenge = r.headers.get("www-authenticate", "")
            await r.aclose()
            kind = challenge.split(" ", 1)[0].lower()
            if kind == "bearer":
                token = await self._token(challenge, scope)
                if token is None:
                    break
                hdrs["Authorization"] = f"Bearer {token}"
            elif kind == "basic" and self._basic() is not None:
                hdrs.pop("Authorization", None)
                auth = self._basic()
            else:
                break
        return await self._follow(method, url, hdrs, auth)

    async def fetch(self, method: str, repo: str, path: str, limit: int,
                    headers: dict[str, str] | None = None) -> tuple[httpx.Response, bytes]:
        """A whole exchange with a bounded body and a total deadline: (response, body)."""
        what = f"{method} {self.remoteurl}/v2/{repo}/{path}"
        async with deadline(self.deadline, what):
            r = await self.send(method, repo, path, headers)
            try:
                body = b"" if method == "HEAD" or r.status_code != 200 else await read_bounded(r, limit, what)
            except httpx.HTTPError as exc:
                raise UpstreamError(f"{what}: {exc}") from None
            finally:
                await r.aclose()
        return r, body

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def is_docker_hub(url: str) -> bool:
    host = url.split("://", 1)[-1].split("/", 1)[0].lower()
    return host in ("registry-1.docker.io", "docker.io", "index.docker.io", "registry.hub.docker.com")
