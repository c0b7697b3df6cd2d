"""The web page's fixtures: one headless Chromium (Debian's ``chromium`` + ``chromium-driver``,
driven by Selenium) for the whole session, and images pushed over the real API.

Chromium starts in about a second or two; every test shares it and opens what it needs.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.auth.conftest import test_pki  # noqa: F401  (the token-signing certificate)
from tests.e2e.helpers import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Blob,
    Manifest,
    canonical,
    make_layer,
    make_manifest,
    push_blob,
    push_manifest,
)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SPDX = "application/spdx+json"
COSIGN_SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
PLATFORMS = (("linux", "amd64", None), ("linux", "arm64", "v8"))


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    chromium, driver_bin = shutil.which("chromium") or CHROMIUM, shutil.which("chromedriver") or CHROMEDRIVER
    if not (shutil.which(chromium) and shutil.which(driver_bin)):
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-sync", "--disable-component-update"):
        opts.add_argument(arg)
    # the browser console (CSP violations, script errors) is read by the tests
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=driver_bin))
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


@dataclass
class Pushed:
    """What a test pushed, to compare the page against."""

    repo: str
    tag: str
    index: Manifest
    platforms: list[tuple[str, Manifest, Blob, list[Blob]]]     # (platform, manifest, config, layers)
    sbom: Manifest
    signature: Manifest


def image_config(os_: str, arch: str, variant: str | None) -> Blob:
    doc: dict[str, Any] = {"architecture": arch, "os": os_, "created": "2026-01-02T03:04:05Z",
                           "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin"],
                                      "Labels": {"org.example.note": "<b>not html</b>"}},
                           "rootfs": {"type": "layers", "diff_ids": []},
                           "history": [{"created": "2026-01-02T03:04:05Z", "created_by": "ADD base.tar /"},
                                       {"created": "2026-01-02T03:04:06Z", "created_by": f"RUN build-{arch}"}]}
    if variant:
        doc["variant"] = variant
    return Blob(canonical(doc), OCI_CONFIG)


def push_multiarch(c: httpx.Client, repo: str, tag: str) -> Pushed:
    """An OCI index of two platforms sharing a base layer, an SBOM and a signature on the index."""
    shared = make_layer(3000, OCI_LAYER)
    platforms = []
    for os_, arch, variant in PLATFORMS:
        cfg = image_config(os_, arch, variant)
        layers = [shared, make_layer(1000 + len(arch) * 111, OCI_LAYER)]
        m = make_manifest(cfg, layers, annotations={"org.opencontainers.image.title": f"demo {arch}"})
        push_manifest(c, repo, m)
        platforms.append(("/".join(p for p in (os_, arch, variant) if p), m, cfg, layers))
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX,
           "manifests": [m.descriptor(platform={"os": os_, "architecture": arch, **({"variant": v} if v else {})})
                         for (os_, arch, v), (_, m, _, _) in zip(PLATFORMS, platforms, strict=False)],
           "annotations": {"org.opencontainers.image.description": "<script>alert(1)</script>"}}
    index = Manifest(canonical(doc), OCI_INDEX)
    push_manifest(c, repo, index, tag, with_blobs=False)
    empty = Blob(b"{}", OCI_EMPTY)
    sbom = make_manifest(empty, [Blob(json.dumps({"spdxVersion": "SPDX-2.3"}).encode(), SPDX)],
                         subject=index, artifact_type=SPDX,
                         annotations={"org.opencontainers.image.created": "2026-01-02T03:04:07Z"})
    sig = make_manifest(empty, [Blob(b"signature-bytes", "application/vnd.dev.cosign.simplesigning.v1+json")],
                        subject=index, artifact_type=COSIGN_SIG)
    push_manifest(c, repo, sbom)
    push_manifest(c, repo, sig)
    return Pushed(repo, tag, index, platforms, sbom, sig)


def push_docker_list(c: httpx.Client, repo: str, tag: str) -> tuple[Manifest, list[tuple[str, Manifest]]]:
    """A Docker manifest list of two schema2 manifests (the other pair of media types)."""
    children = []
    for os_, arch, variant in PLATFORMS:
        cfg = Blob(image_config(os_, arch, variant).data, DOCKER_CONFIG)
        m = make_manifest(cfg, [make_layer(700, DOCKER_LAYER)], media_type=DOCKER_MANIFEST)
        push_manifest(c, repo, m)
        children.append(("/".join(p for p in (os_, arch, variant) if p), m))
    doc = {"schemaVersion": 2, "mediaType": DOCKER_LIST,
           "manifests": [m.descriptor(platform={"os": os_, "architecture": arch, **({"variant": v} if v else {})})
                         for (os_, arch, v), (_, m) in zip(PLATFORMS, children, strict=False)]}
    lst = Manifest(canonical(doc), DOCKER_LIST)
    push_manifest(c, repo, lst, tag, with_blobs=False)
    return lst, children


def push_small(c: httpx.Client, repo: str, tags: list[str]) -> Manifest:
    m = make_manifest()
    for b in m.blobs:
        push_blob(c, repo, b)
    for t in tags:
        resp = c.put(f"/v2/{repo}/manifests/{t}", content=m.body, headers={"Content-Type": OCI_MANIFEST})
        assert resp.status_code == 201, resp.text
    return m
