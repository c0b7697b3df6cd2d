"""The S3 driver's direct GetObject and HeadObject (``directrequests``): the same request as
botocore's, signed alike, and the same answers; anything but 200 and a plain 404 left to botocore.

Against moto (which does not check signatures), a local server that answers with one status
(errors, throttling, redirects), and Ceph RGW (``-k rgw``: a real store that checks them)."""
from __future__ import annotations

import contextlib
import datetime
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp.web
import botocore.auth
import pytest

from fastreg.storage.driver.backends import s3 as s3mod
from fastreg.storage.driver.base import PathNotFound, StorageError

from .conftest import RgwBackend, S3Backend

KEYS = ["/plain", "/a b/c d", "/ünïcødé/ключ 名前", "/a+b/c+d", "/100%/x%2Fy%", "/x=y&z;,@$!'()*~",
        "/dot./..x/-_.~"]


@pytest.fixture(params=["s3", "rgw"])
def store(request: pytest.FixtureRequest) -> S3Backend:
    if request.param == "s3":
        return S3Backend(request.getfixturevalue("moto_server"))
    return RgwBackend(request.getfixturevalue("rgw_server"))


def _driver(params: dict[str, Any], direct: bool, **kw: Any) -> s3mod.S3Driver:
    return s3mod.S3Driver({**params, "directrequests": direct}, **kw)


def _api_calls(d: s3mod.S3Driver, run: Callable[[Any], Any]) -> list[str]:
    """The operations `d` sends through botocore from now on (the direct path's are not)."""
    client = run(d._s3())
    calls: list[str] = []
    real = client._make_api_call

    async def counted(name: str, params: dict[str, Any]) -> Any:
        calls.append(name)
        return await real(name, params)

    client._make_api_call = counted
    return calls


@pytest.fixture
def pair(store: S3Backend, run: Callable[[Any], Any]) -> Iterator[tuple[s3mod.S3Driver, s3mod.S3Driver, list[str]]]:
    """A driver with the direct path, one without, on the same root, and the first's botocore calls."""
    params = store.params(f"direct-{uuid.uuid4().hex[:8]}")
    direct, plain = _driver(params, True), _driver(params, False)
    calls = _api_calls(direct, run)
    assert direct._direct is not None and plain._direct is None
    yield direct, plain, calls
    with contextlib.suppress(PathNotFound):
        run(direct.delete("/"))
    run(direct.close())
    run(plain.close())


@pytest.mark.parametrize("data", [b"some bytes", b""], ids=["bytes", "empty"])
def test_present_keys_answer_as_botocore(pair: tuple[s3mod.S3Driver, s3mod.S3Driver, list[str]], data: bytes,
                                         run: Callable[[Any], Any]) -> None:
    direct, plain, calls = pair

    async def check() -> None:
        for i, path in enumerate(KEYS):
            body = data and data + str(i).encode()
            await plain.put_content(path, body)
            assert await direct.get_content(path) == await plain.get_content(path) == body
            assert await direct.stat(path) == await plain.stat(path)
            info = await direct.stat(path)
            assert info.size == len(body) and not info.is_dir
            assert (await direct._head(direct.key(path)) or {})["Metadata"] == {}

    run(check())
    assert calls == []                                  # every GET and HEAD answered directly


def test_metadata_of_a_head_is_botocore_s(pair: tuple[s3mod.S3Driver, s3mod.S3Driver, list[str]],
                                          run: Callable[[Any], Any]) -> None:
    direct, plain, calls = pair

    async def heads() -> tuple[Any, Any]:
        key = direct.key("/m e+ta")
        await plain._put(key, b"12345", meta={"fastreg-size": "77", "other": "x y"})
        return await direct._head(key), await plain._head(key)

    mine, theirs = run(heads())
    assert calls == []
    assert mine["Metadata"] == theirs["Metadata"] == {"fastreg-size": "77", "other": "x y"}
    assert mine["ContentLength"] == theirs["ContentLength"] == 5
    assert mine["LastModified"] == theirs["LastModified"]


def test_missing_keys_are_not_found_as_before(pair: tuple[s3mod.S3Driver, s3mod.S3Driver, list[str]],
                                              run: Callable[[Any], Any]) -> None:
    direct, plain, calls = pair

    async def check() -> None:
        for path in KEYS:
            for d in (direct, plain):
                with pytest.raises(PathNotFound):
                    await d.get_content(path + "-missing")
                with pytest.raises(PathNotFound):
                    await d.stat(path + "-missing")
            assert await direct._head(direct.key(path)) is None

    run(check())
    assert "GetObject" not in calls and "HeadObject" not in calls
    assert calls.count("ListObjectsV2") == len(KEYS)   # stat's look for a directory, as before


def test_direct_path_can_be_switched_off(moto_server: Any, run: Callable[[Any], Any]) -> None:
    d = _driver(S3Backend(moto_server).params(f"off-{uuid.uuid4().hex[:8]}"), False)
    calls = _api_calls(d, run)
    with pytest.raises(PathNotFound):
        run(d.get_content("/x"))
    run(d.close())
    assert d._direct is None and calls == ["GetObject"]


# -- the request itself, against botocore's (no network: a hook answers) --------------------------------

class _Answered(Exception):
    pass


@pytest.mark.parametrize("params", [
    {"regionendpoint": "http://127.0.0.1:9000", "forcepathstyle": True},
    {"regionendpoint": "http://127.0.0.1:9000", "forcepathstyle": False},
    {"regionendpoint": "http://localhost:9000", "forcepathstyle": False},           # virtual-hosted
    {"regionendpoint": "https://s3.example.internal:8443", "forcepathstyle": True, "sessiontoken": "tok/en+="},
    {"regionendpoint": "https://s3.example.internal", "forcepathstyle": False, "skipverify": True},
    {"region": "eu-west-1"},                                                        # AWS, virtual-hosted
    {"region": "eu-west-1", "forcepathstyle": True, "sessiontoken": "t"},
    {"region": "us-east-1", "rootdirectory": "/root dir+"},
], ids=["path", "ip-auto", "virtual", "https-port-token", "https-skipverify", "aws", "aws-path-token",
        "aws-us-east-1-root"])
def test_requests_are_botocore_s(params: dict[str, Any], run: Callable[[Any], Any],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Each direct request is the one botocore would send: URL, headers and signature (the same
    clock), for each addressing style, port, session token and key that needs encoding."""
    now = datetime.datetime(2026, 12, 7, 15, 0, 0, tzinfo=datetime.UTC)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now)
    sent: list[tuple[str, str, str, dict[str, str]]] = []

    def hook(event_name: str = "", request: Any = None, **_: Any) -> Any:
        sent.append((event_name.rsplit(".", 1)[-1], request.method, request.url,
                     {k.lower(): v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()}))
        if len(sent) % 2:
            return "answered"                           # the direct request: botocore's is next
        raise _Answered

    session = s3mod._session()
    session.register("before-send.s3", hook)
    d = _driver({"bucket": "fastreg-test", "accesskey": "AKID", "secretkey": "secret/key+", **params}, True)
    try:
        for path in KEYS:
            for call in (d.get_content, d.stat):
                sent.clear()
                with pytest.raises(_Answered):
                    run(call(path))
                (op1, m1, url1, h1), (op2, m2, url2, h2) = sent
                assert (op1, m1, url1) == (op2, m2, url2), (path, sent)
                h1.pop("accept-encoding", None)
                assert h1 == h2, (path, h1, h2)
                assert "authorization" in h1 and h1["x-amz-date"] == "20261207T150000Z"
                assert ("x-amz-security-token" in h1) == ("sessiontoken" in params)
        assert d._direct is not None
    finally:
        session.unregister("before-send.s3", hook)
        run(d.close())


# -- answers left to botocore: a server that answers everything with one status ---------------------

@pytest.fixture
def answering(run: Callable[[Any], Any]) -> Iterator[tuple[dict[str, Any], list[str]]]:
    """A local S3 look-alike whose answer is set by the test; every request it got, by method."""
    answer: dict[str, Any] = {"status": 403, "code": "AccessDenied", "headers": {}}
    got: list[str] = []

    async def handle(req: aiohttp.web.Request) -> aiohttp.web.Response:
        got.append(req.method)
        body = (f"<?xml version=\"1.0\"?><Error><Code>{answer['code']}</Code><Message>m</Message></Error>"
                if req.method != "HEAD" else "")
        return aiohttp.web.Response(status=answer["status"], body=body.encode(), headers=answer["headers"],
                                    content_type="application/xml")

    async def start() -> tuple[aiohttp.web.AppRunner, int]:
        app = aiohttp.web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, site._server.sockets[0].getsockname()[1]     # type: ignore[union-attr]

    runner, port = run(start())
    answer["url"] = f"http://127.0.0.1:{port}"
    try:
        yield answer, got
    finally:
        run(runner.cleanup())


def _errors(answer: dict[str, Any], got: list[str], run: Callable[[Any], Any], direct: bool,
            call: str) -> tuple[str, list[str], list[str], s3mod.S3Driver]:
    d = _driver({"bucket": "fastreg-test", "accesskey": "AKID", "secretkey": "s", "forcepathstyle": True,
                 "regionendpoint": answer["url"]}, direct, max_attempts=2)
    calls = _api_calls(d, run)
    got.clear()
    with pytest.raises(StorageError) as e:
        run(getattr(d, call)("/a b"))
    run(d.close())
    return f"{type(e.value).__name__}: {e.value}", list(got), calls, d


_ANSWERS = [(403, "AccessDenied"), (503, "SlowDown"), (500, "InternalError"), (400, "AuthorizationHeaderMalformed"),
            (404, "NoSuchBucket")]
_CALLS = [("get_content", "GET", "GetObject"), ("stat", "HEAD", "HeadObject")]


@pytest.mark.parametrize("status, code, call, method, op", [
    (status, code, call, method, op) for status, code in _ANSWERS for call, method, op in _CALLS
    if not (status == 404 and method == "HEAD")])      # (a HEAD's 404 has no body: no such key)
def test_other_answers_fall_back_to_botocore(answering: tuple[dict[str, Any], list[str]], status: int, code: str,
                                             call: str, method: str, op: str, run: Callable[[Any], Any]) -> None:
    """Errors, throttling: one direct request, then botocore's call with its retries and errors."""
    answer, got = answering
    answer.update(status=status, code=code)
    before, sent_before, calls_before, _ = _errors(answer, got, run, False, call)
    after, sent_after, calls_after, d = _errors(answer, got, run, True, call)
    assert after == before and not after.startswith(f"{PathNotFound.__name__}:")
    assert calls_before == calls_after and calls_before[0] == op      # (a HEAD's 400: HeadBucket too)
    assert sent_after == [method] + sent_before
    if status >= 500:
        assert sent_before.count(method) == 3                                  # botocore's 2 retries
    assert d._direct is None                                                  # closed with the driver


def test_a_head_404_is_no_such_key_on_both_paths(answering: tuple[dict[str, Any], list[str]],
                                                  run: Callable[[Any], Any]) -> None:
    """A HEAD's 404 carries no body to tell a missing bucket from a missing key: both paths take it
    as no such key (the direct one without asking botocore again), and the stat's listing that
    follows then fails alike on both."""
    answer, got = answering
    answer.update(status=404, code="NoSuchBucket")
    before, sent_before, _, _ = _errors(answer, got, run, False, "stat")
    after, sent_after, _, _ = _errors(answer, got, run, True, "stat")
    assert before == after and "NoSuchBucket" in before and "ListObjectsV2" in before
    assert sent_after == sent_before and sent_before[0] == "HEAD" and sent_before.count("HEAD") == 1


def test_a_redirect_turns_the_direct_path_off(answering: tuple[dict[str, Any], list[str]],
                                              run: Callable[[Any], Any]) -> None:
    """The bucket is elsewhere: botocore's redirect handling answers, the direct path stops trying."""
    answer, got = answering
    answer.update(status=301, code="PermanentRedirect", headers={"x-amz-bucket-region": "eu-west-1"})
    sent: dict[bool, int] = {}
    for direct in (False, True):
        d = _driver({"bucket": "fastreg-test", "accesskey": "AKID", "secretkey": "s", "forcepathstyle": True,
                     "regionendpoint": answer["url"]}, direct, max_attempts=1)
        calls = _api_calls(d, run)
        path = d._direct
        assert (path is not None and path.on) == direct
        got.clear()
        for _ in range(3):
            with pytest.raises(StorageError):
                run(d.get_content("/x"))
        run(d.close())
        assert calls == ["GetObject"] * 3
        sent[direct] = got.count("GET")
        if path is not None:
            assert not path.on
    assert sent[True] == sent[False] + 1                # the direct request once only


def test_connection_errors_fall_back_to_botocore(moto_server: Any, run: Callable[[Any], Any],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    d = _driver(S3Backend(moto_server).params(f"conn-{uuid.uuid4().hex[:8]}"), True)
    calls = _api_calls(d, run)
    run(d.put_content("/k", b"v"))
    assert d._direct is not None

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))                       # bound, never listening: refused
    host = f"127.0.0.1:{closed.getsockname()[1]}"
    monkeypatch.setattr(d._direct, "base", d._direct.base.replace(moto_server.url.split("//")[1], host))
    assert host in d._direct.base
    assert run(d.get_content("/k")) == b"v"
    assert run(d.stat("/k")).size == 1
    run(d.delete("/k"))
    run(d.close())
    closed.close()
    assert calls[:3] == ["PutObject", "GetObject", "HeadObject"]


# -- a store that checks signatures ---------------------------------------------------------------

def test_rgw_wrong_secret_falls_back_and_raises_as_before(rgw_server: Any, run: Callable[[Any], Any]) -> None:
    store = RgwBackend(rgw_server)
    params = {**store.params(f"secret-{uuid.uuid4().hex[:8]}"), "secretkey": "not-the-secret"}
    seen = []
    for direct in (False, True):
        d = _driver(params, direct, max_attempts=1)
        calls = _api_calls(d, run)
        for call in ("get_content", "stat"):
            with pytest.raises(StorageError) as e:
                run(getattr(d, call)("/x"))
            assert not isinstance(e.value, PathNotFound)
            seen.append((call, f"{type(e.value).__name__}: {e.value}"))
        run(d.close())
        assert calls == ["GetObject", "HeadObject"]
    assert seen[:2] == seen[2:]
