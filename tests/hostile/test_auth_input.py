"""Hostile bearer tokens against a real fastreg with token auth: each is refused with 401
UNAUTHORIZED (never a 500), nothing is stored, and a valid token still works afterwards.

Regression: a token whose x5c certificate has a corrupted issuer name made cryptography raise
ValueError deep in the chain check, which escaped as a 500 (found by the long fuzz campaign)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from fastreg.auth import pki

from .support import snapshot

ISSUER, SERVICE = "hostile-issuer", "hostile-registry"


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _token(signer: pki.Issued, x5c_der: bytes | None = None, **over: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": SERVICE, "sub": "u", "exp": now + 600, "nbf": now - 5, "iat": now,
              "access": [{"type": "repository", "name": "tok/app", "actions": ["pull", "push"]}], **over}
    der = x5c_der if x5c_der is not None else signer.cert.public_bytes(serialization.Encoding.DER)
    return jwt.encode(claims, signer.key, algorithm="ES256", headers={"x5c": [base64.b64encode(der).decode()]})


def _hs256(secret: bytes, claims_b64: str) -> str:
    """The classic key-confusion token: HMAC keyed with the public certificate (pyjwt will not make it)."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "x5c": [base64.b64encode(secret).decode()]}).encode())
    mac = hmac.new(secret, f"{head}.{claims_b64}".encode(), hashlib.sha256).digest()
    return f"{head}.{claims_b64}.{_b64(mac)}"


def _corrupt_issuer(cert_der: bytes, issuer_der: bytes, back: int, byte: int) -> bytes:
    """One byte of the issuer Name, `back` bytes before its end, replaced: the certificate still
    loads (cryptography parses names lazily) and fails only when the chain check reads the issuer
    — with ValueError (invalid UTF-8 in the CN) or KeyError (an unknown string tag)."""
    i = cert_der.index(issuer_der) + len(issuer_der) - back   # the issuer Name comes before the subject
    return cert_der[:i] + bytes([byte]) + cert_der[i + 1:]


def _hostile_tokens(signer: pki.Issued, rogue: pki.Issued) -> list[tuple[str, str]]:
    der = signer.cert.public_bytes(serialization.Encoding.DER)
    issuer = signer.cert.issuer.public_bytes()
    good = _token(signer)
    h, c, s = good.split(".")
    return [
        ("x5c issuer CN not UTF-8", _token(signer, _corrupt_issuer(der, issuer, 3, 0xFF))),
        ("x5c issuer CN of an unknown string type",
         _token(signer, _corrupt_issuer(der, issuer, len("hostile root") + 2, 0xBC))),
        ("x5c truncated", _token(signer, der[:100])),
        ("x5c not DER", _token(signer, b"\x30\x03abc")),
        ("signed by an untrusted CA", _token(rogue)),
        ("alg none", _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode()) + "." + c + "."),
        ("HS256 with the cert as secret", _hs256(der, c)),
        ("claims swapped", h + "." + _b64(json.dumps({"iss": ISSUER, "aud": SERVICE, "exp": 2**40, "access": [
            {"type": "repository", "name": "tok/app", "actions": ["*"]}]}).encode()) + "." + s),
        ("expired", _token(signer, exp=int(time.time()) - 3600)),
        ("wrong audience", _token(signer, aud="other")),
        ("exp not a number", _token(signer, exp="soon")),
        ("dots", ".."),
        ("garbage", "%00../..\\"),
        ("huge", "A" * 50_000),
        ("four parts", good + ".x"),
    ]


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.support.server import make_fastreg
    tmp = tmp_path_factory.mktemp("tokauth")
    ca, rogue_ca = pki.make_ca("hostile root"), pki.make_ca("rogue root")
    signer, rogue = pki.issue(ca, "hostile signer"), pki.issue(rogue_ca, "rogue signer")
    bundle = tmp / "ca.pem"
    bundle.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    srv = make_fastreg(tmp, {"auth": {"token": {"realm": "https://auth.invalid/token", "service": SERVICE,
                                                 "issuer": ISSUER, "rootcertbundle": str(bundle)}}})
    srv.start()
    yield srv, signer, rogue
    srv.stop()


def test_hostile_bearer_tokens_are_401(token_server: Any) -> None:
    import httpx
    srv, signer, rogue = token_server
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        ok = {"authorization": f"Bearer {_token(signer)}"}
        assert c.post("/v2/tok/app/blobs/uploads/", params={"digest": "sha256:" + "0" * 64}, content=b"x",
                      headers=ok).status_code == 400          # authorized (and a wrong digest)
        before = snapshot(Path(srv.root))
        for label, tok in _hostile_tokens(signer, rogue):
            for method, path in (("GET", "/v2/tok/app/tags/list"), ("POST", "/v2/tok/app/blobs/uploads/")):
                r = c.request(method, path, headers={"authorization": f"Bearer {tok}"})
                assert r.status_code == 401, (label, method, r.status_code, r.text[:300])
                assert r.json()["errors"][0]["code"] == "UNAUTHORIZED", label
                assert "www-authenticate" in r.headers, label
        assert snapshot(Path(srv.root)) == before
        data = b"still works"
        r = c.post("/v2/tok/app/blobs/uploads/", params={"digest": "sha256:" + hashlib.sha256(data).hexdigest()},
                   content=data, headers=ok)
        assert r.status_code == 201, r.text
