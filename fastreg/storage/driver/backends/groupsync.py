"""Group commit for the filesystem driver (``storage.filesystem.groupsync``): one ``syncfs(2)``
shared by every durable step that is waiting, instead of fsyncs of each request's own files.

A step (a file written, a rename) is finished when it asks for a barrier; the sync it waits for
starts after that, so when ``barrier`` returns, the step is on disk — exactly what the fsyncs
of that file and of its directory gave, and in the same order for each request (the data, then
the rename that publishes it; the blob, then the link that names it).  While one sync runs,
every step that asks joins the next one, which starts as soon as the running one ends: under
load one sync serves many requests, where each fsync served one.

``syncfs`` reports a writeback error once, to the sync that finds it, whatever file it hit: the
pages of a write made while another request's sync runs may fail inside that sync, and the next
one, which the write waits for, succeeds without them.  So a write takes a ``mark`` before it
begins, and its barrier fails if any sync failed since (where its own fsync would have reported
the error): a failure fails every write under way, never one begun after it.

``syncfs`` writes back everything dirty on the filesystem, other programs' writes included: it
suits a filesystem that holds the registry's data and little else.  Linux only.
"""
from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_syncfs: Any = None
if sys.platform.startswith("linux"):
    try:
        _syncfs = ctypes.CDLL(None, use_errno=True).syncfs
        _syncfs.argtypes = [ctypes.c_int]
        _syncfs.restype = ctypes.c_int
    except AttributeError:
        _syncfs = None

AVAILABLE = _syncfs is not None
MOUNTINFO = "/proc/self/mountinfo"


def mounts_under(root: str) -> list[str]:
    """The mount points strictly under `root` (another filesystem, which a ``syncfs`` of the
    root's does not write back)."""
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    prefix = os.path.realpath(root).rstrip("/") + "/"
    out = []
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if point.startswith(prefix) and len(point) > len(prefix):
            out.append(point)
    return out


def _sync(fd: int) -> None:
    if _syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class GroupSync:
    def __init__(self, root: str, pool: ThreadPoolExecutor) -> None:
        if not AVAILABLE:
            raise OSError("syncfs(2) is not available on this system")
        self._fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._pool = pool
        self._running = False
        self._next: asyncio.Future[None] | None = None      # the sync that starts next
        self.syncs = 0              # started
        self.waits = 0              # barriers asked for
        self.failures = 0           # syncs that failed

    def mark(self) -> int:
        """Taken before a write begins; its barriers are given it (`barrier`)."""
        return self.failures

    async def barrier(self, since: int) -> None:
        """Return once everything written before this call is on disk; raise if a sync failed
        since `since` (the write's `mark`), its bytes among what that sync lost or not."""
        self.waits += 1
        fut = self._next
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = self._next = loop.create_future()
            if not self._running:
                self._launch(loop)
        await asyncio.shield(fut)       # a cancelled waiter leaves the sync to the others
        if self.failures != since:
            raise OSError(errno.EIO, "a sync of the filesystem failed while this was written")

    def _launch(self, loop: asyncio.AbstractEventLoop) -> None:
        fut, self._next = self._next, None
        assert fut is not None
        try:
            job = loop.run_in_executor(self._pool, _sync, self._fd)
        except RuntimeError:            # the driver is closed (its pool shut down)
            fut.set_exception(OSError(errno.EBADF, "the storage driver is closed"))
            fut.add_done_callback(_retrieved)
            return
        self._running = True
        self.syncs += 1

        def done(j: asyncio.Future[None]) -> None:
            self._running = False
            exc = j.exception()
            if exc is None:
                fut.set_result(None)
            else:
                self.failures += 1
                fut.set_exception(exc)
                fut.add_done_callback(_retrieved)       # (every waiter may have been cancelled)
            if self._next is not None:
                self._launch(loop)
        job.add_done_callback(done)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _retrieved(f: asyncio.Future[None]) -> None:
    f.exception()
