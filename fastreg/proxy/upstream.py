"""Upstream registries: one HTTP client each, and the authentication handshake they ask for.

Anonymous first; on ``401`` with ``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` a
token is fetched from the realm (with the configured username/password as basic credentials, if
any) and cached for its ``expires_in``; on a ``Basic`` challenge the credentials are sent directly.
Redirects (Docker Hub serves blobs from a CDN) are followed; httpx drops ``Authorization`` when a
redirect leaves the upstream's origin.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("fastreg.proxy")

DEFAULT_TTL = 168 * 3600.0

_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Upstream:
    name: str                 # "" for proxy.remoteurl
    remoteurl: str
    username: str = ""
    password: str = ""
    ttl: float = DEFAULT_TTL
    _client: Any = None
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)

    def client(self) -> Any:
        if self._client is None:
            import httpx  # runtime dependency of proxy mode only
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True,
                                             limits=httpx.Limits(max_connections=64))
        return self._client

    def _basic(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.username else None

    async def _token(self, challenge: str, scope: str) -> str | None:
        params = dict(_CHALLENGE.findall(challenge))
        realm = params.pop("realm", None)
        if not realm:
            return None
        params.setdefault("scope", scope)
        r = await self.client().get(realm, params=params, auth=self._basic())
        if r.status_code != 200:
            log.warning("proxy %s: token endpoint %s answered %d", self.name or "remote", realm, r.status_code)
            return None
        doc = r.json()
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str):
            return None
        ttl = float(doc.get("expires_in") or 60)
        self._tokens[scope] = (token, time.monotonic() + max(ttl - 10, 5))
        return token

    async def send(self, method: str, repo: str, path: str, headers: dict[str, str] | None = None,
                   stream: bool = False) -> Any:
        """`method` <remoteurl>/v2/<repo>/<path>, authenticating as upstream asks."""
        scope = f"repository:{repo}:pull"
        url = f"{self.remoteurl.rstrip('/')}/v2/{repo}/{path}"
        hdrs = dict(headers or {})
        cached = self._tokens.get(scope)
        auth: Any = None
        if cached is not None and cached[1] > time.monotonic():
            hdrs["Authorization"] = f"Bearer {cached[0]}"
        c = self.client()
        for _ in range(2):
            r = await c.send(c.build_request(method, url, headers=hdrs), stream=stream, auth=auth)
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
        return await c.send(c.build_request(method, url, headers=hdrs), stream=stream, auth=auth)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None



def is_docker_hub(url: str) -> bool:
    host = url.split("://", 1)[-1].split("/", 1)[0].lower()
    return host in ("registry-1.docker.io", "docker.io", "index.docker.io", "registry.hub.docker.com")


def transport_errors() -> tuple[type[BaseException], ...]:
    import httpx
    return (httpx.HTTPError,)
