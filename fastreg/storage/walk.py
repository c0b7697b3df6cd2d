"""Walking the storage tree (``storage/layout.py``) through any driver: small lookups shared by
the services, and the walks of the offline tools (gc, check, upload purging) that must see
everything stored, whatever the catalog cache says — every repository, every blob, every entry
of a link directory, every upload session.  With ``layout.py`` the one place that knows where
things live: the tools name no path of their own."""
from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import NamedTuple

from ..digest import Digest, InvalidDigest, UnsupportedDigest, parse_digest
from . import layout
from .driver.base import PathNotFound, StorageDriver


async def listing(driver: StorageDriver, path: str) -> list[str]:
    """The sorted names under `path`; empty if it does not exist."""
    try:
        return sorted(await driver.list(path))
    except PathNotFound:
        return []


async def exists(driver: StorageDriver, path: str) -> bool:
    """Whether `path` (a file or a directory) exists."""
    try:
        await driver.stat(path)
        return True
    except PathNotFound:
        return False


async def named(driver: StorageDriver, root: str, filename: str) -> list[str]:
    """The names (``a/b/c``) under `root` whose directory holds `filename`, sorted; components
    starting with ``_`` or ``.`` are not walked into (the quota's usage records)."""
    found: list[str] = []

    async def walk(path: str, prefix: str) -> None:
        for child in await listing(driver, path):
            if child == filename and prefix:
                found.append(prefix)
            elif not child.startswith(("_", ".")):
                await walk(f"{path}/{child}", f"{prefix}/{child}" if prefix else child)

    await walk(root, "")
    return sorted(found)


async def repositories(driver: StorageDriver) -> list[str]:
    """Every repository name: each directory under ``repositories/`` holding ``_manifests`` or
    ``_layers``, sorted (nested names are walked through their path components)."""
    found: list[str] = []

    async def walk(path: str, prefix: str) -> None:
        children = await listing(driver, path)
        if "_manifests" in children or "_layers" in children:
            found.append(prefix)
        for child in children:
            if not child.startswith(("_", ".")):
                await walk(f"{path}/{child}", f"{prefix}/{child}" if prefix else child)

    await walk(layout.REPOS, "")
    return sorted(found)


def _digest(alg: str, hex_: str) -> Digest | None:
    try:
        return parse_digest(f"{alg}:{hex_}", allow_blake3=True)
    except (InvalidDigest, UnsupportedDigest):
        return None


async def blobs(driver: StorageDriver) -> AsyncIterator[Digest]:
    """Every blob directory ``blobs/<alg>/<hex[:2]>/<hex>`` whose name is a digest, in sorted order
    (its ``data``, ``layout.blob_data``, may be missing: the caller stats it).  Anything else under
    ``blobs/`` is not a blob of this layout and is left out."""
    for alg in await listing(driver, layout.BLOBS):
        for prefix in await listing(driver, f"{layout.BLOBS}/{alg}"):
            for hex_ in await listing(driver, f"{layout.BLOBS}/{alg}/{prefix}"):
                d = _digest(alg, hex_)
                if d is not None and hex_[:2] == prefix:
                    yield d


class Link(NamedTuple):
    """An entry ``<alg>/<hex>`` of a link directory."""
    digest: Digest
    path: str           # its ``link`` file (which may be missing: the caller reads it)
    dir: str            # the entry's directory: removing it removes the entry


async def links(driver: StorageDriver, base: str) -> AsyncIterator[Link]:
    """Every entry of the link directory `base` (``layout.layers_dir``, ``revisions_dir``,
    ``referrers_dir``) whose name is a digest, in sorted order."""
    for alg in await listing(driver, base):
        for hex_ in await listing(driver, f"{base}/{alg}"):
            d = _digest(alg, hex_)
            if d is not None:
                entry = layout.link_entry_dir(base, alg, hex_)
                yield Link(d, layout.entry_link(entry), entry)


async def referrer_subjects(driver: StorageDriver, name: str) -> AsyncIterator[tuple[Digest, str]]:
    """Every subject of `name`'s referrers index whose name is a digest, in sorted order, with
    its link directory (``layout.referrers_dir``; walk it with `links`)."""
    base = layout.referrers_root(name)
    for alg in await listing(driver, base):
        for hex_ in await listing(driver, f"{base}/{alg}"):
            s = _digest(alg, hex_)
            if s is not None:
                yield s, layout.referrers_dir(name, alg, hex_)


class Upload(NamedTuple):
    """An upload session directory ``<name>/_uploads/<uuid>``."""
    name: str           # the repository
    uuid: str
    path: str           # the session's directory (``layout.upload_dir``)


async def uploads(driver: StorageDriver) -> list[Upload]:
    """Every upload session under ``repositories/``: each ``_uploads/<uuid>`` beside any directory
    of a repository path (not only those holding ``_manifests`` or ``_layers``: a first push's
    session comes before either).  An ``_uploads`` right under ``repositories/`` belongs to no
    repository (no name is empty): the registry never writes one, and it is not listed."""
    found: list[Upload] = []

    async def walk(path: str, prefix: str) -> None:
        children = await listing(driver, path)
        if prefix and layout.UPLOADS in children:
            found.extend(Upload(prefix, u, layout.upload_dir(prefix, u))
                         for u in await listing(driver, layout.uploads_dir(prefix)))
        for child in children:
            if not child.startswith(("_", ".")):
                await walk(f"{path}/{child}", f"{prefix}/{child}" if prefix else child)

    await walk(layout.REPOS, "")
    return found


async def newest_mtime(driver: StorageDriver, path: str, depth: int) -> float:
    """The newest mtime of `path` and of what lies under it, `depth` levels down (0 if it does
    not exist)."""
    try:
        info = await driver.stat(path)
    except PathNotFound:
        return 0.0
    newest = info.mtime
    if info.is_dir and depth > 0:
        for child in await listing(driver, path):
            newest = max(newest, await newest_mtime(driver, f"{path}/{child}", depth - 1))
    return newest


def _walk_temporary(root: str) -> list[tuple[str, int, float]]:
    from .driver.backends.filesystem import TMP_PREFIX  # imported only where that driver serves
    found: list[tuple[str, int, float]] = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if not name.startswith(TMP_PREFIX):
                continue
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue                    # renamed over its target meanwhile: a put that finished
            found.append((os.path.relpath(full, root), st.st_size, st.st_mtime))
    return found


async def temporary_files(driver: StorageDriver) -> list[tuple[str, int, float]] | None:
    """Every temporary file ``.fastreg-tmp-*`` the filesystem driver left under the registry root
    (driver path, size, mtime), sorted; None if the driver keeps no local files (it then writes
    no temporary files either).  The driver hides them from its listings: the local directory
    is walked."""
    root = driver.local_path(layout.ROOT)
    if root is None:
        return None
    found = await asyncio.to_thread(_walk_temporary, root) if os.path.isdir(root) else []
    return [(f"{layout.ROOT}/{rel.replace(os.sep, '/')}", size, mtime) for rel, size, mtime in sorted(found)]
