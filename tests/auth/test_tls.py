"""HTTPS through granian: a certificate from a private CA, verified by OpenSSL (httpx) and Go
(skopeo); client-certificate verification with http.tls.clientcas."""
from __future__ import annotations

import hashlib
import ssl
from typing import Any

import httpx
import pytest

from tests.interop.conftest import run, skopeo_cmd
from tests.interop.images import ImageLayout

from .conftest import PKI

pytestmark = [pytest.mark.e2e]


def tls_config(p: PKI, **extra: Any) -> dict[str, Any]:
    return {"http": {"tls": {"certificate": str(p.server_pem), "key": str(p.server_key), **extra}}}


def test_https_round_trip_with_skopeo(fastreg_factory: Any, test_pki: PKI, small_image: ImageLayout) -> None:
    srv = fastreg_factory(tls_config(test_pki))
    assert srv.url.startswith("https://")
    r = httpx.get(srv.url + "/v2/", verify=test_pki.ssl_context())
    assert r.status_code == 200
    with pytest.raises(httpx.ConnectError):           # not trusted without the CA
        httpx.get(srv.url + "/v2/", verify=ssl.create_default_context())
    run(skopeo_cmd("copy", "--all", "--dest-cert-dir", str(test_pki.certs_dir), small_image.ref,
                   f"docker://{srv.host}/tls/img:v1"), server=srv)
    out = run(skopeo_cmd("inspect", "--raw", "--cert-dir", str(test_pki.certs_dir),
                         f"docker://{srv.host}/tls/img:v1"), server=srv)
    assert "sha256:" + hashlib.sha256(out.stdout.encode()).hexdigest() == small_image.index_digest
    # Location headers name https
    r = httpx.post(srv.url + "/v2/tls/other/blobs/uploads/", verify=test_pki.ssl_context())
    assert r.status_code == 202 and r.headers["location"].startswith("https://")
    # skopeo refuses the server without the CA (verification really happens)
    bad = run(skopeo_cmd("inspect", "--raw", f"docker://{srv.host}/tls/img:v1"), check=False)
    assert bad.returncode != 0 and "certificate" in bad.stderr


def test_pkcs1_style_key_is_accepted(fastreg_factory: Any, test_pki: PKI, tmp_path: Any) -> None:
    """Distribution installs often have "BEGIN EC/RSA PRIVATE KEY" keys; granian wants PKCS#8."""
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(test_pki.server_key.read_bytes(), password=None)
    legacy = tmp_path / "legacy.key"
    legacy.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                         serialization.NoEncryption()))
    assert b"BEGIN EC PRIVATE KEY" in legacy.read_bytes()
    cfg = tls_config(test_pki)
    cfg["http"]["tls"]["key"] = str(legacy)
    srv = fastreg_factory(cfg)
    assert httpx.get(srv.url + "/v2/", verify=test_pki.ssl_context()).status_code == 200


def test_client_certificates_required_with_clientcas(fastreg_factory: Any, test_pki: PKI,
                                                     small_image: ImageLayout) -> None:
    srv = fastreg_factory(tls_config(test_pki, clientcas=[str(test_pki.ca_pem)]))
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.get(srv.url + "/v2/", verify=test_pki.ssl_context())
    r = httpx.get(srv.url + "/v2/", verify=test_pki.ssl_context(client=True))
    assert r.status_code == 200
    run(skopeo_cmd("copy", "--all", "--dest-cert-dir", str(test_pki.client_certs_dir), small_image.ref,
                   f"docker://{srv.host}/mtls/img:v1"), server=srv)
    bad = run(skopeo_cmd("inspect", "--raw", "--cert-dir", str(test_pki.certs_dir),
                         f"docker://{srv.host}/mtls/img:v1"), check=False)
    assert bad.returncode != 0
