"""What the S3 driver's client does on every request, against moto: the CPU of small operations is
mostly botocore's request path, so the driver configures away what it does not need and the tests
pin it — timestamps parsed without dateutil, a fixed User-Agent, no optional checksums, no
client-side parameter validation (``python -m bench.s3_requests`` measures the CPU)."""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import botocore.handlers
import botocore.utils
import dateutil.parser
import pytest
from botocore.validate import ParamValidationDecorator

from fastreg.storage.driver.backends import s3 as s3mod

from .conftest import S3Backend
from .services import Service

Sent = list[tuple[str, dict[str, str]]]


@pytest.fixture
def driver(moto_server: Service, run: Callable[[Any], Any]) -> Iterator[tuple[Any, Sent]]:
    """A driver on a fresh root, and every request its client sends: (operation, headers)."""
    sent: Sent = []

    def hook(event_name: str = "", request: Any = None, **_: Any) -> None:
        sent.append((event_name.rsplit(".", 1)[-1], {k.lower(): v.decode() if isinstance(v, bytes) else str(v)
                                                     for k, v in request.headers.items()}))

    session = s3mod._session()
    session.register("before-send.s3", hook)           # copied into the client created next
    try:
        d = S3Backend(moto_server).make(f"path-{uuid.uuid4().hex[:8]}")
        yield d, sent
        run(d.close())
    finally:
        session.unregister("before-send.s3", hook)


@pytest.mark.parametrize("text", [
    "Mon, 07 Dec 2026 14:52:58 GMT", "Thu, 01 Jan 1970 00:00:00 GMT", "Tue, 7 Dec 2027 04:05:06 GMT",
    "2026-12-07T14:52:58.000Z", "2026-12-07T14:52:58Z", "2026-12-07T14:52:58.123456789Z",
    "2026-12-07T14:52:58+02:00", "2026-12-07T14:52:58", "Mon, 07 Dec 2026 14:52:58 -0000", "1796655184",
])
def test_timestamps_parse_as_botocore_parses_them(text: str) -> None:
    assert s3mod._timestamp(text) == botocore.utils.parse_timestamp(text)


def test_response_timestamps_are_parsed_without_dateutil(driver: tuple[Any, Sent], run: Callable[[Any], Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    d, _ = driver

    async def put() -> None:
        await d.put_content("/a/b", b"x")
        await d.put_content("/a/c/d", b"y")

    run(put())
    calls: list[str] = []
    real = dateutil.parser.parse

    def counted(text: str, *a: Any, **kw: Any) -> Any:
        calls.append(text)
        return real(text, *a, **kw)

    monkeypatch.setattr(dateutil.parser, "parse", counted)

    async def read() -> tuple[float, float, list[str]]:
        f = await d.stat("/a/b")                       # HeadObject: Last-Modified header
        c = await d.stat("/a/c")                       # ListObjectsV2: LastModified in the XML
        return f.mtime, c.mtime, await d.list("/a")

    fmtime, cmtime, names = run(read())
    assert calls == []
    assert names == ["b", "c"]
    assert abs(fmtime - time.time()) < 300 and abs(cmtime - time.time()) < 300


def test_requests_carry_a_fixed_user_agent_and_no_optional_checksums(driver: tuple[Any, Sent],
                                                                     run: Callable[[Any], Any]) -> None:
    d, sent = driver

    async def calls() -> Any:
        await d.put_content("/a/b", b"data")
        assert await d.get_content("/a/b") == b"data"
        await d.stat("/a/b")
        await d.delete("/a/b")
        return await d._s3()

    client = run(calls())
    ops = [op for op, _ in sent]
    assert ops[:3] == ["PutObject", "GetObject", "HeadObject"] and "DeleteObjects" in ops, ops
    for op, headers in sent:
        assert headers["user-agent"].startswith(s3mod.USER_AGENT + " "), (op, headers["user-agent"])
        assert headers["user-agent"].startswith("fastreg/") and "ua/" not in headers["user-agent"]
        assert "x-amz-checksum-mode" not in headers, op                 # no response checksums asked
        if op != "DeleteObjects":                                      # the one that requires one
            assert not [h for h in headers if h.startswith(("x-amz-checksum-", "x-amz-sdk-checksum"))], (op, headers)
    assert not isinstance(client._serializer, ParamValidationDecorator)     # no client-side validation


def test_handlers_the_calls_do_not_need_are_off_for_the_driver_only(driver: tuple[Any, Sent],
                                                                    run: Callable[[Any], Any]) -> None:
    d, sent = driver

    async def calls() -> tuple[Any, list[Any], list[Any]]:
        await d.put_content("/a/b", b"data")
        assert await d.get_content("/a/b") == b"data"
        client = await d._s3()
        mine = client.meta.events._emitter._handlers.prefix_search("before-parameter-build.s3.GetObject")
        async with s3mod._session().create_client("s3", region_name="us-east-1") as other:
            theirs = other.meta.events._emitter._handlers.prefix_search("before-parameter-build.s3.GetObject")
        return client, mine, theirs

    _, mine, theirs = run(calls())
    unneeded = {botocore.handlers.sse_md5, botocore.handlers.validate_bucket_name,
                botocore.handlers.generate_idempotent_uuid}
    assert unneeded <= set(theirs)                      # the session's other clients keep them
    assert not unneeded & set(mine)
    assert botocore.handlers.remove_bucket_from_url_paths_from_model in mine      # what is needed stays
    for op, headers in sent:
        assert "amz-sdk-invocation-id" not in headers and "amz-sdk-request" not in headers, (op, headers)
