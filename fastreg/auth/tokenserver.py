"""The built-in token service (Docker registry token specification, and its OAuth2 form).

Configured under ``fastreg.auth.tokenservice``; served at its ``path`` (``/token``) on the
registry's own listener.  It authenticates with HTTP Basic against an htpasswd file (or not at
all: anonymous), grants each requested scope's actions that the access policy allows (the
intersection; nothing is granted beyond what was asked), and signs a JWT (token.py) that
fastreg's ``auth.token`` — and Distribution, given the same root certificate — accepts.

    GET  /token?service=S&scope=repository:a/b:pull,push[&scope=...][&offline_token=true]
         Authorization: Basic ...        (docker, podman, skopeo, containerd)
         → {"token", "access_token", "expires_in", "issued_at"[, "refresh_token"]}
    POST /token  (application/x-www-form-urlencoded)
         grant_type=password&username=&password=   or   grant_type=refresh_token&refresh_token=
         service=S&client_id=C&scope=a b[&access_type=offline]
         → {"access_token", "expires_in", "issued_at", "scope"[, "refresh_token"]}

Refresh tokens (docker login's "identity token") are JWTs for audience ``<service>#refresh``,
which no registry accepts as an access token; the user must still exist when one is used.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ..api.errors import RegistryError
from ..api.http import Request, Response
from ..reference import NAME_MAX, valid_name
from .access import Policy, Scope
from .controllers import basic_credentials, checked
from .htpasswd import Htpasswd
from .ratelimit import TokenBucket, client_key, too_many
from .token import TokenError, TokenSigner, TokenVerifier

log = logging.getLogger("fastreg.auth")
FORM_MAX = 64 * 1024


class InvalidScope(ValueError):
    """A requested scope names a repository that cannot exist (→ 400, nothing is signed)."""


def requested_scopes(values: list[str]) -> list[Scope]:
    """The ``scope`` parameters (each a space-separated list).  Malformed scopes and types other
    than ``repository``/``registry`` are ignored (nothing is granted for them); a repository scope
    whose name is not a valid repository name is refused (InvalidScope): a token never names a
    repository fastreg would refuse to route."""
    out: list[Scope] = []
    for text in (s for v in values for s in v.split(" ") if s):
        scope = Scope.parse(text)
        if scope is None:
            continue
        if scope.type == "repository" and not valid_name(scope.name):
            raise InvalidScope(f"scope {text[:NAME_MAX + 40]!r}: not a valid repository name")
        out.append(scope)
    return out


class TokenService:
    def __init__(self, signer: TokenSigner, verifier: TokenVerifier, service: str, policy: Policy,
                 htpasswd: Htpasswd | None, expiration: int, refresh_expiration: int, anonymous: bool,
                 per_client: TokenBucket | None = None) -> None:
        self.per_client = per_client
        self.signer = signer
        self.refresh_verifier = verifier        # audience <service>#refresh
        self.service = service
        self.policy = policy
        self.htpasswd = htpasswd
        self.expiration = expiration
        self.refresh_expiration = refresh_expiration
        self.anonymous = anonymous
        self.challenge = [(b"www-authenticate", f'Basic realm="{service} token service"'.encode())]

    async def __call__(self, req: Request, ctx: Any) -> Response:
        if self.per_client is not None:
            wait = self.per_client.take(client_key(req.scope))
            if wait:
                raise too_many(wait, "client address")
        if req.method == "GET":
            return await self.get(req)
        if req.method == "POST":
            return await self.post(req)
        raise RegistryError("UNSUPPORTED", {"method": req.method}, status=405, message="method not allowed",
                            headers=[(b"allow", b"GET, POST")])

    # -- the two forms ---------------------------------------------------------------------
    async def get(self, req: Request) -> Response:
        q = _pairs(req.scope.get("query_string", b""))
        self._check_service(q)
        try:
            scopes = requested_scopes(q.get("scope", []))
        except InvalidScope as exc:
            raise RegistryError("NAME_INVALID", str(exc)) from None
        user = await self._login(req)
        token, iat, _ = self._issue(user, scopes)
        body: dict[str, Any] = {"token": token, "access_token": token, "expires_in": self.expiration,
                                "issued_at": _rfc3339(iat)}
        if user is not None and _first(q, "offline_token") == "true":
            body["refresh_token"] = self._refresh_token(user)
        return _json(200, body)

    async def post(self, req: Request) -> Response:
        form = _pairs(await req.read(FORM_MAX))
        self._check_service(form)
        try:
            scopes = requested_scopes(form.get("scope", []))
        except InvalidScope as exc:
            return _oauth_error(400, "invalid_scope", str(exc))
        grant = _first(form, "grant_type")
        if grant == "password":
            user, password = _first(form, "username"), _first(form, "password")
            if not user or self.htpasswd is None or not await checked(self.htpasswd, user, password):
                return _oauth_error(401, "invalid_grant", "invalid username or password", self.challenge)
        elif grant == "refresh_token":
            try:
                user = self.refresh_verifier.verify(_first(form, "refresh_token")).subject
            except TokenError as exc:
                return _oauth_error(401, "invalid_grant", f"invalid refresh token: {exc}", self.challenge)
            if not user or self.htpasswd is None or user not in self.htpasswd.users():
                return _oauth_error(401, "invalid_grant", "the user no longer exists", self.challenge)
        else:
            return _oauth_error(400, "unsupported_grant_type", f"grant_type {grant!r} is not supported")
        token, iat, granted = self._issue(user, scopes)
        body: dict[str, Any] = {"access_token": token, "expires_in": self.expiration,
                                "issued_at": _rfc3339(iat), "scope": " ".join(str(s) for s in granted)}
        if _first(form, "access_type") == "offline":
            body["refresh_token"] = (_first(form, "refresh_token") if grant == "refresh_token"
                                     else self._refresh_token(user))
        return _json(200, body)

    # -- pieces ----------------------------------------------------------------------------
    def _check_service(self, params: dict[str, list[str]]) -> None:
        service = _first(params, "service")
        if service and service != self.service:
            raise RegistryError("DENIED", {"service": service}, status=400,
                                message=f"this token service issues tokens for {self.service!r} only")

    async def _login(self, req: Request) -> str | None:
        creds = basic_credentials(req, self.challenge)
        if creds is None:
            if not self.anonymous:
                raise RegistryError("UNAUTHORIZED", "credentials required", headers=self.challenge)
            return None
        user, password = creds
        if self.htpasswd is None or not await checked(self.htpasswd, user, password):
            raise RegistryError("UNAUTHORIZED", "invalid username or password", headers=self.challenge)
        return user

    def _issue(self, user: str | None, requested: list[Scope]) -> tuple[str, int, list[Scope]]:
        who = self.policy.identity(user)
        granted: list[Scope] = []
        for scope in requested:
            actions = self.policy.granted(who, scope)
            if actions:
                granted.append(Scope(scope.type, scope.name, actions))
        token, iat = self.signer.sign(user or "", self.service, granted, self.expiration)
        log.info("token for %s: %s", user or "anonymous", " ".join(str(s) for s in granted) or "(no access)")
        return token, iat, granted

    def _refresh_token(self, user: str) -> str:
        token, _ = self.signer.sign(user, self.service + "#refresh", (), self.refresh_expiration)
        return token


def _pairs(raw: bytes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        out.setdefault(k, []).append(v)
    return out


def _first(params: dict[str, list[str]], key: str) -> str:
    v = params.get(key)
    return v[0] if v else ""


def _rfc3339(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> Response:  # type: ignore[assignment]
    data = orjson.dumps(body)
    return Response(status, [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                             (b"cache-control", b"no-store"), *headers], data)


def _oauth_error(status: int, error: str, description: str,
                 challenge: list[tuple[bytes, bytes]] = ()) -> Response:  # type: ignore[assignment]
    """An OAuth2 error; a 401 carries the service's Basic challenge, as every 401 does."""
    return _json(status, {"error": error, "error_description": description}, challenge)
