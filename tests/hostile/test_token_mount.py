"""A cross-repository mount under token auth, by a client that asks the token service for what
the challenge names (as the OCI conformance suite does): the challenge names pull on the mount's
source too, as Distribution's does, so the blob is mounted (201).  A user the policy refuses pull
on the source gets a token without it and a normal upload session (202): nothing is mounted.
A ``from`` that is no repository name is never written into the challenge."""
from __future__ import annotations

import os
import re
from collections.abc import Iterator

import bcrypt
import httpx
import pytest

from fastreg.auth import pki
from tests.conftest import FastregServer, make_fastreg

from .support import digest_of, snapshot, wait_unchanged


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastregServer]:
    tmp = tmp_path_factory.mktemp("token-mount")
    certs = tmp / "certs"
    pki.generate(certs, ["127.0.0.1"])
    htpasswd = tmp / "htpasswd"
    htpasswd.write_text("".join(f"{u}:{bcrypt.hashpw(b'pw-' + u.encode(), bcrypt.gensalt(4)).decode()}\n"
                                for u in ("alice", "bob")))
    srv = make_fastreg(tmp, {
        "auth": {"token": {"service": "fastreg", "issuer": "fastreg-token-service",
                           "rootcertbundle": str(certs / "token.pem")}},
        "fastreg": {"auth": {
            "tokenservice": {"key": str(certs / "token.key"), "certificate": str(certs / "token.pem"),
                             "htpasswd": str(htpasswd)},
            "access": {"rules": [{"repository": "**", "pull": ["alice"], "push": ["alice"]},
                                 {"repository": "bob/**", "pull": ["bob"], "push": ["bob"]}]}}}})
    srv.start()
    yield srv
    srv.stop()


def scopes_of(challenge: str) -> list[str]:
    m = re.search(r'scope="([^"]*)"', challenge)
    return m.group(1).split(" ") if m else []


def follow(c: httpx.Client, user: str, method: str, url: str, **kw: object) -> httpx.Response:
    """The request, then (on 401) a token for exactly the challenge's scopes, then the request again."""
    r = c.request(method, url, **kw)  # type: ignore[arg-type]
    if r.status_code != 401:
        return r
    t = c.get("/token", params={"service": "fastreg", "scope": scopes_of(r.headers["www-authenticate"])},
              auth=(user, f"pw-{user}"))
    assert t.status_code == 200, t.text
    headers = {**dict(kw.pop("headers", {}) or {}), "Authorization": f"Bearer {t.json()['token']}"}  # type: ignore[call-overload]
    return c.request(method, url, headers=headers, **kw)  # type: ignore[arg-type]


def push_blob(c: httpx.Client, user: str, repo: str, data: bytes) -> str:
    d = digest_of(data)
    r = follow(c, user, "POST", f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=data)
    assert r.status_code == 201, r.text
    return d


def test_the_mount_challenge_names_the_source_and_the_blob_is_mounted(server: FastregServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        d = push_blob(c, "alice", "team/src", os.urandom(5000))
        r = c.post("/v2/team/dst/blobs/uploads/", params={"mount": d, "from": "team/src"})
        assert r.status_code == 401
        assert scopes_of(r.headers["www-authenticate"]) == ["repository:team/dst:pull,push",
                                                            "repository:team/src:pull"]
        r = follow(c, "alice", "POST", "/v2/team/dst/blobs/uploads/", params={"mount": d, "from": "team/src"})
        assert r.status_code == 201, r.text
        assert r.headers["location"].endswith(f"/v2/team/dst/blobs/{d}")
        assert follow(c, "alice", "HEAD", f"/v2/team/dst/blobs/{d}").status_code == 200


def test_without_pull_on_the_source_the_mount_is_a_normal_upload(server: FastregServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        d = push_blob(c, "alice", "team/secret", os.urandom(5000))
        r = follow(c, "bob", "POST", "/v2/bob/app/blobs/uploads/", params={"mount": d, "from": "team/secret"})
        assert r.status_code == 202, r.text
        assert "/v2/bob/app/blobs/uploads/" in r.headers["location"]
        head = follow(c, "bob", "HEAD", f"/v2/bob/app/blobs/{d}")
        assert head.status_code == 404


@pytest.mark.parametrize("source", ['a",realm="http://evil.example/token', "UPPER", "a//b", "x" * 300])
def test_a_source_that_is_no_repository_name_stays_out_of_the_challenge(server: FastregServer, source: str) -> None:
    before = snapshot(server.root)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post("/v2/team/dst/blobs/uploads/", params={"mount": "sha256:" + "0" * 64, "from": source})
        assert r.status_code == 401
        challenge = r.headers["www-authenticate"]
        assert scopes_of(challenge) == ["repository:team/dst:pull,push"], challenge
        assert "evil" not in challenge and challenge.count("realm=") == 1
    wait_unchanged(server.root, before)
