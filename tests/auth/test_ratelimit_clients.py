"""Per-client rate limits key a client by its IPv4 address or its IPv6 /64: a client rotating
through the addresses of its /64 (every host is given one) shares one bucket, and so does an
IPv4 client seen as an IPv4-mapped IPv6 address.  Driven through the RateLimited access hook
with the ASGI scopes granian gives; the 429 carries Retry-After."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fastreg.api.errors import RegistryError, status_of
from fastreg.api.http import Request
from fastreg.auth.controllers import OpenAccess, RateLimited
from fastreg.auth.ratelimit import TokenBucket


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def request_from(addr: str) -> Request:
    scope = {"type": "http", "method": "GET", "path": "/v2/", "raw_path": b"/v2/", "query_string": b"",
             "headers": [], "client": (addr, 40000)}
    return Request(scope, _no_body, {})


def refused(limited: RateLimited, addr: str) -> RegistryError | None:
    try:
        asyncio.run(limited.authorize(request_from(addr), "base", None))
    except RegistryError as exc:
        return exc
    return None


@pytest.mark.parametrize("first, others", [
    ("2001:db8:1:2::1", ["2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2:abcd::9"]),
    ("::ffff:192.0.2.7", ["192.0.2.7", "::ffff:192.0.2.7"]),
])
def test_one_bucket_per_client(first: str, others: list[str]) -> None:
    limited = RateLimited(OpenAccess(), TokenBucket(rate=0.001, burst=2), None)
    assert refused(limited, first) is None
    assert refused(limited, others[0]) is None
    for addr in others[1:] + [first]:
        exc = refused(limited, addr)
        assert exc is not None, f"{addr} got its own bucket"
        assert status_of(exc) == 429 and exc.code.value == "TOOMANYREQUESTS"
        assert dict(exc.headers)[b"retry-after"].isdigit()


def test_other_clients_keep_their_own_buckets() -> None:
    limited = RateLimited(OpenAccess(), TokenBucket(rate=0.001, burst=1), None)
    for addr in ["2001:db8:1:2::1", "2001:db8:1:3::1", "192.0.2.7", "192.0.2.8", "::1"]:
        assert refused(limited, addr) is None, addr
        assert refused(limited, addr) is not None, addr
