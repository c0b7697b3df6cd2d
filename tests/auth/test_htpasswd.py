"""htpasswd: the file format, reloading, the credential cache and the unknown-user dummy check."""
from __future__ import annotations

import asyncio
import os
import statistics
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


def test_cache_keeps_no_plaintext(tmp_path: Path) -> None:
    f = tmp_path / "htpasswd"
    add_user(f, "alice", "plaintext-password", cost=4)
    h = Htpasswd(f)
    assert verify(h, "alice", "plaintext-password")
    assert h._verified and all("plaintext-password" not in repr(k) for k in h._verified)


def test_unknown_user_costs_a_bcrypt_check(tmp_path: Path) -> None:
    """No timing oracle: an unknown user takes as long as a wrong password.  Measured in process
    CPU time (bcrypt runs in a worker thread of this process), median of several tries; without
    the dummy check an unknown user would cost microseconds instead of a bcrypt hash."""
    f = tmp_path / "htpasswd"
    add_user(f, "alice", "right", cost=8)
    h = Htpasswd(f)

    def cpu(user: str) -> float:
        t = time.process_time()
        assert not verify(h, user, "wrong")
        return time.process_time() - t

    for _ in range(2):
        cpu("alice"), cpu("nobody")        # warm up
    wrong = statistics.median(cpu("alice") for _ in range(7))
    unknown = statistics.median(cpu("nobody") for _ in range(7))
    assert 0.5 < unknown / wrong < 2.0, (unknown, wrong)


def test_cli_add_with_password_stdin(tmp_path: Path) -> None:
    f = tmp_path / "users"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run([sys.executable, "-m", "fastreg", "htpasswd", "add", "carol", "--file", str(f),
                        "--password-stdin", "--cost", "4"], check=False, input="pa ss\n", text=True, capture_output=True,
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

        def _check(self, password: str, stored: str | None) -> bool:
            Counting.calls += 1
            return super()._check(password, stored)

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
