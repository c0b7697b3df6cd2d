"""The oras Python SDK against fastreg: artifacts (monolithic and chunked uploads), pull back byte
for byte, referrers through `subject`, tag listing and deletion.

The SDK (oras.provider.Registry, a.k.a. oras.client.OrasClient) uses requests; `insecure=True`
makes it speak plain HTTP to 127.0.0.1.  It can set a manifest's `subject` but not its
`artifactType`, so one referrer with an explicit artifactType is pushed with httpx.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

oras_provider = pytest.importorskip("oras.provider")
import oras.oci  # noqa: E402  (after importorskip: oras is a test dependency)

pytestmark = [pytest.mark.e2e, pytest.mark.interop]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
SBOM_TYPE = "application/vnd.example.sbom.v1+json"
SIG_TYPE = "application/vnd.example.signature.v1"
ARTIFACT_LAYER = "application/vnd.example.data.v1.tar"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def oras_client(registry: Any) -> Any:
    return oras_provider.Registry(hostname=registry.host, insecure=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("artifacts")
    out = {
        "small": d / "hello.txt",
        "big": d / "model.bin",          # several MB: many chunks when pushed chunked
        "sbom": d / "sbom.spdx.json",
        "sbom-config": d / "sbom-config.json",
    }
    out["small"].write_bytes(b"hello from oras\n" * 10)
    out["big"].write_bytes(random.Random("oras-big").randbytes(3 * 1024 * 1024 + 12345))
    out["sbom"].write_text(json.dumps({"spdxVersion": "SPDX-2.3", "name": "fastreg-test"}))
    out["sbom-config"].write_text(json.dumps({"generator": "fastreg-tests"}))
    return out


def manifest_of(registry: Any, repo: str, ref: str) -> tuple[bytes, httpx.Headers]:
    r = httpx.get(f"{registry.url}/v2/{repo}/manifests/{ref}",
                  headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}, timeout=30)
    assert r.status_code == 200, (repo, ref, r.status_code, r.text)
    return r.content, r.headers


@pytest.fixture(scope="module")
def artifact(registry: Any, oras_client: Any, files: dict[str, Path]) -> dict[str, Any]:
    """hello.txt + model.bin pushed with the SDK to artifacts/demo:v1."""
    resp = oras_client.push(target=f"{registry.host}/artifacts/demo:v1",
                            files=[str(files["small"]), str(files["big"])],
                            disable_path_validation=True, quiet=True)
    assert resp.status_code == 201, (resp.status_code, resp.text, registry.log())
    body, headers = manifest_of(registry, "artifacts/demo", "v1")
    digest = resp.headers["Docker-Content-Digest"]
    assert headers["Docker-Content-Digest"] == digest == sha256(body)
    return {"digest": digest, "size": len(body), "manifest": json.loads(body)}


def test_push_and_pull_byte_exact(registry: Any, oras_client: Any, files: dict[str, Path],
                                  artifact: dict[str, Any], tmp_path: Path) -> None:
    layers = artifact["manifest"]["layers"]
    assert [layer["annotations"]["org.opencontainers.image.title"] for layer in layers] == \
        ["hello.txt", "model.bin"]
    pulled = oras_client.pull(target=f"{registry.host}/artifacts/demo:v1", outdir=str(tmp_path))
    assert sorted(Path(p).name for p in pulled) == ["hello.txt", "model.bin"]
    for name, key in (("hello.txt", "small"), ("model.bin", "big")):
        assert (tmp_path / name).read_bytes() == files[key].read_bytes(), name


def test_chunked_push(registry: Any, oras_client: Any, files: dict[str, Path], tmp_path: Path) -> None:
    """POST, many PATCHes of 256 KiB (with Content-Range), then PUT ?digest=."""
    resp = oras_client.push(target=f"{registry.host}/artifacts/chunked:v1", files=[str(files["big"])],
                            disable_path_validation=True, do_chunked=True, chunk_size=256 * 1024,
                            quiet=True)
    assert resp.status_code == 201, (resp.status_code, resp.text, registry.log())
    pulled = oras_client.pull(target=f"{registry.host}/artifacts/chunked:v1", outdir=str(tmp_path))
    assert [Path(p).name for p in pulled] == ["model.bin"]
    assert (tmp_path / "model.bin").read_bytes() == files["big"].read_bytes()


def test_manifest_fetch_via_sdk(registry: Any, oras_client: Any, artifact: dict[str, Any]) -> None:
    m = oras_client.get_manifest(f"{registry.host}/artifacts/demo:v1")
    assert m == artifact["manifest"]
    assert m["config"]["mediaType"] == "application/vnd.unknown.config.v1+json"


def test_referrers(registry: Any, oras_client: Any, files: dict[str, Path], artifact: dict[str, Any]) -> None:
    subject = oras.oci.Subject(mediaType=OCI_MANIFEST, digest=artifact["digest"], size=artifact["size"])

    # 1. With the SDK: an SBOM whose config media type stands for its artifactType.
    resp = oras_client.push(target=f"{registry.host}/artifacts/demo:sbom", files=[str(files["sbom"])],
                            manifest_config=f"{files['sbom-config']}:{SBOM_TYPE}", subject=subject,
                            disable_path_validation=True, quiet=True)
    assert resp.status_code == 201, (resp.status_code, resp.text)
    sbom_digest = resp.headers["Docker-Content-Digest"]
    # OCI 1.1: a registry that processes `subject` says so on the manifest PUT.
    assert resp.headers.get("OCI-Subject") == artifact["digest"]
    sbom_body, _ = manifest_of(registry, "artifacts/demo", sbom_digest)
    assert json.loads(sbom_body)["subject"]["digest"] == artifact["digest"]

    # 2. With httpx (the SDK cannot set artifactType): a signature, OCI 1.1 style, no tag.
    with httpx.Client(base_url=registry.url, timeout=30) as c:
        r = c.post("/v2/artifacts/demo/blobs/uploads/", params={"digest": EMPTY_DIGEST}, content=b"{}",
                   headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        sig_layer = b"signature-bytes"
        r = c.post("/v2/artifacts/demo/blobs/uploads/", params={"digest": sha256(sig_layer)},
                   content=sig_layer, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        sig = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SIG_TYPE,
            "config": {"mediaType": OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2},
            "layers": [{"mediaType": ARTIFACT_LAYER, "digest": sha256(sig_layer), "size": len(sig_layer)}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": artifact["digest"], "size": artifact["size"]},
            "annotations": {"org.example.signer": "fastreg-tests"},
        }).encode()
        sig_digest = sha256(sig)
        r = c.put(f"/v2/artifacts/demo/manifests/{sig_digest}", content=sig,
                  headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text
        assert r.headers.get("OCI-Subject") == artifact["digest"]

        # The referrers API lists both, each with its artifactType.
        r = c.get(f"/v2/artifacts/demo/referrers/{artifact['digest']}")
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == OCI_INDEX
        index = r.json()
        assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
        by_digest = {d["digest"]: d for d in index["manifests"]}
        assert set(by_digest) == {sbom_digest, sig_digest}, index
        assert by_digest[sbom_digest]["artifactType"] == SBOM_TYPE
        assert by_digest[sbom_digest]["size"] == len(sbom_body)
        assert by_digest[sbom_digest]["mediaType"] == OCI_MANIFEST
        assert by_digest[sig_digest]["artifactType"] == SIG_TYPE
        assert by_digest[sig_digest]["size"] == len(sig)
        assert by_digest[sig_digest]["annotations"] == {"org.example.signer": "fastreg-tests"}

        # Filtered by artifactType.
        r = c.get(f"/v2/artifacts/demo/referrers/{artifact['digest']}", params={"artifactType": SIG_TYPE})
        assert r.status_code == 200, r.text
        assert [d["digest"] for d in r.json()["manifests"]] == [sig_digest]
        assert r.headers.get("OCI-Filters-Applied") == "artifactType"

        # The referrers of the SBOM itself: none, but still a 200 with an empty index.
        r = c.get(f"/v2/artifacts/demo/referrers/{sbom_digest}")
        assert r.status_code == 200, r.text
        assert r.json()["manifests"] == []

    # And the SDK reads the referrer it pushed back like any manifest.
    assert oras_client.get_manifest(f"{registry.host}/artifacts/demo@{sbom_digest}")["subject"] == \
        {"mediaType": OCI_MANIFEST, "digest": artifact["digest"], "size": artifact["size"]}


def test_list_tags(registry: Any, oras_client: Any, files: dict[str, Path]) -> None:
    tags = ["v1", "v2", "beta", "latest", "1.0.0"]
    for tag in tags:
        resp = oras_client.push(target=f"{registry.host}/artifacts/tagged:{tag}", files=[str(files["small"])],
                                disable_path_validation=True, quiet=True)
        assert resp.status_code == 201, (resp.status_code, resp.text)
    assert sorted(oras_client.get_tags(f"{registry.host}/artifacts/tagged")) == sorted(tags)
    # With a page size, the registry answers in lexical order (Distribution's order).
    assert oras_client.get_tags(f"{registry.host}/artifacts/tagged", N=2) == sorted(tags)[:2]


def test_delete_tag(registry: Any, oras_client: Any, files: dict[str, Path]) -> None:
    """The SDK deletes a tag by resolving it and deleting the manifest by digest (expects 202)."""
    target = f"{registry.host}/artifacts/deleted:v1"
    resp = oras_client.push(target=target, files=[str(files["small"])], disable_path_validation=True,
                            quiet=True)
    assert resp.status_code == 201
    digest = resp.headers["Docker-Content-Digest"]
    assert oras_client.delete_tag(target, "v1") is True
    r = httpx.get(f"{registry.url}/v2/artifacts/deleted/manifests/{digest}",
                  headers={"Accept": OCI_MANIFEST}, timeout=30)
    assert r.status_code == 404
    assert oras_client.get_tags(f"{registry.host}/artifacts/deleted") == []
