"""Fuzzing a whole push through the ASGI app, in-process (inmemory and filesystem storage):
POST → PATCH* (random chunk sizes, each body in random ASGI frames, with or without
Content-Range, with stray bad requests between) → PUT → manifest PUT → GET by tag and digest,
GET and Range GET of the blob.  Everything read back must be byte-exact; every refusal must
be the documented one and leave the session able to go on."""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastreg.digest as fdigest
from fastreg import _digest_py
from tests.support.asgi import call, make_app, state_of

from .fuzzing import budget

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_repo_ids = itertools.count()


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="module", params=[("inmemory", "compiled"), ("filesystem", "compiled"),
                                        ("filesystem", "pure")], ids=lambda p: "-".join(p))
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The app on one storage and one digest engine (the pure twin cannot resume a saved state:
    it re-hashes from storage, or reuses this process's live hasher)."""
    storage, engine = request.param
    mp = pytest.MonkeyPatch()
    if engine == "pure":
        mp.setattr(fdigest, "engine", _digest_py)
    elif not fdigest.EXTENSION:  # pragma: no cover - .ci/run builds the extension
        pytest.skip("the compiled digest engine is not built")
    runner = asyncio.Runner()
    app = make_app(tmp_path_factory.mktemp(f"asgi-{storage}-{engine}"), storage)
    try:
        yield runner, app
    finally:
        runner.run(app.close())
        runner.close()
        mp.undo()


def _frames(chunk: bytes, sizes: list[int]) -> list[bytes]:
    out, i = [], 0
    for s in sizes:
        if i >= len(chunk):
            break
        out.append(chunk[i:i + s])
        i += s
    if i < len(chunk):
        out.append(chunk[i:])
    return out or [b""]


blob_data = st.builds(lambda b, k: b * k, st.binary(min_size=0, max_size=4000), st.integers(1, 60))
plan = st.fixed_dictionaries({
    "data": blob_data,
    "cuts": st.lists(st.integers(0, 240_000), max_size=6),
    "frames": st.lists(st.integers(1, 70_000), min_size=1, max_size=5),
    "content_range": st.booleans(),
    "monolithic": st.booleans(),
    "final_in_put": st.booleans(),
    "stray": st.lists(st.sampled_from(["bad-range", "stale-token", "status", "bad-digest-put", "none"]), max_size=3),
    "range": st.tuples(st.integers(0, 300_000), st.integers(0, 300_000)),
    "tag": st.from_regex(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}", fullmatch=True),
})


async def _push(app: Any, repo: str, p: dict[str, Any]) -> str:
    data: bytes = p["data"]
    d = sha(data)
    if p["monolithic"]:
        r = await call(app, "POST", f"/v2/{repo}/blobs/uploads/?digest={d}",
                       {"content-length": str(len(data))}, _frames(data, p["frames"]))
        assert r.status == 201, r.body
        return d
    r = await call(app, "POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202
    path, q = r.location()
    token, stale = state_of(q), state_of(q)
    cuts = sorted({min(c, len(data)) for c in p["cuts"]} | {len(data)})
    if p["final_in_put"] and len(cuts) > 1:
        last_cut = cuts[-2]
        cuts = cuts[:-1]
    else:
        last_cut = len(data)
    offset = 0
    stray = list(p["stray"])
    for c in cuts:
        chunk = data[offset:c]
        if stray:
            await _stray(app, path, token, stale, offset, stray.pop())
        hdrs = {"content-length": str(len(chunk))}
        if p["content_range"] and chunk:
            hdrs["content-range"] = f"{offset}-{c - 1}"
        r = await call(app, "PATCH", f"{path}?_state={token}", hdrs, _frames(chunk, p["frames"]))
        assert r.status == 202, r.body
        assert r.headers["range"] == f"0-{max(c - 1, 0)}"
        stale, (path, q) = token, r.location()
        token = state_of(q)
        offset = c
    tail = data[last_cut:]
    r = await call(app, "PUT", f"{path}?_state={token}&digest={d}", {"content-length": str(len(tail))},
                   _frames(tail, p["frames"]))
    assert r.status == 201, r.body
    assert r.headers["docker-content-digest"] == d
    return d


async def _stray(app: Any, path: str, token: str, stale: str, offset: int, kind: str) -> None:
    """A wrong request in the middle of an upload: refused as documented, the session unharmed."""
    if kind == "bad-range":
        r = await call(app, "PATCH", f"{path}?_state={token}", {"content-range": f"{offset + 7}-{offset + 9}",
                                                                 "content-length": "3"}, [b"abc"])
        assert (r.status, r.code) == (416, "RANGE_INVALID")
    elif kind == "stale-token" and stale != token:
        r = await call(app, "PATCH", f"{path}?_state={stale}", {"content-length": "3"}, [b"abc"])
        assert (r.status, r.code) == (400, "BLOB_UPLOAD_INVALID")
    elif kind == "status":
        r = await call(app, "GET", f"{path}?_state={token}")
        assert r.status == 204 and r.headers["range"] == f"0-{max(offset - 1, 0)}"
    elif kind == "bad-digest-put":
        r = await call(app, "PUT", f"{path}?_state={token}&digest=sha256:{'A' * 64}", {"content-length": "0"})
        assert (r.status, r.code) == (400, "DIGEST_INVALID")


async def _scenario(app: Any, p: dict[str, Any]) -> None:
    repo = f"fuzz/r{next(_repo_ids)}"
    data: bytes = p["data"]
    d = await _push(app, repo, p)
    cfg = b'{"fuzz":true}'
    r = await call(app, "POST", f"/v2/{repo}/blobs/uploads/?digest={sha(cfg)}", {}, [cfg])
    assert r.status == 201
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg),
                                  "size": len(cfg)},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d,
                                   "size": len(data)}]}).encode()
    r = await call(app, "PUT", f"/v2/{repo}/manifests/{p['tag']}", {"content-type": OCI_MANIFEST},
                   _frames(body, p["frames"]))
    assert r.status == 201, r.body
    for ref in (p["tag"], sha(body)):
        r = await call(app, "GET", f"/v2/{repo}/manifests/{ref}", {"accept": OCI_MANIFEST})
        assert r.status == 200 and r.body == body and r.headers["docker-content-digest"] == sha(body)
    r = await call(app, "GET", f"/v2/{repo}/blobs/{d}")
    assert r.status == 200 and r.body == data
    a, b = sorted(p["range"])
    r = await call(app, "GET", f"/v2/{repo}/blobs/{d}", {"range": f"bytes={a}-{b}"})
    if a >= len(data):
        assert (r.status, r.code) == (416, "RANGE_INVALID")
    else:
        assert r.status == 206 and r.body == data[a:b + 1]
        assert r.headers["content-range"] == f"bytes {a}-{min(b, len(data) - 1)}/{len(data)}"


@budget(70)
@given(p=plan)
def test_whole_push_through_asgi(world: Any, p: dict[str, Any]) -> None:
    runner, app = world
    runner.run(_scenario(app, p))
