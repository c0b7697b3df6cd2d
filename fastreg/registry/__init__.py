"""The registry's domain services: blobs, uploads, manifests, tags, referrers, catalog.

Handlers speak only to these; these speak only to the storage driver interface.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import RegistryError
from ..manifest import ANY_CLASS, DISTRIBUTION_URL_POLICY, EVERY_CHILD, ClassPolicy, IndexPolicy, URLPolicy
from ..storage import layout, walk
from ..storage.driver.base import StorageDriver
from .blobs import BlobStore
from .catalog import Catalog
from .manifests import ManifestStore
from .tags import TagStore
from .uploads import UploadStore


@dataclass(frozen=True, slots=True)
class Limits:
    manifest_max: int = 4 * 1024 * 1024
    catalog_max: int = 1000
    tags_max: int = 10000
    referrers_page: int = 1 << 20           # bytes of descriptors per referrers page
    manifest_cache: int = 32 << 20          # bytes per worker: manifest bodies
    referrer_cache: int = 8 << 20           # bytes per worker: referrer descriptors
    tag_cache: int = 16 << 20               # bytes per worker: tag lists
    catalog_cache: int = 16 << 20           # bytes per worker: the repository list


class Registry:
    def __init__(self, driver: StorageDriver, *, secret: bytes, allow_blake3: bool = False,
                 delete_enabled: bool = False, readonly: bool = False, limits: Limits = Limits(),
                 url_policy: URLPolicy = DISTRIBUTION_URL_POLICY, index_policy: IndexPolicy = EVERY_CHILD,
                 class_policy: ClassPolicy = ANY_CLASS, tag_concurrency: int = 0) -> None:
        self.driver = driver
        self.allow_blake3 = allow_blake3
        self.delete_enabled = delete_enabled
        self.readonly = readonly
        self.limits = limits
        # storage middleware (redirect, cloudfront): HEADs and ranged GETs of blobs are redirected too
        self.redirect_every_read = driver.capabilities.redirects_every_read
        self.blobs = BlobStore(driver)
        self.uploads = UploadStore(driver, self.blobs, secret)
        self.tags = TagStore(driver, concurrency=tag_concurrency, cache_bytes=limits.tag_cache)
        self.catalog = Catalog(driver, max_bytes=limits.catalog_cache)
        self.manifests = ManifestStore(driver, self.blobs, self.tags, self.catalog, allow_blake3=allow_blake3,
                                       max_size=limits.manifest_max, cache_bytes=limits.manifest_cache,
                                       descriptor_cache_bytes=limits.referrer_cache,
                                       referrers_page=limits.referrers_page, url_policy=url_policy,
                                       index_policy=index_policy, class_policy=class_policy)

    async def known(self, name: str) -> None:
        """NAME_UNKNOWN unless `name` has a repository directory: anything was pushed to it (a blob,
        an upload, a manifest), tagged or not."""
        if not await walk.exists(self.driver, layout.repo(name)):
            raise RegistryError("NAME_UNKNOWN", {"name": name})

    async def close(self) -> None:
        await self.driver.close()
