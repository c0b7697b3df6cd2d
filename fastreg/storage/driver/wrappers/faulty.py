"""A fault-injecting wrapper around any storage driver — for tests and fault drills, never production.

Selected from the config like any driver, so a real ``fastreg serve`` runs on it::

    storage:
      faulty:
        driver: filesystem                  # the real driver underneath (any of them)
        parameters: {rootdirectory: /srv/registry}
        seed: 7                             # for `probability` (one random stream per process)
        rules:
          - op: put_content                 # one op or a list; "*" is every op
            path: "*/_manifests/tags/*/current/link"   # fnmatch glob on the driver path
            action: enospc                  # enospc | eio | timeout | slow | crash
            nth: 2                          # fire from the 2nd matching call on (default 1) ...
            times: 1                        # ... this many times (default: unlimited)
            probability: 1.0                # each eligible call fires with this probability
            when: before                    # before | after the real call; `during` for op write
            delay: 0.2                      # seconds, for slow and timeout
        stale:                              # an eventually consistent store (see below)
          reads: 3                          # each change is hidden from the next 3 reads ...
          seconds: 0                        # ... and/or for this long
          path: "*"                         # of paths matching this glob
          ops: [get_content, stat, list, reader]

Ops are the driver's methods — ``get_content put_content stat list move delete writer
reader`` — plus the writer's ``write`` and ``commit`` (path: the object being written); a
``move`` matches a rule when its source or its destination does.
Actions (each raises the typed error the real driver raises for it, so the registry's own
error handling is what is tested):

* ``enospc``: ``StorageFull`` (no space left on device);
* ``eio``: ``StorageError`` carrying ``OSError(EIO)``;
* ``timeout``: waits ``delay`` s, then ``StorageError`` "timed out" (a client-side timeout of
  an object store: the call did not happen, or ``when: after``, it did and the answer was lost);
* ``slow``: waits ``delay`` s, then does the call;
* ``crash``: SIGKILL, no clean-up, no flush of anything in user space — how crash tests pick
  their crash point.  In a granian worker it kills its whole server (the process group when
  the server leads one, else the granian main process and itself), so nothing restarts it.
  ``when: during`` on ``write`` hands the first half of the chunk to the real writer first.

``before`` faults happen instead of the call, ``after`` faults after it succeeded (the change
is made, the caller sees a failure).

Stale reads: after ``put_content``, ``move`` or ``delete`` of a path
matching ``stale.path``, ``get_content``/``stat``/``reader`` of that path return the previous
version (or ``PathNotFound`` if it did not exist) and ``list`` of its parent directory shows
the previous set of names, for the next ``reads`` such reads and/or ``seconds`` — as S3 did
before 2020 and some S3-compatible stores still do.  A directory deleted (recursively) keeps
serving the objects that were below it (up to 1000 of them).

While any rule can touch ``reader`` or stale reads are on, ``local_path`` answers ``None`` so
blob downloads go through ``reader`` (and its faults) instead of the server's sendfile path.
"""
from __future__ import annotations

import asyncio
import builtins
import errno
import fnmatch
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..base import (
    Chunk,
    DriverWrapper,
    FileInfo,
    Observer,
    PathNotFound,
    StorageDriver,
    StorageError,
    StorageFull,
    WriterWrapper,
)

OPS = frozenset({"get_content", "put_content", "stat", "list", "move", "delete", "writer", "reader",
                 "write", "commit"})
ACTIONS = frozenset({"enospc", "eio", "timeout", "slow", "crash"})
READ_OPS = frozenset({"get_content", "stat", "list", "reader"})


@dataclass
class Rule:
    ops: frozenset[str]
    path: str = "*"
    action: str = "eio"
    nth: int = 1
    times: int | None = None
    probability: float = 1.0
    when: str = "before"
    delay: float = 0.0
    seen: int = 0       # matching calls so far
    fired: int = 0

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], index: int) -> Rule:
        where = f"storage.faulty.rules[{index}]"
        unknown = set(raw) - {"op", "path", "action", "nth", "times", "probability", "when", "delay"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        op = raw.get("op", "*")
        ops = frozenset(OPS if op == "*" else ([op] if isinstance(op, str) else op))
        if not ops <= OPS:
            raise ValueError(f"{where}.op: {sorted(ops - OPS)} not one of {sorted(OPS)}")
        rule = cls(ops, str(raw.get("path", "*")), str(raw.get("action", "eio")), int(raw.get("nth", 1)),
                   None if raw.get("times") is None else int(raw["times"]), float(raw.get("probability", 1.0)),
                   str(raw.get("when", "before")), float(raw.get("delay", 0.0)))
        if rule.action not in ACTIONS:
            raise ValueError(f"{where}.action: {rule.action!r} not one of {sorted(ACTIONS)}")
        if rule.when not in ("before", "after", "during"):
            raise ValueError(f"{where}.when: before, after or during")
        if rule.when == "during" and ops != {"write"}:
            raise ValueError(f"{where}.when: 'during' is for op write only (other ops are atomic)")
        if rule.nth < 1 or not 0.0 <= rule.probability <= 1.0 or rule.delay < 0:
            raise ValueError(f"{where}: nth >= 1, 0 <= probability <= 1, delay >= 0")
        return rule

    def matches(self, op: str, path: str, when: str) -> bool:
        return op in self.ops and self.when == when and fnmatch.fnmatchcase(path, self.path)


@dataclass
class _Change:
    old: bytes | None               # None: the path did not exist before
    old_info: FileInfo | None
    reads_left: int
    until: float
    was_new: bool                   # the name appeared in its parent's listing with this change
    was_removed: bool               # the name vanished from its parent's listing


@dataclass
class Stale:
    reads: int = 0
    seconds: float = 0.0
    path: str = "*"
    ops: frozenset[str] = field(default_factory=lambda: READ_OPS)

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> Stale:
        unknown = set(raw) - {"reads", "seconds", "path", "ops"}
        if unknown:
            raise ValueError(f"storage.faulty.stale: unknown keys {sorted(unknown)}")
        ops = frozenset(raw.get("ops", READ_OPS))
        if not ops <= READ_OPS:
            raise ValueError(f"storage.faulty.stale.ops: {sorted(ops - READ_OPS)} not one of {sorted(READ_OPS)}")
        return cls(int(raw.get("reads", 0)), float(raw.get("seconds", 0.0)), str(raw.get("path", "*")), ops)


class FaultyDriver(DriverWrapper):
    def __init__(self, inner: StorageDriver, rules: list[Rule] | None = None, *, stale: Stale | None = None,
                 seed: int | None = None) -> None:
        super().__init__(inner)
        self.rules = list(rules or [])
        self.stale = stale if stale is not None and (stale.reads > 0 or stale.seconds > 0) else None
        self._random = random.Random(seed)
        self._changes: dict[str, _Change] = {}
        # A tag list cached by directory mtime would hide the stale listing: no such caching.
        if self.stale is not None:
            self.capabilities = replace(inner.capabilities, directory_mtimes=False)

    @staticmethod
    def parse(raw: Mapping[str, Any]) -> tuple[list[Rule], Stale | None, int | None]:
        """The rules, stale mode and seed of a ``storage.faulty`` section; ValueError if invalid."""
        rules = [Rule.from_config(r, i) for i, r in enumerate(raw.get("rules") or [])]
        stale = Stale.from_config(raw["stale"]) if raw.get("stale") else None
        seed = raw.get("seed")
        return rules, stale, None if seed is None else int(seed)

    @classmethod
    def from_config(cls, inner: StorageDriver, raw: Mapping[str, Any]) -> FaultyDriver:
        rules, stale, seed = cls.parse(raw)
        return cls(inner, rules, stale=stale, seed=seed)

    # -- faults ---------------------------------------------------------------------------
    def _due(self, op: str, path: str, when: str) -> Rule | None:
        for rule in self.rules:
            if not rule.matches(op, path, when):
                continue
            rule.seen += 1
            if rule.seen < rule.nth or (rule.times is not None and rule.fired >= rule.times):
                continue
            if rule.probability < 1.0 and self._random.random() >= rule.probability:
                continue
            rule.fired += 1
            return rule
        return None

    async def _fault(self, op: str, path: str, when: str) -> None:
        rule = self._due(op, path, when)
        if rule is not None:
            await self._act(rule, op, path)

    async def _act(self, rule: Rule, op: str, path: str) -> None:
        if rule.action == "crash":
            crash()
        if rule.action in ("slow", "timeout") and rule.delay:
            await asyncio.sleep(rule.delay)
        if rule.action == "slow":
            return
        detail = f"injected fault on {op} ({rule.when})"
        if rule.action == "enospc":
            raise StorageFull(path, f"{os.strerror(errno.ENOSPC)} ({detail})")
        if rule.action == "timeout":
            raise StorageError(path, f"timed out after {rule.delay:g}s ({detail})")
        raise StorageError(path, f"OSError: [Errno {errno.EIO}] {os.strerror(errno.EIO)} ({detail})")

    # -- stale reads ----------------------------------------------------------------------
    def _stale_for(self, path: str) -> bool:
        return self.stale is not None and fnmatch.fnmatchcase(path, self.stale.path)

    async def _remember(self, path: str, removed: bool = False) -> None:
        """Before changing `path`: keep its current version for stale reads."""
        if not self._stale_for(path) or path in self._live_changes():
            return      # an older version is already being served: keep serving that one
        old: bytes | None = None
        info: FileInfo | None = None
        try:
            info = await self.inner.stat(path)
            if not info.is_dir:
                old = await self.inner.get_content(path)
        except PathNotFound:
            pass
        self._changes[path] = self._change(old, info, was_new=info is None, was_removed=removed and info is not None)
        parent = path.rsplit("/", 1)[0]
        while info is None and parent and self._stale_for(parent) and parent not in self._changes:
            # a new object in a new directory: the directory is new to listings as well
            try:
                info = await self.inner.stat(parent)
            except PathNotFound:
                self._changes[parent] = self._change(None, None, was_new=True, was_removed=False)
                parent = parent.rsplit("/", 1)[0]

    def _change(self, old: bytes | None, info: FileInfo | None, *, was_new: bool, was_removed: bool) -> _Change:
        assert self.stale is not None
        return _Change(old, info, self.stale.reads or 1 << 62,
                       time.monotonic() + self.stale.seconds if self.stale.seconds else float("inf"),
                       was_new=was_new, was_removed=was_removed)

    def _live_changes(self) -> dict[str, _Change]:
        now = time.monotonic()
        for p in [p for p, c in self._changes.items() if c.reads_left <= 0 or now >= c.until]:
            del self._changes[p]
        return self._changes

    def _stale_read(self, op: str, path: str) -> _Change | None:
        if self.stale is None or op not in self.stale.ops:
            return None
        change = self._live_changes().get(path)
        if change is not None:
            change.reads_left -= 1
        return change

    # -- the driver -----------------------------------------------------------------------
    async def get_content(self, path: str) -> bytes:
        await self._fault("get_content", path, "before")
        change = self._stale_read("get_content", path)
        if change is not None and (change.old is not None or change.old_info is None):
            if change.old is None:
                raise PathNotFound(path)
            data = change.old
        else:
            data = await self.inner.get_content(path)
        await self._fault("get_content", path, "after")
        return data

    async def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        await self._fault("put_content", path, "before")
        await self._remember(path)
        await self.inner.put_content(path, data, durable)
        await self._fault("put_content", path, "after")

    async def stat(self, path: str) -> FileInfo:
        await self._fault("stat", path, "before")
        change = self._stale_read("stat", path)
        if change is not None:
            if change.old_info is None:
                raise PathNotFound(path)
            info = change.old_info
        else:
            info = await self.inner.stat(path)
        await self._fault("stat", path, "after")
        return info

    async def list(self, path: str) -> list[str]:
        await self._fault("list", path, "before")
        try:
            names = await self.inner.list(path)
        except PathNotFound:
            names = []
            missing = True
        else:
            missing = False
        if self.stale is not None and "list" in self.stale.ops:
            prefix = path.rstrip("/") + "/"
            shown, hid = set(names), False
            for p, c in list(self._live_changes().items()):
                if not p.startswith(prefix) or "/" in p[len(prefix):]:
                    continue
                child = p[len(prefix):]
                if c.was_new and child in shown:
                    shown.discard(child)
                    hid = True
                    c.reads_left -= 1
                elif c.was_removed and child not in shown:
                    shown.add(child)
                    c.reads_left -= 1
            # a prefix whose every key is hidden does not exist (an object store's view)
            names, missing = sorted(shown), not shown and (missing or hid)
        if missing:
            raise PathNotFound(path)
        await self._fault("list", path, "after")
        return names

    async def move(self, src: str, dst: str) -> None:
        await self._fault("move", src, "before")
        await self._fault("move", dst, "before")
        await self._remember(src, removed=True)
        await self._remember(dst)
        await self.inner.move(src, dst)
        await self._fault("move", src, "after")
        await self._fault("move", dst, "after")

    async def delete(self, path: str) -> None:
        await self._fault("delete", path, "before")
        if self.stale is not None:
            for p in [path, *await self._files_below(path)]:
                await self._remember(p, removed=True)
        await self.inner.delete(path)
        await self._fault("delete", path, "after")

    async def _files_below(self, path: str, limit: int = 1000) -> builtins.list[str]:
        """The objects under directory `path` (a bounded walk; stale mode only)."""
        out: builtins.list[str] = []
        stack = [path]
        while stack and len(out) < limit:
            d = stack.pop()
            try:
                names = await self.inner.list(d)
            except PathNotFound:
                continue
            for n in names:
                child = f"{d}/{n}"
                try:
                    if (await self.inner.stat(child)).is_dir:
                        stack.append(child)
                    else:
                        out.append(child)
                except PathNotFound:
                    continue
        return out

    async def writer(self, path: str, append: bool = False) -> _FaultyWriter:
        await self._fault("writer", path, "before")
        w = await self.inner.writer(path, append)
        try:
            await self._fault("writer", path, "after")
        except BaseException:
            await w.close()
            raise
        return _FaultyWriter(self, path, w)

    async def reader(self, path: str, offset: int = 0, length: int | None = None,
                     chunk_size: int = 1 << 20) -> AsyncIterator[Chunk]:
        await self._fault("reader", path, "before")
        change = self._stale_read("reader", path)
        if change is not None and change.old_info is None:
            raise PathNotFound(path)
        if change is not None and change.old is not None:
            end = len(change.old) if length is None else min(len(change.old), offset + length)
            for pos in range(offset, end, chunk_size):
                yield change.old[pos:min(end, pos + chunk_size)]
        else:
            async for chunk in self.inner.reader(path, offset, length, chunk_size):
                yield chunk
                # a read fault `after` strikes mid-stream, once the first chunk went out
                await self._fault("reader", path, "after")

    def local_path(self, path: str) -> str | None:
        if self.stale is not None or any("reader" in r.ops and fnmatch.fnmatchcase(path, r.path)
                                         for r in self.rules):
            return None
        return self.inner.local_path(path)



class _FaultyWriter(WriterWrapper):
    def __init__(self, driver: FaultyDriver, path: str, inner: Any) -> None:
        super().__init__(inner)     # flush too, so fault drills take the same commit path as production
        self._driver, self._path, self._inner = driver, path, inner

    async def write(self, data: bytes | memoryview, observe: Observer | None = None) -> None:
        d = self._driver
        rule = d._due("write", self._path, "during")
        if rule is not None:
            half = memoryview(data)[:len(data) // 2]
            await self._inner.write(half, observe)
            await self._inner.close()       # the half is handed to the OS, as a real crash may leave it
            await d._act(rule, "write", self._path)
        await d._fault("write", self._path, "before")
        await self._inner.write(data, observe)
        await d._fault("write", self._path, "after")

    async def commit(self) -> None:
        d = self._driver
        await d._fault("commit", self._path, "before")
        await self._inner.commit()
        await d._fault("commit", self._path, "after")

    async def cancel(self) -> None:
        await self._inner.cancel()

    async def close(self) -> None:
        await self._inner.close()


def crash() -> None:
    """SIGKILL this server: the whole process group when its leader is our parent (granian's
    main process started in its own session, as tests, systemd and shells with job control do),
    else the parent if it is a fastreg server, then ourselves."""
    parent = os.getppid()
    if os.environ.get("FASTREG_RESOLVED_CONFIG") and parent > 1:
        try:
            if os.getpgid(0) == parent:
                os.killpg(parent, signal.SIGKILL)
            with open(f"/proc/{parent}/cmdline", "rb") as f:
                if b"fastreg" in f.read():
                    os.kill(parent, signal.SIGKILL)
        except OSError:
            pass
    os.kill(os.getpid(), signal.SIGKILL)
