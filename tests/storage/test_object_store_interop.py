"""Real clients and Distribution on object stores: skopeo round-trips a multi-arch image through
fastreg on S3 (moto), Azure (Azurite) and GCS (gcp-storage-emulator); Distribution (Debian's
`docker-registry`, its own s3-aws driver) and fastreg serve each other's images from the same
bucket prefix — the object layout is the same.  (Distribution 2.8's azure and gcs drivers cannot
be pointed at a plain-HTTP emulator, so that cross-check is S3 only.)
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.interop.conftest import make_distribution, run, skopeo_cmd
from tests.interop.images import ImageLayout, build_oci_image, layout_blobs, layout_top

from .conftest import S3Backend
from .services import S3_BUCKET, S3_KEYS, Service

pytestmark = [pytest.mark.e2e, pytest.mark.interop]


def copy(src: str, dest: str, server: Any) -> None:
    run(skopeo_cmd("copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false", src, dest), server=server)


def pull_and_check(server: Any, ref: str, image: ImageLayout, out: Path) -> None:
    copy(f"docker://{server.host}/{ref}", f"oci:{out}:v1", server)
    assert layout_top(out, "v1")["digest"] == image.index_digest
    assert layout_blobs(out) == image.blobs            # every manifest, config and layer, byte for byte


def test_skopeo_and_distribution_share_a_bucket(fastreg_factory: Any, moto_server: Service,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # aws-sdk-go in Distribution 2.8 panics on AWS_CA_BUNDLE with its own HTTP transport
    # (some sandboxes set it); the endpoint here is plain HTTP anyway.
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    root = f"interop-{uuid.uuid4().hex[:8]}"
    backend = S3Backend(moto_server)
    fastreg = fastreg_factory(config={"storage": {"filesystem": None, "s3": backend.params(root)}})
    dist = make_distribution(tmp_path / "distribution", extra={"storage": {
        "s3": {"region": "us-east-1", "bucket": S3_BUCKET, "regionendpoint": moto_server.url,
               "secure": False, "v4auth": True, "chunksize": 5 << 20, "rootdirectory": f"/{root}", **S3_KEYS},
        "delete": {"enabled": True}, "maintenance": {"uploadpurging": {"enabled": False}}}})
    dist.start()
    try:
        one = build_oci_image(tmp_path / "one", tag="v1", seed="s3-one")
        two = build_oci_image(tmp_path / "two", tag="v1", seed="s3-two")
        # skopeo through fastreg on S3, and back
        copy(one.ref, f"docker://{fastreg.host}/multi/one:v1", fastreg)
        pull_and_check(fastreg, "multi/one:v1", one, tmp_path / "out-fastreg")
        # what fastreg wrote, Distribution serves ...
        pull_and_check(dist, "multi/one:v1", one, tmp_path / "out-dist")
        # ... and what Distribution wrote (its multipart uploads, its links), fastreg serves
        copy(two.ref, f"docker://{dist.host}/multi/two:v1", dist)
        pull_and_check(fastreg, "multi/two:v1", two, tmp_path / "out-two")
    finally:
        dist.stop()


@pytest.mark.parametrize("kind", ["azure", "gcs"])
def test_skopeo_round_trip_on_azure_and_gcs(fastreg_factory: Any, request: pytest.FixtureRequest,
                                            tmp_path: Path, kind: str) -> None:
    from .conftest import AzureBackend, GcsBackend
    store: AzureBackend | GcsBackend
    env = {}
    if kind == "azure":
        store = AzureBackend(request.getfixturevalue("azurite"))
    else:
        store = GcsBackend(request.getfixturevalue("gcs_emulator"))
        env["STORAGE_EMULATOR_HOST"] = store.svc.url
    root = f"interop-{uuid.uuid4().hex[:8]}"
    fastreg = fastreg_factory(config={"storage": {"filesystem": None, kind: store.params(root)}}, env=env)
    image = build_oci_image(tmp_path / "img", tag="v1", seed=f"{kind}-image")
    copy(image.ref, f"docker://{fastreg.host}/multi/{kind}:v1", fastreg)
    pull_and_check(fastreg, f"multi/{kind}:v1", image, tmp_path / "out")
