"""Host-local coordination for the pull-through cache: flock-based locks, spool files, and the
in-flight blob fetch that every waiting client streams from (see ``fastreg.proxy``)."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator

from ..api.http import ResponseAborted
from ..digest import Digest

CHUNK = 1 << 20

_SPOOL: dict[str, str] = {}


def spool_dir(storage: str = "") -> str:
    """A host-local directory for spools and locks, one per storage (so that two fastreg
    instances with different storage on one host never follow each other's fetches)."""
    d = _SPOOL.get(storage)
    if d is None:
        d = os.path.join(tempfile.gettempdir(), "fastreg-proxy",
                         hashlib.sha256(storage.encode()).hexdigest()[:16])
        os.makedirs(d, exist_ok=True)
        _SPOOL[storage] = d
    return d


def try_flock(path: str) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextlib.asynccontextmanager
async def host_lock(key: str, storage: str = "") -> AsyncIterator[None]:
    """Mutual exclusion between the coroutines and processes of this host, by name."""
    path = os.path.join(spool_dir(storage), hashlib.sha256(key.encode()).hexdigest()[:32] + ".mlock")
    delay = 0.002
    while (fd := try_flock(path)) is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
    try:
        yield
    finally:
        unlock(fd)


# -- a blob fetch that many clients stream from --------------------------------------------------

class InFlight:
    def __init__(self, d: Digest) -> None:
        self.digest = d
        self.size: int | None = None
        self.written = 0
        self.done = False
        self.error: BaseException | None = None
        self.fd: int | None = None        # the spool, open for reading
        self.readers = 0
        self.cond = asyncio.Condition()
        self.sized = asyncio.Event()

    async def progress(self, written: int | None = None, *, done: bool = False,
                       error: BaseException | None = None) -> None:
        async with self.cond:
            if written is not None:
                self.written = written
            if error is not None:
                self.error = error
            if done or error is not None:
                self.done = True
                self.sized.set()
            self.cond.notify_all()

    def join(self) -> InFlight:
        """Count a client in before it streams (the spool stays open until every client is done)."""
        self.readers += 1
        return self

    def leave(self) -> None:
        self.readers -= 1
        self.maybe_close()

    async def stream(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The blob's bytes [start, end) as they arrive (to the end if `end` is None); call
        after join(), which this releases, once `size` is known.

        Nothing unverified is served whole: the last byte of the span is held back until the
        whole blob has been verified against its digest (`done` without `error`), so a client
        can never complete a response whose bytes do not match.  If the fetch fails, this
        raises ResponseAborted and the response is cut short."""
        assert self.size is not None
        stop = self.size if end is None else end
        pos = start
        try:
            while True:
                async with self.cond:
                    while not (self.done or min(self.written, stop - 1) > pos):
                        await self.cond.wait()
                    written, done, error = self.written, self.done, self.error
                if error is not None:
                    raise ResponseAborted(f"fetch of {self.digest} failed after {pos - start} bytes of "
                                          f"this response: {error}")
                upto = min(written, stop) if done else min(written, stop - 1)
                if pos >= stop and done:
                    return
                if upto <= pos:
                    if done:
                        raise ResponseAborted(f"spool of {self.digest} ended at {pos}, before {stop}")
                    continue
                assert self.fd is not None
                data = os.pread(self.fd, min(CHUNK, upto - pos), pos)
                if not data:
                    raise ResponseAborted(f"spool of {self.digest} shrank")
                pos += len(data)
                yield data
        finally:
            self.leave()

    def maybe_close(self) -> None:
        if self.done and self.readers == 0 and self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read_small(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 64)
    finally:
        os.close(fd)


def write_small(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
