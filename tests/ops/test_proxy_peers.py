"""Cluster-wide coalescing of pull-through misses (fastreg/proxy/peers.py): two replicas, each with
its own host-local spool directory (TMPDIR), sharing one storage, in front of Debian's Distribution.
A storm of pulls hitting both at once causes one upstream GET per blob; the replica that lost the
election streams each blob from the winner."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from fastreg.storage import layout
from tests.interop.conftest import DistributionServer
from tests.support.registry_client import make_config, make_layer, make_manifest, push_manifest
from tests.support.server import FastregServer, free_port, make_fastreg

from .test_proxy import _pull, _upstream_gets, upstream  # noqa: F401 -- the upstream fixture

pytestmark = [pytest.mark.e2e, pytest.mark.interop]


@pytest.fixture
def replicas(tmp_path: Path, upstream: DistributionServer) -> Iterator[list[FastregServer]]:  # noqa: F811
    shared = tmp_path / "shared-storage"
    shared.mkdir()
    out: list[FastregServer] = []
    for name in ("a", "b"):
        host_tmp = tmp_path / f"host-{name}-tmp"
        host_tmp.mkdir()
        srv = make_fastreg(tmp_path / name, env={"TMPDIR": str(host_tmp)})
        cfg = yaml.safe_load(srv.config_path.read_text())
        cfg["storage"]["filesystem"]["rootdirectory"] = str(shared)
        cfg["log"]["level"] = "info"
        cfg["proxy"] = {"remoteurl": upstream.url}
        cfg["fastreg"]["proxy"] = {"peerurl": srv.url}
        srv.config_path.write_text(yaml.safe_dump(cfg))
        srv.root = shared
        srv.start()
        out.append(srv)
    yield out
    for srv in out:
        srv.stop()


def test_a_storm_on_two_replicas_makes_one_upstream_fetch_per_blob(
        replicas: list[FastregServer], upstream: DistributionServer) -> None:  # noqa: F811
    repo, tag = "lib/cluster", "v1"
    image = make_manifest(make_config(), [make_layer(16 << 20), make_layer(2 << 20), make_layer(1000)])
    with httpx.Client(base_url=upstream.url, timeout=60.0) as c:
        push_manifest(c, repo, image, tag)

    async def storm() -> None:
        await asyncio.gather(*(_pull(srv.url, repo, tag, image, 20) for srv in replicas))
    asyncio.run(storm())

    logs = [srv.log() for srv in replicas]
    for b in image.blobs:
        assert _upstream_gets(upstream, repo, "blobs", b.digest) == 1, b.digest
        assert sum(log.count(f"proxy fetch blob {b.digest}") for log in logs) == 1, b.digest
        assert sum(log.count(f"proxy peer fetch blob {b.digest}") for log in logs) <= 1
    peer_fetches = sum(log.count("proxy peer fetch blob ") for log in logs)
    assert peer_fetches >= 1, "no replica streamed a blob from the other"
    print(f"\nupstream GETs per blob: {[_upstream_gets(upstream, repo, 'blobs', b.digest) for b in image.blobs]}; "
          f"blobs streamed replica-to-replica: {peer_fetches}")
    # no lease is left behind
    assert not list((replicas[0].root / layout.PROXY_FETCHING.lstrip("/")).rglob("*/*/*"))

    upstream.stop()
    replicas[0].stop()
    asyncio.run(_pull(replicas[1].url, repo, tag, image, 3))       # all of it is in the shared storage


def test_an_unreachable_winner_is_bypassed(replicas: list[FastregServer], upstream: DistributionServer,  # noqa: F811
                                           tmp_path: Path) -> None:
    """A fresh lease of a replica that cannot be reached (a closed port): the loser tries it,
    then fetches from upstream itself."""
    repo = "lib/orphaned"
    image = make_manifest(make_config(), [make_layer(1 << 20)])
    with httpx.Client(base_url=upstream.url, timeout=60.0) as c:
        push_manifest(c, repo, image, "v1")
    layer = image.blobs[1]
    alg, hex_ = layer.digest.split(":")
    lease = replicas[0].root / layout.lease(alg, hex_, "0000dead").lstrip("/")
    lease.parent.mkdir(parents=True)
    dead = f"http://127.0.0.1:{free_port()}"
    lease.write_bytes(orjson.dumps({"peer": dead, "since": time.time() - 5, "time": time.time()}))
    with httpx.Client(base_url=replicas[1].url, timeout=60.0) as c:
        r = c.get(f"/v2/{repo}/blobs/{layer.digest}")
        assert r.status_code == 200 and r.content == layer.data
    assert f"peer {dead} unreachable" in replicas[1].log()
    assert _upstream_gets(upstream, repo, "blobs", layer.digest) == 1
