"""The catalog shows each user only the repositories they may pull (htpasswd and token modes)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from fastreg.api.catalog import paginate_filtered
from fastreg.auth.htpasswd import add_user
from tests.support.registry_client import make_manifest, push_manifest

from .conftest import PKI
from .test_tokenservice_e2e import SERVICE, token_config

POLICY = {
    "groups": {"admins": ["alice"]},
    "catalog": ["authenticated"],
    "rules": [
        {"repository": "public/**", "pull": ["anonymous"], "push": ["@admins"]},
        {"repository": "team/*", "pull": ["authenticated"], "push": ["@admins"]},
        {"repository": "private/**", "pull": ["@admins"], "push": ["@admins"]},
    ],
}
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}
REPOS = ["private/a", "private/secret", "public/base", "team/app", "team/web"]
FOR_BOB = ["public/base", "team/app", "team/web"]


def test_paginate_filtered() -> None:
    items = ["a", "b", "c", "d", "e", "f"]
    keep = {"b", "d", "e"}.__contains__
    assert paginate_filtered(items, 2, None, keep) == (["b", "d"], True)
    assert paginate_filtered(items, 2, "d", keep) == (["e"], False)
    assert paginate_filtered(items, 3, None, keep) == (["b", "d", "e"], False)   # no kept item follows
    assert paginate_filtered(items, 5, "e", keep) == ([], False)
    assert paginate_filtered(items, 1, "bb", keep) == (["d"], True)


def walk(c: httpx.Client, n: int, headers: dict[str, str] | None = None) -> list[list[str]]:
    pages, url = [], f"/v2/_catalog?n={n}"
    for _ in range(20):
        r = c.get(url, headers=headers)
        assert r.status_code == 200, r.text
        pages.append(r.json()["repositories"])
        if "link" not in r.headers:
            return pages
        url = r.headers["link"].split(";")[0].strip("<>")
    raise AssertionError("the catalog never ended")


@pytest.fixture
def users(tmp_path: Path) -> Path:
    f = tmp_path / "htpasswd"
    for user, pw in PASSWORDS.items():
        add_user(f, user, pw, cost=5)
    return f


def push_all(url: str, **kw: Any) -> None:
    m = make_manifest()
    with httpx.Client(base_url=url, timeout=30.0, **kw) as c:
        for repo in REPOS:
            push_manifest(c, repo, m, "v1")


def test_htpasswd_catalog_is_filtered(fastreg_factory: Any, users: Path) -> None:
    srv = fastreg_factory({"auth": {"htpasswd": {"realm": "r", "path": str(users)}},
                           "fastreg": {"auth": {"access": POLICY}}})
    push_all(srv.url, auth=("alice", "alice-pw"))
    with httpx.Client(base_url=srv.url, auth=("alice", "alice-pw")) as alice:
        assert walk(alice, 100) == [REPOS]
    with httpx.Client(base_url=srv.url, auth=("bob", "bob-pw")) as bob:
        assert walk(bob, 100) == [FOR_BOB]
        assert walk(bob, 1) == [[r] for r in FOR_BOB]   # no empty page, no Link after the last
        assert walk(bob, 2) == [FOR_BOB[:2], FOR_BOB[2:]]
        r = bob.get("/v2/_catalog", params={"n": 5, "last": "private/a"})
        assert r.json() == {"repositories": FOR_BOB}
        assert bob.get("/v2/private/secret/tags/list").status_code == 403


def test_token_catalog_is_filtered(fastreg_factory: Any, test_pki: PKI, users: Path) -> None:
    cfg = token_config(test_pki, users, tls=False)
    cfg["fastreg"]["auth"]["access"] = POLICY
    srv = fastreg_factory(cfg)

    def token(user: str, *scopes: str) -> dict[str, str]:
        r = httpx.get(srv.url + "/token", params=[("service", SERVICE), *(("scope", s) for s in scopes)],
                      auth=(user, PASSWORDS[user]))
        assert r.status_code == 200, r.text
        return {"Authorization": "Bearer " + r.json()["token"]}

    push_all(srv.url, headers=token("alice", *(f"repository:{r}:pull,push" for r in REPOS)))
    with httpx.Client(base_url=srv.url) as c:
        assert walk(c, 100, token("alice", "registry:catalog:*")) == [REPOS]
        assert walk(c, 1, token("bob", "registry:catalog:*")) == [[r] for r in FOR_BOB]
