"""e2e fixtures on top of tests/conftest.py.

The API behaviour tests here check statuses, error codes, headers and bodies: by default they run
against fastreg's App in-process (tests/support/asgi.py: a real App on a temporary data
directory, no sockets), which is fast.  A module that sets ``REAL_SERVER = True`` runs against a
real `fastreg serve` (granian), as do the tests that ask for ``real_registry``/``real_client`` (raw
sockets, interrupted bodies) or ``fastreg_factory`` (several workers, another engine).

* ``E2E_REAL_SERVERS=1``: every module against a real server (a differential run of the same
  assertions through granian).
* ``E2E_REGISTRY_URL=http://host:port``: the module-scoped tests against that registry instead
  (e.g. Distribution, for a differential run).
* ``mclient``: a module-scoped client, for module-level setup fixtures.
* ``app_factory``: registries with a custom configuration, in-process unless real servers are
  asked for.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.asgi import InProcessRegistry, make_inprocess
from tests.support.server import FastregServer, make_fastreg


class ExternalRegistry:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self.port = parts.port or 80
        self.host = parts.netloc

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30.0), **kw)


def _real(request: pytest.FixtureRequest) -> bool:
    return os.environ.get("E2E_REAL_SERVERS") == "1" or bool(getattr(request.module, "REAL_SERVER", False))


@pytest.fixture(scope="module")
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    external = os.environ.get("E2E_REGISTRY_URL")
    if external:
        yield ExternalRegistry(external)
        return
    srv: FastregServer | InProcessRegistry
    if _real(request):
        srv = make_fastreg(tmp_path_factory.mktemp("fastreg"))
    else:
        srv = make_inprocess(tmp_path_factory.mktemp("fastreg"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def mclient(registry: Any) -> Iterator[httpx.Client]:
    """An httpx client bound to the module's registry, usable from module-scoped fixtures."""
    with registry.client() as c:
        yield c


@pytest.fixture
def client(registry: Any) -> Iterator[httpx.Client]:
    with registry.client() as c:
        yield c


@pytest.fixture(scope="module")
def real_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real `fastreg serve`, for the tests that need its socket (or E2E_REGISTRY_URL's registry)."""
    external = os.environ.get("E2E_REGISTRY_URL")
    if external:
        yield ExternalRegistry(external)
        return
    srv = make_fastreg(tmp_path_factory.mktemp("fastreg-real"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def real_client(real_registry: Any) -> Iterator[httpx.Client]:
    with real_registry.client() as c:
        yield c


@pytest.fixture
def app_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Registries with a custom configuration (merged over the defaults), in-process (or real
    servers, as for `registry`); all are stopped at the end of the test."""
    started: list[FastregServer | InProcessRegistry] = []

    def factory(config: dict[str, Any] | None = None) -> FastregServer | InProcessRegistry:
        tmp = tmp_path / f"app{len(started)}"
        srv = make_fastreg(tmp, config) if _real(request) else make_inprocess(tmp, config)
        srv.start()
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()
