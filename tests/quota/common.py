"""Helpers for the quota tests: what a manifest costs, a registry with quotas on a driver."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fastreg.registry import Registry
from fastreg.retention.quota import Quotas
from fastreg.storage.driver.base import StorageDriver
from tests.e2e.helpers import Manifest
from tests.retention.common import config


def cost(*manifests: Manifest) -> int:
    """The bytes these manifests make a repository count: each distinct blob once."""
    seen: dict[str, int] = {}
    for m in manifests:
        seen[m.digest] = m.size
        for b in m.blobs:
            seen[b.digest] = b.size
    return sum(seen.values())


def registry(driver: StorageDriver, tmp: Path, quota: dict[str, Any]) -> Registry:
    reg = Registry(driver, secret=b"k" * 32, delete_enabled=True)
    q = Quotas.from_config(config(tmp, {"quota": quota}), driver)
    reg.manifests.quota = reg.uploads.quota = q
    return reg
