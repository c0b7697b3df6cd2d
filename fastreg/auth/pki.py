"""Keys and certificates for a test or small install: a private CA, TLS server and client
certificates it signs, and a token-signing certificate (``fastreg gencerts``).

The token-signing certificate is self-signed and is itself ``auth.token.rootcertbundle``: the
token-signing chain shares nothing with the TLS chain, so no TLS key (server or client) can
sign a token the registry accepts, whatever else the CA signs later.

Keys are ECDSA P-256 (small, fast, accepted by Go, rustls and OpenSSL); files are PEM, keys
PKCS#8 (granian reads only PKCS#8) and written mode 0600.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Issued:
    key: PrivateKey
    cert: x509.Certificate

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> None:
        Path(cert_path).write_bytes(self.cert_pem())
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.key_pem())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             days: int, not_before: dt.datetime | None) -> x509.CertificateBuilder:
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def make_ca(cn: str = "fastreg test CA", days: int = 3650) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(cn, _name(cn), key.public_key(), days, None)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return Issued(key, cert)


_SIGNING_ONLY = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False, key_cert_sign=False,
                              crl_sign=False, encipher_only=False, decipher_only=False)


def make_signer(cn: str = "fastreg token signer", days: int = 3650) -> Issued:
    """A self-signed token-signing certificate (key usage digitalSignature only, not a CA): the
    bundle a registry trusts is this certificate, so it trusts this key and nothing else."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(cn, _name(cn), key.public_key(), days, None)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_SIGNING_ONLY, critical=True)
            .sign(key, hashes.SHA256()))
    return Issued(key, cert)


def issue(ca: Issued, cn: str, *, hosts: list[str] = (), client: bool = False,  # type: ignore[assignment]
          days: int = 825, not_before: dt.datetime | None = None) -> Issued:
    """A leaf certificate signed by `ca`: a TLS server certificate for `hosts` (DNS names or IP
    addresses), a client certificate (`client=True`), or, with neither, a token-signing one."""
    key = ec.generate_private_key(ec.SECP256R1())
    b = (_builder(cn, ca.cert.subject, key.public_key(), days, not_before)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                        critical=False))
    usages = []
    if hosts:
        sans: list[x509.GeneralName] = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if usages:
        b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    else:
        b = b.add_extension(_SIGNING_ONLY, critical=True)
    return Issued(key, b.sign(ca.key, hashes.SHA256()))


def generate(directory: str | os.PathLike[str], hosts: list[str]) -> list[Path]:
    """Everything a TLS + token install needs, in `directory`:

    ca.pem / ca.key        the private TLS CA (give ca.pem to clients: skopeo --cert-dir, podman)
    server.pem / .key      TLS certificate for `hosts`, signed by the CA
    token.pem / .key       the token service's signing certificate, self-signed, apart from the
                           TLS CA (auth.token.rootcertbundle: token.pem)
    certs.d/ca.crt         the CA again, as skopeo/podman ``--cert-dir`` want it
    Existing files are kept (so re-running never rotates a live install's keys); a certificate
    found without its key, or a key without its certificate, stops it before anything is written
    (``PairIncomplete``): the CA's key may be kept offline once server.pem exists."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    pairs = {stem: (d / f"{stem}.pem", d / f"{stem}.key") for stem in ("ca", "server", "token")}
    for stem, (cert, key_path) in pairs.items():
        # half a pair is never completed: writing the missing half would overwrite the other (a
        # ca.pem whose key is kept offline would be replaced by a new CA that clients do not trust).
        # The CA's key is needed only to issue server.pem.
        offline_ca = stem == "ca" and cert.exists() and pairs["server"][0].exists()
        if cert.exists() != key_path.exists() and not offline_ca:
            have, missing = (cert, key_path) if cert.exists() else (key_path, cert)
            raise PairIncomplete(f"{have} exists without {missing}: nothing written (put {missing.name} back, "
                                 f"or remove {have.name} to make a new pair)")
    written: list[Path] = []
    ca_pem, ca_key = pairs["ca"]
    ca: Issued | None = None
    if ca_pem.exists():
        if not pairs["server"][0].exists():         # only a new TLS certificate needs the CA's key
            key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise PairIncomplete(f"{ca_key} is not an ECDSA key: nothing written")
            ca = Issued(key, x509.load_pem_x509_certificate(ca_pem.read_bytes()))
    else:
        ca = make_ca()
        ca.write(ca_pem, ca_key)
        written += [ca_pem, ca_key]
    for stem in ("server", "token"):
        cert, key_path = pairs[stem]
        if cert.exists():
            continue
        if stem == "server":
            assert ca is not None
            made = issue(ca, "fastreg server", hosts=hosts)
        else:
            made = make_signer()
        made.write(cert, key_path)
        written += [cert, key_path]
    certs_d = d / "certs.d"
    if not (certs_d / "ca.crt").exists():
        certs_d.mkdir(exist_ok=True)
        (certs_d / "ca.crt").write_bytes(ca_pem.read_bytes())
        written.append(certs_d / "ca.crt")
    return written


class PairIncomplete(ValueError):
    """gencerts found a certificate without its key, or a key without its certificate."""


def token_signer_shares_tls_ca(directory: str | os.PathLike[str]) -> bool:
    """Whether DIR/token.pem was issued by DIR/ca.pem (the layout of older ``gencerts``): then the
    token chain and the TLS chain share a CA."""
    d = Path(directory)
    try:
        token = x509.load_pem_x509_certificate((d / "token.pem").read_bytes())
        ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    except (OSError, ValueError):
        return False
    return token.issuer == ca.subject and token.issuer != token.subject
