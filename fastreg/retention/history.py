"""Push history: when each tag and manifest was pushed.

A push writes the tag's ``current/link`` and the manifest's revision link (every push rewrites
both, even of unchanged content), so their modification times are the last push of the tag and
of the manifest.  The history therefore lives in the storage itself, beside the data: written by
the push, in the same write, on every driver (filesystem mtimes, object stores' Last-Modified),
shared by every worker and replica, never lost by a crash, costing the request path nothing, and
already present for data written by Distribution.  What it cannot tell: anything about pulls, and
sub-second order on object stores whose timestamps have one-second resolution (S3) — a retention
rule then keeps every tag tied with the last one it keeps.  A copy that does not keep
modification times (``cp`` without ``-p``, a bucket copy) resets the history to the copy's time.

``ManifestHistory`` is how the maintenance reports (``fastreg gc``'s lines, ``fastreg check``'s
problems) show a manifest's push and pull history: one format, made here.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ..digest import Digest, InvalidDigest, UnsupportedDigest, parse_digest
from ..storage import layout, walk
from ..storage.driver.base import PathNotFound, StorageDriver
from . import pulls as pull_records


@dataclass(frozen=True, slots=True)
class TagPush:
    tag: str
    digest: Digest
    pushed: float          # seconds since the epoch


def _digest(text: str) -> Digest | None:
    try:
        return parse_digest(text, allow_blake3=True)
    except (InvalidDigest, UnsupportedDigest):
        return None


async def tag_push(driver: StorageDriver, name: str, tag: str) -> TagPush | None:
    """The tag's target and last push, or None if it does not exist (or names nothing valid)."""
    path = layout.tag_current_link(name, tag)
    try:
        info = await driver.stat(path)
        body = await driver.get_content(path)
    except PathNotFound:
        return None
    try:
        d = _digest(body.decode().strip())
    except UnicodeDecodeError:
        return None
    return None if d is None else TagPush(tag, d, info.mtime)


async def tags(driver: StorageDriver, name: str) -> list[TagPush]:
    """Every tag of `name` with its target and last push, most recent first (then by name)."""
    out = []
    for tag in await walk.listing(driver, layout.tags_dir(name)):
        tp = await tag_push(driver, name, tag)
        if tp is not None:
            out.append(tp)
    out.sort(key=lambda t: (-t.pushed, t.tag))
    return out


async def revision_pushed(driver: StorageDriver, name: str, d: Digest) -> float | None:
    try:
        return (await driver.stat(layout.revision_link(name, d.algorithm, d.hex))).mtime
    except PathNotFound:
        return None


async def revisions(driver: StorageDriver, name: str) -> dict[Digest, float]:
    """Every manifest revision of `name` → its last push."""
    out: dict[Digest, float] = {}
    async for link in walk.links(driver, layout.revisions_dir(name)):
        t = await revision_pushed(driver, name, link.digest)
        if t is not None:
            out[link.digest] = t
    return out


def utc(t: float) -> str:
    """A time as the reports print it: ``2026-12-07T04:35:24Z``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def recorded_pulls(driver: StorageDriver, name: str) -> pull_records.Pulls | None:
    """The pull history recorded for `name`, or None when none was ever recorded for it (the pull
    history is off, or was off while it was pulled)."""
    if not await walk.listing(driver, layout.pull_history_dir(name)):
        return None
    return await pull_records.read(driver, name)


@dataclass(frozen=True, slots=True)
class ManifestHistory:
    """A manifest's history as recorded: its last push, and its pulls where pulls are recorded."""
    pushed: str | None          # the last push (the revision link's mtime, see ``utc``); None: unknown
    pulled: str | None          # the last pull recorded; None: never pulled, or no pulls recorded
    pulls: int | None           # the pulls recorded; None: no pull history for the repository

    @classmethod
    def of(cls, pushed: float | None, seen: pull_records.Pulls | None, d: Digest | str) -> ManifestHistory:
        """From the revision link's mtime and the repository's ``recorded_pulls``."""
        entry = None if seen is None else seen.manifests.get(str(d))
        return cls(None if pushed is None else utc(pushed), None if entry is None else utc(entry[0]),
                   None if seen is None else (0 if entry is None else int(entry[1])))

    def text(self) -> str:
        """``last pushed …; last pulled …, N pulls`` (or ``never pulled``, ``no pulls recorded``)."""
        pushed = "push time unknown" if self.pushed is None else f"last pushed {self.pushed}"
        if self.pulls is None:
            return f"{pushed}; no pulls recorded"
        if self.pulled is None:
            return f"{pushed}; never pulled"
        return f"{pushed}; last pulled {self.pulled}, {self.pulls} pulls"


async def manifest_history(driver: StorageDriver, name: str, d: Digest,
                           seen: pull_records.Pulls | None) -> ManifestHistory:
    """`d`'s history in `name`, given the repository's ``recorded_pulls``."""
    return ManifestHistory.of(await revision_pushed(driver, name, d), seen, d)
