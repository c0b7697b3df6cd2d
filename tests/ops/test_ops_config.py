"""The ops keys of the config: proxy (Distribution's and fastreg's upstreams), gc, uploadpurging."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fastreg.config import ConfigError, load_config


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    p = tmp_path / "config.yml"
    p.write_text(text)
    return load_config(p, env={})


def test_ops_keys_parse(tmp_path: Path) -> None:
    cfg = _load(tmp_path, """
version: 0.1
storage:
  maintenance: {uploadpurging: {enabled: true, age: 2h, interval: 30m, dryrun: true}}
proxy: {remoteurl: "https://registry-1.docker.io", username: u, password: p, ttl: 10m}
fastreg:
  gc: {graceperiod: 15m, interval: 6h, deleteuntagged: true}
  proxy:
    upstreams:
      hub: {remoteurl: "https://registry-1.docker.io", ttl: 5m}
      ghcr.io: {remoteurl: "https://ghcr.io"}
""")
    up = cfg.storage.maintenance.uploadpurging
    assert (up.enabled, up.age, up.interval, up.dryrun) == (True, 7200.0, 1800.0, True)
    assert (cfg.proxy.remoteurl, cfg.proxy.username, cfg.proxy.ttl) == ("https://registry-1.docker.io", "u", 600.0)
    gc = cfg.fastreg.gc
    assert (gc.graceperiod, gc.interval, gc.deleteuntagged) == (900.0, 21600.0, True)
    ups = cfg.fastreg.proxy.upstreams
    assert ups["hub"].ttl == 300.0 and ups["ghcr.io"].ttl is None


def test_ops_defaults(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "version: 0.1\n")
    up = cfg.storage.maintenance.uploadpurging
    assert (up.enabled, up.age, up.interval, up.dryrun) == (True, 168 * 3600.0, 24 * 3600.0, False)
    assert cfg.fastreg.gc.graceperiod == 3600.0 and cfg.fastreg.gc.interval == 0.0
    assert cfg.proxy.remoteurl == "" and cfg.fastreg.proxy.upstreams == {}


def test_ops_keys_are_no_longer_reported_unused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fastreg.config"):
        _load(tmp_path, "version: 0.1\nproxy: {remoteurl: 'http://127.0.0.1:1'}\n"
                        "storage: {maintenance: {uploadpurging: {enabled: false}}}\n")
    assert "proxy" not in caplog.text and "uploadpurging" not in caplog.text


@pytest.mark.parametrize(("text", "where"), [
    ("proxy: {remoteurl: 'ftp://x'}", "proxy.remoteurl"),
    ("fastreg: {proxy: {upstreams: {Hub: {remoteurl: 'https://x'}}}}", "fastreg.proxy.upstreams.Hub"),
    ("fastreg: {proxy: {upstreams: {hub: {remoteurl: ''}}}}", "fastreg.proxy.upstreams.hub.remoteurl"),
    ("fastreg: {proxy: {upstreams: {hub: {remoteurl: 'https://x', extra: 1}}}}", "extra"),
    ("fastreg: {gc: {graceperiod: -1s}}", "fastreg.gc"),
    ("fastreg: {proxy: {peerurl: '10.0.0.5:5000'}}", "fastreg.proxy.peerurl"),
])
def test_bad_ops_keys_are_refused(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        _load(tmp_path, "version: 0.1\n" + text + "\n")


def test_proxy_routes_by_prefix(tmp_path: Path) -> None:
    from fastreg.proxy import Proxy
    from fastreg.registry import Registry
    from fastreg.storage.driver.factory import create_driver
    reg = Registry(create_driver("inmemory", None), secret=b"s")
    cfg = _load(tmp_path, """
version: 0.1
fastreg:
  proxy:
    upstreams:
      hub: {remoteurl: "https://registry-1.docker.io"}
      gh: {remoteurl: "https://ghcr.io", ttl: 0s}
""")
    p = Proxy.from_config(cfg, reg)
    assert p is not None

    def where(name: str) -> tuple[str, str] | None:
        r = p.route(name)
        return None if r is None else (r[0].name, r[1])

    assert where("hub/library/alpine") == ("hub", "library/alpine")
    assert where("hub/alpine") == ("hub", "library/alpine")        # Docker Hub's official images
    assert where("gh/owner/app") == ("gh", "owner/app")
    assert where("gh/app") == ("gh", "app")
    assert where("mine/app") is None and where("hub") is None       # local repositories
    assert p.upstreams["gh"].ttl == 0.0 and p.upstreams["hub"].ttl == 168 * 3600.0
    single = Proxy.from_config(_load(tmp_path, "version: 0.1\nproxy: {remoteurl: 'http://127.0.0.1:9'}\n"), reg)
    assert single is not None and single.route("any/thing") is not None
    assert Proxy.from_config(_load(tmp_path, "version: 0.1\n"), reg) is None
