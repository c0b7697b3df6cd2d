"""htpasswd files (bcrypt only, as Distribution): ``user:$2y$10$...`` one per line.

* The file is re-read when its inode, size or mtime changes (one ``stat`` per check), so an
  edited or replaced file — a removed user — takes effect on the next request.  Loading never
  hashes anything: it only parses.  A line that is not a well-formed bcrypt entry with a cost
  from 4 to 31 is refused with a warning naming the line; the rest of the file works.
* bcrypt runs in a small bounded thread pool (``POOL_SIZE`` threads per worker process), never on
  the event loop: a user at a high cost keeps one pool thread busy and nothing else waits for it
  but other password checks.  At most ``MAX_PENDING`` distinct checks wait at once; beyond that
  the request is answered 429 (``HtpasswdBusy``).
* A successful check is remembered for ``CACHE_SECONDS``, keyed by an HMAC (a random key made
  when the process starts) of the user, the password and the stored hash — never the password or
  a plain hash of it — so a client's hundred requests of one pull cost one bcrypt.  Only the exact
  credentials hit; a changed file empties the cache.  At most ``CACHE_MAX`` entries of 32 bytes
  each (the oldest is dropped first).
* An unknown user is checked against a fixed dummy hash at ``UNKNOWN_COST`` (the default cost of
  ``fastreg htpasswd add``), whatever the file holds: an unknown name costs exactly what a wrong
  password for a user at that cost costs, and no name can make fastreg do more work than that.
  Users at another cost can be told apart from unknown names by timing; loading warns about them.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt

log = logging.getLogger("fastreg.auth")

CACHE_SECONDS = 30.0
CACHE_MAX = 4096
DEFAULT_COST = 10
UNKNOWN_COST = DEFAULT_COST
MIN_COST, MAX_COST = 4, 31          # what bcrypt can compute
MAX_PASSWORD = 72      # bytes: bcrypt's limit
MAX_FILE = 16 << 20    # bytes: a larger htpasswd file is refused (nobody can log in)
POOL_SIZE = 2
MAX_PENDING = 64
ENTRY = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
# bcrypt of 32 random bytes nobody kept, at UNKNOWN_COST: what an unknown user is checked against
_DUMMY = b"$2b$10$GH6dSPCK.Jr9EtNTN0fghu0gVAfwNdNEGw3SEdr3UV3c/dli4SZvW"

class _Pool:
    """A fixed number of daemon threads running bcrypt checks for asyncio callers.  Daemon
    threads: a check at a high cost never holds up the worker's shutdown (a ThreadPoolExecutor
    is joined at exit)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.jobs: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[bool], Callable[[], bool]]] = \
            queue.SimpleQueue()
        self.pid = os.getpid()
        for i in range(size):
            threading.Thread(target=self._run, name=f"fastreg-bcrypt-{i}", daemon=True).start()

    def submit(self, fn: Callable[[], bool]) -> asyncio.Future[bool]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self.jobs.put((loop, fut, fn))
        return fut

    def _run(self) -> None:
        while True:
            loop, fut, fn = self.jobs.get()
            try:
                result, error = fn(), None
            except Exception as exc:            # noqa: BLE001 - handed to the waiting coroutine
                result, error = False, exc
            try:
                loop.call_soon_threadsafe(_settle, fut, result, error)
            except RuntimeError:                # the loop is closed: nobody waits any more
                pass


def _settle(fut: asyncio.Future[bool], result: bool, error: Exception | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _executor() -> _Pool:
    """The bcrypt pool of this process (made on first use, so a forked worker gets its own)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():
            _pool = _Pool(POOL_SIZE)
        return _pool


class HtpasswdBusy(Exception):
    """Too many password checks are waiting for the bcrypt pool (→ 429)."""


def hash_password(password: str, cost: int = DEFAULT_COST) -> str:
    """An htpasswd bcrypt entry value (``$2y$``, as ``htpasswd -B`` writes)."""
    h = bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
    return "$2y$" + h[4:]


def parse(text: str, source: str = "htpasswd") -> dict[str, str]:
    users: dict[str, str] = {}
    other_cost: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            log.warning("%s:%d: not user:hash; ignored", source, n)
            continue
        if not hashed.startswith(("$2y$", "$2a$", "$2b$")):
            log.warning("%s:%d: user %r: only bcrypt entries are supported (htpasswd -B); ignored",
                        source, n, user)
            continue
        m = ENTRY.fullmatch(hashed)
        if m is None:
            log.warning("%s:%d: user %r: not a well-formed bcrypt hash; ignored", source, n, user)
            continue
        cost = int(m.group(1))
        if not MIN_COST <= cost <= MAX_COST:
            log.warning("%s:%d: user %r: bcrypt cost %d is outside %d..%d; ignored",
                        source, n, user, cost, MIN_COST, MAX_COST)
            continue
        if cost != UNKNOWN_COST:
            other_cost.append(f"{user} (line {n}, cost {cost})")
        users[user] = hashed
    if other_cost:
        log.warning("%s: %d user(s) not at bcrypt cost %d, e.g. %s: unknown names are checked at cost %d, so "
                    "these names can be told apart from unknown ones by timing (re-add them with "
                    "`fastreg htpasswd add`)", source, len(other_cost), UNKNOWN_COST,
                    ", ".join(other_cost[:3]), UNKNOWN_COST)
    return users


class Htpasswd:
    cache_max = CACHE_MAX
    max_pending = MAX_PENDING

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._sig: tuple[int, int, int, int] | None = None
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()
        self._secret = os.urandom(32)
        self._verified: dict[bytes, float] = {}          # HMAC of the credentials -> valid until
        self._inflight: dict[bytes, asyncio.Future[bool]] = {}
        if not self.path.is_file():
            raise FileNotFoundError(f"htpasswd file {self.path} not found (create it: fastreg htpasswd add USER"
                                    f" --file {self.path})")
        self.reload_if_changed()

    def reload_if_changed(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._sig is not None and self._users:
                log.warning("htpasswd file %s disappeared: nobody can log in", self.path)
            self._sig, self._users = (0, 0, 0, 0), {}
            self._verified.clear()
            return
        sig = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
        if sig == self._sig:
            return
        with self._lock:
            if st.st_size > MAX_FILE:
                log.error("htpasswd file %s is larger than %d bytes: refused, nobody can log in", self.path, MAX_FILE)
                users = {}
            else:
                with open(self.path, "rb") as f:
                    users = parse(f.read(MAX_FILE).decode(errors="replace"), str(self.path))
            self._users, self._sig = users, sig
            self._verified.clear()

    def users(self) -> frozenset[str]:
        self.reload_if_changed()
        return frozenset(self._users)

    def _key(self, user: str, password: bytes, stored: str | None) -> bytes:
        u = user.encode()
        s = (stored or "").encode()
        msg = b"%d:%s%d:%s%s" % (len(u), u, len(s), s, password)
        return hmac.new(self._secret, msg, hashlib.sha256).digest()

    async def verify(self, user: str, password: str) -> bool:
        self.reload_if_changed()
        stored = self._users.get(user)
        pw = password.encode()
        key = self._key(user, pw, stored)
        if stored is not None:
            until = self._verified.get(key)
            if until is not None:
                if until > time.monotonic():
                    return True
                self._verified.pop(key, None)
        # one bcrypt check per distinct credential at a time: a client's parallel first requests
        # (skopeo pushes layers concurrently) wait for the same check instead of each paying for it
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        if len(self._inflight) >= self.max_pending:
            raise HtpasswdBusy(f"{len(self._inflight)} password checks are waiting")
        task = _executor().submit(lambda: self._check(pw, stored))
        self._inflight[key] = task
        task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        ok = await asyncio.shield(task)
        if ok and self._users.get(user) == stored:     # not reloaded meanwhile
            self._verified.pop(key, None)
            while len(self._verified) >= self.cache_max:
                self._verified.pop(next(iter(self._verified)))      # the oldest
            self._verified[key] = time.monotonic() + CACHE_SECONDS
        return ok

    @staticmethod
    def _check(pw: bytes, stored: str | None) -> bool:
        if stored is None or len(pw) > MAX_PASSWORD:
            # same work as a wrong password at UNKNOWN_COST; bcrypt reads at most 72 bytes, and a
            # longer password is refused rather than silently truncated (as Go's bcrypt, used by
            # Distribution)
            bcrypt.checkpw(pw[:MAX_PASSWORD], _DUMMY)
            return False
        try:
            return bcrypt.checkpw(pw, stored.encode())
        except ValueError:                         # a malformed hash (parse refuses those)
            return False


def add_user(path: str | os.PathLike[str], user: str, password: str, cost: int = DEFAULT_COST) -> bool:
    """Add or replace `user` in the file (created mode 0600); True if the user was new.
    The file is replaced atomically (write + rename), so a running server never reads half."""
    if not user or ":" in user or any(c.isspace() for c in user):
        raise ValueError(f"invalid user name {user!r}")
    if len(password.encode()) > MAX_PASSWORD:
        raise ValueError(f"passwords are limited to {MAX_PASSWORD} bytes (bcrypt)")
    p = Path(path)
    lines = p.read_text().splitlines() if p.exists() else []
    entry = f"{user}:{hash_password(password, cost)}"
    new = True
    out = []
    for line in lines:
        if line.partition(":")[0] == user:
            if new:
                out.append(entry)
            new = False
        else:
            out.append(line)
    if new:
        out.append(entry)
    _write_atomic(p, "\n".join(out) + "\n")
    return new


def remove_user(path: str | os.PathLike[str], user: str) -> bool:
    p = Path(path)
    lines = p.read_text().splitlines()
    kept = [line for line in lines if line.partition(":")[0] != user]
    if len(kept) == len(lines):
        return False
    _write_atomic(p, "".join(f"{line}\n" for line in kept))
    return True


def _write_atomic(p: Path, text: str) -> None:
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if p.exists():
        os.chmod(tmp, p.stat().st_mode & 0o777)
    os.replace(tmp, p)
