"""Fixtures for the hostile-input tests: one fastreg per module holding a committed image, and
`unchanged`, which asserts that whatever happens inside it leaves stored data exactly as it was
and the committed image still pulls byte-exact."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.registry_client import Image, assert_image_pulls, push_raw_image
from tests.support.server import FastregServer, make_fastreg

from .support import snapshot, wait_unchanged

# Short timeouts so slow clients are cut within the test's patience (defaults: 30 s and 60 s).
TIMEOUTS = {"fastreg": {"http": {"headertimeout": "2s", "bodytimeout": "2s"}}}


@dataclass
class Seeded:
    srv: FastregServer
    client: httpx.Client
    image: Image

    @property
    def port(self) -> int:
        return self.srv.port


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    srv = make_fastreg(tmp_path_factory.mktemp("hostile"), TIMEOUTS)
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30.0) as c:
            img = push_raw_image(c, "held/app", "v1", b'{"architecture":"amd64","os":"linux"}',
                             [os.urandom(3000), os.urandom(70_000)])
            yield Seeded(srv, c, img)
    finally:
        srv.stop()


@pytest.fixture
def unchanged(seeded: Seeded) -> Callable[[], AbstractContextManager[None]]:
    """`with unchanged(): ...` — nothing stored may change inside, and the held image still pulls."""
    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        before = snapshot(seeded.srv.root)
        yield
        wait_unchanged(seeded.srv.root, before)
        assert_image_pulls(seeded.client, seeded.image)
        assert seeded.srv.proc is not None and seeded.srv.proc.poll() is None, "the server died"
    return guard


def expect(resp: Any, status: int, code: str | None) -> None:
    """Status and OCI error code of an httpx or raw response."""
    got_code = resp.code if hasattr(resp, "code") else _code(resp)
    text = resp.body if hasattr(resp, "body") else resp.content
    assert (resp.status_code if hasattr(resp, "status_code") else resp.status) == status, text[:300]
    if code is not None:
        assert got_code == code, text[:300]


def _code(resp: httpx.Response) -> str | None:
    try:
        return str(resp.json()["errors"][0]["code"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
