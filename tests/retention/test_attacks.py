"""Attacks on immutable tags, quotas, retention and the history endpoints, from outside, over HTTP
against running servers: each refusal answers its status and the spec's error code and leaves
every stored file as it was.

* An immutable tag protects what it names, not only its name: a DELETE by digest of a manifest an
  immutable index lists, and a DELETE of a blob an immutable image uses, would each break the
  tag's pulls while the tag itself stays; both are refused as a delete of the tag is.
* Two first pushes of one immutable tag racing on two workers: one is accepted, the other refused;
  and a first push landing between a delete's check and its removal is not undone by the delete.
* The history and usage endpoints under token auth: no token, or a token for another repository,
  gets the 401 challenge and nothing of the repository.
* A glob or tag pattern that can never match (a regular expression, a `/` in a tag pattern, an
  upper-case repository glob) is refused at startup: silently matching nothing would make an
  immutability rule protect nothing and a keep rule keep nothing.  So is a single string where a
  list of patterns (or of rules) is expected.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from fastreg.auth.htpasswd import add_user
from fastreg.digest import parse_digest
from fastreg.errors import RegistryError
from tests.auth.conftest import PKI, test_pki  # noqa: F401 (fixture)
from tests.auth.test_basic_e2e import PASSWORDS
from tests.auth.test_tokenservice_e2e import bearer, get_token, token_config
from tests.ops.conftest import tree
from tests.quota.common import cost
from tests.retention.common import config as common_config
from tests.retention.common import registry as common_registry
from tests.support.direct_push import push_manifest as direct_push
from tests.support.registry_client import (
    assert_error,
    assert_pulls,
    make_index,
    make_layer,
    make_manifest,
    push_manifest,
)
from tests.support.server import REPO_ROOT, free_port
from tests.test_metrics import debug_config, scrape, value

RULES = {"immutability": {"rules": [{"repository": "prod/**", "tags": ["v*"]}]}}


def test_immutable_tag_protects_its_index_children_and_blobs(fastreg_factory: Any, tmp_path: Path) -> None:
    dport = free_port()
    srv = fastreg_factory(debug_config(dport, fastreg=RULES), env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")})
    shared = make_layer(700)
    amd, arm = make_manifest(layers=[shared]), make_manifest()
    idx = make_index([amd, arm])
    img = make_manifest()
    loose = make_manifest(layers=[shared])          # a mutable image sharing a layer with an immutable one
    nested = make_index([make_index([arm])])        # an index of an index of arm
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        for child in (amd, arm):
            push_manifest(c, "prod/app", child)
        push_manifest(c, "prod/app", idx, "v1")
        push_manifest(c, "prod/app", img, "v2")
        push_manifest(c, "prod/app", loose, "latest")
        push_manifest(c, "prod/app", nested.children[0])
        push_manifest(c, "prod/app", nested, "v3")
        before = tree(srv.root)
        refusals = (
            (f"/v2/prod/app/manifests/{amd.digest}", f"manifest {amd.digest}", "v1"),     # a child of v1
            (f"/v2/prod/app/manifests/{nested.children[0].digest}", "manifest", "v3"),   # v3's child
            (f"/v2/prod/app/blobs/{img.blobs[1].digest}", f"blob {img.blobs[1].digest}", "v2"),     # v2's layer
            (f"/v2/prod/app/blobs/{img.blobs[0].digest}", "blob", "v2"),                  # v2's config
            (f"/v2/prod/app/blobs/{shared.digest}", f"blob {shared.digest}", "v1"),       # through v1's index
            (f"/v2/prod/app/blobs/{arm.blobs[1].digest}", "blob", "v"),                   # v1 (or v3, nested)
        )
        for path, what, tag in refusals:
            r = c.delete(path)
            assert_error(r, 403, "DENIED")
            err = r.json()["errors"][0]
            assert err["message"].startswith(what) and "is used by immutable tag prod/app:" + tag in err["message"]
            assert "fastreg.immutability.rules.0" in err["message"] and "cannot be deleted" in err["message"]
            assert err["detail"]["rule"].startswith("fastreg.immutability.rules.0")
        assert tree(srv.root) == before                                  # nothing stored changed
        assert_pulls(c, "prod/app", "v1", idx)
        assert_pulls(c, "prod/app", "v2", img)
        assert_pulls(c, "prod/app", amd.digest, amd)
        # what no immutable tag names is free: the mutable image's own layer, then the image itself
        assert c.delete(f"/v2/prod/app/blobs/{loose.blobs[0].digest}").status_code == 202
        assert c.delete(f"/v2/prod/app/manifests/{loose.digest}").status_code == 202
        # and in a repository no rule covers, the same deletes are accepted
        push_manifest(c, "dev/app", amd)
        push_manifest(c, "dev/app", make_index([amd]), "v1")
        assert c.delete(f"/v2/dev/app/blobs/{shared.digest}").status_code == 202
        assert c.delete(f"/v2/dev/app/manifests/{amd.digest}").status_code == 202
    samples = scrape(f"http://127.0.0.1:{dport}/metrics")
    assert value(samples, "fastreg_immutability_refusals_total", action="delete") == len(refusals)


def run_retention(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastreg", "retention", "--config", str(config), "--dry-run"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


@pytest.mark.parametrize(("fastreg", "line"), [
    ({"immutability": {"rules": [{"repository": "prod/**", "tags": ["^v[0-9]+$"]}]}},
     "fastreg.immutability.rules.0.tags: '^v[0-9]+$' can never match a tag"),
    ({"immutability": {"rules": [{"repository": "prod/**", "tags": ["release/*"]}]}},
     "fastreg.immutability.rules.0.tags: 'release/*' can never match a tag"),
    ({"immutability": {"rules": [{"repository": "Prod/**", "tags": ["v*"]}]}},
     "fastreg.immutability.rules.0.repository: 'Prod/**' can never match a repository name"),
    ({"retention": {"policies": [{"repository": "ci/*", "keep": {"tags": ["v.*", "(latest|stable)"]}}]}},
     "fastreg.retention.policies.0.keep.tags: '(latest|stable)' can never match a tag"),
    ({"retention": {"policies": [{"repository": "ci/[a-z]+", "keep": {"lastpushed": 3}}]}},
     "fastreg.retention.policies.0.repository: 'ci/[a-z]+' can never match a repository name"),
    ({"quota": {"rules": [{"repository": "team a/**", "limit": "1GB"}]}},
     "fastreg.quota.rules.0.repository: 'team a/**' can never match a repository name"),
])
def test_a_pattern_that_can_never_match_is_refused(tmp_path: Path, fastreg: dict[str, Any], line: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump({"version": "0.1", "storage": {"inmemory": {}}, "fastreg": fastreg}))
    r = run_retention(path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [f"fastreg: configuration error: {line} (a glob: "
                                             + ("A-Z a-z 0-9 _ . -" if "a tag" in line else "a-z 0-9 . _ - /")
                                             + ", with * ** ?; not a regular expression)"], r.stderr


@pytest.mark.parametrize(("fastreg", "line"), [
    ({"retention": {"policies": [{"repository": "ci/**", "keep": {"tags": "v*"}}]}},
     "fastreg.retention.policies.0.keep.tags: expected a list of patterns, got 'v*' "
     "(a single pattern is a list of one: ['v*'])"),
    ({"immutability": {"rules": [{"repository": "prod/**", "tags": "stable"}]}},
     "fastreg.immutability.rules.0.tags: expected a list of patterns, got 'stable' "
     "(a single pattern is a list of one: ['stable'])"),
    ({"immutability": {"rules": [{"repository": "prod/**", "tags": 1}]}},
     "fastreg.immutability.rules.0.tags: expected a list of patterns, got 1"),
    ({"retention": {"policies": "ci/**"}}, "fastreg.retention.policies: expected a list, got 'ci/**'"),
    ({"immutability": {"rules": "prod/**"}}, "fastreg.immutability.rules: expected a list, got 'prod/**'"),
    ({"quota": {"rules": "team/**"}}, "fastreg.quota.rules: expected a list, got 'team/**'"),
])
def test_a_string_where_a_list_is_expected_is_refused(tmp_path: Path, fastreg: dict[str, Any], line: str) -> None:
    """``tags: v*`` is not read as ``[v*]``: a pattern list is written as a list."""
    data = tmp_path / "data"
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump({"version": "0.1", "storage": {"filesystem": {"rootdirectory": str(data)}},
                                    "fastreg": fastreg}))
    r = run_retention(path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [f"fastreg: configuration error: {line}"], r.stderr
    assert not data.exists()                                    # nothing stored


def test_a_list_of_patterns_still_loads(tmp_path: Path) -> None:
    cfg = common_config(tmp_path, {
        "retention": {"policies": [{"repository": "ci/**", "keep": {"tags": ["v*"]}}]},
        "immutability": {"rules": [{"repository": "prod/**", "tags": ["v*", "stable"]}]},
        "quota": {"rules": [{"repository": "team/**", "limit": "1GB"}]}})
    assert cfg.fastreg.retention.policies[0].keep.tags == ["v*"]
    assert cfg.fastreg.immutability.rules[0].tags == ["v*", "stable"]
    assert cfg.fastreg.quota.rules[0].repository == "team/**"


def test_history_and_usage_need_a_token_for_that_repository(fastreg_factory: Any, test_pki: PKI,  # noqa: F811
                                                            tmp_path: Path) -> None:
    """Under token auth (the built-in token service, the access policy of tests/auth), the two
    endpoints answer only a token holding pull on that very repository: none, or one for another
    repository, gets the spec's 401 challenge naming the scope, and no byte of the repository."""
    users = tmp_path / "htpasswd"
    for user, pw in PASSWORDS.items():
        add_user(users, user, pw, cost=5)
    cfg = token_config(test_pki, users)
    cfg["fastreg"]["quota"] = {"limit": "1GB"}
    srv = fastreg_factory(cfg)
    m = make_manifest()
    with httpx.Client(verify=test_pki.ssl_context(), timeout=30) as c:
        def token(user: str, *scopes: str) -> dict[str, str]:
            r = get_token(c, srv, *scopes, user=user)
            assert r.status_code == 200, r.text
            return bearer(r.json()["token"])

        admin = token("alice", "repository:private/app:pull,push", "repository:team/app:pull,push")
        c.headers.update(admin)
        c.base_url = httpx.URL(srv.url)
        push_manifest(c, "private/app", m, "v1")
        push_manifest(c, "team/app", m, "v1")
        del c.headers["authorization"]
        bob_team = token("bob", "repository:team/app:pull")
        bob_private = token("bob", "repository:private/app:pull")      # the policy grants bob nothing there
        for endpoint in ("history", "usage"):
            path = f"/v2/_fastreg/{endpoint}/private/app"
            for headers, error in (({}, None), (bob_team, "insufficient_scope"), (bob_private, "insufficient_scope")):
                r = c.get(path, headers=headers)
                assert_error(r, 401, "UNAUTHORIZED")
                challenge = r.headers["www-authenticate"]
                assert 'scope="repository:private/app:pull"' in challenge, challenge
                assert (f'error="{error}"' in challenge) if error else "error=" not in challenge
                assert m.digest not in r.text and "bytes" not in r.json()
            assert c.get(f"/v2/_fastreg/{endpoint}/team/app", headers=bob_team).status_code == 200
            assert c.get(path, headers=admin).status_code == 200
        assert c.get("/v2/_fastreg/history/private/app", headers=admin).json()["tags"][0]["digest"] == m.digest
        assert c.get("/v2/_fastreg/usage/private/app", headers=admin).json()["bytes"] == cost(m)


def test_racing_first_pushes_of_an_immutable_tag_admit_one(fastreg_factory: Any) -> None:
    """Two first pushes of one immutable tag, of two manifests, at once on a 2-worker server (they
    used to both answer 201 and the later silently replaced the earlier): exactly one is accepted,
    the other refused as a move (403 DENIED), and the tag names the accepted one, its history
    holding nothing of the refused one.  Two first pushes of the same manifest are both accepted."""
    srv = fastreg_factory(debug_config(free_port(), fastreg=RULES), workers=2)
    a, b = make_manifest(), make_manifest()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        for m in (a, b):
            push_manifest(c, "prod/app", m)                     # blobs and manifests, untagged

    async def rounds() -> list[tuple[int, int, str]]:
        out = []
        async with httpx.AsyncClient(base_url=srv.url, timeout=30,
                                     limits=httpx.Limits(max_keepalive_connections=0)) as ac:
            async def put(tag: str, m: Any) -> httpx.Response:
                return await ac.put(f"/v2/prod/app/manifests/{tag}", content=m.body,
                                    headers={"Content-Type": m.media_type})

            for i in range(30):
                ra, rb = await asyncio.gather(put(f"v{i}", a), put(f"v{i}", b))
                if 403 in (ra.status_code, rb.status_code):
                    refused = ra if ra.status_code == 403 else rb
                    assert_error(refused, 403, "DENIED")        # type: ignore[arg-type]
                    assert "cannot be moved" in refused.json()["errors"][0]["message"]
                named = (await ac.head(f"/v2/prod/app/manifests/v{i}")).headers["docker-content-digest"]
                out.append((ra.status_code, rb.status_code, named))
                same = await asyncio.gather(put(f"s{i}", a), put(f"s{i}", a))
                assert [r.status_code for r in same] == [201, 201]
        return out

    for i, (sa, sb, named) in enumerate(asyncio.run(rounds())):
        assert sorted((sa, sb)) == [201, 403], (i, sa, sb)
        assert named == (a.digest if sa == 201 else b.digest)
        index = srv.root / f"docker/registry/v2/repositories/prod/app/_manifests/tags/v{i}/index/sha256"
        assert sorted(p.name for p in index.iterdir()) == [named.split(":")[1]]


@pytest.mark.parametrize("target", ["manifest", "blob"])
def test_a_first_push_landing_inside_a_delete_is_not_undone(tmp_path: Path, target: str) -> None:
    """A DELETE by digest (or of a blob) checks that no immutable tag names what it removes, then
    removes it.  A first push of an immutable tag naming it that lands between the two (put here
    at that exact point: in the delete's own first listing of the tags, through the same services a
    client's PUT uses) used to be undone by the delete: the tag removed with the manifest, or left
    naming an image whose layer was unlinked, after its push had succeeded.  The delete now holds
    the lock first pushes take, so the push runs after it and the tag stays whole."""
    from fastreg.storage.driver.backends.filesystem import FilesystemDriver
    cfg = common_config(tmp_path, RULES)

    async def main() -> None:
        reg = common_registry(FilesystemDriver(str(tmp_path / "data")), cfg)
        m = make_manifest()
        await direct_push(reg, "prod/app", m)                        # untagged
        real = reg.tags.all
        pushes: list[asyncio.Task[None]] = []

        async def all_tags(name: str) -> list[str]:
            try:
                return await real(name)                             # NAME_UNKNOWN: no tags yet
            finally:
                if not pushes:                                      # the delete's check, once
                    pushes.append(asyncio.ensure_future(direct_push(reg, "prod/app", m, "v1")))
                    await asyncio.sleep(0.2)                        # time for the push to run, if it can

        reg.tags.all = all_tags                                     # type: ignore[method-assign]
        if target == "manifest":
            await reg.manifests.delete("prod/app", m.digest)
        else:
            await reg.manifests.unlink_blob("prod/app", parse_digest(m.blobs[1].digest))
        if target == "manifest":
            await pushes[0]                                         # the push succeeded, after the delete
            assert await reg.tags.resolve("prod/app", "v1") == parse_digest(m.digest)
            assert (await reg.manifests.get("prod/app", "v1")).body == m.body
        else:
            # the push ran after the unlink: refused, its layer gone, and no tag names the image
            with pytest.raises(RegistryError, match="MANIFEST_BLOB_UNKNOWN"):
                await pushes[0]
            with pytest.raises(RegistryError, match="NAME_UNKNOWN"):     # no tag at all
                await reg.tags.all("prod/app")
            return
        # an immutable tag that exists names an image whose blobs are all here
        for tag in await reg.tags.all("prod/app"):
            for blob in m.blobs:
                assert await reg.blobs.is_linked("prod/app", parse_digest(blob.digest)), tag

    asyncio.run(main())
