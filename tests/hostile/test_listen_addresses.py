"""http.addr as operators write it: a host name (as Distribution takes it) listens on the address
it resolves to; a name that resolves to nothing is one line and a non-zero exit."""
from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from tests.conftest import free_port, make_fastreg

from .support import serve_refused


def test_a_host_name_listens_on_its_ipv4_address(tmp_path: Path) -> None:
    port = free_port()
    srv = make_fastreg(tmp_path, {"http": {"addr": f"localhost:{port}"}, "log": {"level": "info"}})
    srv.port = port
    srv.start()
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=10)
        assert r.status_code == 200, r.text
        assert r.headers["docker-distribution-api-version"] == "registry/2.0"
        assert f"listening on http://127.0.0.1:{port}" in srv.log()
    finally:
        srv.stop()


def test_a_host_name_that_resolves_to_nothing(tmp_path: Path) -> None:
    srv = make_fastreg(tmp_path, {"http": {"addr": f"no-such-host.invalid:{free_port()}"}})
    cfg = yaml.safe_load(srv.config_path.read_text())
    assert cfg["http"]["addr"].startswith("no-such-host.invalid:")
    p = serve_refused(srv.config_path)
    assert p.returncode == 1, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fastreg: http.addr: cannot listen on no-such-host.invalid:"), \
        p.stderr
