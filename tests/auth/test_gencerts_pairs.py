"""`fastreg gencerts` run again over a directory where a key is kept elsewhere: it never writes
the missing half of a pair over the half that is there (a CA clients trust replaced by a new one),
and a CA key kept offline is not needed once the TLS certificate exists."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import _pythonpath


def gencerts(d: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastreg", "gencerts", str(d), "--host", "127.0.0.1"],
                          check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": _pythonpath()})


def contents(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_ca_key_kept_offline_keeps_the_ca(tmp_path: Path) -> None:
    """ca.key moved away, token.pem removed: gencerts makes a new token signer and leaves ca.pem,
    server.pem and certs.d/ca.crt as they were (server.pem still verifies against ca.pem)."""
    d = tmp_path / "certs"
    assert gencerts(d).returncode == 0
    (d / "ca.key").rename(tmp_path / "ca.key.offline")
    (d / "token.pem").unlink()
    (d / "token.key").unlink()
    before = contents(d)
    out = gencerts(d)
    assert out.returncode == 0, out.stderr
    after = contents(d)
    for name in ("ca.pem", "server.pem", "server.key", "certs.d/ca.crt"):
        assert after[name] == before[name], f"{name} was rewritten"
    assert not (d / "ca.key").exists()
    assert {"token.pem", "token.key"} <= set(after)
    ca = x509.load_pem_x509_certificate(after["ca.pem"])
    x509.load_pem_x509_certificate(after["server.pem"]).verify_directly_issued_by(ca)


@pytest.mark.parametrize("remove", ["ca.key", "ca.pem", "server.key", "server.pem", "token.key", "token.pem"])
def test_half_a_pair_is_refused_and_nothing_written(tmp_path: Path, remove: str) -> None:
    """Half a pair (whose other half gencerts would need to write) stops gencerts with one line and
    exit 1; no file changes.  (ca.pem without ca.key is fine while server.pem exists: the
    previous test; here server.pem is removed too when ca.key is.)"""
    d = tmp_path / "certs"
    assert gencerts(d).returncode == 0
    (d / remove).unlink()
    if remove == "ca.key":
        (d / "server.pem").unlink()
        (d / "server.key").unlink()         # a new TLS certificate needs the CA's key
    before = contents(d)
    out = gencerts(d)
    assert out.returncode == 1, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastreg: gencerts: ") and "without" in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert contents(d) == before
