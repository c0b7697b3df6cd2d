"""The one place that knows the concrete drivers."""
from __future__ import annotations

from typing import Any

from .base import StorageDriver


def create_driver(name: str, params: Any, *, fsync: bool = True, redirect: bool = True,
                  redis: Any = None, middleware: Any = None) -> StorageDriver:
    """`redirect` is ``not storage.redirect.disable``: object stores may answer blob GETs with
    a presigned URL (Distribution's default); ignored by drivers without URLs of their own.
    `middleware` (``middleware.storage`` entries) wraps the driver (see ``middleware.py``).
    `redis` (the ``redis:`` config section, given when ``storage.cache.blobdescriptor: redis``)
    puts the shared Redis cache in front of the driver."""
    driver = _create(name, params, fsync=fsync, redirect=redirect)
    if middleware:
        from .wrappers.middleware import wrap
        driver = wrap(driver, middleware, redirect=redirect)
    if redis is None:
        return driver
    from .wrappers.rediscache import RedisCachedDriver
    addr = redis.addr or (redis.addrs[0] if redis.addrs else "")
    if not addr:
        raise ValueError("storage.cache.blobdescriptor: redis needs redis.addr")
    host, _, port = addr.rpartition(":")
    timeout = redis.dialtimeout or redis.readtimeout or 1.0
    return RedisCachedDriver(driver, host=host or "127.0.0.1", port=int(port or 6379), db=redis.db,
                             username=redis.username, password=redis.password, tls=redis.tls.enabled,
                             timeout=timeout)


def _create(name: str, params: Any, *, fsync: bool, redirect: bool) -> StorageDriver:
    if name == "faulty":            # tests and fault drills: faults injected around a real driver
        return _faulty(params, fsync=fsync, redirect=redirect)
    if name == "filesystem":
        from .backends.filesystem import DROPBEHIND, FilesystemDriver
        return FilesystemDriver(params.rootdirectory, maxthreads=getattr(params, "maxthreads", 16) or 16,
                                fsync=fsync, dropbehind=getattr(params, "dropbehind", DROPBEHIND),
                                directio=getattr(params, "directio", True),
                                groupsync=getattr(params, "groupsync", False))
    if name == "inmemory":
        from .backends.inmemory import InMemoryDriver
        return InMemoryDriver()
    if name == "s3":
        try:
            from .backends.s3 import S3Driver
        except ImportError as exc:      # aiobotocore is the optional extra fastreg[s3]
            raise ValueError(f"storage driver s3 needs aiobotocore: pip install 'fastreg[s3]' ({exc})") from None
        return S3Driver(params, redirect=redirect)
    if name == "azure":
        try:
            from .backends.azure import AzureDriver
        except ImportError as exc:      # azure-storage-blob + aiohttp: the optional extra fastreg[azure]
            raise ValueError(f"storage driver azure needs azure-storage-blob: pip install 'fastreg[azure]' ({exc})"
                             ) from None
        return AzureDriver(params, redirect=redirect)
    if name == "gcs":
        from .backends.gcs import GcsDriver  # aiohttp; gcloud-aio-auth for tokens (fastreg[gcs])
        return GcsDriver(params, redirect=redirect)
    raise ValueError(f"storage driver {name!r} is not available in this build of fastreg")


def check_faulty(raw: Any) -> None:
    """Validate a ``storage.faulty`` section without opening anything (config load time)."""
    _faulty_parts(raw)


def _faulty_parts(raw: Any) -> tuple[str, Any, Any]:
    from types import SimpleNamespace

    from .wrappers.faulty import FaultyDriver
    raw = dict(raw or {})
    unknown = set(raw) - {"driver", "parameters", "rules", "stale", "seed"}
    if unknown:
        raise ValueError(f"storage.faulty: unknown keys {sorted(unknown)}")
    inner_name = str(raw.get("driver") or "")
    if inner_name in ("", "faulty"):
        raise ValueError("storage.faulty.driver: name the real driver underneath (filesystem, inmemory, s3, ...)")
    given = dict(raw.get("parameters") or {})
    params: Any = given
    if inner_name == "filesystem":     # the typed section the filesystem driver reads
        if not given.get("rootdirectory"):
            raise ValueError("storage.faulty.parameters.rootdirectory: required for the filesystem driver")
        params = SimpleNamespace(rootdirectory=str(given["rootdirectory"]), maxthreads=int(given.get("maxthreads", 16)))
    FaultyDriver.parse(raw)                 # rules and stale mode: checked here
    return inner_name, params, raw


def _faulty(raw: Any, *, fsync: bool, redirect: bool) -> StorageDriver:
    """``storage.faulty: {driver, parameters, rules, stale, seed}`` (see ``faulty.py``)."""
    from .wrappers.faulty import FaultyDriver
    inner_name, params, raw = _faulty_parts(raw)
    inner = _create(inner_name, params, fsync=fsync, redirect=redirect)
    return FaultyDriver.from_config(inner, raw)
