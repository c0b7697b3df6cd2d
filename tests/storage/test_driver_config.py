"""Driver configuration: the storage page's examples (docs/storage.md) load and build their
drivers; values from the environment arrive as strings and are read like Distribution reads them."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from fastreg.config import load_config
from fastreg.storage.driver.factory import create_driver

STORAGE_DOC = Path(__file__).resolve().parents[2] / "docs" / "storage.md"


def storage_doc_examples() -> list[str]:
    text = STORAGE_DOC.read_text()
    section = text.split("## Object storage and replicas", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)


def _driver_examples() -> list[str]:
    return [e for e in storage_doc_examples() if "cache" not in yaml.safe_load(e)["storage"]]


@pytest.mark.parametrize("example", _driver_examples(), ids=lambda e: next(iter(yaml.safe_load(e)["storage"])))
def test_storage_doc_examples_build_drivers(example: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(example)
    cfg = load_config(path, env={})
    name = cfg.storage.driver_name
    assert name in ("s3", "azure", "gcs")
    d = create_driver(name, cfg.storage.driver_params, redirect=not cfg.storage.redirect.disable)
    assert d.name == name
    assert d.key("/docker/registry/v2/blobs") == "registry/docker/registry/v2/blobs"  # type: ignore[attr-defined]


def test_examples_cover_every_driver() -> None:
    names = {next(iter(yaml.safe_load(e)["storage"])) for e in _driver_examples()}
    assert names == {"s3", "azure", "gcs"}


def test_storage_doc_redis_example_puts_the_cache_in_front(tmp_path: Path) -> None:
    from fastreg.storage.driver.wrappers.rediscache import RedisCachedDriver
    (example,) = [e for e in storage_doc_examples() if "cache" in yaml.safe_load(e)["storage"]]
    doc = yaml.safe_load(example)
    doc["storage"]["inmemory"] = {}
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(doc))
    cfg = load_config(path, env={})
    assert cfg.storage.cache.blobdescriptor == "redis"
    d = create_driver(cfg.storage.driver_name, cfg.storage.driver_params, redis=cfg.redis)
    assert isinstance(d, RedisCachedDriver) and d.inner.name == "inmemory"
    assert d._conn["host"] == "redis.example.internal" and d._conn["port"] == 6379


def test_s3_params_from_environment_strings(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("storage:\n  s3:\n    bucket: b\n")
    cfg = load_config(path, env={"FASTREG_STORAGE_S3_CHUNKSIZE": "6291456", "FASTREG_STORAGE_S3_FORCEPATHSTYLE": "true",
                                 "FASTREG_STORAGE_S3_REGIONENDPOINT": "minio:9000",
                                 "FASTREG_STORAGE_S3_SECURE": "false"})
    d = create_driver("s3", cfg.storage.driver_params)
    assert d.chunksize == 6291456 and d.path_style is True  # type: ignore[attr-defined]
    assert d.endpoint == "http://minio:9000"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "params", "error"), [
    ("s3", {}, "storage.s3.bucket: required"),
    ("s3", {"bucket": "b", "chunksize": "lots"}, "not an integer"),
    ("s3", {"bucket": "b", "forcepathstyle": "maybe"}, "not a boolean"),
    ("azure", {"accountname": "a"}, "storage.azure.container: required"),
    ("gcs", {"bucket": "b", "chunksize": 300000}, "multiple of 262144"),
])
def test_bad_params_are_named(name: str, params: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        create_driver(name, params)
