"""Storage faults under a real `fastreg serve`: the faulty wrapper around the filesystem and the
in-memory driver, one rule per repository, so each case fails exactly the step it names.

For every case: the failing request answers a 5xx with the OCI error envelope (507 for a full
disk, 500 for I/O errors and timeouts), never a traceback or a hang; nothing half-made becomes
visible (the repository still serves what it served before, byte for byte); once the fault has
passed (`times: 1`) the same push succeeds and pulls back byte-exact.  On the filesystem,
`fastreg check` then finds no damage in what the faults left behind.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.support.registry_client import (
    Blob,
    Manifest,
    assert_pulls,
    make_layer,
    make_manifest,
    push_manifest,
    put_blob,
    put_manifest,
    q,
)
from tests.support.server import FastregServer

from .common import assert_5xx_json, faulty_storage, run_check, server


@dataclass
class Case:
    name: str                                   # the repository is f/<name>
    rules: Callable[[Case], list[dict[str, Any]]]
    image: Manifest = field(default_factory=lambda: make_manifest(layers=[make_layer(300_000)]))
    old: Manifest = field(default_factory=make_manifest)

    @property
    def repo(self) -> str:
        return f"f/{self.name}"

    @property
    def glob(self) -> str:
        return f"*/repositories/{self.repo}/"

    @property
    def layer(self) -> Blob:
        return self.image.blobs[1]


def _blob_glob(b: Blob) -> str:
    hex_ = b.digest.split(":")[1]
    return f"*/blobs/sha256/{hex_[:2]}/{hex_}/data"


CASES = [
    Case("layer-link-enospc", lambda c: [{"op": "put_content", "path": c.glob + "_layers/*", "action": "enospc",
                                           "nth": 3, "times": 1}]),
    # (layers past uploads.WHOLE_BODY_MAX: the in-memory driver writes smaller whole bodies to their blob directly)
    Case("commit-move-eio", image=make_manifest(layers=[make_layer(1_500_000)]),
         rules=lambda c: [{"op": "move", "path": c.glob + "_uploads/*", "action": "eio", "nth": 3, "times": 1}]),
    Case("commit-fsync-enospc", image=make_manifest(layers=[make_layer(1_500_000)]),
         rules=lambda c: [{"op": "commit", "path": c.glob + "_uploads/*", "action": "enospc", "nth": 3,
                           "times": 1}]),
    Case("whole-blob-eio", lambda c: [{"op": "put_content", "path": _blob_glob(c.layer), "action": "eio",
                                        "times": 1}]),
    Case("patch-write-enospc", lambda c: [{"op": "write", "path": c.glob + "_uploads/*", "action": "enospc",
                                            "nth": 2, "times": 1}]),
    Case("revision-timeout", lambda c: [{"op": "put_content", "path": c.glob + "_manifests/revisions/*",
                                          "action": "timeout", "delay": 0.05, "nth": 2, "times": 1}]),
    Case("tag-before-eio", lambda c: [{"op": "put_content", "path": c.glob + "_manifests/tags/*/current/link",
                                        "action": "eio", "nth": 2, "times": 1}]),
    Case("tag-after-eio", lambda c: [{"op": "put_content", "path": c.glob + "_manifests/tags/*/current/link",
                                       "action": "eio", "when": "after", "nth": 2, "times": 1}]),
    Case("stat-timeout", lambda c: [{"op": "stat", "path": c.glob + "_layers/*", "action": "timeout", "delay": 0.05,
                                      "nth": 3, "times": 1}]),
    Case("list-eio", lambda c: [{"op": "list", "path": c.glob + "_manifests/tags", "action": "eio", "times": 1}]),
    Case("read-eio", image=make_manifest(layers=[make_layer(2_500_000)]),
         rules=lambda c: [{"op": "reader", "path": _blob_glob(c.layer), "action": "eio", "when": "after", "times": 1}]),
    Case("read-slow", lambda c: [{"op": "reader", "path": _blob_glob(c.layer), "action": "slow", "delay": 0.2}]),
]
BY_NAME = {c.name: c for c in CASES}


@pytest.fixture(scope="module", params=["filesystem", "inmemory"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastregServer]:
    tmp = tmp_path_factory.mktemp(f"faults-{request.param}")
    rules = [r for c in CASES for r in c.rules(c)]
    if request.param == "inmemory":     # the old image's small blobs went to their blobs directly: no
        for c in (BY_NAME["commit-move-eio"], BY_NAME["commit-fsync-enospc"]):      # session move or commit
            for r in rules:
                if r["path"] == c.glob + "_uploads/*" and r["op"] in ("move", "commit"):
                    r["nth"] = 1
    s = server(tmp, faulty_storage(tmp / "data" if request.param == "filesystem" else None, rules,
                                   driver=request.param))
    yield s
    s.stop()
    if request.param == "filesystem":       # after every case: what the faults left is not damage
        rc, report = run_check(s.root, tmp)
        assert rc == 0 and report["ok"], report["problems"]
        assert report["manifests"] > 0 and report["tags"] == report["repositories"]   # one tag per repository


@pytest.fixture
def c(srv: FastregServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=30.0) as client:
        yield client


def _push_old_then_fail(c: httpx.Client, case: Case, step: Callable[[], httpx.Response], status: int = 500) -> None:
    """`old` is pushed (and tagged) first; `step` hits the fault: 5xx, and `old` is still what is served."""
    push_manifest(c, case.repo, case.old, "t")
    assert_5xx_json(step(), status)
    assert_pulls(c, case.repo, "t", case.old)


def test_blob_commit_faults(c: httpx.Client, request: pytest.FixtureRequest) -> None:
    cases = [("layer-link-enospc", 507), ("commit-move-eio", 500), ("commit-fsync-enospc", 507)]
    if request.node.callspec.params["srv"] == "inmemory":    # a small whole body, written to its blob at once
        cases.append(("whole-blob-eio", 500))
    for name, status in cases:
        case = BY_NAME[name]
        _push_old_then_fail(c, case, lambda case=case: put_blob(c, case.repo, case.layer), status)  # type: ignore[misc]
        # not linked: the half-made blob is not visible, and a manifest naming it is refused
        assert c.head(f"/v2/{case.repo}/blobs/{case.layer.digest}").status_code == 404
        push_manifest(c, case.repo, case.image, "t")
        assert_pulls(c, case.repo, "t", case.image)


def test_patch_fault_leaves_a_resumable_upload(c: httpx.Client) -> None:
    case = BY_NAME["patch-write-enospc"]
    data = case.layer.data
    r = c.post(f"/v2/{case.repo}/blobs/uploads/")
    loc = r.headers["Location"]
    half = 1            # one byte is one write however the body is framed: the 2nd write is the next PATCH's
    r = c.patch(loc, content=data[:half], headers={"Content-Range": f"0-{half - 1}",
                                                   "Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    # answered 507 before the rest of its body is read: the answer closes the connection and says
    # so, and the client's next request goes out on a new one
    r = c.patch(loc, content=data[half:], headers={"Content-Range": f"{half}-{len(data) - 1}"})
    assert_5xx_json(r, 507)
    assert r.headers.get("connection") == "close", r.headers
    # the session survives: its status says how much is stored, and the push goes on from there
    r = c.get(loc)
    assert r.status_code == 204, r.text
    stored = int(r.headers["Range"].split("-")[1]) + 1
    assert stored == half
    r = c.put(q(r.headers["Location"], digest=case.layer.digest), content=data[stored:])
    assert r.status_code == 201, r.text
    for b in (case.image.blobs[0],):
        assert put_blob(c, case.repo, b).status_code == 201
    assert put_manifest(c, case.repo, "t", case.image).status_code == 201
    assert_pulls(c, case.repo, "t", case.image)


def test_manifest_and_tag_faults(c: httpx.Client) -> None:
    for name in ("revision-timeout", "tag-before-eio"):
        case = BY_NAME[name]

        def step(case: Case = case) -> httpx.Response:
            for b in case.image.blobs:
                assert put_blob(c, case.repo, b).status_code == 201
            return put_manifest(c, case.repo, "t", case.image)
        _push_old_then_fail(c, case, step)
        if name == "revision-timeout":   # stored as data only: not a manifest of the repository
            assert c.get(f"/v2/{case.repo}/manifests/{case.image.digest}").status_code == 404
        assert put_manifest(c, case.repo, "t", case.image).status_code == 201
        assert_pulls(c, case.repo, "t", case.image)
        assert_pulls(c, case.repo, case.old.digest, case.old)


def test_tag_written_but_answer_failed(c: httpx.Client) -> None:
    """The fault strikes after the tag was written: the client hears 500, the tag names the new,
    complete image — a push that is retried, never a tag naming half an image."""
    case = BY_NAME["tag-after-eio"]
    push_manifest(c, case.repo, case.old, "t")
    for b in case.image.blobs:
        assert put_blob(c, case.repo, b).status_code == 201
    assert_5xx_json(put_manifest(c, case.repo, "t", case.image))
    assert_pulls(c, case.repo, "t", case.image)
    assert put_manifest(c, case.repo, "t", case.image).status_code == 201


def test_read_faults(c: httpx.Client, srv: FastregServer) -> None:
    case = BY_NAME["stat-timeout"]
    push_manifest(c, case.repo, case.image, "t")
    assert_5xx_json(c.get(f"/v2/{case.repo}/blobs/{case.layer.digest}"))
    assert_pulls(c, case.repo, "t", case.image)

    case = BY_NAME["list-eio"]
    push_manifest(c, case.repo, case.image, "t")
    assert_5xx_json(c.get(f"/v2/{case.repo}/tags/list"))
    assert c.get(f"/v2/{case.repo}/tags/list").json()["tags"] == ["t"]

    # a read error once the body has started: the transfer is cut short (the client sees an
    # incomplete body, as with any broken connection), never a complete answer with other bytes
    case = BY_NAME["read-eio"]
    push_manifest(c, case.repo, case.image, "t")
    with pytest.raises(httpx.HTTPError), c.stream("GET", f"/v2/{case.repo}/blobs/{case.layer.digest}") as r:
        assert r.status_code == 200
        body = b"".join(r.iter_bytes())
        assert body != case.layer.data
    assert_pulls(c, case.repo, "t", case.image)
    # ... and the log says so in one line, not with a traceback (it is the storage, not a bug)
    path = f"/v2/{case.repo}/blobs/{case.layer.digest}"
    assert srv.log_path is not None
    log = srv.log_path.read_text()
    assert f"of {path} were sent; connection aborted" in log, log[-2000:]
    assert f"error while streaming {path}" not in log

    case = BY_NAME["read-slow"]
    push_manifest(c, case.repo, case.image, "t")
    assert_pulls(c, case.repo, "t", case.image)
