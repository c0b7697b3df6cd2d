"""An eventually consistent store under a real `fastreg serve`: the faulty wrapper's stale mode
serves tag links and tag listings as they were before each change, for the next 2 reads (the
model of S3 before 2020 for overwrites, deletes and listings).

What a client may see: a tag a little late — still the previous image, or not yet there —
but always a whole image, byte for byte, with every blob it names; never a mix, never a
tag naming content that is missing; and the store converges.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.registry_client import (
    Manifest,
    assert_error,
    assert_pulls,
    make_layer,
    make_manifest,
    push_manifest,
)

from .common import faulty_storage, run_check, server

REPO = "stale/app"


@pytest.fixture(params=["filesystem", "inmemory"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[httpx.Client]:
    stale = {"reads": 2, "path": "*/_manifests/tags/*"}
    srv = server(tmp_path, faulty_storage(tmp_path / "data" if request.param == "filesystem" else None, [],
                                          driver=request.param, stale=stale))
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            yield c
    finally:
        srv.stop()
    if request.param == "filesystem":
        rc, report = run_check(srv.root, tmp_path)
        assert (rc, report["problems"]) == (0, [])


def observe(c: httpx.Client, ref: str, allowed: dict[str, Manifest | None], final: str) -> list[str]:
    """Read `ref` until it shows `final` (at most 6 reads); every answer is one of `allowed`
    (None: 404), pulled whole.  Returns what was seen, in order."""
    seen: list[str] = []
    for _ in range(6):
        r = c.get(f"/v2/{REPO}/manifests/{ref}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        if r.status_code == 404:
            assert None in allowed.values(), r.text
            seen.append(next(k for k, v in allowed.items() if v is None))
        else:
            assert r.status_code == 200, r.text
            name = next((k for k, v in allowed.items() if v is not None and v.body == r.content), None)
            assert name is not None, f"{ref} served a manifest that is none of {list(allowed)}"
            m = allowed[name]
            assert m is not None
            assert_pulls(c, REPO, m.digest, m)      # whole: every blob present and exact
            seen.append(name)
        if seen[-1] == final:
            return seen
    raise AssertionError(f"{ref} never converged to {final}: {seen}")


def test_stale_tags_are_whole_images_and_converge(client: httpx.Client) -> None:
    c = client
    a, b = make_manifest(layers=[make_layer(50_000)]), make_manifest(layers=[make_layer(60_000)])
    push_manifest(c, REPO, a, "t")
    assert observe(c, "t", {"missing": None, "a": a}, "a") == ["missing", "missing", "a"]
    push_manifest(c, REPO, b, "t")
    assert observe(c, "t", {"a": a, "b": b}, "b") == ["a", "a", "b"]     # the old image, whole
    push_manifest(c, REPO, a, "u")
    lists = [c.get(f"/v2/{REPO}/tags/list") for _ in range(3)]
    # both tag directories are new to the listing (no listing has caught up with them yet): the
    # repository looks as it did before its first tag, unknown to the tag list
    for r in lists[:2]:
        assert_error(r, 404, "NAME_UNKNOWN")
    assert lists[2].json()["tags"] == ["t", "u"]
    assert c.delete(f"/v2/{REPO}/manifests/t").status_code == 202
    assert observe(c, "t", {"b": b, "gone": None}, "gone") == ["b", "b", "gone"]
    assert observe(c, "u", {"missing": None, "a": a}, "a") == ["missing", "missing", "a"]
    assert_pulls(c, REPO, "u", a)
