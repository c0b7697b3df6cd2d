"""The referrers list is paged by bytes (fastreg.referrers.pagebytes) with a Link header, as the
distribution spec allows; following the links yields every referrer once, in digest order."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx

from .helpers import assert_error, make_manifest, push_manifest

SIG, SBOM = "application/vnd.example.sig", "application/vnd.example.sbom"


def follow(c: httpx.Client, path: str) -> tuple[list[dict[str, Any]], list[httpx.Response]]:
    descs: list[dict[str, Any]] = []
    pages: list[httpx.Response] = []
    next_path: str | None = path
    while next_path is not None and len(pages) < 50:
        r = c.get(next_path)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/vnd.oci.image.index.v1+json"
        doc = r.json()
        assert doc["schemaVersion"] == 2 and doc["mediaType"] == "application/vnd.oci.image.index.v1+json"
        descs += doc["manifests"]
        pages.append(r)
        m = re.fullmatch(r'<([^>]+)>; rel="next"', r.headers.get("link", ""))
        next_path = m.group(1) if m else None
    assert next_path is None
    return descs, pages


def test_referrers_follow_link_pages(fastreg_factory: Callable[..., Any]) -> None:
    srv = fastreg_factory({"fastreg": {"referrers": {"pagebytes": 700}}})
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        repo = "paged/app"
        subject = make_manifest()
        push_manifest(c, repo, subject, "v1")
        refs = [make_manifest(subject=subject, artifact_type=SIG if i % 2 else SBOM,
                              annotations={"i": str(i), "pad": "p" * 100}) for i in range(9)]
        for m in refs:
            push_manifest(c, repo, m)
        descs, pages = follow(c, f"/v2/{repo}/referrers/{subject.digest}")
        assert [d["digest"] for d in descs] == sorted(m.digest for m in refs)
        assert len(pages) >= 3                           # ~330 bytes a descriptor, 700 a page
        for r in pages:
            listed = r.json()["manifests"]
            assert len(listed) >= 1
            assert len(listed) == 1 or len(r.content) <= 700 + 100     # the page's bytes + the envelope
        assert all(d["annotations"]["pad"] == "p" * 100 and d["size"] > 0 for d in descs)
        assert "link" not in pages[-1].headers

        # the filter is kept across pages and applied on each
        descs, pages = follow(c, f"/v2/{repo}/referrers/{subject.digest}?artifactType={SIG}")
        assert [d["digest"] for d in descs] == sorted(m.digest for m in refs if b'"artifactType":"' + SIG.encode()
                                                       in m.body)
        assert all(r.headers["oci-filters-applied"] == "artifactType" for r in pages)
        assert len(pages) >= 2 and "artifactType=" in pages[0].headers["link"]

        # a malformed continuation digest is refused
        assert_error(c.get(f"/v2/{repo}/referrers/{subject.digest}?last=sha256:nothex"), 400, "DIGEST_INVALID")


def test_one_descriptor_larger_than_a_page_is_served_alone(fastreg_factory: Callable[..., Any]) -> None:
    srv = fastreg_factory({"fastreg": {"referrers": {"pagebytes": 100}}})
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        repo = "paged/big"
        subject = make_manifest()
        push_manifest(c, repo, subject, "v1")
        refs = [make_manifest(subject=subject, artifact_type=SIG, annotations={"pad": "x" * 5000})
                for _ in range(3)]
        for m in refs:
            push_manifest(c, repo, m)
        descs, pages = follow(c, f"/v2/{repo}/referrers/{subject.digest}")
        assert [len(r.json()["manifests"]) for r in pages] == [1, 1, 1]
        assert sorted(d["digest"] for d in descs) == sorted(m.digest for m in refs)
