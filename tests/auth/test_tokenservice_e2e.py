"""Token auth end to end: fastreg's built-in token service and auth.token on one HTTPS listener
(certificates from a private CA), driven by httpx, skopeo and podman; and Debian's Distribution
configured with the same root certificate accepting the service's tokens."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from fastreg.auth.htpasswd import add_user, remove_user
from tests.e2e.helpers import assert_error, digest_of, make_manifest, push_manifest
from tests.interop.conftest import make_distribution, run, skopeo_cmd
from tests.interop.images import ImageLayout

from .conftest import PKI
from .test_basic_e2e import PASSWORDS, POLICY

pytestmark = [pytest.mark.e2e]

SERVICE, ISSUER = "fastreg-test", "fastreg-test-issuer"


@pytest.fixture
def users(tmp_path: Path) -> Path:
    f = tmp_path / "htpasswd"
    for user, pw in PASSWORDS.items():
        add_user(f, user, pw, cost=5)
    return f


def token_config(p: PKI, users: Path, tls: bool = True, realm: str = "") -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "auth": {"token": {"realm": realm, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(p.ca_pem)}},
        "fastreg": {"auth": {"access": POLICY,
                             "tokenservice": {"key": str(p.token_key), "certificate": str(p.token_pem),
                                              "htpasswd": str(users)}}},
    }
    if tls:
        cfg["http"] = {"tls": {"certificate": str(p.server_pem), "key": str(p.server_key)}}
    return cfg


@pytest.fixture
def server(fastreg_factory: Any, test_pki: PKI, users: Path) -> Any:
    return fastreg_factory(token_config(test_pki, users))


def http(p: PKI) -> httpx.Client:
    return httpx.Client(verify=p.ssl_context(), timeout=30.0)


def get_token(c: httpx.Client, srv: Any, *scopes: str, user: str | None = None, password: str | None = None,
              **params: str) -> httpx.Response:
    auth = (user, password if password is not None else PASSWORDS[user]) if user else None
    return c.get(srv.url + "/token", params=[("service", SERVICE), *(("scope", s) for s in scopes),
                                             *params.items()], auth=auth)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def granted(token: str) -> dict[str, list[str]]:
    return {a["name"]: a["actions"] for a in jwt.decode(token, options={"verify_signature": False})["access"]}


def test_autoredirect_realm_follows_the_request_host(fastreg_factory: Any, test_pki: PKI, users: Path) -> None:
    """auth.token.autoredirect (Distribution 3): the challenge's realm is the host the client
    used (X-Forwarded-Proto for the scheme behind a proxy) plus autoredirectpath."""
    cfg = token_config(test_pki, users, tls=False, realm="https://auth.example.com/token")
    cfg["auth"]["token"].update(autoredirect=True, autoredirectpath="/token")
    srv = fastreg_factory(cfg)
    with httpx.Client(timeout=30.0) as c:
        r = c.get(srv.url + "/v2/")
        assert r.headers["www-authenticate"] == f'Bearer realm="http://{srv.host}/token",service="{SERVICE}"'
        r = c.get(srv.url + "/v2/", headers={"Host": "registry.example.org", "X-Forwarded-Proto": "https"})
        assert r.headers["www-authenticate"].startswith('Bearer realm="https://registry.example.org/token"')
        # and the realm really is the token service: a token from there is accepted
        tok = get_token(c, srv, "repository:team/app:pull", user="alice").json()["token"]
        assert c.get(srv.url + "/v2/", headers=bearer(tok)).status_code == 200


def test_challenge_names_the_built_in_realm(server: Any, test_pki: PKI) -> None:
    with http(test_pki) as c:
        r = c.get(server.url + "/v2/")
        assert_error(r, 401, "UNAUTHORIZED")
        assert r.headers["www-authenticate"] == (f'Bearer realm="https://{server.host}/token",'
                                                 f'service="{SERVICE}"')
        r = c.get(server.url + "/v2/team/app/manifests/v1")
        assert r.headers["www-authenticate"].endswith(',scope="repository:team/app:pull"')
        r = c.delete(server.url + "/v2/team/app/manifests/v1")
        assert r.headers["www-authenticate"].endswith(',scope="repository:team/app:delete"')
        r = c.get(server.url + "/v2/_catalog")
        assert r.headers["www-authenticate"].endswith(',scope="registry:catalog:*"')
        r = c.get(server.url + "/v2/", headers=bearer("not.a.token"))
        assert r.headers["www-authenticate"].endswith(',error="invalid_token"')


def test_grants_are_the_intersection_of_request_and_policy(server: Any, test_pki: PKI) -> None:
    with http(test_pki) as c:
        r = get_token(c, server, "repository:team/app:pull,push,delete", "repository:private/x:pull",
                      "repository:public/y:pull,push", "registry:catalog:*", user="bob")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token"] == body["access_token"] and body["expires_in"] == 300 and body["issued_at"]
        assert granted(body["token"]) == {"team/app": ["pull", "push"], "public/y": ["pull"]}
        t = get_token(c, server, "repository:team/app:pull,push,delete", "registry:catalog:*", user="alice")
        assert granted(t.json()["token"]) == {"team/app": ["pull", "push", "delete"], "catalog": ["*"]}
        anon = get_token(c, server, "repository:public/y:pull,push", "repository:team/app:pull")
        assert granted(anon.json()["token"]) == {"public/y": ["pull"]}
        assert jwt.decode(anon.json()["token"], options={"verify_signature": False})["sub"] == ""
        assert get_token(c, server, "repository:team/app:pull", user="bob", password="wrong").status_code == 401
        assert get_token(c, server, "repository:team/app:pull", user="nobody", password="x").status_code == 401
        assert c.get(server.url + "/token", params={"service": "other"}).status_code == 400


def test_tokens_enforced(server: Any, test_pki: PKI) -> None:
    m = make_manifest()
    with http(test_pki) as c:
        alice = get_token(c, server, "repository:team/app:pull,push,delete", user="alice").json()["token"]
        with httpx.Client(base_url=server.url, verify=test_pki.ssl_context(), headers=bearer(alice)) as a:
            push_manifest(a, "team/app", m, "v1")
        bob_pull = get_token(c, server, "repository:team/app:pull", user="bob").json()["token"]
        r = c.get(server.url + "/v2/team/app/manifests/v1", headers=bearer(bob_pull))
        assert r.status_code == 200 and r.content == m.body
        # a pull token used to push
        r = c.post(server.url + "/v2/team/app/blobs/uploads/", headers=bearer(bob_pull))
        assert_error(r, 401, "UNAUTHORIZED")
        assert r.headers["www-authenticate"].endswith(
            ',scope="repository:team/app:pull,push",error="insufficient_scope"')
        # a token for team/app used on team/other
        r = c.get(server.url + "/v2/team/other/tags/list", headers=bearer(bob_pull))
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
        # delete without delete
        bob_all = get_token(c, server, "repository:team/app:pull,push,delete", user="bob").json()["token"]
        r = c.delete(server.url + f"/v2/team/app/manifests/{m.digest}", headers=bearer(bob_all))
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
        # the same 401 whether the private repository exists or not
        anon = get_token(c, server, "repository:private/a:pull").json()["token"]
        a = c.get(server.url + "/v2/team/app/manifests/v1", headers=bearer(anon))
        b = c.get(server.url + "/v2/team/nothing/manifests/v1", headers=bearer(anon))
        assert (a.status_code, a.content) == (b.status_code, b.content)
        r = c.delete(server.url + f"/v2/team/app/manifests/{m.digest}", headers=bearer(alice))
        assert r.status_code == 202


def test_mount_from_an_unreadable_repository(server: Any, test_pki: PKI) -> None:
    blob = b"private layer" * 50
    d = digest_of(blob)
    with http(test_pki) as c:
        alice = get_token(c, server, "repository:private/src:pull,push", user="alice").json()["token"]
        loc = c.post(server.url + "/v2/private/src/blobs/uploads/", headers=bearer(alice)).headers["location"]
        put = httpx.URL(loc).copy_merge_params({"digest": d})       # (params= would drop the URL's _state)
        assert c.put(put, content=blob, headers=bearer(alice)).status_code == 201
        # bob asks for pull on private/src too; the policy does not grant it
        bob = get_token(c, server, "repository:team/app:pull,push", "repository:private/src:pull",
                        user="bob").json()["token"]
        r = c.post(server.url + "/v2/team/app/blobs/uploads/", params={"mount": d, "from": "private/src"},
                   headers=bearer(bob))
        assert r.status_code == 202
        assert c.head(server.url + f"/v2/team/app/blobs/{d}", headers=bearer(bob)).status_code == 404


def test_oauth2_post_and_refresh_tokens(server: Any, test_pki: PKI, users: Path) -> None:
    with http(test_pki) as c:
        form = {"grant_type": "password", "username": "bob", "password": "bob-pw", "service": SERVICE,
                "client_id": "test", "access_type": "offline", "scope": "repository:team/app:pull,push"}
        r = c.post(server.url + "/token", data=form)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["scope"] == "repository:team/app:pull,push" and granted(body["access_token"])
        refresh = body["refresh_token"]
        # the refresh token is no access token
        r2 = c.get(server.url + "/v2/", headers=bearer(refresh))
        assert 'error="invalid_token"' in r2.headers["www-authenticate"]
        r = c.post(server.url + "/token", data={"grant_type": "refresh_token", "refresh_token": refresh,
                                                "service": SERVICE, "client_id": "test",
                                                "scope": "repository:team/app:pull"})
        assert r.status_code == 200 and granted(r.json()["access_token"]) == {"team/app": ["pull"]}
        bad = c.post(server.url + "/token", data={**form, "password": "wrong"})
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_grant"
        remove_user(users, "bob")
        r = c.post(server.url + "/token", data={"grant_type": "refresh_token", "refresh_token": refresh,
                                                "service": SERVICE, "client_id": "test"})
        assert r.status_code == 401
        assert get_token(c, server, user="bob").status_code == 401


def test_skopeo_through_the_token_service(server: Any, test_pki: PKI, small_image: ImageLayout) -> None:
    certs = str(test_pki.certs_dir)
    dest = f"docker://{server.host}/team/skopeo:v1"
    run(skopeo_cmd("copy", "--all", "--dest-cert-dir", certs, "--dest-creds", "bob:bob-pw",
                   small_image.ref, dest), server=server)
    out = run(skopeo_cmd("inspect", "--raw", "--cert-dir", certs, "--creds", "carol:carol-pw", dest), server=server)
    assert digest_of(out.stdout.encode()) == small_image.index_digest
    denied = run(skopeo_cmd("copy", "--all", "--dest-cert-dir", certs, "--dest-creds", "carol:carol-pw",
                            small_image.ref, f"docker://{server.host}/team/carol:v1"), check=False)
    assert denied.returncode != 0
    assert "unauthorized" in denied.stderr.lower() or "denied" in denied.stderr.lower(), denied.stderr
    # anonymous pulls of public/** (copy there as alice first)
    run(skopeo_cmd("copy", "--all", "--src-cert-dir", certs, "--src-creds", "bob:bob-pw", "--dest-cert-dir", certs,
                   "--dest-creds", "alice:alice-pw", dest, f"docker://{server.host}/public/img:v1"), server=server)
    out = run(skopeo_cmd("inspect", "--raw", "--cert-dir", certs, f"docker://{server.host}/public/img:v1"),
              server=server)
    assert digest_of(out.stdout.encode()) == small_image.index_digest


def test_podman_login_pull_and_denied_push(server: Any, test_pki: PKI, podman_root: list[str], tmp_path: Path,
                                           small_image: ImageLayout) -> None:
    certs = str(test_pki.certs_dir)
    run(skopeo_cmd("copy", "--all", "--dest-cert-dir", certs, "--dest-creds", "alice:alice-pw",
                   small_image.ref, f"docker://{server.host}/team/podman:v1"), server=server)
    authfile = tmp_path / "auth.json"
    bad = run([*podman_root, "login", "--cert-dir", certs, "--authfile", str(authfile), "-u", "carol",
               "-p", "wrong", server.host], check=False)
    assert bad.returncode != 0
    run([*podman_root, "login", "--cert-dir", certs, "--authfile", str(authfile), "-u", "carol", "-p", "carol-pw",
         server.host], server=server)
    assert base64.b64encode(b"carol:carol-pw").decode() in authfile.read_text()
    ref = f"{server.host}/team/podman:v1"
    run([*podman_root, "pull", "--cert-dir", certs, "--authfile", str(authfile), ref], server=server)
    denied = run([*podman_root, "push", "--cert-dir", certs, "--authfile", str(authfile), ref,
                  f"{server.host}/team/carol-push:v1"], check=False)
    assert denied.returncode != 0


def test_distribution_accepts_the_tokens(fastreg_factory: Any, test_pki: PKI, users: Path, tmp_path: Path,
                                         small_image: ImageLayout) -> None:
    """Debian's docker-registry (Distribution 2.8) with auth.token pointing at fastreg's token
    service and the same root certificate: the tokens follow the spec."""
    ts = fastreg_factory(token_config(test_pki, users, tls=False))
    dist = make_distribution(tmp_path / "dist", extra={"auth": {"token": {
        "realm": f"{ts.url}/token", "service": SERVICE, "issuer": ISSUER,
        "rootcertbundle": str(test_pki.ca_pem)}}})
    dist.start()
    try:
        with httpx.Client(timeout=30.0) as c:
            r = c.get(dist.url + "/v2/")
            assert r.status_code == 401 and f'realm="{ts.url}/token"' in r.headers["www-authenticate"]
            alice = get_token(c, ts, "repository:team/dist:pull,push", user="alice").json()["token"]
            with httpx.Client(base_url=dist.url, headers=bearer(alice), timeout=30.0) as a:
                m = make_manifest()
                push_manifest(a, "team/dist", m, "v1")
            carol = get_token(c, ts, "repository:team/dist:pull,push", user="carol").json()["token"]
            assert granted(carol) == {"team/dist": ["pull"]}
            # (Distribution 2.8 answers 404 for an OCI manifest the client does not Accept)
            r = c.get(dist.url + "/v2/team/dist/manifests/v1", headers={**bearer(carol), "Accept": m.media_type})
            assert r.status_code == 200 and r.content == m.body
            assert c.post(dist.url + "/v2/team/dist/blobs/uploads/", headers=bearer(carol)).status_code == 401
            # Distribution refuses a token from a key outside its root bundle (it really verifies)
            from fastreg.auth import pki
            from fastreg.auth.access import Scope
            from fastreg.auth.token import TokenSigner
            rogue = pki.make_ca("rogue")
            rogue.write(tmp_path / "rogue.pem", tmp_path / "rogue.key")
            forged, _ = TokenSigner(tmp_path / "rogue.key", tmp_path / "rogue.pem", ISSUER).sign(
                "alice", SERVICE, [Scope("repository", "team/dist", ("pull",))], 300)
            r = c.get(dist.url + "/v2/team/dist/manifests/v1", headers={**bearer(forged), "Accept": m.media_type})
            assert r.status_code == 401
        # and a real client logs in to Distribution through fastreg's token service
        run(skopeo_cmd("copy", "--all", "--dest-tls-verify=false", "--dest-creds", "bob:bob-pw",
                       small_image.ref, f"docker://{dist.host}/team/skopeo:v1"), server=dist)
        out = run(skopeo_cmd("inspect", "--raw", "--tls-verify=false", "--creds", "carol:carol-pw",
                             f"docker://{dist.host}/team/skopeo:v1"), server=dist)
        assert json.loads(out.stdout)["manifests"]
    finally:
        dist.stop()


@pytest.mark.parametrize("name", ["../etc", "Team/App", "team//app", "team/app/", "-team/app", "a" * 256,
                                  "team/app?x", "team/app:v1"])
def test_scopes_for_invalid_repository_names_are_refused(server: Any, test_pki: PKI, name: str) -> None:
    """Nothing is signed for a repository that cannot exist: GET answers 400 NAME_INVALID, the
    OAuth2 form 400 invalid_scope — even when the other scopes asked for are fine."""
    with http(test_pki) as c:
        for user in ("alice", None):
            r = get_token(c, server, "repository:team/app:pull", f"repository:{name}:pull,push", user=user)
            assert_error(r, 400, "NAME_INVALID")
            assert "token" not in r.text
        form = {"grant_type": "password", "username": "alice", "password": PASSWORDS["alice"], "service": SERVICE,
                "client_id": "test", "scope": f"repository:team/app:pull repository:{name}:pull"}
        r = c.post(server.url + "/token", data=form)
        assert r.status_code == 400 and r.json()["error"] == "invalid_scope" and "access_token" not in r.json()
        # the same request with valid names only is granted
        ok = get_token(c, server, "repository:team/app:pull", "registry:catalog:*", user="alice")
        assert ok.status_code == 200 and granted(ok.json()["token"])["team/app"] == ["pull"]


def test_token_service_401s_carry_a_challenge(server: Any, test_pki: PKI) -> None:
    """Malformed Basic credentials and a wrong OAuth2 password are 401s with WWW-Authenticate."""
    challenge = f'Basic realm="{SERVICE} token service"'
    with http(test_pki) as c:
        for value in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
            r = c.get(server.url + "/token", params={"service": SERVICE}, headers={"Authorization": value})
            assert r.status_code == 401 and r.headers.get("www-authenticate") == challenge, r.headers
        r = c.post(server.url + "/token", data={"grant_type": "password", "username": "bob", "password": "no",
                                                "service": SERVICE, "client_id": "t"})
        assert r.status_code == 401 and r.headers.get("www-authenticate") == challenge, r.headers


def test_gencerts_layout_with_distribution(fastreg_factory: Any, users: Path, tmp_path: Path) -> None:
    """`fastreg gencerts`' layout — rootcertbundle: token.pem, a self-signed signer apart from the
    TLS CA — works for fastreg and for Debian's Distribution alike, and in both the TLS key
    signs nothing they accept."""
    from fastreg.auth import pki
    from fastreg.auth.access import Scope
    from fastreg.auth.token import TokenSigner
    d = tmp_path / "certs"
    pki.generate(d, ["127.0.0.1"])
    ts = fastreg_factory({
        "auth": {"token": {"service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(d / "token.pem")}},
        "fastreg": {"auth": {"access": POLICY, "tokenservice": {"key": str(d / "token.key"),
                                                                "certificate": str(d / "token.pem"),
                                                                "htpasswd": str(users)}}}})
    dist = make_distribution(tmp_path / "dist", extra={"auth": {"token": {
        "realm": f"{ts.url}/token", "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(d / "token.pem")}}})
    dist.start()
    try:
        with httpx.Client(timeout=30.0) as c:
            alice = get_token(c, ts, "repository:team/gen:pull,push", user="alice").json()["token"]
            forged, _ = TokenSigner(d / "server.key", d / "server.pem", ISSUER).sign(
                "alice", SERVICE, [Scope("repository", "team/gen", ("pull", "push"))], 300)
            for reg in (ts, dist):
                with httpx.Client(base_url=reg.url, headers=bearer(alice), timeout=30.0) as a:
                    push_manifest(a, "team/gen", make_manifest(), "v1")
                r = c.post(reg.url + "/v2/team/gen/blobs/uploads/", headers=bearer(forged))
                assert r.status_code == 401, (reg.url, r.status_code)
    finally:
        dist.stop()
