"""`fastreg check`: a scrub of the stored registry — does everything that is named still exist
and match its name?

What is checked (through the storage driver, so any backend; the layout is Distribution's):

* every blob under ``blobs/<alg>/<xx>/<hex>/data`` is re-hashed and must match ``<alg>:<hex>``
  (a flipped bit, a truncated or zero-length file is found here);
* per repository, every ``_layers`` link and ``_manifests/revisions`` link must contain its own
  digest and name a healthy blob; a revision's blob must be a manifest (a JSON object), whose
  config and layers must be healthy blobs linked into the repository (foreign layers, those
  with ``urls``, excepted) and whose index children must be revisions of the repository;
* every tag's ``current/link`` must name a revision of the repository with a healthy blob, and a
  tag directory must have a ``current/link`` at all;
* the referrers index (``_referrers/<subject>/<alg>/<hex>/link``, written by a manifest PUT with
  a ``subject``): every entry must name a healthy revision of the repository whose manifest has
  that subject, and every such revision must have its entry;
* upload sessions (``_uploads/<uuid>/``) must have ``data`` and a readable ``startedat``: one
  without cannot be finished, and upload purging cannot age it.  Sessions started longer ago
  than ``storage.maintenance.uploadpurging.age`` are listed (purging removes them, check does not);
* temporary files ``.fastreg-tmp-*`` (filesystem driver only) are counted and listed: a crash
  between a put's write and its rename leaves one.

Leftovers of writes (broken sessions, temporary files) are judged by the newest ``mtime`` of what
they hold: one written within the grace period (``--grace``, default 1h) may be a write in flight
and is only counted, never called a problem nor removed (see ``check_leftovers.py``).

``--repair`` never deletes content: a blob that does not match its digest is *moved* to
``_fastreg_quarantine/<time>/`` beside ``blobs/`` (so the right bytes can be pushed again),
and then every pointer that names nothing healthy — layer links, revision links, tags (and a
tag directory without a current link) — is removed, as Distribution removes them.  A layer
the manifest names that exists but is not linked is linked again.  A manifest whose layer is
*gone* is kept and reported: the manifest is intact, and pushing the image again restores it.
The referrers index is an index: a wrong entry is removed and a missing one written (a manifest
pushed through Distribution, which keeps no such index, gets its entry — as ``fastreg gc`` adds
it).  Broken upload sessions and temporary files older than the grace period are removed (they
hold nothing anyone can finish); aged but sound sessions are left to upload purging.

Run it while the registry is stopped or read-only when repairing: a push in flight writes its
data before its links, so a read-only check never reports it, but a repair that races a push
could remove a link the push is about to make valid.  (One exception: a manifest with a subject
whose revision link is written but not yet its referrers entry is reported ``missing-referrer``;
the entry repair would write is the one the push writes.)

History.  Each repository gets one line: its tags and manifests, its last push (the newest tag or
revision link, ``fastreg.retention.history``) and its pull history (``fastreg.history.pulls``,
``fastreg.retention.pulls``): the last pull and the pulls recorded, ``no pulls recorded``, or
``pull history off``.  A problem that names a manifest of the repository carries that manifest's
history, in the format of ``fastreg gc``'s lines.  (One more ``stat`` per tag and revision; the
blobs' re-hashing costs far more.)

Exit status (as fsck's): 0 nothing wrong; 1 damage found and all of it repaired; 4 damage left.
Aged sessions and leftovers younger than the grace period are listed, not damage: they leave it 0.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from ..digest import Digest, InvalidDigest, UnsupportedDigest, new_hasher, parse_digest
from ..manifest import stored_document
from ..retention.history import ManifestHistory, recorded_pulls, utc
from ..storage import layout, walk
from ..storage.driver.base import PathNotFound, StorageDriver, StorageError
from . import check_leftovers as leftovers
from .gc import Progress

QUARANTINE = layout.QUARANTINE

OK, CORRUPT, MISSING = "ok", "corrupt", "missing"


@dataclass
class Problem:
    kind: str               # corrupt-blob, unreadable-blob, bad-link, dangling-layer-link, ...
    path: str
    detail: str
    repository: str = ""
    digest: str = ""
    tags: list[str] = field(default_factory=list)   # the repository's tags it concerns (a tag, or naming the digest)
    repaired: str = ""      # "quarantined", "removed", "relinked", or "" (left as it is)
    history: ManifestHistory | None = None          # of the manifest `digest` names, if it is one here

    def names(self) -> str:
        """What the problem is about, as a user names it: ``repo:tag``, ``repo@digest``, a digest."""
        if self.tags:
            return ", ".join(f"{self.repository}:{t}" for t in self.tags)
        if self.repository and self.digest:
            return f"{self.repository}@{self.digest}"
        return self.repository or self.digest


@dataclass
class RepositoryHistory:
    """One repository's line: its size and its push and pull history (times as ``utc`` prints them)."""
    repository: str
    tags: int = 0
    manifests: int = 0
    last_push: str | None = None        # the newest push: a tag's current link or a revision link
    last_push_tag: str | None = None    # the tag that push wrote (None: a push by digest)
    last_push_digest: str | None = None
    pull_history: str = "on"            # "on", "off" (fastreg.history.pulls), or "unknown" (not said)
    pulls_recorded: bool = False        # anything recorded for this repository
    pulls: int = 0                      # manifest pulls recorded (GETs by tag or digest), summed
    last_pull: str | None = None
    last_pull_tag: str | None = None    # the tag pulled last (None: pulled by digest)
    last_pull_digest: str | None = None

    def line(self) -> str:
        """``repository r: 3 tags, 4 manifests; last push …; last pull …, N pulls``."""
        push = "no pushes" if self.last_push is None else f"last push {self.last_push} (" + (
            f"tag {self.last_push_tag})" if self.last_push_tag is not None else f"by digest {self.last_push_digest})")
        if not self.pulls_recorded:
            pull = ("pull history off (fastreg.history.pulls)" if self.pull_history == "off"
                    else "no pulls recorded")
        elif self.last_pull is None:
            pull = "never pulled"
        else:
            what = f"tag {self.last_pull_tag}" if self.last_pull_tag is not None else self.last_pull_digest
            pull = f"last pull {self.last_pull} ({what}), {self.pulls} pulls recorded"
            if self.pull_history == "off":
                pull += " (pull history now off)"
        return f"repository {self.repository}: {self.tags} tags, {self.manifests} manifests; {push}; {pull}"


@dataclass
class Report:
    blobs: int = 0
    checked_bytes: int = 0
    repositories: int = 0
    manifests: int = 0
    layer_links: int = 0
    tags: int = 0
    referrers: int = 0                  # entries of the referrers index
    temporary_files: leftovers.TemporaryFiles = field(default_factory=leftovers.TemporaryFiles)
    uploads: leftovers.UploadSessions = field(default_factory=leftovers.UploadSessions)
    problems: list[Problem] = field(default_factory=list)
    history: list[RepositoryHistory] = field(default_factory=list)      # one per repository

    @property
    def unrepaired(self) -> list[Problem]:
        return [p for p in self.problems if not p.repaired]

    @property
    def exit_code(self) -> int:
        if not self.problems:
            return 0
        return 4 if self.unrepaired else 1

    def as_json(self) -> bytes:
        doc = {k: v for k, v in asdict(self).items() if k != "problems"}
        doc["ok"] = not self.problems
        doc["problems"] = [asdict(p) for p in self.problems]
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


@dataclass(frozen=True)
class _Refs:
    blobs: tuple[Digest, ...]          # config and layers that must be stored here
    children: tuple[Digest, ...]       # index entries
    unparsed: tuple[str, ...]          # descriptors whose digest does not parse
    subject: Digest | None = None      # the manifest's ``subject`` (it refers to that manifest)


def manifest_refs(body: bytes) -> _Refs | None:
    """What a manifest names; None if the bytes are not a manifest (a JSON object)."""
    doc = stored_document(body)
    if doc is None or "schemaVersion" not in doc:
        return None
    blobs: list[Digest] = []
    children: list[Digest] = []
    bad: list[str] = []

    def add(into: list[Digest], desc: Any, key: str) -> None:
        if not isinstance(desc, dict) or (into is blobs and desc.get("urls")):
            return                      # foreign layers are fetched from their urls
        text = desc.get(key)
        try:
            into.append(parse_digest(str(text), allow_blake3=True))
        except (InvalidDigest, UnsupportedDigest):
            bad.append(str(text))

    if isinstance(doc.get("config"), dict):
        add(blobs, doc["config"], "digest")
    for group, into, key in (("layers", blobs, "digest"), ("fsLayers", blobs, "blobSum"),
                             ("manifests", children, "digest")):
        items = doc.get(group)
        if isinstance(items, list):
            for item in items:
                add(into, item, key)
    subject = doc.get("subject")
    try:
        subject_digest = parse_digest(str(subject.get("digest")), allow_blake3=True) \
            if isinstance(subject, dict) else None
    except (InvalidDigest, UnsupportedDigest):
        subject_digest = None           # a push refuses it; lenient here, as gc is
    return _Refs(tuple(dict.fromkeys(blobs)), tuple(dict.fromkeys(children)), tuple(bad), subject_digest)


class Checker:
    def __init__(self, driver: StorageDriver, *, repair: bool = False, progress: Progress | None = None,
                 now: Callable[[], float] = time.time, grace: float = leftovers.GRACE,
                 upload_age: float = 168 * 3600.0, purging: bool = True,
                 pull_history: bool | None = None, cached: Callable[[str], bool] | None = None) -> None:
        self.driver = driver
        # the repositories a pull-through cache fills: their blobs and child manifests are fetched
        # when first pulled, so one not stored yet is no damage (fastreg.proxy.cache.cached_repositories)
        self.cached = cached
        self.pull_history = pull_history        # fastreg.history.pulls, when the caller knows it
        self.repair = repair
        self.progress = progress or Progress(None)
        self.report = Report()
        self.report.uploads.purge_age, self.report.uploads.purging = upload_age, purging
        self.blob_state: dict[Digest, str] = {}
        self.now = now()
        self.grace = grace
        self._stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.now))

    # -- helpers --------------------------------------------------------------------------
    async def _list(self, path: str) -> list[str]:
        return await walk.listing(self.driver, path)

    def _problem(self, kind: str, path: str, detail: str, **kw: Any) -> Problem:
        p = Problem(kind, path, detail, **kw)
        self.report.problems.append(p)
        return p

    async def _remove(self, p: Problem, path: str) -> None:
        if not self.repair:
            return
        try:
            await self.driver.delete(path)
        except PathNotFound:
            pass
        p.repaired = "removed"

    def state(self, d: Digest) -> str:
        return self.blob_state.get(d, MISSING)

    # -- blobs ----------------------------------------------------------------------------
    async def repositories(self) -> list[str]:
        return await walk.repositories(self.driver)

    async def _stored_blobs(self) -> list[tuple[Digest, int]]:
        out: list[tuple[Digest, int]] = []
        async for d in walk.blobs(self.driver):         # what is not a blob of this layout is not ours to judge
            try:
                info = await self.driver.stat(layout.blob_data(d.algorithm, d.hex))
            except PathNotFound:
                continue            # a directory without data: nothing stored, nothing named
            if not info.is_dir:
                out.append((d, info.size))
        return out

    async def _hash(self, d: Digest) -> str:
        h = new_hasher(d.algorithm)
        loop = asyncio.get_running_loop()
        async for chunk in self.driver.reader(layout.blob_data(d.algorithm, d.hex), 0, None, 4 << 20):
            if len(chunk) > 256 * 1024:
                await loop.run_in_executor(None, h.update, chunk)
            else:
                h.update(chunk)
        return str(h.hexdigest())

    async def check_blobs(self) -> None:
        blobs = await self._stored_blobs()
        total = sum(size for _, size in blobs)
        done = 0
        for i, (d, size) in enumerate(blobs, 1):
            self.progress.step(f"check: hashing blob {i}/{len(blobs)} ({_human(done)} of {_human(total)})")
            path = layout.blob_data(d.algorithm, d.hex)
            try:
                computed = await self._hash(d)
            except (StorageError, OSError) as exc:
                self.blob_state[d] = CORRUPT
                p = self._problem("unreadable-blob", path, str(exc), digest=str(d))
                await self._quarantine(p, d)
                continue
            done += size
            self.report.blobs += 1
            self.report.checked_bytes += size
            if computed == d.hex:
                self.blob_state[d] = OK
                continue
            self.blob_state[d] = CORRUPT
            p = self._problem("corrupt-blob", path, f"content hashes to {d.algorithm}:{computed} ({size} bytes)",
                              digest=str(d))
            await self._quarantine(p, d)
        self.progress.done()

    async def _quarantine(self, p: Problem, d: Digest) -> None:
        if not self.repair:
            return
        dst = layout.quarantined_blob_data(self._stamp, d.algorithm, d.hex)
        await self.driver.move(layout.blob_data(d.algorithm, d.hex), dst)
        p.repaired = "quarantined"
        p.detail += f"; moved to {dst}"

    # -- repositories ---------------------------------------------------------------------
    async def _links(self, name: str, base: str, kind: str) -> dict[Digest, walk.Link]:
        """The entries of the link directory `base` whose link contains their own digest.  A link
        naming something else is a problem (Distribution follows the content)."""
        out: dict[Digest, walk.Link] = {}
        async for link in walk.links(self.driver, base):
            d = link.digest
            try:
                text = (await self.driver.get_content(link.path)).decode("utf-8", "replace").strip()
            except PathNotFound:
                continue                # an empty link directory names nothing
            if text != str(d):
                p = self._problem("bad-link", link.path, f"{kind} link contains {text[:100]!r}",
                                  repository=name, digest=str(d))
                await self._remove(p, link.dir)
                continue
            out[d] = link
        return out

    async def check_repository(self, name: str) -> None:
        self.report.repositories += 1
        problems_before = len(self.report.problems)
        layers = await self._links(name, layout.layers_dir(name), "layer")
        for d, link in layers.items():
            self.report.layer_links += 1
            if self.state(d) != OK:
                p = self._problem("dangling-layer-link", link.path, f"names a {self.state(d)} blob",
                                  repository=name, digest=str(d))
                await self._remove(p, link.dir)
        linked = {d for d in layers if self.state(d) == OK}

        revisions = await self._links(name, layout.revisions_dir(name), "revision")
        healthy: set[Digest] = set()
        bodies: dict[Digest, _Refs] = {}
        pushed: dict[Digest, float] = {}            # revision → its last push, before any repair
        tag_pushed: dict[str, float] = {}           # tag → its last push
        for d, link in revisions.items():
            self.report.manifests += 1
            try:
                pushed[d] = (await self.driver.stat(link.path)).mtime
            except PathNotFound:
                pass
            if self.state(d) != OK:
                p = self._problem("dangling-revision", link.path, f"names a {self.state(d)} blob",
                                  repository=name, digest=str(d))
                await self._remove(p, link.dir)
                continue
            refs = manifest_refs(await self.driver.get_content(layout.blob_data(d.algorithm, d.hex)))
            if refs is None:
                p = self._problem("invalid-manifest", link.path, "the revision's blob is not a manifest",
                                  repository=name, digest=str(d))
                await self._remove(p, link.dir)
                continue
            healthy.add(d)
            bodies[d] = refs
        await self._check_referrers(name, revisions, bodies)
        on_demand = self.cached is not None and self.cached(name)
        for d, refs in bodies.items():
            path = revisions[d].path
            for bad in refs.unparsed:
                self._problem("missing-reference", path, f"names an invalid digest {bad[:100]!r}",
                              repository=name, digest=str(d))
            for b in refs.blobs:
                if on_demand and self.state(b) == MISSING:
                    continue                # not pulled through the cache yet
                if self.state(b) != OK:
                    self._problem("missing-reference", path, f"names {b}, a {self.state(b)} blob",
                                  repository=name, digest=str(d))
                elif b not in linked:
                    p = self._problem("unlinked-reference", path, f"names {b}, stored but not linked "
                                      "into the repository", repository=name, digest=str(d))
                    if self.repair:
                        await self.driver.put_content(layout.layer_link(name, b.algorithm, b.hex), str(b).encode())
                        linked.add(b)
                        p.repaired = "relinked"
            for c in refs.children:
                if on_demand and c not in revisions:
                    continue                # not pulled through the cache yet
                if c not in healthy:
                    self._problem("missing-reference", path, f"names manifest {c}, not a healthy revision "
                                  "of the repository", repository=name, digest=str(d))

        before = len(self.report.problems)
        tagged: dict[str, list[str]] = {}          # digest → the tags naming it
        tags = await self._list(layout.tags_dir(name))
        for tag in tags:
            self.report.tags += 1
            path = layout.tag_current_link(name, tag)
            try:
                tag_pushed[tag] = (await self.driver.stat(path)).mtime
                text = (await self.driver.get_content(path)).decode("utf-8", "replace").strip()
            except PathNotFound:
                p = self._problem("incomplete-tag", layout.tag_dir(name, tag), "tag without a current link",
                                  repository=name, tags=[tag])
                await self._remove(p, layout.tag_dir(name, tag))
                continue
            try:
                d = parse_digest(text, allow_blake3=True)
            except (InvalidDigest, UnsupportedDigest):
                p = self._problem("dangling-tag", path, f"contains {text[:100]!r}, not a digest", repository=name,
                                  tags=[tag])
                await self._remove(p, layout.tag_dir(name, tag))
                continue
            if d not in healthy:
                why = "a revision of the repository" if d not in revisions else "a healthy manifest"
                p = self._problem("dangling-tag", path, f"{tag} names {d}, not {why}", repository=name,
                                  digest=str(d), tags=[tag])
                await self._remove(p, layout.tag_dir(name, tag))
            tagged.setdefault(str(d), []).append(tag)
        for p in self.report.problems[:before]:
            if p.repository == name and not p.tags and p.digest in tagged:
                p.tags = sorted(tagged[p.digest])
        await self._history(name, len(tags), len(revisions), pushed, tag_pushed, tagged, problems_before)

    async def _history(self, name: str, tags: int, manifests: int, pushed: dict[Digest, float],
                       tag_pushed: dict[str, float], tagged: dict[str, list[str]], problems_before: int) -> None:
        """The repository's history line, and the history of each manifest its problems name."""
        seen = await recorded_pulls(self.driver, name)
        h = RepositoryHistory(name, tags, manifests,
                              pull_history={None: "unknown", True: "on", False: "off"}[self.pull_history],
                              pulls_recorded=seen is not None)
        newest_tag = max(tag_pushed.items(), key=lambda kv: (kv[1], kv[0]), default=None)
        newest_rev = max(pushed.items(), key=lambda kv: (kv[1], str(kv[0])), default=None)
        # a push writes the revision link, then the tag: the tag is at least as new as its revision
        if newest_tag is not None and (newest_rev is None or newest_tag[1] >= newest_rev[1]):
            h.last_push, h.last_push_tag = utc(newest_tag[1]), newest_tag[0]
            h.last_push_digest = next((d for d, ts in tagged.items() if newest_tag[0] in ts), None)
        elif newest_rev is not None:
            h.last_push, h.last_push_digest = utc(newest_rev[1]), str(newest_rev[0])
        if seen is not None:
            h.pulls = int(sum(e[1] for e in seen.manifests.values()))
            last_tag = max(seen.tags.items(), key=lambda kv: (kv[1][0], kv[0]), default=None)
            last_manifest = max(seen.manifests.items(), key=lambda kv: (kv[1][0], kv[0]), default=None)
            # a GET by tag records the tag and the manifest at the same time: name the tag
            if last_tag is not None and (last_manifest is None or last_tag[1][0] >= last_manifest[1][0]):
                h.last_pull, h.last_pull_tag = utc(last_tag[1][0]), last_tag[0]
            elif last_manifest is not None:
                h.last_pull, h.last_pull_digest = utc(last_manifest[1][0]), last_manifest[0]
        self.report.history.append(h)
        by_text = {str(d): t for d, t in pushed.items()}
        for p in self.report.problems[problems_before:]:
            if p.repository == name and p.digest in by_text:
                p.history = ManifestHistory.of(by_text[p.digest], seen, p.digest)

    async def _check_referrers(self, name: str, revisions: dict[Digest, walk.Link],
                               bodies: dict[Digest, _Refs]) -> None:
        """Every entry ``_referrers/<subject>/<alg>/<hex>/link`` must name a healthy revision
        (a key of `bodies`) whose manifest has that subject; every such manifest needs its entry.
        The index only answers ``GET /v2/<name>/referrers/<subject>``: a wrong entry is removed
        and a missing one written, nothing is lost either way."""
        indexed: set[tuple[Digest, Digest]] = set()
        # a subject that is not a digest is not an entry of this layout: the index never reads it
        async for s, subject_dir in walk.referrer_subjects(self.driver, name):
            for d, link in (await self._links(name, subject_dir, "referrer")).items():
                self.report.referrers += 1
                refs = bodies.get(d)
                if refs is None:
                    if d not in revisions and await walk.exists(
                            self.driver, layout.revision_link(name, d.algorithm, d.hex)):
                        continue        # pushed since the revisions were listed: not judged
                    why = "not a revision of the repository" if d not in revisions else "not a healthy manifest"
                    p = self._problem("dangling-referrer", link.path, f"indexed as a referrer of {s}, names {d}, "
                                      f"{why}", repository=name, digest=str(d))
                    await self._remove(p, link.dir)
                elif refs.subject != s:
                    has = f"subject is {refs.subject}" if refs.subject else "has no subject"
                    p = self._problem("mismatched-referrer", link.path, f"indexed as a referrer of {s}, but "
                                      f"the manifest {has}", repository=name, digest=str(d))
                    await self._remove(p, link.dir)
                else:
                    indexed.add((s, d))
        for d, refs in bodies.items():
            subject = refs.subject
            if subject is None or (subject, d) in indexed:
                continue
            path = layout.referrer_link(name, subject.algorithm, subject.hex, d.algorithm, d.hex)
            p = self._problem("missing-referrer", path, f"the manifest's subject is {subject} but the referrers "
                              "index does not list it", repository=name, digest=str(d))
            if self.repair:
                await self.driver.put_content(path, str(d).encode())
                p.repaired = "indexed"

    # -- what interrupted writes leave ----------------------------------------------------
    async def check_uploads(self) -> None:
        sec = self.report.uploads
        cutoff = self.now - self.grace
        for s in await leftovers.upload_sessions(self.driver):
            sec.sessions += 1
            sec.bytes += s.size or 0
            if s.started is not None and s.started < self.now - sec.purge_age:
                sec.aged.append(s.path)
            why = s.broken
            if not why:
                continue
            sec.broken.append(s.path)
            if s.last_write >= cutoff:
                continue                    # may be a session starting right now: not judged
            p = self._problem("broken-upload", s.path, f"{why}; last written {_ago(self.now - s.last_write)} ago",
                              repository=s.repository)
            await self._remove(p, s.path)

    async def check_temporary_files(self) -> None:
        sec = self.report.temporary_files
        found = await leftovers.temporary_files(self.driver)
        if found is None:
            return
        sec.checked = True
        cutoff = self.now - self.grace
        for t in found:
            sec.count += 1
            sec.bytes += t.size
            sec.paths.append(t.path)
            if t.mtime >= cutoff:
                sec.young += 1              # a write in flight, or one that just failed
                continue
            p = self._problem("stale-temporary-file", t.path, f"{t.size} bytes, last written "
                              f"{_ago(self.now - t.mtime)} ago (a write interrupted before its rename)")
            await self._remove(p, t.path)

    async def run(self) -> Report:
        await self.check_blobs()
        names = await self.repositories()
        for i, name in enumerate(names, 1):
            self.progress.step(f"check: repository {i}/{len(names)} {name}")
            await self.check_repository(name)
        self.progress.step("check: upload sessions")
        await self.check_uploads()
        self.progress.step("check: temporary files")
        await self.check_temporary_files()
        self.progress.done()
        return self.report


def notes(r: Report) -> list[str]:
    """What the report holds besides problems: leftovers check leaves alone, and why."""
    out: list[str] = []
    up, tmp = r.uploads, r.temporary_files
    if up.aged:
        who = ("upload purging removes them (storage.maintenance.uploadpurging)" if up.purging else
               "upload purging is disabled (storage.maintenance.uploadpurging.enabled), so they stay")
        out.append(f"{len(up.aged)} upload session(s) started more than {up.purge_age / 3600:g}h ago: {who}; "
                   "check does not remove them")
        out.extend(f"  aged upload: {p}" for p in up.aged)
    young_broken = len(up.broken) - sum(p.kind == "broken-upload" for p in r.problems)
    if young_broken:
        out.append(f"{young_broken} upload session(s) without data or startedat written within the grace "
                   "period: possibly starting now, left alone")
    if tmp.young:
        out.append(f"{tmp.young} temporary file(s) written within the grace period: possibly a write in "
                   "flight, left alone")
    return out


def summary(r: Report, repair: bool) -> str:
    tmp = (f"{r.temporary_files.count} temporary files ({_human(r.temporary_files.bytes)})"
           if r.temporary_files.checked else "temporary files not applicable")
    head = (f"checked {r.blobs} blobs ({_human(r.checked_bytes)}), {r.repositories} repositories, "
            f"{r.manifests} manifests, {r.layer_links} layer links, {r.tags} tags, {r.referrers} referrers, "
            f"{r.uploads.sessions} upload sessions ({_human(r.uploads.bytes)}), {tmp}: ")
    if not r.problems:
        return head + "no damage found"
    left = len(r.unrepaired)
    if repair:
        return head + f"{len(r.problems)} problem(s), {len(r.problems) - left} repaired, {left} left"
    return head + f"{len(r.problems)} problem(s) (--repair quarantines, unlinks, re-indexes and clears leftovers)"


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h" if s < 4 * 86400 else f"{s // 86400}d"


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


async def check(driver: StorageDriver, *, repair: bool = False, progress: Progress | None = None,
                grace: float = leftovers.GRACE, upload_age: float = 168 * 3600.0, purging: bool = True,
                pull_history: bool | None = None, cached: Callable[[str], bool] | None = None) -> Report:
    return await Checker(driver, repair=repair, progress=progress, grace=grace, upload_age=upload_age,
                         purging=purging, pull_history=pull_history, cached=cached).run()
