"""The OCI conformance suite (see test_oci_conformance.py) against fastreg as a hostile network
would meet it: HTTPS (the Go client speaks HTTP/2 over TLS) and token auth through the built-in
token service, which the suite reaches by following the Bearer challenge with OCI_USERNAME /
OCI_PASSWORD.  OCI_DEBUG=1 is on, as the suite's users turn it on when something fails (its
output then holds binary bodies: run_suite reads it with errors replaced)."""
from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from fastreg.auth import pki

from .test_oci_conformance import WORKFLOWS, check, needs_binary, run_suite

pytestmark = [pytest.mark.e2e, pytest.mark.interop]


@needs_binary
def test_conformance_over_tls_with_token_auth(fastreg_factory: Any, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    pki.generate(certs, ["127.0.0.1"])
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("oci:" + bcrypt.hashpw(b"conformance-pw", bcrypt.gensalt(10)).decode() + "\n")
    srv = fastreg_factory({
        "http": {"tls": {"certificate": str(certs / "server.pem"), "key": str(certs / "server.key")}},
        "auth": {"token": {"service": "fastreg", "issuer": "fastreg-token-service",
                           "rootcertbundle": str(certs / "token.pem")}},
        "fastreg": {"auth": {
            "tokenservice": {"key": str(certs / "token.key"), "certificate": str(certs / "token.pem"),
                             "htpasswd": str(htpasswd)},
            "access": {"catalog": ["oci"], "rules": [{"repository": "**", "pull": ["oci"], "push": ["oci"],
                                                      "delete": ["oci"]}]}}},
    }, workers=2)
    assert srv.url.startswith("https://")
    r = httpx.get(srv.url + "/v2/", verify=ssl.create_default_context(cafile=str(certs / "ca.pem")))
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith(f'Bearer realm="{srv.url}/token"')
    rep = run_suite(srv.url, tmp_path / "report", {
        **WORKFLOWS, "OCI_AUTOMATIC_CROSSMOUNT": "0", "OCI_USERNAME": "oci", "OCI_PASSWORD": "conformance-pw",
        "OCI_DEBUG": "1", "SSL_CERT_FILE": str(certs / "ca.pem")})
    check(rep, "no-automatic-mount", minimum_passed=75)
    # a mount naming its source: the challenge names pull on the source too, so the suite's token
    # covers it and the blob is mounted (201), then found in the target repository
    assert "Push Cross-Repository Blob Mount GET request to test digest within cross-mount namespace " \
           "should return 200" in rep.passed
