"""fastreg.auth.tokenservice.path: a path the registry's own routes answer (the web page's
/ui/...), or one clients would have to encode, could never reach the token service; serve refuses
it with one line and exit 2.  A plain path works: the challenge names it and it answers."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from fastreg.auth import pki
from tests.conftest import make_fastreg
from tests.hostile.support import serve_refused


def token_config(certs: Path, path: str) -> dict[str, Any]:
    return {"auth": {"token": {"service": "fastreg", "issuer": "fastreg-token-service",
                               "rootcertbundle": str(certs / "token.pem")}},
            "fastreg": {"auth": {"tokenservice": {"path": path, "key": str(certs / "token.key"),
                                                  "certificate": str(certs / "token.pem"), "anonymous": True}}}}


@pytest.mark.parametrize("path", ["/ui/token", "/ui", "/ui/", "/tok en", '/tok"en', "/token?x=1", "/v2token"])
def test_a_token_path_that_nothing_could_reach_is_refused(tmp_path: Path, path: str) -> None:
    certs = tmp_path / "certs"
    pki.generate(certs, ["127.0.0.1"])
    srv = make_fastreg(tmp_path, token_config(certs, path))
    p = serve_refused(srv.config_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "fastreg.auth.tokenservice.path" in lines[0], p.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url + "/v2/", timeout=2)


def test_a_plain_token_path_answers(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    pki.generate(certs, ["127.0.0.1"])
    srv = make_fastreg(tmp_path, token_config(certs, "/auth/token"))
    srv.start()
    try:
        r = httpx.get(srv.url + "/v2/", timeout=10)
        assert r.status_code == 401
        assert f'realm="{srv.url}/auth/token"' in r.headers["www-authenticate"]
        t = httpx.get(srv.url + "/auth/token", params={"service": "fastreg"}, timeout=10)
        assert t.status_code == 200 and t.json()["token"], t.text
    finally:
        srv.stop()
