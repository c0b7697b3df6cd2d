"""Bearer tokens as the Docker registry token specification defines them: JWTs signed by a
token service, carrying ``access`` claims (``[{"type", "name", "actions"}]``).

Verification (``TokenVerifier``), as Distribution's ``registry/auth/token``:

* the algorithm must be in an allow-list of asymmetric algorithms (``none`` and HMAC are never
  accepted: there is no shared secret, and HS256 keyed with a public key is the classic forgery);
* the signing key comes from the header: ``x5c`` (a certificate chain, checked up to one of
  the configured root certificates, each certificate within its validity period), else ``kid``
  (the libtrust fingerprint or RFC 7638 thumbprint of a root certificate's key, or a key id from
  the configured JWKS).  An embedded ``jwk`` is not trusted on its own and is refused;
* ``iss`` must equal the configured issuer, ``aud`` contain the service, ``exp`` is required;
  ``exp``/``nbf``/``iat`` are checked with 60 s leeway;
* verified tokens are cached until they expire (a hit costs one dict lookup), at most
  ``CACHE_MAX`` of them and ``CACHE_BYTES`` (each charged four times its length).

Signing (``TokenSigner``) is the built-in token service's half: ES256/ES384/RS256 by key type,
``x5c`` with the signing certificate chain and the libtrust ``kid``, so fastreg and Distribution
configured with the same root bundle both accept the tokens.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from .access import Scope

log = logging.getLogger("fastreg.auth")

LEEWAY = 60
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
CACHE_MAX = 4096
CACHE_BYTES = 16 << 20      # verified tokens kept, charged 4x their length (the token and its claims)
MAX_CHAIN = 8


class TokenError(Exception):
    """The token is malformed, untrusted, expired or for someone else (→ error="invalid_token")."""


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    access: dict[tuple[str, str], frozenset[str]]
    expires: float

    def holds(self, scope: Scope) -> bool:
        have = self.access.get((scope.type, scope.name))
        return have is not None and all(a in have for a in scope.actions)


# -- key ids ------------------------------------------------------------------------------------

def libtrust_kid(key: Any) -> str:
    """docker/libtrust's key ID: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32,
    in groups of four joined by ':' (what Distribution 2.x matches a ``kid`` against)."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    s = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


def jwk_thumbprint(key: Any) -> str | None:
    """RFC 7638 SHA-256 thumbprint, base64url (the other common ``kid`` convention)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        d = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
        members = {k: d[k] for k in ("crv", "kty", "x", "y")}
    elif isinstance(key, rsa.RSAPublicKey):
        d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
        members = {k: d[k] for k in ("e", "kty", "n")}
    else:
        return None
    canon = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canon).digest()).decode().rstrip("=")


# -- certificates -------------------------------------------------------------------------------

def load_certificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    with open(path, "rb") as f:
        data = f.read()
    certs = x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [x509.load_der_x509_certificate(data)]
    if not certs:
        raise ValueError(f"{os.fspath(path)}: no certificates")
    return certs


def _valid_now(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def verify_chain(chain: list[x509.Certificate], roots: list[x509.Certificate]) -> x509.Certificate:
    """Check that ``chain[0]`` leads to one of ``roots`` through ``chain[1:]``; return the leaf.

    Each link: the issuer's subject names the child's issuer, its key verifies the child's
    signature, it is a CA (intermediates; roots are trusted as configured) and every certificate
    is within its validity period.  A leaf that *is* a root is trusted directly."""
    now = dt.datetime.now(dt.UTC)
    root_der = {r.public_bytes(serialization.Encoding.DER) for r in roots}
    current = chain[0]
    pool = chain[1:]
    for _ in range(MAX_CHAIN):
        if not _valid_now(current, now):
            raise TokenError("a certificate in the x5c chain is expired or not yet valid")
        if current.public_bytes(serialization.Encoding.DER) in root_der:
            return chain[0]
        for issuer in [*roots, *pool]:
            if issuer.subject != current.issuer or issuer == current or \
                    (issuer not in roots and not _is_ca(issuer)):
                continue
            try:
                current.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                continue
            if any(issuer is r for r in roots):
                if not _valid_now(issuer, now):
                    raise TokenError("the root certificate is expired or not yet valid")
                return chain[0]
            current = issuer
            break
        else:
            raise TokenError("the x5c chain does not lead to a trusted root certificate")
    raise TokenError("the x5c chain is too long")


# -- verification -------------------------------------------------------------------------------

class TokenVerifier:
    def __init__(self, *, issuer: str, service: str, roots: list[x509.Certificate] = (),  # type: ignore[assignment]
                 jwks: dict[str, Any] | None = None, algorithms: Iterable[str] = ()) -> None:
        if not issuer or not service:
            raise ValueError("token auth needs auth.token.issuer and auth.token.service")
        self.issuer, self.service = issuer, service
        self.roots = list(roots)
        chosen = list(algorithms) or list(ASYMMETRIC)
        refused = [a for a in chosen if a not in ASYMMETRIC]
        if refused:
            log.warning("auth.token.signingalgorithms: %s refused (only asymmetric algorithms are accepted)",
                        ", ".join(refused))
        self.algorithms = frozenset(a for a in chosen if a in ASYMMETRIC)
        if not self.algorithms:
            raise ValueError("auth.token.signingalgorithms: no acceptable algorithm left")
        self.keys: dict[str, Any] = {}
        for cert in self.roots:
            pub = cert.public_key()
            self.keys[libtrust_kid(pub)] = pub
            thumb = jwk_thumbprint(pub)
            if thumb:
                self.keys[thumb] = pub
        self.keys.update(jwks or {})
        if not self.keys:
            raise ValueError("token auth needs auth.token.rootcertbundle or auth.token.jwks")
        self._cache: dict[str, Claims] = {}
        self._cache_bytes = 0

    def verify(self, raw: str) -> Claims:
        hit = self._cache.get(raw)
        if hit is not None:
            if time.time() <= hit.expires + LEEWAY:
                return hit
            del self._cache[raw]
            self._cache_bytes -= 4 * len(raw)
            raise TokenError("token expired")
        claims = self._verify(raw)
        cost = 4 * len(raw)
        if len(self._cache) >= CACHE_MAX or self._cache_bytes + cost > CACHE_BYTES:
            now = time.time()
            self._cache = {k: v for k, v in self._cache.items() if now <= v.expires + LEEWAY}
            if len(self._cache) >= CACHE_MAX or sum(map(len, self._cache)) * 4 + cost > CACHE_BYTES:
                self._cache.clear()
            self._cache_bytes = 4 * sum(map(len, self._cache))
        if cost <= CACHE_BYTES:
            self._cache[raw] = claims
            self._cache_bytes += cost
        return claims

    def _signing_key(self, header: dict[str, Any]) -> Any:
        if header.get("x5c"):
            x5c = header["x5c"]
            if not isinstance(x5c, list) or not all(isinstance(c, str) for c in x5c) or len(x5c) > MAX_CHAIN:
                raise TokenError("malformed x5c")
            try:
                chain = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c]
            except ValueError as exc:
                raise TokenError(f"malformed x5c certificate: {exc}") from None
            try:
                return verify_chain(chain, self.roots).public_key()
            except (ValueError, KeyError, TypeError) as exc:   # cryptography parses names and keys
                # lazily: a corrupt issuer name fails here (ValueError; KeyError for an unknown string tag)
                raise TokenError(f"malformed x5c certificate: {exc!r}") from None
        if header.get("jwk") is not None:
            raise TokenError("tokens carrying their own jwk are not trusted; use x5c or kid")
        kid = header.get("kid")
        if isinstance(kid, str) and kid:
            key = self.keys.get(kid)
            if key is None:
                raise TokenError(f"token signed by an untrusted key (kid {kid!r})")
            return key
        raise TokenError("the token names no signing key (x5c or kid)")

    def _verify(self, raw: str) -> Claims:
        try:
            header = jwt.get_unverified_header(raw)
        except jwt.PyJWTError as exc:
            raise TokenError(f"malformed token: {exc}") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise TokenError(f"signing algorithm {alg!r} is not accepted")
        key = self._signing_key(header)
        if alg.startswith("ES") and not isinstance(key, ec.EllipticCurvePublicKey) or \
                alg[:2] in ("RS", "PS") and not isinstance(key, rsa.RSAPublicKey) or \
                alg == "EdDSA" and not isinstance(key, ed25519.Ed25519PublicKey):
            raise TokenError(f"algorithm {alg} does not match the signing key")
        try:
            claims = jwt.decode(raw, key=key, algorithms=[alg], audience=self.service, issuer=self.issuer,
                                leeway=LEEWAY, options={"require": ["exp", "iss", "aud"]})
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise TokenError(str(exc)) from None
        return Claims(str(claims.get("sub") or ""), _access(claims.get("access")), float(claims["exp"]))


def _access(raw: Any) -> dict[tuple[str, str], frozenset[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    if not isinstance(raw, list):
        return {}
    for item in raw:
        if not isinstance(item, dict):
            continue
        typ, name, actions = item.get("type"), item.get("name"), item.get("actions")
        if isinstance(typ, str) and isinstance(name, str) and isinstance(actions, list):
            out.setdefault((typ, name), set()).update(a for a in actions if isinstance(a, str))
    return {k: frozenset(v) for k, v in out.items()}


def load_jwks(path: str | os.PathLike[str]) -> dict[str, Any]:
    with open(path, "rb") as f:
        data = json.load(f)
    keys: dict[str, Any] = {}
    for k in jwt.PyJWKSet.from_dict(data).keys:
        if not k.key_id:
            raise ValueError(f"{os.fspath(path)}: every JWKS key needs a kid")
        keys[k.key_id] = k.key
    return keys


# -- signing ------------------------------------------------------------------------------------

def _algorithm(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {256: "ES256", 384: "ES384", 521: "ES512"}[key.curve.key_size]
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    raise ValueError("the token signing key must be ECDSA (P-256/384/521) or RSA")


class TokenSigner:
    def __init__(self, key_path: str | os.PathLike[str], cert_path: str | os.PathLike[str], issuer: str) -> None:
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        self.algorithm = _algorithm(key)
        assert isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey))
        self.key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = key
        chain = load_certificates(cert_path)
        pub = self.key.public_key()
        if chain[0].public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo) != \
                pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
            raise ValueError(f"{os.fspath(cert_path)}: the first certificate is not for the signing key")
        self.issuer = issuer
        self.headers = {"typ": "JWT", "kid": libtrust_kid(pub),
                        "x5c": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain]}

    def sign(self, subject: str, audience: str, access: Iterable[Scope], expires_in: int,
             now: float | None = None) -> tuple[str, int]:
        """A token for `subject` granting `access`; returns (token, issued-at)."""
        iat = int(now if now is not None else time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": audience, "exp": iat + expires_in,
                  "nbf": iat - 1, "iat": iat, "jti": secrets.token_urlsafe(16),
                  "access": [{"type": s.type, "name": s.name, "actions": list(s.actions)} for s in access]}
        return jwt.encode(claims, self.key, algorithm=self.algorithm, headers=self.headers), iat
