"""OCI distribution-spec v1.1 conformance, "Content Discovery" (port of 03_discovery_test.go), and more.

Spec references: "Listing Tags" (n/last, Link), "Listing Referrers" (artifactType, OCI-Filters-Applied),
plus Distribution's /v2/_catalog (n/last, Link, n above the configured maximum → 400
PAGINATION_NUMBER_INVALID; default maximum 1000; 100 per page without n).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.support.registry_client import (
    DUMMY_DIGEST,
    EMPTY_JSON,
    EMPTY_JSON_DIGEST,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    Manifest,
    assert_error,
    digest_of,
    make_index,
    make_layer,
    make_manifest,
    push_blob,
    push_manifest,
    start_upload,
    unique_repo,
)

pytestmark = pytest.mark.e2e

# Pushed in this order; lexical (byte-wise) order puts uppercase first.
TAGS = ["test3", "test0", "Zeta", "latest", "test2", "test1", "v1.10", "v1.2"]
ANNOTATION = "org.opencontainers.conformance.test"
TYPE_A = "application/vnd.example.type-a"
TYPE_B = "application/vnd.example.type-b"


@dataclass
class Discovery:
    repo: str
    subject: Manifest
    ghost: Manifest                   # never pushed; one referrer points to it
    referrers: dict[str, Manifest]    # digest → manifest, for referrers of `subject`
    artifact_types: dict[str, str]    # digest → expected artifactType
    orphan_referrer: Manifest


@pytest.fixture(scope="module")
def disc(mclient: httpx.Client) -> Discovery:
    c = mclient
    repo = unique_repo("discovery")
    subject = make_manifest()
    for tag in TAGS:
        push_manifest(c, repo, subject, tag)

    assert digest_of(EMPTY_JSON) == EMPTY_JSON_DIGEST
    empty = Blob(EMPTY_JSON, OCI_EMPTY)
    push_blob(c, repo, empty)
    refs: dict[str, Manifest] = {}
    types: dict[str, str] = {}

    def add(m: Manifest, artifact_type: str) -> None:
        for b in m.blobs:
            push_blob(c, repo, b)
        resp = c.put(f"/v2/{repo}/manifests/{m.digest}", content=m.body,
                     headers={"Content-Type": m.media_type})
        assert resp.status_code == 201, resp.text
        assert resp.headers["OCI-Subject"] == subject.digest
        refs[m.digest] = m
        types[m.digest] = artifact_type

    # config.mediaType = artifact type (no artifactType field)
    for i in range(2):
        cfg = Blob(EMPTY_JSON, TYPE_A)
        add(make_manifest(cfg, [make_layer(64)], subject=subject,
                          annotations={ANNOTATION: f"config-artifact-{i}"}), TYPE_A)
    # artifactType field with the empty config
    for i in range(2):
        add(make_manifest(empty, [make_layer(64)], subject=subject, artifact_type=TYPE_B,
                          annotations={ANNOTATION: f"layer-artifact-{i}"}), TYPE_B)
    # an index as a referrer
    child = make_manifest()
    push_manifest(c, repo, child)
    idx = make_index([child], subject=subject, artifact_type=TYPE_B,
                     annotations={ANNOTATION: "index-artifact"})
    resp = c.put(f"/v2/{repo}/manifests/{idx.digest}", content=idx.body, headers={"Content-Type": OCI_INDEX})
    assert resp.status_code == 201, resp.text
    assert resp.headers["OCI-Subject"] == subject.digest
    refs[idx.digest] = idx
    types[idx.digest] = TYPE_B

    ghost = make_manifest()
    orphan = make_manifest(empty, [make_layer(32)], subject=ghost, artifact_type=TYPE_A,
                           annotations={ANNOTATION: "orphan"})
    for b in orphan.blobs:
        push_blob(c, repo, b)
    resp = c.put(f"/v2/{repo}/manifests/{orphan.digest}", content=orphan.body,
                 headers={"Content-Type": OCI_MANIFEST})
    assert resp.status_code == 201, resp.text
    assert resp.headers["OCI-Subject"] == ghost.digest
    return Discovery(repo, subject, ghost, refs, types, orphan)


# -- tags -------------------------------------------------------------------------------------
def _tags(resp: httpx.Response, repo: str) -> list[str]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"name", "tags"}, body
    assert body["name"] == repo
    return list(body["tags"] or [])


def test_list_tags(client: httpx.Client, disc: Discovery) -> None:
    resp = client.get(f"/v2/{disc.repo}/tags/list")
    assert _tags(resp, disc.repo) == sorted(TAGS)
    assert min(TAGS) == "Zeta"
    assert "Link" not in resp.headers


def test_list_tags_limited_by_n(client: httpx.Client, disc: Discovery) -> None:
    expected = sorted(TAGS)
    resp = client.get(f"/v2/{disc.repo}/tags/list", params={"n": 2})
    assert _tags(resp, disc.repo) == expected[:2]
    assert resp.headers["Link"] == f'</v2/{disc.repo}/tags/list?last={expected[1]}&n=2>; rel="next"'


def test_list_tags_last_continues(client: httpx.Client, disc: Discovery) -> None:
    expected = sorted(TAGS)
    resp = client.get(f"/v2/{disc.repo}/tags/list", params={"n": 2, "last": expected[1]})
    page = _tags(resp, disc.repo)
    assert page == expected[2:4]
    assert expected[1] not in page
    assert resp.headers["Link"] == f'</v2/{disc.repo}/tags/list?last={expected[3]}&n=2>; rel="next"'


def test_list_tags_following_links_visits_every_tag_once(client: httpx.Client, disc: Discovery) -> None:
    seen: list[str] = []
    url: str | None = f"/v2/{disc.repo}/tags/list?n=3"
    for _ in range(10):
        assert url is not None
        resp = client.get(url)
        seen += _tags(resp, disc.repo)
        link = resp.headers.get("Link")
        if link is None:
            url = None
            break
        assert link.endswith('>; rel="next"') and link.startswith("<")
        url = link[1:link.index(">")]
    assert url is None
    assert seen == sorted(TAGS)


def test_list_tags_last_page_has_no_link(client: httpx.Client, disc: Discovery) -> None:
    expected = sorted(TAGS)
    resp = client.get(f"/v2/{disc.repo}/tags/list", params={"n": 3, "last": expected[-4]})
    assert _tags(resp, disc.repo) == expected[-3:]
    assert "Link" not in resp.headers


def test_list_tags_last_without_n(client: httpx.Client, disc: Discovery) -> None:
    expected = sorted(TAGS)
    resp = client.get(f"/v2/{disc.repo}/tags/list", params={"last": "test1"})
    assert _tags(resp, disc.repo) == [t for t in expected if t > "test1"]


def test_list_tags_last_need_not_exist(client: httpx.Client, disc: Discovery) -> None:
    resp = client.get(f"/v2/{disc.repo}/tags/list", params={"last": "test15"})
    assert _tags(resp, disc.repo) == [t for t in sorted(TAGS) if t > "test15"]


def test_list_tags_n_zero_is_empty(client: httpx.Client, disc: Discovery) -> None:
    resp = client.get(f"/v2/{disc.repo}/tags/list", params={"n": 0})
    assert _tags(resp, disc.repo) == []
    assert "Link" not in resp.headers


def test_list_tags_last_past_end_is_empty(client: httpx.Client, disc: Discovery) -> None:
    resp = client.get(f"/v2/{disc.repo}/tags/list", params={"last": "zzzz"})
    assert _tags(resp, disc.repo) == []
    assert "Link" not in resp.headers


def test_list_tags_invalid_n(client: httpx.Client, disc: Discovery) -> None:
    for n in ("-1", "abc"):
        resp = client.get(f"/v2/{disc.repo}/tags/list", params={"n": n})
        assert_error(resp, 400, "PAGINATION_NUMBER_INVALID")


def test_list_tags_unknown_repository(client: httpx.Client) -> None:
    resp = client.get(f"/v2/{unique_repo('nobody')}/tags/list")
    assert_error(resp, 404, "NAME_UNKNOWN")


# A repository without tags is unknown to the tag list, as Distribution's tag store answers: one
# holding only blobs, only an upload session or only manifests pushed by digest.  Each is checked
# to be left as it was (its blob, upload or manifest still there).  (Distribution 3.1.1 answers
# 200 with "tags": null when `last` is given, even for a repository that never existed: its
# filesystem walk skips a missing directory there; fastreg answers NAME_UNKNOWN either way.)
def _no_tags(client: httpx.Client, repo: str) -> None:
    for params in ({}, {"n": 2}):
        resp = client.get(f"/v2/{repo}/tags/list", params=params)
        assert_error(resp, 404, "NAME_UNKNOWN")
        assert resp.json()["errors"][0]["detail"] == {"name": repo}


def test_list_tags_of_a_repository_with_only_blobs(client: httpx.Client) -> None:
    repo, layer = unique_repo("blobs-only"), make_layer(64)
    push_blob(client, repo, layer)
    _no_tags(client, repo)
    assert client.get(f"/v2/{repo}/blobs/{layer.digest}").content == layer.data


def test_list_tags_of_a_repository_with_only_an_upload(client: httpx.Client) -> None:
    repo = unique_repo("upload-only")
    location = start_upload(client, repo).headers["Location"]
    _no_tags(client, repo)
    assert client.get(location).status_code == 204


def test_list_tags_of_a_repository_with_only_untagged_manifests(client: httpx.Client) -> None:
    repo, m = unique_repo("untagged"), make_manifest()
    push_manifest(client, repo, m)
    push_manifest(client, repo, make_index([m]))
    _no_tags(client, repo)
    assert client.get(f"/v2/{repo}/manifests/{m.digest}", headers={"Accept": OCI_MANIFEST}).content == m.body


def test_list_tags_after_every_tag_was_deleted_is_empty(client: httpx.Client) -> None:
    """The tags directory stays (as with Distribution on a filesystem): an empty list, not 404,
    whether the tags went one by one or with the manifest they named."""
    by_tag, by_digest = unique_repo("untagged-by-tag"), unique_repo("untagged-by-digest")
    m, other = make_manifest(), make_manifest()
    for tag in ("v1", "v2"):
        push_manifest(client, by_tag, m, tag)
    push_manifest(client, by_digest, other, "v1")
    for tag in ("v1", "v2"):
        assert client.delete(f"/v2/{by_tag}/manifests/{tag}").status_code == 202
    assert client.delete(f"/v2/{by_digest}/manifests/{other.digest}").status_code == 202
    for repo in (by_tag, by_digest):
        for params in ({}, {"n": 2}, {"last": "a"}):
            resp = client.get(f"/v2/{repo}/tags/list", params=params)
            assert _tags(resp, repo) == []
            assert "Link" not in resp.headers


# -- referrers --------------------------------------------------------------------------------
def _index(resp: httpx.Response) -> list[dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == OCI_INDEX
    body = resp.json()
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == OCI_INDEX
    assert isinstance(body["manifests"], list)
    return list(body["manifests"])


def _expected_descriptor(disc: Discovery, m: Manifest) -> dict[str, Any]:
    return {
        "mediaType": m.media_type, "digest": m.digest, "size": m.size,
        "artifactType": disc.artifact_types.get(m.digest, TYPE_A), "annotations": m.doc["annotations"],
    }


def test_referrers_of_unknown_digest_is_empty(client: httpx.Client, disc: Discovery) -> None:
    assert _index(client.get(f"/v2/{disc.repo}/referrers/{DUMMY_DIGEST}")) == []


def test_referrers_in_unknown_repository_is_empty(client: httpx.Client, disc: Discovery) -> None:
    resp = client.get(f"/v2/{unique_repo('nobody')}/referrers/{disc.subject.digest}")
    if resp.status_code == 200:
        assert _index(resp) == []
    else:
        assert_error(resp, 404, "NAME_UNKNOWN")


def test_referrers_lists_every_referrer(client: httpx.Client, disc: Discovery) -> None:
    got = _index(client.get(f"/v2/{disc.repo}/referrers/{disc.subject.digest}"))
    assert len(got) == 5
    assert len({d["digest"] for d in got}) == 5
    by_digest = {d["digest"]: d for d in got}
    assert set(by_digest) == set(disc.referrers)
    for digest, m in disc.referrers.items():
        assert by_digest[digest] == _expected_descriptor(disc, m)
    assert "OCI-Filters-Applied" not in client.get(
        f"/v2/{disc.repo}/referrers/{disc.subject.digest}").headers


def test_referrers_filtered_by_artifact_type(client: httpx.Client, disc: Discovery) -> None:
    resp = client.get(f"/v2/{disc.repo}/referrers/{disc.subject.digest}", params={"artifactType": TYPE_A})
    got = _index(resp)
    assert resp.headers["OCI-Filters-Applied"] == "artifactType"
    assert len(got) == 2
    assert {d["digest"] for d in got} == {k for k, v in disc.artifact_types.items() if v == TYPE_A}
    for d in got:
        assert d["artifactType"] == TYPE_A
        assert d == _expected_descriptor(disc, disc.referrers[d["digest"]])
    resp = client.get(f"/v2/{disc.repo}/referrers/{disc.subject.digest}", params={"artifactType": TYPE_B})
    assert {d["digest"] for d in _index(resp)} == {k for k, v in disc.artifact_types.items() if v == TYPE_B}
    resp = client.get(f"/v2/{disc.repo}/referrers/{disc.subject.digest}",
                      params={"artifactType": "application/vnd.example.none"})
    assert _index(resp) == []
    assert resp.headers["OCI-Filters-Applied"] == "artifactType"


def test_referrers_of_missing_subject(client: httpx.Client, disc: Discovery) -> None:
    """conformance "GET request to missing manifest should yield 200" (one referrer)."""
    got = _index(client.get(f"/v2/{disc.repo}/referrers/{disc.ghost.digest}"))
    assert got == [{
        "mediaType": OCI_MANIFEST, "digest": disc.orphan_referrer.digest, "size": disc.orphan_referrer.size,
        "artifactType": TYPE_A, "annotations": {ANNOTATION: "orphan"},
    }]


def test_referrers_without_annotations_or_type(client: httpx.Client) -> None:
    """A referrer with neither annotations nor artifactType: config.mediaType is its artifactType."""
    repo = unique_repo("referrers")
    subject = make_manifest()
    push_manifest(client, repo, subject)
    ref = make_manifest(subject=subject)
    push_manifest(client, repo, ref)
    got = _index(client.get(f"/v2/{repo}/referrers/{subject.digest}"))
    assert len(got) == 1
    d = got[0]
    assert d["digest"] == ref.digest and d["size"] == ref.size and d["mediaType"] == OCI_MANIFEST
    assert d["artifactType"] == ref.doc["config"]["mediaType"]
    assert d.get("annotations") in (None, {})


def test_index_referrer_without_artifact_type_omits_it(client: httpx.Client) -> None:
    """Spec: "If the artifactType is empty or missing in an index, the artifactType MUST be omitted"."""
    repo = unique_repo("referrers")
    subject = make_manifest()
    push_manifest(client, repo, subject)
    child = make_manifest()
    push_manifest(client, repo, child)
    idx = make_index([child], subject=subject, annotations={ANNOTATION: "plain-index"})
    push_manifest(client, repo, idx, with_blobs=False)
    got = _index(client.get(f"/v2/{repo}/referrers/{subject.digest}"))
    assert got == [{"mediaType": OCI_INDEX, "digest": idx.digest, "size": idx.size,
                    "annotations": {ANNOTATION: "plain-index"}}]


def test_referrers_invalid_digest(client: httpx.Client, disc: Discovery) -> None:
    resp = client.get(f"/v2/{disc.repo}/referrers/sha256:nothex")
    assert_error(resp, 400, "DIGEST_INVALID")


def test_referrers_are_per_repository(client: httpx.Client, disc: Discovery) -> None:
    other = unique_repo("discovery")
    push_manifest(client, other, disc.subject)
    assert _index(client.get(f"/v2/{other}/referrers/{disc.subject.digest}")) == []


# -- catalog ----------------------------------------------------------------------------------
def _catalog(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"repositories"}
    return list(body["repositories"])


@pytest.fixture(scope="module")
def catalog_repos(mclient: httpx.Client, disc: Discovery) -> list[str]:
    names = [f"catalog/r{i}-{disc.repo.rsplit('-', 1)[1]}" for i in (3, 0, 2, 1)]
    for name in names:
        push_manifest(mclient, name, make_manifest(), "latest")
    return sorted(names)


def test_catalog_lists_repositories_sorted(client: httpx.Client, catalog_repos: list[str],
                                           disc: Discovery) -> None:
    repos = _catalog(client.get("/v2/_catalog", params={"n": 1000}))
    assert repos == sorted(repos)
    assert len(repos) == len(set(repos))
    for name in [*catalog_repos, disc.repo]:
        assert name in repos


def test_catalog_pagination(client: httpx.Client, catalog_repos: list[str]) -> None:
    everything = _catalog(client.get("/v2/_catalog", params={"n": 1000}))
    resp = client.get("/v2/_catalog", params={"n": 2})
    page = _catalog(resp)
    assert page == everything[:2]
    # Distribution encodes `last` as a query value: "/" becomes %2F.
    assert resp.headers["Link"] == f'</v2/_catalog?last={quote(page[-1], safe="")}&n=2>; rel="next"'
    # follow every Link
    seen = list(page)
    link = resp.headers.get("Link")
    while link:
        resp = client.get(link[1:link.index(">")])
        seen += _catalog(resp)
        link = resp.headers.get("Link")
    assert seen == everything


def test_catalog_last(client: httpx.Client, catalog_repos: list[str]) -> None:
    everything = _catalog(client.get("/v2/_catalog", params={"n": 1000}))
    i = everything.index(catalog_repos[0])
    resp = client.get("/v2/_catalog", params={"n": 2, "last": catalog_repos[0]})
    assert _catalog(resp) == everything[i + 1:i + 3]
    assert _catalog(client.get("/v2/_catalog", params={"last": everything[-1]})) == []


def test_catalog_n_zero(client: httpx.Client, catalog_repos: list[str]) -> None:
    resp = client.get("/v2/_catalog", params={"n": 0})
    assert _catalog(resp) == []
    assert "Link" not in resp.headers


def test_catalog_n_above_maximum_is_400(client: httpx.Client, catalog_repos: list[str]) -> None:
    """Distribution 3: n > catalog.maxentries (default 1000) → 400 PAGINATION_NUMBER_INVALID."""
    for n in ("1000000000", "1001"):
        assert_error(client.get("/v2/_catalog", params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")
    _catalog(client.get("/v2/_catalog", params={"n": 1000}))


def test_catalog_invalid_n(client: httpx.Client) -> None:
    for n in ("-1", "two"):
        assert_error(client.get("/v2/_catalog", params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")


def test_catalog_default_page_is_100_and_new_repositories_show_on_every_worker(
        fastreg_factory: Any) -> None:
    """Without n, Distribution answers 100 repositories and a Link; fastreg does the same.
    With two workers, a repository appears in the catalog on the very next request, whichever
    worker answers it (the catalog cache is validated against a shared generation)."""
    srv = fastreg_factory(workers=2)
    names = [f"page/r{i:03d}" for i in range(105)]
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        for i, name in enumerate(names):
            push_blob(c, name, EMPTY_JSON)
            push_manifest(c, name, make_manifest(layers=[]), "v1")
            if i % 20 == 0 or i == len(names) - 1:
                for _ in range(4):     # several requests: both workers answer some
                    assert name in _catalog(c.get("/v2/_catalog", params={"n": 1000}))
        resp = c.get("/v2/_catalog")
        first = _catalog(resp)
        assert first == names[:100]
        assert resp.headers["Link"] == '</v2/_catalog?last=page%2Fr099&n=100>; rel="next"'
        assert _catalog(c.get("/v2/_catalog", params={"last": "page/r099"})) == names[100:]
