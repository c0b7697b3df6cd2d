"""Access policies, scope parsing, required actions, and rate limits (unit and end to end)."""
from __future__ import annotations

from typing import Any

import httpx
import msgspec
import pytest

from fastreg.auth.access import CATALOG, Policy, Scope, required
from fastreg.auth.ratelimit import TokenBucket
from fastreg.config import AccessPolicy
from tests.e2e.helpers import assert_error

from .test_basic_e2e import POLICY


def policy(raw: dict[str, Any] = POLICY) -> Policy:
    return Policy.from_config(msgspec.convert(raw, AccessPolicy))


def test_required_actions() -> None:
    assert required("base", "GET", None) == ()
    assert required("catalog", "GET", None) == (CATALOG,)
    assert required("manifest", "GET", "a/b") == (Scope("repository", "a/b", ("pull",)),)
    assert required("blob", "HEAD", "a/b") == (Scope("repository", "a/b", ("pull",)),)
    for m in ("POST", "PUT", "PATCH"):
        assert required("upload", m, "a/b") == (Scope("repository", "a/b", ("pull", "push")),)
    assert required("manifest", "DELETE", "a/b") == (Scope("repository", "a/b", ("delete",)),)


def test_scope_parse() -> None:
    assert Scope.parse("repository:a/b:pull,push") == Scope("repository", "a/b", ("pull", "push"))
    assert Scope.parse("repository:localhost:5000/a:pull") == Scope("repository", "localhost:5000/a", ("pull",))
    assert Scope.parse("repository(plugin):a:pull") == Scope("repository", "a", ("pull",))
    assert Scope.parse("registry:catalog:*") == CATALOG
    assert Scope.parse("nonsense") is None and Scope.parse("repository::pull") is None
    assert str(Scope("repository", "a", ("pull", "push"))) == "repository:a:pull,push"


def test_globs_and_principals() -> None:
    p = policy()
    alice, bob, carol, anon = (p.identity(u) for u in ("alice", "bob", "carol", None))
    rp = Scope("repository", "public/a/b/c", ("pull", "push", "delete"))
    assert p.granted(anon, rp) == ("pull",)                  # ** crosses components
    assert p.granted(alice, rp) == ("pull", "push")          # @admins
    team = Scope("repository", "team/app", ("pull", "push", "delete"))
    assert p.granted(carol, team) == ("pull",)               # authenticated
    assert p.granted(bob, team) == ("pull", "push")
    assert p.granted(alice, team) == ("pull", "push", "delete")
    assert p.granted(anon, team) == ()
    deep = Scope("repository", "team/app/sub", ("pull",))
    assert p.granted(alice, deep) == ()                      # * stays within one component
    assert p.granted(alice, Scope("repository", "team/app", ("*",))) == ("pull", "push", "delete")
    assert p.granted(alice, CATALOG) == ("*",) and p.granted(bob, CATALOG) == ()
    put = required("upload", "PUT", "team/x")
    assert p.allows(bob, put) and not p.allows(carol, put)


def test_default_policy_is_any_authenticated_user() -> None:
    p = Policy.allow_authenticated()
    s = Scope("repository", "x/y/z", ("pull", "push", "delete"))
    assert p.granted(p.identity("u"), s) == ("pull", "push", "delete")
    assert p.granted(p.identity(None), s) == ()


def test_token_bucket() -> None:
    b = TokenBucket(rate=2.0, burst=3)
    assert [b.take("k", now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = b.take("k", now=100.0)
    assert wait == pytest.approx(0.5)                 # one token every 0.5 s
    assert b.take("other", now=100.0) == 0.0          # buckets are per key
    assert b.take("k", now=100.6) == 0.0              # refilled
    assert b.take("k", now=100.6) > 0


def test_rate_limit_e2e(fastreg_factory: Any) -> None:
    """Per client address: a burst of 5 at 0.01/s, then 429 with Retry-After.  (The fixture's
    readiness probe spent one or two of the 5.)"""
    srv = fastreg_factory({"fastreg": {"auth": {"ratelimit": {"client": {"rate": 0.01, "burst": 5}}}}})
    with httpx.Client(base_url=srv.url) as c:
        answers = [c.get("/v2/") for _ in range(8)]
    statuses = [r.status_code for r in answers]
    ok = statuses.count(200)
    assert 3 <= ok <= 4 and statuses == [200] * ok + [429] * (8 - ok), statuses
    assert_error(answers[-1], 429, "TOOMANYREQUESTS")
    assert int(answers[-1].headers["retry-after"]) >= 60      # one token per 100 s


def test_rate_limit_per_user(fastreg_factory: Any, tmp_path: Any) -> None:
    from fastreg.auth.htpasswd import add_user
    f = tmp_path / "users"
    add_user(f, "u1", "p", cost=4)
    add_user(f, "u2", "p", cost=4)
    srv = fastreg_factory({"auth": {"htpasswd": {"realm": "r", "path": str(f)}},
                           "fastreg": {"auth": {"ratelimit": {"user": {"rate": 0.01, "burst": 2}}}}})
    with httpx.Client(base_url=srv.url, auth=("u1", "p")) as u1, httpx.Client(base_url=srv.url, auth=("u2", "p")) as u2:
        assert [u1.get("/v2/").status_code for _ in range(2)] == [200, 200]
        r = u1.get("/v2/")
        assert_error(r, 429, "TOOMANYREQUESTS")
        assert "retry-after" in r.headers
        assert u2.get("/v2/").status_code == 200       # another user has its own bucket


def test_token_endpoint_is_rate_limited(fastreg_factory: Any, test_pki: Any, tmp_path: Any) -> None:
    from fastreg.auth.htpasswd import add_user
    f = tmp_path / "users"
    add_user(f, "u", "p", cost=4)
    srv = fastreg_factory({
        "auth": {"token": {"service": "s", "issuer": "i", "rootcertbundle": str(test_pki.ca_pem)}},
        "fastreg": {"auth": {"tokenservice": {"key": str(test_pki.token_key), "certificate": str(test_pki.token_pem),
                                              "htpasswd": str(f)},
                             "ratelimit": {"client": {"rate": 0.01, "burst": 6}}}}})
    with httpx.Client(base_url=srv.url) as c:
        statuses = [c.get("/token", auth=("u", "guess")).status_code for _ in range(8)]
    assert 401 in statuses and statuses[-1] == 429, statuses


def test_silly_auth(fastreg_factory: Any) -> None:
    srv = fastreg_factory({"auth": {"silly": {"realm": "https://auth.example/token", "service": "svc"}}})
    r = httpx.get(srv.url + "/v2/")
    assert_error(r, 401, "UNAUTHORIZED")
    assert r.headers["www-authenticate"] == 'Bearer realm="https://auth.example/token",service="svc"'
    assert httpx.get(srv.url + "/v2/", headers={"Authorization": "Bearer anything"}).status_code == 200


@pytest.mark.parametrize("extra, message", [
    ({"auth": {"htpasswd": {"realm": "r", "path": "/nonexistent/htpasswd"}}}, "fastreg htpasswd add"),
    ({"auth": {"token": {"realm": "https://x/token", "service": "s", "issuer": "i"}}}, "rootcertbundle or jwks"),
    ({"auth": {"token": {"realm": "https://x/token", "service": "s", "issuer": "i", "rootcertbundle": "/x.pem"}}},
     "auth.token.rootcertbundle: [Errno 2]"),
    ({"auth": {"token": {"service": "s", "issuer": "i", "rootcertbundle": "/x.pem"}}}, "auth.token.realm"),
    ({"fastreg": {"auth": {"access": {"rules": [{"repository": "x", "pull": ["anonymous"]}]}}}}, "needs an auth type"),
    ({"fastreg": {"auth": {"tokenservice": {"issuer": "i", "service": "s"}}}}, "key and certificate"),
    ({"fastreg": {"auth": {"tokenservice": {"issuer": "i", "service": "s", "key": "/k", "certificate": "/c"}}}},
     "fastreg gencerts"),
])
def test_startup_errors_name_the_problem(tmp_path: Any, extra: dict[str, Any], message: str) -> None:
    import subprocess
    import sys

    import yaml

    from tests.conftest import _pythonpath
    cfg = {"storage": {"inmemory": {}}, "http": {"addr": "127.0.0.1:1"}, **extra}
    (tmp_path / "c.yml").write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "fastreg", "serve", "--config", str(tmp_path / "c.yml")],
                       capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
                       env={**__import__("os").environ, "PYTHONPATH": _pythonpath()})
    assert r.returncode == 2 and "configuration error" in r.stderr and message in r.stderr, r.stderr


def test_no_auth_means_no_hook(tmp_path: Any) -> None:
    """With auth off nothing extra runs per request: Context.access stays None."""
    from fastreg.app import App
    from fastreg.config import load_config
    (tmp_path / "c.yml").write_text(f"storage: {{filesystem: {{rootdirectory: {tmp_path}/d}}}}\nauth: {{none: {{}}}}\n")
    app = App(load_config(tmp_path / "c.yml", env={}))
    ctx = app.open()
    assert ctx.access is None and app.token_path is None
    import asyncio
    asyncio.run(app.close())
