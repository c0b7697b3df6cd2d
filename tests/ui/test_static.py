"""The web page's files over HTTP: content types, caching, CSP, no path escapes, the switch."""
from __future__ import annotations

import re
import socket
from typing import Any

import httpx
import pytest

from fastreg.api.ui import STATIC_DIR, Site
from tests.support.server import FastregServer

pytestmark = [pytest.mark.e2e]


def raw_get(srv: FastregServer, target: str) -> tuple[int, bytes]:
    """GET with the request target exactly as written (no client-side dot-segment removal)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {srv.host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("path, ctype", [
    ("/ui/", "text/html; charset=utf-8"),
    ("/ui/index.html", "text/html; charset=utf-8"),
    ("/ui/app.js", "text/javascript; charset=utf-8"),
    ("/ui/style.css", "text/css; charset=utf-8"),
    ("/ui/favicon.svg", "image/svg+xml"),
])
def test_files_types_and_headers(client: httpx.Client, path: str, ctype: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"] == ctype
    name = path.removeprefix("/ui/") or "index.html"
    assert r.content == (STATIC_DIR / name).read_bytes()
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-cache"
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "unsafe" not in csp and "frame-ancestors 'none'" in csp
    etag = r.headers["etag"]
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    head = client.head(path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(r.content))


def test_index_has_no_inline_code() -> None:
    """The CSP forbids inline scripts and styles: the page must not need any."""
    html = (STATIC_DIR / "index.html").read_text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    assert "<style" not in html and " style=" not in html and not re.search(r"\son\w+=", html)
    js = (STATIC_DIR / "app.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js
    assert "eval(" not in js and "new Function" not in js


def test_redirect_and_errors(client: httpx.Client, registry: FastregServer) -> None:
    r = client.get("/ui")
    assert r.status_code == 308 and r.headers["location"] == "/ui/"
    for path in ("/ui/missing.js", "/ui/sub/app.js", "/ui/.hidden", "/ui/..", "/ui/%2e%2e",
                 "/ui/..%2fconfig.yml", "/ui/../", "/ui/../v2/", "/ui/./app.js", "/uix/"):
        status, body = raw_get(registry, path)
        assert status == 404, (path, status, body[:200])
        assert b"<" not in body            # the JSON error envelope, no page content
    assert client.post("/ui/").status_code == 405
    assert client.delete("/ui/app.js").status_code == 405


def test_disabled_in_config(fastreg_factory: Any) -> None:
    srv = fastreg_factory({"fastreg": {"ui": {"enabled": False}}})
    with httpx.Client(base_url=srv.url) as c:
        for path in ("/ui", "/ui/", "/ui/app.js"):
            assert c.get(path).status_code == 404, path
        assert c.get("/v2/").status_code == 200


def test_public_under_auth_and_realm_in_csp(fastreg_factory: Any, tmp_path: Any) -> None:
    """The files hold no data: served without credentials while the API asks for them.  An
    external token realm is the one other origin the page may call."""
    from fastreg.auth.htpasswd import add_user
    users = tmp_path / "htpasswd"
    add_user(users, "alice", "pw", cost=5)
    srv = fastreg_factory({"auth": {"htpasswd": {"realm": "r", "path": str(users)}}})
    with httpx.Client(base_url=srv.url) as c:
        assert c.get("/v2/_catalog").status_code == 401
        r = c.get("/ui/")
        assert r.status_code == 200 and "www-authenticate" not in r.headers

    class Cfg:
        class fastreg:
            class ui:
                enabled = True

        class auth:
            class token:
                realm = "https://auth.example.com:8443/token?x=1"
    site = Site.from_config(Cfg)
    assert site is not None and "connect-src 'self' https://auth.example.com:8443;" in site.csp


def test_package_ships_the_page(tmp_path: Any) -> None:
    """The files are package data: a build of the package carries every one of them."""
    import subprocess
    import sys

    from tests.support.server import REPO_ROOT
    egg = tmp_path / "egg"          # keep the checkout's own egg-info untouched
    egg.mkdir()
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(egg),
                    "build_py", "--build-lib", str(tmp_path)],
                   cwd=REPO_ROOT, check=True, capture_output=True, timeout=120)
    shipped = sorted(p.name for p in (tmp_path / "fastreg" / "webui").iterdir())
    assert shipped == sorted(Site().assets) == ["app.js", "favicon.svg", "index.html", "style.css"]
    assert not (tmp_path / "fastreg" / "_digest.c").exists()
