"""The cache of verified tokens is bounded in bytes as well as in entries: large tokens (a trusted
issuer granting access to many repositories) cannot fill a worker's memory."""
from __future__ import annotations

from typing import Any

import pytest

from fastreg.auth import pki, token
from fastreg.auth.token import TokenVerifier

from .test_token import ISSUER, SERVICE
from .test_token import token as make_token


@pytest.fixture(scope="module")
def ca() -> pki.Issued:
    return pki.make_ca("token root")


@pytest.fixture(scope="module")
def signer(ca: pki.Issued) -> pki.Issued:
    return pki.issue(ca, "token signer")


def _access(i: int, n: int) -> list[dict[str, Any]]:
    return [{"type": "repository", "name": f"team{i}/repo{j:04d}", "actions": ["pull"]} for j in range(n)]


def test_token_cache_is_bounded_in_bytes(ca: pki.Issued, signer: pki.Issued, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(token, "CACHE_BYTES", 64 * 1024)
    v = TokenVerifier(issuer=ISSUER, service=SERVICE, roots=[ca.cert])
    raws = [make_token(signer, sub=f"user{i}", access=_access(i, 60)) for i in range(30)]
    assert all(len(r) > 4000 for r in raws)
    for r in raws:
        claims = v.verify(r)
        assert claims.subject.startswith("user")
        assert v._cache_bytes <= 64 * 1024 and v._cache_bytes == 4 * sum(map(len, v._cache))
    assert 0 < len(v._cache) < len(raws)
    assert v.verify(raws[-1]) is v._cache[raws[-1]]         # the newest is a hit
