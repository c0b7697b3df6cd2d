"""htpasswd files (bcrypt only, as Distribution): ``user:$2y$10$...`` one per line.

* The file is re-read when its inode, size or mtime changes (one ``stat`` per check), so an
  edited or replaced file — a removed user — takes effect on the next request.
* bcrypt runs in a thread (``asyncio.to_thread``): a check costs ~50 ms of CPU at cost 10 and
  must not stall the event loop.
* Verified credentials are cached briefly, keyed by the user, the stored hash (so a changed
  password or a removed user invalidates the entry at once) and SHA-256 of the password — never
  the password itself.
* An unknown user is checked against a dummy hash of the same cost as the file's entries, so
  "no such user" takes as long as "wrong password" (no user-enumeration timing oracle).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from pathlib import Path

import bcrypt

log = logging.getLogger("fastreg.auth")

CACHE_SECONDS = 30.0
CACHE_MAX = 10_000
DEFAULT_COST = 10
MAX_PASSWORD = 72      # bytes: bcrypt's limit


def hash_password(password: str, cost: int = DEFAULT_COST) -> str:
    """An htpasswd bcrypt entry value (``$2y$``, as ``htpasswd -B`` writes)."""
    h = bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
    return "$2y$" + h[4:]


def parse(text: str, source: str = "htpasswd") -> dict[str, str]:
    users: dict[str, str] = {}
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
        users[user] = hashed
    return users


def _cost(hashed: str) -> int:
    try:
        return int(hashed.split("$")[2])
    except (IndexError, ValueError):
        return DEFAULT_COST


class Htpasswd:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._sig: tuple[int, int, int, int] | None = None
        self._users: dict[str, str] = {}
        self._dummy = b""
        self._lock = threading.Lock()
        self._verified: dict[tuple[str, str, bytes], float] = {}
        self._inflight: dict[tuple[str, str, bytes], asyncio.Future[bool]] = {}
        if not self.path.is_file():
            raise FileNotFoundError(f"htpasswd file {self.path} not found (create it: fastreg htpasswd add USER"
                                    f" --file {self.path})")
        self.reload_if_changed()

    def reload_if_changed(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._sig is not None:
                log.warning("htpasswd file %s disappeared: nobody can log in", self.path)
            self._sig, self._users = (0, 0, 0, 0), {}
            return
        sig = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
        if sig == self._sig:
            return
        with self._lock:
            users = parse(self.path.read_text(errors="replace"), str(self.path))
            cost = max((_cost(h) for h in users.values()), default=DEFAULT_COST)
            if not self._dummy or _cost(self._dummy.decode()) != cost:
                self._dummy = bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(cost))
            self._users, self._sig = users, sig
            self._verified.clear()

    def users(self) -> frozenset[str]:
        self.reload_if_changed()
        return frozenset(self._users)

    async def verify(self, user: str, password: str) -> bool:
        self.reload_if_changed()
        stored = self._users.get(user)
        key = (user, stored or "", hashlib.sha256(password.encode()).digest())
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
        task = asyncio.ensure_future(asyncio.to_thread(self._check, password, stored))
        self._inflight[key] = task
        try:
            ok = await asyncio.shield(task)
        finally:
            if task.done():
                self._inflight.pop(key, None)
            else:
                task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        if ok:
            if len(self._verified) >= CACHE_MAX:
                self._verified.clear()
            self._verified[key] = time.monotonic() + CACHE_SECONDS
        return ok

    def _check(self, password: str, stored: str | None) -> bool:
        pw = password.encode()
        if stored is None or len(pw) > MAX_PASSWORD:
            # same work as a wrong password; bcrypt reads at most 72 bytes, and a longer password
            # is refused rather than silently truncated (as Go's bcrypt, used by Distribution)
            bcrypt.checkpw(pw[:MAX_PASSWORD], self._dummy)
            return False
        try:
            return bcrypt.checkpw(pw, stored.encode())
        except ValueError:                         # a malformed hash
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
