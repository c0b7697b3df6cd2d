"""The pull-through cache in front of a hostile upstream (tests/hostile/upstream.py, a real server on
127.0.0.1): wrong bytes under a digest, redirects to an internal listener, HTML and CR/LF media
types, bodies that never end, a token realm on another host.  Each case shows what the client
got, that nothing was stored (the data directory is unchanged), and, where it applies, that the
internal listener or the realm received nothing."""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastreg.netguard import address_allowed
from tests.conftest import FastregServer, free_port, make_fastreg

from .support import snapshot, wait_unchanged
from .upstream import (
    OCI_MANIFEST,
    HostileUpstream,
    Seen,
    answer,
    digest,
    endless,
    head_bytes,
    manifest_of,
    trickle,
)

pytestmark = pytest.mark.e2e
OCTET = [("Content-Type", "application/octet-stream")]
SIZE = 3 << 20


@pytest.fixture(scope="module")
def upstream() -> Iterator[HostileUpstream]:
    up = HostileUpstream()
    up.start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def internal() -> Iterator[HostileUpstream]:
    """An internal service on another loopback port: the cache must never be sent there."""
    svc = HostileUpstream()
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, upstream: HostileUpstream) -> Iterator[FastregServer]:
    dport = free_port()
    srv = make_fastreg(tmp_path_factory.mktemp("cache"), {
        "log": {"level": "info"}, "proxy": {"remoteurl": upstream.url},
        "http": {"debug": {"addr": f"127.0.0.1:{dport}", "prometheus": {"enabled": True, "path": "/metrics"}}}})
    srv.start()
    srv.debug_port = dport  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def refused_count(srv: FastregServer, reason: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{srv.debug_port}/metrics").text  # type: ignore[attr-defined]
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "registry_proxy_refused_total" and s.labels.get("reason") == reason)


def stream_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, int, str | None]:
    """(status, bytes received, the error that ended the body or None if it completed)."""
    got = 0
    with httpx.Client(timeout=60.0) as c, c.stream("GET", url, headers=headers or {}) as r:
        try:
            for chunk in r.iter_raw():
                got += len(chunk)
        except httpx.HTTPError as exc:
            return r.status_code, got, type(exc).__name__
        return r.status_code, got, None


def curl(url: str, out: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", "-o", str(out), *args, url], capture_output=True, timeout=60, check=False)


def image(repo: str, up: HostileUpstream, layer: bytes, served: bytes | None = None) -> tuple[bytes, str]:
    """Script `repo:v1` on the upstream: a valid manifest naming `layer`, whose blob is answered
    with `served` (other bytes, when given).  Returns (manifest, layer digest)."""
    config = b'{"architecture":"amd64","os":"linux"}'
    body = manifest_of(config, [layer])
    hdrs = [("Content-Type", OCI_MANIFEST), ("Docker-Content-Digest", digest(body))]
    up.route("GET", f"/v2/{repo}/manifests/v1", answer(200, body, hdrs))
    up.route("GET", f"/v2/{repo}/manifests/{digest(body)}", answer(200, body, hdrs))
    up.route("GET", f"/v2/{repo}/blobs/{digest(config)}", answer(200, config, OCTET))
    up.route("GET", f"/v2/{repo}/blobs/{digest(layer)}", answer(200, layer if served is None else served, OCTET))
    return body, digest(layer)


# -- blobs: nothing unverified is served whole ----------------------------------------------------

def test_wrong_bytes_are_cut_short_for_every_client_and_never_stored(
        cache: FastregServer, upstream: HostileUpstream, tmp_path: Path) -> None:
    layer = os.urandom(SIZE)
    wrong = bytearray(layer)
    wrong[-1] ^= 1                                     # one bit off, in the very last byte
    _, d = image("bad/bytes", upstream, layer, bytes(wrong))
    url = f"{cache.url}/v2/bad/bytes/blobs/{d}"
    before = snapshot(cache.root)
    mismatches = refused_count(cache, "digest_mismatch")

    status, got, error = stream_get(url)              # httpx, HTTP/1.1
    assert status == 200 and error is not None and got < SIZE, (status, got, error)
    status, got, error = stream_get(url, {"Range": "bytes=0-99"})     # a range of the blob being fetched
    assert status == 206 and error is not None and got < 100, (status, got, error)
    p = curl(url, tmp_path / "h1")                    # curl, HTTP/1.1: "transfer closed with N bytes remaining"
    assert p.returncode == 18, p.stderr
    assert (tmp_path / "h1").stat().st_size < SIZE
    p = curl(url, tmp_path / "h2", "--http2-prior-knowledge")      # curl, h2c: the stream is reset
    assert p.returncode == 92 and b"was not closed cleanly" in p.stderr, p.stderr
    assert not (tmp_path / "h2").exists() or (tmp_path / "h2").stat().st_size < SIZE

    wait_unchanged(cache.root, before)               # nothing stored, not even a link
    assert "does not match its digest" in cache.log()
    assert refused_count(cache, "digest_mismatch") >= mismatches + 4
    assert upstream.hits(f"/v2/bad/bytes/blobs/{d}") >= 4        # every try fetched again: none was kept


def test_wrong_bytes_are_cut_short_for_concurrent_clients_across_workers(
        tmp_path: Path, upstream: HostileUpstream) -> None:
    """Two workers, twelve clients at once: the fetching worker's clients and those of the worker
    that follows its spool all get the body cut short; one upstream fetch serves them all."""
    layer = os.urandom(SIZE)
    _, d = image("bad/many", upstream, layer, os.urandom(SIZE))
    srv = make_fastreg(tmp_path, {"log": {"level": "info"}, "proxy": {"remoteurl": upstream.url}}, workers=2)
    srv.start()
    try:
        before = snapshot(srv.root)

        async def pull() -> tuple[int, int, str | None]:
            got = 0
            async with httpx.AsyncClient(timeout=60.0) as c, c.stream("GET", f"{srv.url}/v2/bad/many/blobs/{d}") as r:
                try:
                    async for chunk in r.aiter_raw():
                        got += len(chunk)
                except httpx.HTTPError as exc:
                    return r.status_code, got, type(exc).__name__
                return r.status_code, got, None

        async def storm() -> list[tuple[int, int, str | None]]:
            return await asyncio.gather(*(pull() for _ in range(12)))
        results = asyncio.run(storm())
        assert all(status == 200 and error is not None and got < SIZE for status, got, error in results), results
        wait_unchanged(srv.root, before)
        assert srv.log().count("does not match its digest") >= 1
    finally:
        srv.stop()


def test_blob_bodies_without_end_or_cut_short_are_neither_served_whole_nor_stored(
        cache: FastregServer, upstream: HostileUpstream) -> None:
    layer = os.urandom(1 << 20)
    _, d = image("bad/endless", upstream, layer)
    upstream.route("GET", f"/v2/bad/endless/blobs/{d}", endless(OCTET))           # chunked, no end
    _, d2 = image("bad/short", upstream, layer[:-10] + b"x" * 10)
    upstream.route("GET", f"/v2/bad/short/blobs/{d2}", answer(200, layer[:-10], OCTET, length=len(layer)))
    before = snapshot(cache.root)
    r = httpx.get(f"{cache.url}/v2/bad/endless/blobs/{d}", timeout=60.0)    # no length: refused at once
    assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE", r.text
    status, got, error = stream_get(f"{cache.url}/v2/bad/short/blobs/{d2}")
    assert status == 200 and error is not None and got < len(layer), (status, got, error)
    wait_unchanged(cache.root, before)


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_pulling_wrong_bytes_through_the_cache_fails(
        cache: FastregServer, upstream: HostileUpstream, tmp_path: Path) -> None:
    layer = os.urandom(SIZE)
    _, d = image("bad/skopeo", upstream, layer, os.urandom(SIZE))
    dest = tmp_path / "image"
    p = subprocess.run(["skopeo", "copy", "--retry-times", "0", "--src-tls-verify=false",
                        f"docker://{cache.host}/bad/skopeo:v1", f"oci:{dest}"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode != 0, p.stdout
    assert upstream.hits(f"/v2/bad/skopeo/blobs/{d}") >= 1, p.stderr     # it did ask for the layer
    alg, hex_ = d.split(":")
    assert not (dest / "blobs" / alg / hex_).exists()
    assert not (cache.root / "docker/registry/v2/blobs" / alg / hex_[:2] / hex_).exists()
    assert not (cache.root / "docker/registry/v2/repositories/bad/skopeo/_layers" / alg / hex_).exists()


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_podman_pulling_wrong_bytes_through_the_cache_fails_and_keeps_nothing(
        cache: FastregServer, upstream: HostileUpstream, tmp_path: Path) -> None:
    layer = os.urandom(1 << 20)
    _, d = image("bad/podman", upstream, layer, os.urandom(1 << 20))
    short = Path(tempfile.mkdtemp(prefix="pm-", dir="/tmp"))       # podman: runroot < 50 characters
    base = ["podman", "--storage-driver", "vfs", "--root", str(tmp_path / "root"), "--runroot",
            str(short / "run"), "--tmpdir", str(tmp_path), "--events-backend", "none",
            "--cgroup-manager", "cgroupfs"]
    ref = f"{cache.host}/bad/podman:v1"
    p = subprocess.run([*base, "pull", "--tls-verify=false", ref], capture_output=True, text=True, timeout=300,
                       check=False)
    assert p.returncode != 0, p.stdout + p.stderr
    assert upstream.hits(f"/v2/bad/podman/blobs/{d}") >= 1, p.stderr     # it did ask for the layer
    listed = subprocess.run([*base, "images", "--format", "{{.Repository}}"], capture_output=True, text=True,
                            timeout=60, check=True)
    assert "bad/podman" not in listed.stdout
    alg, hex_ = d.split(":")
    assert not (cache.root / "docker/registry/v2/repositories/bad/podman/_layers" / alg / hex_).exists()
    shutil.rmtree(short, ignore_errors=True)


# -- redirects and realms ------------------------------------------------------------------------

def redirect(to: str) -> object:
    return answer(307, b"", [("Location", to)])


def test_redirects_to_an_internal_listener_are_refused(
        cache: FastregServer, upstream: HostileUpstream, internal: HostileUpstream) -> None:
    layer = os.urandom(4096)
    body, d = image("bad/redirect", upstream, layer)
    internal.route("GET", "/secret", answer(200, layer, OCTET))          # it even has the right bytes
    internal.route("GET", "/manifest", answer(200, body, [("Content-Type", OCI_MANIFEST)]))
    targets = [f"http://127.0.0.1:{internal.port}/secret", f"http://localhost:{internal.port}/secret",
               f"http://[::ffff:127.0.0.1]:{internal.port}/secret", "http://169.254.169.254/latest/meta-data/",
               "file:///etc/passwd"]
    before = snapshot(cache.root)
    with httpx.Client(base_url=cache.url, timeout=60.0) as c:
        for target in targets:
            upstream.route("GET", f"/v2/bad/redirect/blobs/{d}", redirect(target))  # type: ignore[arg-type]
            r = c.get(f"/v2/bad/redirect/blobs/{d}")
            assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE", (target, r.text)
        upstream.route("GET", "/v2/bad/redirect/manifests/v2",
                       redirect(f"http://127.0.0.1:{internal.port}/manifest"))  # type: ignore[arg-type]
        r = c.get("/v2/bad/redirect/manifests/v2")
        assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE", r.text
    assert internal.seen == []
    wait_unchanged(cache.root, before)
    assert "refused address" in cache.log()


def test_allowed_hosts_are_followed_without_credentials_and_each_hop_is_checked(
        tmp_path: Path, upstream: HostileUpstream, internal: HostileUpstream) -> None:
    """A CDN the operator listed (`localhost` here) is followed, and gets no credentials; a hop
    from it to an unlisted internal address is still refused."""
    cdn = HostileUpstream(host="127.0.0.1")
    cdn.start()
    try:
        layer, other = os.urandom(70_000), os.urandom(5000)
        _, d = image("cdn/app", upstream, layer)
        _, d2 = image("cdn/app2", upstream, other)

        def needs_basic(to: str) -> object:
            async def handle(req: Seen, w: object) -> None:
                if not req.headers.get("authorization", "").startswith("Basic "):
                    await answer(401, b"", [("WWW-Authenticate", 'Basic realm="up"')])(req, w)  # type: ignore[arg-type]
                else:
                    await answer(307, b"", [("Location", to)])(req, w)  # type: ignore[arg-type]
            return handle
        upstream.route("GET", f"/v2/cdn/app/blobs/{d}", needs_basic(f"http://localhost:{cdn.port}/b"))  # type: ignore[arg-type]
        cdn.route("GET", "/b", answer(200, layer, OCTET))
        upstream.route("GET", f"/v2/cdn/app2/blobs/{d2}", redirect(f"http://localhost:{cdn.port}/hop"))  # type: ignore[arg-type]
        cdn.route("GET", "/hop", answer(302, b"", [("Location", f"http://127.0.0.1:{internal.port}/secret")]))
        srv = make_fastreg(tmp_path, {"proxy": {"remoteurl": upstream.url, "username": "u", "password": "p"},
                                      "fastreg": {"proxy": {"allowedhosts": ["localhost"]}}})
        srv.start()
        try:
            with httpx.Client(base_url=srv.url, timeout=60.0) as c:
                r = c.get(f"/v2/cdn/app/blobs/{d}")
                assert r.status_code == 200 and r.content == layer
                r = c.get(f"/v2/cdn/app2/blobs/{d2}")
                assert r.status_code == 503, r.text
        finally:
            srv.stop()
        assert [s.path for s in cdn.seen] == ["/b", "/hop"]
        assert all("authorization" not in s.headers for s in cdn.seen)
        assert internal.seen == []
    finally:
        cdn.stop()


def test_a_token_realm_on_another_host_gets_nothing_unless_named(
        tmp_path: Path, upstream: HostileUpstream) -> None:
    realm = HostileUpstream()
    realm.start()
    try:
        realm.route("GET", "/token", answer(200, b'{"token": "t0k3n", "expires_in": 300}',
                                            [("Content-Type", "application/json")]))
        challenge = f'Bearer realm="http://localhost:{realm.port}/token",service="up"'
        upstream.route("GET", "/v2/realm/app/manifests/v1", answer(401, b"", [("WWW-Authenticate", challenge)]))
        creds = {"remoteurl": upstream.url, "username": "alice", "password": "s3cret"}
        srv = make_fastreg(tmp_path / "a", {"proxy": creds})
        srv.start()
        try:
            before = snapshot(srv.root)
            r = httpx.get(f"{srv.url}/v2/realm/app/manifests/v1", timeout=60.0)
            assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE", r.text
            wait_unchanged(srv.root, before)
        finally:
            srv.stop()
        assert realm.seen == []                   # neither the request nor the credentials
        named = make_fastreg(tmp_path / "b", {"proxy": creds, "fastreg": {"proxy": {"allowedhosts": ["localhost"]}}})
        named.start()
        try:
            httpx.get(f"{named.url}/v2/realm/app/manifests/v1", timeout=60.0)
        finally:
            named.stop()
        assert realm.seen and all(s.headers.get("authorization", "").startswith("Basic ") for s in realm.seen)
    finally:
        realm.stop()


# -- manifests: validated as pushes, never served with another media type -------------------------

def _doc(media_type: str) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": media_type,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": "sha256:" + "a" * 64, "size": 2},
                       "layers": [], "annotations": {"x": "<script>alert(document.cookie)</script>"}}).encode()


MANIFESTS = {
    # case: (body, Content-Type header sent raw, expected status, code)
    "html": (_doc("text/html"), "text/html", 502, "MANIFEST_INVALID"),
    "html-header-only": (_doc(OCI_MANIFEST), "text/html", 502, "MANIFEST_INVALID"),
    "crlf": (_doc(OCI_MANIFEST + "\r\nSet-Cookie: a=b"), OCI_MANIFEST, 502, "MANIFEST_INVALID"),
    "non-latin-1": (_doc(OCI_MANIFEST + "\u2028\u4e2d"), OCI_MANIFEST, 502, "MANIFEST_INVALID"),
    "duplicate-keys": (b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'", "config": '
                       b'{"mediaType": "a/b", "digest": "sha256:' + b"a" * 64 + b'", "size": 2}, "layers": [], '
                       b'"mediaType": "text/html"}', "", 502, "MANIFEST_INVALID"),
    "not-json": (b"<html><script>alert(1)</script></html>", "text/html", 502, "MANIFEST_INVALID"),
    "too-large": (b"{" + b" " * (4 << 20) + b"}", OCI_MANIFEST, 502, "MANIFEST_INVALID"),
}


@pytest.mark.parametrize("case", list(MANIFESTS))
def test_manifests_the_registry_would_refuse_are_neither_stored_nor_served(
        cache: FastregServer, upstream: HostileUpstream, case: str) -> None:
    body, ctype, status, code = MANIFESTS[case]
    repo = f"badmf/{case}"

    async def handle(req: Seen, w: object) -> None:      # raw: the Content-Type as the upstream wrote it
        hs = [("Content-Length", str(len(body)))] + ([("Content-Type", ctype)] if ctype else [])
        w.write(head_bytes(200, hs) + (b"" if req.method == "HEAD" else body))  # type: ignore[attr-defined]
        await w.drain()  # type: ignore[attr-defined]
    for ref in ("v1", digest(body)):
        upstream.route("GET", f"/v2/{repo}/manifests/{ref}", handle)
    before = snapshot(cache.root)
    with httpx.Client(base_url=cache.url, timeout=60.0) as c:
        for ref in ("v1", digest(body)):
            r = c.head(f"/v2/{repo}/manifests/{ref}")
            assert r.headers.get("content-type", "").split(";")[0] != "text/html"
            assert r.status_code >= 400 or r.headers["content-type"] == OCI_MANIFEST, r.headers
            r = c.get(f"/v2/{repo}/manifests/{ref}")
            assert r.status_code == status and r.json()["errors"][0]["code"] == code, r.text
            assert r.headers["content-type"].startswith("application/json")
            assert r.headers["x-content-type-options"] == "nosniff"
            assert b"<script>" not in r.content
    wait_unchanged(cache.root, before)


def test_endless_manifests_and_tag_lists_are_cut_at_their_limit(
        cache: FastregServer, upstream: HostileUpstream) -> None:
    upstream.route("GET", "/v2/endless/app/manifests/v1", endless([("Content-Type", OCI_MANIFEST)]))
    upstream.route("GET", "/v2/endless/app/tags/list", endless([("Content-Type", "application/json")]))
    upstream.route("GET", "/v2/endless/lying/manifests/v1",
                   endless([("Content-Type", OCI_MANIFEST)], length=100))
    before = snapshot(cache.root)
    with httpx.Client(base_url=cache.url, timeout=60.0) as c:
        r = c.get("/v2/endless/app/manifests/v1")
        assert r.status_code == 502 and r.json()["errors"][0]["code"] == "MANIFEST_INVALID", r.text
        assert "limit" in r.text
        r = c.get("/v2/endless/lying/manifests/v1")       # Content-Length: 100, then more: not a manifest
        assert r.status_code == 502 and r.json()["errors"][0]["code"] == "MANIFEST_INVALID", r.text
        r = c.get("/v2/endless/app/tags/list")             # the local list instead: there is none
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN", r.text
    wait_unchanged(cache.root, before)
    assert refused_count(cache, "too_large") >= 2


def test_slow_upstreams_are_cut_at_the_total_deadline_not_only_per_read(
        tmp_path: Path, upstream: HostileUpstream) -> None:
    """Each byte comes well within the per-read timeout; the whole never within
    `fastreg.proxy.deadline` (2 s here)."""
    layer = os.urandom(40)
    body, d = image("slow/app", upstream, layer)
    upstream.route("GET", "/v2/slow/app/manifests/v1", trickle([("Content-Type", OCI_MANIFEST)], body, 0.1))
    upstream.route("GET", f"/v2/slow/app/blobs/{d}", trickle(OCTET, layer, 0.2))
    upstream.route("GET", "/v2/slow/app/tags/list", trickle([], b'{"tags": ["v1"]}' + b" " * 100, 0.1))
    srv = make_fastreg(tmp_path, {"log": {"level": "info"}, "proxy": {"remoteurl": upstream.url},
                                  "fastreg": {"proxy": {"deadline": "2s"}}})
    srv.start()
    try:
        before = snapshot(srv.root)
        with httpx.Client(base_url=srv.url, timeout=60.0) as c:
            r = c.get("/v2/slow/app/manifests/v1")
            assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNAVAILABLE", r.text
            assert "no complete answer within 2s" in r.text
            r = c.get("/v2/slow/app/tags/list")           # the local list instead: there is none
            assert r.status_code == 404, r.text
        status, got, error = stream_get(f"{srv.url}/v2/slow/app/blobs/{d}")
        assert status == 200 and error is not None and got < len(layer), (status, got, error)
        wait_unchanged(srv.root, before)
        assert srv.log().count("no complete answer within") >= 3
    finally:
        srv.stop()


def test_forwarded_tag_lists_carry_only_checked_names_and_links(
        cache: FastregServer, upstream: HostileUpstream) -> None:
    doc = {"name": "other/name", "tags": ["v1", "v2"], "extra": "<script>"}
    upstream.route("GET", "/v2/tl/app/tags/list", answer(200, json.dumps(doc).encode(), [
        ("Content-Type", "text/html"), ("Link", '</v2/tl/app/tags/list?last=v2&n=2>; rel="next"')]))
    upstream.route("GET", "/v2/tl/bad/tags/list", answer(200, b'{"tags": ["ok", "../../x\\r\\nSet-Cookie: a"]}'))
    with httpx.Client(base_url=cache.url, timeout=60.0) as c:
        r = c.get("/v2/tl/app/tags/list")
        assert r.status_code == 200 and r.json() == {"name": "tl/app", "tags": ["v1", "v2"]}
        assert r.headers["content-type"] == "application/json"
        assert r.headers["link"] == '</v2/tl/app/tags/list?last=v2&n=2>; rel="next"'
        r = c.get("/v2/tl/bad/tags/list")                  # invalid names: the local list (none)
        assert r.status_code == 404, r.text


def test_a_stored_manifest_with_a_non_manifest_media_type_is_not_served(cache: FastregServer) -> None:
    """Content a cache stored before proxied manifests were validated."""
    body = _doc("text/html")
    d = digest(body)
    alg, hex_ = d.split(":")
    v2 = cache.root / "docker/registry/v2"
    data = v2 / "blobs" / alg / hex_[:2] / hex_ / "data"
    data.parent.mkdir(parents=True)
    data.write_bytes(body)
    link = v2 / "repositories/old/html/_manifests/revisions" / alg / hex_ / "link"
    link.parent.mkdir(parents=True)
    link.write_text(d)
    r = httpx.get(f"{cache.url}/v2/old/html/manifests/{d}", timeout=30.0)
    assert r.status_code == 500 and r.json()["errors"][0]["code"] == "UNKNOWN", r.text
    assert "not a manifest media type" in r.text
    assert r.headers["content-type"].startswith("application/json")
    assert b"<script>" not in r.content


def test_every_answer_says_nosniff(cache: FastregServer, upstream: HostileUpstream) -> None:
    layer = os.urandom(1000)
    _, d = image("ok/app", upstream, layer)
    with httpx.Client(base_url=cache.url, timeout=30.0) as c:
        for r in (c.get("/v2/"), c.get("/v2/ok/app/manifests/v1"), c.get(f"/v2/ok/app/blobs/{d}"),
                  c.get(f"/v2/ok/app/blobs/{d}"), c.get("/v2/_catalog"), c.get("/nothing"),
                  c.get("/v2/ok/app/manifests/nope")):
            assert r.headers.get_list("x-content-type-options") == ["nosniff"], (r.url, r.headers)
        assert c.get(f"/v2/ok/app/blobs/{d}").content == layer


# -- the shared address guard --------------------------------------------------------------------

@pytest.mark.parametrize(("addr", "ok"), [
    ("64:ff9b::7f00:1", False), ("64:ff9b::a00:1", False), ("64:ff9b::a9fe:a9fe", False),   # NAT64
    ("64:ff9b:1::a00:1", False), ("::127.0.0.1", False), ("::10.0.0.1", False),           # compatible
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),         # Teredo, client 10.0.0.1
    ("2002:a9fe:a9fe::", False), ("::ffff:169.254.169.254", False), ("fe80::1%1", False),
    ("64:ff9b::808:808", True), ("2002:808:808::", True), ("::ffff:8.8.8.8", True),
])
def test_the_address_guard_sees_through_ipv6_mappings(addr: str, ok: bool) -> None:
    assert address_allowed(ipaddress.ip_address(addr)) is ok
