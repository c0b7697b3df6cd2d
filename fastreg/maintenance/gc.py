"""Garbage collection: mark and sweep of unreferenced blobs, manifests and links — online.

Reachability (Distribution's ``registry garbage-collect``, as in its 3.x ``garbagecollect.go``)
-----------------------------------------------------------------------------------------------
Per repository, the *roots* are every manifest revision (``_manifests/revisions/*``) or, with
``delete_untagged``, only the revisions some tag's ``current/link`` names.  From a live
manifest we mark its own digest, its config and layers (schema1: ``fsLayers``), and for an
index its children — recursing into a child that is a revision of the same repository.  The
sweep then deletes

* every blob under ``blobs/`` whose digest nobody marked,
* (``delete_untagged``) every revision that did not survive: its revision directory, its
  entries in every tag's ``index/`` history and its entry in fastreg's referrers index,
* every ``_layers`` link of a repository that no live manifest of that repository references
  (Distribution 3 removes those too; 2.8 leaves them).

It also completes fastreg's referrers index (``_referrers/``) for surviving manifests that have
a ``subject`` but no entry — those pushed through Distribution, which keeps no such index.

Two rules differ from Distribution on purpose:

* **Referrers follow their subject.**  A manifest whose ``subject`` is a live manifest of the
  same repository is live too (signatures, SBOMs and attestations are pushed untagged, by
  digest; Distribution's ``--delete-untagged`` deletes them and leaves the image unsigned).
* **Grace period.**  Anything younger than ``grace`` seconds — blob data, a revision link, a
  layer link (by the driver's ``mtime``) — is never collected: a revision that young is a
  root, a young layer link keeps its link and its blob.  Pushes in progress (blobs uploaded,
  manifest not yet sent) are therefore safe for ``grace`` seconds.

Online collection: why a push never loses a blob
------------------------------------------------
The mark is a snapshot; pushes go on while we sweep.  A push that *references* content the
snapshot found unreferenced (an old orphan blob the client found with HEAD, an untagged
manifest it tags again, an index naming an old child) must either succeed with everything it
names still present, or fail — never succeed and then lose what it named.  The protocol is
Dekker's: each side first *writes* its intent, then *reads* the other's.

Storage (under ``_fastreg_gc/``, which Distribution never looks at; ``storage/layout.py`` names
the paths)::

    active                      the collection's heartbeat (rewritten every HEARTBEAT s)
    epoch                       rewritten by every collection when it ends (a fresh random value)
    tombstones/<alg>/<hex>      "this digest is about to be deleted"
    vetoes/<alg>/<hex>          "a push needs this digest: do not delete it"

Collector (``Collector.run``):
  G0. mark (pass 1) → candidate digests D (blobs, revisions, layer links to remove).
  G1. write ``active``, then a tombstone for each digest in D.
  G2. mark again (pass 2), re-reading every tag, revision and layer link; drop from D every
      digest pass 2 finds referenced or young.
  G3. per digest d still in D: if ``vetoes/d`` exists keep d; else delete d's revisions, links
      and blob.  Then remove ``tombstones/d`` (and the veto).
  G4. rewrite ``epoch``; only once that is written, remove ``active``.

Push (the manifest PUT; ``ReferenceGuard``):
  P0. read ``epoch``; then check that everything the manifest names exists (the usual
      MANIFEST_BLOB_UNKNOWN check).
  P1. write *all* its links — blob data, revision link, referrers link, tag.
  P2. read ``active``.  If there is none and ``epoch`` still reads as in P0: done.  Otherwise
      (a collection runs, ran since P0, or died): if it is alive, write ``vetoes/d`` for each
      named d that has a tombstone and wait until those tombstones are gone; then
  P3. check again that everything it names exists.  Missing → MANIFEST_BLOB_UNKNOWN (the tag
      is put back as it was).

Argument.  Take a push P naming digest d that succeeds, and a collection C that deletes d at
time t (in G3).  If t is before P0's check, that check fails; so t is after P0's epoch read.
(a) C wrote ``epoch`` (G4) after t, hence after P0.  If that write came before P2 read
``epoch``, P2 saw a change, so P3 ran after t and found d missing — P failed.  Otherwise C's G4
is after P2's reads, so ``active`` still existed when P2 read it, *unless* C had not written it
yet (G1 after P2's read of ``active``); but then pass 2 (G2) started after P1, saw P's links and
marked d — C would not delete d.  So P2 found ``active`` and did P3 — and P3 after t fails.
(b) So P3 ran before t, and P2 before it.  Pass 2 did not see P's links, so it started before
P1 ended: G1 < G2 < P1 < P2 < P3 < t.  ``tombstones/d`` was written in G1 and is removed only
after G3 decides d, after t: P2 found it (and a live ``active``: C sweeps only while its own
heartbeat is fresh), wrote ``vetoes/d`` and waited until the tombstone was gone — after t, so
P3 ran after t.  Contradiction again: no push *succeeds* naming content a collection deletes.
A pull never sees content vanish under it either: we delete only what no successful push
references.  The argument needs read-after-write consistency of the driver (local
filesystem, S3 since 2020, Azure, GCS).  (An earlier version re-checked only when P2 found a
tombstone; a collection that swept d between P0 and P2 and had already removed its tombstone
or ended got through — tests/ops/test_gc_protocol.py forces both interleavings.)

The price for a push is two small reads (``epoch``, ``active``) while no collection runs, and
the existence check done twice while one does.

Crashed collections: ``active`` carries a heartbeat.  A push treats an ``active`` older than
STALE seconds as dead and proceeds (skipping P2's wait); the collector therefore stops
deleting as soon as its own last heartbeat is older than STALE/4 (it aborts, keeping the
rest), so a live collector never looks dead.  A new collection clears the tombstones of a
dead one.  Two collections at once are refused (a fresh ``active`` exists); two starting in
the same instant are not prevented — run one collector per storage.

What a push can still see: a client that skipped uploading an orphan blob because ``HEAD``
found it, and sends its manifest after a collection deleted that blob (older than ``grace``,
unreferenced), gets MANIFEST_BLOB_UNKNOWN and must push again (as with Distribution).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

import orjson

from ..digest import Digest, InvalidDigest, UnsupportedDigest, parse_digest
from ..manifest import stored_document
from ..retention import history, pulls
from ..storage import layout, walk
from ..storage.driver.base import PathNotFound, StorageDriver, StorageError

ACTIVE = layout.GC_ACTIVE
EPOCH = layout.GC_EPOCH
HEARTBEAT = 5.0        # seconds between rewrites of `active`
STALE = 120.0          # an `active` older than this belongs to a dead collection
CLOCK_SLACK = 2.0      # file mtimes come from a coarse clock (and maybe another host's)


def tombstone_path(d: Digest) -> str:
    return layout.gc_tombstone(d.algorithm, d.hex)


def veto_path(d: Digest) -> str:
    return layout.gc_veto(d.algorithm, d.hex)


async def _exists(driver: StorageDriver, path: str) -> bool:
    """Whether the small object at `path` exists (get_content: a key lookup on every driver)."""
    try:
        await driver.get_content(path)
        return True
    except PathNotFound:
        return False


# -- the push side ------------------------------------------------------------------------------

async def heartbeat_age(driver: StorageDriver) -> float:
    """Seconds since the running collection's last heartbeat; infinite if none is running.
    (Read with get_content, a key lookup on every driver: the manifest PUT pays this once.)"""
    try:
        body = await driver.get_content(ACTIVE)
    except PathNotFound:
        return float("inf")
    try:
        beat = float(orjson.loads(body)["time"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 0.0                      # unreadable: assume it is alive
    return max(0.0, time.time() - beat)


class GuardTimeout(Exception):
    """A collection held a tombstone on content a push needs for longer than the wait allows."""


class ReferenceGuard:
    """Steps P0 and P2 of the protocol above, for the manifest PUT."""

    def __init__(self, driver: StorageDriver, *, wait: float = 300.0) -> None:
        self.driver = driver
        self.wait = wait

    async def epoch(self) -> bytes:
        """P0: read before the push checks what its manifest names."""
        try:
            return await self.driver.get_content(EPOCH)
        except PathNotFound:
            return b""

    async def confirm(self, digests: Iterable[Digest], since: bytes) -> bool:
        """P2: call once every link naming `digests` is written, with what `epoch()` read
        before the push checked them.  True means a collection may have deleted some of them
        since: the caller must check again that they all exist (P3)."""
        age = await heartbeat_age(self.driver)
        if age == float("inf"):                        # no collection now, nor a dead one's leftovers
            return await self.epoch() != since
        if age >= STALE:                               # a dead collection: it may have swept anything
            return True
        held = [d for d in dict.fromkeys(digests) if await _exists(self.driver, tombstone_path(d))]
        if not held:
            return True
        for d in held:
            await self.driver.put_content(veto_path(d), b"", durable=False)
        deadline = time.monotonic() + self.wait
        delay = 0.01
        while True:
            held = [d for d in held if await _exists(self.driver, tombstone_path(d))]
            if not held or await heartbeat_age(self.driver) >= STALE:
                return True
            if time.monotonic() > deadline:
                raise GuardTimeout(f"garbage collection holds {held[0]}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)


# -- what a manifest references -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Refs:
    blobs: tuple[Digest, ...]       # config, layers (schema1: fsLayers)
    children: tuple[Digest, ...]    # index / manifest list entries
    subject: Digest | None


def _parse(text: Any) -> Digest | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_digest(text, allow_blake3=True)
    except (InvalidDigest, UnsupportedDigest):
        return None


def references(body: bytes) -> Refs | None:
    """What a stored manifest names (lenient: stored bytes were checked when pushed, or were
    written by another registry).  None if it is not a JSON object."""
    doc = stored_document(body)
    if doc is None:
        return None
    blobs: list[Digest] = []
    children: list[Digest] = []

    def add(into: list[Digest], desc: Any, key: str = "digest") -> None:
        if isinstance(desc, dict):
            d = _parse(desc.get(key))
            if d is not None:
                into.append(d)

    add(blobs, doc.get("config"))
    for group, into, key in (("layers", blobs, "digest"), ("fsLayers", blobs, "blobSum"),
                             ("manifests", children, "digest")):
        items = doc.get(group)
        if isinstance(items, list):
            for item in items:
                add(into, item, key)
    subject = doc.get("subject")
    return Refs(tuple(blobs), tuple(children), _parse(subject.get("digest")) if isinstance(subject, dict) else None)


# -- the collector ------------------------------------------------------------------------------

@dataclass
class RepoScan:
    name: str
    revisions: dict[Digest, float] = field(default_factory=dict)   # digest → link mtime
    layers: dict[Digest, float] = field(default_factory=dict)      # digest → link mtime
    tags: dict[str, Digest] = field(default_factory=dict)          # tag → current target


@dataclass
class Marking:
    """The outcome of one mark pass."""
    repos: dict[str, RepoScan]
    live: dict[str, set[Digest]]          # repo → live manifests
    used_links: dict[str, set[Digest]]    # repo → blobs its live manifests reference
    marked: set[Digest]                   # every digest some live manifest names (or is)
    young_links: set[Digest]              # blobs with a layer link younger than the cutoff


@dataclass
class Plan:
    blobs: dict[Digest, int] = field(default_factory=dict)             # digest → size
    revisions: dict[Digest, list[str]] = field(default_factory=dict)   # digest → repos
    links: dict[Digest, list[str]] = field(default_factory=dict)       # digest → repos

    def digests(self) -> set[Digest]:
        return set(self.blobs) | set(self.revisions) | set(self.links)

    def parts(self, d: Digest) -> tuple[bool, list[str], list[str]]:
        return d in self.blobs, sorted(self.revisions.get(d, ())), sorted(self.links.get(d, ()))

    def intersect(self, other: Plan) -> Plan:
        """What both passes would delete (pass 2 sees pushes made since pass 1)."""
        both = Plan({d: s for d, s in self.blobs.items() if d in other.blobs})
        for mine, theirs, into in ((self.revisions, other.revisions, both.revisions),
                                   (self.links, other.links, both.links)):
            for d, repos in mine.items():
                kept = [n for n in repos if n in theirs.get(d, ())]
                if kept:
                    into[d] = kept
        return both


@dataclass
class Report:
    repositories: int = 0
    manifests: int = 0
    blobs: int = 0
    marked: int = 0
    deleted_blobs: int = 0
    deleted_manifests: int = 0
    deleted_links: int = 0
    bytes_freed: int = 0
    kept_young: int = 0        # unreferenced but younger than the grace period
    referrers_indexed: int = 0  # referrers index entries added (manifests pushed through another registry)
    rescued: int = 0           # candidates a concurrent push referenced (pass 2 or veto)
    aborted: str = ""


@dataclass
class Options:
    dry_run: bool = False
    delete_untagged: bool = False
    grace: float = 3600.0
    now: float | None = None      # collect as if at this time (default: now)


class Progress:
    """Progress on a terminal (one rewritten line) or a log (one line per step)."""

    def __init__(self, stream: TextIO | None = sys.stderr, quiet: bool = False) -> None:
        self.stream = None if quiet else stream
        self.tty = bool(self.stream is not None and self.stream.isatty())
        self._open = False

    def step(self, text: str) -> None:
        if self.stream is None:
            return
        if self.tty:
            self.stream.write("\r\x1b[2K" + text[:160])
            self._open = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self._open and self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False

    def line(self, text: str) -> None:
        if self.stream is None:
            return
        if self._open:
            self.stream.write("\n")
            self._open = False
        self.stream.write(text + "\n")
        self.stream.flush()


class Collector:
    def __init__(self, driver: StorageDriver, options: Options, *, progress: Progress | None = None,
                 out: Callable[[str], None] | None = None,
                 phase: Callable[[str], Awaitable[None]] | None = None) -> None:
        self.driver = driver
        self.phase = phase      # awaited after "marked" (G0), "tombstoned" (G1), "remarked" (G2), "swept" (G3)
        self.opts = options
        self.progress = progress or Progress(None)
        self.out = out or (lambda _text: None)      # one line per item deleted (or to delete)
        self._refs: dict[Digest, Refs | None] = {}
        self._pulls: dict[str, pulls.Pulls | None] = {}   # pull history per repository, for the lines
        self._heartbeat_ok = 0.0
        self.cutoff = 0.0

    # -- listing --------------------------------------------------------------------------
    async def _list(self, path: str) -> list[str]:
        return await walk.listing(self.driver, path)

    async def repositories(self) -> list[str]:
        return await walk.repositories(self.driver)

    async def _links(self, base: str) -> dict[Digest, float]:
        """The link directory `base`: {digest: mtime of its link}."""
        out: dict[Digest, float] = {}
        async for link in walk.links(self.driver, base):
            try:
                out[link.digest] = (await self.driver.stat(link.path)).mtime
            except PathNotFound:
                continue
        return out

    async def scan(self, name: str) -> RepoScan:
        scan = RepoScan(name, await self._links(layout.revisions_dir(name)), await self._links(layout.layers_dir(name)))
        for tag in await self._list(layout.tags_dir(name)):
            try:
                d = _parse((await self.driver.get_content(layout.tag_current_link(name, tag))).decode().strip())
            except (PathNotFound, UnicodeDecodeError):
                continue
            if d is not None:
                scan.tags[tag] = d
        return scan

    async def refs(self, d: Digest) -> Refs | None:
        if d not in self._refs:
            try:
                body = await self.driver.get_content(layout.blob_data(d.algorithm, d.hex))
            except PathNotFound:
                self._refs[d] = None
            else:
                self._refs[d] = references(body)
        return self._refs[d]

    # -- mark -----------------------------------------------------------------------------
    async def mark(self, label: str) -> Marking:
        names = await self.repositories()
        m = Marking({}, {}, {}, set(), set())
        for i, name in enumerate(names, 1):
            self.progress.step(f"gc: {label} [{i}/{len(names)}] {name}")
            scan = await self.scan(name)
            m.repos[name] = scan
            young = {d for d, t in scan.revisions.items() if t >= self.cutoff}
            if self.opts.delete_untagged:
                roots = {d for d in scan.tags.values() if d in scan.revisions} | young
            else:
                roots = set(scan.revisions)
            referrers: dict[Digest, list[Digest]] = {}
            for d in scan.revisions:
                r = await self.refs(d)
                if r is not None and r.subject is not None:
                    referrers.setdefault(r.subject, []).append(d)
            live: set[Digest] = set()
            used: set[Digest] = set()
            stack = sorted(roots)
            while stack:
                d = stack.pop()
                if d in live:
                    continue
                live.add(d)
                m.marked.add(d)
                r = await self.refs(d)
                if r is not None:
                    used.update(r.blobs)
                    m.marked.update(r.blobs)
                    m.marked.update(r.children)
                    stack.extend(c for c in r.children if c in scan.revisions)
                stack.extend(referrers.get(d, ()))
            m.live[name] = live
            m.used_links[name] = used
            m.young_links.update(d for d, t in scan.layers.items() if t >= self.cutoff)
        return m

    async def blobs(self) -> dict[Digest, tuple[int, float]]:
        """Every blob under ``blobs/``: digest → (size, mtime)."""
        out: dict[Digest, tuple[int, float]] = {}
        async for d in walk.blobs(self.driver):
            try:
                info = await self.driver.stat(layout.blob_data(d.algorithm, d.hex))
            except PathNotFound:
                continue
            out[d] = (info.size, info.mtime)
        return out

    def plan(self, m: Marking, blobs: dict[Digest, tuple[int, float]], report: Report | None) -> Plan:
        p = Plan()
        for name, scan in m.repos.items():
            for d in scan.revisions:
                if d not in m.live[name]:
                    p.revisions.setdefault(d, []).append(name)
            for d, t in scan.layers.items():
                if d not in m.used_links[name] and t < self.cutoff:
                    p.links.setdefault(d, []).append(name)
        for d, (size, mtime) in blobs.items():
            if d in m.marked:
                continue
            if mtime >= self.cutoff or d in m.young_links:
                if report is not None:
                    report.kept_young += 1
                continue
            p.blobs[d] = size
        return p

    # -- sweep ----------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        body = orjson.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
        await self.driver.put_content(ACTIVE, body, durable=False)
        self._heartbeat_ok = time.monotonic()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self._heartbeat()
            except StorageError:
                pass          # the sweep notices the missing beat and stops

    async def _clear_dead(self) -> None:
        """Refuse to run beside a live collection; clear the leftovers of a dead one."""
        if await heartbeat_age(self.driver) < STALE:
            raise RuntimeError(f"another garbage collection is running (heartbeat at {ACTIVE})")
        for path in (layout.GC_TOMBSTONES, layout.GC_VETOES):
            try:
                await self.driver.delete(path)
            except PathNotFound:
                pass

    async def _remove(self, path: str) -> bool:
        try:
            await self.driver.delete(path)
            return True
        except PathNotFound:
            return False

    async def _history(self, name: str, d: Digest) -> str:
        """`` (last pushed …; last pulled …, N pulls)`` for a manifest's line (fastreg.retention.history)."""
        if name not in self._pulls:
            self._pulls[name] = await history.recorded_pulls(self.driver, name)
        return f" ({(await history.manifest_history(self.driver, name, d, self._pulls[name])).text()})"

    async def _delete_digest(self, d: Digest, p: Plan, report: Report, tags: dict[str, list[str]]) -> None:
        for name in p.revisions.get(d, ()):
            seen = await self._history(name, d)
            if await self._remove(layout.revision_dir(name, d.algorithm, d.hex)):
                report.deleted_manifests += 1
                self.out(f"deleted manifest {name}@{d}{seen}")
            for tag in tags.get(name, ()):
                await self._remove(layout.tag_index_entry_dir(name, tag, d.algorithm, d.hex))
            r = await self.refs(d)
            if r is not None and r.subject is not None:
                s = r.subject
                await self._remove(layout.referrer_entry_dir(name, s.algorithm, s.hex, d.algorithm, d.hex))
        for name in p.links.get(d, ()):
            if await self._remove(layout.layer_dir(name, d.algorithm, d.hex)):
                report.deleted_links += 1
                self.out(f"deleted layer link {name}@{d}")
        if d in p.blobs and await self._remove(layout.blob_dir(d.algorithm, d.hex)):
            report.deleted_blobs += 1
            report.bytes_freed += p.blobs[d]
            self.out(f"deleted blob {d} ({p.blobs[d]} bytes)")

    async def run(self) -> Report:
        report = Report()
        self.cutoff = (time.time() if self.opts.now is None else self.opts.now) - self.opts.grace - CLOCK_SLACK
        if not self.opts.dry_run:
            await self._clear_dead()
        m1 = await self.mark("mark")
        blobs = await self.blobs()
        report.repositories = len(m1.repos)
        report.manifests = sum(len(s.revisions) for s in m1.repos.values())
        report.blobs = len(blobs)
        report.marked = len(m1.marked)
        plan = self.plan(m1, blobs, report)
        if self.opts.dry_run:
            self.progress.done()
            await self._dry_run(plan, report)
            await self._index_referrers(m1, plan, report)
            return report
        doomed = sorted(plan.digests())
        if not doomed:
            await self._index_referrers(m1, Plan(), report)
            self.progress.done()
            return report
        await self._phase("marked")
        beat = asyncio.ensure_future(self._beat_forever())
        try:
            await self._heartbeat()                                           # G1
            for d in doomed:
                await self.driver.put_content(tombstone_path(d), b"", durable=False)
            await self._phase("tombstoned")
            m2 = await self.mark("re-mark")                                   # G2
            p2 = self.plan(m2, await self.blobs(), None)
            final = plan.intersect(p2)
            await self._phase("remarked")
            tags = {name: await self._list(layout.tags_dir(name)) for name in m2.repos}
            for i, d in enumerate(doomed, 1):                                 # G3
                self.progress.step(f"gc: sweep [{i}/{len(doomed)}] {d}")
                if time.monotonic() - self._heartbeat_ok > STALE / 4:
                    report.aborted = "heartbeat to storage failed; stopped sweeping"
                    break
                if d not in final.digests() or await _exists(self.driver, veto_path(d)):
                    report.rescued += 1
                else:
                    if final.parts(d) != plan.parts(d):
                        report.rescued += 1
                    await self._delete_digest(d, final, report, tags)
                await self._remove(tombstone_path(d))
                await self._remove(veto_path(d))
            await self._phase("swept")
            await self._index_referrers(m2, final, report)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            # G4: a push that checked its references before this collection swept them sees
            # the new epoch (or `active`), and checks again.  If the epoch cannot be written,
            # `active` stays: pushes keep checking again until a later collection clears it.
            await self.driver.put_content(EPOCH, f"{time.time_ns()}-{os.urandom(8).hex()}".encode())
            await self._remove(layout.GC_TOMBSTONES)
            await self._remove(layout.GC_VETOES)
            await self._remove(ACTIVE)
        self.progress.done()
        return report

    async def _index_referrers(self, m: Marking, deleted: Plan, report: Report) -> None:
        """Add the referrers-index entry of every surviving manifest with a subject that lacks
        one (pushed through Distribution, which keeps no such index)."""
        for name, scan in m.repos.items():
            for d in scan.revisions:
                if name in deleted.revisions.get(d, ()):
                    continue
                r = await self.refs(d)
                if r is None or r.subject is None:
                    continue
                link = layout.referrer_link(name, r.subject.algorithm, r.subject.hex, d.algorithm, d.hex)
                if await _exists(self.driver, link):
                    continue
                report.referrers_indexed += 1
                if self.opts.dry_run:
                    self.out(f"would index referrer {name}@{d} of {r.subject}")
                else:
                    await self.driver.put_content(link, str(d).encode())
                    self.out(f"indexed referrer {name}@{d} of {r.subject}")

    async def _phase(self, name: str) -> None:
        if self.phase is not None:
            await self.phase(name)

    async def _dry_run(self, p: Plan, report: Report) -> None:
        for d, repos in sorted(p.revisions.items()):
            for name in repos:
                self.out(f"would delete manifest {name}@{d}{await self._history(name, d)}")
                report.deleted_manifests += 1
        for d, repos in sorted(p.links.items()):
            for name in repos:
                self.out(f"would delete layer link {name}@{d}")
                report.deleted_links += 1
        for d, size in sorted(p.blobs.items()):
            self.out(f"would delete blob {d} ({size} bytes)")
            report.deleted_blobs += 1
            report.bytes_freed += size


def summary(report: Report, dry_run: bool) -> str:
    verb = "would free" if dry_run else "freed"
    what = "eligible for deletion" if dry_run else "deleted"
    text = (f"{report.repositories} repositories, {report.manifests} manifests, {report.blobs} blobs, "
            f"{report.marked} marked; {what}: {report.deleted_blobs} blobs, {report.deleted_manifests} "
            f"manifests, {report.deleted_links} layer links; {verb} {report.bytes_freed} bytes "
            f"({_human(report.bytes_freed)}); kept as younger than the grace period: {report.kept_young}; "
            f"kept for concurrent pushes: {report.rescued}; referrers {'to index' if dry_run else 'indexed'}: "
            f"{report.referrers_indexed}")
    if report.aborted:
        text += f"; ABORTED: {report.aborted}"
    return text


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"


async def collect(driver: StorageDriver, options: Options, *, progress: Progress | None = None,
                  out: Callable[[str], None] | None = None) -> Report:
    return await Collector(driver, options, progress=progress, out=out).run()
