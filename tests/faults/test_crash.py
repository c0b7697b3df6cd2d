"""Crash tests: a real `fastreg serve` SIGKILLed at a chosen storage operation (the faulty wrapper's
`crash` action: the whole server dies inside that call, nothing is cleaned up), then restarted on
the same data directory.

At every crash point:
* the server really died (SIGKILL) and the client saw the connection drop, no answer;
* `fastreg check` on the data directory as the crash left it finds no damage;
* after the restart, every committed image — the baseline in another repository and the
  victim repository's previous image — pulls byte-exact;
* nothing half-made is visible: the interrupted blob, manifest or tag is either absent or
  complete and correct; an interrupted upload resumes from what is stored, or answers 404
  BLOB_UPLOAD_UNKNOWN;
* the client's retry completes the push, and the new image pulls byte-exact.
"""
from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.registry_client import (
    Manifest,
    assert_error,
    assert_pulls,
    make_layer,
    make_manifest,
    push_manifest,
    put_blob,
    put_manifest,
    q,
    relative,
)
from tests.support.server import FastregServer

from .common import faulty_storage, run_check, server

VICTIM = "crash/victim"
GLOB = f"*/repositories/{VICTIM}/"


@dataclass
class World:
    c: httpx.Client
    base: Manifest          # in crash/base, tag "base": committed before the crash
    old: Manifest           # in the victim, tag "t": committed before the crash
    new: Manifest           # what the interrupted push was pushing
    loc: str = ""           # an upload URL from before the crash


def _die(srv: FastregServer, action: Callable[[], Any]) -> None:
    """`action` must lose its connection to a server that SIGKILLs itself."""
    with pytest.raises(httpx.TransportError):
        action()
    assert srv.proc is not None
    assert srv.proc.wait(timeout=20) == -signal.SIGKILL, srv.log()
    srv.proc = None


def _push_blobs(w: World, m: Manifest) -> None:
    for b in m.blobs:
        r = put_blob(w.c, VICTIM, b)
        assert r.status_code == 201, r.text


# -- crash points: (rule, the interrupted request, checks after the restart) --------------------

UPLOADS = "crash/upload"     # the interrupted upload's repository: no other write matches its rule


def mid_patch(w: World) -> None:
    data = w.new.blobs[1].data
    w.loc = relative(w.c.post(f"/v2/{UPLOADS}/blobs/uploads/").headers["Location"])
    r = w.c.patch(w.loc, content=data[:1], headers={"Content-Range": "0-0"})     # one byte: one write
    assert r.status_code == 202, r.text
    w.loc = relative(r.headers["Location"])       # the client's last Location before the crash
    w.c.patch(w.loc, content=data[1:], headers={"Content-Range": f"1-{len(data) - 1}"})


def after_mid_patch(w: World) -> None:
    data = w.new.blobs[1].data
    r = w.c.get(w.loc)                              # the session survived: how much is stored?
    assert r.status_code == 204, r.text
    stored = int(r.headers["Range"].split("-")[1]) + 1
    assert 1 < stored < len(data)                   # the first PATCH, and part of the second
    r = w.c.patch(r.headers["Location"], content=data[stored:],
                  headers={"Content-Range": f"{stored}-{len(data) - 1}"})
    assert r.status_code == 202, r.text
    r = w.c.put(q(r.headers["Location"], digest=w.new.blobs[1].digest))
    assert r.status_code == 201, r.text
    assert w.c.get(f"/v2/{UPLOADS}/blobs/{w.new.blobs[1].digest}").content == w.new.blobs[1].data
    push_manifest(w.c, VICTIM, w.new, "t")


def blob_put(w: World) -> None:
    w.loc = relative(w.c.post(f"/v2/{VICTIM}/blobs/uploads/").headers["Location"])
    w.c.put(q(w.loc, digest=w.new.blobs[1].digest), content=w.new.blobs[1].data)


def after_rename_crash(w: World) -> None:
    """Killed before the verified data was renamed into blobs/: the session is intact and its
    PUT can simply be sent again."""
    layer = w.new.blobs[1]
    assert w.c.head(f"/v2/{VICTIM}/blobs/{layer.digest}").status_code == 404
    r = w.c.get(w.loc)
    assert r.status_code == 204 and r.headers["Range"] == f"0-{layer.size - 1}", r.text
    r = w.c.put(q(r.headers["Location"], digest=layer.digest))
    assert r.status_code == 201, r.text
    push_manifest(w.c, VICTIM, w.new, "t")


def after_unlinked_crash(w: World) -> None:
    """Killed between moving the blob into blobs/ and linking it: the blob is stored but not
    visible in the repository, the session's data is gone (404), and a re-push links it."""
    layer = w.new.blobs[1]
    assert w.c.head(f"/v2/{VICTIM}/blobs/{layer.digest}").status_code == 404
    assert_error(w.c.get(w.loc), 404, "BLOB_UPLOAD_UNKNOWN")
    push_manifest(w.c, VICTIM, w.new, "t")


def after_linked_crash(w: World) -> None:
    """Killed after the link (the last step of a commit), before the answer: the blob is complete
    and linked, the session gone (its directory became the blob's)."""
    layer = w.new.blobs[1]
    r = w.c.get(f"/v2/{VICTIM}/blobs/{layer.digest}")
    assert r.status_code == 200 and r.content == layer.data
    assert_error(w.c.get(w.loc), 404, "BLOB_UPLOAD_UNKNOWN")
    push_manifest(w.c, VICTIM, w.new, "t")


def manifest_put(w: World, tag: str = "t") -> httpx.Response:
    _push_blobs(w, w.new)
    return put_manifest(w.c, VICTIM, tag, w.new)


def after_manifest_crash(w: World) -> None:
    """Killed with the manifest's bytes stored but no revision link: it does not exist."""
    assert w.c.get(f"/v2/{VICTIM}/manifests/{w.new.digest}").status_code == 404
    assert put_manifest(w.c, VICTIM, "t", w.new).status_code == 201


def after_tag_crash(w: World) -> None:
    """Killed before the tag moved: the manifest exists by digest, the tag still names the old
    image (checked by the caller); the retry moves it."""
    assert_pulls(w.c, VICTIM, w.new.digest, w.new)
    assert put_manifest(w.c, VICTIM, "t", w.new).status_code == 201


def after_new_tag_crash(w: World) -> None:
    """Killed while creating a new tag: it is not there at all — not listed, not resolvable."""
    assert w.c.get(f"/v2/{VICTIM}/tags/list").json()["tags"] == ["t"]
    assert w.c.get(f"/v2/{VICTIM}/manifests/fresh").status_code == 404
    assert put_manifest(w.c, VICTIM, "fresh", w.new).status_code == 201
    assert put_manifest(w.c, VICTIM, "t", w.new).status_code == 201


def after_new_tag_written(w: World) -> None:
    """Killed after a new tag's current link, before its index entry: the tag is complete."""
    assert w.c.get(f"/v2/{VICTIM}/tags/list").json()["tags"] == ["fresh", "t"]
    assert_pulls(w.c, VICTIM, "fresh", w.new)
    assert put_manifest(w.c, VICTIM, "t", w.new).status_code == 201


def after_tag_written(w: World) -> None:
    """Killed after the tag was written, before the answer: the push is complete."""
    assert_pulls(w.c, VICTIM, "t", w.new)


POINTS: dict[str, tuple[dict[str, Any], Callable[[World], Any], Callable[[World], None], bool]] = {
    # id: (crash rule, interrupted request, check after restart, did the tag move to `new`?)
    # `nth` skips the calls of pushing `old` first: 2 blobs (one move — the session directory
    # renamed into blobs/ — and one layer link each), one revision link, one tag.
    "mid-patch": ({"op": "write", "path": f"*/repositories/{UPLOADS}/_uploads/*", "when": "during", "nth": 2},
                  mid_patch, after_mid_patch, False),
    "before-commit-rename": ({"op": "move", "path": GLOB + "_uploads/*", "when": "before", "nth": 3},
                             blob_put, after_rename_crash, False),
    "between-blob-and-link": ({"op": "put_content", "path": GLOB + "_layers/*", "when": "before", "nth": 3},
                              blob_put, after_unlinked_crash, False),
    "after-link": ({"op": "put_content", "path": GLOB + "_layers/*", "when": "after", "nth": 3},
                   blob_put, after_linked_crash, False),
    "mid-manifest-write": ({"op": "put_content", "path": GLOB + "_manifests/revisions/*", "when": "before",
                            "nth": 2}, manifest_put, after_manifest_crash, False),
    "mid-tag-update": ({"op": "put_content", "path": GLOB + "_manifests/tags/t/current/link", "when": "before",
                        "nth": 2}, manifest_put, after_tag_crash, False),
    "new-tag": ({"op": "put_content", "path": GLOB + "_manifests/tags/fresh/current/link", "when": "before"},
                lambda w: manifest_put(w, "fresh"), after_new_tag_crash, False),
    "new-tag-written": ({"op": "put_content", "path": GLOB + "_manifests/tags/fresh/current/link",
                         "when": "after"}, lambda w: manifest_put(w, "fresh"), after_new_tag_written, False),
    "tag-written": ({"op": "put_content", "path": GLOB + "_manifests/tags/t/current/link", "when": "after",
                     "nth": 2}, manifest_put, after_tag_written, True),
}


@pytest.mark.parametrize("point", list(POINTS))
def test_crash_point(point: str, tmp_path: Path) -> None:
    rule, interrupted, after, moved = POINTS[point]
    srv = server(tmp_path, faulty_storage(tmp_path / "data", [{**rule, "action": "crash"}]))
    base, old = make_manifest(layers=[make_layer(20_000)]), make_manifest()
    new = make_manifest(layers=[make_layer(3_000_000)])     # several body frames per request
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            push_manifest(c, "crash/base", base, "base")
            push_manifest(c, VICTIM, old, "t")
            w = World(c, base, old, new)
            _die(srv, lambda: interrupted(w))
    finally:
        srv.stop()
    rc, report = run_check(srv.root, tmp_path)           # the data directory exactly as the crash left it
    assert (rc, report["problems"]) == (0, [])
    srv = server(tmp_path)                              # plain filesystem, same data directory
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            w.c = c
            assert_pulls(c, "crash/base", "base", base)
            assert_pulls(c, VICTIM, old.digest, old)
            assert_pulls(c, VICTIM, "t", new if moved else old)
            after(w)
            assert_pulls(c, VICTIM, "t", new)
            assert_pulls(c, "crash/base", "base", base)
    finally:
        srv.stop()
    rc, report = run_check(srv.root, tmp_path)
    assert (rc, report["problems"]) == (0, [])
