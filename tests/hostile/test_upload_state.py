"""``_state`` is required on every request to an upload session, as Distribution requires it:
the session's UUID alone (it appears in logs, in ``Docker-Upload-UUID``, in a proxy's view of
the URL) does not let anyone read, write, finish or cancel the upload.  Refused with 400
``BLOB_UPLOAD_INVALID`` before storage is looked at; nothing stored changes, and the session
still completes with its token."""
from __future__ import annotations

import os
import uuid as uuidlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from urllib.parse import parse_qs, urlsplit

import httpx

from .conftest import Seeded, expect
from .support import digest_of

Unchanged = Callable[[], AbstractContextManager[None]]
METHODS = ("GET", "PATCH", "PUT", "DELETE")


def _request(c: httpx.Client, method: str, url: str, params: dict[str, str], data: bytes) -> httpx.Response:
    if method == "PUT":
        params = {**params, "digest": digest_of(data)}
    return c.request(method, url, params=params, content=data if method in ("PATCH", "PUT") else None)


def test_requests_without_state_are_refused(seeded: Seeded, unchanged: Unchanged) -> None:
    c = seeded.client
    r = c.post("/v2/held/app/blobs/uploads/")
    assert r.status_code == 202
    loc = urlsplit(r.headers["location"])
    token = parse_qs(loc.query)["_state"][0]
    first = os.urandom(2000)
    r = c.patch(loc.path, params={"_state": token}, content=first)
    assert r.status_code == 202, r.text
    token = parse_qs(urlsplit(r.headers["location"]).query)["_state"][0]
    for method in METHODS:
        for params in ({}, {"_state": ""}, {"state": token}):
            with unchanged():
                r = _request(c, method, loc.path, params, first + b"more")
            expect(r, 400, "BLOB_UPLOAD_INVALID")
            assert "_state" in r.text
    # the session is as it was: its token still finishes it, byte-exact
    r = c.put(loc.path, params={"_state": token, "digest": digest_of(first)})
    assert r.status_code == 201, r.text
    assert c.get(f"/v2/held/app/blobs/{digest_of(first)}").content == first


def test_unknown_session_without_state_is_refused_the_same(seeded: Seeded, unchanged: Unchanged) -> None:
    """As Distribution: the missing token is the answer, whether or not the session exists."""
    c = seeded.client
    path = f"/v2/held/app/blobs/uploads/{uuidlib.uuid4()}"
    for method in METHODS:
        with unchanged():
            r = _request(c, method, path, {}, b"x")
        expect(r, 400, "BLOB_UPLOAD_INVALID")
