"""Bearer tokens whose JOSE header is well-formed JSON of the wrong shapes (an ``alg`` that is a
list or an object, a ``kid`` or ``x5c`` of the wrong type): the registry answers 401
``invalid_token`` with its Bearer challenge, the token service's refresh grant 401
``invalid_grant`` with its own challenge — never a 500 — and nothing stored changes."""
from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fastreg.auth import pki
from tests.conftest import FastregServer, make_fastreg

from .support import snapshot, wait_unchanged

MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}'


def b64(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


CLAIMS = {"iss": "fastreg-token-service", "aud": "fastreg", "exp": 4102444800, "sub": "alice",
          "access": [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]}
HEADERS = {
    "alg list": {"alg": ["ES256"], "typ": "JWT"},
    "alg object": {"alg": {"ES256": True}},
    "alg number": {"alg": 256},
    "alg null": {"alg": None},
    "kid list": {"alg": "ES256", "kid": ["x"]},
    "x5c object": {"alg": "ES256", "x5c": {"0": "MIIB"}},
    "x5c numbers": {"alg": "ES256", "x5c": [1, 2]},
}


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastregServer]:
    tmp = tmp_path_factory.mktemp("token-headers")
    certs = tmp / "certs"
    pki.generate(certs, ["127.0.0.1"])
    srv = make_fastreg(tmp, {
        "auth": {"token": {"service": "fastreg", "issuer": "fastreg-token-service",
                           "rootcertbundle": str(certs / "token.pem")}},
        "fastreg": {"auth": {"tokenservice": {"key": str(certs / "token.key"),
                                              "certificate": str(certs / "token.pem"), "anonymous": True}}}})
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("case", sorted(HEADERS))
def test_a_header_of_the_wrong_shape_is_an_invalid_token(token_server: FastregServer, case: str) -> None:
    token = f"{b64(HEADERS[case])}.{b64(CLAIMS)}.c2lnbmF0dXJl"
    before = snapshot(token_server.root)
    logged = len(token_server.log())
    with httpx.Client(base_url=token_server.url, timeout=30) as c:
        auth = {"Authorization": f"Bearer {token}"}
        for method, path, body in [("GET", "/v2/team/app/tags/list", b""),
                                   ("PUT", "/v2/team/app/manifests/v1", MANIFEST),
                                   ("POST", "/v2/team/app/blobs/uploads/", b"")]:
            r = c.request(method, path, headers={**auth, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                          content=body)
            assert r.status_code == 401, (method, r.status_code, r.text)
            assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
            challenge = r.headers["www-authenticate"]
            assert challenge.startswith("Bearer realm=") and 'error="invalid_token"' in challenge, challenge
        r = c.post("/token", data={"grant_type": "refresh_token", "refresh_token": token, "service": "fastreg"})
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "invalid_grant"
        assert r.headers["www-authenticate"].startswith("Basic realm=")
    wait_unchanged(token_server.root, before)
    new_lines = token_server.log()[logged:]
    assert "Traceback" not in new_lines and "unhandled error" not in new_lines, new_lines[-2000:]
