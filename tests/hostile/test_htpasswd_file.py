"""A hostile htpasswd file under a real fastreg (htpasswd auth): lines bcrypt cannot compute, junk,
and a user at the highest cost bcrypt allows.  Each bad line is refused at load with a warning
naming it and the rest of the file works; a check at a huge cost runs in the bcrypt pool, so
anonymous requests and other users are answered while it is in flight; malformed Basic
credentials get 401 with a challenge; nothing stored changes.

Regressions: a cost-32 line turned every authenticated request into a 500 (the dummy hash for
unknown users was made at the file's highest cost, on the event loop), and a cost-31 line
stalled the whole worker while that dummy hash was computed."""
from __future__ import annotations

import base64
import os
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastreg.auth.htpasswd import hash_password

from .support import RawResponse, raw, request_bytes, snapshot, wait_unchanged

# a well-formed bcrypt salt+hash (53 characters) to put behind any cost
_TAIL = hash_password("unused", 4)[7:]
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}

HOSTILE = "\n".join([
    "# a hostile htpasswd file",
    f"huge:$2y$32${_TAIL}",                 # bcrypt cannot compute cost 32
    f"absurd:$2b$99${_TAIL}",
    f"tiny:$2a$03${_TAIL}",
    "nohash:",
    ":$2y$05$" + _TAIL,
    "junk " * 2000,
    f"slow:$2y$31${_TAIL}",                 # valid: 2^31 rounds, days of CPU for one check
    f"alice:{hash_password(PASSWORDS['alice'], 4)}",
    f"bob:{hash_password(PASSWORDS['bob'], 4)}",
    "",
])


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.support.server import make_fastreg
    tmp = tmp_path_factory.mktemp("htpasswd")
    users = tmp / "htpasswd"
    users.write_text(f"alice:{hash_password(PASSWORDS['alice'], 4)}\n")
    srv = make_fastreg(tmp, {
        "auth": {"htpasswd": {"realm": "hostile-realm", "path": str(users)}},
        "fastreg": {"auth": {"access": {"rules": [
            {"repository": "pub/**", "pull": ["anonymous"], "push": ["authenticated"]}]}}}})
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30.0) as c:
            data = b"held blob"
            import hashlib
            r = c.post("/v2/pub/app/blobs/uploads/", params={"digest": "sha256:" + hashlib.sha256(data).hexdigest()},
                       content=data, headers=basic("alice", PASSWORDS["alice"]))
            assert r.status_code == 201, r.text
        # replaced as an admin would (write + rename): the server reloads it on the next check
        tmp_file = tmp / "htpasswd.new"
        tmp_file.write_text(HOSTILE)
        os.replace(tmp_file, users)
        yield srv
    finally:
        srv.stop()


def _challenged(r: RawResponse | httpx.Response) -> None:
    status = r.status_code if isinstance(r, httpx.Response) else r.status
    headers = {k.lower(): v for k, v in r.headers.items()}
    assert status == 401, r
    assert headers.get("www-authenticate") == 'Basic realm="hostile-realm"', headers
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_bad_lines_refused_the_rest_works(server: Any) -> None:
    before = snapshot(Path(server.root))
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        r = c.get("/v2/", headers=basic("alice", PASSWORDS["alice"]))
        assert r.status_code == 200, r.text                     # was 500 with the cost-32 line
        # bob is let in (not 401): pub/app holds only a blob, so its tag list is NAME_UNKNOWN
        r = c.get("/v2/pub/app/tags/list", headers=basic("bob", PASSWORDS["bob"]))
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN", r.text
        for user in ("huge", "absurd", "tiny", "nohash", "nobody"):
            _challenged(c.get("/v2/", headers=basic(user, "anything")))
    log = server.log()
    for line, user, why in ((2, "huge", "bcrypt cost 32"), (3, "absurd", "bcrypt cost 99"),
                            (4, "tiny", "bcrypt cost 3"), (5, "nohash", "only bcrypt entries")):
        assert f"htpasswd:{line}: user '{user}': {why}" in log, log[-3000:]
    assert "htpasswd:6: not user:hash" in log and "htpasswd:7: not user:hash" in log
    wait_unchanged(Path(server.root), before)


@pytest.mark.parametrize("value", [
    "Basic !!!not-base64", "Basic " + base64.b64encode(b"no-colon").decode(),
    "Basic " + base64.b64encode(b":only-a-password").decode(), "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
])
def test_malformed_basic_credentials_are_challenged(server: Any, value: str) -> None:
    """Every 401 carries WWW-Authenticate, the malformed-credentials one too (clients re-prompt)."""
    before = snapshot(Path(server.root))
    for method, path in (("GET", "/v2/"), ("POST", "/v2/pub/app/blobs/uploads/")):
        _challenged(raw(server.port, method, path, {"Authorization": value}))
    wait_unchanged(Path(server.root), before)


def test_a_slow_check_does_not_stall_other_requests(fastreg_factory: Any, tmp_path: Path) -> None:
    """A check at cost 31 (days of CPU) is in flight; meanwhile anonymous requests, another user's
    check and cached credentials are all answered, and the slow one still is not: the event loop
    never waits for bcrypt.  The file gains the cost-31 user while the server runs (loading it
    must not hash anything either).  The check runs until the server stops."""
    users = tmp_path / "users"
    users.write_text(f"alice:{hash_password(PASSWORDS['alice'], 4)}\n")
    srv = fastreg_factory({
        "auth": {"htpasswd": {"realm": "hostile-realm", "path": str(users)}},
        "fastreg": {"auth": {"access": {"rules": [{"repository": "pub/**", "pull": ["anonymous"]}]}}}})
    new = tmp_path / "users.new"
    new.write_text(f"slow:$2y$31${_TAIL}\nalice:{hash_password(PASSWORDS['alice'], 4)}\n"
                   f"bob:{hash_password(PASSWORDS['bob'], 4)}\n")
    os.replace(new, users)
    before = snapshot(Path(srv.root))
    slow = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    try:
        slow.sendall(request_bytes("GET", "/v2/", srv.host, basic("slow", "a guess")))
        with httpx.Client(base_url=srv.url, timeout=30.0) as c:
            for _ in range(3):
                assert c.get("/v2/pub/app/tags/list").status_code == 404           # anonymous pull
                _challenged(c.get("/v2/"))                                         # anonymous ping
            assert c.get("/v2/", headers=basic("bob", PASSWORDS["bob"])).status_code == 200
            assert c.get("/v2/", headers=basic("alice", PASSWORDS["alice"])).status_code == 200
            assert c.get("/v2/", headers=basic("alice", PASSWORDS["alice"])).status_code == 200   # cached
            _challenged(c.get("/v2/", headers=basic("bob", "wrong")))
        ready, _, _ = select.select([slow], [], [], 0)
        assert not ready, "the cost-31 check answered: it cannot have run"
    finally:
        slow.close()
    wait_unchanged(Path(srv.root), before)
