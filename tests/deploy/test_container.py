"""The container image, for real: built from the Containerfile with podman on an mmdebstrap base,
run read-only, the fastreg image pushed into it with skopeo and pulled back out with skopeo and
podman (tests/deploy/container.py; alone: `python3 -m tests.deploy.container`, 5 to 6 minutes)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.deploy import container

pytestmark = [pytest.mark.e2e, pytest.mark.interop, pytest.mark.long]


def test_image_builds_runs_and_round_trips() -> None:
    missing = [t for t in ("podman", "runc", "skopeo", "mmdebstrap") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)} (apt-get install podman runc skopeo mmdebstrap python3-pip)")
    if os.geteuid() != 0:
        pytest.fail("the container test runs as root (vfs storage, the volume's owner)")
    # Not pytest's tmp_path, which keeps the last runs: podman's vfs storage takes gigabytes.
    with tempfile.TemporaryDirectory(prefix="fastreg-container-") as work:
        report = container.roundtrip(Path(work), None)
    assert container.check(report) == [], report
