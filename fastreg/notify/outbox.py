"""The durable outbox: events wait here, on disk, until every endpoint has taken them.

Theory of operation
-------------------
* One SQLite database (WAL journal, ``synchronous=FULL``: a commit is on stable storage when it
  returns) shared by every granian worker of an instance; SQLite's locking serialises writers
  across processes, ``busy_timeout`` makes them wait instead of failing.
* A row is one event for one endpoint: ``(seq, endpoint, event_id, body)``.  ``seq`` only grows
  (AUTOINCREMENT), so each endpoint reads its rows in the order they were recorded.  Ignore
  rules are applied before the row is written, so an endpoint only ever sees rows it wants.
* **Group commit.**  ``add`` puts the rows on an in-process queue and awaits a future.  One
  writer task per process takes everything queued, writes it in one transaction (one fsync) in
  its own thread, then resolves every waiting future: concurrent requests share an fsync, and a
  request returns only once its event is durable.
* **Bounded.**  After each commit the writer checks the table against ``maxevents`` (cheaply:
  ``max(seq) - min(seq) + 1`` bounds the row count; only when it exceeds the limit are rows
  counted) and deletes the oldest rows beyond it.  Drops are counted in the ``counters`` table,
  logged, and reported to metrics.
* Delivery (``fastreg.notify.webhooks``) reads with ``fetch`` and removes with ``delete`` on its
  own connection; it runs in one process at a time.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger("fastreg.notify")

Row = tuple[str, str, bytes]          # endpoint, event id, encoded event
Stored = tuple[int, str, bytes]       # seq, event id, encoded event

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint TEXT NOT NULL,
    event_id TEXT NOT NULL,
    body     BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_endpoint ON outbox (endpoint, seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


class Outbox:
    """One process's handle on the shared outbox database in ``directory``."""

    FILENAME = "outbox.sqlite3"

    def __init__(self, directory: str | os.PathLike[str], maxevents: int,
                 on_drop: Callable[[int], None] | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / self.FILENAME
        self.maxevents = maxevents
        self.on_drop = on_drop
        self._writer_exec = ThreadPoolExecutor(1, thread_name_prefix="outbox-writer")
        self._reader_exec = ThreadPoolExecutor(1, thread_name_prefix="outbox-reader")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Workers start together: switching a new database to WAL does not wait on SQLite's busy
        # handler, so the first connection and the schema are made under a file lock.
        fd = os.open(self.directory / "init.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._wconn = _connect(self.path)
            self._wconn.executescript(SCHEMA)
        finally:
            os.close(fd)
        self._rconn: sqlite3.Connection | None = None
        self._queue: list[tuple[list[Row], asyncio.Future[None]]] = []
        self._pending: asyncio.Event | None = None    # made on the loop by _ensure_writer
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    # -- recording (every worker) -----------------------------------------------------------
    async def add(self, rows: list[Row]) -> None:
        """Record rows durably; returns once they are committed (shares the commit with others)."""
        if self._closed:
            raise RuntimeError("outbox closed")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((rows, fut))
        self._ensure_writer()
        assert self._pending is not None
        self._pending.set()
        await fut

    def _ensure_writer(self) -> None:
        if self._writer is None:
            self._pending = asyncio.Event()
            self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name="outbox-writer")

    async def _write_loop(self) -> None:
        assert self._pending is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._pending.wait()
            self._pending.clear()
            batch, self._queue = self._queue, []
            if not batch:
                if self._closed:
                    return
                continue
            rows = [r for rs, _ in batch for r in rs]
            try:
                dropped = await loop.run_in_executor(self._writer_exec, self._write, rows)
            except Exception as exc:  # noqa: BLE001 -- the requests waiting on this batch fail; the writer goes on
                log.error("outbox: could not record %d events: %s", len(rows), exc)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)
            self._pending.set()       # look again: more may have come while writing
            if dropped:
                log.warning("outbox full (%d events): dropped the %d oldest", self.maxevents, dropped)
                if self.on_drop is not None:
                    self.on_drop(dropped)

    def _write(self, rows: list[Row]) -> int:
        conn = self._wconn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT INTO outbox (endpoint, event_id, body) VALUES (?, ?, ?)", rows)
            dropped = self._bound(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return dropped

    def _bound(self, conn: sqlite3.Connection) -> int:
        lo, hi = conn.execute("SELECT min(seq), max(seq) FROM outbox").fetchone()
        if lo is None or hi - lo + 1 <= self.maxevents:
            return 0
        (count,) = conn.execute("SELECT count(*) FROM outbox").fetchone()
        excess = int(count) - self.maxevents
        if excess <= 0:
            return 0
        conn.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (excess,))
        conn.execute("INSERT INTO counters (name, value) VALUES ('dropped', ?) "
                     "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", (excess,))
        return excess

    # -- delivery (one process) ---------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        if self._rconn is None:
            self._rconn = _connect(self.path)
        return self._rconn

    async def _read(self, fn: Callable[[sqlite3.Connection], object]) -> object:
        return await asyncio.get_running_loop().run_in_executor(self._reader_exec, lambda: fn(self._reader()))

    async def fetch(self, endpoint: str, limit: int) -> list[Stored]:
        """The oldest ``limit`` rows waiting for ``endpoint``."""
        def q(c: sqlite3.Connection) -> list[Stored]:
            return c.execute("SELECT seq, event_id, body FROM outbox WHERE endpoint = ? ORDER BY seq LIMIT ?",
                             (endpoint, limit)).fetchall()
        return await self._read(q)  # type: ignore[return-value]

    async def delete(self, seqs: list[int]) -> None:
        """Forget delivered rows (durably: a restart must not resend more than it has to)."""
        def q(c: sqlite3.Connection) -> None:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        await self._read(q)

    async def forget_endpoints_except(self, keep: list[str]) -> dict[str, int]:
        """Delete the rows of endpoints no longer configured (or disabled); returns what went."""
        def q(c: sqlite3.Connection) -> dict[str, int]:
            marks = ",".join("?" * len(keep))
            c.execute("BEGIN IMMEDIATE")
            try:
                gone = dict(c.execute(f"SELECT endpoint, count(*) FROM outbox WHERE endpoint NOT IN ({marks}) "
                                      "GROUP BY endpoint", keep).fetchall())
                c.execute(f"DELETE FROM outbox WHERE endpoint NOT IN ({marks})", keep)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return gone
        return await self._read(q)  # type: ignore[return-value]

    async def depth(self) -> dict[str, int]:
        """Waiting rows per endpoint."""
        def q(c: sqlite3.Connection) -> dict[str, int]:
            return dict(c.execute("SELECT endpoint, count(*) FROM outbox GROUP BY endpoint").fetchall())
        return await self._read(q)  # type: ignore[return-value]

    async def dropped(self) -> int:
        def q(c: sqlite3.Connection) -> int:
            row = c.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
            return int(row[0]) if row else 0
        return await self._read(q)  # type: ignore[return-value]

    # -- lifecycle ----------------------------------------------------------------------------
    async def close(self) -> None:
        """Finish the commits in flight, then close both connections."""
        self._closed = True
        if self._writer is not None:
            assert self._pending is not None
            self._pending.set()
            await self._writer          # returns once the queue is empty
            self._writer = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer_exec, self._wconn.close)
        if self._rconn is not None:
            await loop.run_in_executor(self._reader_exec, self._rconn.close)
        self._writer_exec.shutdown(wait=False)
        self._reader_exec.shutdown(wait=False)
