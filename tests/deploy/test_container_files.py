"""The container image's own files, without building it (that is tests/deploy/test_container.py,
5 to 6 minutes): the config it ships is one fastreg accepts and agrees with the Containerfile's
volume and port, and the entrypoint dispatches its arguments as registry:2's does."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from fastreg.config import load_config
from tests.conftest import REPO_ROOT

CONTAINERFILE = (REPO_ROOT / "Containerfile").read_text()
ENTRYPOINT = REPO_ROOT / "contrib" / "container" / "entrypoint.sh"


def instruction(name: str) -> str:
    (value,) = re.findall(rf"^{name} (.+)$", CONTAINERFILE, flags=re.MULTILINE)
    return value


def test_shipped_config_matches_the_image() -> None:
    assert "COPY contrib/container/config.yml /etc/docker/registry/config.yml" in CONTAINERFILE
    cfg = load_config(str(REPO_ROOT / "contrib" / "container" / "config.yml"))
    assert cfg.storage.filesystem is not None
    assert instruction("VOLUME") == f'["{cfg.storage.filesystem.rootdirectory}"]' == '["/var/lib/registry"]'
    assert cfg.http.addr == ":5000" and instruction("EXPOSE") == "5000"
    assert cfg.health.storagedriver.enabled
    assert instruction("CMD") == '["/etc/docker/registry/config.yml"]'
    assert instruction("USER") == "1000:1000"
    assert "COPY contrib/container/entrypoint.sh /entrypoint.sh" in CONTAINERFILE
    assert instruction("ENTRYPOINT") == '["/entrypoint.sh"]'
    assert os.access(ENTRYPOINT, os.X_OK)


@pytest.mark.parametrize(("args", "runs"), [
    (["/etc/docker/registry/config.yml"], "fastreg serve /etc/docker/registry/config.yml"),
    (["/srv/other.yaml"], "fastreg serve /srv/other.yaml"),
    (["version"], "fastreg version"),
    (["gc", "--dry-run", "/etc/docker/registry/config.yml"], "fastreg gc --dry-run /etc/docker/registry/config.yml"),
    (["--version"], "fastreg --version"),
    (["echo", "plain", "command"], "plain command"),
])
def test_entrypoint_dispatch(tmp_path: Path, args: list[str], runs: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "fastreg"                       # records how the entrypoint called fastreg
    fake.write_text('#!/bin/sh\necho "fastreg $*"\n')
    fake.chmod(0o755)
    proc = subprocess.run(["/bin/sh", str(ENTRYPOINT), *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == runs
