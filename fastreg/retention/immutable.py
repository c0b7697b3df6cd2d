"""Tag immutability: rules by repository glob and tag pattern (``fastreg.immutability.rules``).

An immutable tag cannot be moved to another manifest nor deleted, by a client or by a retention
policy: the request is refused with the spec's ``DENIED`` (403) and a message naming the rule.
Pushing the manifest it already names again is allowed (it changes nothing), and so is its first
push.  Globs are the access policy's (``fastreg.auth.access``): ``*`` within a path component,
``**`` across components, ``?`` one character other than ``/``; a tag has no ``/``, so in tag
patterns ``*`` and ``**`` both match any run of characters.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..auth.access import _glob as compile_glob
from ..errors import RegistryError

if TYPE_CHECKING:
    from ..config import Config


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

    def refuse(self, action: str, name: str, tag: str, rule: ImmutabilityRule, detail: str = "") -> RegistryError:
        """DENIED for `action` ("move" or "delete") of an immutable tag; counted."""
        if self.on_refusal is not None:
            self.on_refusal(action)
        what = f"tag {name}:{tag} is immutable ({rule})"
        return RegistryError("DENIED", {"repository": name, "tag": tag, "rule": str(rule)},
                             message=f"{what}: it cannot be {'moved' if action == 'move' else 'deleted'}"
                                     f"{detail}")

    # -- the checks the manifest service makes (fastreg.registry.manifests) --------------------
    async def check_put(self, tags: Any, name: str, tag: str, target: Any) -> None:
        """Before a PUT of `tag` to manifest `target` writes anything: refuse a move."""
        rule = self.rule(name, tag)
        if rule is None:
            return
        try:
            current = await tags.resolve(name, tag)
        except RegistryError:
            return                                  # its first push
        if current != target:
            raise self.refuse("move", name, tag, rule, f" from {current} to {target}")

    async def check_delete_tag(self, tags: Any, name: str, tag: str) -> None:
        rule = self.rule(name, tag)
        if rule is not None:
            await tags.resolve(name, tag)           # MANIFEST_UNKNOWN for a tag that does not exist
            raise self.refuse("delete", name, tag, rule)

    async def check_delete_manifest(self, tags: Any, name: str, target: Any) -> None:
        """A DELETE by digest removes the tags naming it: refused if one of them is immutable."""
        if not any(r._repo.fullmatch(name) for r in self.rules):
            return
        for tag in await tags.pointing_at(name, target):
            rule = self.rule(name, tag)
            if rule is not None:
                raise self.refuse("delete", name, tag, rule, f" (it names {target})")
