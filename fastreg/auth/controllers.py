"""The ``Access`` hooks (fastreg.hooks): one per ``auth:`` type, and ``build_access(cfg)``.

* ``BasicAccess``  (auth.htpasswd): HTTP Basic against an htpasswd file, then the access policy
  (``fastreg.auth.access``; without one, any valid user may do anything, as Distribution).
  No credentials: allowed only where the policy grants ``anonymous`` (never ``/v2/``, so that
  clients are asked for credentials), else 401 with ``WWW-Authenticate: Basic realm=...``; a user
  the policy refuses gets 403 DENIED.
* ``TokenAccess``  (auth.token): a Bearer token from a token service (token.py).  Every refusal
  is 401 with ``WWW-Authenticate: Bearer realm,service,scope[,error]``, as Distribution answers.
* ``SillyAccess``  (auth.silly): any Authorization header passes (Distribution's test mode).

Decisions never consult storage, so an unauthenticated client gets the same 401 whether a
repository exists or not.  A cross-repository mount the caller may not pull from is turned into
a normal upload: ``RequestState.mount_allowed = False`` tells the upload handler (api/uploads.py).
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

from ..api.errors import RegistryError
from ..api.http import Request
from ..hooks import request_state
from ..reference import valid_name
from .access import Identity, Policy, Scope, required
from .htpasswd import Htpasswd, HtpasswdBusy
from .ratelimit import TokenBucket, client_key, too_many
from .token import TokenError, TokenVerifier


def basic_credentials(req: Request, challenge: list[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    """(user, password) from ``Authorization: Basic``; None if absent; 401 with `challenge` (the
    ``WWW-Authenticate`` header every 401 carries) if malformed."""
    raw = req.header(b"authorization")
    if raw is None:
        return None
    scheme, _, value = raw.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user, sep, password = "", "", ""
    if not sep or not user:
        raise RegistryError("UNAUTHORIZED", "malformed Basic credentials", headers=challenge)
    return user, password


async def checked(htpasswd: Htpasswd, user: str, password: str) -> bool:
    """htpasswd.verify, with a full bcrypt queue answered 429 (the client retries later)."""
    try:
        return await htpasswd.verify(user, password)
    except HtpasswdBusy:
        raise too_many(1.0, "password checks") from None


def _mount_source(req: Request, route: str) -> str | None:
    if route != "upload_start" or req.method != "POST":
        return None
    q = req.query
    return q.get("from") or "" if "mount" in q else None


class BasicAccess:
    def __init__(self, htpasswd: Htpasswd, policy: Policy, realm: str) -> None:
        self.htpasswd = htpasswd
        self.policy = policy
        self.challenge = [(b"www-authenticate", f'Basic realm="{realm}"'.encode())]

    async def identify(self, req: Request) -> Identity:
        creds = basic_credentials(req, self.challenge)
        if creds is None:
            return self.policy.identity(None)
        user, password = creds
        if not await checked(self.htpasswd, user, password):
            raise RegistryError("UNAUTHORIZED", "invalid username or password", headers=self.challenge)
        return self.policy.identity(user)

    async def authorize(self, req: Request, route: str, name: str | None) -> str | None:
        who = await self.identify(req)
        needs = required(route, req.method, name)
        # /v2/ always challenges anonymous clients: clients send credentials only to a registry
        # whose ping asked for them (anonymous pulls of public repositories still work)
        if who.user is None and (not needs or not self.policy.allows(who, needs)):
            raise RegistryError("UNAUTHORIZED", "authentication required", headers=self.challenge)
        if needs and not self.policy.allows(who, needs):
            raise RegistryError("DENIED", [str(s) for s in needs])
        if route == "catalog":
            request_state(req.scope).catalog_filter = self.policy.pull_filter(who)
        source = _mount_source(req, route)
        if source is not None and not (source and self.policy.allows(who, (Scope("repository", source, ("pull",)),))):
            request_state(req.scope).mount_allowed = False
        return who.user


class TokenAccess:
    def __init__(self, verifier: TokenVerifier, realm: str, service: str,
                 realm_path: str | None = None, external_url: str = "", auto_redirect: str | None = None,
                 policy: Policy | None = None) -> None:
        self.verifier = verifier
        # the built-in token service's policy: the catalog shows a token's subject only what
        # they may pull (an external token service's policy is unknown here: no filter)
        self.policy = policy
        self.external_url = external_url.rstrip("/")     # http.host, when set
        self.realm = realm
        self.service = service
        self.realm_path = realm_path      # the built-in token service: realm from the request's host
        self.auto_redirect = auto_redirect    # auth.token.autoredirect: realm = this request's host + path

    def _challenge(self, req: Request, needs: tuple[Scope, ...], error: str | None) -> list[tuple[bytes, bytes]]:
        realm = self.realm
        if self.auto_redirect is not None:
            scheme = req.header(b"x-forwarded-proto") or req.scope.get("scheme", "http")
            realm = f"{scheme}://{req.header(b'host') or 'localhost'}{self.auto_redirect}"
        elif not realm and self.realm_path:
            if self.external_url:
                realm = self.external_url + self.realm_path
            else:
                host = req.header(b"host") or "localhost"
                realm = f"{req.scope.get('scheme', 'http')}://{host}{self.realm_path}"
        value = f'Bearer realm="{realm}",service="{self.service}"'
        if needs:
            value += f',scope="{" ".join(str(s) for s in needs)}"'
        if error:
            value += f',error="{error}"'
        return [(b"www-authenticate", value.encode())]

    async def authorize(self, req: Request, route: str, name: str | None) -> str | None:
        needs = required(route, req.method, name)
        source = _mount_source(req, route)
        # A mount's challenge also names pull on its source, as Distribution's does, so that a client
        # building its token request from the challenge asks for both (without it, the mount is
        # a normal upload: see below)
        asked = needs + ((Scope("repository", source, ("pull",)),) if source and valid_name(source) else ())
        raw = req.header(b"authorization")
        scheme, _, token = (raw or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise RegistryError("UNAUTHORIZED", "authentication required",
                                headers=self._challenge(req, asked, None))
        try:
            claims = self.verifier.verify(token.strip())
        except TokenError as exc:
            raise RegistryError("UNAUTHORIZED", f"invalid token: {exc}",
                                headers=self._challenge(req, asked, "invalid_token")) from None
        if not all(claims.holds(s) for s in needs):
            raise RegistryError("UNAUTHORIZED", "insufficient scope",
                                headers=self._challenge(req, asked, "insufficient_scope"))
        if source is not None and not (source and claims.holds(Scope("repository", source, ("pull",)))):
            request_state(req.scope).mount_allowed = False
        if route == "catalog" and self.policy is not None:
            who = self.policy.identity(claims.subject or None)
            request_state(req.scope).catalog_filter = self.policy.pull_filter(who)
        return claims.subject or None


class SillyAccess:
    """Distribution's ``silly`` auth: any Authorization header is accepted (for tests only)."""

    def __init__(self, realm: str, service: str) -> None:
        self.challenge = [(b"www-authenticate", f'Bearer realm="{realm}",service="{service}"'.encode())]

    async def authorize(self, req: Request, route: str, name: str | None) -> str | None:
        if not req.header(b"authorization"):
            raise RegistryError("UNAUTHORIZED", "authentication required", headers=self.challenge)
        return None


class OpenAccess:
    """No authentication (only rate limits configured)."""

    async def authorize(self, req: Request, route: str, name: str | None) -> str | None:
        return None


class RateLimited:
    """Rate limits around another Access: per client address before authentication (so a
    password-guessing client is slowed too), per user after it."""

    def __init__(self, inner: Any, per_ip: TokenBucket | None, per_user: TokenBucket | None) -> None:
        self.inner = inner
        self.per_ip = per_ip
        self.per_user = per_user

    async def authorize(self, req: Request, route: str, name: str | None) -> str | None:
        if self.per_ip is not None:
            wait = self.per_ip.take(client_key(req.scope))
            if wait:
                raise too_many(wait, "client address")
        actor: str | None = await self.inner.authorize(req, route, name)
        if self.per_user is not None and actor:
            wait = self.per_user.take(actor)
            if wait:
                raise too_many(wait, "user")
        return actor
