"""e2e fixtures on top of tests/conftest.py: a module-scoped client for module-level setup."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest


@pytest.fixture(scope="module")
def mclient(registry: Any) -> Iterator[httpx.Client]:
    """An httpx client bound to the module's server, usable from module-scoped fixtures."""
    with httpx.Client(base_url=registry.url, timeout=30.0) as c:
        yield c
