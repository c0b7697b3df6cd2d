"""Who may push and pull: TLS material (pki), htpasswd, token verification, the built-in token
service, access policies and rate limits.  ``build_access(cfg)`` turns the config into the
``Access`` hook the app calls (None when auth is off: nothing extra runs per request)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api.http import Request, Response
from ..config import Config, ConfigError


@dataclass
class AuthSetup:
    access: Any | None                 # the Access hook for Context.access
    token_path: str | None = None      # the built-in token service's endpoint, if configured
    token_service: Any | None = None   # async (req, ctx) -> Response

    async def serve_token(self, req: Request, ctx: Any) -> Response:
        assert self.token_service is not None
        resp: Response = await self.token_service(req, ctx)
        return resp


def build(cfg: Config) -> AuthSetup:
    """The auth hooks for a resolved config; ConfigError (naming the key) when it cannot work."""
    try:
        return _build(cfg)
    except (OSError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"auth: {exc}") from None


def _load(key: str, fn: Any, *args: Any, **kw: Any) -> Any:
    """fn(*args) with file and format errors reported against config key `key`."""
    try:
        return fn(*args, **kw)
    except (OSError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        hint = (" (`fastreg gencerts DIR` makes a CA, TLS and token-signing certificates;"
                " `fastreg htpasswd add USER --file FILE` makes users)") if isinstance(exc, FileNotFoundError) else ""
        raise ConfigError(f"{key}: {exc}{hint}") from None


def _build(cfg: Config) -> AuthSetup:
    from .access import Policy
    own = cfg.fastreg.auth
    policy = Policy.from_config(own.access) if own.access is not None else None
    kind = cfg.auth.type
    ts = own.tokenservice
    access: Any = None
    if kind == "htpasswd":
        from .controllers import BasicAccess
        from .htpasswd import Htpasswd
        h = cfg.auth.htpasswd
        assert h is not None                    # auth.type is the section that is set
        if not h.path:
            raise ConfigError("auth.htpasswd.path: required")
        access = BasicAccess(_load("auth.htpasswd.path", Htpasswd, h.path), policy or Policy.allow_authenticated(),
                             h.realm or "fastreg")
    elif kind == "token":
        from .controllers import TokenAccess
        t = cfg.auth.token
        assert t is not None
        if not t.realm and ts is None and not t.autoredirect:
            raise ConfigError("auth.token.realm: required (or configure fastreg.auth.tokenservice)")
        access = TokenAccess(_verifier(t.issuer, t.service, t.rootcertbundle, t.jwks, t.signingalgorithms),
                             t.realm, t.service, realm_path=ts.path if ts is not None else None,
                             external_url=cfg.http.host,
                             auto_redirect=(t.autoredirectpath or "/auth/token") if t.autoredirect else None,
                             policy=(policy or Policy.allow_authenticated()) if ts is not None else None)
    elif kind == "silly":
        from .controllers import SillyAccess
        silly = cfg.auth.silly
        assert silly is not None
        access = SillyAccess(silly.realm, silly.service)
    elif own.access is not None:
        raise ConfigError("fastreg.auth.access: needs an auth type (auth.htpasswd, or auth.token with a token service)")

    from .ratelimit import TokenBucket

    def bucket(b: Any) -> TokenBucket | None:
        return TokenBucket(b.rate, b.burst or max(1, int(b.rate))) if b.rate > 0 else None
    rl = own.ratelimit
    per_client = bucket(rl.client)
    if rl.client.rate > 0 or rl.user.rate > 0:
        from .controllers import OpenAccess, RateLimited
        access = RateLimited(access or OpenAccess(), per_client, bucket(rl.user))

    setup = AuthSetup(access)
    if ts is not None:
        # the token service shares the per-client bucket: password guessing there is limited too
        setup.token_path, setup.token_service = ts.path, _token_service(cfg, ts, policy, per_client)
    return setup


def _verifier(issuer: str, service: str, bundle: str, jwks: str, algorithms: list[str]) -> Any:
    from .token import TokenVerifier, load_certificates, load_jwks
    if not bundle and not jwks:
        raise ConfigError("auth.token: rootcertbundle or jwks is required")
    return _load("auth.token", TokenVerifier, issuer=issuer, service=service,
                 roots=_load("auth.token.rootcertbundle", load_certificates, bundle) if bundle else [],
                 jwks=_load("auth.token.jwks", load_jwks, jwks) if jwks else None, algorithms=algorithms)


def _token_service(cfg: Config, ts: Any, policy: Any, per_client: Any) -> Any:
    from .access import Policy
    from .htpasswd import Htpasswd
    from .token import TokenSigner, TokenVerifier, load_certificates
    from .tokenserver import TokenService
    t = cfg.auth.token
    issuer = ts.issuer or (t.issuer if t is not None else "")
    service = ts.service or (t.service if t is not None else "")
    if not issuer or not service:
        raise ConfigError("fastreg.auth.tokenservice: issuer and service are required (or auth.token's)")
    if not ts.key or not ts.certificate:
        raise ConfigError("fastreg.auth.tokenservice: key and certificate are required "
                          "(make them with: fastreg gencerts DIR)")
    _check_token_path(ts.path)
    users = ts.htpasswd or (cfg.auth.htpasswd.path if cfg.auth.htpasswd is not None else "")
    signer = _load("fastreg.auth.tokenservice.key/certificate", TokenSigner, ts.key, ts.certificate, issuer)
    refresh = TokenVerifier(issuer=issuer, service=service + "#refresh", roots=load_certificates(ts.certificate)[:1],
                            algorithms=[signer.algorithm])
    return TokenService(signer, refresh, service, policy or Policy.allow_authenticated(),
                        _load("fastreg.auth.tokenservice.htpasswd", Htpasswd, users) if users else None,
                        int(ts.expiration), int(ts.refreshexpiration),
                        ts.anonymous, per_client)


def _check_token_path(path: str) -> None:
    """The token service's path is matched as written and sent in challenges as the realm: plain
    characters only, and never a path the registry's routes (the API, the web page) answer —
    those would never reach the token service."""
    import re

    from ..api.routes import match
    if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", path) or path.startswith("/v2"):
        raise ConfigError(f"fastreg.auth.tokenservice.path: {path!r} must start with / and not with /v2, "
                          "and hold only letters, digits and . _ ~ - /")
    if match(path) is not None:
        raise ConfigError(f"fastreg.auth.tokenservice.path: {path!r} is a path of the registry itself "
                          "(the web page's): choose another, e.g. /token")
