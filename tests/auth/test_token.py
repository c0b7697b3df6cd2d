"""Token verification (token.py) against hand-made tokens: every way a token must be refused,
and the ways it must be accepted (x5c chains, libtrust kid, RFC 7638 kid, JWKS)."""
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
from cryptography.hazmat.primitives.asymmetric import rsa

from fastreg.auth import pki
from fastreg.auth.access import Scope
from fastreg.auth.token import TokenError, TokenSigner, TokenVerifier, jwk_thumbprint, libtrust_kid

ISSUER, SERVICE = "test-issuer", "test-service"


@pytest.fixture(scope="module")
def ca() -> pki.Issued:
    return pki.make_ca("token root")


@pytest.fixture(scope="module")
def signer_cert(ca: pki.Issued) -> pki.Issued:
    return pki.issue(ca, "token signer")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def x5c(*certs: pki.Issued) -> list[str]:
    return [base64.b64encode(c.cert.public_bytes(serialization.Encoding.DER)).decode() for c in certs]


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    c = {"iss": ISSUER, "aud": SERVICE, "sub": "alice", "exp": now + 300, "nbf": now - 5, "iat": now,
         "jti": "x", "access": [{"type": "repository", "name": "a/b", "actions": ["pull", "push"]}]}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def token(signer: pki.Issued, chain: list[pki.Issued] | None = None, alg: str = "ES256", **over: Any) -> str:
    headers = {"x5c": x5c(*(chain or [signer]))}
    return jwt.encode(claims(**over), signer.key, algorithm=alg, headers=headers)


def verifier(ca: pki.Issued, **kw: Any) -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, service=SERVICE, roots=[ca.cert], **kw)


def test_valid_token_and_scopes(ca: pki.Issued, signer_cert: pki.Issued) -> None:
    c = verifier(ca).verify(token(signer_cert))
    assert c.subject == "alice"
    assert c.holds(Scope("repository", "a/b", ("pull",)))
    assert c.holds(Scope("repository", "a/b", ("pull", "push")))
    assert not c.holds(Scope("repository", "a/b", ("delete",)))         # delete without delete
    assert not c.holds(Scope("repository", "a/other", ("pull",)))        # a token for A used on B
    pull_only = verifier(ca).verify(token(signer_cert, access=[{"type": "repository", "name": "a/b",
                                                                 "actions": ["pull"]}]))
    assert not pull_only.holds(Scope("repository", "a/b", ("pull", "push")))   # a pull token used to push


@pytest.mark.parametrize("over, why", [
    ({"exp": int(time.time()) - 120}, "expired"),
    ({"nbf": int(time.time()) + 120}, "not yet valid"),
    ({"aud": "another-service"}, "wrong audience"),
    ({"iss": "another-issuer"}, "wrong issuer"),
    ({"exp": None}, "no exp"),
    ({"iss": None}, "no iss"),
    ({"aud": None}, "no aud"),
])
def test_refused_claims(ca: pki.Issued, signer_cert: pki.Issued, over: dict[str, Any], why: str) -> None:
    with pytest.raises(TokenError):
        verifier(ca).verify(token(signer_cert, **over))


def test_leeway_is_sixty_seconds(ca: pki.Issued, signer_cert: pki.Issued) -> None:
    now = int(time.time())
    verifier(ca).verify(token(signer_cert, exp=now - 30))          # within leeway
    verifier(ca).verify(token(signer_cert, nbf=now + 30))
    with pytest.raises(TokenError):
        verifier(ca).verify(token(signer_cert, exp=now - 90))


def test_audience_list(ca: pki.Issued, signer_cert: pki.Issued) -> None:
    verifier(ca).verify(token(signer_cert, aud=["x", SERVICE]))


def test_alg_none_refused(ca: pki.Issued, signer_cert: pki.Issued) -> None:
    header = {"alg": "none", "typ": "JWT", "x5c": x5c(signer_cert)}
    raw = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}."
    with pytest.raises(TokenError, match="algorithm"):
        verifier(ca).verify(raw)


def test_hs256_keyed_with_the_public_key_refused(ca: pki.Issued, signer_cert: pki.Issued) -> None:
    """The classic forgery: sign with HMAC using the (public) root certificate key as secret."""
    pub_pem = ca.cert.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": libtrust_kid(ca.cert.public_key())}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
    sig = hmac.new(pub_pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(TokenError, match="algorithm"):
        verifier(ca).verify(f"{signing_input}.{b64(sig)}")
    # even when an operator lists HS256, it is not accepted
    with pytest.raises(TokenError, match="algorithm"):
        verifier(ca, algorithms=["HS256", "ES256"]).verify(f"{signing_input}.{b64(sig)}")


def test_untrusted_key_refused(ca: pki.Issued) -> None:
    other_ca = pki.make_ca("someone else")
    rogue = pki.issue(other_ca, "rogue signer")
    with pytest.raises(TokenError, match="trusted root"):
        verifier(ca).verify(token(rogue, chain=[rogue, other_ca]))
    # a self-signed leaf that claims the root's name is still refused (signature check)
    fake_root = pki.make_ca(ca.cert.subject.rfc4514_string().removeprefix("CN="))
    fake = pki.issue(fake_root, "fake")
    with pytest.raises(TokenError):
        verifier(ca).verify(token(fake, chain=[fake]))
    # a kid that names no trusted key
    raw = jwt.encode(claims(), rogue.key, algorithm="ES256", headers={"kid": libtrust_kid(rogue.key.public_key())})
    with pytest.raises(TokenError, match="untrusted key"):
        verifier(ca).verify(raw)
    # an embedded jwk is never trusted by itself
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(rogue.key.public_key()))
    raw = jwt.encode(claims(), rogue.key, algorithm="ES256", headers={"jwk": jwk})
    with pytest.raises(TokenError, match="jwk"):
        verifier(ca).verify(raw)


def test_bad_signature_refused(ca: pki.Issued, signer_cert: pki.Issued) -> None:
    raw = token(signer_cert)
    head, body, sig = raw.split(".")
    forged_body = b64(json.dumps(claims(access=[{"type": "repository", "name": "a/b",
                                                 "actions": ["pull", "push", "delete"]}])).encode())
    with pytest.raises(TokenError):
        verifier(ca).verify(f"{head}.{forged_body}.{sig}")
    flipped = bytearray(base64.urlsafe_b64decode(sig + "=="))
    flipped[5] ^= 1
    with pytest.raises(TokenError):
        verifier(ca).verify(f"{head}.{body}.{b64(bytes(flipped))}")


def test_algorithm_must_match_key(ca: pki.Issued, signer_cert: pki.Issued) -> None:
    header = {"alg": "RS256", "typ": "JWT", "x5c": x5c(signer_cert)}
    raw = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}.{b64(b'x' * 256)}"
    with pytest.raises(TokenError, match="does not match"):
        verifier(ca).verify(raw)


def test_algorithm_allow_list(ca: pki.Issued, signer_cert: pki.Issued) -> None:
    with pytest.raises(TokenError, match="not accepted"):
        verifier(ca, algorithms=["RS256"]).verify(token(signer_cert))


def test_expired_certificate_in_chain_refused(ca: pki.Issued) -> None:
    import datetime as dt
    old = pki.issue(ca, "old signer", days=1, not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    with pytest.raises(TokenError, match="expired"):
        verifier(ca).verify(token(old))


def test_intermediate_chain(ca: pki.Issued) -> None:
    inter = pki.make_ca("intermediate")
    # re-issue the intermediate under the root
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    cert = (x509.CertificateBuilder().subject_name(inter.cert.subject).issuer_name(ca.cert.subject)
            .public_key(inter.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(inter.cert.not_valid_before_utc).not_valid_after(inter.cert.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(ca.key, hashes.SHA256()))
    inter = pki.Issued(inter.key, cert)
    leaf = pki.issue(inter, "leaf under intermediate")
    assert verifier(ca).verify(token(leaf, chain=[leaf, inter])).subject == "alice"
    with pytest.raises(TokenError):               # the intermediate is needed
        verifier(ca).verify(token(leaf, chain=[leaf]))


def test_kid_libtrust_and_thumbprint(ca: pki.Issued) -> None:
    """A token without x5c is matched by kid to a root certificate's key (Distribution's way)."""
    for kid in (libtrust_kid(ca.key.public_key()), jwk_thumbprint(ca.key.public_key())):
        raw = jwt.encode(claims(), ca.key, algorithm="ES256", headers={"kid": kid})
        assert verifier(ca).verify(raw).subject == "alice"
    # libtrust format: 12 groups of 4 base32 characters
    kid = libtrust_kid(ca.key.public_key())
    assert len(kid.split(":")) == 12 and all(len(p) == 4 for p in kid.split(":"))


def test_jwks(tmp_path: Path, ca: pki.Issued) -> None:
    from fastreg.auth.token import load_jwks
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "my-key"
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    v = TokenVerifier(issuer=ISSUER, service=SERVICE, jwks=load_jwks(tmp_path / "jwks.json"))
    raw = jwt.encode(claims(), key, algorithm="RS256", headers={"kid": "my-key"})
    assert v.verify(raw).subject == "alice"
    raw = jwt.encode(claims(), key, algorithm="RS256", headers={"kid": "other"})
    with pytest.raises(TokenError):
        v.verify(raw)


def test_signer_round_trip_and_cache(tmp_path: Path, ca: pki.Issued, signer_cert: pki.Issued) -> None:
    signer_cert.write(tmp_path / "t.pem", tmp_path / "t.key")
    s = TokenSigner(tmp_path / "t.key", tmp_path / "t.pem", ISSUER)
    raw, _ = s.sign("bob", SERVICE, [Scope("repository", "x/y", ("pull",))], 300)
    header = jwt.get_unverified_header(raw)
    assert header["alg"] == "ES256" and header["kid"] == libtrust_kid(signer_cert.key.public_key())
    v = verifier(ca)
    c = v.verify(raw)
    assert c.subject == "bob" and c.holds(Scope("repository", "x/y", ("pull",)))
    assert v.verify(raw) is c                       # cached
    expired, _ = s.sign("bob", SERVICE, [], 1, now=time.time() - 120)
    with pytest.raises(TokenError):
        v.verify(expired)
    # a cached token is dropped once it expires
    short, _ = s.sign("bob", SERVICE, [], 2, now=time.time() - 61)
    v.verify(short)
    v._cache[short] = type(c)(c.subject, c.access, time.time() - 61)
    with pytest.raises(TokenError, match="expired"):
        v.verify(short)
