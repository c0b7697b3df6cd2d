"""The OCI distribution-spec conformance suite itself (the Go ``conformance.test`` of
distribution-spec v1.1.1, the binary registries certify with), run against ``fastreg serve``.

Three runs, so that every spec fastreg supports runs at least once (some specs exclude each other):

1. all four workflows (pull, push, content discovery, content management) with
   ``OCI_AUTOMATIC_CROSSMOUNT=1``: fastreg mounts a blob named without ``from`` when it holds it;
2. all four workflows with ``OCI_AUTOMATIC_CROSSMOUNT=0`` against htpasswd auth, where automatic
   mounting cannot happen (a mount without ``from`` names no repository the caller may pull);
3. pull against content the suite did not push (``OCI_TAG_NAME``, ``OCI_MANIFEST_DIGEST``,
   ``OCI_BLOB_DIGEST``): the pull workflow's "from the environment" setup.

Any failed spec fails the test; every skip must be one listed in ``EXPECTED_SKIPS`` with its reason
(tests/README.md keeps the same list).  Where the binary is absent (a clone without the tools
beside it) the test says so in one line and is skipped, never counted as passed; CI has it.
"""
from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from tests.conftest import REPO_ROOT
from tests.e2e.helpers import make_config, make_layer, make_manifest, push_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.interop]

SUITE = "OCI Distribution Conformance Tests "


def conformance_binary() -> Path | None:
    """FASTREG_OCI_CONFORMANCE, else the shared tools folder beside the checkout."""
    candidates = [os.environ.get("FASTREG_OCI_CONFORMANCE", ""),
                  str(REPO_ROOT.parent / "shared/tools/oci-conformance/conformance.test"),
                  "/work/shared/tools/oci-conformance/conformance.test"]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return Path(c)
    return None


BINARY = conformance_binary()

# Skips that remain, by run, each with why (the same list is in tests/README.md).
PRESET_PULL = "Pull Setup Get tag name from environment"
ONLY_WITH_PRESET_CONTENT = {
    PRESET_PULL: "reads content named in OCI_TAG_NAME/OCI_MANIFEST_DIGEST/OCI_BLOB_DIGEST: runs in the third run",
    "Content Discovery Setup Populate registry with test tags (no push)":
        "runs only with OCI_TAG_LIST, which also skips the suite's referrers setup while its referrers specs "
        "still run and then fail on any registry: content discovery runs with its own setup instead",
}
MOUNT_REFUSED = {
    "Push Cross-Repository Blob Mount Cross-mounting of nonexistent blob should yield session id":
        "runs only when a mount naming its source is refused (202); fastreg mounts whenever the caller may "
        "pull the source, which the suite's own user always may",
}
EXPECTED_SKIPS: dict[str, dict[str, str]] = {
    "automatic-mount": {
        **ONLY_WITH_PRESET_CONTENT, **MOUNT_REFUSED,
        "Push Cross-Repository Blob Mount Cross-mounting without from, and automatic content discovery "
        "disabled should return a 202": "its twin (enabled → 201) runs here; this one in the second run",
    },
    "no-automatic-mount": {
        **ONLY_WITH_PRESET_CONTENT, **MOUNT_REFUSED,
        "Push Cross-Repository Blob Mount Cross-mounting without from, and automatic content discovery "
        "enabled should return a 201": "its twin (disabled → 202) runs here; this one in the first run",
    },
    # the third run leaves out push and content management on purpose, and with preset content
    # the suite's own setup steps give way to the two that read it
}


@dataclass
class Report:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    output: str = ""


def run_suite(url: str, report_dir: Path, env: dict[str, str]) -> Report:
    assert BINARY is not None
    report_dir.mkdir(parents=True, exist_ok=True)
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(report_dir),
        "OCI_ROOT_URL": url, "OCI_NAMESPACE": "conformance/app", "OCI_CROSSMOUNT_NAMESPACE": "conformance/other",
        "OCI_REPORT_DIR": str(report_dir), **env,
    }
    proc = subprocess.run([str(BINARY), "-ginkgo.no-color"], check=False, cwd=report_dir, env=full_env,
                          capture_output=True, text=True, errors="replace", timeout=600)  # OCI_DEBUG: binary bodies
    rep = Report(output=proc.stdout[-6000:] + proc.stderr[-2000:])
    junit = report_dir / "junit.xml"
    assert junit.exists(), f"the suite wrote no junit.xml (exit {proc.returncode}):\n{rep.output}"
    for case in ET.parse(junit).iter("testcase"):
        name = (case.get("name") or "").removeprefix(SUITE)
        if case.find("failure") is not None or case.find("error") is not None:
            rep.failed.append(name)
        elif case.find("skipped") is not None:
            rep.skipped.append(name)
        else:
            rep.passed.append(name)
    # the suite's own verdict agrees with what junit.xml says
    assert (proc.returncode == 0) == (not rep.failed), (proc.returncode, rep.failed, rep.output)
    return rep


def check(rep: Report, run: str, minimum_passed: int) -> None:
    assert not rep.failed, f"failed specs in the {run} run: {rep.failed}\n{rep.output}"
    unexpected = sorted(set(rep.skipped) - set(EXPECTED_SKIPS.get(run, {})))
    assert not unexpected, f"skipped specs with no stated reason in the {run} run: {unexpected}"
    assert len(rep.passed) >= minimum_passed, (run, len(rep.passed), rep.output)


needs_binary = pytest.mark.skipif(
    BINARY is None, reason="the OCI conformance binary (shared/tools/oci-conformance/conformance.test, "
                           "or FASTREG_OCI_CONFORMANCE) is not here: the spec's own suite did not run")

WORKFLOWS = {"OCI_TEST_PULL": "1", "OCI_TEST_PUSH": "1", "OCI_TEST_CONTENT_DISCOVERY": "1",
             "OCI_TEST_CONTENT_MANAGEMENT": "1"}


@needs_binary
def test_conformance_all_workflows_with_automatic_mount(fastreg_factory: Any, tmp_path: Path) -> None:
    srv = fastreg_factory(workers=2)
    rep = run_suite(srv.url, tmp_path / "report", {**WORKFLOWS, "OCI_AUTOMATIC_CROSSMOUNT": "1"})
    check(rep, "automatic-mount", minimum_passed=75)
    assert "Push Cross-Repository Blob Mount Cross-mounting without from, and automatic content discovery " \
           "enabled should return a 201" in rep.passed


@needs_binary
def test_conformance_all_workflows_without_automatic_mount(fastreg_factory: Any, tmp_path: Path) -> None:
    """htpasswd auth: a mount without ``from`` names no repository the caller may pull, so fastreg
    answers it with a new upload session (202), as Distribution does."""
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("oci:" + bcrypt.hashpw(b"conformance-pw", bcrypt.gensalt(5)).decode() + "\n")
    srv = fastreg_factory({"auth": {"htpasswd": {"realm": "conformance", "path": str(htpasswd)}}}, workers=2)
    assert httpx.get(srv.url + "/v2/").status_code == 401      # auth really is on
    rep = run_suite(srv.url, tmp_path / "report", {**WORKFLOWS, "OCI_AUTOMATIC_CROSSMOUNT": "0",
                                                   "OCI_USERNAME": "oci", "OCI_PASSWORD": "conformance-pw"})
    check(rep, "no-automatic-mount", minimum_passed=75)
    assert "Push Cross-Repository Blob Mount Cross-mounting without from, and automatic content discovery " \
           "disabled should return a 202" in rep.passed


@needs_binary
def test_conformance_against_preset_content(fastreg_factory: Any, tmp_path: Path) -> None:
    """Pull of an image pushed beforehand (not by the suite)."""
    srv = fastreg_factory(workers=2)
    repo = "conformance/app"
    layer = make_layer(2048)
    manifest = make_manifest(make_config(), [layer])
    tags = ["v1", "v2", "latest"]
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        push_manifest(c, repo, manifest, tags[0])
        for tag in tags[1:]:
            push_manifest(c, repo, manifest, tag, with_blobs=False)
    rep = run_suite(srv.url, tmp_path / "report", {
        "OCI_TEST_PULL": "1", "OCI_TAG_NAME": "v1", "OCI_MANIFEST_DIGEST": manifest.digest,
        "OCI_BLOB_DIGEST": layer.digest})
    assert not rep.failed, f"failed specs: {rep.failed}\n{rep.output}"
    assert PRESET_PULL in rep.passed, rep.skipped
    assert len(rep.passed) >= 15, (len(rep.passed), rep.output)
