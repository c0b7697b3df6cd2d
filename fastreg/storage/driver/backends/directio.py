"""Direct I/O for the large part of a blob (the filesystem driver's writers, past ``dropbehind``).

Why: a registry writes each pushed byte once and reads it later, if ever.  Through the page
cache, every byte is first copied into a page that must be allocated, then written back,
then dropped (write-behind); on VMs whose memory the host backs lazily the allocation is the
slow part, and it varies with the memory's history.  ``O_DIRECT`` writes from two staging
buffers that are allocated once and reused, so a large blob becomes durable at the device's
speed, steadily (the measurements are in bench/RESULTS.md).  MinIO writes objects this way.

How: a `DirectStream` takes the bytes of one writer in order (`feed`, called from the writer's
job thread) into an aligned staging buffer; each full buffer is written by a thread of the
driver's direct-I/O pool while the writer fills the other one, so hashing and copying overlap
the device.  `finish` writes the whole blocks still staged, waits for every write, and hands back
the unaligned tail (< `ALIGN` bytes), which the writer writes through the page cache: a file
need not end on a block boundary, and the next request appending to it starts buffered up to
the next boundary, then goes direct again.  Durability still comes from the writer's fsync at
commit (the inode's size and extents; the data is on the device already).

A filesystem that refuses ``O_DIRECT`` (tmpfs, some FUSE and network filesystems: EINVAL at
open or at the first write) turns it off for the driver with one warning; the bytes of a
refused write go through the page cache instead, nothing is lost or written twice.

Memory: a stream holds 8 MiB of staging buffers, so a worker runs at most `MAX_STREAMS` at once
(32 MiB); an upload that finds them all taken is written behind instead, and tries again at its
next batch.  Idle buffers are kept for reuse up to the same total.
"""
from __future__ import annotations

import errno
import logging
import mmap
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger("fastreg.storage.filesystem")

ALIGN = 4096                # offsets and lengths of direct writes: a multiple of the block size
STAGE = 4 << 20             # one staging buffer; a writer holds two
MAX_STREAMS = 4             # direct streams at once per driver (process): 2 × STAGE each
O_DIRECT: int = getattr(os, "O_DIRECT", 0)


def align_up(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


class Unsupported(Exception):
    """This filesystem refuses direct I/O."""


class Saturated(Exception):
    """Every direct stream of this driver is taken: write this batch through the page cache."""


class BufferPool:
    """Page-aligned staging buffers (anonymous mmaps), kept for reuse: a buffer's pages are
    faulted in once, not once per push.  At most `keep` idle buffers are kept."""

    def __init__(self, keep: int = 2 * MAX_STREAMS) -> None:
        self._free: list[mmap.mmap] = []
        self._keep = keep
        self._lock = threading.Lock()

    def get(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, STAGE)

    def put(self, m: mmap.mmap) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(m)
                return
        m.close()


class DirectIO:
    """What a driver shares among its writers: the staging buffers, the threads that write them,
    and whether the filesystem takes direct I/O at all."""

    def __init__(self, root: str, threads: int = 4, max_streams: int = MAX_STREAMS) -> None:
        self.root = root
        self.enabled = bool(O_DIRECT)
        self.pool = BufferPool(keep=2 * max_streams)
        self.slots = threading.BoundedSemaphore(max_streams)
        self._threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def executor(self) -> ThreadPoolExecutor:
        # (only direct writes run here, and they wait for nothing else: no deadlock with the
        # driver's pool, whose jobs wait for these)
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="fastreg-dio")
            return self._executor

    def refused(self, exc: OSError) -> None:
        if self.enabled:
            self.enabled = False
            log.warning("%s: this filesystem refuses direct I/O (%s); large blobs are written "
                        "through the page cache", self.root, os.strerror(exc.errno or errno.EINVAL))

    def open(self, full: str, offset: int, plain_fd: int) -> DirectStream:
        """A stream writing `full` from `offset` (a multiple of ALIGN). Raises Unsupported, or
        Saturated when MAX_STREAMS streams are open."""
        if not self.slots.acquire(blocking=False):
            raise Saturated
        try:
            fd = os.open(full, os.O_WRONLY | O_DIRECT | os.O_CLOEXEC)
        except OSError as exc:
            self.slots.release()
            if exc.errno == errno.EINVAL:
                self.refused(exc)
                raise Unsupported from None
            raise
        try:
            return DirectStream(self, fd, plain_fd, offset)
        except BaseException:               # (no memory for the buffers)
            os.close(fd)
            self.slots.release()
            raise

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


class DirectStream:
    """The bytes of one writer from an aligned offset on (see the module docstring).  Not
    thread-safe: the writer calls it from one job at a time."""

    def __init__(self, dio: DirectIO, fd: int, plain_fd: int, offset: int) -> None:
        assert offset % ALIGN == 0
        self._dio = dio
        self._fd: int | None = fd
        self._plain = plain_fd
        self.offset = offset                # file offset of the current buffer's first byte
        self._bufs = [dio.pool.get(), dio.pool.get()]
        self._cur = 0
        self._fill = 0
        self._pending: list[Future[None] | None] = [None, None]

    def feed(self, data: memoryview) -> None:
        while data:
            buf = self._bufs[self._cur]
            n = min(len(data), STAGE - self._fill)
            buf[self._fill:self._fill + n] = data[:n]
            self._fill += n
            data = data[n:]
            if self._fill == STAGE:
                self._write_current(STAGE)

    def _write_current(self, n: int) -> None:
        """Hand the first `n` bytes (a multiple of ALIGN) of the current buffer to a thread and
        switch to the other buffer, once its own write is done."""
        i = self._cur
        self._pending[i] = self._dio.executor.submit(self._pwrite, memoryview(self._bufs[i])[:n], self.offset)
        self.offset += n
        self._cur = i ^ 1
        self._fill = 0
        self._wait(self._cur)

    def _wait(self, i: int) -> None:
        p, self._pending[i] = self._pending[i], None
        if p is not None:
            p.result()

    def _pwrite(self, view: memoryview, offset: int) -> None:
        fd = self._fd
        assert fd is not None
        if self._dio.enabled:
            try:
                n = os.pwrite(fd, view, offset)
                view, offset = view[n:], offset + n
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._dio.refused(exc)
        while view:         # refused, or a short direct write: the rest through the page cache
            n = os.pwrite(self._plain, view, offset)
            view, offset = view[n:], offset + n

    def finish(self) -> tuple[int, bytes]:
        """Write the whole blocks staged and wait for every write; (offset, tail): the bytes
        staged past the last whole block, for the caller to write at offset.  The stream is
        closed afterwards (also when a write failed: its error is raised)."""
        try:
            whole = self._fill - self._fill % ALIGN
            tail = bytes(self._bufs[self._cur][whole:self._fill])
            if whole:
                self._write_current(whole)
            for i in (0, 1):
                self._wait(i)
            return self.offset, tail
        finally:
            self.close()

    def close(self) -> None:
        """Wait for the writes in flight (their errors are dropped: the caller is failing or
        already has them), then give the buffers back and close the descriptor."""
        for i in (0, 1):
            try:
                self._wait(i)
            except OSError:
                pass
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            for b in self._bufs:
                self._dio.pool.put(b)
            self._bufs = []
            self._dio.slots.release()
