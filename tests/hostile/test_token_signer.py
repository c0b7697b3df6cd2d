"""A hostile token signer: a real token service on 127.0.0.1 (a thread) that holds the registry's
TLS key and mints tokens with it, for a fastreg whose ``rootcertbundle`` is the CA that also
issued its TLS certificate (the layout older ``gencerts`` wrote).  The TLS certificate chains to
the bundle, so Distribution would take its tokens as genuine; fastreg refuses them — a TLS
certificate is not a token signer — while a signing certificate of the same CA keeps working.
The same service also mints tokens whose times are strings and scopes for invalid names.

Clients follow the registry's challenge to the service, as docker/skopeo do: httpx by hand,
then skopeo itself.  Every refusal is 401 invalid_token and nothing stored changes."""
from __future__ import annotations

import base64
import json
import os
import re
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from fastreg.auth import pki
from tests.interop.conftest import run, skopeo_cmd
from tests.interop.images import ImageLayout, build_oci_image

from .support import snapshot, wait_unchanged

ISSUER, SERVICE = "hostile-signer-issuer", "hostile-signer-registry"


@dataclass
class HostileSigner:
    """GET /token?service&scope → {"token"}: signed by `signer`, granting every requested scope
    (and `extra` access), with `claims` overriding the standard ones."""

    signer: pki.Issued
    extra: list[dict[str, Any]] = field(default_factory=list)
    claims: dict[str, Any] = field(default_factory=dict)
    issued: int = 0

    def __post_init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps({"token": owner.token(parse_qs(urlsplit(self.path).query).get("scope", []))})
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/token"

    def token(self, scopes: list[str]) -> str:
        access = []
        for text in (s for v in scopes for s in v.split(" ") if s):
            typ, _, rest = text.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": typ, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": SERVICE, "sub": "mallory", "exp": now + 600, "nbf": now - 5, "iat": now,
                  "jti": os.urandom(8).hex(), "access": access + self.extra, **self.claims}
        der = self.signer.cert.public_bytes(serialization.Encoding.DER)
        self.issued += 1
        return jwt.encode(claims, self.signer.key, algorithm="ES256",
                          headers={"x5c": [base64.b64encode(der).decode()]})

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Setup:
    srv: Any
    service: HostileSigner
    tls: pki.Issued
    signer: pki.Issued
    certs: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    from tests.support.server import make_fastreg
    tmp = tmp_path_factory.mktemp("signer")
    ca = pki.make_ca("shared CA")
    ca.write(tmp / "ca.pem", tmp / "ca.key")
    tls = pki.issue(ca, "registry TLS", hosts=["127.0.0.1"])
    tls.write(tmp / "server.pem", tmp / "server.key")
    signer = pki.issue(ca, "genuine token signer")
    certs = tmp / "certs.d"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(ca.cert_pem())
    service = HostileSigner(tls)
    srv = make_fastreg(tmp, {
        "http": {"tls": {"certificate": str(tmp / "server.pem"), "key": str(tmp / "server.key")}},
        "auth": {"token": {"realm": service.realm, "service": SERVICE, "issuer": ISSUER,
                           "rootcertbundle": str(tmp / "ca.pem")}}})
    srv.start()
    try:
        yield Setup(srv, service, tls, signer, certs)
    finally:
        srv.stop()
        service.stop()


def _trust(s: Setup) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(s.certs / "ca.crt"))


def _dance(c: httpx.Client, base: str, method: str, path: str) -> httpx.Response:
    """What a client does: ask, follow the Bearer challenge to the realm, ask again with the token."""
    r = c.request(method, base + path)
    assert r.status_code == 401
    params = dict(re.findall(r'(\w+)="([^"]*)"', r.headers["www-authenticate"]))
    tok = c.get(params["realm"], params={"service": params["service"], "scope": params.get("scope", "")}).json()
    return c.request(method, base + path, headers={"Authorization": f"Bearer {tok['token']}"})


def _refused(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> ImageLayout:
    return build_oci_image(tmp_path_factory.mktemp("img") / "oci", tag="v1")


def test_tls_key_cannot_mint_tokens(setup: Setup, image: ImageLayout) -> None:
    s = setup
    s.service.signer, s.service.claims = s.tls, {}
    s.service.extra = [{"type": "repository", "name": "victim/app", "actions": ["*", "pull", "push", "delete"]},
                       {"type": "registry", "name": "catalog", "actions": ["*"]}]
    before = snapshot(Path(s.srv.root))
    with httpx.Client(verify=_trust(s), timeout=30.0) as c:
        for method, path in (("GET", "/v2/victim/app/tags/list"), ("POST", "/v2/victim/app/blobs/uploads/"),
                             ("DELETE", "/v2/victim/app/manifests/sha256:" + "0" * 64), ("GET", "/v2/_catalog")):
            _refused(_dance(c, s.srv.url, method, path))
    issued = s.service.issued
    push = run(skopeo_cmd("copy", "--all", "--dest-cert-dir", str(s.certs), image.ref,
                          f"docker://{s.srv.host}/victim/app:v1"), check=False, server=s.srv)
    assert push.returncode != 0 and s.service.issued > issued, push.stderr     # it did fetch a token
    assert "401" in push.stderr or "unauthorized" in push.stderr.lower(), push.stderr
    wait_unchanged(Path(s.srv.root), before)
    # the 401's detail says why
    r = httpx.get(s.srv.url + "/v2/", verify=_trust(s), timeout=30.0,
                  headers={"Authorization": f"Bearer {s.service.token([])}"})
    assert "not a token signer" in r.text and "TLS" in r.text


def test_a_signing_certificate_of_the_same_ca_works(setup: Setup, image: ImageLayout) -> None:
    """Distribution's floor: a CA bundle whose leaf is meant for signing keeps working — the
    refusal above is the TLS certificate's, not the chain's; a real client pushes with it."""
    s = setup
    s.service.signer, s.service.claims, s.service.extra = s.signer, {}, []
    run(skopeo_cmd("copy", "--all", "--dest-cert-dir", str(s.certs), image.ref,
                   f"docker://{s.srv.host}/genuine/app:v1"), server=s.srv)
    out = run(skopeo_cmd("inspect", "--raw", "--cert-dir", str(s.certs), f"docker://{s.srv.host}/genuine/app:v1"),
              server=s.srv)
    assert json.loads(out.stdout)["schemaVersion"] == 2


@pytest.mark.parametrize("claims", [
    {"exp": "99999999999"}, {"nbf": "0"}, {"iat": True}, {"exp": 1e400},
])
def test_times_that_are_not_numbers_are_refused(setup: Setup, claims: dict[str, Any]) -> None:
    s = setup
    s.service.signer, s.service.claims, s.service.extra = s.signer, claims, []
    before = snapshot(Path(s.srv.root))
    with httpx.Client(verify=_trust(s), timeout=30.0) as c:
        _refused(_dance(c, s.srv.url, "POST", "/v2/genuine/other/blobs/uploads/"))
    wait_unchanged(Path(s.srv.root), before)
