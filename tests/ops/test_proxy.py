"""Pull-through cache in front of a real upstream: Debian's Distribution (`docker-registry`) on
127.0.0.1, an image pushed to it with httpx.  Counted from both sides: the upstream's access log
and fastreg's own "proxy fetch" log lines."""
from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.interop.conftest import DistributionServer, make_distribution
from tests.support.registry_client import (
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    Manifest,
    assert_error,
    make_config,
    make_index,
    make_layer,
    make_manifest,
    push_manifest,
)

from .authservers import SERVICE, TokenServer, htpasswd

pytestmark = [pytest.mark.e2e, pytest.mark.interop]
ACCEPT = f"{OCI_INDEX}, {OCI_MANIFEST}"
PULLERS = 50


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[DistributionServer]:
    srv = make_distribution(tmp_path / "upstream", extra={"log": {"level": "info", "accesslog": {"disabled": False}}})
    srv.start()
    yield srv
    srv.stop()


def _upstream_gets(upstream: DistributionServer, repo: str, kind: str, ref: str, method: str = "GET") -> int:
    return len(re.findall(rf'"{method} /v2/{re.escape(repo)}/{kind}/{re.escape(ref)} HTTP', upstream.log()))


def _fastreg_fetches(srv: Any, what: str) -> int:
    return srv.log().count(f"proxy fetch {what}")


async def _pull(url: str, repo: str, tag: str, image: Manifest, n: int) -> None:
    """`n` clients at once: each pulls the manifest by tag, then (all together) every blob,
    streamed and checked byte for byte (by digest)."""
    limits = httpx.Limits(max_connections=n * 2, max_keepalive_connections=n * 2)
    async with httpx.AsyncClient(base_url=url, timeout=120.0, limits=limits) as c:
        async def manifest() -> None:
            r = await c.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
            assert r.status_code == 200 and r.content == image.body, (r.status_code, r.text[:200])

        async def blob(b: Blob) -> None:
            h = hashlib.sha256()
            async with c.stream("GET", f"/v2/{repo}/blobs/{b.digest}") as rb:
                assert rb.status_code == 200, (b.digest, rb.status_code)
                assert int(rb.headers["content-length"]) == b.size
                async for chunk in rb.aiter_raw():
                    h.update(chunk)
            assert f"sha256:{h.hexdigest()}" == b.digest      # byte-exact

        await asyncio.gather(*(manifest() for _ in range(n)))
        await asyncio.gather(*(blob(b) for _ in range(n) for b in image.blobs))


@pytest.mark.parametrize("workers", [1, 2])
def test_fifty_concurrent_pulls_make_one_upstream_fetch_per_blob(
        upstream: DistributionServer, fastreg_factory: Callable[..., Any], workers: int) -> None:
    repo, tag = "lib/app", "v1"
    image = make_manifest(make_config(), [make_layer(16 << 20), make_layer(2 << 20), make_layer(1000)])
    with httpx.Client(base_url=upstream.url, timeout=60.0) as c:
        push_manifest(c, repo, image, tag)
    srv = fastreg_factory({"log": {"level": "info"}, "proxy": {"remoteurl": upstream.url}}, workers=workers)

    asyncio.run(_pull(srv.url, repo, tag, image, PULLERS))

    for b in image.blobs:
        assert _upstream_gets(upstream, repo, "blobs", b.digest) == 1, b.digest
        assert _fastreg_fetches(srv, f"blob {b.digest}") == 1, b.digest
    assert _upstream_gets(upstream, repo, "manifests", tag) == 1
    assert _fastreg_fetches(srv, f"manifest remote/{repo}@{tag}") == 1
    pids = set(re.findall(r"proxy fetch blob .* \(pid (\d+)\)", srv.log()))
    follows = srv.log().count("proxy follow ")
    print(f"\n{workers} worker(s): {PULLERS} concurrent pulls; upstream GETs per blob: "
          f"{[_upstream_gets(upstream, repo, 'blobs', b.digest) for b in image.blobs]}; fetching pids: "
          f"{len(pids)}; workers that followed another worker's fetch: {follows}")

    upstream.stop()                       # the cache alone now
    asyncio.run(_pull(srv.url, repo, tag, image, 3))
    # Pushes to a pull-through cache are refused, as Distribution does.
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        assert_error(c.post(f"/v2/{repo}/blobs/uploads/"), 405, "UNSUPPORTED")
        assert_error(c.put(f"/v2/{repo}/manifests/v2", content=image.body,
                           headers={"Content-Type": image.media_type}), 405, "UNSUPPORTED")
        assert_error(c.delete(f"/v2/{repo}/manifests/{image.digest}"), 405, "UNSUPPORTED")
        # Unknown upstream content with the upstream down: 503, not a crash.
        r = c.get(f"/v2/{repo}/manifests/other")
        assert r.status_code == 503, r.text


def test_tags_revalidate_after_ttl_and_stale_tags_survive_an_outage(
        upstream: DistributionServer, fastreg_factory: Callable[..., Any]) -> None:
    repo = "lib/moving"
    first, second = make_manifest(), make_manifest()
    with httpx.Client(base_url=upstream.url, timeout=60.0) as up:
        push_manifest(up, repo, first, "latest")
        srv = fastreg_factory({"log": {"level": "info"}, "proxy": {"remoteurl": upstream.url, "ttl": "1ms"}})
        with httpx.Client(base_url=srv.url, timeout=30.0, headers={"Accept": ACCEPT}) as c:
            assert c.get(f"/v2/{repo}/manifests/latest").content == first.body
            # Unchanged upstream: a HEAD, no new GET.
            assert c.get(f"/v2/{repo}/manifests/latest").content == first.body
            assert _upstream_gets(upstream, repo, "manifests", "latest", "HEAD") >= 1
            assert _upstream_gets(upstream, repo, "manifests", "latest") == 1
            # The tag moves upstream: the next pull follows it.
            push_manifest(up, repo, second, "latest")
            assert c.get(f"/v2/{repo}/manifests/latest").content == second.body
            for b in second.blobs:
                assert c.get(f"/v2/{repo}/blobs/{b.digest}").content == b.data
            # A digest pull of the old manifest is served from the cache.
            assert c.get(f"/v2/{repo}/manifests/{first.digest}").content == first.body
            upstream.stop()
            r = c.get(f"/v2/{repo}/manifests/latest")
            assert r.status_code == 200 and r.content == second.body
            assert "serving lib/moving:latest as cached" in srv.log()


def test_upstreams_by_name_prefix_next_to_local_repositories(
        upstream: DistributionServer, fastreg_factory: Callable[..., Any]) -> None:
    children = [make_manifest(), make_manifest()]
    index = make_index(children)
    with httpx.Client(base_url=upstream.url, timeout=60.0) as up:
        push_manifest(up, "library/multi", index, "1.0")
    srv = fastreg_factory({"log": {"level": "info"},
                           "fastreg": {"proxy": {"upstreams": {"up": {"remoteurl": upstream.url}}}}})
    with httpx.Client(base_url=srv.url, timeout=30.0, headers={"Accept": ACCEPT}) as c:
        assert c.get("/v2/_catalog").json()["repositories"] == []
        r = c.get("/v2/up/library/multi/manifests/1.0")
        assert r.status_code == 200 and r.content == index.body
        assert c.get("/v2/_catalog").json()["repositories"] == ["up/library/multi"]   # at once
        for child in children:
            assert c.get(f"/v2/up/library/multi/manifests/{child.digest}").content == child.body
            for b in child.blobs:
                r = c.head(f"/v2/up/library/multi/blobs/{b.digest}")       # HEAD: asked, not fetched
                assert r.status_code == 200 and int(r.headers["content-length"]) == b.size
                assert c.get(f"/v2/up/library/multi/blobs/{b.digest}").content == b.data
                # A range of a cached blob
                r = c.get(f"/v2/up/library/multi/blobs/{b.digest}", headers={"Range": "bytes=1-3"})
                assert r.status_code == 206 and r.content == b.data[1:4]
        assert c.get("/v2/up/library/multi/tags/list").json() == {"name": "up/library/multi", "tags": ["1.0"]}
        assert_error(c.get("/v2/up/library/nothing/manifests/1.0"), 404, "MANIFEST_UNKNOWN")
        assert_error(c.post("/v2/up/library/multi/blobs/uploads/"), 405, "UNSUPPORTED")
        # Outside the prefix: an ordinary registry.
        mine = make_manifest()
        push_manifest(c, "mine/app", mine, "v1")
        assert c.get("/v2/mine/app/manifests/v1").content == mine.body
        assert c.post("/v2/mine/app/blobs/uploads/").status_code == 202


def test_upstream_token_auth_handshake(tmp_path: Path, fastreg_factory: Callable[..., Any]) -> None:
    """Docker Hub's scheme: 401 + Bearer challenge → GET realm?service&scope with Basic → token."""
    tokens = TokenServer("alice", "s3cret", tmp_path)
    up = make_distribution(tmp_path / "upstream", extra={"auth": tokens.auth_config()})
    up.start()
    try:
        repo = "private/app"
        image = make_manifest()
        push_token = tokens.token("alice", [f"repository:{repo}:pull,push"])
        with httpx.Client(base_url=up.url, timeout=30.0, headers={"Authorization": f"Bearer {push_token}"}) as c:
            push_manifest(c, repo, image, "v1")
        assert httpx.get(f"{up.url}/v2/{repo}/manifests/v1").status_code == 401   # it does want a token
        # The realm is on another port of this host: the operator names its host (see tests/hostile/
        # test_upstream_guard.py for what happens when it is not named).
        realm = {"fastreg": {"proxy": {"allowedhosts": ["127.0.0.1"]}}}
        srv = fastreg_factory({"log": {"level": "info"}, **realm,
                               "proxy": {"remoteurl": up.url, "username": "alice", "password": "s3cret"}})
        asyncio.run(_pull(srv.url, repo, "v1", image, 5))
        asked = [r for r in tokens.requests if r["user"] == "alice"]
        assert asked and all(r["scope"] == [f"repository:{repo}:pull"] and r["service"] == [SERVICE] for r in asked)
        # Wrong credentials: the token server refuses, and so does the pull.
        bad = fastreg_factory({"proxy": {"remoteurl": up.url, "username": "alice", "password": "wrong"}, **realm})
        r = httpx.get(f"{bad.url}/v2/{repo}/manifests/v1", headers={"Accept": ACCEPT})
        assert r.status_code == 503 and "401" in r.text, r.text
    finally:
        up.stop()
        tokens.stop()


def test_upstream_basic_auth(tmp_path: Path, fastreg_factory: Callable[..., Any]) -> None:
    pw = htpasswd(tmp_path / "htpasswd", "bob", "hunter2")
    up = make_distribution(tmp_path / "upstream",
                           extra={"auth": {"htpasswd": {"realm": "upstream", "path": str(pw)}}})
    up.start()
    try:
        repo = "basic/app"
        image = make_manifest()
        with httpx.Client(base_url=up.url, timeout=30.0, auth=("bob", "hunter2")) as c:
            push_manifest(c, repo, image, "v1")
        srv = fastreg_factory({"proxy": {"remoteurl": up.url, "username": "bob", "password": "hunter2"}})
        asyncio.run(_pull(srv.url, repo, "v1", image, 3))
    finally:
        up.stop()


def test_pulls_through_the_cache_send_pull_events(upstream: DistributionServer, fastreg_factory: Callable[..., Any],
                                                   tmp_path: Path) -> None:
    """A miss streamed from upstream is a pull like any other for webhook receivers."""
    from tests.notify.conftest import Receiver
    from tests.notify.test_webhooks import hook_config, state_env

    receiver = Receiver()
    receiver.start()
    try:
        repo = "lib/evented"
        image = make_manifest()
        with httpx.Client(base_url=upstream.url, timeout=60.0) as c:
            push_manifest(c, repo, image, "v1")
        cfg = hook_config(receiver)
        cfg["proxy"] = {"remoteurl": upstream.url}
        srv = fastreg_factory(cfg, env=state_env(tmp_path))
        asyncio.run(_pull(srv.url, repo, "v1", image, 1))
        want = {image.digest, *(b.digest for b in image.blobs)}
        evs = receiver.wait_for(lambda es: want <= {e["target"]["digest"] for e in es if e["action"] == "pull"},
                                log=srv.log)
        sizes = {e["target"]["digest"]: e["target"]["size"] for e in evs if e["action"] == "pull"}
        assert all(sizes[b.digest] == b.size for b in image.blobs)
        assert all(e["target"]["repository"] == repo for e in evs)
    finally:
        receiver.stop()


def test_ranges_and_heads_of_content_the_cache_does_not_hold(
        upstream: DistributionServer, fastreg_factory: Callable[..., Any]) -> None:
    """A Range GET of a missing blob is served from the one upstream fetch (206, exact bytes);
    HEAD of a missing manifest asks upstream with HEAD and stores nothing (a GET would count
    against upstream pull rate limits)."""
    repo = "lib/ranged"
    big = make_layer(8 << 20)
    image = make_manifest(make_config(), [big])
    with httpx.Client(base_url=upstream.url, timeout=60.0) as up:
        push_manifest(up, repo, image, "v1")
    srv = fastreg_factory({"log": {"level": "info"}, "proxy": {"remoteurl": upstream.url}})
    with httpx.Client(base_url=srv.url, timeout=60.0, headers={"Accept": ACCEPT}) as c:
        r = c.head(f"/v2/{repo}/manifests/v1")
        assert r.status_code == 200 and r.headers["docker-content-digest"] == image.digest
        assert int(r.headers["content-length"]) == len(image.body)
        r = c.head(f"/v2/{repo}/manifests/{image.digest}")
        assert r.status_code == 200 and r.headers["docker-content-digest"] == image.digest
        assert _upstream_gets(upstream, repo, "manifests", "v1") == 0           # HEADs only
        assert _upstream_gets(upstream, repo, "manifests", "v1", "HEAD") == 1
        assert c.head(f"/v2/{repo}/manifests/nope").status_code == 404
        assert c.get(f"/v2/{repo}/manifests/v1").content == image.body       # now fetched and stored
        assert _upstream_gets(upstream, repo, "manifests", "v1") == 1

        async def ranges() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=srv.url, timeout=60.0) as ac:
                spans = [(0, 99), (5 << 20, (5 << 20) + 4095), (big.size - 10, big.size - 1)]
                return await asyncio.gather(*(ac.get(f"/v2/{repo}/blobs/{big.digest}",
                                                     headers={"Range": f"bytes={a}-{b}"}) for a, b in spans))
        for r, (a, b) in zip(asyncio.run(ranges()),
                             [(0, 99), (5 << 20, (5 << 20) + 4095), (big.size - 10, big.size - 1)], strict=True):
            assert r.status_code == 206, r.text
            assert r.headers["content-range"] == f"bytes {a}-{b}/{big.size}"
            assert r.content == big.data[a:b + 1]
        assert _upstream_gets(upstream, repo, "blobs", big.digest) == 1
        # Unsatisfiable range on a missing blob: 416 with the size, and still one fetch.
        cfg = image.blobs[0]
        r = c.get(f"/v2/{repo}/blobs/{cfg.digest}", headers={"Range": f"bytes={cfg.size + 5}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{cfg.size}"
        assert c.get(f"/v2/{repo}/blobs/{cfg.digest}").content == cfg.data
        assert c.get(f"/v2/{repo}/blobs/{big.digest}").content == big.data    # stored: served locally
        assert _upstream_gets(upstream, repo, "blobs", big.digest) == 1


def test_tag_list_served_locally_when_upstream_is_down(
        upstream: DistributionServer, fastreg_factory: Callable[..., Any]) -> None:
    """Upstream's answer while it answers; then the cache's own list: the tags it pulled, and
    NAME_UNKNOWN (as for any repository without tags) where it pulled only by digest."""
    tagged, by_digest = make_manifest(), make_manifest()
    with httpx.Client(base_url=upstream.url, timeout=60.0) as up:
        push_manifest(up, "lib/tagged", tagged, "v1")
        push_manifest(up, "lib/tagged", tagged, "v2")
        push_manifest(up, "lib/digest", by_digest, "v1")
    srv = fastreg_factory({"proxy": {"remoteurl": upstream.url}})
    with httpx.Client(base_url=srv.url, timeout=30.0, headers={"Accept": ACCEPT}) as c:
        assert c.get("/v2/lib/tagged/manifests/v1").content == tagged.body
        assert c.get(f"/v2/lib/digest/manifests/{by_digest.digest}").content == by_digest.body
        for repo in ("lib/tagged", "lib/digest"):           # forwarded
            assert c.get(f"/v2/{repo}/tags/list").json()["tags"] == (["v1", "v2"] if repo == "lib/tagged" else ["v1"])
        assert_error(c.get("/v2/lib/nothing/tags/list"), 404, "NAME_UNKNOWN")
        upstream.stop()
        assert c.get("/v2/lib/tagged/tags/list").json() == {"name": "lib/tagged", "tags": ["v1"]}
        r = c.get("/v2/lib/digest/tags/list")
        assert_error(r, 404, "NAME_UNKNOWN")
        assert r.json()["errors"][0]["detail"] == {"name": "lib/digest"}
        assert c.get(f"/v2/lib/digest/manifests/{by_digest.digest}").content == by_digest.body
