"""Every per-worker cache of the services is bounded in bytes (fastreg.cache.*): what it holds is
charged, the least recently used goes first, and an entry larger than its share is not kept."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from fastreg.api.errors import status_of
from fastreg.digest import digest_bytes
from fastreg.errors import RegistryError
from fastreg.registry import Limits, Registry
from fastreg.registry.lru import OVERHEAD, ByteLRU
from fastreg.storage import layout
from fastreg.storage.driver.backends.filesystem import FilesystemDriver

from .test_listing_caches import age_directory, push_image

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
KiB = 1024


def test_byte_lru_evicts_by_bytes_and_refuses_oversized_entries() -> None:
    c: ByteLRU[str, bytes] = ByteLRU(10 * KiB, max_entry=4 * KiB)
    for i in range(5):
        c.put(f"k{i}", b"x", 3 * KiB)
    assert len(c) == 3 and c.bytes <= 10 * KiB                 # 3 x (3 KiB + overhead)
    assert c.get("k0") is None and c.get("k4") == b"x"
    c.get("k2")                                               # k2 used: k3 is the oldest now
    c.put("k5", b"x", 3 * KiB)
    assert c.get("k3") is None and c.get("k2") == b"x"
    c.put("big", b"x", 5 * KiB)                               # over max_entry: not kept
    assert c.get("big") is None and len(c) == 3
    c.put("k2", b"y", 1 * KiB)                                # replaced: charged anew
    assert c.bytes == 3 * KiB + 3 * KiB + 1 * KiB + 3 * OVERHEAD
    counted: ByteLRU[int, int] = ByteLRU(1 << 30, max_entries=4)
    for i in range(10):
        counted.put(i, i, 1)
    assert len(counted) == 4


def _registry(root: Path, **limits: Any) -> Registry:
    return Registry(FilesystemDriver(str(root), fsync=False), secret=b"s", delete_enabled=True,
                    limits=Limits(**limits))


def test_manifest_cache_holds_at_most_its_bytes(tmp_path: Path) -> None:
    reg = _registry(tmp_path, manifest_cache=256 * KiB)

    async def scenario() -> None:
        config = b"{}"
        st = await reg.uploads.start("app")

        async def body() -> Any:
            yield config
        cd = digest_bytes(config, "sha256")
        await reg.uploads.commit(st, cd, body())
        digests = []
        for i in range(40):                                 # 40 x 20 KiB through a 256 KiB cache
            m = orjson.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                              "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                         "digest": str(cd), "size": 2},
                              "layers": [], "annotations": {"pad": f"{i}" + "p" * 20 * KiB}})
            d, _ = await reg.manifests.put("app", f"t{i}", m, OCI_MANIFEST)
            assert (await reg.manifests.get("app", str(d))).body == m
            digests.append(d)
            assert reg.manifests._cache.bytes <= 256 * KiB
        assert len(reg.manifests._cache) < 13
        assert (await reg.manifests.get("app", "t0")).body.startswith(b'{"schemaVersion"')   # from storage
        # a manifest over an eighth of the cache is served, not kept
        big = orjson.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                       "digest": str(cd), "size": 2},
                            "layers": [], "annotations": {"pad": "b" * 40 * KiB}})
        d, _ = await reg.manifests.put("app", "big", big, OCI_MANIFEST)
        assert (await reg.manifests.get("app", "big")).body == big
        assert reg.manifests._cache.get((d.algorithm, d.hex)) is None

    try:
        asyncio.run(scenario())
    finally:
        asyncio.run(reg.close())


def test_tag_and_catalog_caches_keep_only_lists_that_fit(tmp_path: Path) -> None:
    root = tmp_path / "data"
    small = _registry(root, tag_cache=2 * KiB, catalog_cache=200)
    roomy = _registry(root)

    async def scenario() -> None:
        for i in range(12):
            await push_image(small, f"team/repo{i:02d}", "v1")
        many = sorted(["v1", *(f"tag-{i:02d}-" + "t" * 100 for i in range(20))])   # ~3.4 KiB as cached
        for tag in many[:-1]:
            await push_image(small, "team/repo00", tag)
        for name in ("team/repo00", "team/repo01"):
            age_directory(root, layout.tags_dir(name), 60)
        for reg in (small, roomy):
            assert await reg.tags.all("team/repo00") == many
            assert await reg.tags.all("team/repo01") == ["v1"]
            assert len(await reg.catalog.repositories()) == 12
        assert "team/repo00" in roomy.tags._lists and roomy.catalog._repos is not None
        assert "team/repo00" not in small.tags._lists and "team/repo01" in small.tags._lists
        assert small.tags._lists.bytes <= 2 * KiB
        # 12 names of 11 characters + 64 each: more than 200 bytes, walked for every request
        assert small.catalog._repos is None

    try:
        asyncio.run(scenario())
    finally:
        asyncio.run(small.close())
        asyncio.run(roomy.close())


def test_a_stored_manifest_is_read_only_up_to_the_limit(tmp_path: Path) -> None:
    """A manifest stored under a larger limit (another registry on the same storage, or the limit
    lowered since) is refused, not read whole: its size is checked before its bytes are."""
    root = tmp_path / "data"
    big_limit, small_limit = _registry(root, manifest_max=64 * KiB), _registry(root, manifest_max=16 * KiB)

    async def scenario() -> None:
        config = b"{}"
        st = await big_limit.uploads.start("app")

        async def body() -> Any:
            yield config
        cd = digest_bytes(config, "sha256")
        await big_limit.uploads.commit(st, cd, body())
        m = orjson.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                     "digest": str(cd), "size": 2},
                          "layers": [], "annotations": {"pad": "p" * 40 * KiB}})
        d, _ = await big_limit.manifests.put("app", "v1", m, OCI_MANIFEST)
        assert (await big_limit.manifests.get("app", "v1")).body == m
        reads = []
        real = small_limit.driver.get_content

        async def counting(path: str) -> bytes:
            reads.append(path)
            return await real(path)
        small_limit.driver.get_content = counting  # type: ignore[method-assign]
        try:
            await small_limit.manifests.get("app", str(d))
        except RegistryError as exc:
            assert exc.code.value == "MANIFEST_INVALID" and status_of(exc) == 400
        else:
            raise AssertionError("an oversized stored manifest was served")
        assert layout.blob_data(d.algorithm, d.hex) not in reads

    try:
        asyncio.run(scenario())
    finally:
        asyncio.run(big_limit.close())
        asyncio.run(small_limit.close())
