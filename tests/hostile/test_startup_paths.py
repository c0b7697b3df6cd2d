"""Data directories as a careless operator leaves them: a symbolic link whose target is gone is
named as such (one line, exit 1, nothing created); a link to a directory serves it."""
from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import make_fastreg

from .support import serve_refused


def test_a_symbolic_link_to_nothing(tmp_path: Path) -> None:
    link = tmp_path / "data-link"
    link.symlink_to(tmp_path / "gone")
    srv = make_fastreg(tmp_path, {"storage": {"filesystem": {"rootdirectory": str(link)}}})
    p = serve_refused(srv.config_path)
    assert p.returncode == 1, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0] == (f"fastreg: storage.filesystem.rootdirectory: {link} is a symbolic link to {tmp_path / 'gone'}, "
                        "which does not exist: create that directory, or point the link at one"), p.stderr
    assert not (tmp_path / "gone").exists()


def test_a_symbolic_link_to_a_directory_serves_it(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "data-link"
    link.symlink_to(real)
    srv = make_fastreg(tmp_path, {"storage": {"filesystem": {"rootdirectory": str(link)}}})
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            r = c.post("/v2/a/b/blobs/uploads/", params={"digest": "sha256:" + "2cf24dba5fb0a30e26e83b2ac5b9e29e"
                                                                  "1b161e5c1fa7425e73043362938b9824"}, content=b"hello")
            assert r.status_code == 201, r.text
        assert list(real.rglob("data")), "the blob is not under the link's target"
    finally:
        srv.stop()
