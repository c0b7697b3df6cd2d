"""htpasswd: the file format, reloading, the credential cache and the unknown-user dummy check."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import pytest

from fastreg.auth.htpasswd import Htpasswd, add_user, hash_password, parse, remove_user


def verify(h: Htpasswd, user: str, password: str) -> bool:
    return asyncio.run(h.verify(user, password))


def test_parse_accepts_bcrypt_only(caplog: pytest.LogCaptureFixture) -> None:
    users = parse("# comment\n\nalice:$2y$05$abcdefghijklmnopqrstuu5Yj1oGJoq1d4ZQ9O2vQ6o/3Gm7YgxSa\n"
                  "md5user:$apr1$xyz$abc\nbroken line\n")
    assert set(users) == {"alice"}
    assert "only bcrypt" in caplog.text and "not user:hash" in caplog.text


def test_add_verify_remove(tmp_path: Path) -> None:
    f = tmp_path / "htpasswd"
    assert add_user(f, "alice", "s3cret", cost=4)
    assert add_user(f, "bob", "pw", cost=4)
    assert not add_user(f, "alice", "new", cost=4)          # replaced, not duplicated
    assert f.read_text().count("alice:") == 1
    assert f.stat().st_mode & 0o777 == 0o600
    assert f.read_text().startswith("alice:$2y$04$")
    h = Htpasswd(f)
    assert verify(h, "alice", "new")
    assert not verify(h, "alice", "s3cret")
    assert not verify(h, "nobody", "new")
    assert remove_user(f, "alice") and not remove_user(f, "alice")
    assert not verify(h, "alice", "new")                   # reloaded: refused at once, cache or not
    assert verify(h, "bob", "pw")


def test_interoperates_with_apache_style_hashes(tmp_path: Path) -> None:
    """$2y$ (htpasswd -B) and $2b$/$2a$ (other tools) entries all verify."""
    f = tmp_path / "htpasswd"
    raw = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    f.write_text(f"a:{raw}\nb:{'$2y$' + raw[4:]}\nc:{'$2a$' + raw[4:]}\n")
    h = Htpasswd(f)
    assert all(verify(h, u, "pw") for u in "abc")


def test_reload_on_replace_and_in_place_edit(tmp_path: Path) -> None:
    f = tmp_path / "htpasswd"
    add_user(f, "alice", "one", cost=4)
    h = Htpasswd(f)
    assert verify(h, "alice", "one")
    # edited in place, same size (a new hash of the same cost has the same length)
    line = f"alice:{hash_password('two', 4)}\n"
    assert len(line) == f.stat().st_size
    with open(f, "r+") as fh:
        fh.write(line)
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 1_000_000))   # a distinct mtime even on coarse clocks
    assert not verify(h, "alice", "one")                  # the cached success is gone with the old hash
    assert verify(h, "alice", "two")
    f.unlink()
    assert not verify(h, "alice", "two")                  # a vanished file lets nobody in


def test_cache_keeps_a_keyed_hash_only_and_is_bounded(tmp_path: Path) -> None:
    """The cache of successful checks holds 32-byte HMACs of the credentials: no user name, no
    password, no plain hash of it (which a memory dump would let anyone brute-force without
    bcrypt); at most cache_max entries, the oldest dropped first; a wrong password never hits."""
    import hashlib
    f = tmp_path / "htpasswd"
    for i in range(6):
        add_user(f, f"user{i}", f"plaintext-password-{i}", cost=4)
    h = Htpasswd(f)
    h.cache_max = 4
    for i in range(6):
        assert verify(h, f"user{i}", f"plaintext-password-{i}")
    assert len(h._verified) == 4
    for k in h._verified:
        assert isinstance(k, bytes) and len(k) == 32
    plain = {hashlib.sha256(f"plaintext-password-{i}".encode()).digest() for i in range(6)}
    assert not plain & set(h._verified) and all(b"user" not in k and b"plaintext" not in k for k in h._verified)
    # cached user5: a different password — even one sharing its prefix — is checked, and refused
    assert not verify(h, "user5", "plaintext-password-")
    assert not verify(h, "user5", "plaintext-password-55")
    assert not verify(h, "user4", "plaintext-password-5")
    assert verify(h, "user5", "plaintext-password-5")
    # and the cache is what answers: with bcrypt failing, the cached credentials still pass
    orig = bcrypt.checkpw

    def broken(*_: object) -> bool:
        raise AssertionError("bcrypt ran for cached credentials")
    bcrypt.checkpw = broken       # type: ignore[assignment]
    try:
        assert verify(h, "user5", "plaintext-password-5")
    finally:
        bcrypt.checkpw = orig
    f.write_text(f.read_text())          # rewritten (a new mtime): the cache is emptied
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 5_000_000))
    h.reload_if_changed()
    assert not h._verified


def test_unknown_users_are_checked_at_a_fixed_cost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown name costs one bcrypt at UNKNOWN_COST whatever the file holds: a user at a high
    cost neither raises it (no name can cost more than that) nor makes the unknown-name timing
    depend on the file.  Recorded by wrapping the real bcrypt.checkpw."""
    from fastreg.auth import htpasswd as mod
    f = tmp_path / "htpasswd"
    add_user(f, "low", "pw", cost=4)
    add_user(f, "default", "pw", cost=mod.UNKNOWN_COST)
    f.write_text(f.read_text() + f"high:{hash_password('pw', 12)}\n")
    seen: list[int] = []
    real = bcrypt.checkpw

    def spy(pw: bytes, hashed: bytes) -> bool:
        seen.append(int(hashed.split(b"$")[2]))
        return real(pw, hashed)
    monkeypatch.setattr(bcrypt, "checkpw", spy)
    h = Htpasswd(f)
    for name in ("nobody", "someone-else", "x" * 300):
        assert not verify(h, name, "pw")
    assert seen == [mod.UNKNOWN_COST] * 3
    assert mod.UNKNOWN_COST == mod.DEFAULT_COST        # = what `fastreg htpasswd add` writes
    seen.clear()
    assert not verify(h, "default", "wrong")            # a wrong password at that cost: the same work
    assert seen == [mod.UNKNOWN_COST]


def test_out_of_range_costs_refused_at_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A cost above 31 (or below 4) cannot be computed: the line is refused with a warning naming
    it, and the rest of the file works."""
    f = tmp_path / "htpasswd"
    good = hash_password("pw", 4)
    salt_and_hash = good[7:]
    f.write_text(f"huge:$2y$32${salt_and_hash}\nalice:{good}\ntiny:$2b$03${salt_and_hash}\n"
                 f"short:$2y$05$abc\n")
    h = Htpasswd(f)
    assert h.users() == {"alice"}
    assert "htpasswd:1: user 'huge': bcrypt cost 32" in caplog.text
    assert "htpasswd:3: user 'tiny': bcrypt cost 3" in caplog.text
    assert "htpasswd:4: user 'short': not a well-formed bcrypt hash" in caplog.text
    assert verify(h, "alice", "pw")
    assert not verify(h, "huge", "pw") and not verify(h, "nobody", "pw")


def test_checks_wait_in_a_bounded_queue(tmp_path: Path) -> None:
    """At most max_pending distinct checks wait for the pool; one more is refused (→ 429) rather
    than queued without limit; the same credentials join the check already running."""
    from fastreg.auth.htpasswd import HtpasswdBusy
    f = tmp_path / "htpasswd"
    add_user(f, "slow", "pw", cost=13)
    add_user(f, "alice", "pw", cost=4)
    h = Htpasswd(f)
    h.max_pending = 1

    async def run() -> tuple[bool, bool]:
        first = asyncio.ensure_future(h.verify("slow", "pw"))
        await asyncio.sleep(0)
        same = asyncio.ensure_future(h.verify("slow", "pw"))
        with pytest.raises(HtpasswdBusy):
            await h.verify("alice", "pw")
        return await first, await same
    assert asyncio.run(run()) == (True, True)
    assert not h._inflight and verify(h, "alice", "pw")


def test_cli_add_with_password_stdin(tmp_path: Path) -> None:
    f = tmp_path / "users"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run([sys.executable, "-m", "fastreg", "htpasswd", "add", "carol", "--file", str(f),
                        "--password-stdin", "--cost", "4"], check=False, input="pa ss\n", text=True,
                       capture_output=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert verify(Htpasswd(f), "carol", "pa ss")
    r = subprocess.run([sys.executable, "-m", "fastreg", "htpasswd", "remove", "carol", "--file", str(f)],
                       check=False, text=True, capture_output=True, env=env, timeout=60)
    assert r.returncode == 0 and "carol" not in f.read_text()


def test_parallel_checks_of_one_credential_share_one_bcrypt(tmp_path: Path) -> None:
    f = tmp_path / "htpasswd"
    add_user(f, "alice", "pw", cost=6)

    class Counting(Htpasswd):
        calls = 0

        @staticmethod
        def _check(pw: bytes, stored: str | None) -> bool:
            Counting.calls += 1
            return Htpasswd._check(pw, stored)

    h = Counting(f)

    async def burst() -> list[bool]:
        return await asyncio.gather(*(h.verify("alice", "pw") for _ in range(8)),
                                    *(h.verify("alice", "bad") for _ in range(4)))

    results = asyncio.run(burst())
    assert results == [True] * 8 + [False] * 4
    assert Counting.calls == 2 and not h._inflight


def test_long_passwords_refused_not_truncated(tmp_path: Path) -> None:
    f = tmp_path / "htpasswd"
    with pytest.raises(ValueError, match="72 bytes"):
        add_user(f, "alice", "x" * 73, cost=4)
    add_user(f, "alice", "x" * 72, cost=4)
    h = Htpasswd(f)
    assert verify(h, "alice", "x" * 72)
    assert not verify(h, "alice", "x" * 73)        # bcrypt would match the 72-byte prefix
    assert not verify(h, "nobody", "y" * 200)


def test_a_full_check_queue_is_answered_429(tmp_path: Path) -> None:
    """The access hooks turn HtpasswdBusy into 429 TOOMANYREQUESTS with Retry-After."""
    from fastreg.api.errors import RegistryError, status_of
    from fastreg.auth.controllers import checked
    f = tmp_path / "htpasswd"
    add_user(f, "alice", "pw", cost=4)
    h = Htpasswd(f)
    h.max_pending = 0
    with pytest.raises(RegistryError) as info:
        asyncio.run(checked(h, "alice", "pw"))
    assert status_of(info.value) == 429 and info.value.code.value == "TOOMANYREQUESTS"
    assert dict(info.value.headers)[b"retry-after"] == b"1"
    h.max_pending = 1
    assert asyncio.run(checked(h, "alice", "pw"))
