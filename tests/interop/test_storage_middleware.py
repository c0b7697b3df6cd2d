"""``middleware.storage`` with ``name: redirect``: blob reads answered 307 to a second server.

The second server is a real HTTP server (tests/interop/static_server.py, aiohttp) serving
fastreg's storage root; it logs every request, so the tests see which bytes came from it.

* GET, HEAD and ranged GET of a blob are 307 to ``baseurl`` + the blob's storage path; a client
  that follows the redirect gets the right bytes (and the right slice for a Range).
* An unknown blob, or one not linked into the repository, is 404 (no redirect).
* skopeo copies an image out through the redirect (the static server's log shows the blobs).
* ``storage.redirect.disable: true`` switches it off (as in Distribution).
* Differential: Distribution 2.8 (Debian's docker-registry) with the same middleware on the
  same data directory answers the same status and Location for GET, HEAD and Range GET.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.registry_client import Blob, make_manifest, push_blob, push_manifest, unique_repo
from tests.support.server import REPO_ROOT, free_port, wait_http

from .conftest import DistributionServer, make_distribution
from .images import ImageLayout, read_image_dir

pytestmark = [pytest.mark.e2e, pytest.mark.interop]


class Static:
    def __init__(self, root: Path, prefix: str, log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.prefix = prefix
        self.log_path = log
        with open(log.with_suffix(".err"), "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.interop.static_server", str(root), str(self.port), prefix, str(log)],
                cwd=str(REPO_ROOT), stdout=subprocess.DEVNULL, stderr=err,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, start_new_session=True)
        wait_http(f"http://127.0.0.1:{self.port}/", self.proc)

    @property
    def baseurl(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def requests(self) -> list[str]:
        return self.log_path.read_text().splitlines() if self.log_path.exists() else []

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)


@pytest.fixture
def static_factory(tmp_path: Path) -> Iterator[Callable[..., Static]]:
    """``static_factory(root, prefix="", port=None)``: a static server of `root`, stopped at the end."""
    started: list[Static] = []

    def start(root: Path, prefix: str = "", port: int | None = None) -> Static:
        s = Static(root, prefix, tmp_path / f"static{len(started)}.log", port)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def blob_path(digest: str) -> str:
    alg, hex_ = digest.split(":")
    return f"/docker/registry/v2/blobs/{alg}/{hex_[:2]}/{hex_}/data"


def redirect_config(baseurl: str, **storage: Any) -> dict[str, Any]:
    return {"middleware": {"storage": [{"name": "redirect", "options": {"baseurl": baseurl}}]},
            "storage": storage}


def test_blob_reads_are_redirected_to_baseurl(fastreg_factory: Any, static_factory: Any) -> None:
    # start fastreg first (its data directory is the static server's root), with a path in baseurl
    port = free_port()
    base = f"http://127.0.0.1:{port}/cdn"
    srv = fastreg_factory(config=redirect_config(base))
    static = static_factory(srv.root, "/cdn", port)
    repo = unique_repo("redirect")
    data = os.urandom(300_000)
    blob = Blob(data)
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        push_blob(c, repo, blob)
        want = base + blob_path(blob.digest)
        for method, headers in (("GET", {}), ("HEAD", {}), ("GET", {"Range": "bytes=10-19"})):
            r = c.request(method, f"/v2/{repo}/blobs/{blob.digest}", headers=headers)
            assert r.status_code == 307, (method, headers, r.status_code, r.text)
            assert r.headers["Location"] == want
        # a client following the redirect gets the blob from the static server
        with httpx.Client(timeout=30.0, follow_redirects=True) as f:
            got = f.get(f"{srv.url}/v2/{repo}/blobs/{blob.digest}")
            assert got.status_code == 200 and got.content == data
            assert str(got.url) == want
            head = f.head(f"{srv.url}/v2/{repo}/blobs/{blob.digest}")
            assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
            part = f.get(f"{srv.url}/v2/{repo}/blobs/{blob.digest}", headers={"Range": "bytes=1000-1999"})
            assert part.status_code == 206 and part.content == data[1000:2000]
        assert f"GET /cdn{blob_path(blob.digest)} 200" in static.requests()
        # unknown blobs, and blobs of another repository, are not redirected
        other = os.urandom(100)
        r = c.get(f"/v2/{repo}/blobs/{Blob(other).digest}")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
        r = c.head(f"/v2/{unique_repo('elsewhere')}/blobs/{blob.digest}")
        assert r.status_code == 404
        # manifests are served by fastreg itself
        m = make_manifest()
        assert push_manifest(c, repo, m, "v1").status_code == 201
        r = c.get(f"/v2/{repo}/manifests/v1", headers={"Accept": m.media_type})
        assert r.status_code == 200 and r.content == m.body


def test_redirect_disable_switches_the_middleware_off(fastreg_factory: Any) -> None:
    srv = fastreg_factory(config=redirect_config("http://127.0.0.1:9", redirect={"disable": True}))
    repo = unique_repo("noredirect")
    data = os.urandom(5000)
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        d = push_blob(c, repo, data)
        r = c.get(f"/v2/{repo}/blobs/{d}")
        assert r.status_code == 200 and r.content == data
        assert c.head(f"/v2/{repo}/blobs/{d}").status_code == 200
    assert "storage.redirect.disable is true" in srv.log()


def test_skopeo_copies_an_image_out_through_the_redirect(fastreg_factory: Any, static_factory: Any,
                                                        skopeo: Any, oci_image: ImageLayout,
                                                        tmp_path: Path) -> None:
    plain = fastreg_factory()                     # push through a plain server on the same data directory
    skopeo("copy", "--all", "--dest-tls-verify=false", oci_image.ref,
           f"docker://{plain.host}/cdn/image:v1", server=plain)
    static = static_factory(plain.root)
    redirecting = fastreg_factory(config={**redirect_config(static.baseurl),
                                          "storage": {"filesystem": {"rootdirectory": str(plain.root)}}})
    out = tmp_path / "out"
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{redirecting.host}/cdn/image:v1",
           f"oci:{out}:v1", server=redirecting)
    assert read_image_dir(out) == read_image_dir(oci_image.path)
    served = {line.split()[1] for line in static.requests() if line.startswith("GET ") and line.endswith(" 200")}
    wanted = {blob_path(d) for d in oci_image.layer_digests | oci_image.config_digests}
    assert wanted <= served, (wanted - served, static.requests())


def _answers(base: str, repo: str, digest: str) -> list[tuple[int, str | None]]:
    out = []
    with httpx.Client(base_url=base, timeout=30.0) as c:
        for method, headers in (("GET", {}), ("HEAD", {}), ("GET", {"Range": "bytes=0-9"})):
            r = c.request(method, f"/v2/{repo}/blobs/{digest}", headers=headers)
            out.append((r.status_code, r.headers.get("Location")))
        r = c.get(f"/v2/{repo}/blobs/{Blob(b'absent').digest}")
        out.append((r.status_code, r.headers.get("Location")))
    return out


def test_same_redirects_as_distribution(fastreg_factory: Any, tmp_path: Path) -> None:
    base = "https://cdn.example.com:5443"        # 2.8 drops a path in baseurl, so none here
    srv = fastreg_factory(config=redirect_config(base))
    repo = unique_repo("differential")
    with httpx.Client(base_url=srv.url, timeout=30.0) as c:
        d = push_blob(c, repo, os.urandom(2048))
    dist: DistributionServer = make_distribution(tmp_path / "distribution", srv.root, extra={
        "middleware": {"storage": [{"name": "redirect", "options": {"baseurl": base}}]}})
    dist.start()
    try:
        theirs = _answers(dist.url, repo, d)
    finally:
        dist.stop()
    ours = _answers(srv.url, repo, d)
    assert theirs[0] == (307, base + blob_path(d)), dist.log()
    assert ours == theirs


def test_distribution_refuses_unknown_storage_middleware_as_fastreg_does(tmp_path: Path) -> None:
    from fastreg.config import ConfigError, load_config
    mw = {"storage": [{"name": "nosuchthing", "options": {}}]}
    dist = make_distribution(tmp_path / "distribution", extra={"middleware": mw})
    proc = subprocess.run(["/usr/bin/docker-registry", "serve", str(dist.config_path)], check=False,
                          capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL,
                          env={k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")})
    assert proc.returncode != 0 and "nosuchthing" in proc.stdout + proc.stderr
    with pytest.raises(ConfigError, match="nosuchthing"):
        load_config(dist.config_path, env={})
    # `fastreg serve` on the same file stops at once, naming the entry
    ours = subprocess.run([sys.executable, "-m", "fastreg", "serve", "--config", str(dist.config_path)],
                          check=False, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert ours.returncode != 0
    assert ("middleware.storage.0: unable to configure storage middleware (nosuchthing)"
            in ours.stdout + ours.stderr), (ours.stdout, ours.stderr)
