"""htpasswd mode end to end: a real fastreg with auth.htpasswd and an access policy, driven with
httpx, skopeo (--creds) and podman (login)."""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastreg.auth.htpasswd import add_user, remove_user
from tests.e2e.helpers import OCTET, assert_error, digest_of, make_manifest, push_manifest
from tests.interop.conftest import run, skopeo_cmd
from tests.interop.images import ImageLayout

pytestmark = [pytest.mark.e2e]

POLICY = {
    "groups": {"admins": ["alice"]},
    "catalog": ["@admins"],
    "rules": [
        {"repository": "public/**", "pull": ["anonymous"], "push": ["@admins"]},
        {"repository": "team/*", "pull": ["authenticated"], "push": ["bob", "@admins"], "delete": ["@admins"]},
        {"repository": "private/**", "pull": ["@admins"], "push": ["@admins"], "delete": ["@admins"]},
    ],
}
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}


@pytest.fixture
def htpasswd_file(tmp_path: Path) -> Path:
    f = tmp_path / "htpasswd"
    for user, pw in PASSWORDS.items():
        add_user(f, user, pw, cost=5)
    return f


@pytest.fixture
def server(fastreg_factory: Any, htpasswd_file: Path) -> Any:
    return fastreg_factory({"auth": {"htpasswd": {"realm": "test-realm", "path": str(htpasswd_file)}},
                            "fastreg": {"auth": {"access": POLICY}}})


def client(srv: Any, user: str | None = None, password: str | None = None) -> httpx.Client:
    auth = (user, password if password is not None else PASSWORDS[user]) if user else None
    return httpx.Client(base_url=srv.url, auth=auth, timeout=30.0)


def test_challenge_and_credentials(server: Any) -> None:
    with client(server) as anon:
        r = anon.get("/v2/")
        # /v2/ asks for credentials even though anonymous may pull public/** (clients send
        # credentials only when the ping asks for them)
        assert_error(r, 401, "UNAUTHORIZED")
        assert r.headers["www-authenticate"] == 'Basic realm="test-realm"'
        r = anon.get("/v2/team/app/tags/list")
        assert_error(r, 401, "UNAUTHORIZED")
        assert r.headers["www-authenticate"] == 'Basic realm="test-realm"'
    with client(server, "alice", "wrong") as c:
        assert_error(c.get("/v2/"), 401, "UNAUTHORIZED")
    with client(server, "mallory", "alice-pw") as c:
        assert_error(c.get("/v2/"), 401, "UNAUTHORIZED")
    with client(server, "alice") as c:
        assert c.get("/v2/").status_code == 200
    r = httpx.get(server.url + "/v2/", headers={"Authorization": "Basic !!notbase64"})
    assert_error(r, 401, "UNAUTHORIZED")


def test_policy_pull_push_delete(server: Any) -> None:
    m = make_manifest()
    with client(server, "alice") as alice:
        push_manifest(alice, "team/app", m, "v1")
        push_manifest(alice, "public/base", m, "v1")
        push_manifest(alice, "private/secret", m, "v1")
        assert alice.get("/v2/_catalog").json()["repositories"] == ["private/secret", "public/base", "team/app"]
    with client(server) as anon:
        assert anon.get("/v2/public/base/manifests/v1").status_code == 200
        r = anon.post("/v2/public/base/blobs/uploads/")
        assert_error(r, 401, "UNAUTHORIZED")                    # anonymous: asked to log in
        assert_error(anon.get("/v2/_catalog"), 401, "UNAUTHORIZED")
    with client(server, "carol") as carol:
        assert carol.get("/v2/team/app/manifests/v1").status_code == 200     # authenticated may pull
        assert_error(carol.post("/v2/team/app/blobs/uploads/"), 403, "DENIED")   # but not push
        assert_error(carol.get("/v2/private/secret/manifests/v1"), 403, "DENIED")
        assert_error(carol.get("/v2/_catalog"), 403, "DENIED")
    with client(server, "bob") as bob:
        assert bob.post("/v2/team/app/blobs/uploads/").status_code == 202     # bob may push team/*
        assert_error(bob.delete(f"/v2/team/app/manifests/{m.digest}"), 403, "DENIED")   # no delete
        assert_error(bob.post("/v2/public/base/blobs/uploads/"), 403, "DENIED")
        assert bob.put("/v2/team/app/manifests/v2", content=m.body,
                       headers={"content-type": m.media_type}).status_code == 201
    with client(server, "alice") as alice:
        assert alice.delete(f"/v2/team/app/manifests/{m.digest}").status_code == 202


def test_no_existence_leak(server: Any) -> None:
    with client(server, "alice") as alice:
        push_manifest(alice, "private/exists", make_manifest(), "v1")
    with client(server) as anon:
        a = anon.get("/v2/private/exists/manifests/v1")
        b = anon.get("/v2/private/nothing-here/manifests/v1")
    assert (a.status_code, a.headers["www-authenticate"], a.content) == \
           (b.status_code, b.headers["www-authenticate"], b.content)
    with client(server, "carol") as carol:
        a = carol.get("/v2/private/exists/tags/list")
        b = carol.get("/v2/private/nothing-here/tags/list")
    assert (a.status_code, a.json()["errors"][0]["code"]) == (b.status_code, b.json()["errors"][0]["code"]) == \
           (403, "DENIED")


def test_mount_needs_pull_on_source(server: Any) -> None:
    blob = b"secret layer " * 100
    d = digest_of(blob)
    with client(server, "alice") as alice:
        loc = alice.post("/v2/private/src/blobs/uploads/").headers["location"]
        assert alice.put(httpx.URL(loc).copy_merge_params({"digest": d}), content=blob,
                         headers={"content-type": OCTET}).status_code == 201
        # alice may pull private/src: the mount happens
        r = alice.post("/v2/team/alice-copy/blobs/uploads/", params={"mount": d, "from": "private/src"})
        assert r.status_code == 201
    with client(server, "bob") as bob:
        # bob may push team/* but not pull private/src: a normal upload session, no blob
        r = bob.post("/v2/team/stolen/blobs/uploads/", params={"mount": d, "from": "private/src"})
        assert r.status_code == 202 and "/blobs/uploads/" in r.headers["location"]
        # mount without `from` would search every repository: never for access-controlled clients
        r = bob.post("/v2/team/stolen/blobs/uploads/", params={"mount": d})
        assert r.status_code == 202
        assert bob.head(f"/v2/team/stolen/blobs/{d}").status_code == 404


def test_removed_user_refused_on_next_request(server: Any, htpasswd_file: Path) -> None:
    with client(server, "bob") as bob:
        assert bob.get("/v2/").status_code == 200
        assert bob.get("/v2/").status_code == 200      # served from the credential cache
        remove_user(htpasswd_file, "bob")
        assert_error(bob.get("/v2/"), 401, "UNAUTHORIZED")
    add_user(htpasswd_file, "bob", "new-pw", cost=5)
    with client(server, "bob") as bob:
        assert_error(bob.get("/v2/"), 401, "UNAUTHORIZED")  # the old password is gone
    with client(server, "bob", "new-pw") as bob:
        assert bob.get("/v2/").status_code == 200


def test_no_policy_means_any_valid_user(fastreg_factory: Any, htpasswd_file: Path) -> None:
    srv = fastreg_factory({"auth": {"htpasswd": {"realm": "r", "path": str(htpasswd_file)}}})
    with client(srv) as anon:
        assert_error(anon.get("/v2/"), 401, "UNAUTHORIZED")
        assert_error(anon.get("/v2/x/tags/list"), 401, "UNAUTHORIZED")
    with client(srv, "carol") as carol:
        push_manifest(carol, "any/repo", make_manifest(), "v1")
        assert carol.get("/v2/_catalog").json()["repositories"] == ["any/repo"]


def test_skopeo_with_creds(server: Any, small_image: ImageLayout) -> None:
    dest = f"docker://{server.host}/team/skopeo:v1"
    bad = run(skopeo_cmd("copy", "--all", "--dest-tls-verify=false", "--dest-creds", "carol:carol-pw",
                         small_image.ref, dest), check=False)
    assert bad.returncode != 0 and ("denied" in bad.stderr.lower() or "403" in bad.stderr)
    run(skopeo_cmd("copy", "--all", "--dest-tls-verify=false", "--dest-creds", "bob:bob-pw",
                   small_image.ref, dest), server=server)
    out = run(skopeo_cmd("inspect", "--raw", "--tls-verify=false", "--creds", "carol:carol-pw", dest), server=server)
    assert digest_of(out.stdout.encode()) == small_image.index_digest
    bad = run(skopeo_cmd("inspect", "--raw", "--tls-verify=false", "--creds", "carol:nope", dest), check=False)
    assert bad.returncode != 0 and ("unauthorized" in bad.stderr.lower() or "401" in bad.stderr)


def test_podman_login(server: Any, podman_root: list[str], tmp_path: Path, small_image: ImageLayout) -> None:
    authfile = tmp_path / "auth.json"
    # run() closes stdin, so the password goes in with -p
    bad = run([*podman_root, "login", "--tls-verify=false", "--authfile", str(authfile), "-u", "bob",
               "-p", "wrong", server.host], check=False)
    assert bad.returncode != 0
    run([*podman_root, "login", "--tls-verify=false", "--authfile", str(authfile), "-u", "bob", "-p", "bob-pw",
         server.host], server=server)
    stored = authfile.read_text()
    assert base64.b64encode(b"bob:bob-pw").decode() in stored
    run(skopeo_cmd("copy", "--all", "--dest-tls-verify=false", "--dest-creds", "alice:alice-pw",
                   small_image.ref, f"docker://{server.host}/team/podman:v1"), server=server)
    run([*podman_root, "pull", "--tls-verify=false", "--authfile", str(authfile),
         f"{server.host}/team/podman:v1"], server=server)


def test_skopeo_login_over_https(fastreg_factory: Any, htpasswd_file: Path, test_pki: Any, tmp_path: Path,
                                 small_image: ImageLayout) -> None:
    """htpasswd behind TLS with a test CA: skopeo login stores the credentials, copy uses them."""
    srv = fastreg_factory({"auth": {"htpasswd": {"realm": "tls-realm", "path": str(htpasswd_file)}},
                           "http": {"tls": {"certificate": str(test_pki.server_pem), "key": str(test_pki.server_key)}},
                           "fastreg": {"auth": {"access": POLICY}}})
    certs = str(test_pki.certs_dir)
    authfile = str(tmp_path / "auth.json")
    bad = run(skopeo_cmd("login", "--cert-dir", certs, "--authfile", authfile, "-u", "bob", "-p", "nope", srv.host),
              check=False)
    assert bad.returncode != 0
    run(skopeo_cmd("login", "--cert-dir", certs, "--authfile", authfile, "-u", "bob", "-p", "bob-pw", srv.host),
        server=srv)
    dest = f"docker://{srv.host}/team/tls:v1"
    run(skopeo_cmd("copy", "--all", "--dest-cert-dir", certs, "--dest-authfile", authfile, small_image.ref, dest),
        server=srv)
    out = run(skopeo_cmd("inspect", "--raw", "--cert-dir", certs, "--authfile", authfile, dest), server=srv)
    assert digest_of(out.stdout.encode()) == small_image.index_digest
