"""contrib/systemd: the unit passes `systemd-analyze verify`, scores at most 2.0 ("OK") in
`systemd-analyze security`, and agrees with the config.yml beside it."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fastreg.config import load_config
from tests.conftest import REPO_ROOT

UNIT = REPO_ROOT / "contrib" / "systemd" / "fastreg.service"
CONFIG = REPO_ROOT / "contrib" / "systemd" / "config.yml"
MAX_EXPOSURE = 2.0


def systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze is not installed (apt-get install systemd)")
    return exe


def unit_here(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this machine's fastreg (verify checks it is executable)."""
    fastreg = shutil.which("fastreg")
    assert fastreg, "the fastreg command is not installed (pip install -e .)"
    text = UNIT.read_text()
    assert "ExecStart=/opt/fastreg/bin/fastreg serve" in text
    unit = tmp_path / "fastreg.service"
    unit.write_text(text.replace("/opt/fastreg/bin/fastreg", fastreg))
    return unit


def settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_unit_verifies(tmp_path: Path) -> None:
    proc = subprocess.run([systemd_analyze(), "verify", str(unit_here(tmp_path))],
                          capture_output=True, text=True, timeout=60, check=False)
    # verify exits 0 on some problems (unknown keys, bad values) and only prints them: no output at all.
    assert proc.returncode == 0 and proc.stderr.strip() == "" and proc.stdout.strip() == "", proc.stderr


def test_unit_security_exposure(tmp_path: Path) -> None:
    proc = subprocess.run([systemd_analyze(), "security", "--offline=true", "--no-pager", str(unit_here(tmp_path))],
                          capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for fastreg.service: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, proc.stdout
    checks = subprocess.run([systemd_analyze(), "security", "--offline=true", "--json=short", str(unit_here(tmp_path))],
                            capture_output=True, text=True, timeout=60, check=True)
    passed = {c["name"] for c in json.loads(checks.stdout) if c["set"]}
    for name in ("User=/DynamicUser=", "ProtectSystem=", "ProtectHome=", "NoNewPrivileges=", "PrivateTmp=",
                 "PrivateDevices=", "CapabilityBoundingSet=~CAP_SYS_ADMIN", "RestrictNamespaces=~user",
                 "SystemCallArchitectures=", "RestrictAddressFamilies=~AF_PACKET"):
        assert name in passed, f"{name} is not satisfied"


def test_unit_lifecycle_settings_match_the_config() -> None:
    s = settings()
    assert s["DynamicUser"] == ["yes"] and s["ProtectSystem"] == ["strict"] and s["Restart"] == ["on-failure"]
    # SIGTERM to the main process only: it drains and stops its workers itself.
    assert s["KillSignal"] == ["SIGTERM"] and s["KillMode"] == ["mixed"]
    cfg = load_config(str(CONFIG))
    # The data lives in the unit's state directory, the only place ProtectSystem=strict lets it write.
    assert cfg.storage.filesystem is not None
    assert cfg.storage.filesystem.rootdirectory == f"/var/lib/{s['StateDirectory'][0]}"
    assert "${CONFIGURATION_DIRECTORY}/config.yml" in s["ExecStart"][0] and s["ConfigurationDirectory"] == ["fastreg"]
    # The stop timeout outlasts the drain, so requests in flight finish before SIGKILL.
    assert cfg.http.draintimeout > 0
    assert float(s["TimeoutStopSec"][0]) > cfg.http.draintimeout
    assert int(cfg.http.addr.rsplit(":", 1)[1]) >= 1024, "a privileged port needs CAP_NET_BIND_SERVICE"
