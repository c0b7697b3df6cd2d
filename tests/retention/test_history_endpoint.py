"""GET /v2/_fastreg/history/<name>: each tag's digest and last push, paged like /tags/list, and
access-checked as the repository (htpasswd and an access policy)."""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from fastreg.auth.htpasswd import add_user
from tests.support.registry_client import make_manifest, push_manifest

POLICY = {"rules": [{"repository": "team/**", "pull": ["alice"], "push": ["alice"]}]}


def stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_history_lists_push_times_with_access_checks(fastreg_factory: Any, tmp_path: Path) -> None:
    users = tmp_path / "htpasswd"
    add_user(users, "alice", "alice-pw", cost=5)
    add_user(users, "bob", "bob-pw", cost=5)
    srv = fastreg_factory({"auth": {"htpasswd": {"realm": "r", "path": str(users)}},
                           "fastreg": {"auth": {"access": POLICY}}})
    a, b = make_manifest(), make_manifest()
    with httpx.Client(base_url=srv.url, timeout=30, auth=("alice", "alice-pw")) as c:
        t0 = time.time()
        push_manifest(c, "team/app", a, "one")
        push_manifest(c, "team/app", b, "two")
        push_manifest(c, "team/app", a, "three")
        t1 = time.time()
        doc = c.get("/v2/_fastreg/history/team/app").json()
        assert doc["name"] == "team/app"
        assert [(t["tag"], t["digest"]) for t in doc["tags"]] == [("one", a.digest), ("three", a.digest),
                                                                  ("two", b.digest)]
        pushed = {t["tag"]: stamp(t["pushed"]) for t in doc["tags"]}
        assert all(t0 - 2 <= p <= t1 + 2 for p in pushed.values())
        assert pushed["one"] <= pushed["two"] <= pushed["three"]
        push_manifest(c, "team/app", b, "one")                          # moved: a later push
        again = {t["tag"]: t for t in c.get("/v2/_fastreg/history/team/app").json()["tags"]}
        assert again["one"]["digest"] == b.digest and stamp(again["one"]["pushed"]) >= pushed["three"]
        # paged like the tag list
        r = c.get("/v2/_fastreg/history/team/app", params={"n": 2})
        assert [t["tag"] for t in r.json()["tags"]] == ["one", "three"]
        assert 'last=three' in r.headers["link"] and 'rel="next"' in r.headers["link"]
        r = c.get("/v2/_fastreg/history/team/app", params={"n": 2, "last": "three"})
        assert [t["tag"] for t in r.json()["tags"]] == ["two"] and "link" not in r.headers
        r = c.get("/v2/_fastreg/history/team/nothing")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN"
        # a repository without tags (a manifest pushed by digest only) is unknown, as to /tags/list
        push_manifest(c, "team/untagged", make_manifest())
        for path in ("/v2/_fastreg/history/team/untagged", "/v2/team/untagged/tags/list"):
            r = c.get(path)
            assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN", path
    with httpx.Client(base_url=srv.url, timeout=30, auth=("bob", "bob-pw")) as c:
        r = c.get("/v2/_fastreg/history/team/app")
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
    r = httpx.get(f"{srv.url}/v2/_fastreg/history/team/app", timeout=30)
    assert r.status_code == 401 and "www-authenticate" in r.headers
