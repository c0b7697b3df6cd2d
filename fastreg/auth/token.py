"""Bearer tokens as the Docker registry token specification defines them: JWTs signed by a
token service, carrying ``access`` claims (``[{"type", "name", "actions"}]``).

Verification (``TokenVerifier``), as Distribution's ``registry/auth/token``:

* the algorithm must be in an allow-list of asymmetric algorithms (``none`` and HMAC are never
  accepted: there is no shared secret, and HS256 keyed with a public key is the classic forgery);
* the signing key comes from the header: ``x5c`` (a certificate chain, checked up to one of
  the configured root certificates, each certificate within its validity period), else ``kid``
  (see below).  An ``x5c`` leaf that is itself in the bundle is trusted as configured; a leaf
  that only *chains* to the bundle must be meant for signing: its key usage, when present,
  includes digitalSignature, and its extended key usage, when present, is not TLS alone
  (serverAuth/clientAuth) — a TLS server certificate issued by the same CA is never a token
  signer.  Intermediates must be CAs allowed to sign certificates (keyCertSign, when present).
  Distribution accepts any certificate chaining to the bundle; every token it accepts from a
  bundle of signing certificates (or of CAs whose leaves are signing certificates) is accepted
  here too.  ``kid``
  (the libtrust fingerprint or RFC 7638 thumbprint of a root certificate's key, or a key id from
  the configured JWKS).  An embedded ``jwk`` is not trusted on its own and is refused;
* ``iss`` must equal the configured issuer, ``aud`` contain the service, ``exp`` is required;
  ``exp``/``nbf``/``iat`` must be JSON numbers and are checked with 60 s leeway;
* verified tokens are cached until they expire (a hit costs one dict lookup), keyed by the
  token's SHA-256, at most ``CACHE_MAX`` tokens and ``CACHE_BYTES`` of token text.

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
import math
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
from cryptography.x509.oid import ExtendedKeyUsageOID

from .access import Scope

log = logging.getLogger("fastreg.auth")

LEEWAY = 60
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
CACHE_MAX = 4096
CACHE_BYTES = 8 << 20
MAX_CHAIN = 8
_TLS_ONLY = frozenset({ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH})


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


def _extension(cert: x509.Certificate, kind: Any) -> Any:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def signer_refusal(cert: x509.Certificate) -> str | None:
    """Why `cert` is not meant to sign tokens, or None.  Key usage, when present, must include
    digitalSignature; an extended key usage of TLS purposes alone (serverAuth, clientAuth) marks
    a TLS certificate.  No extension: a plain certificate, accepted (as Distribution does)."""
    ku = _extension(cert, x509.KeyUsage)
    if ku is not None and not ku.digital_signature:
        return "its key usage does not include digitalSignature"
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if eku is not None and set(eku) <= _TLS_ONLY:
        return "its extended key usage is TLS only (serverAuth/clientAuth): a TLS certificate is not a token signer"
    return None


def _may_issue(cert: x509.Certificate) -> bool:
    if not _is_ca(cert):
        return False
    ku = _extension(cert, x509.KeyUsage)
    return ku is None or bool(ku.key_cert_sign)


def verify_chain(chain: list[x509.Certificate], roots: list[x509.Certificate]) -> x509.Certificate:
    """Check that ``chain[0]`` leads to one of ``roots`` through ``chain[1:]``; return the leaf.

    A leaf that *is* a root is trusted directly (the bundle names the signing certificate).
    Otherwise the leaf must be meant for signing (``signer_refusal``), and each link: the
    issuer's subject names the child's issuer, its key verifies the child's signature, it is a
    CA allowed to sign certificates (intermediates; roots are trusted as configured) and every
    certificate is within its validity period."""
    now = dt.datetime.now(dt.UTC)
    root_der = {r.public_bytes(serialization.Encoding.DER) for r in roots}
    if chain[0].public_bytes(serialization.Encoding.DER) not in root_der:
        refusal = signer_refusal(chain[0])
        if refusal:
            raise TokenError(f"the x5c certificate {chain[0].subject.rfc4514_string()!r} is not a token signer: "
                             f"{refusal}")
    current = chain[0]
    pool = chain[1:]
    for _ in range(MAX_CHAIN):
        if not _valid_now(current, now):
            raise TokenError("a certificate in the x5c chain is expired or not yet valid")
        if current.public_bytes(serialization.Encoding.DER) in root_der:
            return chain[0]
        for issuer in [*roots, *pool]:
            if issuer.subject != current.issuer or issuer == current or \
                    (issuer not in roots and not _may_issue(issuer)):
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
        self._cache: dict[bytes, tuple[Claims, int]] = {}     # SHA-256 of the token -> (claims, its length)
        self._cache_bytes = 0

    def verify(self, raw: str) -> Claims:
        key = hashlib.sha256(raw.encode()).digest()
        hit = self._cache.get(key)
        if hit is not None:
            if time.time() <= hit[0].expires + LEEWAY:
                return hit[0]
            self._drop(key)
            raise TokenError("token expired")
        claims = self._verify(raw)
        size = len(raw)
        if size <= CACHE_BYTES // 16:
            if len(self._cache) >= CACHE_MAX or self._cache_bytes + size > CACHE_BYTES:
                now = time.time()
                for k in [k for k, (c, _) in self._cache.items() if now > c.expires + LEEWAY]:
                    self._drop(k)
            while self._cache and (len(self._cache) >= CACHE_MAX or self._cache_bytes + size > CACHE_BYTES):
                self._drop(next(iter(self._cache)))          # the oldest
            self._cache[key] = (claims, size)
            self._cache_bytes += size
        return claims

    def _drop(self, key: bytes) -> None:
        hit = self._cache.pop(key, None)
        if hit is not None:
            self._cache_bytes -= hit[1]

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
        if not isinstance(alg, str) or alg not in self.algorithms:     # a list or an object is no name
            raise TokenError(f"signing algorithm {alg!r} is not accepted")
        key = self._signing_key(header)
        if alg.startswith("ES") and not isinstance(key, ec.EllipticCurvePublicKey) or \
                alg[:2] in ("RS", "PS") and not isinstance(key, rsa.RSAPublicKey) or \
                alg == "EdDSA" and not isinstance(key, ed25519.Ed25519PublicKey):
            raise TokenError(f"algorithm {alg} does not match the signing key")
        try:
            claims = jwt.decode(raw, key=key, algorithms=[alg], audience=self.service, issuer=self.issuer,
                                leeway=LEEWAY, options={"require": ["exp", "iss", "aud"]})
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as exc:   # exp: 1e400 is inf
            raise TokenError(str(exc)) from None
        for name in ("exp", "nbf", "iat"):
            # pyjwt takes int(value): "9999999999" or true would pass as a time
            v = claims.get(name)
            if name in claims and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise TokenError(f"the {name} claim is not a number")
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
