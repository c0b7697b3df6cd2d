"""Token buckets per client address and per user: ``rate`` requests a second on average, bursts
of up to ``burst``.  Over the limit → 429 TOOMANYREQUESTS with ``Retry-After`` (whole seconds).

A client address is its IPv4 address or its IPv6 /64 (``client_key``).  Buckets live in each
worker process (no shared state): with N workers a client that spreads its
connections may get up to N times the rate.  The table is bounded: when it grows past
``MAX_KEYS``, buckets that have refilled completely (idle clients) are dropped.
"""
from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Mapping
from typing import Any

from ..api.errors import RegistryError

MAX_KEYS = 100_000


class TokenBucket:
    __slots__ = ("_buckets", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0:
            raise ValueError("rate limit: rate must be positive")
        self.rate = float(rate)
        self.burst = float(max(burst, 1))
        self._buckets: dict[str, tuple[float, float]] = {}    # key → (tokens, at)

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one token for `key`: 0.0 if allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= MAX_KEYS and key not in self._buckets:
                self._prune(now)
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        self._buckets = {k: (t, a) for k, (t, a) in self._buckets.items()
                         if t + (now - a) * self.rate < self.burst}
        if len(self._buckets) >= MAX_KEYS:
            self._buckets.clear()


def client_key(scope: Mapping[str, Any]) -> str:
    """The bucket of a request's client: its IPv4 address, or the /64 network of its IPv6 address
    (one host is given a whole /64 and may send from any address in it, so a bucket per IPv6
    address would be a bucket per request for a client that rotates them)."""
    client = scope.get("client")
    if not client:
        return "?"
    try:
        addr = ipaddress.ip_address(str(client[0]).partition("%")[0])
    except ValueError:
        return str(client[0])
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def too_many(wait: float, who: str) -> RegistryError:
    retry = str(max(1, math.ceil(wait))).encode()
    return RegistryError("TOOMANYREQUESTS", {"limit": who}, headers=[(b"retry-after", retry)])
