"""Retention policies (``fastreg.retention``): which tags and untagged manifests go, and why the rest stay.

For each repository, the first policy whose glob matches applies (repositories no policy matches
are left alone).  A tag is kept if *any* of these keeps it, and every one that does is reported:

``immutable``      an immutability rule (``fastreg.immutability``) names it: never deleted;
``keep.tags``      it matches one of the tag globs (``latest``, ``v*``);
``keep.lastpushed``  it is among the N most recently pushed tags of the repository (counted
                   over all its tags; tags pushed in the same instant as the Nth are kept too);
``keep.pushedwithin``  it was pushed less than that long ago.

Every other tag is deleted.  Then, if the policy sets ``untagged``, every manifest that no
remaining tag reaches is deleted once its last push is older than that delay.  "Reaches": the
tag's manifest, an index's children (recursively, within the repository), and the referrers
(signatures, SBOMs: manifests whose ``subject`` is a reached manifest) — referrers follow their
subject, in and out.  An untagged manifest younger than the delay is kept, with everything it
reaches.

Online and safe: the run deletes through the manifest service, exactly as a client's DELETE does
(so immutability is enforced again, webhook ``delete`` events are sent, and the online garbage
collection later sweeps the blobs only the deleted manifests used).  Just before deleting a tag
it reads the tag again: a tag pushed (moved, or pushed again) since the run looked at it is
kept; likewise a manifest pushed again or tagged since is kept.  A push landing between that
re-read and the delete is not lost: the run holds an intent on what it deletes while it re-reads
and deletes, and a PUT waits for it and writes back what was removed (``registry/deletes.py``).
"""
from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from ..api.http import Request
from ..auth.access import _glob as compile_glob
from ..digest import Digest
from ..errors import RegistryError
from ..hooks import RequestState, Target
from ..maintenance.gc import references
from ..registry.deletes import DeleteIntents
from ..storage import layout, walk
from ..storage.driver.base import PathNotFound, StorageDriver, StorageError
from . import history, pulls
from .immutable import Immutability

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("fastreg.retention")

ACTOR = "fastreg-retention"
Emit = Callable[[str, Request, Target], Awaitable[None]]


def _human_duration(seconds: float) -> str:
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


@dataclass(frozen=True)
class CompiledPolicy:
    index: int
    repository: str
    pattern: re.Pattern[str]
    last_pushed: int
    pushed_within: float
    last_pulled: int
    pulled_within: float
    tags: tuple[tuple[str, re.Pattern[str]], ...]
    untagged: float | None

    @property
    def uses_pulls(self) -> bool:
        return bool(self.last_pulled or self.pulled_within)

    def __str__(self) -> str:
        return f"fastreg.retention.policies.{self.index} (repository {self.repository!r})"


def compile_policies(cfg: Config) -> list[CompiledPolicy]:
    return [CompiledPolicy(i, p.repository, compile_glob(p.repository), p.keep.lastpushed, p.keep.pushedwithin,
                           p.keep.lastpulled, p.keep.pulledwithin, tuple((t, compile_glob(t)) for t in p.keep.tags),
                           p.untagged)
            for i, p in enumerate(cfg.fastreg.retention.policies)]


def delete_intents(cfg: Config, driver: StorageDriver) -> DeleteIntents | None:
    """What the manifest PUT checks after linking (``registry/deletes.py``): in the repositories a
    policy matches, a retention run may be deleting what the PUT links.  None without policies."""
    patterns = [p.pattern for p in compile_policies(cfg)]
    if not patterns:
        return None
    return DeleteIntents(driver, lambda name: any(p.fullmatch(name) for p in patterns))


@dataclass
class Decision:
    kind: str                   # "tag" or "manifest"
    name: str                   # the tag, or the manifest's digest
    digest: str
    pushed: float
    delete: bool
    why: list[str]              # every rule that keeps it; for a deletion, why it goes
    done: bool = False          # deleted (not in a dry run)
    error: str = ""             # the deletion failed: how

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "digest": self.digest, "pushed": self.pushed,
                "action": "delete" if self.delete else "keep", "why": self.why, "deleted": self.done,
                **({"error": self.error} if self.error else {})}


@dataclass
class RepoOutcome:
    repository: str
    policy: str
    decisions: list[Decision] = field(default_factory=list)
    error: str = ""


@dataclass
class Report:
    dry_run: bool
    repositories: list[RepoOutcome] = field(default_factory=list)

    def count(self, kind: str, *, deleted: bool) -> int:
        return sum(1 for r in self.repositories for d in r.decisions
                   if d.kind == kind and d.delete and (d.done if deleted else True))

    @property
    def failed(self) -> bool:
        return any(r.error or any(d.error for d in r.decisions) for r in self.repositories)

    def as_json(self) -> bytes:
        return orjson.dumps({"dryRun": self.dry_run, "repositories": [
            {"repository": r.repository, "policy": r.policy, "decisions": [d.as_dict() for d in r.decisions],
             **({"error": r.error} if r.error else {})} for r in self.repositories]})

    def lines(self) -> list[str]:
        """One line per decision: what goes (or would go) and which rule spared everything else."""
        out = []
        verb = "would delete" if self.dry_run else "delete"
        for r in self.repositories:
            if r.error:
                out.append(f"{r.repository}: failed: {r.error}")
            for d in r.decisions:
                ref = f"{r.repository}:{d.name}" if d.kind == "tag" else f"{r.repository}@{d.name}"
                if d.delete:
                    state = f"{verb} {d.kind}" + ("" if self.dry_run or d.done else " FAILED")
                    out.append(f"{state} {ref} ({'; '.join(d.why)}){': ' + d.error if d.error else ''}")
                else:
                    out.append(f"keep {d.kind} {ref} ({'; '.join(d.why)})")
        return out

    def summary(self) -> str:
        tags = self.count("tag", deleted=not self.dry_run)
        manifests = self.count("manifest", deleted=not self.dry_run)
        kept = sum(1 for r in self.repositories for d in r.decisions if d.kind == "tag" and not d.delete)
        verb = "would delete" if self.dry_run else "deleted"
        return (f"retention: {len(self.repositories)} repositories under a policy; {verb} {tags} tags and "
                f"{manifests} untagged manifests; kept {kept} tags")


def _failed(dec: Decision, name: str, reference: str, exc: RegistryError) -> None:
    """A deletion that failed: its error in the report and the log."""
    dec.error = exc.message if exc.detail is None else f"{exc.message} ({exc.detail})"
    log.error("retention: deleting %s %s failed: %s", name, reference, dec.error)


@dataclass
class _Fresh:
    tags: dict[str, pulls.Entry]
    read_at: float


def _event_request(name: str, reference: str) -> Request:
    """The request a retention deletion's webhook event describes (no client: the registry itself)."""
    scope = {"type": "http", "method": "DELETE", "path": f"/v2/{name}/manifests/{reference}",
             "headers": [(b"user-agent", ACTOR.encode())], "fastreg": RequestState(route="manifest", actor=ACTOR)}
    return Request(scope, _no_body, {"name": name, "reference": reference})


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


class Retention:
    """Applies the configured policies through a registry's services (``fastreg.registry.Registry``)."""

    def __init__(self, cfg: Config, registry: Any, *, emit: Emit | None = None,
                 deleted: Callable[[str, int], None] | None = None, now: Callable[[], float] = time.time,
                 pull_settle: float | None = None) -> None:
        self.policies = compile_policies(cfg)
        self.registry = registry
        self.driver = registry.driver
        self.immutable: Immutability | None = registry.manifests.immutable
        self.intents = DeleteIntents(self.driver)       # a push racing a delete waits, then restores
        self.emit = emit
        self.deleted = deleted            # metric: (kind, count)
        self.now = now
        # pulls reach storage within a flush interval: wait that long (and a margin) after deciding,
        # and re-read the pull history at most this often while deleting
        self.pull_settle = cfg.fastreg.history.flushinterval + 1.0 if pull_settle is None else pull_settle

    def policy_for(self, name: str) -> CompiledPolicy | None:
        for p in self.policies:
            if p.pattern.fullmatch(name):
                return p
        return None

    async def run(self, *, dry_run: bool = False, only: Callable[[str], bool] | None = None) -> Report:
        report = Report(dry_run)
        for name in await walk.repositories(self.driver):
            if only is not None and not only(name):
                continue
            p = self.policy_for(name)
            if p is None:
                continue
            outcome = RepoOutcome(name, str(p))
            report.repositories.append(outcome)
            try:
                await self.repository(name, p, outcome, dry_run)
            except (StorageError, RegistryError) as exc:
                outcome.error = str(exc)
                log.error("retention of %s failed: %s", name, exc)
        if self.deleted is not None and not dry_run:
            self.deleted("tag", report.count("tag", deleted=True))
            self.deleted("manifest", report.count("manifest", deleted=True))
        return report

    # -- tags -------------------------------------------------------------------------------
    def keeps(self, p: CompiledPolicy, name: str, pushes: list[history.TagPush], now: float,
              pulled: dict[str, pulls.Entry]) -> list[list[str]]:
        """For each tag (in `pushes` order, most recent first): the rules that keep it."""
        threshold = pushes[p.last_pushed - 1].pushed if 0 < p.last_pushed <= len(pushes) else None
        present = {tp.tag for tp in pushes}        # records of deleted tags take no place
        by_pull = sorted(e[0] for t, e in pulled.items() if t in present)      # ascending
        pull_threshold = by_pull[-p.last_pulled] if 0 < p.last_pulled <= len(by_pull) else None
        out = []
        rank = 0
        for i, tp in enumerate(pushes):
            if i == 0 or tp.pushed != pushes[i - 1].pushed:
                rank = i + 1                        # tags pushed in the same instant share a rank
            why = []
            if self.immutable is not None:
                rule = self.immutable.rule(name, tp.tag)
                if rule is not None:
                    why.append(f"immutable: {rule}")
            why += [f"keep.tags {pat!r}" for pat, rx in p.tags if rx.fullmatch(tp.tag)]
            if p.last_pushed and (threshold is None or tp.pushed >= threshold):
                why.append(f"keep.lastpushed {p.last_pushed} (#{rank} most recently pushed)")
            if p.pushed_within and tp.pushed >= now - p.pushed_within:
                why.append(f"keep.pushedwithin {_human_duration(p.pushed_within)} "
                           f"(pushed {_human_duration(max(0.0, now - tp.pushed))} ago)")
            e = pulled.get(tp.tag)
            if e is not None and p.last_pulled and (pull_threshold is None or e[0] >= pull_threshold):
                rank_pulled = len(by_pull) - bisect.bisect_right(by_pull, e[0]) + 1
                why.append(f"keep.lastpulled {p.last_pulled} (#{rank_pulled} most recently pulled)")
            if e is not None and p.pulled_within and e[0] >= now - p.pulled_within:
                why.append(f"keep.pulledwithin {_human_duration(p.pulled_within)} "
                           f"(pulled {_human_duration(max(0.0, now - e[0]))} ago)")
            out.append(why)
        return out

    async def repository(self, name: str, p: CompiledPolicy, outcome: RepoOutcome, dry_run: bool) -> None:
        now = self.now()
        pushes = await history.tags(self.driver, name)
        pulled = (await pulls.read(self.driver, name)).tags if p.uses_pulls else {}
        decisions = self.keeps(p, name, pushes, now, pulled)
        fresh = _Fresh(pulled, time.monotonic())
        if p.uses_pulls and not dry_run and not all(decisions):
            await asyncio.sleep(self.pull_settle)       # pulls made until now reach storage meanwhile
            fresh = _Fresh((await pulls.read(self.driver, name)).tags, time.monotonic())
        kept_targets: set[Digest] = set()
        for tp, why in zip(pushes, decisions, strict=True):
            dec = Decision("tag", tp.tag, str(tp.digest), tp.pushed, not why, why or ["no keep rule matches"])
            outcome.decisions.append(dec)
            if not dec.delete:
                kept_targets.add(tp.digest)
                continue
            if dry_run:
                continue
            if p.uses_pulls:
                if time.monotonic() - fresh.read_at >= self.pull_settle:
                    fresh = _Fresh((await pulls.read(self.driver, name)).tags, time.monotonic())
                before, after = pulled.get(tp.tag), fresh.tags.get(tp.tag)
                if after is not None and (before is None or after[0] > before[0]):
                    dec.delete, dec.why = False, ["pulled during the run"]
                    kept_targets.add(tp.digest)
                    continue
            async with self.intents.deleting_tag(name, tp.tag):
                again = await history.tag_push(self.driver, name, tp.tag)
                if again is None:
                    dec.why.append("already gone")
                    continue
                if again != tp:             # pushed (moved or pushed again) since it was read
                    dec.delete, dec.why = False, ["pushed during the run"]
                    kept_targets.add(again.digest)
                    continue
                await self._delete(name, tp.tag, dec)
            await self._announce(name, tp.tag, dec)
        if p.untagged is not None:
            if not dry_run:                 # tags pushed meanwhile count as well
                kept_targets |= {t.digest for t in await history.tags(self.driver, name)}
            await self.untagged(name, p, p.untagged, kept_targets, now, outcome, dry_run)

    async def _delete(self, name: str, reference: str, dec: Decision, guarded: bool = False) -> None:
        try:
            await self.registry.manifests.delete(name, reference, guarded=guarded)
        except RegistryError as exc:
            if exc.code.value == "MANIFEST_UNKNOWN":
                dec.why.append("already gone")
                return
            _failed(dec, name, reference, exc)
            return
        dec.done = True
        log.info("retention: deleted %s %s:%s (%s)", dec.kind, name, reference, "; ".join(dec.why))

    async def _announce(self, name: str, reference: str, dec: Decision) -> None:
        """The webhook event of a deletion done (sent once its intent is released)."""
        if dec.done and self.emit is not None:
            tag = reference if dec.kind == "tag" else None
            await self.emit("delete", _event_request(name, reference),
                            Target(name, "" if tag else reference, "", 0, tag))

    # -- untagged manifests -----------------------------------------------------------------
    async def untagged(self, name: str, p: CompiledPolicy, delay: float, tagged: set[Digest], now: float,
                       outcome: RepoOutcome, dry_run: bool) -> None:
        revisions = await history.revisions(self.driver, name)
        refs: dict[Digest, Any] = {}
        referrers: dict[Digest, list[Digest]] = {}
        for d in sorted(revisions):
            try:
                body = await self.driver.get_content(layout.blob_data(d.algorithm, d.hex))
            except PathNotFound:
                refs[d] = None
                continue
            r = refs[d] = references(body)
            if r is not None and r.subject is not None:
                referrers.setdefault(r.subject, []).append(d)
        why: dict[Digest, str] = {}
        stack: list[tuple[Digest, str]] = [(d, "tagged") for d in sorted(tagged) if d in revisions]
        stack += [(d, f"untagged for less than {_human_duration(delay)}") for d, t in sorted(revisions.items())
                  if t >= now - delay and d not in tagged]
        while stack:
            d, reason = stack.pop()
            if d in why:
                continue
            why[d] = reason
            r = refs.get(d)
            if r is not None:
                stack.extend((c, f"in index {d}") for c in r.children if c in revisions)
            stack.extend((c, f"referrer of {d}") for c in referrers.get(d, ()))
        for d, pushed in sorted(revisions.items(), key=lambda kv: (kv[1], str(kv[0]))):
            kept_by = why.get(d)
            if kept_by == "tagged":
                continue                    # its tags are listed
            gone = f"untagged {_human_duration(delay)}: reached by no kept tag"
            dec = Decision("manifest", str(d), str(d), pushed, kept_by is None, [kept_by or gone])
            outcome.decisions.append(dec)
            if not dec.delete or dry_run:
                continue
            # the immutability lock before the intent: a first push of an immutable tag holds
            # it while it waits for the intent (the other order would wait for each other)
            guard: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext() \
                if self.immutable is None else self.immutable.delete_guard(self.registry.tags, name)
            try:
                async with guard, self.intents.deleting_revision(name, d):
                    if await history.revision_pushed(self.driver, name, d) != pushed:
                        dec.delete, dec.why = False, ["pushed during the run"]
                        continue
                    if await self.registry.tags.pointing_at(name, d):
                        dec.delete, dec.why = False, ["tagged during the run"]
                        continue
                    await self._delete(name, str(d), dec, guarded=True)
            except RegistryError as exc:        # the lock not had in time
                _failed(dec, name, str(d), exc)
                continue
            await self._announce(name, str(d), dec)
