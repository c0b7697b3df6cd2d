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


# claim overrides; times are offsets from the moment the test runs (not when it was collected:
# a long run would otherwise carry "not yet valid" past the 60 s leeway)
@pytest.mark.parametrize("over, why", [
    ({"exp": -120}, "expired"),
    ({"nbf": +120}, "not yet valid"),
    ({"aud": "another-service"}, "wrong audience"),
    ({"iss": "another-issuer"}, "wrong issuer"),
    ({"exp": None}, "no exp"),
    ({"iss": None}, "no iss"),
    ({"aud": None}, "no aud"),
])
def test_refused_claims(ca: pki.Issued, signer_cert: pki.Issued, over: dict[str, Any], why: str) -> None:
    now = int(time.time())
    claims_now = {k: now + v if k in ("exp", "nbf") and isinstance(v, int) else v for k, v in over.items()}
    with pytest.raises(TokenError):
        verifier(ca).verify(token(signer_cert, **claims_now))


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
    key = hashlib.sha256(short.encode()).digest()
    v._cache[key] = (type(c)(c.subject, c.access, time.time() - 61), len(short))
    with pytest.raises(TokenError, match="expired"):
        v.verify(short)
    assert key not in v._cache


def test_token_cache_is_bounded_in_bytes(ca: pki.Issued, signer_cert: pki.Issued,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The verified-token cache holds SHA-256 keys and at most CACHE_BYTES of token text: large
    tokens push the oldest out instead of growing memory with every distinct token."""
    import fastreg.auth.token as tok
    monkeypatch.setattr(tok, "CACHE_BYTES", 16 * 4000)
    v = verifier(ca)
    big = [{"type": "repository", "name": f"r/{i}", "actions": ["pull"]} for i in range(40)]
    raws = [token(signer_cert, access=big, jti=str(i)) for i in range(30)]
    assert all(2000 < len(r) <= 4000 for r in raws)
    for r in raws:
        v.verify(r)
    assert v._cache_bytes == sum(n for _, n in v._cache.values()) <= tok.CACHE_BYTES
    assert 0 < len(v._cache) < len(raws) and all(len(k) == 32 for k in v._cache)
    assert v.verify(raws[0]).subject == "alice"          # evicted, verified again


# -- who may sign: a certificate meant for signing, never a TLS certificate of the same CA --------

def _usage(**on: bool) -> Any:
    from cryptography import x509
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: on.get(n, False) for n in names})


def _leaf(ca: pki.Issued, cn: str, ku: Any = None, eku: list[Any] | None = None) -> pki.Issued:
    """A leaf under `ca` with exactly the given key usage / extended key usage (None: absent)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    now = ca.cert.not_valid_before_utc
    b = (x509.CertificateBuilder().subject_name(pki._name(cn))
         .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now).not_valid_after(ca.cert.not_valid_after_utc))
    if ku is not None:
        b = b.add_extension(ku, critical=True)
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return pki.Issued(key, b.sign(ca.key, hashes.SHA256()))


def test_tls_certificates_of_the_bundle_ca_are_not_signers(ca: pki.Issued) -> None:
    """A TLS server (or client) certificate chaining to the bundle cannot sign tokens: its key
    would otherwise mint a token with any access."""
    from cryptography.x509.oid import ExtendedKeyUsageOID as E
    server = pki.issue(ca, "registry TLS", hosts=["127.0.0.1", "registry.example"])
    for tls in (server, pki.issue(ca, "a TLS client", client=True),
                _leaf(ca, "server+client", eku=[E.SERVER_AUTH, E.CLIENT_AUTH]),
                _leaf(ca, "server, signing usage", ku=_usage(digital_signature=True), eku=[E.SERVER_AUTH])):
        with pytest.raises(TokenError, match="not a token signer.*TLS"):
            verifier(ca).verify(token(tls, access=[{"type": "repository", "name": "*", "actions": ["*"]}]))
    with pytest.raises(TokenError, match="digitalSignature"):
        verifier(ca).verify(token(_leaf(ca, "encipherment only", ku=_usage(key_encipherment=True))))


def test_signers_distribution_accepts_keep_working(ca: pki.Issued) -> None:
    """Distribution's floor: a bundle CA's leaf without usage extensions, with digitalSignature,
    with an extended key usage that is not TLS alone; and a bundle that is the signing certificate
    itself (whatever its extensions: the operator named that very certificate)."""
    from cryptography.x509.oid import ExtendedKeyUsageOID as E
    for leaf in (_leaf(ca, "plain"), _leaf(ca, "signing", ku=_usage(digital_signature=True)),
                 _leaf(ca, "code signing", eku=[E.CODE_SIGNING]),
                 _leaf(ca, "any purpose", eku=[E.ANY_EXTENDED_KEY_USAGE, E.SERVER_AUTH]),
                 pki.issue(ca, "pki token signer")):
        assert verifier(ca).verify(token(leaf)).subject == "alice", leaf.cert.subject
    own = pki.make_signer("self-signed signer")
    assert verifier(own).verify(token(own)).subject == "alice"
    server = pki.issue(ca, "TLS named in the bundle", hosts=["x"])
    assert TokenVerifier(issuer=ISSUER, service=SERVICE, roots=[server.cert]).verify(token(server)).subject == "alice"


def test_intermediate_must_be_allowed_to_sign_certificates(ca: pki.Issued) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    inter = pki.make_ca("no-certsign intermediate")
    cert = (x509.CertificateBuilder().subject_name(inter.cert.subject).issuer_name(ca.cert.subject)
            .public_key(inter.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(inter.cert.not_valid_before_utc).not_valid_after(inter.cert.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(digital_signature=True), critical=True)
            .sign(ca.key, hashes.SHA256()))
    inter = pki.Issued(inter.key, cert)
    leaf = pki.issue(inter, "leaf under a signing-only intermediate")
    with pytest.raises(TokenError, match="does not lead"):
        verifier(ca).verify(token(leaf, chain=[leaf, inter]))


def test_gencerts_keeps_the_token_signer_apart_from_tls(tmp_path: Path) -> None:
    """gencerts' token.pem is its own self-signed signing certificate: with the bundle it names
    (token.pem), a token from token.key is accepted and one from the TLS key is refused, and no
    CA of the TLS chain issued the token signer."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    written = pki.generate(tmp_path, ["127.0.0.1"])
    assert tmp_path / "token.pem" in written
    ca_cert = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    tok_cert = x509.load_pem_x509_certificate((tmp_path / "token.pem").read_bytes())
    srv_cert = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    assert tok_cert.issuer == tok_cert.subject != ca_cert.subject
    assert not pki.token_signer_shares_tls_ca(tmp_path)

    def load(stem: str) -> pki.Issued:
        key = serialization.load_pem_private_key((tmp_path / f"{stem}.key").read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return pki.Issued(key, x509.load_pem_x509_certificate((tmp_path / f"{stem}.pem").read_bytes()))
    v = TokenVerifier(issuer=ISSUER, service=SERVICE, roots=[tok_cert])
    assert v.verify(TokenSigner(tmp_path / "token.key", tmp_path / "token.pem", ISSUER).sign(
        "alice", SERVICE, [], 300)[0]).subject == "alice"
    for stem, chain in (("server", None), ("ca", None)):
        with pytest.raises(TokenError):
            v.verify(token(load(stem), chain=chain))
    # the same bundle with the older layout (ca.pem) would still refuse the TLS key
    assert srv_cert.issuer == ca_cert.subject
    with pytest.raises(TokenError, match="not a token signer"):
        TokenVerifier(issuer=ISSUER, service=SERVICE, roots=[ca_cert]).verify(token(load("server")))


@pytest.mark.parametrize("name, value", [
    ("exp", "99999999999"), ("exp", True), ("exp", [2 ** 40]), ("exp", 1e400),
    ("nbf", "0"), ("nbf", False), ("iat", "now"), ("iat", True), ("iat", {"t": 1}),
])
def test_non_numeric_times_refused(ca: pki.Issued, signer_cert: pki.Issued, name: str, value: Any) -> None:
    """exp/nbf/iat are NumericDates: a string or a boolean is refused, even one that pyjwt would
    read as a number."""
    with pytest.raises(TokenError):
        verifier(ca).verify(token(signer_cert, **{name: value}))
