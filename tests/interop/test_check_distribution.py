"""`fastreg check` on a data directory written by Distribution (Debian's docker-registry 2.8): a
multi-arch OCI image and a Docker manifest list pushed by skopeo, plus a second tag, must check
clean — the scrub reads Distribution's layout as Distribution wrote it."""
from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.common import run_check

from .conftest import DistributionServer
from .images import ImageLayout
from .test_distribution_datadir import push_images

pytestmark = [pytest.mark.e2e, pytest.mark.interop]


def test_distribution_data_directory_checks_clean(
        skopeo: Callable[..., subprocess.CompletedProcess[str]],
        distribution_factory: Callable[..., DistributionServer],
        oci_image: ImageLayout, docker_image: ImageLayout, tmp_path: Path) -> None:
    dist = distribution_factory()
    push_images(skopeo, dist, oci_image, docker_image)
    rc, report = run_check(dist.root, tmp_path)
    assert (rc, report["problems"]) == (0, [])
    # everything was seen: both repositories, every manifest and blob skopeo pushed
    assert report["repositories"] == 2 and report["tags"] == 3
    assert report["blobs"] == len(set(oci_image.blobs) | set(docker_image.blobs))
    assert report["manifests"] == 2 + len(oci_image.images) + len(docker_image.images)   # lists + children
