"""Helpers for the retention tests: a config from a dict, CI pushes through a Registry object."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from fastreg.config import Config, load_config
from fastreg.registry import Registry
from fastreg.retention.immutable import Immutability
from fastreg.retention.policy import delete_intents
from tests.support.direct_push import push_manifest
from tests.support.registry_client import Blob, Manifest, make_layer, make_manifest


def config(tmp: Path, fastreg: dict[str, Any]) -> Config:
    path = tmp / "retention.yml"
    path.write_text(yaml.safe_dump({"version": "0.1", "storage": {"inmemory": {}, "delete": {"enabled": True}},
                                    "fastreg": fastreg}))
    return load_config(path)


def registry(driver: Any, cfg: Config) -> Registry:
    reg = Registry(driver, secret=b"k" * 32, delete_enabled=True)
    reg.manifests.immutable = Immutability.from_config(cfg)
    reg.manifests.deletes = delete_intents(cfg, driver)
    return reg


def next_second() -> None:
    """Wait until the wall clock enters a new second (+10 ms): object stores keep one-second
    modification times, so pushes after this are told apart from pushes before it."""
    now = time.time()
    time.sleep(int(now) + 1.01 - now)


async def push_ci(reg: Registry, repo: str, base: Blob, tags: list[str]) -> dict[str, Manifest]:
    """One image per tag: a shared base layer plus a layer of its own."""
    pushed = {}
    for tag in tags:
        m = make_manifest(layers=[base, make_layer(300)])
        await push_manifest(reg, repo, m, tag)
        pushed[tag] = m
    return pushed


def blobs_of(*manifests: Manifest) -> set[str]:
    out = set()
    for m in manifests:
        out.add(m.digest)
        out.update(b.digest for b in m.blobs)
        out |= blobs_of(*m.children)
    return out
