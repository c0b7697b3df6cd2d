"""Shared fixtures: real fastreg servers (granian, started as `python -m fastreg serve`, from
tests/support/server.py)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# FastregServer and make_fastreg for the fixtures; the other names this module used to define,
# for modules still importing them from here (new code imports tests.support.server).
from tests.support.server import REPO_ROOT, TEST_SECRET, FastregServer, deep_merge, free_port, make_fastreg, wait_http
from tests.support.server import checkout_pythonpath as _pythonpath

# The object-store and Redis services: one instance each per session, whichever module asks.
pytest_plugins = ["tests.storage.service_fixtures"]

__all__ = ["REPO_ROOT", "TEST_SECRET", "FastregServer", "_pythonpath", "deep_merge", "free_port", "make_fastreg",
           "wait_http"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastregServer]:
    """One fastreg server per test module (filesystem storage, deletes enabled, blake3 on)."""
    srv = make_fastreg(tmp_path_factory.mktemp("fastreg"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def fastreg_factory(tmp_path: Path) -> Iterator[Any]:
    """Start fastreg servers with custom config; all are stopped at the end of the test."""
    started: list[FastregServer] = []

    def factory(config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                workers: int = 1, subdir: str = "srv") -> FastregServer:
        srv = make_fastreg(tmp_path / f"{subdir}{len(started)}", config, env, workers)
        srv.start()
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()


@pytest.fixture
def client(registry: FastregServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=30.0) as c:
        yield c


# The parameter values that stand for a storage service (tests/storage/conftest.py `_backend`).
_SERVICE_OF_BACKEND = {"s3": "moto_server", "rgw": "rgw_server", "azure": "azurite", "gcs": "gcs_emulator",
                       "redis-cached": "redis_server"}
_SERVICES = frozenset(_SERVICE_OF_BACKEND.values())


def xdist_group_of(item: pytest.Item) -> str:
    """The group of pytest-xdist workers (`--dist loadgroup`) a test runs in: the storage service it
    uses, if any (so each Ceph cluster, moto, Azurite... starts in one worker only), else its file
    (so a module's servers start once)."""
    names = set(getattr(item, "fixturenames", ()))
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    used = sorted(names & _SERVICES) or sorted(_SERVICE_OF_BACKEND[p] for p in params
                                               if isinstance(p, str) and p in _SERVICE_OF_BACKEND)
    return used[0] if used else item.nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)     # before xdist's own hook reads the marks into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist: each test in its group (`xdist_group_of`), and the groups that take
    minutes first (tests marked `long`, then those of a storage service), so that the longest
    work starts at once beside the rest instead of running alone at the end."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        item.add_marker(pytest.mark.xdist_group(xdist_group_of(item)))

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("long") is not None:
            return 0
        return 1 if xdist_group_of(item) in _SERVICES else 2
    items.sort(key=rank)        # stable: the order within each rank is kept


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With CI_FORBID_SKIPS=1 (set by .ci/run, which installs every tool the tests need), a
    skipped test fails: a missing service must never turn a CI run green by skipping."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and os.environ.get("CI_FORBID_SKIPS") == "1" and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in a run that allows no skips (CI_FORBID_SKIPS=1): {report.longrepr}"
