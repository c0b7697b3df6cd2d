"""Tag immutability: rules by repository glob and tag pattern (``fastreg.immutability.rules``).

An immutable tag cannot be moved to another manifest nor deleted, by a client or by a retention
policy: the request is refused with the spec's ``DENIED`` (403) and a message naming the rule.
Pushing the manifest it already names again is allowed (it changes nothing), and so is its first
push; first pushes of immutable tags take a storage-wide lock, so that of two racing for one tag
the later is refused as a move.  What an immutable tag names is protected with it: a manifest an index it names lists (a
``DELETE`` by digest of the child) and a blob of an image it names (a ``DELETE`` of the blob in
that repository) are refused the same way, since either would break the tag's pulls.  Globs are
the access policy's (``fastreg.auth.access``): ``*`` within a path component, ``**`` across
components, ``?`` one character other than ``/``; a tag has no ``/``, so in tag patterns ``*`` and
``**`` both match any run of characters.
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..auth.access import _glob as compile_glob
from ..digest import Digest, InvalidDigest, UnsupportedDigest, parse_digest
from ..errors import RegistryError
from ..storage import layout
from .lock import StorageLock

if TYPE_CHECKING:
    from ..config import Config

LOCK = layout.IMMUTABILITY_LOCK         # first pushes of immutable tags, one at a time
LOCK_WAIT = 30.0


@dataclass(frozen=True, slots=True)
class ImmutabilityRule:
    index: int
    repository: str
    tags: tuple[str, ...]
    _repo: re.Pattern[str]
    _tags: tuple[re.Pattern[str], ...]

    def matches(self, name: str, tag: str) -> bool:
        return self._repo.fullmatch(name) is not None and any(p.fullmatch(tag) for p in self._tags)

    def __str__(self) -> str:
        return (f"fastreg.immutability.rules.{self.index} (repository {self.repository!r}, "
                f"tags {', '.join(repr(t) for t in self.tags)})")


class Immutability:
    """The rules, and a callback told of every refusal (the metric)."""

    def __init__(self, rules: Iterable[tuple[str, Iterable[str]]],
                 on_refusal: Callable[[str], None] | None = None) -> None:
        self.rules = tuple(ImmutabilityRule(i, repo, tuple(tags), compile_glob(repo),
                                            tuple(compile_glob(t) for t in tags))
                           for i, (repo, tags) in enumerate(rules))
        self.on_refusal = on_refusal
        self._locks: dict[int, StorageLock] = {}         # by driver

    @classmethod
    def from_config(cls, cfg: Config) -> Immutability | None:
        """From the whole config; None when no rule is configured."""
        rules = cfg.fastreg.immutability.rules
        return cls((r.repository, r.tags) for r in rules) if rules else None

    def rule(self, name: str, tag: str) -> ImmutabilityRule | None:
        """The first rule that makes ``name:tag`` immutable, or None."""
        for r in self.rules:
            if r.matches(name, tag):
                return r
        return None

    def refuse(self, action: str, name: str, tag: str, rule: ImmutabilityRule, detail: str = "",
                 what: str = "") -> RegistryError:
        """DENIED for `action` ("move" or "delete") of an immutable tag (or of `what`, something
        it names); counted."""
        if self.on_refusal is not None:
            self.on_refusal(action)
        message = (f"{what} is used by immutable tag {name}:{tag} ({rule}): it cannot be deleted{detail}" if what
                   else f"tag {name}:{tag} is immutable ({rule}): it cannot be "
                        f"{'moved' if action == 'move' else 'deleted'}{detail}")
        return RegistryError("DENIED", {"repository": name, "tag": tag, "rule": str(rule)}, message=message)

    # -- the checks the manifest service makes (fastreg.registry.manifests) --------------------
    @contextlib.asynccontextmanager
    async def put_guard(self, tags: Any, name: str, tag: str, target: Any) -> AsyncIterator[None]:
        """Around a PUT of `tag` to manifest `target`, before it writes anything: refuse a move.
        The first push of an immutable tag runs under a storage-wide lock (every worker, and every
        replica where the driver has ``exclusive``) and looks at the tag again once it holds it:
        of two first pushes racing, the later one finds the earlier's tag and is refused as a move
        (or accepted, if it pushes the same manifest) instead of silently replacing it."""
        rule = self.rule(name, tag)
        if rule is None or await self._exists(tags, name, tag, target, rule):
            yield
            return
        async with self._lock(tags.driver).held():
            await self._exists(tags, name, tag, target, rule)
            yield

    @contextlib.asynccontextmanager
    async def delete_guard(self, tags: Any, name: str) -> AsyncIterator[None]:
        """Around a DELETE by digest or of a blob in `name`, from its check to its last removal:
        in a repository a rule covers, the lock first pushes hold, so that an immutable tag
        pushed for the first time cannot appear between the check and the removal (and be
        removed with it, or left naming what was removed)."""
        if not any(r._repo.fullmatch(name) for r in self.rules):
            yield
            return
        async with self._lock(tags.driver).held():
            yield

    def _lock(self, driver: Any) -> StorageLock:
        lock = self._locks.get(id(driver))
        if lock is None:
            lock = self._locks[id(driver)] = StorageLock(
                driver, LOCK, wait=LOCK_WAIT, what="immutable tag", busy="immutable tag push busy, retry")
        return lock

    async def _exists(self, tags: Any, name: str, tag: str, target: Any, rule: ImmutabilityRule) -> bool:
        """Whether immutable `tag` exists (naming `target`: else DENIED, a move)."""
        try:
            current = await tags.resolve(name, tag)
        except RegistryError:
            return False                            # its first push
        if current != target:
            raise self.refuse("move", name, tag, rule, f" from {current} to {target}")
        return True

    async def check_delete_tag(self, tags: Any, name: str, tag: str) -> None:
        rule = self.rule(name, tag)
        if rule is not None:
            await tags.resolve(name, tag)           # MANIFEST_UNKNOWN for a tag that does not exist
            raise self.refuse("delete", name, tag, rule)

    async def check_delete_manifest(self, tags: Any, name: str, target: Any,
                                    read: Callable[[Digest], Awaitable[bytes]] | None = None) -> None:
        """A DELETE by digest removes the tags naming it: refused if one of them is immutable, or
        if an immutable tag names an index that lists it (`read`: a manifest's stored bytes)."""
        if not any(r._repo.fullmatch(name) for r in self.rules):
            return
        for tag in await tags.pointing_at(name, target):
            rule = self.rule(name, tag)
            if rule is not None:
                raise self.refuse("delete", name, tag, rule, f" (it names {target})")
        if read is not None:
            await self._check_reached(tags, read, name, target, blobs=False)

    async def check_delete_blob(self, tags: Any, name: str, target: Digest,
                                read: Callable[[Digest], Awaitable[bytes]]) -> None:
        """A DELETE of a blob of `name`: refused if an image an immutable tag names uses it."""
        if any(r._repo.fullmatch(name) for r in self.rules):
            await self._check_reached(tags, read, name, target, blobs=True)

    async def _check_reached(self, tags: Any, read: Callable[[Digest], Awaitable[bytes]], name: str,
                             target: Digest, *, blobs: bool) -> None:
        """Refuse if a manifest an immutable tag of `name` names reaches `target`: through an
        index's children (any depth), and, if `blobs`, an image's config and layers."""
        try:
            all_tags = await tags.all(name)
        except RegistryError:
            return                                  # no such repository: nothing is protected
        want = str(target)
        for tag in all_tags:
            rule = self.rule(name, tag)
            if rule is None:
                continue
            try:
                top = await tags.resolve(name, tag)
            except RegistryError:
                continue                            # deleted meanwhile
            seen: set[str] = set()
            todo = [top]
            while todo:
                d = todo.pop()
                if str(d) in seen:
                    continue
                seen.add(str(d))
                try:
                    doc = orjson.loads(await read(d))
                except (RegistryError, orjson.JSONDecodeError):
                    continue                        # unreadable: it reaches nothing we can tell
                for child, is_blob in _references(doc):
                    if child == want and (blobs or not is_blob):
                        via = "" if d == top else f", through {d}"
                        raise self.refuse("delete", name, tag, rule, f" (the tag names {top}{via})",
                                          what=f"{'blob' if is_blob else 'manifest'} {want}")
                    if not is_blob:
                        try:
                            todo.append(parse_digest(child, allow_blake3=True))
                        except (InvalidDigest, UnsupportedDigest):
                            pass


def _references(doc: Any) -> list[tuple[str, bool]]:
    """(digest, is a blob) of what a stored manifest names: an index's children, an image's config
    and layers (foreign layers, stored elsewhere, are not blobs of the repository)."""
    out: list[tuple[str, bool]] = []
    if not isinstance(doc, dict):
        return out
    for key, is_blob in (("manifests", False), ("layers", True)):
        if isinstance(doc.get(key), list):
            out += [(desc["digest"], is_blob) for desc in doc[key]
                    if isinstance(desc, dict) and isinstance(desc.get("digest"), str) and not desc.get("urls")]
    config = doc.get("config")
    if isinstance(config, dict) and isinstance(config.get("digest"), str):
        out.append((config["digest"], True))
    return out
