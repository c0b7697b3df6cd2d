"""e2e fixtures on top of tests/conftest.py.

* ``mclient``: a module-scoped client, for module-level setup fixtures.
* ``E2E_REGISTRY_URL=http://host:port``: run the module-scoped tests against that registry instead
  of a fresh fastreg (e.g. Distribution, for a differential run).  Tests that need their own
  server (``fastreg_factory``) still start fastreg.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest


class ExternalRegistry:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self.port = parts.port or 80
        self.host = parts.netloc


@pytest.fixture(scope="module")
def registry(request: pytest.FixtureRequest) -> Iterator[Any]:
    external = os.environ.get("E2E_REGISTRY_URL")
    if external:
        yield ExternalRegistry(external)
        return
    from tests.support.server import make_fastreg

    srv = make_fastreg(request.getfixturevalue("tmp_path_factory").mktemp("fastreg"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def mclient(registry: Any) -> Iterator[httpx.Client]:
    """An httpx client bound to the module's server, usable from module-scoped fixtures."""
    with httpx.Client(base_url=registry.url, timeout=30.0) as c:
        yield c
