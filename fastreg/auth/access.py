"""What a request needs, and what an access policy grants.

Required access (Distribution's rules, ``registry/handlers/app.go``):

    route                 method            needs
    base (/v2/)           any               authentication only
    catalog               GET               registry:catalog:*
    any repository route  GET, HEAD         repository:<name>:pull
                          POST, PUT, PATCH  repository:<name>:pull,push
                          DELETE            repository:<name>:delete
    upload_start ?mount=&from=F             also repository:F:pull, else no mount (a normal
                                            upload session, 202) — never a silent mount

A policy (``fastreg.auth.access`` in the config) is a list of rules, each a repository glob and,
per action, the principals granted it.  Every matching rule adds its grants (order does not
matter).  Globs: ``*`` matches within one path component, ``**`` across components, ``?``
one character other than ``/``.  Principals: a user name, ``@group``, ``authenticated`` (any
user with valid credentials), ``anonymous`` (everyone, with or without credentials).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import AccessPolicy

ACTIONS = ("pull", "push", "delete")
_FOR_METHOD = {"GET": ("pull",), "HEAD": ("pull",), "POST": ("pull", "push"), "PUT": ("pull", "push"),
               "PATCH": ("pull", "push"), "DELETE": ("delete",)}


@dataclass(frozen=True, slots=True)
class Scope:
    """One resource access: ``type:name:action,action`` (the token spec's scope)."""

    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        """``repository:library/alpine:pull,push`` (names may hold ':' before a port: split from
        both ends as Distribution does).  None when malformed."""
        typ, sep, rest = text.partition(":")
        name, sep2, actions = rest.rpartition(":")
        typ = typ.split("(", 1)[0]          # "repository(plugin)" → "repository"
        if not sep or not sep2 or not typ or not name:     # "(x):name:pull" has no type either
            return None
        return cls(typ, name, tuple(a for a in actions.split(",") if a))


CATALOG = Scope("registry", "catalog", ("*",))


def required(route: str, method: str, name: str | None) -> tuple[Scope, ...]:
    """The scopes a request needs (empty for /v2/)."""
    if route == "catalog":
        return (CATALOG,)
    if name is None:
        return ()
    return (Scope("repository", name, _FOR_METHOD.get(method, ("pull", "push"))),)


# -- policies -----------------------------------------------------------------------------------

def _glob(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c))
        i += 1
    return re.compile("".join(out))


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    grants: Mapping[str, frozenset[str]]       # action → principals


@dataclass(frozen=True)
class Identity:
    user: str | None                    # None: anonymous
    groups: frozenset[str] = frozenset()

    def principals(self) -> frozenset[str]:
        if self.user is None:
            return frozenset({"anonymous"})
        return frozenset({"anonymous", "authenticated", self.user, *(f"@{g}" for g in self.groups)})


ANONYMOUS = Identity(None)


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    catalog: frozenset[str]
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)   # user → groups

    @classmethod
    def from_config(cls, cfg: AccessPolicy) -> Policy:
        """From ``fastreg.auth.access`` (see config.AccessPolicy)."""
        members: dict[str, set[str]] = {}
        for group, users in cfg.groups.items():
            for u in users:
                members.setdefault(u, set()).add(group)
        rules = tuple(Rule(_glob(r.repository),
                           {a: frozenset(getattr(r, a)) for a in ACTIONS if getattr(r, a)})
                      for r in cfg.rules)
        return cls(rules, frozenset(cfg.catalog), {u: frozenset(g) for u, g in members.items()})

    @classmethod
    def allow_authenticated(cls) -> Policy:
        """No policy configured: any authenticated user may do anything (Distribution's htpasswd)."""
        everyone = frozenset({"authenticated"})
        return cls((Rule(re.compile(".*"), dict.fromkeys(ACTIONS, everyone)),), everyone)

    def identity(self, user: str | None) -> Identity:
        return ANONYMOUS if user is None else Identity(user, self.groups.get(user, frozenset()))

    def granted(self, who: Identity, scope: Scope) -> tuple[str, ...]:
        """The subset of ``scope.actions`` this identity holds (order kept)."""
        principals = who.principals()
        if scope.type == "registry":
            ok = scope.name == "catalog" and not principals.isdisjoint(self.catalog)
            return tuple(a for a in scope.actions if a == "*") if ok else ()
        if scope.type != "repository":
            return ()
        held: set[str] = set()
        for rule in self.rules:
            if rule.pattern.fullmatch(scope.name):
                held.update(a for a, ps in rule.grants.items() if not principals.isdisjoint(ps))
        if "*" in scope.actions:        # "repository:x:*" asks for everything held
            return tuple(a for a in ACTIONS if a in held)
        return tuple(a for a in scope.actions if a in held)

    def allows(self, who: Identity, scopes: Iterable[Scope]) -> bool:
        return all(set(self.granted(who, s)) >= set(s.actions) for s in scopes)

    def pull_filter(self, who: Identity) -> Callable[[str], bool]:
        """Whether `who` may pull a repository: what the catalog shows them (api/catalog.py)."""
        principals = who.principals()
        rules = [r.pattern for r in self.rules if not principals.isdisjoint(r.grants.get("pull", ()))]
        return lambda name: any(p.fullmatch(name) for p in rules)
